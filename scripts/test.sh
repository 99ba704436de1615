#!/usr/bin/env bash
# The test command: install, lint, test. What CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the GPU check's peer, which its CPU smoke test runs (pyproject's `peers` extra); --no-deps: it
# imports without scipy and cython, which its metadata lists and the tests do not need
.venv/bin/python -c "import torchdistill" >/dev/null 2>&1 ||
  .venv/bin/pip install -q --disable-pip-version-check --no-deps "torchdistill==1.1.5"
.venv/bin/ruff check distill_cli tests benchmarks examples
.venv/bin/ruff format --check distill_cli tests benchmarks examples
# one pytest worker per core (at most 4), a test file to a worker: most tests wait on a subprocess
# or on disk, and a file's module fixtures are built once; `-n 0` runs it in one process.
# The 15 slowest are listed at the end: the suite is kept under ~15 minutes on 2 cores.
.venv/bin/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile --durations 15 "$@"
