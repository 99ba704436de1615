"""The sizes of the full-data question (`full_data.py`), what its command line may change,
where its results go (`outputs`) and which results file a call may continue (`earlier`,
`same_teacher`).

A scale fixes the models, data, lengths, grid, seeds and parallel runs; `--students`,
`--teacher`, `--set`, `--teacher-set`, `--lengths` and `--seeds` replace parts of it. Anything
other than the scale's own makes a *variant* (`tuning.Variant`), whose runs and results files
are named apart, so the committed results are never reused for it or overwritten by it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

from benchargs import fail, output_file, read_results
from full_data_report import ROW_KEYS
from tuning import (
    LAUNCHED,
    Variant,
    check_holdout,
    check_method_kept,
    check_models,
    check_not_owned,
    check_recipe,
    check_runs,
    tagged,
)

ROOT = Path(__file__).resolve().parents[1]
TEACHER_RECIPE = ROOT / "recipes" / "full_data" / "teacher.yaml"
STUDENT_RECIPE = ROOT / "recipes" / "full_data" / "student.yaml"
FM = "function matching"
#: The methods compared, as overrides of the student recipe (function matching).
METHODS: dict[str, list[str]] = {
    FM: [],
    "labels": ["teacher=null", "method={name: supervised, label_smoothing: 0.1}"],
    "classic KD": ["method={name: kd, temperature: 4.0, alpha: 0.5, mixup: false}"],
    "FM, fixed teacher": ["method.teacher_targets=fixed", "method.mixup=false"],
}
#: `--methods`' short names for METHODS (a variant may run a subset: the long schedules cost
#: hours on a CPU, and a question such as "does FM overtake KD at 300 epochs" needs two).
METHOD_NAMES: dict[str, str] = {
    "fm": FM,
    "labels": "labels",
    "kd": "classic KD",
    "fixed": "FM, fixed teacher",
}
#: What every student run sets after `--set` (refused there, with the option to use instead).
STUDENT_OWNED = {
    **LAUNCHED,
    "student.model": "--students",
    "teacher.model": "--teacher",
    "teacher.checkpoint": "--teacher and --teacher-set (the benchmark trains its teacher)",
    "schedule.epochs": "--lengths",
    "runtime.seed": "--seeds",
    "optim.lr": "the scale's lr/wd grid (full_data_scales.py), which every method is tuned on",
    "optim.weight_decay": "the scale's lr/wd grid (full_data_scales.py)",
}
#: What the teacher's run sets after `--teacher-set`.
TEACHER_OWNED = {**LAUNCHED, "model.model": "--teacher"}
GPU = ["runtime.device=cuda", "runtime.compile=true", "runtime.compile_mode=reduce-overhead"]


@dataclass(frozen=True)
class Scale:
    """One size of the same question: models, data, lengths, grid, seeds, parallel runs.

    The teacher's model is `teacher` (its sets and the students' name no model): `--teacher`
    and `--students` replace the models and keep the rest of the scale."""

    teacher: str
    students: tuple[str, ...]
    lengths: tuple[int, ...]
    grid: tuple[tuple[float, float], ...]  # (lr, wd) pairs every method is tried with
    seeds: tuple[int, ...]
    teacher_sets: tuple[str, ...]
    student_sets: tuple[str, ...]
    jobs: int
    methods: tuple[str, ...] = tuple(METHODS)  # METHODS' keys this run compares

    def teacher_overrides(self, extra: tuple[str, ...] = ()) -> list[str]:
        """The teacher run's overrides: the scale's, its model, then `--teacher-set`."""
        return [*self.teacher_sets, f"model.model={self.teacher}", *extra]

    def student_overrides(self, extra: tuple[str, ...] = ()) -> list[str]:
        """Every student run's overrides: the scale's, the teacher's model, then `--set`."""
        return [*self.student_sets, f"teacher.model={self.teacher}", *extra]

    def variant(self) -> Variant:
        """The scale's own models and settings: what makes a run the default (untagged) one."""
        return Variant(self.teacher, self.students, lengths=self.lengths, seeds=self.seeds)


