"""What the tuned benchmarks (`patience.py`, `full_data.py`) share, so they cannot drift apart.

Both train a teacher once and reuse it while its recipe holds, run students through `distill`
in their own processes, pick each method's lr/wd from a grid on the holdout (never the test
set), and accept other models and overrides from the command line. A run with other models or
overrides than a benchmark's defaults is a *variant*: its run folders and results files carry
the variant's tag, so it never reuses, overwrites or mixes with the default's (the committed
results); the JSON records the models and overrides used, so a rerun describes itself.

The other scripts that train or record results (fmnist_methods, export_latency, int8_options,
train_throughput) use the same checks before any work (`check_models`, `check_not_owned`,
`check_runs`), the same run reuse (`same_run`) and the same record of what ran (`environment`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from benchargs import command, one_line_errors  # noqa: F401  (re-exported: the benchmarks import it here)

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
#: (lr, weight decay): one setting of a tuning grid.
Setting = tuple[float, float]
#: Resolved-recipe fields that say where or how fast a teacher ran, not what it learned.
NOT_TRAINING = (("name",), ("description",), ("output",), ("runtime", "threads"))
#: What `teacher_run` and `launch` set on every run they start, after the user's overrides
#: (`check_not_owned` refuses a `--set` of these): key -> the option that sets it instead.
LAUNCHED = {
    "output.dir": "--out",
    "output.name": "--out (the benchmark names each run)",
    "runtime.threads": "--jobs (each run gets the cores / jobs)",
}


# --- the command line: other models and overrides --------------------------------------------


def add_model_options(p: argparse.ArgumentParser, what: str) -> None:
    """--teacher, --set and --teacher-set, worded alike in both benchmarks."""
    p.add_argument("--teacher", default=None, metavar="NAME", help="timm model of the teacher")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"recipe override for every {what} (repeatable), before each method's own and the "
        "grid's lr/wd",
    )
    p.add_argument(
        "--teacher-set",
        dest="teacher_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe override for the teacher's run (repeatable)",
    )


@dataclass(frozen=True)
class Variant:
    """The models and overrides one benchmark invocation uses: its defaults or other ones."""

    teacher: str
    students: tuple[str, ...]
    sets: tuple[str, ...] = ()  # every student run
    teacher_sets: tuple[str, ...] = ()  # the teacher's run
    lengths: tuple[int, ...] = ()
    seeds: tuple[int, ...] = ()
    methods: tuple[str, ...] = ()  # a subset of the benchmark's methods; () all of them

    def tag(self, default: Variant) -> str:
        """'' for the defaults; else a name part for run folders and results files."""
        return "" if self == default else _tag([self.teacher, *self.students], self.record())

    def teacher_tag(self, default: Variant) -> str:
        """'' for the default teacher; else a name part for its own run folder."""
        mine, theirs = (self.teacher, self.teacher_sets), (default.teacher, default.teacher_sets)
        return "" if mine == theirs else _tag([self.teacher], list(mine))

    def record(self) -> dict[str, Any]:
        """What the results JSON keeps: the models and overrides actually used (`methods`
        only when a subset ran, so the tags of the variants recorded before it stay)."""
        return {k: v for k, v in asdict(self).items() if k != "methods" or v}


def _tag(names: Sequence[str], what: object) -> str:
    readable = "-".join(_slug(n) for n in names)[:48].strip("-")
    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:6]
    return f"{readable}-{digest}"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def tagged(name: str, tag: str, sep: str = "-") -> str:
    """`name` with the variant's tag appended (unchanged for the defaults)."""
    return f"{name}{sep}{tag}" if tag else name


def check_models(names: Sequence[str], where: str) -> None:
    """Every name must be a timm model: the project's own lookup (one line, close matches)."""
    from distill_cli.errors import DistillError
    from distill_cli.models.names import check_model_name

    for name in names:
        try:
            check_model_name(name)
        except DistillError as exc:
            raise DistillError(exc.what, where, exc.hint) from None


def check_recipe(recipe: Path, overrides: Sequence[str]) -> None:
    """The recipe with these overrides must load (a typo fails now, not an hour in), and its
    method must accept it (`build.check_method`: stage_by_stage's stage counts for these
    models, early-stopped KD's stop epoch, ...): a row that would fail is one line before the
    teacher trains, not a failed row after it."""
    from distill_cli.recipe.document import load_recipe
    from distill_cli.train.build import check_method

    check_method(load_recipe(recipe, list(overrides)))


