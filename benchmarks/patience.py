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
   the holdout (`data.holdout: 5000`), the 10,000 test images are read once at the end;
3. the same tuning budget for each method compared: function matching, the student from
   scratch on the subset's labels and classic KD each run every setting of one lr/wd grid at
   `--tune-at` epochs (100), and keep the one with the best holdout top-1; the rows that change
   one thing of a method (early-stopped KD; the paper's ablations of function matching) run
   with that method's pick;
4. function matching at a ladder of schedule lengths (10 to 1,000 epochs), and at `--compare-at`
   epochs (600) the student from scratch, classic KD, early-stopped KD and the three ablations
   (fixed teacher, independent views, consistent views without mixup);
5. one JSON of results (every run, the tuning runs and the picks), markdown tables and a figure
   in the style of the paper's Figure 3 (`patience_report.py` redraws them from the JSON).

    python benchmarks/patience.py                    # the whole benchmark (about 2 hours)
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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from patience_report import FM_LABEL, figure, markdown, tuning_markdown

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes" / "patience"
TEACHER_RECIPE = RECIPES / "teacher.yaml"
FM_RECIPE = RECIPES / "function_matching.yaml"

SCRATCH = "student from scratch (subset labels)"
KD = "classic KD (T=4, alpha=0.5)"
ESKD = "early-stopped KD (KD for the first 75%)"
#: The comparison rows at `--compare-at` epochs: label -> overrides of the FM recipe.
#: Settings not named here (student, crops, batch, subset) are the FM recipe's; lr and wd are
#: each tuned method's pick (TUNED), or the pick of the method an ablation changes (SHARES).
COMPARISONS: dict[str, list[str]] = {
    SCRATCH: ["teacher=null", "method={name: supervised, label_smoothing: 0.1}"],
    KD: [
        "method={name: kd, temperature: 4.0, alpha: 0.5, mixup: false}",
    ],
    ESKD: [
        "method={name: eskd, temperature: 4.0, alpha: 0.5, kd_stop_epoch: STOP}",
    ],
    "FM ablation: fixed teacher": [
        "method.teacher_targets=fixed",
        "method.mixup=false",
    ],
    "FM ablation: independent views": ["method.views=independent"],
    "FM ablation: consistent views, no mixup": ["method.mixup=false"],
}
#: The methods given the same tuning budget (every GRID setting at `--tune-at` epochs).
TUNED = (FM_LABEL, SCRATCH, KD)
#: Rows that change one thing of a tuned method run with that method's pick, as in the paper.
SHARES = {
    ESKD: KD,
    "FM ablation: fixed teacher": FM_LABEL,
    "FM ablation: independent views": FM_LABEL,
    "FM ablation: consistent views, no mixup": FM_LABEL,
}
#: (lr, wd) with weight decay counted as the paper does (x schedule): its Pets/Flowers grid.
GRID = ((1e-2, 1e-3), (1e-2, 1e-4), (3e-3, 1e-3), (3e-3, 1e-4))


@dataclass
class RunRow:
    """One finished (or failed) run of the benchmark."""

    label: str
    epochs: int
    run: str
    overrides: list[str]
    lr: float | None = None  # None: the recipe's
    wd: float | None = None
    role: str = "ladder"  # or "tune" (the grid at --tune-at epochs)
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
    from distill_cli.rundir.summary import RunSummary

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


def _slug(label: str) -> str:
    return label.split(":")[-1].split("(")[0].strip().replace(" ", "-").replace(",", "")


def _with(row: RunRow, cfg: tuple[float, float] | None) -> RunRow:
    """The row with a setting of the grid (lr, wd), or the recipe's when `cfg` is None."""
    if cfg is not None:
        row.lr, row.wd = cfg
        row.overrides = [*row.overrides, f"optim.lr={cfg[0]}", f"optim.weight_decay={cfg[1]}"]
        row.run += f"-lr{cfg[0]:g}-wd{cfg[1]:g}"
    return row


def tune_rows(tune_at: int, grid: tuple[tuple[float, float], ...]) -> list[RunRow]:
    """Every tuned method with every grid setting at `tune_at` epochs."""
    rows = []
    for label in TUNED:
        sets = COMPARISONS.get(label, [])
        for cfg in grid:
            row = RunRow(label, tune_at, f"patience-tune-{_slug(label)}-{tune_at}", list(sets))
            row.role = "tune"
            rows.append(_with(row, cfg))
    return rows


def pick(rows: list[RunRow]) -> dict[str, tuple[float, float]]:
    """Per tuned method, the setting with the best final holdout top-1 (never the test set)."""
    picks: dict[str, tuple[float, float]] = {}
    for label in TUNED:
        done = [r for r in rows if r.label == label and r.error is None]
        if done:
            best = max(done, key=lambda r: r.holdout_top1 or 0.0)
            picks[label] = (best.lr, best.wd)  # type: ignore[assignment]
    return picks


def ladder_rows(
    lengths: list[int], compare_at: int, picks: dict[str, tuple[float, float]]
) -> list[RunRow]:
    """FM at every length, the comparisons at `compare_at`, each with its (or its parent's) pick."""
    rows = [
        _with(RunRow(FM_LABEL, n, f"patience-fm-{n}", []), picks.get(FM_LABEL)) for n in lengths
    ]
    for label, overrides in COMPARISONS.items():
        sets = [o.replace("STOP", str(max(1, compare_at * 3 // 4))) for o in overrides]
        row = RunRow(label, compare_at, f"patience-{_slug(label)}-{compare_at}", sets)
        rows.append(_with(row, picks.get(SHARES.get(label, label))))
    # longest first: the slowest runs start early, so the pool ends together
    return sorted(rows, key=lambda r: -r.epochs)


def run_pool(rows: list[RunRow], out: Path, common: list[str], jobs: int, threads: int) -> list:
    """Runs `jobs` at a time, longest first; a row's own overrides come after `common`."""
    rows = sorted(rows, key=lambda r: -r.epochs)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda row: _run(row, out, common, threads), rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "patience")
    p.add_argument("--lengths", type=int, nargs="+", default=[10, 30, 100, 300, 600, 1000])
    p.add_argument(
        "--compare-at", type=int, default=600, help="epochs of the comparison rows (default 600)"
    )
    p.add_argument(
        "--tune-at",
        type=int,
        default=100,
        help="epochs of the tuning runs (every GRID setting per tuned method); 0: the recipe's "
        "lr and wd for every row, no tuning",
    )
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
        a.lengths, a.subset, a.holdout, a.compare_at = [1, 3], 100, 500, 3
        a.tune_at = min(a.tune_at, 1)
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
        common = ["data.subset=100", held, "schedule.batch_size=50", "data.val_limit=2000"]
        common += ["schedule.evals=1", *a.overrides]
    threads = max(1, (os.cpu_count() or 2) // max(1, a.jobs))
    started = time.perf_counter()
    a.out.mkdir(parents=True, exist_ok=True)
    teacher = teacher_run(a.out, teacher_sets, max(1, os.cpu_count() or 1))
    teacher_ckpt = teacher / "checkpoints" / "best.safetensors"
    common.append(f"teacher.checkpoint={teacher_ckpt}")
    from distill_cli.rundir.summary import RunSummary

    teacher_sum = RunSummary.load(teacher)
    assert teacher_sum.test is not None

    grid = GRID[::2] if a.quick else GRID
    tuned: list[RunRow] = []
    picks: dict[str, tuple[float, float]] = {}
    if a.tune_at:
        tuned = tune_rows(a.tune_at, grid)
        print(f"tuning: {len(tuned)} runs at {a.tune_at} epochs", flush=True)
        tuned = run_pool(tuned, a.out, common, a.jobs, threads)
        picks = pick(tuned)
        missing = [label for label in TUNED if label not in picks]
        if missing:
            sys.exit(f"tuning failed for every setting of: {', '.join(missing)}")
        print("picked on the holdout: " + "; ".join(f"{k} {v}" for k, v in picks.items()))
    rows = ladder_rows(a.lengths, a.compare_at, picks)
    # a ladder row the tuning already ran (same method, length and setting) is not run again
    ran = {(r.label, r.epochs, r.lr, r.wd): r for r in tuned if r.error is None}
    todo = [r for r in rows if (r.label, r.epochs, r.lr, r.wd) not in ran]
    reused = [ran[k] for k in ((r.label, r.epochs, r.lr, r.wd) for r in rows) if k in ran]
    print(f"{len(todo)} runs, {a.jobs} at a time, {threads} thread(s) each", flush=True)
    done = run_pool(todo, a.out, common, a.jobs, threads)
    done += [replace(r, role="ladder") for r in reused]
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
        "compare_at": a.compare_at,
        "tune_at": a.tune_at,
        "grid": [list(cfg) for cfg in grid] if a.tune_at else [],
        "picks": {k: list(v) for k, v in picks.items()},
        "shares": SHARES if a.tune_at else {},
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
        "tune": [asdict(r) for r in tuned],
    }
    path = a.json or a.out / "patience.json"
    path.write_text(json.dumps(result, indent=2))
    table = markdown(result)
    tuning = tuning_markdown(result)
    if a.md:
        a.md.write_text(table + "\n" + (f"\n{tuning}\n" if tuning else ""))
    figure(result, a.figure or a.out / "patience.png")
    print("\n" + table + (f"\n\n{tuning}" if tuning else ""))
    print(f"\nwall time {result['wall_s'] / 60:.1f} min; results in {path}")
    if any(r.error for r in [*done, *tuned]):
        sys.exit(1)


if __name__ == "__main__":
    main()
