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
    small, double = (nexus_precision.alignment_terms(args, state, batches, gamma, ("fp64",))["fp64"]
                     for gamma in (1e-3, 2e-3))
    assert double["alignment"].norm() / small["alignment"].norm() == pytest.approx(4.0, rel=0.02)
    assert double["delta"].norm() / small["delta"].norm() == pytest.approx(2.0, rel=0.01)  # first order
    again = nexus_precision.alignment_terms(args, state, batches, 1e-3, ("fp64",))["fp64"]
    assert torch.equal(again["alignment"], small["alignment"])


def test_the_script_prints_each_precision_against_fp64(capsys):
    pytest.importorskip("torchao")
    rows = nexus_precision.main(["--dim", "32", "--layers", "1", "--vocab", "64", "--seq-len", "16", "--batch", "2",
                                 "--inner-steps", "2", "--ratios", "1e-2"])
    assert set(rows[0]) == {"ratio", "gamma", "alignment_share", "fp32", "bf16", "fp8"}
    assert rows[0]["fp32"]["cos"] > 0.99  # at this step size fp32 keeps the alignment term
    assert "fp8: cos" in capsys.readouterr().out
