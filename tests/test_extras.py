"""Every feature that needs an optional dependency says which extra brings it, in one line."""

import json
import sys

import pytest
import yaml

from nexus_pretrain import cli
from nexus_pretrain.errors import ConfigError
from nexus_pretrain.extras import EXTRAS, check_run_extras, install_hint
from nexus_pretrain.overrides import compose


def _uninstall(monkeypatch, *modules):
    """Make ``import module`` fail as it does where the module is not installed."""
    for module in modules:
        for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, module, None)


def test_every_extra_named_exists_in_pyproject():
    from nexus_pretrain.paths import REPO_ROOT

    text = (REPO_ROOT / "pyproject.toml").read_text()
    for module, (package, extra) in EXTRAS.items():
        line = next(x for x in text.splitlines() if x.startswith(f"{extra} = "))
        assert f'"{package}' in line, (module, extra)
    assert install_hint("matplotlib") == 'pip install "nexus_pretrain[plots]"'


def test_report_plots_without_matplotlib_name_the_plots_extra(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"optim": {"name": "adamw"}}))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 2.0, "val/pretrain": 2.1}) + "\n")
    _uninstall(monkeypatch, "matplotlib")
    with pytest.raises(SystemExit) as exit_info:
        cli.report([str(run), "--plots", str(tmp_path / "figs")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == 'error: plots need matplotlib: pip install "nexus_pretrain[plots]"'


def test_benchmarks_without_lm_eval_name_the_eval_extra(monkeypatch, tmp_path):
    from nexus_pretrain.evaluation.benchmarks import select
    from nexus_pretrain.evaluation.harness import run_harness
    from nexus_pretrain.extras import MissingExtra

    _uninstall(monkeypatch, "lm_eval")
    with pytest.raises(MissingExtra, match=r'benchmark accuracies need lm-eval: pip install "nexus_pretrain\[eval\]"'):
        run_harness(tmp_path, select(["gsm8k"]), tmp_path)


def test_training_features_are_checked_at_start_up(monkeypatch):
    _uninstall(monkeypatch, "wandb", "tensorboard", "deepspeed")
    for overrides, message in ((["logging.wandb=true"], r'logging.wandb=true needs wandb: pip install "nexus_pretrain\[tracking\]"'),
                               (["logging.tensorboard=true"], "logging.tensorboard=true needs tensorboard"),
                               (["backend=deepspeed"], r'backend=deepspeed needs deepspeed: pip install "nexus_pretrain\[gpu\]"')):
        with pytest.raises(ConfigError, match=message):
            check_run_extras(compose(overrides))
    _uninstall(monkeypatch, "hydra_plugins")
    with pytest.raises(ConfigError, match=r"hydra/launcher=slurm needs hydra-submitit-launcher: .*\[slurm\]"):
        check_run_extras(None, ["-m", "hydra/launcher=slurm"])
