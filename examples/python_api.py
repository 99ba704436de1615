"""Drive distill from Python: plan, run, and read the result.

    python examples/python_api.py

Trains a tiny teacher and distills it on generated data (no downloads, ~20 s on a laptop CPU).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from distill_cli import api
from distill_cli.recipe import Recipe


def main() -> None:
    out = Path(tempfile.mkdtemp(prefix="distill-example-"))
    data = {"source": "synthetic", "synthetic": {"num_classes": 4, "train_size": 512}}
    teacher = Recipe.model_validate(
        {
            "name": "teacher",
            "model": {"model": "test_resnet", "input_size": 32},
            "data": data,
            "method": {"name": "supervised"},
            "optim": {"lr": 3e-3},
            "schedule": {"epochs": 3, "batch_size": 64},
            "output": {"dir": str(out)},
        }
    )
    print("teacher top-1:", api.train(teacher)["student"]["top1"])

    student = Recipe.model_validate(
        {
            "name": "student",
            "teacher": {
                "model": "test_resnet",
                "input_size": 32,
                "checkpoint": str(out / "teacher" / "checkpoints" / "best.safetensors"),
            },
            "student": {"model": "test_efficientnet", "input_size": 24},
            "data": data,
            "method": {"name": "function_matching", "temperature": 2.0},
            "optim": {"lr": 3e-3},
            "schedule": {"epochs": 4, "batch_size": 64},
            "output": {"dir": str(out)},
        }
    )
    print("plan:", api.plan(student)["total_steps"], "steps")
    summary = api.run(student)
    print(
        f"student top-1 {summary['student']['top1']:.1f}%, "
        f"agreement {summary['agreement']['top1']:.1f}%, run folder {summary['run_dir']}"
    )


if __name__ == "__main__":
    main()
