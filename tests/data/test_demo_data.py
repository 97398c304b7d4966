"""The demo's data step: the embedded recipes prepared into shards that the trainer reads (data.source=shards)."""

import numpy as np

from nexus_pretrain import demo
from nexus_pretrain.data import embedded, store
from nexus_pretrain.run_data import build_data
from nexus_pretrain.demo import compose_config, describe_prepared, prepare_demo_data


def test_demo_recipes_are_the_embedded_corpus():
    assert [p.stem for p in demo.demo_recipes()] == [f"embedded_{d}" for d in sorted(embedded.DOMAINS)]


def test_prepare_demo_data_is_incremental_and_feeds_the_trainer(tmp_path):
    recipes = [p for p in demo.demo_recipes() if p.stem in ("embedded_web", "embedded_legal")]
    out = tmp_path / "data"
    first = prepare_demo_data(out, recipes)
    assert [s["domain"] for s in first] == ["legal", "web"] and not any(s["skipped"] for s in first)
    for s in first:
        assert s["tokens"] == s["train_tokens"] + s["val_tokens"] > 0
    assert first[0]["train_tokens"] == 0  # legal is OOD: evaluation only
    line = describe_prepared(first, out)
    assert "legal" in line and "web" in line and "tokens/s" in line

    files = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = prepare_demo_data(out, recipes)
    assert all(s["skipped"] for s in again) and "skipped" in describe_prepared(again, out)
    assert [(s["train_tokens"], s["val_tokens"]) for s in again] == [(s["train_tokens"], s["val_tokens"]) for s in first]
    assert files == {p: p.stat().st_mtime_ns for p in out.rglob("*")}

    cfg = compose_config(["data=shards", f"data.path={out}"])
    cfg.data.domains = {"web": 1.0}  # Hydra would merge a dict override into {web, math, code}
    data = build_data(cfg.data, seed=0)
    web = np.asarray(data.sampler.streams["web"])
    assert len(web) == first[1]["train_tokens"] and set(data.ood_streams) == {"legal"}
    tokenizer = embedded.load_tokenizer()
    starts = store.document_starts(out, "legal", "val")
    legal = np.asarray(data.ood_streams["legal"])
    assert tokenizer.decode(legal[starts[0]:starts[1] - 1].tolist()) == embedded.load_documents("legal")[0]
