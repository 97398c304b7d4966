"""Config composition and validation: every bad value fails fast with one line naming the key."""

import subprocess
import sys
import time

import pytest

from nexus_pretrain.cli import check_overrides
from nexus_pretrain.errors import ConfigError


def test_default_config_is_valid():
    check_overrides([])


@pytest.mark.parametrize("overrides", [
    ["optim=nexus"], ["optim=muon"], ["optim=nsgd"], ["optim=nexus_dot"], ["optim=nexus_random"],
    ["optim=nexus", "optim.outer=muon"], ["schedule=cosine"], ["model=llama_1b"],
    ["model.residual_dtype=embedding"], ["model.residual_dtype=null"],  # null: run configs saved before bf16
])
def test_shipped_configs_are_valid(overrides):
    check_overrides(overrides)


@pytest.mark.parametrize("overrides, message", [
    (["model=llama_7b"], "model=llama_7b: unknown option; choose one of llama_130m, llama_1b"),
    (["model.preset=llama_7b"], "model.preset='llama_7b' is not one of tiny, llama_130m"),
    (["model.foo=1"], "model.foo: no such config key"),
    (["+model.foo=1"], "model.foo: no such config key"),
    (["optim.lr=-0.1"], "optim.lr=-0.1 must be > 0"),
    (["model.residual_dtype=float16"], "model.residual_dtype=float16"),
    (["optim.lr=fast"], "optim.lr=fast: could not be converted to Float"),
    (["optim.variant=nesterov"], "optim.variant=nesterov"),
    (["model.float8=maybe"], "model.float8='maybe' is not one of false, true, auto"),
    (["optim.betas=[0.9,1.5]"], "optim.betas=[0.9, 1.5] must be two numbers in [0, 1)"),
    (["trainer.global_batch=10"], "trainer.global_batch=10 is not divisible by optim.inner_steps=4; "
                                  "set optim.inner_steps to a divisor of 10"),
    (["trainer.global_batch=24", "trainer.micro_batch=4"],
     "trainer.micro_batch=4 does not divide a rank's 6 sequences per inner batch"),
    (["optim.inner_steps=0"], "optim.inner_steps=0 must be > 0"),
    (["data.microbatch_domains=per_domain"], "data.microbatch_domains=per_domain cycles the 3 domains over the "
                                             "inner batches, but optim.inner_steps=4 is not a multiple of 3"),
    (["trainer.max_steps=50", "schedule.warmup_steps=20", "schedule.decay_steps=60"],
     "schedule.warmup_steps=20 (20 steps) + decay_steps=60 (60 steps) exceed trainer.max_steps=50"),
    (["data.domains.web=-1"], "data.domains.web=-1.0 must be >= 0"),
    (["data.domains.web=0", "data.domains.math=0", "data.domains.code=0"], "data.domains weights sum to 0"),
    (["data.microbatch_domains=sometimes"], "data.microbatch_domains=sometimes"),
    (["schedule=linear"], "schedule=linear: unknown option; choose one of cosine, wsd"),
])
def test_bad_values_fail_with_one_line_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as info:
        check_overrides(overrides)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_cli_rejects_bad_override_fast():
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", "from nexus_pretrain.cli import train; train()", "optim.lr=-1"],
                          capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 2
    assert proc.stderr.strip() == "config error: optim.lr=-1.0 must be > 0; set optim.lr to a positive value"
    assert "torch" not in proc.stdout
    # Composition and validation must not import torch; this bound includes interpreter start-up.
    assert elapsed < 5.0


def test_validation_does_not_import_torch():
    code = ("import sys; from nexus_pretrain.cli import check_overrides; check_overrides([]); "
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr

