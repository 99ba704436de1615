"""Function matching with all the data: does a patient student beat training on labels?

The case users have: a teacher trained on their whole data set and a student distilled on the
same images. Beyer et al. (CVPR 2022) win it on ImageNet with a teacher clearly better than what
the student reaches alone and a long schedule. This benchmark asks the same on Fashion-MNIST:

1. a strong teacher (`recipes/full_data/teacher.yaml`) trained by `distill train` on all training
   images less a class-balanced holdout (`data.holdout`), once, reused while its recipe holds;
2. per student (two families), on the same training images: each method (function matching,
   the student on labels, classic KD, function matching with a fixed teacher) gets the same
   small lr/wd grid at the shortest length, the setting with the best holdout top-1 is kept;
3. function matching at every length, the other methods at the longest, with that setting; the
   longest length again with every further seed;
4. the test set (the 10,000 test images) is read once per run, at its end; every choice above
   looks only at the holdout. Results (every evaluation, the curves) are written after each run,
   so a run cut short leaves its finished rows, and a second call continues where it stopped.

    python benchmarks/full_data.py --scale gpu --part 1   # teacher + mobilenetv3_small_050 (GPU)
    python benchmarks/full_data.py --scale gpu --part 2   # the second student (GPU)
    python benchmarks/full_data.py --scale gpu --part 3   # the second seed, both students (GPU)
    python benchmarks/full_data.py --scale cpu            # 10,000 images, 32 px (about an hour)
    python benchmarks/full_data.py --quick --out DIR      # the same pipeline in tiny (tests)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from full_data_report import figure, markdown
from patience import eval_curve, teacher_run

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
GPU = ["runtime.device=cuda", "runtime.compile=true", "runtime.compile_mode=reduce-overhead"]


@dataclass(frozen=True)
class Scale:
    """One size of the same question: models, data, lengths, grid, seeds, parallel runs."""

    students: tuple[str, ...]
    lengths: tuple[int, ...]
    grid: tuple[tuple[float, float], ...]  # (lr, wd) pairs every method is tried with
    seeds: tuple[int, ...]
    teacher_sets: tuple[str, ...]
    student_sets: tuple[str, ...]
    jobs: int


TINY_DATA = ("data.train_limit=400", "data.holdout=200", "data.val_limit=500")
CPU_DATA = ("data.train_limit=10000", "data.holdout=5000")
SCALES: dict[str, Scale] = {
    # one H100/H200: 55,000 images, CUDA graphs, four runs side by side (small students are
    # bound by launches, not FLOPs); parts of at most about 9 minutes, see PARTS
    "gpu": Scale(
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
        students=("mobilenetv3_small_050",),
        lengths=(10, 30, 100),
        grid=((1e-2, 1e-4), (3e-3, 1e-4)),
        seeds=(0,),
        teacher_sets=(
            *CPU_DATA,
            "model.model=resnet10t",
            "model.input_size=32",
            "schedule.epochs=30",
            "schedule.batch_size=256",
            "runtime.device=cpu",
        ),
        student_sets=(
            *CPU_DATA,
            "teacher.model=resnet10t",
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
        students=("test_efficientnet",),
        lengths=(1, 2),
        grid=((1e-2, 1e-4), (3e-3, 1e-4)),
        seeds=(0, 1),
        teacher_sets=(
            *TINY_DATA,
            "model.model=test_resnet",
            "model.input_size=32",
            "schedule.epochs=2",
            "schedule.batch_size=50",
            "schedule.evals=2",
            "runtime.device=cpu",
        ),
        student_sets=(
            *TINY_DATA,
            "teacher.model=test_resnet",
            "teacher.input_size=32",
            "schedule.batch_size=50",
            "schedule.evals=1",  # the 1-epoch rungs: one evaluation per epoch at most
            "runtime.device=cpu",
        ),
        jobs=2,
    ),
}
#: --part: which students tune + run the ladder, and whether the extra seeds run.
#: --part: (what, which student); a GPU part is sized to about 9 minutes (docs/benchmarks.md).
#: A part whose picks are missing tunes first; finished rows of earlier parts are never rerun.
PARTS: dict[str, tuple[str, int | None]] = {
    "1": ("tune", None),  # the teacher, then the grid at the shortest length, every student
    "2": ("ladder", 0),  # the first student: FM at every length, the others at the longest
    "3": ("ladder", 1),  # the second student, the same
    "4": ("seeds", None),  # every further seed at the longest length, every student
    "all": ("all", None),
}


@dataclass
class Row:
    """One student run: what it trained and what it measured (test set once, holdout curve)."""

    student: str
    method: str
    epochs: int
    lr: float
    wd: float
    seed: int
    run: str
    role: str  # tune (the grid at the shortest length), ladder, or seed
    test_top1: float | None = None  # final weights, on the test set
    test_best_top1: float | None = None  # the best-on-holdout checkpoint, on the test set
    holdout_top1: float | None = None  # final weights, on the holdout (what choices use)
    best_epoch: float | None = None
    agreement: float | None = None  # with the teacher, on the test set
    params: int | None = None
    wall_s: float | None = None
    images_per_s: float | None = None
    curve: list[tuple[float, float]] = field(default_factory=list)  # (epoch, holdout top-1)
    error: str | None = None


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def make_row(
    student: str, method: str, epochs: int, cfg: tuple[float, float], seed: int, role: str
) -> Row:
    lr, wd = cfg
    name = f"fd-{_slug(student)}-{_slug(method)}-e{epochs}-lr{lr:g}-wd{wd:g}-s{seed}"
    return Row(student, method, epochs, lr, wd, seed, name, role)


class Bench:
    """The runs of one scale in one output folder, with the results file kept up to date."""

    def __init__(self, scale: Scale, out: Path, results: Path, deadline: float) -> None:
        self.scale, self.out, self.results, self.deadline = scale, out, results, deadline
        self.lock = threading.Lock()
        self.data: dict = {"rows": [], "commands": []}
        if results.is_file():  # an earlier part: its finished rows are kept and not rerun
            self.data = json.loads(results.read_text())
        self.threads = max(1, (os.cpu_count() or 2) // scale.jobs)

    def done(self, row: Row) -> Row | None:
        for old in self.data["rows"]:
            if old["run"] == row.run and old["error"] is None:
                return Row(**{**old, "curve": [tuple(p) for p in old["curve"]]})
        return None

    def save(self, row: Row | None = None) -> None:
        with self.lock:
            if row is not None:
                rows = [r for r in self.data["rows"] if r["run"] != row.run]
                self.data["rows"] = [*rows, asdict(row)]
            self.results.parent.mkdir(parents=True, exist_ok=True)
            self.results.write_text(json.dumps(self.data, indent=2) + "\n")
            self.results.with_suffix(".md").write_text(markdown(self.data) + "\n")

    def run_all(self, rows: list[Row], sets: list[str]) -> list[Row]:
        with ThreadPoolExecutor(max_workers=self.scale.jobs) as pool:
            return list(pool.map(lambda r: self.done(r) or self._run(r, sets), rows))

    def _run(self, row: Row, sets: list[str]) -> Row:
        from distill_cli.rundir.summary import RunSummary

        if time.monotonic() >= self.deadline:
            row.error = "not started: the part's time budget was spent"
            return row
        verb = "train" if row.method == "labels" else "run"
        items = [*sets, *METHODS[row.method], f"student.model={row.student}"]
        items += [f"schedule.epochs={row.epochs}", f"runtime.seed={row.seed}"]
        items += [f"optim.lr={row.lr}", f"optim.weight_decay={row.wd}"]
        items += [f"output.dir={self.out}", f"output.name={row.run}"]
        items += [f"runtime.threads={self.threads}"]
        run = self.out / row.run
        # a run stopped at a part's budget continues from its last checkpoint
        again = (run / "checkpoints" / "last.safetensors").is_file()
        again = again and not (run / "summary.json").is_file()
        mode = "--resume" if again else "--overwrite"
        cmd = [sys.executable, "-m", "distill_cli", verb, str(STUDENT_RECIPE), mode, "-q"]
        cmd += [x for item in items for x in ("--set", item)]
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
        started = time.perf_counter()
        with (self.out / f"{row.run}.log").open("w") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
            try:
                code = proc.wait(timeout=max(1.0, self.deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)  # the run saves its position and stops
                proc.wait()
                code, row.error = -1, "stopped at the part's time budget (--resume continues it)"
        row.wall_s = time.perf_counter() - started
        if (run / "metrics.jsonl").is_file():
            row.curve = eval_curve(run)
        if code and row.error is None:
            tail = (self.out / f"{row.run}.log").read_text().strip().splitlines()[-1:]
            row.error = f"exit code {code}: {(tail or ['(no output)'])[0]}"
        if row.error is None:
            s = RunSummary.load(run)
            assert s.test is not None, "the full-data recipes hold out a validation split"
            row.test_top1, row.test_best_top1 = s.test.top1, s.test.best_top1
            row.holdout_top1, row.best_epoch = s.student.top1, s.best_epoch
            row.agreement, row.params = s.test.agreement_top1, s.student.params
            row.images_per_s = s.images_per_s
        status = row.error or f"test top-1 {row.test_top1:.2f}, holdout {row.holdout_top1:.2f}"
        print(
            f"  {row.student} {row.method} @ {row.epochs} ep, seed {row.seed}: {status}", flush=True
        )
        self.save(row)
        return row


def tune(bench: Bench, student: str, sets: list[str]) -> dict:
    """Every method with every grid setting at the shortest length; keeps the holdout's pick."""
    scale, picked = bench.scale, bench.data.setdefault("picked", {})
    shortest = min(scale.lengths)
    rows = [make_row(student, m, shortest, cfg, 0, "tune") for m in METHODS for cfg in scale.grid]
    done = bench.run_all(rows, sets)
    picked[student] = {m: pick([r for r in done if r.method == m]) for m in METHODS}
    bench.save()
    return picked[student]