TINY_DATA = ("data.train_limit=400", "data.holdout=200", "data.val_limit=500")
CPU_DATA = ("data.train_limit=10000", "data.holdout=5000")
SCALES: dict[str, Scale] = {
    # one H100/H200: 55,000 images, CUDA graphs, four runs side by side (small students are
    # bound by launches, not FLOPs); parts of at most about 9 minutes, see PARTS
    "gpu": Scale(
        teacher="resnet18",
        students=("mobilenetv3_small_050", "regnetx_002"),
        lengths=(25, 75, 200),
        grid=((1e-2, 1e-4), (3e-3, 1e-4)),
        seeds=(0, 1),
        teacher_sets=tuple(GPU),
        student_sets=tuple(GPU),
        jobs=4,
    ),
    # two CPU cores, about an hour: teacher and students on the same 10,000 images, 32 px
    "cpu": Scale(
        teacher="resnet10t",
        students=("mobilenetv3_small_050",),
        lengths=(10, 30, 100),
        grid=((1e-2, 1e-4), (3e-3, 1e-4)),
        seeds=(0,),
        teacher_sets=(
            *CPU_DATA,
            "model.input_size=32",
            "schedule.epochs=30",
            "schedule.batch_size=256",
            "runtime.device=cpu",
        ),
        student_sets=(
            *CPU_DATA,
            "teacher.input_size=32",
            "schedule.batch_size=256",
            "schedule.eval_batch_size=1000",
            "runtime.device=cpu",
        ),
        jobs=2,
    ),
    # the pipeline end to end in about a minute on 2 quiet cores (tests): a tiny model, a few
    # hundred images, one student (16 runs: the per-student steps are a loop over students)
    "quick": Scale(
        teacher="test_resnet",
        students=("test_efficientnet",),
        lengths=(1, 2),
        grid=((1e-2, 1e-4), (3e-3, 1e-4)),
        seeds=(0, 1),
        teacher_sets=(
            *TINY_DATA,
            "model.input_size=32",
            "schedule.epochs=2",
            "schedule.batch_size=50",
            "schedule.evals=2",
            "runtime.device=cpu",
        ),
        student_sets=(
            *TINY_DATA,
            "teacher.input_size=32",
            "schedule.batch_size=50",
            "schedule.evals=1",  # the 1-epoch rungs: one evaluation per epoch at most
            "runtime.device=cpu",
        ),
        jobs=2,
    ),
}
#: --part: (what, which student): which students tune and run the ladder, and whether the extra
#: seeds run; a GPU part is sized to about 9 minutes (docs/benchmarks.md).
#: A part whose picks are missing tunes first; finished rows of earlier parts are never rerun.
PARTS: dict[str, tuple[str, int | None]] = {
    "1": ("tune", None),  # the teacher, then the grid at the shortest length, every student
    "2": ("ladder", 0),  # the first student: FM at every length, the others at the longest
    "3": ("ladder", 1),  # the second student, the same
    "4": ("seeds", None),  # every further seed at the longest length, every student
    "all": ("all", None),
}


def choose(name: str, a: argparse.Namespace) -> tuple[Scale, Variant, str]:
    """The scale with the command line's models, lengths, seeds and jobs; its variant and tag
    ('' when everything is the scale's own, so the default files keep their names)."""
    base = SCALES[name]
    scale = replace(
        base,
        teacher=a.teacher or base.teacher,
        students=tuple(dict.fromkeys(a.students or base.students)),
        lengths=tuple(sorted(set(a.lengths))) if a.lengths else base.lengths,
        seeds=tuple(sorted(set(a.seeds) | {0})) if a.seeds else base.seeds,
        jobs=a.jobs or base.jobs,
        methods=chosen_methods(a.methods) if a.methods else base.methods,
    )
    variant = Variant(
        scale.teacher,
        scale.students,
        tuple(a.overrides),
        tuple(a.teacher_overrides),
        scale.lengths,
        scale.seeds,
        # every method is the default: only a subset makes a variant (and is recorded)
        methods=() if scale.methods == base.methods else scale.methods,
    )
    return scale, variant, variant.tag(base.variant())


def chosen_methods(names: list[str]) -> tuple[str, ...]:
    """`--methods`' short names as METHODS' keys, in METHODS' order, without repeats."""
    unknown = [n for n in names if n not in METHOD_NAMES]
    if unknown:
        fail(
            f"unknown method {unknown[0]!r}",
            "--methods",
            "pick from " + ", ".join(f"{k} ({v})" for k, v in METHOD_NAMES.items()),
        )
    wanted = {METHOD_NAMES[n] for n in names}
    return tuple(m for m in METHODS if m in wanted)


