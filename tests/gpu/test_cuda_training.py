"""GPU-only checks (skipped without CUDA): bf16 training with compile, and the offloaded anchor."""

import json

import pytest
import torch

from nexus_pretrain.demo import compose_config
from nexus_pretrain.train.trainer import Trainer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

SMALL = ["model.dim=256", "model.n_layers=4", "model.n_heads=4", "model.n_kv_heads=2", "model.ffn_dim=768",
         "data.seq_len=256", "trainer.global_batch=32", "trainer.micro_batch=8", "trainer.max_steps=30",
         "schedule.warmup_steps=5", "schedule.decay_steps=10", "trainer.log_every=5", "trainer.eval_every=0",
         "trainer.checkpoint_every=0", "trainer.export_hf=false", "logging.progress_bar=false", "optim.lr=0.005"]


@pytest.mark.parametrize("optim", ["adamw", "nexus"])
def test_bf16_compiled_training_learns_on_gpu(tmp_path, optim):
    trainer = Trainer(compose_config([*SMALL, f"optim={optim}", "trainer.compile=true", f"trainer.run_dir={tmp_path}"]))
    assert trainer.backend.device.type == "cuda" and trainer.backend.dtype == torch.bfloat16
    before = trainer.evaluate()["val/pretrain"]
    final = trainer.fit()
    assert final["val/pretrain"] < before - 1.0
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all("peak_mem_gib" in r for r in records if "loss" in r)


def test_offloaded_anchor_gives_the_same_parameters():
    """Anchor in pinned CPU memory with side-stream copies vs resident on the GPU: identical results."""
    from torch import nn

    from nexus_pretrain.config import OptimConfig
    from nexus_pretrain.optim.build import build_optimizer

    results = []
    for offload in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 64)).cuda()
        opt = build_optimizer(OptimConfig(name="nexus", offload_anchor=offload, lr=1e-2), model)
        gen = torch.Generator(device="cuda").manual_seed(1)
        for _ in range(5):
            for _ in range(4):
                x = torch.randn(32, 64, device="cuda", generator=gen)
                (model(x) - x.flip(-1)).square().mean().div(4).backward()
                opt.micro_step()
            opt.step()
            opt.zero_grad()
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

