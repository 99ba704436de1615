"""Methods and ablations side by side on Fashion-MNIST: same teacher, same student, same budget.

Trains the quickstart teacher (`recipes/quickstart/teacher.yaml` into runs/quickstart-teacher,
reused while its resolved recipe, `--teacher-set` included, is unchanged), then runs every
comparison recipe (recipes/methods, recipes/ablations, the quickstart's function matching) with
the same student (test_resnet), teacher and budget (3 epochs) into runs/<recipe name> (`--out`
DIR: the teacher and the runs go to DIR instead), and prints a markdown table for
docs/benchmarks.md: the student's top-1 (final weights, on the test set; nothing is chosen on
it), agreement, KL and time per method, under a line naming the models and overrides that ran.
`--json` also writes the rows there, after every row (an existing file needs `--overwrite`).

    python benchmarks/fmnist_methods.py [--epochs 3] [--set runtime.threads=2]
    python benchmarks/fmnist_methods.py --epochs 2 --student test_convnext --json /tmp/r.json

`--student`/`--teacher` replace the models in every recipe (the supervised baseline names its
model `model`, the others `student`), `--set` applies to every method's run, `--teacher-set` to
the teacher's training. Another teacher or teacher override trains its own teacher in
runs/quickstart-teacher-<tag>, so the quickstart's teacher is never replaced by it. A `--set`
of what the options set (the models, `schedule.epochs`, `output.*`) is refused with the option
to use instead.
A method the models cannot run (stage-by-stage's stage map for a student of 4 stages, such
as test_convnext) is a failed row, found before the teacher trains; the others run, exit 1.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchargs import (
    add_overwrite,
    at_least,
    command,
    one_line_errors,
    output_file,
    output_folder,
    parser,
    place,
)
from tuning import (
    LAUNCHED,
    Variant,
    check_method_kept,
    check_models,
    check_not_owned,
    check_recipe,
    check_runs,
    environment,
    teacher_run,
)

from distill_cli import api
from distill_cli.errors import DistillError
from distill_cli.host import thread_budget
from distill_cli.recipe.document import load_recipe
from distill_cli.recipe.yaml_text import parse_yaml

ROOT = Path(__file__).resolve().parents[1]
TEACHER = ROOT / "recipes/quickstart/teacher.yaml"
ROWS = [
    ("student from scratch (labels)", "recipes/methods/scratch.yaml"),
    ("classic KD (T=4, alpha=0.5)", "recipes/methods/kd.yaml"),
    ("early-stopped KD (stop at epoch STOP)", "recipes/methods/eskd.yaml"),
    ("stage-by-stage KD (2 stages + head)", "recipes/methods/stage_by_stage.yaml"),
    ("FM ablation: fixed teacher", "recipes/ablations/fixed_teacher.yaml"),
    ("FM ablation: independent views", "recipes/ablations/independent.yaml"),
    ("FM ablation: consistent views, no mixup", "recipes/ablations/consistent.yaml"),
    ("function matching (consistent + mixup)", "recipes/quickstart/distill.yaml"),
]

#: What every method's run sets after `--set` (refused there, with the option to use instead).
OWNED = {
    "model.model": "--student",
    "student.model": "--student",
    "teacher.model": "--teacher",
    "teacher.checkpoint": "--teacher and --teacher-set (the benchmark trains its teacher)",
    "schedule.epochs": "--epochs",
    "method.kd_stop_epoch": "--epochs (early-stopped KD stops at 3/4 of it)",
    "output.dir": "--out",
    "output.name": "--out (each method's run is named after its recipe)",
}
#: What the teacher's run sets after `--teacher-set`.
TEACHER_OWNED = {**LAUNCHED, "model.model": "--teacher"}


def models_of(recipe: Path, student: str | None, teacher: str | None, ckpt: Path) -> list[str]:
    """The overrides that put these models (and the teacher's checkpoint) into one recipe: the
    supervised baseline's model is `model`, a distillation recipe's `student` and `teacher`."""
    body = parse_yaml(recipe.read_text())
    if "model" in body:
        return [f"model.model={student}"] if student else []
    sets = [f"student.model={student}"] if student else []
    if body.get("teacher"):
        sets += [f"teacher.model={teacher}"] if teacher else []
        sets.append(f"teacher.checkpoint={ckpt}")  # wherever this is run from
    return sets


def main() -> None:
    p = parser(__doc__)
    p.add_argument(
        "--epochs",
        type=at_least(2),
        default=3,
        help="every method's epochs (3; early-stopped KD needs 2 to stop KD before the end)",
    )
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], help="every method's run"
    )
    p.add_argument(
        "--teacher-set", dest="teacher_overrides", action="append", default=[], help="the teacher"
    )
    p.add_argument("--student", default=None, metavar="NAME", help="timm model (test_resnet)")
    p.add_argument("--teacher", default=None, metavar="NAME", help="timm model (resnet10t)")
    p.add_argument("--out", type=place, default=None, help="the method runs' folder (runs)")
    p.add_argument("--json", type=place, default=None, help="also write the results here")
    add_overwrite(p)
    args = p.parse_args()
    if args.json:
        output_file(args.json, "--json", args.overwrite)
    teacher_sets = [*([f"model.model={args.teacher}"] if args.teacher else [])]
    teacher_sets += args.teacher_overrides
    # the recipes' own models (the quickstart's): what runs when --student/--teacher are not given
    student = args.student or load_recipe(ROOT / ROWS[-1][1]).student.model
    default = Variant(load_recipe(TEACHER).student.model, ())
    mine = Variant(args.teacher or default.teacher, (), teacher_sets=tuple(args.teacher_overrides))
    name = "quickstart-teacher"
    name += f"-{tag}" if (tag := mine.teacher_tag(default)) else ""
    runs = output_folder(args.out, "--out").resolve() if args.out else ROOT / "runs"  # all there
    ckpt = runs / name / "checkpoints" / "best.safetensors"
    sets = {r: [*models_of(ROOT / r, args.student, args.teacher, ckpt)] for _, r in ROWS}
    one_line_errors(lambda: check_not_owned(args.overrides, OWNED, "--set"))
    one_line_errors(lambda: check_not_owned(args.teacher_overrides, TEACHER_OWNED, "--teacher-set"))
    one_line_errors(lambda: check_models([student], "--student"))
    one_line_errors(lambda: check_models([mine.teacher], "--teacher"))
    one_line_errors(lambda: check_recipe(TEACHER, teacher_sets))
    stop = max(1, args.epochs * 3 // 4)  # ESKD: KD for the first 75% (2 of the default 3)

    def overrides_of(recipe: str) -> list[str]:
        """One row's overrides: its models, the user's, the output folder, the length."""
        items = [*sets[recipe], *args.overrides]
        # always: the recipes' `runs` is read against the current folder, and the teacher
        # (trained in the checkout) went to ROOT/runs while these went to ./runs elsewhere
        items.append(f"output.dir={runs}")
        if "stage_by_stage" not in recipe:  # its length is fixed by its phases
            items.append(f"schedule.epochs={args.epochs}")
        if "eskd" in recipe:
            items.append(f"method.kd_stop_epoch={stop}")
        return items

    #: rows whose method these models cannot run (stage_by_stage's stage_map for a student of
    #: fewer stages): failed rows, decided now; the other methods run
    unrunnable: dict[str, str] = {}
    for _, recipe in ROWS:  # a bad value fails now, not after the teacher and three runs
        try:
            check_recipe(ROOT / recipe, overrides_of(recipe))
        except DistillError as exc:
            # the user's own values with the recipe's models: still refused, a bad value (exit 2)
            mine = [o for o in overrides_of(recipe) if o not in sets[recipe]]
            one_line_errors(lambda r=recipe, o=mine: check_recipe(ROOT / r, o))
            unrunnable[recipe] = str(exc)
            print(f"{recipe}: not run with these models: {exc}", flush=True)
            continue
        own = load_recipe(ROOT / recipe).method.name  # each row is labelled by its method
        one_line_errors(lambda r=recipe, m=own: check_method_kept(ROOT / r, overrides_of(r), m))
    # the models run at the recipes' sizes and the data is there, before the teacher trains
    one_line_errors(lambda: check_runs(TEACHER, teacher_sets, "--teacher"))
    fm = ROWS[-1][1]
    one_line_errors(lambda: check_runs(ROOT / fm, overrides_of(fm), "--student"))
    threads = thread_budget()
    one_line_errors(lambda: teacher_run(runs, TEACHER, name, teacher_sets, threads))
    results: list[dict] = []
    load_before, started_all = os.getloadavg()[0], time.perf_counter()
    raw = {  # the rows with what made them: command, models, versions, machine, load
        "command": command(),
        "epochs": args.epochs,
        "overrides": args.overrides,
        "teacher_overrides": teacher_sets,
        "models": {  # what ran: the named models, else the recipes' own
            "student": student,
            "teacher": args.teacher or default.teacher,
        },
        "environment": environment(),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "rows": results,
    }

    def save() -> None:
        """The JSON after every row: a run cut short leaves the rows that finished."""
        if args.json:
            raw["wall_s"] = time.perf_counter() - started_all
            raw["load_average"] = {"before": load_before, "after": os.getloadavg()[0]}
            args.json.write_text(json.dumps(raw, indent=2) + "\n")

    for label, recipe in ROWS:
        label = label.replace("STOP", str(stop))
        overrides = overrides_of(recipe)
        if recipe in unrunnable:
            results.append({"method": label, "recipe": recipe, "error": unrunnable[recipe]})
            save()
            continue
        started = time.perf_counter()
        try:
            summary = api.run(ROOT / recipe, overrides, overwrite=True).to_dict()
        except DistillError as exc:  # this method cannot run with these models: the others can
            results.append({"method": label, "recipe": recipe, "error": str(exc)})
            print(f"{label}: FAILED error: {exc}", flush=True)
            save()
            continue
        results.append(
            {
                "method": label,
                "recipe": recipe,
                "wall_s": time.perf_counter() - started,
                # what ran: stage-by-stage's length is its phases', not --epochs
                **{k: summary[k] for k in ("student", "teacher", "agreement", "kl", "epochs")},
                "test_images": summary["data"]["val_images"],
                "device": summary["device"],
                "images_per_s": summary["images_per_s"],
                "error": None,
            }
        )
        print(f"{label}: top-1 {summary['student']['top1']:.2f}", flush=True)
        save()
    ran = [r for r in results if r["error"] is None]
    teachers = sorted({r["teacher"]["model"] for r in ran if r["teacher"]})
    students = sorted({r["student"]["model"] for r in ran})
    images = sorted({r["test_images"] for r in ran if r["test_images"]})
    print(
        f"\nteacher {', '.join(teachers) or '?'}; student {', '.join(students) or '?'}; "
        f"--epochs {args.epochs}; test images {', '.join(map(str, images)) or '?'}; "
        f"--set {' '.join(args.overrides) or '(none)'}; "
        f"--teacher-set {' '.join(teacher_sets) or '(none)'}"
    )
    print("\n| method | recipe | epochs | student top-1 | agreement | KL | time |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        if r["error"] is not None:
            print(f"| {r['method']} | `{r['recipe']}` | | failed: {r['error']} | | | |")
            continue
        agree = r["agreement"]["top1"]
        kl = r["kl"]
        print(
            f"| {r['method']} | `{r['recipe']}` | {r['epochs']:g} | {r['student']['top1']:.2f}% | "
            f"{'-' if agree is None else f'{agree:.2f}%'} | {'-' if kl is None else f'{kl:.3f}'} "
            f"| {r['wall_s']:.0f} s |"
        )
    if len(ran) < len(results):
        sys.exit(1)


if __name__ == "__main__":
    main()
