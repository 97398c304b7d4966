"""Background micro-batch loader: same batches as the sampler for any worker count and start step."""

import json

import numpy as np
import pytest
import torch

from nexus_pretrain.config_checks import validate
from nexus_pretrain.data.layout import batch_layout
from nexus_pretrain.data.loader import MicroBatchDataset, MicroBatchLoader
from nexus_pretrain.data.sampler import MixtureSampler
from nexus_pretrain.demo import compose_config
from nexus_pretrain.errors import ConfigError
from nexus_pretrain.train.trainer import Trainer


def make_sampler() -> MixtureSampler:
    rng = np.random.default_rng(0)
    streams = {d: rng.integers(0, 1000, size=5000).astype(np.uint16) for d in ("a", "b", "c")}
    return MixtureSampler(streams, {"a": 1.0, "b": 2.0, "c": 1.0}, seq_len=16, seed=3)


def assert_same(x, y):
    assert torch.equal(x.inputs, y.inputs) and torch.equal(x.targets, y.targets)
    assert torch.equal(x.domain_ids, y.domain_ids) and x.domains == y.domains


def test_dataset_items_are_the_sampler_batches_in_step_micro_order():
    sampler = make_sampler()
    layout = batch_layout(12, 2, 2, 3)
    dataset = MicroBatchDataset(sampler, start_step=5, stop_step=8, layout=layout, rank=1)
    assert len(dataset) == 6 and dataset.position(3) == (6, 1)
    assert_same(dataset[3], sampler.micro_batch(6, layout, 1, 1))
    with pytest.raises(IndexError):
        dataset[6]


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_matches_sampler_from_any_start_and_after_jumps(workers):
    sampler = make_sampler()
    layout = batch_layout(8, 2, 1, 4)
    loader = MicroBatchLoader(sampler, layout, rank=0, stop_step=20, num_workers=workers)
    try:
        # In order from step 3 (a resume), then a jump back to step 1, micro 1 (the loader restarts).
        for step, micro in [(3, 0), (3, 1), (4, 0), (4, 1), (5, 0), (1, 1), (2, 0)]:
            assert_same(loader.get(step, micro), sampler.micro_batch(step, layout, micro, 0))
        with pytest.raises(ValueError, match="outside"):
            loader.get(20, 0)
    finally:
        loader.close()


def test_num_workers_must_be_non_negative(tmp_path):
    cfg = compose_config([f"trainer.run_dir={tmp_path}", "data.num_workers=-1"])
    with pytest.raises(ConfigError, match="data.num_workers"):
        validate(cfg)


def test_training_is_identical_with_and_without_workers(tmp_path):
    small = ["model.dim=32", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=1", "model.ffn_dim=64",
             "data.seq_len=32", "trainer.global_batch=8", "trainer.micro_batch=4", "trainer.max_steps=6",
             "trainer.log_every=1", "trainer.eval_every=0", "trainer.checkpoint_every=0", "trainer.export_hf=false",
             "schedule.warmup_steps=1", "schedule.decay_steps=2", "logging.progress_bar=false"]
    curves = {}
    for workers in (0, 2):
        run_dir = tmp_path / str(workers)
        Trainer(compose_config([*small, f"trainer.run_dir={run_dir}", f"data.num_workers={workers}"])).fit()
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        curves[workers] = [(r["loss"], r["tokens/math"]) for r in records if "loss" in r]
    assert len(curves[0]) == 6 and curves[0] == curves[2]
