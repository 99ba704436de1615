"""distill's full function-matching step vs the bare distillation step, in one run.

The reference is ``shared/bench/bare_kd_step.py`` (teacher forward + student forward/backward +
fused AdamW on random tensors already on the GPU). distill's step is the real engine: uint8
images held in GPU memory, batched crop + flip + mixup + per-model normalization on the GPU,
online teacher, KL loss, clipping, schedule, and the engine's logging. Both run here, one after
the other, with the same teacher, student, batch, resolution and precision, and the ratio is
printed. Results are meant for docs/benchmarks.md.

    python benchmarks/train_throughput.py --teacher resnet50 --student resnet18 --res 224

Without a GPU, ``--device cpu`` runs distill's side only (the bare step is CUDA-only), which is
how the test suite keeps this script working.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_BARE = Path(__file__).resolve().parents[2] / "shared" / "bench" / "bare_kd_step.py"


def distill_step_throughput(args: argparse.Namespace) -> dict:
    """Images/s of distill's own training loop (median over logging windows after warm-up)."""
    from distill_cli import api
    from distill_cli.recipe import Recipe

    steps = args.warmup + args.steps
    compile_on = args.mode == "bf16_compile"
    with tempfile.TemporaryDirectory() as tmp:
        recipe = Recipe.model_validate(
            {
                "name": "bench",
                "teacher": {
                    "model": args.teacher,
                    "num_classes": args.classes,
                    "input_size": args.res,
                },
                "student": {"model": args.student, "input_size": args.res},
                "data": {
                    "source": "synthetic",
                    "synthetic": {
                        "num_classes": args.classes,
                        "train_size": args.batch * args.images_batches,
                        "val_size": args.batch,
                        "image_size": round(args.res * 1.15),
                    },
                },
                "method": {"name": "function_matching"},
                "schedule": {
                    "steps": steps,
                    "batch_size": args.batch,
                    "log_every": args.window,
                    "eval_every": 0,
                    "warmup_steps": 0,
                },
                "runtime": {
                    "device": args.device,
                    "precision": "fp32" if args.mode == "fp32" else "auto",
                    "channels_last": args.mode != "fp32" and args.device != "cpu",
                    "compile": compile_on,
                },
                "output": {"dir": tmp},
            }
        )
        api.run(recipe)
        records = [json.loads(x) for x in (Path(tmp) / "bench" / "metrics.jsonl").open()]
    windows = [
        r["images_per_s"] for r in records if r["kind"] == "train" and r["step"] > args.warmup
    ]
    return {"images_per_s": round(statistics.median(windows), 1), "windows": len(windows)}


def bare_step_throughput(args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        str(args.bare),
        "--teacher",
        args.teacher,
        "--student",
        args.student,
        "--batch",
        str(args.batch),
        "--res",
        str(args.res),
        "--classes",
        str(args.classes),
        "--mode",
        args.mode,
        "--steps",
        str(args.steps),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher", default="resnet50")
    p.add_argument("--student", default="resnet18")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--res", type=int, default=224)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--mode", choices=["fp32", "bf16_cl", "bf16_compile"], default="bf16_compile")
    p.add_argument("--steps", type=int, default=60, help="timed steps")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps (compile, autotune)")
    p.add_argument("--window", type=int, default=10, help="steps per timing window")
    p.add_argument("--images-batches", type=int, default=8, help="dataset size in batches")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--bare", type=Path, default=DEFAULT_BARE, help="path to bare_kd_step.py")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    result = {k: getattr(args, k) for k in ("teacher", "student", "batch", "res", "mode", "device")}
    result["distill"] = distill_step_throughput(args)
    if args.device == "cuda":
        import torch

        result["gpu"] = torch.cuda.get_device_name()
        result["bare"] = bare_step_throughput(args)
        result["ratio"] = round(
            result["distill"]["images_per_s"] / result["bare"]["images_per_s"], 3
        )
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.teacher} -> {args.student}, batch {args.batch}, {args.res} px, {args.mode}")
    print(f"  distill full step: {result['distill']['images_per_s']:>10,.1f} images/s")
    if "bare" in result:
        print(f"  bare step        : {result['bare']['images_per_s']:>10,.1f} images/s")
        print(f"  ratio            : {result['ratio']:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
