"""One place for every default: the config `nexus-train` composes with no overrides equals the schema's
dataclass defaults, field by field, so configs/ and nexus_pretrain/config.py cannot disagree."""

from typing import Any, Dict, List

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from nexus_pretrain.config import TrainConfig, register_configs
from nexus_pretrain.paths import CONFIG_DIR


def leaves(node: Any, prefix: str = "") -> Dict[str, Any]:
    """Dotted key -> value of every leaf of a plain config container (maps such as data.domains are leaves)."""
    out: Dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in ("data.domains", "data.fixed_shares"):
            out.update(leaves(value, name + "."))
        else:
            out[name] = value
    return out


def differences(composed: Dict[str, Any], schema: Dict[str, Any]) -> List[str]:
    """'key: configs/ gives A, config.py gives B' for every key the two disagree on (or only one has)."""
    return [f"{key}: configs/ gives {composed.get(key, '<absent>')!r}, config.py gives {schema.get(key, '<absent>')!r}"
            for key in sorted(set(composed) | set(schema)) if composed.get(key, "<absent>") != schema.get(key, "<absent>")]


def test_default_composition_equals_the_dataclass_defaults():
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        composed = OmegaConf.to_container(compose("train"), resolve=False, enum_to_str=True)
    schema = OmegaConf.to_container(OmegaConf.structured(TrainConfig), resolve=False, enum_to_str=True)
    problems = differences(leaves(composed), leaves(schema))
    assert not problems, "the default config and the dataclass defaults differ:\n" + "\n".join(problems)


def test_a_difference_is_reported_by_its_key():
    problems = differences({"trainer.global_batch": 16, "data.seq_len": 128}, {"trainer.global_batch": 32,
                                                                              "data.seq_len": 128, "x.y": 1})
    assert problems == ["trainer.global_batch: configs/ gives 16, config.py gives 32",
                        "x.y: configs/ gives '<absent>', config.py gives 1"]
