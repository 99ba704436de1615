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

The rows (methods, overrides, the lr/wd grid, run names) are `patience_rows.py`'s; this script
runs them.

    python benchmarks/patience.py                    # the whole benchmark (about 2 hours)
    python benchmarks/patience.py --quick --out DIR  # the same code on a tiny budget (tests)
    python benchmarks/patience.py --student resnet18 --teacher-set schedule.epochs=30 --out DIR

Other models or overrides (`--student`, `--teacher`, `--set`, `--teacher-set`) make a variant
(`tuning.Variant`): its student runs and its default JSON and figure (`OUT/patience_<tag>.json`)
carry the variant's tag, another teacher or teacher override trains its own teacher in
`OUT/patience-teacher-<tag>`, so nothing of the default run is reused or overwritten; the JSON
records the models and overrides used (`models`).

A rerun in the same OUT (after a cut, or with more lengths) reuses every run that finished with
exactly its settings after its teacher was trained, and runs the rest.

Runs are independent, so they go `--jobs` at a time (default 2, one CPU thread each): on small
images one process per core is faster than one process with two threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchargs import (
    Several,
    add_overwrite,
    at_least,
    command,
    fail,
    output_file,
    output_folder,
    parser,
    place,
    replaceable,
)
from patience_report import FM_LABEL, KEYS, ROW_KEYS, figure, markdown, tuning_markdown
from patience_rows import (
    COMPARISONS,
    FM_RECIPE,
    GRID,
    SHARES,
    TEACHER_OWNED,
    TEACHER_RECIPE,
    TUNED,
    Progress,
    RunRow,
    finished,
    ladder_rows,
    owned,
    pick,
    train_images,
    tune_rows,
)
from tuning import (
    Variant,
    add_model_options,
    check_method_kept,
    check_models,
    check_not_owned,
    check_recipe,
    check_runs,
    environment,
    last_line,
    launch,
    measure,
    one_line_errors,
    split_done,
    tagged,
    teacher_run,
)

from distill_cli.host import thread_budget

ROOT = Path(__file__).resolve().parents[1]


def _run(row: RunRow, out: Path, common: list[str], threads: int) -> RunRow:
    args = ["run", str(FM_RECIPE), "--overwrite", "-q"]
    sets = [*common, f"schedule.epochs={row.epochs}", f"output.dir={out}", f"output.name={row.run}"]
    for item in [*sets, *row.overrides]:
        args += ["--set", item]
    started = time.perf_counter()
    log = out / f"{row.run}.log"
    reused = finished(out / row.run, [*sets, *row.overrides])
    code = 0 if reused else launch(args, log, threads)
    if code:
        row.error = f"distill run failed ({code}): {last_line(log)}"
        print(f"  {row.label} @ {row.epochs} epochs: FAILED {row.error}", flush=True)
        return row
    row.wall_s = time.perf_counter() - started
    if reused:  # its own time, not the moment it took to read it
        from distill_cli.rundir.summary import RunSummary

        row.wall_s = RunSummary.load(out / row.run).wall_time_s
    m = measure(out / row.run)
    row.top1, row.best_top1 = m.test_top1, m.test_best_top1
    row.agreement, row.kl = m.agreement, m.kl
    row.holdout_top1, row.best_epoch = m.holdout_top1, m.best_epoch
    row.images_per_s, row.curve = m.images_per_s, m.curve
    again = " (finished earlier, reused)" if reused else ""
    print(f"  {row.label} @ {row.epochs} epochs: top-1 {row.top1:.2f}{again}", flush=True)
    return row


def run_pool(
    rows: list[RunRow],
    out: Path,
    common: list[str],
    jobs: int,
    threads: int,
    on_done: Callable[[RunRow], None],
) -> list:
    """Runs `jobs` at a time, longest first; a row's own overrides come after `common`; each
    row is handed to `on_done` as it finishes (or fails)."""

    def one(row: RunRow) -> RunRow:
        row = _run(row, out, common, threads)
        on_done(row)
        return row

    rows = sorted(rows, key=lambda r: -r.epochs)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, rows))


@dataclass
class Plan:
    """The overrides of the teacher and of every distillation run, and the variant they make."""

    teacher_sets: list[str]
    common: list[str]
    variant: Variant
    tag: str  # '' for the recipes' models and no overrides: the default run's names
    teacher_name: str
    tuned: bool = True  # the grid sets every row's lr and wd (--tune-at above 0)


#: The budget of the whole benchmark and of --quick; an option given on the command line wins
#: over either (`--quick --lengths 1 2` runs 1 and 2 epochs).
FULL = {
    "lengths": [10, 30, 100, 300, 600, 1000],
    "compare_at": 600,
    "tune_at": 100,
    "subset": 1000,
    "holdout": 5000,
}
#: What makes two runs the same (with the models): a results file of others is not replaced.
SETTINGS = ("quick", "subset", "holdout", "lengths", "compare_at", "tune_at")
QUICK = {"lengths": [1, 3], "compare_at": 3, "tune_at": 1, "subset": 100, "holdout": 500}


