#!/usr/bin/env bash
# One command sets the project up on a fresh machine: a virtual environment in .venv
# with the pinned dependencies and the package installed in editable mode.
# TORCH_SPEC picks the torch build: the default is the pinned CPU-capable release; on a
# GPU machine install the matching CUDA wheel of the same version first, e.g.
#   TORCH_SPEC="torch==2.13.0" PIP_EXTRA_INDEX_URL=<your CUDA wheel index> ./setup.sh
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and alone, so pip takes the pinned build rather than resolving a newer
# (multi-GB CUDA) one as a dependency of transformers/peft/trl.
.venv/bin/python -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install --quiet -e ".[dev]"
# dvc plots show renders offline: a page template with the vendored vega libraries inlined.
.venv/bin/python -m pronounce.scoring.plots write
echo "ready: source .venv/bin/activate"
