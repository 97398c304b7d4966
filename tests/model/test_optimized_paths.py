"""Every throughput path of the model against the plain one: the fused norm-head-loss, regional
compilation, selective activation checkpointing, query/key/value as three matmuls, the bf16 residual
stream, and the Hugging Face model nexus-bench compares against. Loss and gradients must agree to fp32
rounding (bf16 rounding for the bf16 residual stream)."""

from types import SimpleNamespace

import pytest
import torch

from nexus_pretrain.model.hf import to_hf_state_dict
import torch.nn.functional as F

from nexus_pretrain.model.llama import INDUCTOR_OPTIONS, Llama, QKVProjection, compile_regions, sequence_losses
from nexus_pretrain.model.presets import resolve_model_args

VOCAB = 500


def tiny(**overrides) -> Llama:
    torch.manual_seed(0)
    model = Llama(resolve_model_args(SimpleNamespace(preset="tiny", **overrides), vocab_size=VOCAB, seq_len=64))
    with torch.no_grad():
        for p in model.parameters():  # non-trivial norm weights too
            p.add_(0.01 * torch.randn_like(p))
    return model


def batch(rows: int = 3, length: int = 33) -> torch.Tensor:
    return torch.randint(0, VOCAB, (rows, length), generator=torch.Generator().manual_seed(1))


def loss_and_grads(model: Llama, tokens: torch.Tensor, fused: bool = True):
    """Mean loss and a copy of every gradient, by the fused path or from the logits."""
    model.zero_grad(set_to_none=True)
    inputs, targets = tokens[:, :-1], tokens[:, 1:].clone()
    targets[0, :5] = -100  # ignored positions (SFT prompts) must be ignored alike
    rows = model(inputs, targets) if fused else sequence_losses(model(inputs), targets)
    rows.mean().backward()
    return rows.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def assert_same(a, b, rtol=1e-5, atol=1e-6):
    torch.testing.assert_close(a[0], b[0], rtol=rtol, atol=atol)
    assert a[1].keys() == b[1].keys()
    for name in a[1]:
        torch.testing.assert_close(a[1][name], b[1][name], rtol=rtol, atol=atol, msg=name)


def test_fused_head_loss_equals_loss_from_logits():
    model, tokens = tiny(), batch()
    fused = loss_and_grads(model, tokens, fused=True)
    plain = loss_and_grads(model, tokens, fused=False)
    assert fused[0].shape == (3,)
    assert_same(fused, plain, rtol=0, atol=0)


def test_selective_activation_checkpointing_keeps_gradients():
    model, tokens = tiny(), batch()
    plain = loss_and_grads(model, tokens)
    model.activation_checkpointing = True
    for every in (1, 2, 3):
        model.recompute_every = every
        assert_same(loss_and_grads(model, tokens), plain, rtol=0, atol=0)


def test_regional_compilation_matches_eager():
    model, tokens = tiny(), batch()
    eager = loss_and_grads(model, tokens)
    compile_regions(model)
    assert_same(loss_and_grads(model, tokens), eager, rtol=1e-4, atol=1e-5)
    torch._dynamo.reset()


def test_regions_compile_with_the_inductor_options_unless_told_otherwise(monkeypatch):
    seen = []
    monkeypatch.setattr(torch, "compile", lambda fn, options=None: seen.append(options) or fn)
    model = tiny()
    compile_regions(model)
    assert seen == [INDUCTOR_OPTIONS] * (len(model.layers) + 1)  # each block and the norm-head-loss
    assert INDUCTOR_OPTIONS == {"triton.prefer_nd_tiling": True, "triton.tile_reductions": True}
    seen.clear()
    compile_regions(model, options={})  # Inductor's defaults, for nexus-bench --inductor-defaults
    assert seen == [{}] * (len(model.layers) + 1)


def test_hugging_face_model_of_the_same_weights_gives_the_same_loss():
    transformers = pytest.importorskip("transformers")
    from nexus_pretrain.bench.models import build_hf
    from nexus_pretrain.model.hf import hf_config

    model, tokens = tiny(), batch()
    hf = build_hf(model.args, torch.device("cpu"), compile=False, activation_checkpointing=0)
    hf.module.load_state_dict(to_hf_state_dict(model))
    ours = model(tokens[:, :-1], tokens[:, 1:]).mean()
    # Hugging Face shifts its labels inside: T+1 tokens give the same T predictions as ours.
    theirs = hf.module(input_ids=tokens, labels=tokens).loss
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert isinstance(hf.module, transformers.LlamaForCausalLM)
    assert hf.module.config.to_dict()["hidden_size"] == hf_config(model.args)["hidden_size"]


def test_qkv_projection_is_the_fused_matmul_split():
    torch.manual_seed(0)
    proj = QKVProjection(16, [8, 4, 4])
    x = torch.randn(2, 5, 16, requires_grad=True)
    q, k, v = proj(x)
    want = F.linear(x, proj.weight).split([8, 4, 4], dim=-1)
    for got, expected in zip((q, k, v), want):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    (q.sum() + 2 * k.sum() + 3 * v.sum()).backward()
    weight_grad = proj.weight.grad.clone()
    proj.weight.grad = None
    sum(c * t.sum() for c, t in zip((1, 2, 3), want)).backward()
    torch.testing.assert_close(weight_grad, proj.weight.grad, rtol=1e-6, atol=1e-6)


def test_bf16_residual_stream_keeps_loss_and_gradients_to_bf16_rounding():
    fp32_model, tokens = tiny(residual_dtype="embedding"), batch()
    bf16_model = tiny()  # the default
    residual_dtypes = []
    for block in bf16_model.layers:
        block.register_forward_hook(lambda module, inputs, out: residual_dtypes.append(out.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fp32_residual = loss_and_grads(fp32_model, tokens)
        bf16_residual = loss_and_grads(bf16_model, tokens)
    assert set(residual_dtypes) == {torch.bfloat16}
    assert_same(bf16_residual, fp32_residual, rtol=0.05, atol=2e-3)
    plain = loss_and_grads(bf16_model, tokens)  # without autocast the option changes nothing
    assert_same(plain, loss_and_grads(tiny(residual_dtype="embedding"), tokens), rtol=0, atol=0)
    # null, as run configs saved before bfloat16 became the default say, keeps their fp32 residual stream
    assert tiny(residual_dtype=None).args.residual_dtype == "embedding"


def test_unknown_residual_dtype_is_refused():
    with pytest.raises(ValueError, match="residual_dtype"):
        tiny(residual_dtype="float16")
