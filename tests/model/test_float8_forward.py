"""What each FP8 layer's forward computes, and when: each input and weight cast to FP8 once (the same numbers as
torchao's own layers, with fewer reductions), and evaluations through bf16 matmuls (model.float8_eval=bf16).
CPU, FP8 emulated (see test_float8.py)."""

import pytest
import torch
from torch import nn

from nexus_pretrain.config import ModelConfig
from nexus_pretrain.model import float8
from nexus_pretrain.model.llama import Llama
from nexus_pretrain.model.presets import resolve_model_args

from .test_float8 import train_losses


# ------------------------------------------------------------------------------------ cast once
def _abs_max_reductions_per_graph(module: nn.Module, x: torch.Tensor) -> dict:
    """How many abs-max reductions (FP8 scales) the compiled forward and backward graphs of ``module`` take."""
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.partitioners import min_cut_rematerialization_partition

    counts = {}

    def count(name):
        def compiler(gm, inputs):
            counts[name] = sum(node.target is torch.ops.aten.abs.default for node in gm.graph.nodes)
            return gm.forward
        return compiler

    torch._dynamo.reset()
    backend = aot_autograd(fw_compiler=count("forward"), bw_compiler=count("backward"),
                           partition_fn=min_cut_rematerialization_partition)
    torch.compile(module, backend=backend)(x).sum().backward()
    return counts


@pytest.mark.parametrize("recipe", ["tensorwise", "rowwise"])
def test_input_and_weight_are_cast_once_with_torchao_results_exactly(recipe, monkeypatch):
    pytest.importorskip("torchao")
    from torchao.float8 import convert_to_float8_training

    torch.manual_seed(0)
    ours, theirs = nn.Sequential(nn.Linear(64, 48, bias=False)), nn.Sequential(nn.Linear(64, 48, bias=False))
    theirs.load_state_dict(ours.state_dict())
    float8.convert(ours, recipe, min_dim=0, emulate=True)
    convert_to_float8_training(theirs, config=float8.float8_config(recipe, emulate=True, fast_accum=True))
    x = torch.randn(2, 8, 64)
    results = []
    for model in (ours, theirs):
        xi = x.clone().requires_grad_()
        out = model(xi)
        out.pow(2).sum().backward()
        results.append((out, xi.grad, model[0].weight.grad))
    assert all(torch.equal(a, b) for a, b in zip(*results))  # the same FP8 values, so the same numbers
    # The input, the weight and the output gradient; torchao takes the input's maximum a second time for the
    # weight gradient (in forward or backward, wherever the partitioner puts it), ours only with rowwise
    # scaling. The weight's second cast, for the input gradient, repeats the first exactly on the same tensor,
    # so compiled graphs already merge the two (eager, torchao computes both).
    assert sum(_abs_max_reductions_per_graph(ours, x).values()) == (3 if recipe == "tensorwise" else 4)
    assert sum(_abs_max_reductions_per_graph(theirs, x).values()) == 4
    monkeypatch.setattr(float8, "CAST_ONCE", False)  # nexus-bench --float8-cast-twice
    assert sum(_abs_max_reductions_per_graph(ours, x).values()) == 4


def test_bench_can_leave_the_casts_to_torchao_to_measure_the_lever(monkeypatch, capsys):
    pytest.importorskip("torchao")
    from nexus_pretrain.bench import main

    traced = []
    real = float8.cast_once
    monkeypatch.setattr(float8, "cast_once", lambda x, *a: traced.append(float8.CAST_ONCE) or real(x, *a))
    main(["--preset", "tiny", "--vocab", "256", "--seq-len", "32", "--micro-batch", "2", "--accum", "1", "--steps", "1",
          "--warmup", "1", "--device", "cpu", "--optimizers", "adamw", "--models", "ours_fp8", "--float8-min-dim", "0",
          "--in-process", "--float8-cast-twice"])
    assert traced and not any(traced) and "float8_cast_twice=True" in capsys.readouterr().out
    assert float8.CAST_ONCE  # restored once the run is done


# ------------------------------------------------------------------------------------ evaluations
@pytest.mark.parametrize("compile", [False, True])
def test_bf16_evaluations_of_an_fp8_run_equal_its_weights_evaluated_without_fp8(tmp_path, compile):
    """model.float8_eval=bf16: the run trains in FP8 and its held-out losses are those of a plain model with
    its weights; with fp8 they come from the FP8 forward. Training is the same either way."""
    pytest.importorskip("torchao")
    from nexus_pretrain.evaluation.heldout import heldout_metrics

    fp8_args = ["model.float8=true", "model.float8_min_dim=0", f"trainer.compile={str(compile).lower()}"]
    fp8_eval, fp8_eval_losses = train_losses(tmp_path / "fp8", *fp8_args)
    bf16_eval, bf16_eval_losses = train_losses(tmp_path / "bf16", *fp8_args, "model.float8_eval=bf16")
    assert bf16_eval_losses == fp8_eval_losses and bf16_eval.model.head_linear.float8  # FP8 restored after evaluating
    plain = Llama(bf16_eval.model.args)
    plain.load_state_dict(bf16_eval.model.state_dict())  # the same keys: the FP8 layers keep plain weights
    d = bf16_eval.cfg.data
    expected = heldout_metrics(plain, bf16_eval.data.val_streams, bf16_eval.data.ood_streams,
                               bf16_eval.data.sampler.weights, d.seq_len, d.eval_sequences,
                               bf16_eval.cfg.trainer.micro_batch, torch.device("cpu"), bf16_eval.backend.autocast)
    final = {k: v for k, v in bf16_eval.evaluate().items() if k in expected}
    assert final == expected
    assert fp8_eval.evaluate()["val/pretrain"] != expected["val/pretrain"]


def test_bf16_evaluations_need_bf16_weight_gathers_under_fsdp2():
    """torchao all-gathers FP8-wrapped weights in FP8 whatever the layer's config says at the time."""
    pytest.importorskip("torchao")
    from torchao.float8.fsdp_utils import WeightWithDynamicFloat8CastTensor

    for float8_eval, fp8_gathered in (("fp8", True), ("bf16", False)):
        model = Llama(resolve_model_args(ModelConfig(preset="tiny", float8="true", float8_min_dim=0,
                                                     float8_eval=float8_eval), 256, 32))
        float8.apply_float8(model, torch.device("cpu"), sharded=True)
        weight = model.layers[0].feed_forward.w13.weight
        assert isinstance(weight.data, WeightWithDynamicFloat8CastTensor) == fp8_gathered