def check_runs(recipe: Path, overrides: Sequence[str], where: str) -> None:
    """The recipe's models build and run a batch at its sizes and its data is there (`api.plan`,
    no training; a teacher checkpoint that the benchmark has yet to train is left out): a model
    that cannot run at the benchmark's input size, or a Fashion-MNIST folder (`data.root`) that
    is missing, is one line before a teacher trains, not a failed row per run after it."""
    from distill_cli import api
    from distill_cli.errors import DistillError
    from distill_cli.recipe.document import load_recipe

    items = list(overrides)
    if load_recipe(recipe, items).teacher is not None:
        items.append("teacher.checkpoint=null")
    try:
        api.plan(recipe, items)
    except DistillError as exc:
        at = f"{where}: {exc.where}" if exc.where else where
        raise DistillError(exc.what, at, exc.hint, exc.code) from None


def check_not_owned(overrides: Sequence[str], owned: Mapping[str, str], where: str) -> None:
    """No override may set a key the benchmark sets itself from its own options (`owned`: key ->
    the option that sets it): the benchmark's value would replace the user's without a word
    (or, set after it, the user's would run under the option's label in the table and JSON).
    A whole section (`--set optim={...}`) that holds an owned key is refused too."""
    from distill_cli.errors import DistillError

    for item in overrides:
        key = item.partition("=")[0].strip()
        for own, option in owned.items():
            if key and (own == key or own.startswith(key + ".")):
                raise DistillError(
                    f"{where} {item[:60]} sets {own}, which the benchmark sets itself",
                    where,
                    f"use {option}",
                )


def check_holdout(recipe: Path, overrides: Sequence[str], where: str) -> None:
    """The run must hold out a validation split (`data.holdout`): every choice (lr/wd, the
    teacher's best checkpoint) is made on it and the test set is only reported. A `--set
    data.holdout=null` would make the test set the one chosen on (and `measure` find no test
    result)."""
    from distill_cli.errors import DistillError
    from distill_cli.recipe.document import load_recipe

    if not load_recipe(recipe, list(overrides)).data.holdout:
        raise DistillError(
            "no holdout: the benchmark makes its choices on it and reads the test set only to "
            "report",
            where,
            "keep data.holdout (e.g. data.holdout=5000), or leave it as the benchmark sets it",
        )


def check_method_kept(recipe: Path, overrides: Sequence[str], method: str) -> None:
    """The rows named after `method` must still run it: a `--set method=...` (or
    `method.name=...`) would run another method under that label, a silently wrong table."""
    from distill_cli.errors import DistillError
    from distill_cli.recipe.document import load_recipe

    ran = load_recipe(recipe, list(overrides)).method.name
    if ran != method:
        raise DistillError(
            f"--set makes the {method} rows run {ran}",
            "--set",
            "the benchmark sets each compared method itself; change a method's parameters "
            "(e.g. method.mixup=false), or run another method with distill run",
        )


# --- the teacher: trained once, reused while its recipe holds --------------------------------


def teacher_key(recipe: Any) -> dict[str, Any]:
    """The resolved recipe less where and how fast it ran: the model, the data, every override.

    A saved teacher is reused only when this is equal, so another teacher model or any
    `--teacher-set` (even one of the data section, like `data.val_limit`, which changes the
    recorded test top-1) trains a new teacher."""
    data = recipe.model_dump(mode="json")
    for path in NOT_TRAINING:
        node = data
        for part in path[:-1]:
            node = node.get(part, {})
        node.pop(path[-1], None)
    return data


def same_run(run: Path, recipe: Path, overrides: Sequence[str]) -> bool:
    """Whether `run` is a finished run of `recipe` with these overrides (`teacher_key`: the
    same models, data and schedule), so it may be reused instead of trained again. A run of
    other settings (another --epochs, another data limit) is never reused for these."""
    from distill_cli.recipe.document import load_recipe

    saved = run / "recipe.yaml"
    if not ((run / "summary.json").is_file() and saved.is_file()):
        return False
    return teacher_key(load_recipe(saved)) == teacher_key(load_recipe(recipe, list(overrides)))