def validate(scale: Scale, variant: Variant) -> None:
    """Before any training: every model is timm's, every recipe loads with every override."""
    from distill_cli.errors import DistillError

    check_not_owned(variant.sets, STUDENT_OWNED, "--set")
    check_not_owned(variant.teacher_sets, TEACHER_OWNED, "--teacher-set")
    check_models([scale.teacher], "--teacher")
    check_models(scale.students, "--students")
    if min(scale.lengths) < 1 or min(scale.seeds) < 0:
        raise DistillError("lengths must be >= 1 and seeds >= 0", "--lengths/--seeds")
    check_recipe(TEACHER_RECIPE, scale.teacher_overrides(variant.teacher_sets))
    check_holdout(TEACHER_RECIPE, scale.teacher_overrides(variant.teacher_sets), "--teacher-set")
    check_holdout(STUDENT_RECIPE, scale.student_overrides(variant.sets), "--set")
    check_method_kept(STUDENT_RECIPE, scale.student_overrides(variant.sets), "function_matching")
    for student in scale.students:
        for method in scale.methods:
            sets = [
                *scale.student_overrides(variant.sets),
                *METHODS[method],
                f"student.model={student}",
            ]
            check_recipe(STUDENT_RECIPE, sets)
    if GPU[0] in scale.teacher_sets:
        import torch

        if not torch.cuda.is_available():  # the gpu scale, the default: say which to use
            raise DistillError(
                "this scale runs on CUDA and this machine has none",
                "--scale",
                "pass --scale cpu (about an hour on 2 cores) or --quick",
            )
    # last, the slowest: the models run at the scale's sizes, the data is there
    check_runs(TEACHER_RECIPE, scale.teacher_overrides(variant.teacher_sets), "--teacher")
    for student in scale.students:
        sets = [*scale.student_overrides(variant.sets), f"student.model={student}"]
        check_runs(STUDENT_RECIPE, sets, f"--students {student}")


def part_students(scale: Scale, part: str) -> tuple[str, ...]:
    """The students a --part works on (a part of one student needs that student)."""
    from distill_cli.errors import DistillError

    index = PARTS[part][1]
    if index is None:
        return scale.students
    if index >= len(scale.students):
        raise DistillError(
            f"--part {part} runs student number {index + 1}, there are {len(scale.students)}",
            "--part",
            "name more --students or pick another part",
        )
    return scale.students[index : index + 1]


def outputs(name: str, tag: str, a: argparse.Namespace) -> tuple[Path, Path, Path]:
    """The run folder, the results JSON and the figure. The scale's own results go to
    benchmarks/results/full_data_<scale>.json and docs/img (--quick: into OUT, by default
    runs/full_data_quick, apart from the scales' teachers); a variant's (`tag`) are
    full_data_<scale>_<tag>.json with its figure beside it, never the committed."""
    out = a.out or ROOT / "runs" / ("full_data_quick" if a.quick else "full_data")
    stem = tagged(f"full_data_{name}", tag, "_")
    results = a.json or (out if a.quick else ROOT / "benchmarks" / "results") / f"{stem}.json"
    fig_dir = out if a.quick else ROOT / "docs" / "img"
    fig = a.figure or (results.with_suffix(".png") if tag else fig_dir / f"{stem}.png")
    return out, output_file(results, "--json"), output_file(fig, "--figure")


def earlier(results: Path, scale: str, tag: str) -> dict:
    """The results file an earlier call (a part, a cut run) left: continued only when it is this
    script's, of the same scale and variant; anything else is refused rather than mixed in."""
    data = read_results(results, "benchmarks/full_data.py", ROW_KEYS, ("commands",))
    theirs = (data.get("scale", scale), data.get("tag") or "")
    if theirs != (scale, tag):
        fail(
            f"holds the results of another run (scale {theirs[0]}, variant "
            f"{theirs[1] or 'default'}; this is scale {scale}, variant {tag or 'default'})",
            str(results),
            "name another --json, or the same models and settings as that run",
        )
    return data


def same_teacher(old: dict | None, new: dict, results: Path, overwrite: bool) -> bool:
    """Whether the rows of the results file were made with this teacher (its run folder aside:
    another checkout). Rows of another (a teacher trained again, another machine) are dropped
    only with `overwrite`; without it, refused, so the published results are never emptied
    by a rerun that was not asked to."""

    def same(info: dict) -> dict:
        return {k: v for k, v in info.items() if k != "run"}

    if old is None or same(old) == same(new):
        return True
    if not overwrite:
        fail(
            f"holds the rows of another teacher ({old['model']}, test top-1 "
            f"{old['test_top1']}; this one: {new['model']}, {new['test_top1']})",
            str(results),
            "name another --json, or pass --overwrite to drop those rows and picks",
        )
    return False
