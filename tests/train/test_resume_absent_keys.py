"""A run saved before a config key existed resumes only as what it was then: the key's absence means
what the code did at the time (run_identity.ABSENT_MEANT), not today's default."""

import pytest
import torch

from nexus_pretrain.config import BackendConfig, OptimConfig
from nexus_pretrain.errors import RunError
from nexus_pretrain.optim.build import build_optimizer
from nexus_pretrain.train import checkpoint as ckpt
from nexus_pretrain.train import run_identity
from nexus_pretrain.train.backends.single import SingleDevice

from .test_run_integrity import config, write_checkpoints


def test_fp8_runs_saved_before_the_head_and_fast_accumulation_keys_do_not_resume_into_them(tmp_path):
    """Those keys came later with true as their default; an FP8 run saved without them trained with neither."""
    def saved_without_them(cfg):
        old = run_identity.resolved(cfg)
        del old["model"]["float8_head"], old["model"]["float8_fast_accum"]
        return old

    fp8 = config(tmp_path, "model.float8=true")
    older = saved_without_them(fp8)
    del older["model"]["residual_dtype"]  # before the key existed, the residual stream kept the embedding's dtype
    identity, _ = run_identity.config_changes(older, run_identity.resolved(fp8), 2)
    assert run_identity.describe(identity).startswith("model.residual_dtype: embedding -> bfloat16; ")
    identity, _ = run_identity.config_changes(saved_without_them(fp8), run_identity.resolved(fp8), 2)
    assert run_identity.describe(identity) == "model.float8_fast_accum: false -> true; model.float8_head: false -> true"
    as_then = config(tmp_path, "model.float8=true", "model.float8_head=false", "model.float8_fast_accum=false")
    assert run_identity.config_changes(saved_without_them(fp8), run_identity.resolved(as_then), 2) == ([], [])
    # A bf16 run resumes whatever the FP8 settings say; turning FP8 on is a change of what it is.
    bf16 = saved_without_them(config(tmp_path))
    assert run_identity.config_changes(bf16, run_identity.resolved(config(tmp_path, "model.float8_recipe=rowwise")),
                                       2) == ([], [])
    identity, _ = run_identity.config_changes(bf16, run_identity.resolved(fp8), 2)
    assert run_identity.describe(identity) == ("model.float8: false -> true; model.float8_fast_accum: false -> true; "
                                               "model.float8_head: false -> true")


def test_nexus_runs_saved_before_inner_steps_existed_keep_their_k_on_resume(tmp_path):
    """Before optim.inner_steps, Nexus took one inner step per micro-batch: K = global batch / (micro-batch
    x ranks), a number the saved config does not state; resuming under the default K = 4 is refused."""
    old = run_identity.resolved(config(tmp_path, "optim=nexus", "trainer.global_batch=8", "trainer.micro_batch=4"))
    del old["optim"]["inner_steps"]
    new = run_identity.resolved(config(tmp_path, "optim=nexus", "trainer.global_batch=8", "trainer.micro_batch=4"))
    for world_size, k in ((1, 2), (2, 1)):
        identity, _ = run_identity.config_changes(old, new, 2, world_size)
        assert run_identity.describe(identity) == f"optim.inner_steps: {k} -> 4"
    same_k = run_identity.resolved(config(tmp_path, "optim=nexus", "trainer.global_batch=8", "trainer.micro_batch=4",
                                          "optim.inner_steps=2"))
    assert run_identity.config_changes(old, same_k, 2, 1) == ([], [])
    run = tmp_path / "run"
    saved = run_identity.resolved(config(run, "optim=nexus"))
    del saved["optim"]["inner_steps"]
    model = torch.nn.Linear(4, 2)
    checkpointer = ckpt.Checkpointer(run, SingleDevice(BackendConfig(device="cpu")), 5)
    checkpointer.save(2, model, build_optimizer(OptimConfig(name="adamw"), model), {"domain_tokens": {}, "config": saved})
    with pytest.raises(RunError, match=r"optim.inner_steps: 2 -> 4"):  # SMALL: global batch 4, micro-batch 2
        run_identity.prepare_start(config(run, "optim=nexus", "trainer.resume=auto"), world_size=1)


def test_runs_saved_with_float8_auto_resume_only_by_accepting_what_auto_does_now(tmp_path):
    """Runs now record model.float8=auto as true or false; one saved with auto itself does not say which."""
    run = tmp_path / "run"
    write_checkpoints(run, config(run, "model.float8=auto"))
    resumed = config(run, "model.float8=false", "trainer.resume=auto")  # what auto records on CPU
    with pytest.raises(RunError, match=r"model\.float8: auto -> false \(the run was saved before runs recorded what "
                                       r"model\.float8=auto did; if it trained as this one would, accept the change\); .*"
                                       r"allow_config_change=\[model\.float8\]"):
        run_identity.prepare_start(resumed, world_size=1)
    accepted = config(run, "model.float8=false", "trainer.resume=auto", "trainer.allow_config_change=[model.float8]")
    assert run_identity.prepare_start(accepted, world_size=1) is not None


def test_precision_is_recorded_as_what_auto_did_and_a_saved_auto_means_what_it_does_here(tmp_path):
    """backend.precision=auto computes in bf16 on a GPU and in fp32 on CPU: runs record which, so a GPU
    run resumed on CPU is refused; in a run saved before, auto stands for what it does on this machine."""
    def saved(*overrides):
        return run_identity.resolved(config(tmp_path, *overrides))

    here = "fp32"  # these tests run on CPU, where auto computes in fp32
    recorded_here = saved(f"backend.precision={here}", "backend.device=cpu")
    gpu_run = saved("backend.precision=bf16", "backend.device=cpu")
    identity, _ = run_identity.config_changes(gpu_run, recorded_here, 2)
    assert run_identity.describe(identity) == "backend.precision: bf16 -> fp32"
    older = saved("backend.precision=auto", "backend.device=cpu")
    assert run_identity.config_changes(older, recorded_here, 2) == ([], [])
    identity, _ = run_identity.config_changes(older, saved("backend.precision=bf16", "backend.device=cpu"), 2)
    assert run_identity.describe(identity) == "backend.precision: fp32 -> bf16"  # auto, as it computes here


def test_trainer_records_precision_auto_as_what_it_computes_in(tmp_path):
    from nexus_pretrain.train.trainer import Trainer

    trainer = Trainer(config(tmp_path / "run", "backend.precision=auto", "backend.device=cpu"))
    assert trainer.cfg.backend.precision == "fp32" and trainer.backend.dtype is None


def test_fp8_runs_saved_before_float8_eval_evaluated_in_fp8_and_may_not_switch(tmp_path):
    """Before model.float8_eval existed an FP8 run evaluated through its FP8 layers, today's default; switching
    a run's evaluations to bf16 changes what its logged val/* mean, so it is refused as any identity change."""
    fp8 = config(tmp_path, "model.float8=true")
    older = run_identity.resolved(fp8)
    del older["model"]["float8_eval"]
    assert run_identity.config_changes(older, run_identity.resolved(fp8), 2) == ([], [])
    bf16_eval = run_identity.resolved(config(tmp_path, "model.float8=true", "model.float8_eval=bf16"))
    identity, _ = run_identity.config_changes(older, bf16_eval, 2)
    assert run_identity.describe(identity) == "model.float8_eval: fp8 -> bf16"