def choose(a: argparse.Namespace) -> Plan:
    """The command line as overrides: the budget (--quick, --subset, --holdout), the models,
    then --set / --teacher-set (the user's last, so they win)."""
    from distill_cli.recipe.document import load_recipe

    budget = QUICK if a.quick else FULL  # what the command line leaves unsaid
    for key, value in budget.items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    held = f"data.holdout={a.holdout}"
    teacher_sets, common = [held], [f"data.subset={a.subset}", held]
    if a.quick:
        teacher_sets += [
            "schedule.epochs=1",
            "data.train_limit=4000",
            "data.val_limit=2000",
            "schedule.eval_every=1",
        ]
        # 1-epoch rows: one evaluation (a recipe may not ask for more evaluations than epochs)
        common = [f"data.subset={a.subset}", held, "schedule.batch_size=50", "data.val_limit=2000"]
        common += ["schedule.evals=1"]
    default = Variant(
        load_recipe(TEACHER_RECIPE).student.model, (load_recipe(FM_RECIPE).student.model,)
    )
    teacher, student = a.teacher or default.teacher, a.student or default.students[0]
    variant = Variant(teacher, (student,), tuple(a.overrides), tuple(a.teacher_overrides))
    teacher_sets += [f"model.model={teacher}", *a.teacher_overrides]
    common += [f"teacher.model={teacher}", f"student.model={student}", *a.overrides]
    name = tagged("patience-teacher", variant.teacher_tag(default))
    return Plan(teacher_sets, common, variant, variant.tag(default), name, a.tune_at > 0)


def validate(plan: Plan) -> None:
    """Before any training: the models are timm's, the recipes load with every override."""
    check_not_owned(plan.variant.sets, owned(plan.tuned), "--set")
    check_not_owned(plan.variant.teacher_sets, TEACHER_OWNED, "--teacher-set")
    check_models([plan.variant.teacher], "--teacher")
    check_models(plan.variant.students, "--student")
    check_recipe(TEACHER_RECIPE, plan.teacher_sets)
    check_method_kept(FM_RECIPE, plan.common, "function_matching")
    for overrides in COMPARISONS.values():
        check_recipe(FM_RECIPE, [*plan.common, *(o.replace("STOP", "1") for o in overrides)])
    # last, the slowest: the models run at the recipes' sizes, the data is there
    check_runs(TEACHER_RECIPE, plan.teacher_sets, "--teacher")
    check_runs(FM_RECIPE, plan.common, "--student")


