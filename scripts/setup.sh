#!/usr/bin/env bash
# Installs what distill needs into ./.venv on a fresh machine (idempotent: fast when done).
#   - Fashion-MNIST from Debian's dataset-fashion-mnist, when the files are missing and apt exists
#   - PyTorch (pinned, so pip never pulls another build), then distill itself with its dev extras
set -euo pipefail
cd "$(dirname "$0")/.."

FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -e "$FMNIST/t10k-labels-idx1-ubyte.gz" ] && [ ! -e "$FMNIST/t10k-labels-idx1-ubyte" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "== installing Fashion-MNIST (dataset-fashion-mnist)"
    $SUDO apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "warning: $FMNIST is missing and apt-get is not available; set data.root in the recipes" >&2
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "== installing PyTorch"
  .venv/bin/pip install -q --disable-pip-version-check "torch==${TORCH_VERSION:-2.14.1}" "torchvision==${TORCHVISION_VERSION:-0.29.1}"
fi
if ! .venv/bin/python -c "import distill_cli, pytest, ruff" >/dev/null 2>&1 || [ pyproject.toml -nt .venv/.distill-installed ]; then
  echo "== installing distill"
  .venv/bin/pip install -q --disable-pip-version-check -e ".[dev]"
  touch .venv/.distill-installed
fi