def ladder(bench: Bench, student: str, sets: list[str]) -> None:
    """Function matching at every length, the other methods at the longest, seed 0."""
    chosen = bench.data.get("picked", {}).get(student) or tune(bench, student, sets)
    lengths, longest = bench.scale.lengths, max(bench.scale.lengths)
    rows = [
        make_row(student, m, n, tuple(cfg), 0, "ladder")
        for m, cfg in chosen.items()
        if cfg is not None
        for n in (lengths if m == FM else [longest])
        if n != min(lengths)  # the shortest is the tuning run with the picked setting
    ]
    bench.run_all(rows, sets)


def seeds(bench: Bench, sets: list[str]) -> None:
    """Every method again at the longest length with each further seed, the picked settings.

    `runtime.seed` also seeds the holdout's draw, so these runs hold out other images: their
    test numbers are as clean as seed 0's, and no choice is made on their holdout."""
    longest, rows = max(bench.scale.lengths), []
    for student in bench.scale.students:
        chosen = bench.data.get("picked", {}).get(student) or tune(bench, student, sets)
        for m, cfg in chosen.items():
            if cfg is not None:
                rows += [
                    make_row(student, m, longest, tuple(cfg), s, "seed")
                    for s in bench.scale.seeds
                    if s
                ]
    bench.run_all(rows, sets)


