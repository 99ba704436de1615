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

    python benchmarks/full_data.py --scale gpu --part 1   # teacher + the grid, both students
    python benchmarks/full_data.py --scale gpu --part 2   # the first student's ladder
    python benchmarks/full_data.py --scale gpu --part 3   # the second student's ladder
    python benchmarks/full_data.py --scale gpu --part 4   # the second seed, both students
    python benchmarks/full_data.py --scale cpu            # 10,000 images, 32 px (about an hour)
    python benchmarks/full_data.py --quick --out DIR      # the same pipeline in tiny (tests)
    python benchmarks/full_data.py --scale cpu --students resnet18 --teacher resnet50
    python benchmarks/full_data.py --scale cpu --set schedule.batch_size=128 --lengths 10 30

Other models and settings: `--students` (timm names), `--teacher`, `--set KEY=VALUE` (every
student run, before each method's own overrides and the grid's lr/wd), `--teacher-set` (the
teacher's run), `--lengths`, `--seeds` replace the scale's (full_data_scales.py); every model
and override is checked before anything trains. Anything other than the scale's own is a
*variant*: its runs are named `fd-...-<tag>`, its results `full_data_<scale>_<tag>.json` (the
figure beside it) unless `--json`/`--figure` say otherwise, so the committed results are never
reused for it or overwritten; another teacher or teacher override trains its own teacher in
`OUT/full-data-teacher-<tag>` (a teacher is reused only while its whole resolved recipe, less
where it ran, is the same). The JSON records the models and overrides used (`models`, `tag`).
`--quick` works in runs/full_data_quick (its results there too) unless `--out` says otherwise.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchargs import (
    Several,
    add_overwrite,
    at_least,
    command,
    fail,
    output_folder,
    parser,
    place,
    positive_float,
)
from full_data_report import figure, markdown
from full_data_scales import (
    FM,
    METHOD_NAMES,
    METHODS,
    PARTS,
    SCALES,
    STUDENT_RECIPE,
    TEACHER_RECIPE,
    Scale,
    choose,
    earlier,
    outputs,
    part_students,
    same_teacher,
    validate,
)
from tuning import (
    Setting,
    add_model_options,
    best_on_holdout,
    environment,
    eval_curve,
    last_line,
    launch,
    measure,
    one_line_errors,
    setting_suffix,
    tagged,
    teacher_run,
)

from distill_cli.host import thread_budget

ROOT = Path(__file__).resolve().parents[1]


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
    student: str, method: str, epochs: int, cfg: Setting, seed: int, role: str, tag: str = ""
) -> Row:
    """A run of the benchmark; a variant's runs (`tag`) are named apart from the default's."""
    name = f"fd-{_slug(student)}-{_slug(method)}-e{epochs}{setting_suffix(cfg)}-s{seed}"
    return Row(student, method, epochs, cfg[0], cfg[1], seed, tagged(name, tag), role)


