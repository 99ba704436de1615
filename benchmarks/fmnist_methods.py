"""Methods and ablations side by side on Fashion-MNIST: same teacher, same student, same budget.

Runs the quickstart teacher (if its checkpoint is missing), then every comparison recipe with
the same student (test_resnet), teacher (the quickstart resnet10t) and budget (3 epochs), and
prints a markdown table for docs/benchmarks.md.

    python benchmarks/fmnist_methods.py [--epochs 3] [--set runtime.threads=2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from distill_cli import api

ROOT = Path(__file__).resolve().parents[1]
TEACHER = ROOT / "recipes/quickstart/teacher.yaml"
ROWS = [
    ("student from scratch (labels)", "recipes/methods/scratch.yaml"),
    ("classic KD (T=4, alpha=0.5)", "recipes/methods/kd.yaml"),
    ("early-stopped KD (stop at epoch 2)", "recipes/methods/eskd.yaml"),
    ("stage-by-stage KD (2 stages + head)", "recipes/methods/stage_by_stage.yaml"),
    ("FM ablation: fixed teacher", "recipes/ablations/fixed_teacher.yaml"),
    ("FM ablation: independent views", "recipes/ablations/independent.yaml"),
    ("FM ablation: consistent views, no mixup", "recipes/ablations/consistent.yaml"),
    ("function matching (consistent + mixup)", "recipes/quickstart/distill.yaml"),
]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()

    teacher_ckpt = ROOT / "runs/quickstart-teacher/checkpoints/best.safetensors"
    if not teacher_ckpt.is_file():
        api.train(TEACHER, args.overrides, overwrite=True)
    results = []
    load_before, started_all = os.getloadavg()[0], time.perf_counter()
    for label, recipe in ROWS:
        overrides = list(args.overrides)
        if "stage_by_stage" not in recipe:  # its length is fixed by its phases
            overrides.append(f"schedule.epochs={args.epochs}")
        started = time.perf_counter()
        summary = api.run(ROOT / recipe, overrides, overwrite=True).to_dict()
        results.append(
            {
                "method": label,
                "recipe": recipe,
                "wall_s": time.perf_counter() - started,
                **{k: summary[k] for k in ("student", "teacher", "agreement", "kl")},
                "images_per_s": summary["images_per_s"],
            }
        )
        print(f"{label}: top-1 {summary['student']['top1']:.2f}", flush=True)
    if args.json:  # the rows with what made them: command, machine, load
        raw = {
            "command": " ".join(["python", *sys.argv]),
            "epochs": args.epochs,
            "overrides": args.overrides,
            "wall_s": time.perf_counter() - started_all,
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
            "load_average": {"before": load_before, "after": os.getloadavg()[0]},
            "rows": results,
        }
        args.json.write_text(json.dumps(raw, indent=2) + "\n")
    print("\n| method | recipe | student top-1 | agreement | KL | time |")
    print("|---|---|---|---|---|---|")
    for r in results:
        agree = r["agreement"]["top1"]
        kl = r["kl"]
        print(
            f"| {r['method']} | `{r['recipe']}` | {r['student']['top1']:.2f}% | "
            f"{'-' if agree is None else f'{agree:.2f}%'} | {'-' if kl is None else f'{kl:.3f}'} "
            f"| {r['wall_s']:.0f} s |"
        )


if __name__ == "__main__":
    main()
