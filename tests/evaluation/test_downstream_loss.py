"""Downstream (gold-answer) loss: equal to a hand computation from the Hugging Face model's logits."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from nexus_pretrain.evaluation.benchmarks import BENCHMARKS
from nexus_pretrain.evaluation.downstream_loss import _window, model_downstream_losses

from .benchmark_data import GSM8K, MMLU

pytest.importorskip("lm_eval")  # the eval extra


def _hand_nll(hf_model, tokenizer, context, continuation):
    """Sum NLL and count of the continuation tokens, one unbatched sequence, HF model logits."""
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([[tokenizer.bos_token_id] + whole])
    with torch.no_grad():
        logp = F.log_softmax(hf_model(ids).logits[0, :-1].double(), dim=-1)
    targets = ids[0, 1:]
    n = len(whole) - len(ctx)
    return -logp[-n:].gather(1, targets[-n:, None]).sum().item(), n


def test_downstream_loss_equals_hand_computed_nll(tiny_hf_dir, benchmark_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    subjects = ("anatomy", "astronomy", "virology")  # a few of the 57 MMLU subtasks keep the test fast
    mmlu_subset = replace(BENCHMARKS["mmlu"], subtasks=tuple(f"nexus_mmlu_{s}" for s in subjects))
    losses = model_downstream_losses(tiny_hf_dir, [mmlu_subset, BENCHMARKS["gsm8k"]], benchmark_dir, limit=2,
                                     batch_size=3)
    hf = AutoModelForCausalLM.from_pretrained(tiny_hf_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_hf_dir)
    letters = "ABCD"
    mmlu = [(f"{d['question']}\n" + "\n".join(f"{letters[i]}. {c}" for i, c in enumerate(d["choices"])) + "\nAnswer:",
             " " + d["choices"][d["answer"]]) for d in MMLU if d["subject"] in subjects]
    gsm8k = [(f"Q: {d['question']}\nA:", " " + d["answer"]) for d in GSM8K[:2]]
    for column, pairs in (("MMLU", mmlu), ("GSM8k", gsm8k)):
        sums = [_hand_nll(hf, tok, c, g) for c, g in pairs]
        nll, count = sum(s for s, _ in sums), sum(n for _, n in sums)
        assert losses[column].tokens == count and losses[column].examples == len(pairs)
        assert losses[column].loss == pytest.approx(nll / count, rel=1e-5)


def test_window_keeps_the_continuation_and_drops_context_from_the_left():
    assert _window([0], [1, 2, 3, 4], [5, 6], max_len=4) == ([2, 3, 4, 5, 6], 2)
    assert _window([0], [1], [5, 6], max_len=8) == ([0, 1, 5, 6], 2)
    # a continuation longer than the window is cut at its end
    assert _window([0], [1, 2], [5, 6, 7, 8, 9], max_len=3) == ([2, 5, 6, 7], 3)
