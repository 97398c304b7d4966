"""data.source=shards: the trainer reads domains prepared by nexus-data prepare."""

import numpy as np
import pytest

from nexus_pretrain.data import store
from nexus_pretrain.run_data import build_data
from nexus_pretrain.data.prepare import prepare
from nexus_pretrain.demo import compose_config
from nexus_pretrain.train.trainer import Trainer

from .conftest import make_documents, write_recipe
from .test_prepare import other_tokenizer

SMALL = ["model.dim=32", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=1", "model.ffn_dim=64",
         "data.seq_len=16", "data.eval_sequences=2", "trainer.global_batch=4", "trainer.micro_batch=2",
         "schedule.warmup_steps=1", "schedule.decay_steps=2", "logging.progress_bar=false",
         "trainer.export_hf=false", "trainer.checkpoint_every=0"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    recipes = []
    for seed, domain in enumerate(["alpha", "beta", "gamma"]):
        docs = make_documents(40, seed=10 + seed)
        (root / f"{domain}.txt").write_text("\n".join(docs), encoding="utf-8")
        recipes.append(write_recipe(root / f"{domain}.yaml",
                                    f"domain: {domain}\nsource:\n  local: {{paths: [{domain}.txt], format: txt, "
                                    f"sample_by: line}}\nval_fraction: 0.2\nood: {str(domain == 'gamma').lower()}\n"))
    prepare(recipes, root / "out", shard_tokens=400, progress=False)
    return root / "out"


def shard_config(path, run_dir, *extra, domains=None, fixed_shares=None):
    # Hydra merges dict overrides into the preset's {web, math, code}; a real run with other domain
    # names would use its own configs/data/*.yaml, here the composed dataclass is edited instead.
    cfg = compose_config([*SMALL, "data=shards", f"data.path={path}", "data.ood_domains=[gamma]",
                          f"trainer.run_dir={run_dir}", *extra])
    cfg.data.domains = domains or {"alpha": 1.0, "beta": 3.0}
    cfg.data.fixed_shares = fixed_shares or {}
    return cfg


def test_trainer_runs_on_prepared_shards(prepared, tmp_path):
    cfg = shard_config(prepared, tmp_path, "trainer.max_steps=4", "trainer.eval_every=2", "trainer.log_every=1")
    trainer = Trainer(cfg)
    assert isinstance(trainer.data.sampler.streams["beta"], store.ShardedStream)
    final = trainer.fit()
    assert np.isfinite(final["val/pretrain"]) and np.isfinite(final["ood/gamma"])
    assert {"val/alpha", "val/beta"} <= set(final)


def test_fixed_shares_apply_to_shards(prepared, tmp_path):
    data = build_data(shard_config(prepared, tmp_path, fixed_shares={"alpha": 0.7}).data, seed=0)
    assert data.sampler.weights == pytest.approx({"alpha": 0.7, "beta": 0.3})


def test_missing_empty_and_mismatched_domains_are_errors(prepared, tmp_path):
    cfg = shard_config(prepared, tmp_path, domains={"alpha": 1.0, "delta": 1.0})
    with pytest.raises(ValueError, match=rf"{prepared / 'delta' / 'manifest.json'}: not found"):
        build_data(cfg.data, seed=0)
    cfg = shard_config(prepared, tmp_path, domains={"alpha": 1.0, "gamma": 1.0})  # gamma is OOD: no train split
    with pytest.raises(ValueError, match="domain 'gamma' has no train tokens"):
        build_data(cfg.data, seed=0)
    cfg = shard_config(prepared, tmp_path, f"data.tokenizer={other_tokenizer(tmp_path / 'tok')}")
    with pytest.raises(ValueError, match="alpha/manifest.json: shards were made with tokenizer 'embedded'"):
        build_data(cfg.data, seed=0)
