"""Nexus and AdamW side by side on the embedded corpus (CPU): same data order, same budget.

Asserted: Nexus's final training loss is within 0.15 nats of AdamW's (the paper's "same pretraining
loss" at this tiny scale), both runs log the cross-domain gradient cosine, and Nexus logs its
pseudo-gradient. Not asserted: that Nexus's cosine is higher. Over seeds 0-2 of this configuration it
was higher in two and lower in one (the per-domain gradients of 32 windows are noisy at this size),
so a single-seed ordering would be a coin flip dressed up as a test; the closing note of the Nexus
issue reports those numbers.
"""

import json

from nexus_pretrain.demo import compose_config
from nexus_pretrain.train.trainer import Trainer

CONFIG = ["model.dim=64", "model.n_layers=2", "model.n_heads=2", "model.n_kv_heads=1", "model.ffn_dim=192",
          "data.seq_len=64", "data.eval_sequences=32", "data.microbatch_domains=per_domain",
          "trainer.global_batch=12", "optim.inner_steps=3", "trainer.micro_batch=4", "trainer.max_steps=80", "schedule.warmup_steps=8",
          "schedule.decay_steps=20", "optim.lr=0.01", "logging.cosine_every=10", "logging.progress_bar=false",
          "trainer.eval_every=0", "trainer.checkpoint_every=0", "trainer.export_hf=false"]


def run(tmp_path, optim):
    run_dir = tmp_path / optim
    final = Trainer(compose_config([*CONFIG, f"optim={optim}", f"trainer.run_dir={run_dir}"])).fit()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return final, records


def test_nexus_matches_adamw_training_loss_and_logs_gradient_cosine(tmp_path):
    adamw, adamw_records = run(tmp_path, "adamw")
    nexus, nexus_records = run(tmp_path, "nexus")
    assert abs(nexus["loss"] - adamw["loss"]) < 0.15, (nexus["loss"], adamw["loss"])
    assert nexus["loss"] < 7.0 and adamw["loss"] < 7.0  # both learned (start: ln 8192 = 9.0)
    for records in (adamw_records, nexus_records):
        logged = [r for r in records if "cos/mean" in r]
        assert len(logged) == 8 and all(-1 <= r["cos/mean"] <= 1 for r in logged)
        assert {"cos/web-math", "cos/web-code", "cos/math-code"} <= set(logged[-1])
    # 3 inner steps of normalized size gamma = 0.01: the displacement is at most 0.03.
    assert all(0 < r["grad_norm"] <= 0.03 + 1e-6 for r in nexus_records if "grad_norm" in r)
