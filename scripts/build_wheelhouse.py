#!/usr/bin/env python3
"""Build a wheelhouse: every wheel nexus_pretrain and the chosen extras need on a machine without a
package index, for a target Python version and platform (docs/offline-install.md).

    python scripts/build_wheelhouse.py --python-version 3.12 --platform manylinux_2_28_x86_64 \\
        --extras gpu,eval --skip torch,flash-attn --out wheelhouse

Runs on a connected machine of any platform. The requirements come from pyproject.toml (the dependencies
and the extras' lists). Packages that PyPI has only as source (antlr4-python3-runtime, DeepSpeed, a few of
lm-eval's) are built here into pure-Python wheels with `pip wheel` (DeepSpeed with DS_BUILD_OPS=0: its
ops compile on first use); pip then resolves the whole set for the target (`pip install --dry-run
--report`, binary wheels only, reading package metadata without downloading) and `pip download` fetches
each wheel. --skip leaves out what the target already has (e.g. the GPU image's torch) and whatever only
those packages need. The project's own wheel comes last.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip's own copy of tomli
    from pip._vendor import tomli as tomllib
try:
    from packaging.markers import Marker
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ModuleNotFoundError:
    from pip._vendor.packaging.markers import Marker
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PIP = [sys.executable, "-m", "pip"]

# Source-only on PyPI, pure Python: built into wheels here. Key: the requirement that brings them in.
SOURCE_ONLY: Dict[str, List[str]] = {
    "hydra-core": ["antlr4-python3-runtime==4.9.3"],  # omegaconf and hydra pin antlr 4.9.*
    "lm-eval": ["rouge-score", "word2number", "sqlitedict"],  # PyPI's rouge-score wheel is 0.0.4, its source 0.1.2
}
# Environment of a source build (DeepSpeed: no ops compiled at build time, so the wheel is pure Python).
BUILD_ENV = {"deepspeed": {"DS_BUILD_OPS": "0"}}
NO_WHEEL = {  # source-only packages that compile against CUDA: built on a GPU machine, or skipped
    "flash-attn": "flash-attn builds against the target's torch and CUDA: build its wheel there "
                  "(pip wheel flash-attn --no-build-isolation) and pass its folder with --find-links, or --skip flash-attn",
}


def requirements(pyproject: Path, extras: Sequence[str]) -> List[str]:
    """The project's dependencies and those of the given extras, in pyproject order, each once."""
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise SystemExit(f"unknown extra(s) {', '.join(unknown)}; pyproject.toml has {', '.join(optional)}")
    found = list(project["dependencies"]) + [r for e in extras for r in optional[e]]
    return list(dict.fromkeys(found))


def platform_tags(platform: str) -> List[str]:
    """The platform and the older tags a machine of it runs: manylinux_2_28_x86_64 also takes
    manylinux_2_27 ... manylinux_2_5 wheels and their legacy names (manylinux2014, manylinux2010,
    manylinux1). pip does not expand manylinux_2_N tags itself."""
    m = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    if not m:
        return [platform]
    glibc, arch = int(m.group(1)), m.group(2)
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags = []
    for minor in range(glibc, 4, -1):
        tags.append(f"manylinux_2_{minor}_{arch}")
        if minor in legacy:
            tags.append(f"{legacy[minor]}_{arch}")
    return tags


def marker_environment(python_version: str, platform: str) -> Dict[str, str]:
    """The PEP 508 marker values of a CPython of that version on that platform."""
    machine = next((a for a in ("x86_64", "aarch64", "arm64", "amd64") if platform.lower().endswith(a)), "")
    system = ("Linux", "linux") if "linux" in platform else ("Darwin", "darwin") if "macosx" in platform \
        else ("Windows", "win32")
    return {"python_version": python_version, "python_full_version": f"{python_version}.0",
            "implementation_name": "cpython", "platform_python_implementation": "CPython",
            "os_name": "nt" if system[1] == "win32" else "posix", "platform_system": system[0],
            "sys_platform": system[1], "platform_machine": machine, "platform_release": "", "platform_version": "",
            "implementation_version": f"{python_version}.0", "extra": ""}


def target_args(python_version: str, platform: str) -> List[str]:
    """pip's options that select wheels for the target instead of this machine."""
    return ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp",
            *[a for tag in platform_tags(platform) for a in ("--platform", tag)]]


def source_builds(reqs: Sequence[str]) -> List[str]:
    """The source-only packages the requirements bring in, as `pip wheel` specs (DeepSpeed at its pin)."""
    names = {canonicalize_name(Requirement(r).name): r for r in reqs}
    specs = [s for trigger, built in SOURCE_ONLY.items() if trigger in names for s in built]
    if "deepspeed" in names:
        specs.append(names["deepspeed"])
    return specs