def main() -> None:
    p = parser(__doc__)
    p.add_argument(
        "--out",
        type=place,
        default=None,
        help="run folders (default runs/patience, --quick: runs/patience-quick)",
    )
    p.add_argument(
        "--lengths",
        action=Several,
        item=at_least(1),
        help="epochs (10 30 100 300 600 1000; quick 1 3)",
    )
    p.add_argument("--compare-at", type=at_least(1), help="epochs of the comparisons (600; 3)")
    p.add_argument(
        "--tune-at",
        type=at_least(0),
        help="epochs of the tuning runs (every GRID setting per tuned method; 100, quick 1); 0: "
        "the recipe's lr and wd for every row, no tuning",
    )
    p.add_argument("--subset", type=at_least(1), help="training images per student (1000; 100)")
    p.add_argument("--holdout", type=at_least(1), help="images held out for choices (5000; 500)")
    p.add_argument(
        "--jobs", type=at_least(1), default=2, help="runs at a time, cores/jobs threads each (2)"
    )
    p.add_argument("--student", default=None, metavar="NAME", help="timm model of the student")
    add_model_options(p, "distillation run")
    p.add_argument(
        "--json",
        type=place,
        default=None,
        help="results (default OUT/patience.json, a variant's OUT/patience_<tag>.json); one of "
        "another run's settings is refused without --overwrite",
    )
    p.add_argument("--md", type=place, default=None, help="also write the markdown table here")
    p.add_argument("--figure", type=place, default=None, help="the figure (default: beside JSON)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="the same pipeline on a tiny budget: a 1-epoch teacher on 4,000 images, "
        "a 100-image subset, 1 and 3 epochs, 2,000 test images",
    )
    add_overwrite(p, "replace a results file of another run's settings (default: refuse)")
    a = p.parse_args()
    a.out = a.out or ROOT / "runs" / ("patience-quick" if a.quick else "patience")

    plan = choose(a)
    output_folder(a.out, "--out")  # a file of that name: one line before the slower checks
    one_line_errors(lambda: validate(plan))
    # every file it writes, checked (and its folder made) before an hour of training
    path = output_file(a.json or a.out / f"{tagged('patience', plan.tag, '_')}.json", "--json")
    settings = {k: getattr(a, k) for k in SETTINGS} | {"models": plan.variant.record()}
    replaceable(path, "benchmarks/patience.py", ROW_KEYS, KEYS, settings, a.overwrite)
    md = output_file(a.md, "--md") if a.md else None
    fig = output_file(a.figure or path.with_suffix(".png"), "--figure")
    common = plan.common
    threads = max(1, thread_budget() // max(1, a.jobs))
    started = time.perf_counter()
    n = thread_budget()
    teacher = one_line_errors(
        lambda: teacher_run(a.out, TEACHER_RECIPE, plan.teacher_name, plan.teacher_sets, n)
    )
    teacher_ckpt = teacher / "checkpoints" / "best.safetensors"
    common.append(f"teacher.checkpoint={teacher_ckpt}")
    from distill_cli.rundir.summary import RunSummary

    teacher_sum = RunSummary.load(teacher)
    assert teacher_sum.test is not None

    grid = GRID[::2] if a.quick else GRID
    result = {
        "command": command("benchmarks/patience.py"),
        "complete": False,  # until every row has run: a cut run leaves the rows it finished
        "quick": a.quick,
        "subset": a.subset,
        "holdout": a.holdout,
        "lengths": a.lengths,
        "compare_at": a.compare_at,
        "tune_at": a.tune_at,
        "grid": [list(cfg) for cfg in grid] if a.tune_at else [],
        "picks": {},
        "shares": SHARES if a.tune_at else {},
        "test_images": teacher_sum.test.images,  # then what the students' runs read
        "jobs": a.jobs,
        "threads_per_job": threads,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "teacher": {
            "model": teacher_sum.student.model,
            "params": teacher_sum.student.params,
            # the checkpoint the students learn from: best on the holdout, on the test set
            "top1": teacher_sum.test.best_top1,
            "holdout_top1": teacher_sum.best_score,
            "train_images": train_images(teacher),
            "run": str(teacher),
        },
        "student": {"model": plan.variant.students[0], "params": None},
        "models": plan.variant.record(),
        # every run's overrides, the budget's included (the per-row method, length, lr/wd apart)
        "overrides": {"teacher": plan.teacher_sets, "students": plan.common},
        "environment": environment(),
        "recipes": {
            "teacher": str(TEACHER_RECIPE.relative_to(ROOT)),
            "distill": str(FM_RECIPE.relative_to(ROOT)),
        },
        "rows": [],
        "tune": [],
    }
    progress = Progress(path, result, started)
    tuned: list[RunRow] = []
    picks: dict[str, tuple[float, float]] = {}
    if a.tune_at:
        tuned = tune_rows(a.tune_at, grid, plan.tag)
        print(f"tuning: {len(tuned)} runs at {a.tune_at} epochs", flush=True)
        tuned = run_pool(tuned, a.out, common, a.jobs, threads, progress.add)
        picks = pick(tuned)
        result["picks"] = {k: list(v) for k, v in picks.items()}
        missing = [label for label in TUNED if label not in picks]
        if missing:
            fail(
                f"tuning failed for every setting of: {', '.join(missing)}",
                str(a.out),
                "see the runs' .log files there",
                code=1,
            )
        print("picked on the holdout: " + "; ".join(f"{k} {v}" for k, v in picks.items()))
    rows = ladder_rows(a.lengths, a.compare_at, picks, plan.tag)
    # a ladder row the tuning already ran (same method, length and setting) is not run again
    ok = [r for r in tuned if r.error is None]
    todo, reused = split_done(rows, ok, lambda r: (r.label, r.epochs, r.lr, r.wd))
    for row in reused:
        progress.add(replace(row, role="ladder"))
    print(f"{len(todo)} runs, {a.jobs} at a time, {threads} thread(s) each", flush=True)
    done = run_pool(todo, a.out, common, a.jobs, threads, progress.add)
    done += [replace(r, role="ladder") for r in reused]
    order = {label: i for i, label in enumerate([FM_LABEL, *COMPARISONS])}
    done.sort(key=lambda r: (order[r.label], r.epochs))

    # the student's size and the test images from a finished run, function matching's first
    fm_any = next((r for r in sorted(done, key=lambda r: r.label != FM_LABEL) if not r.error), None)
    if fm_any is not None:
        res = RunSummary.load(a.out / fm_any.run)
        result["student"] = {"model": res.student.model, "params": res.student.params}
        if res.test is not None:  # what the runs read, not what the defaults would
            result["test_images"] = res.test.images
    result.update(complete=True, rows=[asdict(r) for r in done], tune=[asdict(r) for r in tuned])
    result["wall_s"] = time.perf_counter() - started
    result["machine"]["load_avg_at_end"] = os.getloadavg()
    path.write_text(json.dumps(result, indent=2))
    table = markdown(result)
    tuning = tuning_markdown(result)
    if md is not None:
        md.write_text(table + "\n" + (f"\n{tuning}\n" if tuning else ""))
    figure(result, fig)
    print("\n" + table + (f"\n\n{tuning}" if tuning else ""))
    print(f"\nwall time {result['wall_s'] / 60:.1f} min; results in {path}")
    if any(r.error for r in [*done, *tuned]):
        sys.exit(1)


if __name__ == "__main__":
    main()
