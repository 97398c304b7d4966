"""The analyses' inputs: checkpoints, training mixture, gold-answer loss equal to nexus-eval's; cosines."""

import pytest
import torch

from nexus_pretrain.analysis.downstream_cosine import checkpoint_cosines
from nexus_pretrain.optim.grad_similarity import combine_gradients, gradient_cosines, named_gradients
from nexus_pretrain.analysis.sources import (domain_loss, gold_loss, mixture_loss, resolve_checkpoints)


def test_resolve_checkpoints(run_dir):
    every = resolve_checkpoints([run_dir])
    assert [p.name for p in every] == ["step_00000002", "step_00000003"]
    assert resolve_checkpoints([run_dir], all_of_run=False) == every[-1:]
    assert resolve_checkpoints([every[0]]) == every[:1]
    with pytest.raises(FileNotFoundError, match="not a checkpoint directory"):
        resolve_checkpoints([run_dir / "checkpoints"])


def test_gold_loss_equals_nexus_eval_downstream_loss(final, bench_dir, gsm8k):
    from nexus_pretrain.evaluation.benchmarks import select
    from nexus_pretrain.evaluation.downstream_loss import downstream_losses, load_tasks
    from nexus_pretrain.evaluation.harness import task_manager

    benchmarks = select(["gsm8k"])
    tasks = load_tasks(benchmarks, task_manager(benchmarks, bench_dir, bench_dir / "work"))
    expected = downstream_losses(final.model, final.tokenizer, tasks, final.model.args.max_seq_len, batch_size=2)
    assert len(gsm8k) == 3 == expected["GSM8k"].examples
    expected_loss = expected["GSM8k"].loss
    assert float(gold_loss(final.model, gsm8k, batch_size=2).detach()) == pytest.approx(expected_loss, rel=1e-6)
    # batching does not change the value
    assert float(gold_loss(final.model, gsm8k, batch_size=1).detach()) == pytest.approx(expected_loss, rel=1e-6)


def test_cosine_of_a_source_with_itself_is_one(final, train_set, gsm8k):
    web = train_set.batches["web"]
    grads = named_gradients(final.model, lambda m, b: domain_loss(m, b), {"web": web, "again": web})
    cos = gradient_cosines(grads, [("web", "web"), ("web", "again")])
    assert cos["cos/web-web"] == pytest.approx(1.0, abs=1e-6)
    assert cos["cos/web-again"] == pytest.approx(1.0, abs=1e-6)


def test_training_gradient_is_the_mixture_gradient(final, train_set):
    grads = named_gradients(final.model, lambda m, b: domain_loss(m, b), train_set.batches)
    mixed = combine_gradients(grads, train_set.weights)
    params = [p for p in final.model.parameters() if p.requires_grad]
    direct = torch.autograd.grad(mixture_loss(final.model, train_set), params)
    for a, b in zip(mixed, direct):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_checkpoint_cosines_keys_and_ranges(final, train_set, gsm8k):
    cos = checkpoint_cosines(final.model, train_set, {"GSM8k": gsm8k}, batch_size=2)
    domains = list(train_set.batches)
    assert len(domains) == 3
    expected = {"cos/train-GSM8k", *(f"cos/{d}-GSM8k" for d in domains), "cos/web-math", "cos/web-code",
                "cos/math-code", "mean/train-downstream", "mean/domains", "cos/train-legal", "mean/train-ood"}
    assert set(cos) == expected, set(cos) ^ expected
    assert all(-1 - 1e-9 <= v <= 1 + 1e-9 for v in cos.values())
    assert cos["mean/domains"] == pytest.approx((cos["cos/web-math"] + cos["cos/web-code"] + cos["cos/math-code"]) / 3)
    assert final.model.tok_embeddings.weight.grad is None  # autograd.grad only
