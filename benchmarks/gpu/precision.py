"""Part 6: bf16 against fp32, the same short function-matching run in both (issue 26, item 6).

resnet18 -> mobilenetv3_small_050 on Fashion-MNIST at 32 px (benchmarks/gpu_quality_fm.yaml,
CUDA graphs), from part 3's teacher (trained here when part 3 did not leave one), one seed,
`runtime.precision` bf16 then fp32, otherwise identical. Recorded: each run's final and best
top-1, teacher agreement and images/s, and the differences (bf16 - fp32). With one seed a
difference under about half a point is within what a second seed moves (docs/benchmarks.md).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from gpu.common import BENCH, ROOT, Record, cli, last_evals, sets, summary
from gpu.peers import ensure_teacher, fmnist_data, smoke_cpu

EPOCHS = 10


def run(rec: Record, *, smoke: bool, work: Path, fmnist: Path | None, **_: Any) -> None:
    if fmnist is None or not fmnist.is_dir():
        rec.data["errors"].append(f"no Fashion-MNIST folder ({fmnist}): pass --fmnist")
        rec.save()
        return
    runs = work / "peers" / "runs"
    ckpt = ensure_teacher(rec, smoke=smoke, runs=runs, fmnist=fmnist, epochs=1 if smoke else 3)
    if ckpt is None:
        return
    epochs = 1 if smoke else EPOCHS
    items = [*fmnist_data(fmnist, runs, smoke), *smoke_cpu(smoke), f"teacher.checkpoint={ckpt}"]
    items += [f"schedule.epochs={epochs}", f"schedule.evals={min(epochs, 4)}"]
    if smoke:
        items += ["teacher.check_accuracy=false", "teacher.model=test_resnet"]
        items += ["student.model=test_efficientnet", "schedule.batch_size=64"]
    rec.set("settings", {"epochs": epochs, "seed": 0, "recipe": "benchmarks/gpu_quality_fm.yaml"})
    for precision in ("bf16", "fp32"):
        name = f"precision-{precision}"
        cmd = cli("run", str(BENCH / "gpu_quality_fm.yaml"), "--overwrite")
        cmd += sets([*items, f"runtime.precision={precision}", f"output.name={name}"])
        rec.put("commands", precision, " ".join(cmd[2:]))
        with rec.guard(precision):
            subprocess.run(cmd, cwd=ROOT, check=True)
            done = summary(runs / name) or {}
            done["evals"] = [
                {k: e.get(k) for k in ("epoch", "top1", "agreement_top1", "train_time_s")}
                for e in last_evals(runs / name)
            ]
            rec.put("runs", precision, done)
    both = rec.data.get("runs", {})
    if {"bf16", "fp32"} <= set(both):
        last = {p: both[p]["evals"][-1] for p in ("bf16", "fp32")}
        rec.set(
            "difference_bf16_minus_fp32",
            {
                "top1": last["bf16"]["top1"] - last["fp32"]["top1"],
                "agreement_top1": last["bf16"]["agreement_top1"] - last["fp32"]["agreement_top1"],
                "speed": (both["bf16"]["images_per_s"] or 0) / (both["fp32"]["images_per_s"] or 1),
            },
        )
