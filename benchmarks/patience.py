"""The paper's central result with distill's own commands: a patient, consistent student.

Beyer et al. (CVPR 2022) show that function matching keeps improving with the length of the
schedule and, on small datasets, reaches its teacher, while the shortcuts (a fixed teacher,
independent views, labels alone) fall behind. This benchmark reproduces that regime on
Fashion-MNIST, where a 2-core CPU can afford thousands of epochs:

1. a teacher (`recipes/patience/teacher.yaml`, resnet10t) trained by `distill train` on the
   labeled training images less a 5,000-image holdout, once (reused while its recipe is
   unchanged);
2. a student 13x smaller (test_resnet) distilled by `distill run` on a fixed, class-balanced
   subset of 1,000 of those images (`data.subset`); evaluations during training and `best` use
   the holdout (`data.holdout: 5000`), the 10,000 test images are read once at the end:
   function matching at a ladder of schedule lengths, and at the longest length also the same
   student from scratch on the subset's labels, classic KD, early-stopped KD and the paper's
   three ablations (fixed teacher, independent views, consistent views without mixup);
3. one JSON of results, a markdown table and a figure in the style of the paper's Figure 3.

    python benchmarks/patience.py                    # the whole benchmark (about 45 minutes)
    python benchmarks/patience.py --quick --out DIR  # the same code on a tiny budget (tests)

Runs are independent, so they go `--jobs` at a time (default 2, one CPU thread each): on small
images one process per core is faster than one process with two threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes" / "patience"
TEACHER_RECIPE = RECIPES / "teacher.yaml"
FM_RECIPE = RECIPES / "function_matching.yaml"

#: The comparison rows at the longest schedule: label -> overrides of the FM recipe.
#: Settings not named here (student, crops, optimizer, batch, subset) are the FM recipe's.
COMPARISONS: dict[str, list[str]] = {
    "student from scratch (subset labels)": [
        "teacher=null",
        "method={name: supervised, label_smoothing: 0.1}",
        "optim.lr=3e-3",  # the teacher's optimizer settings, which train on labels well
        "optim.weight_decay=5e-2",
        "optim.weight_decay_scale=lr",
    ],
    "classic KD (T=4, alpha=0.5)": [
        "method={name: kd, temperature: 4.0, alpha: 0.5, mixup: false}",
    ],
    "early-stopped KD (KD for the first 75%)": [
        "method={name: eskd, temperature: 4.0, alpha: 0.5, kd_stop_epoch: STOP}",
    ],
    "FM ablation: fixed teacher": [
        "method.teacher_targets=fixed",
        "method.mixup=false",
    ],
    "FM ablation: independent views": ["method.views=independent"],
    "FM ablation: consistent views, no mixup": ["method.mixup=false"],
}
FM_LABEL = "function matching"


@dataclass
class RunRow:
    """One finished (or failed) run of the benchmark."""

    label: str
    epochs: int
    run: str
    overrides: list[str]
    top1: float | None = None  # the test set, final weights
    best_top1: float | None = None  # the test set, the best-on-holdout checkpoint
    best_epoch: float | None = None  # chosen on the holdout
    holdout_top1: float | None = None  # the holdout, final weights
    agreement: float | None = None
    kl: float | None = None
    wall_s: float | None = None
    images_per_s: float | None = None
    curve: list[tuple[float, float]] = field(default_factory=list)
    error: str | None = None


def distill(args: list[str], log: Path, threads: int) -> None:
    """One `distill` command in its own process, output to `log`; raises on failure."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "distill_cli", *args, "--set", f"runtime.threads={threads}"]
    with log.open("w") as fh:
        done = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"distill {args[0]} failed ({done.returncode}): {tail[0]}")


def _what_trains(recipe: Any) -> dict:
    """The recipe fields that decide the teacher's weights (not where or how fast it ran)."""
    data = recipe.model_dump(mode="json")
    keep = {k: data[k] for k in ("student", "augment", "method", "optim", "schedule")}
    keep["data"] = {k: data["data"][k] for k in ("source", "subset", "train_limit", "holdout")}
    keep["seed"] = data["runtime"]["seed"]
    return keep


