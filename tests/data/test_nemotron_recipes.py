"""The Nemotron recipe set (data_pipelines/recipes/nemotron_cc/, paper Tab. 8's public data): every recipe
streams its hub dataset through `datasets` and prepares into shards, offline, from a small parquet copy of
the hub's layout; the public_1b/public_3b experiment files train on exactly its domains, within budget."""

import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nexus_pretrain.data import store
from nexus_pretrain.data.prepare import ValidationSplitWarning, prepare
from nexus_pretrain.data.recipe import load_recipe
from nexus_pretrain.paths import REPO_ROOT

RECIPES = REPO_ROOT / "data_pipelines" / "recipes" / "nemotron_cc"
# The hub repositories' configs (dataset card `configs:`), as the recipes may name them.
HUB_CONFIGS = {
    "nvidia/Nemotron-CC-v2": ["High-Quality", "High-Quality-Synthetic", "Medium-High-Quality", "Medium-Quality",
                              "Diverse-QA", "Translated-Diverse-QA"],
    "nvidia/Nemotron-CC-Math-v1": ["3", "4plus", "4plus_MIND"],
}
DOCS_PER_CONFIG = 12  # 9 long enough for the recipes' min_chars of 200, 3 too short


def _hub_copy(root: Path) -> dict:
    """A local copy of each hub repository's layout: a dataset card listing the configs, and one folder of
    parquet files per config with an ``id`` and the ``text`` column the recipes read. {repo: local dir}."""
    local = {}
    for repo, configs in HUB_CONFIGS.items():
        folder = root / repo
        card = ["---", "configs:"]
        for config in configs:
            (folder / config).mkdir(parents=True)
            texts = [f"{repo} {config} document {i}. " + "Words of a pretraining page. " * (12 if i % 4 else 1)
                     for i in range(DOCS_PER_CONFIG)]
            table = pa.table({"id": [f"{config}-{i:04d}" for i in range(DOCS_PER_CONFIG)], "text": texts})
            pq.write_table(table, folder / config / "part_00000.parquet")
            card += [f"- config_name: '{config}'", "  data_files:", "  - split: train", f"    path: {config}/*.parquet"]
        (folder / "README.md").write_text("\n".join([*card, "---", f"# {repo} (test copy)", ""]))
        local[repo] = folder
    return local


def test_every_recipe_prepares_offline_from_the_hub_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    local = _hub_copy(tmp_path / "hub")
    recipes = [load_recipe(p) for p in sorted(RECIPES.glob("*.yaml"))]
    assert {r.domain for r in recipes} == {"web_high", "web_medium_high", "web_synthetic", "qa", "cc_math"}
    for r in recipes:
        assert r.kind == "hub" and r.source["text_field"] == "text" and not r.ood
        assert r.source["config"] in HUB_CONFIGS[r.source["name"]], r.path
        r.source["name"] = str(local[r.source["name"]])  # the same datasets call, on the local copy
    with pytest.warns(ValidationSplitWarning):  # 9 documents hold no 0.1% validation split
        summaries = prepare(recipes, tmp_path / "nemotron_cc", progress=False)
    assert [s["skipped"] for s in summaries] == [False] * len(recipes)
    for r in recipes:
        manifest = store.read_manifest(tmp_path / "nemotron_cc", r.domain)
        assert manifest["complete"] and manifest["documents_done"] == 9, r.domain  # the 3 short ones filtered
        assert manifest["tokens_done"] > 9 * 50 and manifest["source"].endswith(f"config={r.source['config']}")


def test_public_experiments_train_on_the_recipe_domains_within_their_budgets():
    from nexus_pretrain.experiments.files import budget_spec, compose_many

    recipes = {r.domain: r for r in (load_recipe(p) for p in RECIPES.glob("*.yaml"))}
    legal = load_recipe(REPO_ROOT / "data_pipelines" / "recipes" / "embedded_legal.yaml")
    for name, cfg in zip(("public_1b", "public_3b"), compose_many([["+experiment=public_1b"],
                                                                    ["+experiment=public_3b"]])):
        d = cfg.data
        assert d.path == "data/nemotron_cc" and d.source == "shards" and d.name == "nemotron_cc"
        trained = {k: w for k, w in d.domains.items() if w > 0}  # the schema's web/math/code are zeroed
        assert set(trained) == set(recipes) and set(d.domains) - set(trained) == {"web", "math", "code"}, name
        assert list(d.ood_domains) == [legal.domain] and legal.ood
        tokens = budget_spec(name).tokens()
        total = sum(trained.values())
        for domain, weight in trained.items():  # enough tokens that no domain repeats over the run
            assert recipes[domain].token_budget >= math.ceil(tokens * weight / total), (name, domain)
    readme = (RECIPES / "README.md").read_text()
    assert all(f"`{p.name}`" in readme for p in RECIPES.glob("*.yaml"))
