"""Making a run longer on resume: trainer.max_steps may grow as long as the learning rate of the steps
already taken stays what they trained with; phases given as fractions move with it, and the refusal
names the same phases in steps, which keep them where they were."""

import json

import pytest

from nexus_pretrain.errors import RunError
from nexus_pretrain.train import run_identity
from nexus_pretrain.train.trainer import Trainer

from .test_run_integrity import config, write_checkpoints

FRACTIONS = ["schedule.warmup_steps=0.4", "schedule.decay_steps=0.2"]


def test_a_longer_run_that_rewrites_the_schedule_already_taken_is_refused_with_the_phases_in_steps(tmp_path):
    """Phases given as fractions of max_steps move when max_steps does: the learning rate of steps
    already taken would no longer be the one they were trained with. The warmup in steps keeps it."""
    run = tmp_path / "run"
    write_checkpoints(run, config(run, "trainer.max_steps=10", *FRACTIONS))
    longer = config(run, "trainer.max_steps=20", *FRACTIONS, "trainer.resume=auto")
    with pytest.raises(RunError, match=r"trainer.max_steps: 10 -> 20 \(the learning rate of step 1, already taken, "
                                       r"would be x0.125 instead of x0.25\) \(giving "
                                       r"schedule.warmup_steps=4 keeps the steps taken as they were\).*allow_config_change=\[trainer.max_steps\]"):
        run_identity.prepare_start(longer, world_size=1)


def test_the_phases_in_steps_resume_the_longer_run_recording_both_changes(tmp_path):
    run = tmp_path / "run"
    (checkpoint,) = write_checkpoints(run, config(run, "trainer.max_steps=10", *FRACTIONS))
    longer = config(run, "trainer.max_steps=20", "schedule.warmup_steps=4", "schedule.decay_steps=0.2",
                    "trainer.resume=auto")
    assert run_identity.prepare_start(longer, world_size=1) == checkpoint
    (record,) = [json.loads(line) for line in (run / "config_changes.jsonl").read_text().splitlines()]
    assert record["operational"] == {"trainer.max_steps": [10, 20], "schedule.warmup_steps": [0.4, 4]}


@pytest.mark.parametrize("phases, refused", [
    (["schedule.warmup_steps=3"], "schedule.warmup_steps: 0.4 -> 3.0"),  # 3 steps, not 4: another warmup
    (["schedule.decay_steps=3"], "schedule.decay_steps: 0.2 -> 3.0"),
    (["schedule.name=cosine"], "schedule.name: wsd -> cosine"),
])
def test_phases_that_come_to_other_steps_are_what_the_run_is(tmp_path, phases, refused):
    run = tmp_path / "run"
    write_checkpoints(run, config(run, "trainer.max_steps=10", *FRACTIONS))
    with pytest.raises(RunError, match=refused.replace(".", r"\.")):
        run_identity.prepare_start(config(run, "trainer.max_steps=10", *FRACTIONS, *phases, "trainer.resume=auto"),
                                   world_size=1)


def test_a_run_decayed_past_its_old_end_gets_no_pinning_advice(tmp_path):
    """Steps 9 and 10 of 10 were in the decay; in a run of 20 they would be at the peak however the phases
    are given, so the refusal names no phases."""
    run = tmp_path / "run"
    write_checkpoints(run, config(run, "trainer.max_steps=10", *FRACTIONS), steps=(10,))
    with pytest.raises(RunError) as info:
        run_identity.prepare_start(config(run, "trainer.max_steps=20", "schedule.warmup_steps=4",
                                          "schedule.decay_steps=0.2", "trainer.resume=auto"), world_size=1)
    message = str(info.value)
    assert "trainer.max_steps: 10 -> 20 (the learning rate of step 9, already taken" in message
    assert "giving" not in message


def test_the_longer_run_trains_on_from_the_checkpoint_with_the_learning_rates_it_had(tmp_path):
    run = tmp_path / "run"
    Trainer(config(run, "trainer.max_steps=10", *FRACTIONS, "trainer.checkpoint_every=2")).fit(until_step=2)
    first = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    Trainer(config(run, "trainer.max_steps=20", "schedule.warmup_steps=4", "schedule.decay_steps=0.2",
                   "trainer.checkpoint_every=2", "trainer.resume=auto")).fit(until_step=6)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    lrs = {r["step"]: r["lr"] for r in records if "lr" in r}
    assert {r["step"]: r["lr"] for r in first if "lr" in r} == {s: lrs[s] for s in (1, 2)}
    peak = lrs[4]
    assert [lrs[s] / peak for s in (3, 4, 5, 6)] == pytest.approx([0.75, 1.0, 1.0, 1.0])
