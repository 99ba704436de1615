"""int8 accuracy per quantization option: the top-1 each ONNX Runtime knob costs or saves.

Two trained models, CPU-sized: the quickstart student (a `resnet10t` teacher trained `--epochs`
(2) on a Fashion-MNIST subset, distilled as long into `test_resnet` with function matching) and
a `mobilenetv3_small_050` trained on labels as long on the same subset at 32 px (MobileNets are
where int8 loses most: depthwise convolutions and hard-swish give wide, skewed activation
ranges). Each is
exported once to ONNX fp32; the same file is then quantized with every option set of `OPTIONS`
(`distill export RUN --onnx model.onnx --quantize int8 ...`), the int8 file's top-1 measured on
the same validation images as fp32. Latency is not measured here (see export_latency.py).

    python benchmarks/int8_options.py --json benchmarks/results/int8_options_<date>.json

Prints the markdown table for docs/benchmarks.md. Writes the trained runs and exports under
RUNS (runs/bench-int8; existing runs are reused unless --retrain) and with --json the raw
results to that file (rewritten after each model).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from benchargs import (
    add_overwrite,
    at_least,
    command,
    fail,
    output_file,
    output_folder,
    parser,
    place,
)
from export_latency import distill  # the same `distill` subprocess helper (this folder)
from tuning import environment

from distill_cli.students.cache import cpu_model

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "recipes" / "quickstart"
MOBILENET = ROOT / "benchmarks" / "export_fmnist.yaml"
MOBILE = "mobilenetv3_small_050"  # the second model, trained on labels with MOBILENET

#: (label, `distill export` flags): the default first, then one change at a time.
OPTIONS: list[tuple[str, list[str]]] = [
    ("minmax (default: per-channel, act asym, weight sym)", []),
    ("minmax, per-tensor weights", ["--per-tensor"]),
    ("minmax, symmetric activations", ["--act-symmetric"]),
    ("minmax, per-tensor asymmetric weights", ["--per-tensor", "--weight-asymmetric"]),
    ("minmax, first+last layers fp32", ["--keep-fp32", "first,last"]),
    ("entropy", ["--calib-method", "entropy"]),
    ("percentile", ["--calib-method", "percentile"]),
    (
        "percentile, first+last layers fp32",
        ["--calib-method", "percentile", "--keep-fp32", "first,last"],
    ),
]


def _subset(train: int, val: int) -> list[str]:
    """The data subset, and a warm-up short enough for the few steps a subset gives."""
    return [f"data.train_limit={train}", f"data.val_limit={val}", "schedule.warmup_steps=5"]


def train_runs(runs: Path, train: int, val: int, epochs: int, retrain: bool) -> dict[str, Path]:
    """The two trained models' run folders: trained here unless a finished run of the same
    recipe and settings (--train, --val, --epochs) is there (other settings train again)."""
    from tuning import same_run

    sub = _subset(train, val)
    out = [f"output.dir={runs}", f"schedule.epochs={epochs}", *sub]
    teacher = runs / "int8-qs-teacher"
    student = runs / "int8-qs-student"
    mobile = runs / f"int8-{MOBILE}"
    jobs = [
        ("train", QUICKSTART / "teacher.yaml", teacher, ["name=int8-qs-teacher", *out]),
        (
            "run",
            QUICKSTART / "distill.yaml",
            student,
            [
                "name=int8-qs-student",
                f"teacher.checkpoint={teacher / 'checkpoints' / 'best.safetensors'}",
                *out,
            ],
        ),
        (
            "train",
            MOBILENET,
            mobile,
            [f"name=int8-{MOBILE}", f"model.model={MOBILE}", *out],
        ),
    ]
    from distill_cli.recipe.document import load_recipe

    for _, recipe, _, items in jobs:  # before any training: distill's own refusal names a --set
        batch = load_recipe(recipe, items).schedule.batch_size  # that this script does not have
        if batch > train:
            fail(
                f"--train {train} is fewer images than one batch ({batch}) of {recipe.name}",
                "--train",
                f"give --train {batch} or more",
            )
    teacher_trained = False  # then the student distilled from it is trained again too
    for verb, recipe, run, items in jobs:
        if retrain or (teacher_trained and verb == "run") or not same_run(run, recipe, items):
            teacher_trained = teacher_trained or run == teacher
            distill(
                verb, str(recipe), "--overwrite", "-q", *(x for i in items for x in ("--set", i))
            )
    # the table's labels name the models that ran: the quickstart recipe's student, MOBILE
    quickstart = load_recipe(QUICKSTART / "distill.yaml").student.model
    return {f"{quickstart} (quickstart student)": student, MOBILE: mobile}


def measure(run: Path, out: Path, images: int, calib: int) -> dict[str, Any]:
    """fp32 once, then int8 per option set from that same file; top-1 and drop per option."""
    base = out / "fp32"
    common = ["--images", str(images), "--calib-images", str(calib), "--no-latency"]
    distill("export", str(run), "--out", str(base), "--no-teacher", *common, "-q")
    fp32 = json.loads((base / "report.json").read_text())["parity"]
    rows = []
    for index, (label, flags) in enumerate(OPTIONS):
        folder = out / f"int8-{index}"
        t0 = time.perf_counter()
        distill(
            "export", str(run), "--onnx", str(base / "model.onnx"), "--out", str(folder),
            "--quantize", "int8", "--no-teacher", *common, *flags, "-q",
        )  # fmt: skip
        report = json.loads((folder / "report.json").read_text())
        int8 = report["variants"]["int8"]
        rows.append(
            {
                "option": label,
                "flags": " ".join(flags),
                "top1_int8": int8["parity"]["top1"],
                "top1_drop": int8["parity"]["top1_drop"],
                "agreement_fp32": int8["parity"]["top1_agreement_fp32"],
                "nodes_kept_fp32": int8.get("nodes_kept_fp32", []),
                "calibration": int8["calibration"],
                "bytes": int8["bytes"],
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        print(f"  {label}: drop {rows[-1]['top1_drop']}", file=sys.stderr, flush=True)
    return {
        "run": str(run),
        "top1_pytorch": fp32["top1_pytorch"],
        "top1_onnx_fp32": fp32["top1_onnx"],
        "images": fp32["inputs"]["images"],
        "options": rows,
    }


def table(results: dict[str, Any]) -> str:
    models = list(results["models"])
    head = "| int8 option | " + " | ".join(f"{m}: top-1 (drop)" for m in models) + " |"
    lines = [head, "|---" * (len(models) + 1) + "|"]
    fp32 = " | ".join(f"{results['models'][m]['top1_onnx_fp32']:.2f}%" for m in models)
    lines.append(f"| ONNX fp32 (reference) | {fp32} |")
    for i, (label, _) in enumerate(OPTIONS):
        cells = []
        for m in models:
            row = results["models"][m]["options"][i]
            cells.append(f"{row['top1_int8']:.2f}% ({row['top1_drop']:+.2f})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument(
        "--runs",
        type=place,
        default=ROOT / "runs" / "bench-int8",
        help="the trained runs and the exports (runs/bench-int8)",
    )
    ap.add_argument("--train", type=at_least(1), default=6000, help="training images (6000)")
    ap.add_argument("--val", type=at_least(1), default=2000, help="validation images (2000)")
    ap.add_argument("--epochs", type=at_least(1), default=2, help="epochs of each training run (2)")
    ap.add_argument(
        "--calib-images", type=at_least(1), default=256, help="int8 calibration images (256)"
    )
    ap.add_argument(
        "--retrain", action="store_true", help="train again even where a matching run exists"
    )
    ap.add_argument("--json", type=place, help="write the raw results here (default: none)")
    add_overwrite(ap)
    args = ap.parse_args()
    if args.json:
        output_file(args.json, "--json", args.overwrite)
    output_folder(args.runs, "--runs")
    t0 = time.perf_counter()
    runs = train_runs(args.runs, args.train, args.val, args.epochs, args.retrain)
    results: dict[str, Any] = {
        "command": command(),
        "machine": {"cpu": cpu_model(), "python": platform.python_version()},
        "environment": environment(),
        "settings": vars(args) | {"runs": str(args.runs), "json": str(args.json)},
        "models": {},
    }
    for label, run in runs.items():
        folder = args.runs / "exports" / run.name
        results["models"][label] = measure(run, folder, 0, args.calib_images)
        results["seconds"] = round(time.perf_counter() - t0, 1)
        if args.json:  # after each model: a cut session keeps what was measured
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