class Bench:
    """The runs of one scale in one output folder, with the results file kept up to date."""

    def __init__(
        self,
        scale: Scale,
        out: Path,
        results: Path,
        deadline: float,
        tag: str = "",
        scale_name: str = "",
    ) -> None:
        self.scale, self.out, self.results, self.deadline = scale, out, results, deadline
        self.tag = tag  # the variant's: in every run name
        self.lock = threading.Lock()
        self.data: dict = {"rows": [], "commands": []}
        if results.is_file():  # an earlier part: its finished rows are kept and not rerun
            self.data = earlier(results, scale_name, tag)
        self.threads = max(1, thread_budget() // scale.jobs)

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
        if time.monotonic() >= self.deadline:
            row.error = "not started: the part's time budget was spent"
            return row
        verb = "train" if row.method == "labels" else "run"
        items = [*sets, *METHODS[row.method], f"student.model={row.student}"]
        items += [f"schedule.epochs={row.epochs}", f"runtime.seed={row.seed}"]
        items += [f"optim.lr={row.lr}", f"optim.weight_decay={row.wd}"]
        items += [f"output.dir={self.out}", f"output.name={row.run}"]
        run = self.out / row.run
        # a run stopped at a part's budget continues from its last checkpoint
        again = (run / "checkpoints" / "last.safetensors").is_file()
        again = again and not (run / "summary.json").is_file()
        mode = "--resume" if again else "--overwrite"
        args = [verb, str(STUDENT_RECIPE), mode, "-q", *(x for i in items for x in ("--set", i))]
        started = time.perf_counter()
        log = self.out / f"{row.run}.log"
        code = launch(args, log, self.threads, self.deadline)
        row.wall_s = time.perf_counter() - started
        if code == -1:
            row.error = "stopped at the part's time budget (--resume continues it)"
        elif code:
            row.error = f"exit code {code}: {last_line(log)}"
        if row.error is None:
            m = measure(run)
            row.test_top1, row.test_best_top1 = m.test_top1, m.test_best_top1
            row.holdout_top1, row.best_epoch = m.holdout_top1, m.best_epoch
            row.agreement, row.params = m.agreement, m.params
            row.images_per_s, row.curve = m.images_per_s, m.curve
        elif (run / "metrics.jsonl").is_file():
            row.curve = eval_curve(run)
        status = row.error or f"test top-1 {row.test_top1:.2f}, holdout {row.holdout_top1:.2f}"
        print(
            f"  {row.student} {row.method} @ {row.epochs} ep, seed {row.seed}: {status}", flush=True
        )
        self.save(row)
        return row


def tune(bench: Bench, student: str, sets: list[str]) -> dict:
    """Every method with every grid setting at the shortest length; keeps the holdout's pick."""
    scale, picked, tag = bench.scale, bench.data.setdefault("picked", {}), bench.tag
    shortest = min(scale.lengths)
    rows = [
        make_row(student, m, shortest, cfg, 0, "tune", tag)
        for m in scale.methods
        for cfg in scale.grid
    ]
    done = bench.run_all(rows, sets)
    picked[student] = {
        m: best_on_holdout([r for r in done if r.method == m]) for m in scale.methods
    }
    bench.save()
    return picked[student]


def ladder(bench: Bench, student: str, sets: list[str]) -> None:
    """Function matching at every length, the other methods at the longest, seed 0."""
    chosen = bench.data.get("picked", {}).get(student) or tune(bench, student, sets)
    lengths, longest = bench.scale.lengths, max(bench.scale.lengths)
    rows = [
        make_row(student, m, n, tuple(cfg), 0, "ladder", bench.tag)
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
                    make_row(student, m, longest, tuple(cfg), s, "seed", bench.tag)
                    for s in bench.scale.seeds
                    if s
                ]
    bench.run_all(rows, sets)


def main() -> None:
    p = parser(__doc__)
    p.add_argument(
        "--scale", choices=["gpu", "cpu"], default=None, help="full_data_scales.py's size (gpu)"
    )
    p.add_argument(
        "--quick", action="store_true", help="its own tiny scale: tiny models and data, a minute"
    )
    p.add_argument(
        "--part", choices=sorted(PARTS), default="all", help="GPU: see the docstring (all)"
    )
    p.add_argument(
        "--students",
        action=Several,
        default=None,
        metavar="NAME",
        help="timm models (default: the scale's)",
    )
    add_model_options(p, "student run")
    p.add_argument(
        "--lengths", action=Several, item=at_least(1), help="epochs (default: the scale's)"
    )
    p.add_argument(
        "--methods",
        action=Several,
        metavar="NAME",
        help="a subset of " + ", ".join(METHOD_NAMES) + " (default: all; a subset is a variant)",
    )
    p.add_argument(
        "--seeds",
        action=Several,
        item=at_least(0),
        default=None,
        help="seeds of the longest runs (default: the scale's; 0 always runs)",
    )
    p.add_argument(
        "--out",
        type=place,
        help="run folders (default runs/full_data; --quick: runs/full_data_quick)",
    )
    p.add_argument(
        "--json",
        type=place,
        help="results (default benchmarks/results/full_data_<scale>.json, a variant's "
        "full_data_<scale>_<tag>.json; --quick: in OUT); an existing file of the same run is "
        "continued, one of another run refused",
    )
    p.add_argument(
        "--figure",
        type=place,
        help="default docs/img/full_data_<scale>.png, a variant's beside JSON",
    )
    p.add_argument("--budget-min", type=positive_float, help="stop runs after this many minutes")
    p.add_argument(
        "--jobs", type=at_least(1), default=None, help="runs side by side (default: the scale's)"
    )
    add_overwrite(p, "drop the rows of another teacher from the results file (default: refuse)")
    a = p.parse_args()
    if a.quick and a.scale:  # --quick is a scale of its own: the other one would be ignored
        fail(f"--quick runs its own scale, not --scale {a.scale}", "--scale", "give one of them")
    name = "quick" if a.quick else a.scale or "gpu"
    scale, variant, tag = choose(name, a)
    if a.out is not None:  # a file of that name: one line, before the results file is named in it
        output_folder(a.out, "--out")
    out, results, fig = outputs(name, tag, a)
    if results.is_file():  # another run's results are refused before the models are checked
        earlier(results, name, tag)
    one_line_errors(lambda: validate(scale, variant))
    students = one_line_errors(lambda: part_students(scale, a.part))
    output_folder(out, "--out")
    started = time.monotonic()
    deadline = started + (a.budget_min * 60 if a.budget_min else 1e9)
    bench = Bench(scale, out, results, deadline, tag, name)
    bench.data.update(scale=name, environment=environment(), grid=scale.grid, lengths=scale.lengths)
    bench.data.update(models=variant.record(), tag=tag)
    bench.data["overrides"] = {  # every run's, the scale's included (sizes, data, device)
        "teacher": scale.teacher_overrides(variant.teacher_sets),
        "students": scale.student_overrides(variant.sets),
    }
    bench.data["commands"].append(command("benchmarks/full_data.py"))

    teacher_name = tagged("full-data-teacher", variant.teacher_tag(SCALES[name].variant()))
    teacher_sets = scale.teacher_overrides(variant.teacher_sets)
    teacher = one_line_errors(
        lambda: teacher_run(out, TEACHER_RECIPE, teacher_name, teacher_sets, thread_budget())
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
    if not same_teacher(bench.data.get("teacher"), teacher_info, results, a.overwrite):
        print("teacher changed: the earlier rows and picks are dropped", flush=True)
        bench.data.update(rows=[], picked={})
    bench.data["teacher"], bench.data["test_images"] = teacher_info, t.test.images
    bench.save()
    sets = [
        *scale.student_overrides(variant.sets),
        f"teacher.checkpoint={teacher / 'checkpoints' / 'best.safetensors'}",
    ]
    step = PARTS[a.part][0]
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
