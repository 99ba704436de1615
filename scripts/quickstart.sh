#!/usr/bin/env bash
# The quickstart: train a teacher on Fashion-MNIST, then distill it into a student 13x smaller
# with function matching, and write the run's report. CPU, about 5 minutes on 2 cores after the
# install.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/distill train recipes/quickstart/teacher.yaml --overwrite
.venv/bin/distill run recipes/quickstart/distill.yaml --overwrite
.venv/bin/distill report runs/quickstart-distill
