#!/usr/bin/env bash
# Wheels the mini reproduction needs on a GPU machine without a package index whose image has torch
# (Python 3.12, x86-64 Linux): the package's dependencies and its eval extra (Hydra, datasets, lm-eval),
# less torch and what only torch needs, into .whl (ignored by git). The GPU scripts install them with
# `pip install --no-index --no-deps --target`; the checkout itself runs from PYTHONPATH, so its own
# wheel is left out. Usage, from the repository root:  bash scripts/minirepro/fetch_wheels.sh [OPTIONS]
# (OPTIONS: more of scripts/build_wheelhouse.py's, e.g. --extras eval,gpu --skip torch,flash-attn).
set -euo pipefail
exec python3 scripts/build_wheelhouse.py --python-version 3.12 --platform manylinux_2_28_x86_64 \
  --extras eval --skip torch --no-project --out .whl "$@"
