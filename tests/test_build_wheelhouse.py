"""scripts/build_wheelhouse.py: the requirements it takes from pyproject.toml, the target's platform tags,
the pip commands of --dry-run, and which resolved packages --skip leaves out. Nothing here reaches a
package index."""

import importlib.util

import pytest

from nexus_pretrain.paths import REPO_ROOT

spec = importlib.util.spec_from_file_location("build_wheelhouse", REPO_ROOT / "scripts" / "build_wheelhouse.py")
wheelhouse = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wheelhouse)


def test_requirements_are_the_dependencies_and_the_extras_once(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "p"\ndependencies = ["torch>=2.6", "numpy>=1.24"]\n'
                         '[project.optional-dependencies]\ngpu = ["deepspeed==0.19.8", "numpy>=1.24"]\n'
                         'plots = ["matplotlib>=3.8"]\n')
    assert wheelhouse.requirements(pyproject, []) == ["torch>=2.6", "numpy>=1.24"]
    assert wheelhouse.requirements(pyproject, ["gpu", "plots"]) == ["torch>=2.6", "numpy>=1.24", "deepspeed==0.19.8",
                                                                    "matplotlib>=3.8"]
    with pytest.raises(SystemExit, match="unknown extra.*nope"):
        wheelhouse.requirements(pyproject, ["nope"])


def test_the_project_requirements_bring_their_source_only_packages():
    reqs = wheelhouse.requirements(REPO_ROOT / "pyproject.toml", ["gpu", "eval"])
    assert "hydra-core>=1.3.2" in reqs and "lm-eval==0.4.13" in reqs
    builds = wheelhouse.source_builds(reqs)
    assert "antlr4-python3-runtime==4.9.3" in builds and "sqlitedict" in builds
    assert [b for b in builds if b.startswith("deepspeed")] == [r for r in reqs if r.startswith("deepspeed")]
    assert not any(b.startswith("deepspeed") for b in wheelhouse.source_builds(
        wheelhouse.requirements(REPO_ROOT / "pyproject.toml", [])))


def test_a_manylinux_target_takes_older_manylinux_wheels():
    tags = wheelhouse.platform_tags("manylinux_2_28_x86_64")
    assert tags[0] == "manylinux_2_28_x86_64" and tags[-1] == "manylinux1_x86_64"
    assert {"manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux2010_x86_64"} <= set(tags)
    assert "manylinux_2_29_x86_64" not in tags
    assert wheelhouse.platform_tags("macosx_14_0_arm64") == ["macosx_14_0_arm64"]


def test_dry_run_prints_the_pip_commands_for_the_target(capsys):
    assert wheelhouse.main(["--dry-run", "--python-version", "3.12", "--platform", "manylinux_2_28_x86_64",
                            "--extras", "gpu,eval", "--skip", "torch,flash-attn", "--out", "wh"]) == 0
    out = capsys.readouterr().out
    commands = [line for line in out.splitlines() if line.startswith("+ ")]
    assert any("DS_BUILD_OPS=0" in c and "pip wheel --no-deps" in c and "deepspeed==0.19.8" in c for c in commands)
    resolve = next(c for c in commands if "--dry-run" in c and "--report" in c)
    for flag in ("--only-binary=:all:", "--python-version 3.12", "--platform manylinux_2_28_x86_64",
                 "--platform manylinux2014_x86_64", "deepspeed==0.19.8", "lm-eval==0.4.13"):
        assert flag in resolve
    assert "torch>=2.6" not in resolve and "flash-attn" not in resolve  # left out: the target has them
    assert "pip download --no-deps" in out and commands[-1].endswith(str(REPO_ROOT))  # the project's own wheel last


def test_flash_attn_needs_a_wheel_from_elsewhere_or_a_skip():
    with pytest.raises(SystemExit, match="flash-attn"):
        wheelhouse.main(["--dry-run", "--extras", "gpu"])


def test_skip_leaves_out_what_only_skipped_packages_need():
    def item(name, *deps):
        return {"metadata": {"name": name, "version": "1.0", "requires_dist": list(deps)}}

    report = {"install": [
        item("torch", "nvidia-cublas; platform_system == 'Linux'", "filelock", "sympy"),
        item("nvidia-cublas"), item("sympy"), item("filelock"),
        item("accelerate", "torch>=2.0", "psutil", "rich; extra == 'cli'"),
        item("datasets", "filelock", "pywin32; sys_platform == 'win32'"),
        item("psutil"), item("rich"), item("pywin32"),
    ]}
    env = wheelhouse.marker_environment("3.12", "manylinux_2_28_x86_64")
    names = lambda roots, skip: sorted(i["metadata"]["name"] for i in wheelhouse.selected(report, roots, skip, env))
    # filelock stays (datasets needs it too); torch's own dependencies go with it; markers hold for the target
    assert names(["torch", "accelerate", "datasets"], ["torch"]) == ["accelerate", "datasets", "filelock", "psutil"]
    assert names(["accelerate[cli]"], []) == ["accelerate", "filelock", "nvidia-cublas", "psutil", "rich", "sympy",
                                              "torch"]
