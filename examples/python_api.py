"""Drive distill from Python: train a teacher, distill it, compare, report, export.

    python examples/python_api.py [OUT_DIR]

Everything the CLI does is a function of `distill_cli.api` returning a typed result. This
example runs on generated data with timm's tiny test models (no downloads, under a minute on a
2-core CPU) and leaves its runs, reports and ONNX files in OUT_DIR (default: a temp folder).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from distill_cli import api
from distill_cli.recipe.document import Recipe

DATA = {"source": "synthetic", "synthetic": {"num_classes": 4, "train_size": 512}}


def main(out: Path) -> None:
    # 1. A teacher trained on labels. A Recipe can be built in code instead of read from YAML.
    teacher = Recipe.model_validate(
        {
            "name": "teacher",
            "model": {"model": "test_resnet", "input_size": 32},
            "data": DATA,
            "method": {"name": "supervised"},
            "optim": {"lr": 3e-3},
            "schedule": {"epochs": 3, "batch_size": 64},
            "output": {"dir": str(out)},
        }
    )
    trained = api.train(teacher)
    print(f"teacher top-1 {trained.student.top1:.1f}% ({trained.student.params:,} params)")

    # 2. Function matching into a smaller student; `__` in a keyword stands for the dot of
    #    `--set`, so each call below is a variant of the same recipe, like an ablation.
    student = Recipe.model_validate(
        {
            "name": "fm",
            "teacher": {
                "model": "test_resnet",
                "input_size": 32,
                "checkpoint": str(trained.run_dir / "checkpoints" / "best.safetensors"),
            },
            "student": {"model": "test_efficientnet", "input_size": 24},
            "data": DATA,
            "method": {"name": "function_matching", "temperature": 2.0},
            "optim": {"lr": 3e-3},
            "schedule": {"epochs": 4, "batch_size": 64},
            "output": {"dir": str(out)},
        }
    )
    print("plan:", api.plan(student).total_steps, "steps")
    fm = api.run(student)
    independent = api.run(student, name="fm-independent", method__views="independent")
    for result in (fm, independent):
        print(
            f"{result.name}: student top-1 {result.student.top1:.1f}%, "
            f"agreement {result.agreement_top1:.1f}%, {result.images_per_s:.0f} img/s"
        )

    # 3. Side by side: only the recipe keys that differ, and the results.
    comparison = api.compare([fm.run_dir, independent.run_dir], plot=out / "compare.png")
    print(comparison.to_markdown())

    # 4. Ship it: ONNX + parity + latency, then the run's report with the latency bars.
    exported = api.export(fm.run_dir, exporter="torchscript", runs=20, min_time_s=0.5)
    fp32 = exported.latency_of("student/onnxruntime/fp32")
    print(f"ONNX {exported.onnx}: parity {exported.parity_passed}, p50 {fp32.p50_ms:.2f} ms")
    report = api.report(fm.run_dir)
    print(f"report: {report.html}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, help="output folder (default: a temp folder)")
    out = parser.parse_args().out  # `--help` is answered here, not made a run folder
    main(out or Path(tempfile.mkdtemp(prefix="distill-")))
