#!/usr/bin/env bash
# Wheels the mini reproduction needs on a GPU image that has torch, transformers, numpy, pandas, pyarrow,
# scikit-learn, sacrebleu, jinja2 (a typical offline GPU image) but no package index: Hydra, datasets and
# lm-eval with the small pure-Python packages it needs. Writes them to .whl (ignored by git).
# Usage, from the repository root:  bash scripts/minirepro/fetch_wheels.sh
set -euo pipefail
export PIP_DISABLE_PIP_VERSION_CHECK=1
dest=.whl
mkdir -p "$dest"
get() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$dest" "$@"
}
# sdist-only packages: build their pure-Python wheels here.
build() { python3 -m pip wheel -q --no-deps -w "$dest" "$@"; }
get hydra-core==1.3.8 omegaconf==2.3.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
ls "$dest"/antlr4_python3_runtime-4.9.3*.whl >/dev/null 2>&1 || build antlr4-python3-runtime==4.9.3
get lm-eval==0.4.13 evaluate==0.4.6 pytablewriter==1.2.1 DataProperty==1.1.1 mbstrdecoder==1.1.5 \
    pathvalidate==3.3.1 tabledata==1.3.5 tcolorpy==0.1.7 typepy==1.3.5 chardet==6.0.0.post1 \
    more-itertools==11.2.1 nltk==3.10.4 defusedxml==0.7.1 pytz==2026.6
for spec in rouge-score==0.1.2 word2number==1.1 sqlitedict==2.1.0; do
  name=${spec%%==*}; ls "$dest"/${name//-/_}-*.whl >/dev/null 2>&1 || build "$spec"
done
ls "$dest"