def teacher_run(
    out: Path,
    overrides: list[str],
    threads: int,
    recipe: Path = TEACHER_RECIPE,
    name: str = "patience-teacher",
) -> Path:
    """The teacher's run folder: trained once, reused while its resolved recipe is the same."""
    from distill_cli.recipe.document import load_recipe

    wanted = load_recipe(recipe, [*overrides, f"output.dir={out}", f"output.name={name}"])
    run = out / name
    saved = run / "recipe.yaml"
    finished = (run / "summary.json").is_file() and saved.is_file()
    if finished and _what_trains(load_recipe(saved)) == _what_trains(wanted):
        print(f"teacher: reusing {run}", flush=True)
        return run
    print("teacher: training (distill train)...", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    args = ["train", str(recipe), "--overwrite", "-q"]
    for item in [*overrides, f"output.dir={out}", f"output.name={name}"]:
        args += ["--set", item]
    distill(args, out / f"{name}.log", threads)
    return run


def _run(row: RunRow, out: Path, common: list[str], threads: int) -> RunRow:
    from distill_cli.summary import RunSummary

    args = ["run", str(FM_RECIPE), "--overwrite", "-q"]
    sets = [*common, f"schedule.epochs={row.epochs}", f"output.dir={out}", f"output.name={row.run}"]
    for item in [*sets, *row.overrides]:
        args += ["--set", item]
    started = time.perf_counter()
    try:
        distill(args, out / f"{row.run}.log", threads)
    except RuntimeError as exc:
        row.error = str(exc)
        print(f"  {row.label} @ {row.epochs} epochs: FAILED {exc}", flush=True)
        return row
    row.wall_s = time.perf_counter() - started
    result = RunSummary.load(out / row.run)
    assert result.test is not None, "the patience recipes hold out a validation split"
    row.top1, row.best_top1 = result.test.top1, result.test.best_top1
    row.agreement, row.kl = result.test.agreement_top1, result.kl
    row.holdout_top1, row.best_epoch = result.student.top1, result.best_epoch
    row.images_per_s = result.images_per_s
    row.curve = eval_curve(out / row.run)
    print(f"  {row.label} @ {row.epochs} epochs: top-1 {row.top1:.2f}", flush=True)
    return row


def eval_curve(run: Path) -> list[tuple[float, float]]:
    """(epoch, top-1) of every evaluation during a run (the holdout's, with data.holdout)."""
    curve = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") == "eval" and record.get("top1") is not None:
            curve.append((record["epoch"], record["top1"]))
    return curve


def _rows(lengths: list[int]) -> list[RunRow]:
    longest = max(lengths)
    rows = [RunRow(FM_LABEL, n, f"patience-fm-{n}", []) for n in lengths]
    for label, overrides in COMPARISONS.items():
        sets = [o.replace("STOP", str(max(1, longest * 3 // 4))) for o in overrides]
        slug = label.split(":")[-1].split("(")[0].strip().replace(" ", "-").replace(",", "")
        rows.append(RunRow(label, longest, f"patience-{slug}-{longest}", sets))
    # longest first: the slowest runs start early, so the pool ends together
    return sorted(rows, key=lambda r: -r.epochs)


def markdown(result: dict) -> str:
    """The table for docs/benchmarks.md."""
    teacher = result["teacher"]
    lines = [
        f"Teacher {teacher['model']} ({teacher['params'] / 1e6:.2f} M params), "
        f"trained on all {teacher['train_images']:,} images: **{teacher['top1']:.2f}%** top-1. "
        f"Student {result['student']['model']} ({result['student']['params'] / 1e6:.2f} M params, "
        f"{teacher['params'] / result['student']['params']:.0f}x smaller) on "
        f"{result['subset']:,} images; top-1 on the {result['test_images']:,} test images, read "
        f"once at the end; `best` chosen on the {result['holdout']:,}-image holdout.",
        "",
        "| method | epochs of the subset | test top-1 (final) | test top-1 of best (holdout "
        "epoch) | agreement | KL | time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if r["error"]:
            lines.append(f"| {r['label']} | {r['epochs']} | failed: {r['error']} | | | | |")
            continue
        best = f"{r['best_top1']:.2f}% ({r['best_epoch']})" if r["best_top1"] is not None else "-"
        agree = "-" if r["agreement"] is None else f"{r['agreement']:.2f}%"
        kl = "-" if r["kl"] is None else f"{r['kl']:.3f}"
        lines.append(
            f"| {r['label']} | {r['epochs']} | {r['top1']:.2f}% | {best} | {agree} | {kl} | "
            f"{r['wall_s'] / 60:.1f} min |"
        )
    return "\n".join(lines)


def figure(result: dict, path: Path) -> None:
    """Top-1 against schedule length (log x), one line per method; the teacher as a line."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    fig = Figure(figsize=(9.5, 4.8), dpi=120)
    ax = fig.add_subplot()
    rows = [r for r in result["rows"] if not r["error"]]
    fm = sorted((r for r in rows if r["label"] == FM_LABEL), key=lambda r: r["epochs"])
    ax.plot(
        [r["epochs"] for r in fm],
        [r["top1"] for r in fm],
        "o-",
        lw=2.2,
        color="C3",
        label=FM_LABEL,
        zorder=5,
    )
    others = [r for r in rows if r["label"] != FM_LABEL]
    colours = ["C0", "C1", "C2", "C4", "C5", "C6", "C7", "C8"]
    for i, r in enumerate(others):
        # side by side at the longest length, so markers with close accuracies stay visible
        x = r["epochs"] * 1.045 ** (i - (len(others) - 1) / 2)
        ax.plot(
            [x],
            [r["top1"]],
            "sD^v<>Xp"[i % 8],
            ms=8,
            color=colours[i % 8],
            ls="none",
            label=r["label"],
        )
    ax.axhline(
        result["teacher"]["top1"],
        color="k",
        ls="--",
        lw=1.2,
        label=f"teacher ({result['teacher']['top1']:.2f}%)",
    )
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sorted(result["lengths"])))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(f"schedule length (epochs of the {result['subset']:,}-image subset)")
    ax.set_ylabel("student top-1 on the test set (%)")
    ax.set_title("Patience on Fashion-MNIST: function matching vs the shortcuts", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "patience")
    p.add_argument("--lengths", type=int, nargs="+", default=[10, 30, 100, 300, 600])
    p.add_argument("--subset", type=int, default=1000)
    p.add_argument("--holdout", type=int, default=5000, help="training images held out for choices")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="override for every distillation run (e.g. optim.lr=3e-3)",
    )
    p.add_argument("--json", type=Path, default=None, help="results JSON (default: OUT/...)")
    p.add_argument("--md", type=Path, default=None, help="also write the markdown table here")
    p.add_argument("--figure", type=Path, default=None, help="also write the figure here")
    p.add_argument(
        "--quick",
        action="store_true",
        help="the same pipeline on a tiny budget: a 1-epoch teacher on 4,000 images, "
        "a 100-image subset, 1 and 3 epochs, 2,000 test images",
    )
    a = p.parse_args()

    teacher_sets: list[str] = []
    if a.quick:
        a.lengths, a.subset, a.holdout = [1, 3], 100, 500
    held = f"data.holdout={a.holdout}"
    teacher_sets = [held]
    common = [f"data.subset={a.subset}", held, *a.overrides]
    if a.quick:
        teacher_sets += [
            "schedule.epochs=1",
            "data.train_limit=4000",
            "data.val_limit=2000",
            "schedule.eval_every=1",
        ]
        # 1-epoch rows: one evaluation (a recipe may not ask for more evaluations than epochs)
        common = ["data.subset=100", "schedule.batch_size=50", "data.val_limit=2000"]
        common += ["schedule.evals=1", *a.overrides]
    threads = max(1, (os.cpu_count() or 2) // max(1, a.jobs))
    started = time.perf_counter()
    a.out.mkdir(parents=True, exist_ok=True)
    teacher = teacher_run(a.out, teacher_sets, max(1, os.cpu_count() or 1))
    teacher_ckpt = teacher / "checkpoints" / "best.safetensors"
    common.append(f"teacher.checkpoint={teacher_ckpt}")
    from distill_cli.summary import RunSummary

    teacher_sum = RunSummary.load(teacher)
    assert teacher_sum.test is not None

    rows = _rows(a.lengths)
    print(f"{len(rows)} runs, {a.jobs} at a time, {threads} thread(s) each", flush=True)
    # a row's own overrides come last: `teacher=null` (scratch) drops the common checkpoint
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        done = list(pool.map(lambda row: _run(row, a.out, common, threads), rows))
    order = {label: i for i, label in enumerate([FM_LABEL, *COMPARISONS])}
    done.sort(key=lambda r: (order[r.label], r.epochs))

    fm_any = next((r for r in done if r.label == FM_LABEL and not r.error), None)
    student = {"model": "test_resnet", "params": None}
    if fm_any is not None:
        res = RunSummary.load(a.out / fm_any.run)
        student = {"model": res.student.model, "params": res.student.params}
    result = {
        "command": "python benchmarks/patience.py " + " ".join(sys.argv[1:]),
        "quick": a.quick,
        "subset": a.subset,
        "holdout": a.holdout,
        "lengths": a.lengths,
        "test_images": 2000 if a.quick else 10000,
        "jobs": a.jobs,
        "threads_per_job": threads,
        "wall_s": time.perf_counter() - started,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_avg_at_end": os.getloadavg(),
        },
        "teacher": {
            "model": teacher_sum.student.model,
            "params": teacher_sum.student.params,
            # the checkpoint the students learn from: best on the holdout, on the test set
            "top1": teacher_sum.test.best_top1,
            "holdout_top1": teacher_sum.best_score,
            "train_images": 4000 if a.quick else 60000 - a.holdout,
            "run": str(teacher),
        },
        "student": student,
        "recipes": {
            "teacher": str(TEACHER_RECIPE.relative_to(ROOT)),
            "distill": str(FM_RECIPE.relative_to(ROOT)),
        },
        "rows": [asdict(r) for r in done],
    }
    path = a.json or a.out / "patience.json"
    path.write_text(json.dumps(result, indent=2))
    table = markdown(result)
    if a.md:
        a.md.write_text(table + "\n")
    figure(result, a.figure or a.out / "patience.png")
    print("\n" + table)
    print(f"\nwall time {result['wall_s'] / 60:.1f} min; results in {path}")
    if any(r.error for r in done):
        sys.exit(1)


if __name__ == "__main__":
    main()
