"""scripts/nexus_precision.py: the alignment term it measures is Nexus's second-order part (of order
gamma^2) and identical precisions agree exactly."""

import importlib.util

import pytest
import torch

from nexus_pretrain.config import ModelConfig
from nexus_pretrain.model.llama import Llama
from nexus_pretrain.model.presets import resolve_model_args
from nexus_pretrain.paths import REPO_ROOT

spec = importlib.util.spec_from_file_location("nexus_precision", REPO_ROOT / "scripts" / "nexus_precision.py")
nexus_precision = importlib.util.module_from_spec(spec)
spec.loader.exec_module(nexus_precision)


def setup(dim=32):
    torch.manual_seed(0)
    shape = ModelConfig(preset="tiny", dim=dim, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=64)
    args = resolve_model_args(shape, 64, 16)
    state = Llama(args).state_dict()
    gen = torch.Generator().manual_seed(1)
    return args, state, [torch.randint(0, 64, (2, 17), generator=gen) for _ in range(4)]


def test_alignment_term_is_second_order_in_gamma_and_reproducible():
    args, state, batches = setup()
    (small_delta, small), (double_delta, double) = (nexus_precision.alignment_term(args, state, batches, gamma, "fp64")
                                                    for gamma in (1e-3, 2e-3))
    assert double.norm() / small.norm() == pytest.approx(4.0, rel=0.02)
    assert double_delta.norm() / small_delta.norm() == pytest.approx(2.0, rel=0.01)  # first order
    assert torch.equal(nexus_precision.alignment_term(args, state, batches, 1e-3, "fp64")[1], small)


def test_the_script_prints_each_precision_against_fp64(capsys):
    pytest.importorskip("torchao")
    rows = nexus_precision.main(["--preset", "tiny", "--vocab", "64", "--seq-len", "16", "--batch", "2",
                                 "--inner-steps", "2", "--ratios", "1e-2"])
    assert set(rows[0]) == {"ratio", "gamma", "alignment_share", "fp32", "bf16", "fp8"}
    assert rows[0]["fp32"]["cos"] > 0.99  # at this step size fp32 keeps the alignment term
    assert "fp8: cos" in capsys.readouterr().out


def test_the_script_measures_a_trained_run_on_its_own_held_out_text(tmp_path):
    pytest.importorskip("torchao")
    from nexus_pretrain.demo import compose_config
    from nexus_pretrain.train.trainer import Trainer

    run = tmp_path / "run"
    Trainer(compose_config(["model.dim=64", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=1",
                            "model.ffn_dim=128", "data.seq_len=32", "data.eval_sequences=4", "trainer.global_batch=4",
                            "trainer.micro_batch=4", "trainer.max_steps=2", "schedule.warmup_steps=1",
                            "schedule.decay_steps=1", "trainer.eval_every=0", "trainer.checkpoint_every=0",
                            "trainer.export_hf=true", "logging.progress_bar=false", f"trainer.run_dir={run}"])).fit()
    rows = nexus_precision.main(["--run", str(run), "--batch", "2", "--inner-steps", "2", "--ratios", "1e-2",
                                 "--json-out", str(tmp_path / "out.json")])
    assert rows[0]["fp32"]["cos"] > 0.99 and 0 < rows[0]["alignment_share"] < 1
    assert '"run": "' in (tmp_path / "out.json").read_text()
