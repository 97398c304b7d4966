"""The Llama model: preset sizes, causality, GQA, and Hugging Face round trips."""

from types import SimpleNamespace

import pytest
import torch

from nexus_pretrain.model.hf import export_hf, import_hf
from nexus_pretrain.model.llama import Llama, ModelArgs, count_parameters
from nexus_pretrain.model.presets import PAPER_SIZES, PRESETS, mfu_parameters, non_embedding_parameters, resolve_model_args


def tiny_args(**overrides) -> ModelArgs:
    return resolve_model_args(SimpleNamespace(preset="tiny", **overrides), vocab_size=500, seq_len=64)


@pytest.mark.parametrize("preset", list(PAPER_SIZES))
def test_preset_non_embedding_counts_match_paper_sizes(preset):
    args = resolve_model_args(SimpleNamespace(preset=preset), vocab_size=32000, seq_len=2048)
    count = non_embedding_parameters(args)
    print(f"{preset}: {count / 1e6:.1f}M non-embedding parameters (paper: {PAPER_SIZES[preset] / 1e6:.0f}M)")
    assert abs(count / PAPER_SIZES[preset] - 1) < 0.10


def test_shape_formula_matches_module_parameters():
    args = tiny_args()
    model = Llama(args)
    total = sum(p.numel() for p in model.parameters())
    assert non_embedding_parameters(args) == total - 2 * args.vocab_size * args.dim
    assert count_parameters(model) == total - args.vocab_size * args.dim == mfu_parameters(args)
    tied = tiny_args(tie_embeddings=True)  # one matrix for both ends: the head's matmuls still count
    assert mfu_parameters(tied) == count_parameters(Llama(tied)) == mfu_parameters(args)


def test_overrides_win_over_preset_and_vocab_rounds_up():
    args = tiny_args(n_layers=2, dim=64, n_heads=2, n_kv_heads=1)
    assert (args.n_layers, args.dim, args.n_heads, args.n_kv_heads) == (2, 64, 2, 1)
    assert args.vocab_size == 512 and args.max_seq_len == 64
    assert PRESETS["tiny"]["n_layers"] == 4


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="not divisible by model.n_kv_heads"):
        tiny_args(n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="smaller than the tokenizer"):
        tiny_args(vocab_size=100)


def test_forward_is_causal():
    torch.manual_seed(0)
    model = Llama(tiny_args()).eval()
    x = torch.randint(0, 500, (2, 32))
    y = x.clone()
    y[:, 20:] = torch.randint(0, 500, (2, 12))
    with torch.no_grad():
        a, b = model(x), model(y)
    assert a.shape == (2, 32, 512)
    torch.testing.assert_close(a[:, :20], b[:, :20])
    assert not torch.allclose(a[:, 20:], b[:, 20:])


def test_activation_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    model = Llama(tiny_args())
    x = torch.randint(0, 500, (2, 16))
    model(x).sum().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.activation_checkpointing = True
    model(x).sum().backward()
    for g, p in zip(plain, model.parameters()):
        torch.testing.assert_close(g, p.grad)


@pytest.mark.parametrize("tie", [False, True])
def test_hf_export_loads_in_transformers_with_equal_logits_and_imports_back(tmp_path, tie):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = Llama(tiny_args(tie_embeddings=tie)).eval()
    with torch.no_grad():
        for p in model.parameters():  # non-trivial norm weights too
            p.add_(0.01 * torch.randn_like(p))
    export_hf(model, tmp_path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    x = torch.randint(0, 500, (2, 48))
    with torch.no_grad():
        ours, theirs = model(x), hf(x).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    back = import_hf(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(back(x), ours, rtol=0, atol=0)
