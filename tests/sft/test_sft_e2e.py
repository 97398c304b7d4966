"""End to end on CPU: pretrain a few steps -> SFT a few steps from it -> evaluate (val/sft and OOD), and the
first SFT loss is the pretrained model's loss on that batch."""

import json

import torch

from nexus_pretrain.evaluation.heldout import run_heldout_losses
from nexus_pretrain.model.llama import sequence_losses
from nexus_pretrain.train.trainer import Trainer

from .conftest import SFT, small_config


def test_pretrain_then_sft_then_eval(pretrained_run, tmp_path):
    cfg = small_config(tmp_path, *SFT, "trainer.max_steps=4", "trainer.log_every=1", "trainer.eval_every=4",
                       "trainer.checkpoint_every=4", f"trainer.init_from={pretrained_run / 'hf'}")
    trainer = Trainer(cfg)
    try:
        with torch.no_grad():  # AdamW: every pass of step 1 sees the pretrained weights
            passes = [sequence_losses(trainer.model(b.inputs), b.targets).mean().item()
                      for b in map(trainer.micro_batch, range(trainer.layout.passes))]
        first_inner = passes[:trainer.layout.local_micro_batches]
        before = trainer.evaluate()
        final = trainer.fit()
    finally:
        trainer.close()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == [1, 2, 3, 4] and set(train[0]) >= {"train/sft", "tokens/sft"}
    # The first step's losses are those of the pretrained weights: on the first inner batch, and on all of them.
    assert abs(train[0]["loss"] - sum(first_inner) / len(first_inner)) < 1e-5
    assert abs(train[0]["inner_loss"] - sum(passes) / len(passes)) < 1e-5
    assert final["val/sft"] == final["val/pretrain"] and {"ood/legal", "ood/mean"} <= set(final)
    assert final["val/sft"] < before["val/sft"]  # 4 steps at LR 1e-3 on 8-sequence batches lower the SFT loss
    assert abs(before["ood/legal"] - final["ood/legal"]) < 1.0
    from transformers import AutoTokenizer

    from nexus_pretrain.sft.template import DEFAULT_CHAT_TEMPLATE

    assert AutoTokenizer.from_pretrained(str(tmp_path / "hf")).chat_template == DEFAULT_CHAT_TEMPLATE
    again = run_heldout_losses(tmp_path)  # the evaluation stage's held-out losses match the in-loop ones
    assert abs(again["val/sft"] - final["val/sft"]) < 1e-5 and abs(again["ood/mean"] - final["ood/mean"]) < 1e-5


def test_sft_resume_is_exact(pretrained_run, tmp_path):
    def sft(run_dir, *extra):
        return small_config(run_dir, *SFT, "trainer.max_steps=4", "trainer.checkpoint_every=2", "optim=nexus",
                            f"trainer.init_from={pretrained_run}", *extra)

    straight = Trainer(sft(tmp_path / "straight"))
    straight.fit()
    interrupted = Trainer(sft(tmp_path / "resumed"))
    interrupted.fit(until_step=2)
    resumed = Trainer(sft(tmp_path / "resumed", "trainer.resume=auto"))
    assert resumed.fit()["resumed_from"] == 2.0
    for trainer in (straight, interrupted, resumed):
        trainer.close()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
