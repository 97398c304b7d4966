"""A regular (non-editable) install works: the wheel carries the asset folders and the package's JSON data
files, and the installed package composes the default run config from a directory outside the checkout."""

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from nexus_pretrain.overrides import compose
from nexus_pretrain.paths import ASSETS, REPO_ROOT

SOURCES = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "nexus_pretrain", *ASSETS]


def setup_assets():
    """The ASSETS tuple that setup.py copies into the wheel (read without running setup())."""
    for node in ast.parse((REPO_ROOT / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "ASSETS":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py defines no ASSETS")


def test_setup_ships_the_asset_folders_paths_looks_for():
    assert setup_assets() == ASSETS


def build_and_install(tmp_path: Path) -> tuple[Path, Path]:
    """Builds a wheel from a copy of the checkout's sources and installs it into a folder of its own."""
    src, dist, site = tmp_path / "src", tmp_path / "dist", tmp_path / "site"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, src / name, ignore=ignore)
        else:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", ".", "--no-deps", "--no-build-isolation", "-w", str(dist)], cwd=src, check=True,
                   capture_output=True, timeout=120)
    wheel = next(dist.glob("nexus_pretrain-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True,
                   timeout=120)
    return wheel, site


def test_wheel_install_composes_the_default_config_outside_the_checkout(tmp_path):
    wheel, site = build_and_install(tmp_path)

    names = set(zipfile.ZipFile(wheel).namelist())
    json_files = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "nexus_pretrain").rglob("*.json")}
    assert json_files and json_files <= names, f"JSON data files missing from the wheel: {json_files - names}"
    for folder in ASSETS:
        shipped = {p.relative_to(REPO_ROOT / folder).as_posix() for p in (REPO_ROOT / folder).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts}
        assert {f"nexus_pretrain/{folder}/{name}" for name in shipped} <= names, f"{folder} not shipped whole"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import sys; from nexus_pretrain import paths; print(paths.CONFIG_DIR, flush=True); "
            "from nexus_pretrain.cli import train; sys.argv = ['nexus-train', '--cfg', 'job']; train()")
    proc = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    config_dir, job = proc.stdout.split("\n", 1)
    assert Path(config_dir) == site / "nexus_pretrain" / "configs"
    installed, checkout = yaml.safe_load(job), OmegaConf.to_container(OmegaConf.structured(compose([])))
    assert installed["trainer"].pop("run_dir").startswith("runs/")  # time-stamped
    checkout["trainer"].pop("run_dir")
    assert installed == checkout
    assert not (elsewhere / "outputs").exists()
