"""String choices are enum fields (Choice): a value outside them fails while Hydra composes, naming the key
and the options; a built config holds the plain strings. Construction normalizes (booleans given
to model.float8 and trainer.resume) and validate() only reads."""

import copy
import json

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from nexus_pretrain.config import ModelConfig, TrainConfig, TrainerConfig, register_configs
from nexus_pretrain.config_checks import validate
from nexus_pretrain.errors import ConfigError
from nexus_pretrain.overrides import compose as compose_config
from nexus_pretrain.paths import CONFIG_DIR


def composition_error(override: str) -> str:
    """The whole message chain of the error Hydra raises while composing with ``override``."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        with pytest.raises(Exception) as info:
            compose("train", overrides=[override])
    chain, error = [], info.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(chain)


@pytest.mark.parametrize("override, options", [
    ("backend.name=tpu", "single, fsdp2, deepspeed"),
    ("backend.precision=fp16", "auto, bf16, fp32"),
    ("optim.name=sgd", "adamw, muon, nexus"),
    ("optim.outer=lion", "adamw, muon"),
    ("optim.variant=nesterov", "nexus, nexus_dot, nsgd, random, parallel"),
    ("schedule.name=linear", "wsd, cosine, constant"),
    ("schedule.decay_shape=cubic", "linear, cosine, sqrt"),
    ("data.source=web", "embedded, shards, sft"),
    ("data.microbatch_domains=sometimes", "mixed, per_domain, per_domain_weighted"),
    ("model.attention=xformers", "auto, sdpa, flash"),
    ("model.residual_dtype=float16", "bfloat16, embedding"),
    ("model.float8_recipe=blockwise", "tensorwise, rowwise"),
    ("logging.wandb_mode=cloud", "offline, online, disabled"),
])
def test_a_value_outside_the_choices_fails_at_composition_naming_key_and_options(override, options):
    key = override.split("=")[0]
    text = composition_error(override)
    assert f"expected one of [{options}]" in text
    assert f"full_key: {key}" in text


def test_built_configs_hold_plain_strings_and_save_them_as_such():
    cfg = compose_config(["optim=nexus", "backend.device=cpu", "data.microbatch_domains=per_domain_weighted"])
    name = cfg.optim.name
    assert type(name) is str and name == "nexus" and f"{name}-{cfg.backend.device}" == "nexus-cpu"
    assert json.loads(json.dumps({"mode": cfg.data.microbatch_domains})) == {"mode": "per_domain_weighted"}
    saved = OmegaConf.to_yaml(OmegaConf.create(OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)))
    assert "name: nexus\n" in saved and "microbatch_domains: per_domain_weighted\n" in saved


@pytest.mark.parametrize("overrides, float8, resume", [
    ([], "false", "never"),
    (["model.float8=true", "trainer.resume=true"], "true", "auto"),
    (["model.float8=AUTO", "trainer.resume=false"], "auto", "never"),
])
def test_booleans_and_case_are_normalized_when_the_config_is_built(overrides, float8, resume):
    cfg = compose_config(overrides)
    assert (cfg.model.float8, cfg.trainer.resume) == (float8, resume)
    assert ModelConfig(float8=True).float8 == "true" and TrainerConfig(resume=False).resume == "never"


@pytest.mark.parametrize("overrides", [[], ["optim=nexus", "model.float8=true", "trainer.resume=true"],
                                       ["data=math10", "schedule=cosine", "backend=fsdp2"]])
def test_validate_leaves_the_config_unchanged(overrides):
    cfg = compose_config(overrides)
    before = copy.deepcopy(cfg)
    validate(cfg)
    assert cfg == before


def test_validate_refuses_rather_than_mends_an_unnormalized_value():
    cfg = TrainConfig()
    cfg.model.float8 = "True"  # set past construction, so never normalized
    before = copy.deepcopy(cfg)
    with pytest.raises(ConfigError, match="model.float8='True' is not one of false, true, auto"):
        validate(cfg)
    assert cfg == before
