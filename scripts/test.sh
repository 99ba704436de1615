#!/usr/bin/env bash
# The test command: install, lint, test. What CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check distill_cli tests benchmarks examples
.venv/bin/ruff format --check distill_cli tests benchmarks examples
.venv/bin/python -m pytest -q "$@"