def pick(rows: list[Row]) -> tuple[float, float] | None:
    """The grid setting with the best final holdout top-1 (never the test set)."""
    scored = [r for r in rows if r.holdout_top1 is not None]
    best = max(scored, key=lambda r: r.holdout_top1 or 0.0, default=None)
    return None if best is None else (best.lr, best.wd)


def _environment() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "cpu_cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", choices=["gpu", "cpu"], default="gpu")
    p.add_argument("--quick", action="store_true", help="tiny models and data, about a minute")
    p.add_argument("--part", choices=sorted(PARTS), default="all", help="GPU: see the docstring")
    p.add_argument("--out", type=Path, default=None, help="run folders (default runs/full_data)")
    p.add_argument("--json", type=Path, default=None, help="results (default benchmarks/results)")
    p.add_argument("--figure", type=Path, default=None, help="default docs/img/full_data_*.png")
    p.add_argument("--budget-min", type=float, default=None, help="stop runs after this long")
    p.add_argument("--jobs", type=int, default=None, help="runs side by side")
    a = p.parse_args()
    name = "quick" if a.quick else a.scale
    scale = SCALES[name]
    if a.jobs:
        scale = Scale(**{**asdict(scale), "jobs": a.jobs})
    out = a.out or ROOT / "runs" / "full_data"
    results = (
        a.json or (out if a.quick else ROOT / "benchmarks" / "results") / f"full_data_{name}.json"
    )
    fig = a.figure or (out if a.quick else ROOT / "docs" / "img") / f"full_data_{name}.png"
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    deadline = started + (a.budget_min * 60 if a.budget_min else 1e9)
    bench = Bench(scale, out, results, deadline)
    bench.data.update(
        scale=name, environment=_environment(), grid=scale.grid, lengths=scale.lengths
    )
    bench.data["commands"].append("python benchmarks/full_data.py " + " ".join(sys.argv[1:]))

    teacher = teacher_run(
        out, list(scale.teacher_sets), os.cpu_count() or 1, TEACHER_RECIPE, "full-data-teacher"
    )
    from distill_cli.rundir.summary import RunSummary

    t = RunSummary.load(teacher)
    assert t.test is not None
    teacher_info = {
        "model": t.student.model,
        "params": t.student.params,
        "test_top1": t.test.best_top1,
        "holdout_top1": t.best_score,
        "run": str(teacher),
    }
    if bench.data.get("teacher") not in (None, teacher_info):  # rows of another teacher
        print("teacher changed: the earlier rows and picks are dropped", flush=True)
        bench.data.update(rows=[], picked={})
    bench.data["teacher"], bench.data["test_images"] = teacher_info, t.test.images
    bench.save()
    sets = [
        *scale.student_sets,
        f"teacher.checkpoint={teacher / 'checkpoints' / 'best.safetensors'}",
    ]
    step, index = PARTS[a.part]
    students = scale.students if index is None else scale.students[index : index + 1]
    if step in ("tune", "all"):
        for student in students:
            tune(bench, student, sets)
    if step in ("ladder", "all"):
        for student in students:
            ladder(bench, student, sets)
    if step in ("seeds", "all"):
        seeds(bench, sets)
    bench.data["wall_s"] = time.monotonic() - started
    bench.save()
    figure(bench.data, fig)
    print("\n" + markdown(bench.data))
    print(f"\nresults: {results}, figure: {fig}")
    if any(r["error"] for r in bench.data["rows"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