def selected(report: Mapping, roots: Sequence[str], skip: Iterable[str], env: Mapping[str, str]) -> List[Dict]:
    """The packages of a `pip install --report` that the roots need without passing through a skipped
    one: what the target lacks when it already has the skipped packages."""
    skip = {canonicalize_name(s) for s in skip}
    items = {canonicalize_name(i["metadata"]["name"]): i for i in report["install"]}
    keep: Set[str] = set()
    todo = [Requirement(r) for r in roots]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in skip or name not in items or (req.marker and not req.marker.evaluate(env)):
            continue
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in keep:
            continue
        keep.update({key, name})
        for dep in map(Requirement, items[name]["metadata"].get("requires_dist", [])):
            if dep.marker is None or any(dep.marker.evaluate({**env, "extra": e}) for e in req.extras or [""]):
                dep.marker = None
                todo.append(dep)
    return [i for n, i in items.items() if n in keep]


def run(cmd: Sequence[str], dry_run: bool, env: Optional[Mapping[str, str]] = None) -> subprocess.CompletedProcess:
    """Print a command (with its environment variables) and run it unless dry_run."""
    prefix = " ".join(f"{k}={v}" for k, v in (env or {}).items())
    print("+", (prefix + " " if prefix else "") + shlex.join(cmd), flush=True)
    if dry_run:
        return subprocess.CompletedProcess(cmd, 0)
    return subprocess.run(cmd, env={**os.environ, **(env or {})}, check=True)


def build_sources(specs: Sequence[str], out: Path, dry_run: bool) -> None:
    """`pip wheel` each source-only package into out; SystemExit if one is not pure Python (its wheel
    would fit this machine, not the target)."""
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            run([*PIP, "wheel", "--no-deps", "-w", tmp, spec], dry_run,
                BUILD_ENV.get(canonicalize_name(Requirement(spec).name)))
        for wheel in Path(tmp).glob("*.whl"):
            if not wheel.name.endswith("-none-any.whl"):
                raise SystemExit(f"{wheel.name} was built for this machine, not the target: build it on the target")
            wheel.replace(out / wheel.name)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python-version", default="3.12", help="the target's Python, e.g. 3.12 (default)")
    p.add_argument("--platform", default="manylinux_2_28_x86_64",
                   help="the target's platform tag (default manylinux_2_28_x86_64: glibc 2.28 or newer, x86-64)")
    p.add_argument("--out", type=Path, default=Path("wheelhouse"), help="the wheelhouse folder (default wheelhouse)")
    p.add_argument("--extras", default="", help="comma-separated extras of pyproject.toml, e.g. gpu,eval")
    p.add_argument("--skip", default="", help="comma-separated packages the target already has (e.g. torch): left "
                                              "out, with whatever only they need")
    p.add_argument("--find-links", action="append", default=[], type=Path,
                   help="a folder of wheels built elsewhere (e.g. flash-attn built on the target); repeatable")
    p.add_argument("--no-project", action="store_true", help="leave out nexus_pretrain's own wheel")
    p.add_argument("--dry-run", action="store_true", help="print the pip commands and run none")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    extras = [e.strip() for e in args.extras.split(",") if e.strip()]
    skip = [s.strip() for s in args.skip.split(",") if s.strip()]
    skipped = {canonicalize_name(s) for s in skip}
    reqs = [r for r in requirements(ROOT / "pyproject.toml", extras)
            if canonicalize_name(Requirement(r).name) not in skipped]
    for name, why in NO_WHEEL.items():
        if name in {canonicalize_name(Requirement(r).name) for r in reqs} and not args.find_links:
            raise SystemExit(why)
    out = args.out.resolve()
    links = [a for d in [out, *args.find_links] for a in ("--find-links", str(Path(d).resolve()))]
    target = target_args(args.python_version, args.platform)
    print(f"requirements ({', '.join(extras) or 'no extras'}; left out: {', '.join(skip) or 'nothing'}):")
    print("\n".join(f"  {r}" for r in reqs))
    if not args.dry_run:
        out.mkdir(parents=True, exist_ok=True)

    build_sources([s for s in source_builds(reqs) if canonicalize_name(Requirement(s).name) not in skipped],
                  out, args.dry_run)

    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        run([*PIP, "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report_path),
             *target, "--target", str(Path(tmp) / "site"), *links, *reqs], args.dry_run)
        if args.dry_run:
            print("+", shlex.join([*PIP, "download", "--no-deps", *target, *links, "-d", str(out)]),
                  "NAME==VERSION ... (each package of the resolution, less --skip)")
        else:
            report = json.loads(report_path.read_text())
            env = marker_environment(args.python_version, args.platform)
            wanted = selected(report, reqs, skip, env)
            pins = [f"{i['metadata']['name']}=={i['metadata']['version']}" for i in wanted]
            run([*PIP, "download", "--no-deps", *target, *links, "-d", str(out), *pins], args.dry_run)
    if not args.no_project:
        run([*PIP, "wheel", "--no-deps", "-w", str(out), str(ROOT)], args.dry_run)
    if not args.dry_run:
        print(f"{len(list(out.glob('*.whl')))} wheels in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