def teacher_run(out: Path, recipe: Path, name: str, overrides: Sequence[str], threads: int) -> Path:
    """The teacher's run folder `out/name`: trained once, reused while `teacher_key` holds."""
    from distill_cli.errors import DistillError, RunFailed
    from distill_cli.recipe.document import load_recipe

    items = [*overrides, f"output.dir={out}", f"output.name={name}"]
    wanted = load_recipe(recipe, items)
    run = out / name
    if same_run(run, recipe, items):
        print(f"teacher: reusing {run}", flush=True)
        return run
    print(f"teacher: training {wanted.student.model} (distill train)...", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    args = ["train", str(recipe), "--overwrite", "-q", *_sets(items)]
    log = out / f"{name}.log"
    if code := launch(args, log, threads):
        what = f"the teacher's distill train failed ({code}): " + last_line(log).removeprefix(
            "error: "
        )
        if code == 2:  # distill refused its input (a holdout bigger than the data, no data)
            raise DistillError(what, str(log))  # its own line says what to do
        raise RunFailed(what, str(log))
    return run


# --- student runs --------------------------------------------------------------------------------


def _sets(items: Sequence[str]) -> list[str]:
    return [x for item in items for x in ("--set", item)]


def distill_env(threads: int | None = None) -> dict[str, str]:
    """The environment of a `distill` child process: this checkout first on its import path,
    `threads` OpenMP threads. The child runs in the folder the script was started in, where the
    checks before it (`check_runs`, in this process) read a relative `--set data.root=...` or
    checkpoint; it used to run in the checkout, which read them elsewhere (every run failed)."""
    path = [str(ROOT), *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def launch(args: Sequence[str], log: Path, threads: int, deadline: float | None = None) -> int:
    """One `distill` command in its own process with `threads` threads, output to `log`.

    Returns its exit code; at `deadline` (time.monotonic) it is sent SIGTERM (a run saves its
    position and stops, `--resume` continues it) and -1 is returned."""
    env = distill_env(threads)
    cmd = [sys.executable, "-m", "distill_cli", *args, *_sets([f"runtime.threads={threads}"])]
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        try:
            timeout = None if deadline is None else max(1.0, deadline - time.monotonic())
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
            return -1


def last_line(log: Path) -> str:
    return (log.read_text().strip().splitlines()[-1:] or ["(no output)"])[0]


@dataclass
class Measured:
    """What one finished run measured: the test set once at its end, the holdout curve."""

    test_top1: float
    test_best_top1: float | None  # the best-on-holdout checkpoint, on the test set
    holdout_top1: float | None  # final weights, on the holdout (what choices use)
    best_epoch: float | None
    agreement: float | None  # with the teacher, on the test set
    kl: float | None
    params: int
    images_per_s: float | None
    curve: list[tuple[float, float]] = field(default_factory=list)


def measure(run: Path) -> Measured:
    from distill_cli.rundir.summary import RunSummary

    s = RunSummary.load(run)
    assert s.test is not None, "the benchmark recipes hold out a validation split"
    return Measured(
        test_top1=s.test.top1,
        test_best_top1=s.test.best_top1,
        holdout_top1=s.student.top1,
        best_epoch=s.best_epoch,
        agreement=s.test.agreement_top1,
        kl=s.kl,
        params=s.student.params,
        images_per_s=s.images_per_s,
        curve=eval_curve(run),
    )


def eval_curve(run: Path) -> list[tuple[float, float]]:
    """(epoch, top-1) of every evaluation during a run (the holdout's, with data.holdout)."""
    curve = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") == "eval" and record.get("top1") is not None:
            curve.append((record["epoch"], record["top1"]))
    return curve


# --- the grid, the pick on the holdout, reuse --------------------------------------------------


def setting_suffix(cfg: Setting) -> str:
    """The part of a run name that says its grid setting (both benchmarks' names end so)."""
    return f"-lr{cfg[0]:g}-wd{cfg[1]:g}"


class Tried(Protocol):
    lr: float | None
    wd: float | None
    holdout_top1: float | None
    error: str | None


def best_on_holdout(rows: Sequence[Tried]) -> Setting | None:
    """The grid setting with the best final holdout top-1 among finished runs (never the test
    set); the first of equals, None when none finished."""
    done = [r for r in rows if r.error is None and r.holdout_top1 is not None]
    best = max(done, key=lambda r: r.holdout_top1 or 0.0, default=None)
    return None if best is None or best.lr is None or best.wd is None else (best.lr, best.wd)


R = TypeVar("R")


def split_done(rows: Sequence[R], ran: Sequence[R], key: Callable[[R], Hashable]) -> tuple:
    """(rows still to run, the finished runs that already are some of `rows`), by `key`."""
    by_key = {key(r): r for r in ran}
    todo = [r for r in rows if key(r) not in by_key]
    return todo, [by_key[key(r)] for r in rows if key(r) in by_key]


#: The packages whose versions every results JSON records (`environment`).
VERSIONED = ("distill-cli", "torch", "torchvision", "timm", "onnx", "onnxruntime")


def environment() -> dict[str, Any]:
    """Where and with what a benchmark ran, for its results JSON: the device, the cores, the
    command and the versions of the packages that make its figures (a rerun describes itself)."""
    import torch

    from distill_cli.host import cpu_count, installed_versions

    cuda = torch.cuda.is_available()
    return {
        "command": command(),
        "torch": torch.__version__,
        "versions": installed_versions(VERSIONED),
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "cpu_cores": os.cpu_count(),
        "usable_cores": cpu_count(),  # taskset, a container's limit
        "python": platform.python_version(),
    }
