"""Export latency on this CPU: PyTorch eager vs ONNX Runtime fp32 vs int8, and their top-1.

For each architecture: train a Fashion-MNIST student (`distill train` on
benchmarks/export_fmnist.yaml, one epoch at 32 px), then `distill export` it with
``--quantize int8`` on the full 10,000-image test set: parity, the three top-1 figures and the
three latencies come from one export, i.e. one process, one after the other (targets.md: only
figures from the same run are compared). A second, architecture-only table times the same
models at 224 px (random weights, int8 calibrated on random inputs: latency only), the setting
of the reference table in shared/docs/targets.md.

    python benchmarks/export_latency.py                    # resnet18 + mobilenetv3_small_100
    python benchmarks/export_latency.py --arch resnet18 --threads 2 --json out.json

Prints markdown tables for docs/benchmarks.md. Writes the trained runs to RUNS_DIR
(runs/export-fmnist-<arch>; existing runs are reused unless --retrain), the exports to OUT_DIR
(runs/export-bench/<arch>), and with --json every report to that file.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchargs import (
    Several,
    add_overwrite,
    at_least,
    command,
    fail,
    one_line_errors,
    output_file,
    output_folder,
    place,
)
from benchargs import parser as parser_of
from tuning import distill_env

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "benchmarks" / "export_fmnist.yaml"
DEFAULT_ARCHS = ["resnet18", "mobilenetv3_small_100"]


def distill(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "distill_cli", *args]
    print("$ distill " + shlex.join(args), file=sys.stderr, flush=True)
    result = subprocess.run(cmd, capture_output=True, text=True, env=distill_env())
    if result.returncode != 0:
        err = result.stderr.strip()
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        if errors and "Traceback" not in err:  # distill's own one line: passed on as it is
            print(errors[0], file=sys.stderr)
            sys.exit(result.returncode)
        sys.exit(f"failed ({result.returncode}): {' '.join(args)}\n{err[-2000:]}")
    return result


def train(
    arch: str, runs: Path, retrain: bool, sets: list[str] | None = None
) -> tuple[Path, float | None]:
    """The trained run of `arch`: reused only when it is a finished run of the same recipe and
    --train-set overrides (a run of other settings is trained again, not read as these)."""
    from tuning import same_run

    name = f"export-fmnist-{arch}"
    run = runs / name
    items = [f"name={name}", f"model.model={arch}", f"output.dir={runs}", *(sets or [])]
    if not retrain and same_run(run, RECIPE, items):
        return run, None
    t0 = time.perf_counter()
    distill(
        "train", str(RECIPE), "--overwrite", "-q",
        *(arg for value in items for arg in ("--set", value)),
    )  # fmt: skip
    return run, time.perf_counter() - t0


def export(source: str, out: Path, threads: int, extra: list[str]) -> dict[str, Any]:
    result = distill(
        "export", source, "--out", str(out), "--quantize", "int8", "--threads", str(threads),
        "--json", *extra,
    )  # fmt: skip
    return json.loads(result.stdout)


def _entry(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in report["latency"]["entries"] if e["name"] == name)


def trained_row(arch: str, report: dict[str, Any], train_s: float | None) -> dict[str, Any]:
    parity, int8 = report["parity"], report["variants"]["int8"]["parity"]
    eager = _entry(report, "student/pytorch")
    fp32 = _entry(report, "student/onnxruntime/fp32")
    q8 = _entry(report, "student/onnxruntime/int8")
    return {
        "arch": arch,
        "params": report["model"]["params"],
        "input": report["model"]["input_size"][0],
        "images": parity["inputs"]["images"],  # what the top-1 figures were read on
        "train_s": train_s,
        "top1_pytorch": parity["top1_pytorch"],
        "top1_onnx": parity["top1_onnx"],
        "top1_int8": int8["top1"],
        "int8_agreement": int8["top1_agreement_fp32"],
        "max_abs_diff": parity["max_abs_diff"],
        "eager_p50": eager["p50_ms"],
        "fp32_p50": fp32["p50_ms"],
        "int8_p50": q8["p50_ms"],
        "eager_ips": eager["throughput_ips"],
        "fp32_ips": fp32["throughput_ips"],
        "int8_ips": q8["throughput_ips"],
        "runs": (eager["runs"], fp32["runs"], q8["runs"]),
        "spread": (eager["p90_p50"], fp32["p90_p50"], q8["p90_p50"]),
        "issues": {
            e["name"]: e["protocol_issues"] for e in (eager, fp32, q8) if not e["meets_protocol"]
        },
    }


def markdown(rows: list[dict[str, Any]], with_accuracy: bool) -> str:
    head = "| model | input | PyTorch eager p50 | ONNX fp32 p50 | ONNX int8 p50 | fp32 vs eager"
    head += " | int8 vs fp32 | max abs diff | meets protocol |"
    if with_accuracy:
        head += " top-1 PyTorch | top-1 ONNX fp32 | top-1 int8 |"
    cols = head.count("|") - 1
    lines = [head, "|" + "---|" * cols]
    for r in rows:
        line = (
            f"| {r['arch']} | {r['input']} px | {r['eager_p50']:.2f} ms | {r['fp32_p50']:.2f} ms "
            f"| {r['int8_p50']:.2f} ms | {r['eager_p50'] / r['fp32_p50']:.2f}x "
            f"| {r['fp32_p50'] / r['int8_p50']:.2f}x | {r['max_abs_diff']:.1e} "
            f"| {'yes' if not r['issues'] else 'NO (' + str(len(r['issues'])) + ' of 3)'} |"
        )
        if with_accuracy:
            line += (
                f" {r['top1_pytorch']:.2f}% | {r['top1_onnx']:.2f}% | {r['top1_int8']:.2f}% "
                f"({r['top1_int8'] - r['top1_onnx']:+.2f}) |"
            )
        lines.append(line)
    return "\n".join(lines)


#: What `train` sets after `--train-set` (refused there, with the option to use instead).
TRAIN_OWNED = {
    "name": "--arch (the run is export-fmnist-<arch>)",
    "output.name": "--arch (the run is export-fmnist-<arch>)",
    "model.model": "--arch",
    "output.dir": "--runs-dir",
}


#: `distill export` flags this script sets or reads (after `--` they would replace, or drop,
#: what the tables are built from): flag -> this script's option for it, or why it is fixed.
EXPORT_OWNED = {
    "--out": "--out-dir",
    "--threads": "--threads",
    "--input-size": "--size",
    "--quantize": "the int8 column is this script's",
    "--no-latency": "the tables are latencies",
    "--json": "this script reads the report",
    "--images": "every test image of the run is read",
    "--num-classes": "10, Fashion-MNIST's",
    "--onnx": "each model is exported here",
}


def main() -> None:
    parser = parser_of(__doc__)
    parser.add_argument(
        "--arch",
        action=Several,
        metavar="NAME",
        help=f"timm model, repeatable (default: {' and '.join(DEFAULT_ARCHS)})",
    )
    parser.add_argument(
        "--threads", type=at_least(1), default=2, help="ONNX Runtime and PyTorch threads (2)"
    )
    parser.add_argument(
        "--runs-dir", type=place, default=ROOT / "runs", help="the trained runs' folder (runs)"
    )
    parser.add_argument(
        "--out-dir",
        type=place,
        default=ROOT / "runs" / "export-bench",
        help="the exports' folder (runs/export-bench)",
    )
    parser.add_argument(
        "--retrain", action="store_true", help="train again even where a matching run exists"
    )
    parser.add_argument(
        "--train-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra --set for training, repeatable, e.g. data.train_limit=8192",
    )
    parser.add_argument("--skip-224", action="store_true", help="no architecture-only table")
    parser.add_argument(
        "--skip-trained", action="store_true", help="only the architecture-only table (no training)"
    )
    parser.add_argument(
        "--size", type=at_least(1), default=None, help="input side of that table (224)"
    )
    parser.add_argument("--json", type=place, help="also write every report here (default: none)")
    parser.add_argument("extra", nargs="*", help="more `distill export` flags, after --")
    add_overwrite(parser)
    args = parser.parse_args()
    archs = args.arch or DEFAULT_ARCHS
    if args.skip_224 and args.skip_trained:
        fail(
            "--skip-224 and --skip-trained leave no table to measure",
            "--skip-224/--skip-trained",
            "give one of them at most",
        )
    owned = [f for f in args.extra if f.split("=")[0] in EXPORT_OWNED]
    if owned:
        flag = owned[0].split("=")[0]
        instead = EXPORT_OWNED[flag]
        hint = f"use {instead}" if instead.startswith("--") else f"drop it ({instead})"
        fail(f"{flag} after -- is set by this script", "-- " + flag, hint)
    if args.skip_224 and args.size is not None:  # it sizes only the table --skip-224 drops
        fail(f"--size {args.size} with --skip-224", "--size", "drop one of them")
    args.size = args.size or 224
    if args.json:
        output_file(args.json, "--json", args.overwrite)
    output_folder(args.runs_dir, "--runs-dir")
    output_folder(args.out_dir, "--out-dir")
    from tuning import check_models, check_not_owned

    one_line_errors(lambda: check_models(archs, "--arch"))
    one_line_errors(lambda: check_not_owned(args.train_set, TRAIN_OWNED, "--train-set"))
    load = os.getloadavg()[0]
    trained: list[dict[str, Any]] = []
    at224: list[dict[str, Any]] = []
    reports: dict[str, Any] = {}

    def save() -> None:
        """The JSON after every model: a run cut short keeps the models it measured."""
        if not args.json:
            return
        from tuning import environment

        raw = {  # the table rows beside the whole reports they were read from
            "command": command(),
            "environment": environment(),
            "threads": args.threads,
            "load_average": {"before": load, "after": os.getloadavg()[0]},
            "trained": trained,
            f"architectures_{args.size}px": at224,
            "reports": reports,
        }
        args.json.write_text(json.dumps(raw, indent=2) + "\n")

    for arch in archs:
        if not args.skip_trained:
            run, train_s = train(arch, args.runs_dir, args.retrain, args.train_set)
            extra = ["--images", "0", *args.extra]
            report = export(str(run), args.out_dir / arch, args.threads, extra)
            reports[arch] = report
            trained.append(trained_row(arch, report, train_s))
        if not args.skip_224:
            big = export(
                arch, args.out_dir / f"{arch}-{args.size}", args.threads,
                ["--input-size", str(args.size), "--num-classes", "10", "--calib-images", "32",
                 "--no-simplify", *args.extra],
            )  # fmt: skip
            reports[f"{arch}@{args.size}"] = big
            at224.append(trained_row(arch, big, None))
        save()
    env = next(iter(reports.values()))["latency"]["environment"]
    print(f"\nCPU: {env['cpu']} ({env['cpu_count']} cores), {args.threads} threads; versions "
          f"{json.dumps(env['versions'])}; load average before: {load:.2f}\n")  # fmt: skip
    if trained:
        images = ", ".join(sorted({f"{r['images']:,}" for r in trained}))
        print(f"Fashion-MNIST students ({images} test images):\n")
        print(markdown(trained, with_accuracy=True))
    for r in trained:
        train_s = f"{r['train_s']:.0f} s" if r["train_s"] else "reused run"
        print(
            f"- {r['arch']}: {r['params']:,} params, training {train_s}; throughput at batch "
            f"32: eager {r['eager_ips']:,.0f}, ONNX fp32 {r['fp32_ips']:,.0f}, int8 "
            f"{r['int8_ips']:,.0f} img/s; int8 top-1 agreement with fp32 {r['int8_agreement']:.2f}%"
            f"; timed runs {r['runs']}"
        )
    if at224:
        print(f"\nArchitectures at {args.size} px (random weights; latency only):\n")
        print(markdown(at224, with_accuracy=False))
    print("\nEntries that do not meet the protocol (p90/p50 per entry: eager, fp32, int8):\n")
    for r in trained + at224:
        spread = ", ".join(f"{v:.2f}" for v in r["spread"])
        print(f"- {r['arch']} {r['input']} px (p90/p50 {spread}):")
        for name, issues in r["issues"].items():
            print(f"  - {name}: " + "; ".join(issues))
    after = os.getloadavg()[0]
    print(f"\nload average after: {after:.2f}")
    save()


if __name__ == "__main__":
    main()
