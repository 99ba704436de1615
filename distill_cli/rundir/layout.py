"""The run directory: everything a run leaves behind, in one place.

``runs/<name>/`` holds ``recipe.yaml`` (the resolved recipe: re-running it reproduces the run),
``data.json`` (the fingerprint of the data it started on, which ``--resume`` checks),
``metrics.jsonl`` (one JSON object per log step and per evaluation), ``checkpoints/`` and
``summary.json``. This class is the one owner of that layout: nothing else joins run paths.

distill deletes only what it made: every folder it creates carries a ``.distill-run`` marker,
and a folder without one (a user's folder reached through a mistyped name) is never written
into, locked or emptied. A run from before the marker is recognised only by distill's own
files (a recipe that validates and a checkpoint whose header carries distill's metadata: the
checks are in checks.py), and even in a run folder `--overwrite` deletes only the names
listed here, never a user's file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from distill_cli.errors import DistillError
from distill_cli.files import atomic_write, fs_failed
from distill_cli.locks import holder, lock_exclusive, lock_held, unlock
from distill_cli.recipe.run_name import check_run_name
from distill_cli.rundir.checks import (
    CHECKED_BY_THE_FINGERPRINT,
    WHERE_THE_RUN_IS,
    distill_checkpoint,
    recipe_changes,
    record_problem,
    valid_recipe,
)
from distill_cli.rundir.run_files import RunFiles

#: The file that marks a folder as a distill run (so distill may replace what is in it).
MARKER = ".distill-run"
#: The run's lock file: distill's own name, taken only in a folder known to be a run.
LOCK = ".distill-lock"
#: What the marker says; a line `launch: <id>` after it names the launch (SLURM job, torchrun
#: rendezvous) the run last started or resumed under, which continues it when it restarts
#: (`train.engine`). In the marker, not a file of its own: a run's files are the same
#: whether a launcher started it or not.
MARKER_TEXT = "a distill run folder: distill may replace what is in it\n"
_LAUNCH_LINE = "launch: "
#: What distill writes at the top of a run folder (besides `report_*.png` and `.*.tmp`):
#: `--overwrite` deletes these and nothing else. `.lock` is the lock of older versions.
_OWNED = (
    MARKER,
    LOCK,
    ".lock",
    "recipe.yaml",
    "metrics.jsonl",
    "summary.json",
    "eval.json",
    "data.json",
    "checkpoints",
    "export",
    "tensorboard",
    "mlflow_run_id",
    "report.html",
    "report.md",
)


class RunDir(RunFiles):
    """One run's folder and the names of everything in it (its typed files: `RunFiles`)."""

    def __init__(self, path: str | Path) -> None:
        path = self.path = Path(path)  # api.md's `RunDir("runs/x")`: a string is a path too
        self.recipe = path / "recipe.yaml"
        self.metrics = path / "metrics.jsonl"
        self.summary = path / "summary.json"
        self.class_eval = path / "eval.json"
        self.data_print = path / "data.json"
        self.checkpoints = path / "checkpoints"
        self.last = self.checkpoints / "last.safetensors"
        self.best = self.checkpoints / "best.safetensors"
        self.lockfile = path / LOCK
        self.marker = path / MARKER
        self.export = path / "export"
        self.export_report = self.export / "report.json"
        self.tensorboard = path / "tensorboard"
        self.mlflow_run_id = path / "mlflow_run_id"
        self.report_html = path / "report.html"
        self.report_md = path / "report.md"

    @classmethod
    def of(cls, output_dir: Path, name: str) -> RunDir:
        """The folder of run `name` under `output_dir` (the name checked first)."""
        return cls(Path(output_dir) / check_run_name(name))

    @staticmethod
    def check_intent(*, resume: bool, overwrite: bool) -> None:
        """`--resume` keeps what the folder holds, `--overwrite` deletes it: never both."""
        if resume and overwrite:
            raise DistillError(
                "--resume and --overwrite contradict each other",
                "--resume/--overwrite",
                "--resume continues the run, --overwrite starts it over: pass one",
            )

    def checkpoint(self, name: str) -> Path:
        return self.checkpoints / f"{name}.safetensors"

    def report_image(self, name: str) -> Path:
        """A figure of `distill report` (`report_accuracy.png`, ...)."""
        return self.path / f"report_{name}.png"

    @property
    def is_run(self) -> bool:
        """Made by distill: marked, or (a run from before the marker) distill's own files: a
        recipe that validates and a checkpoint carrying distill's metadata. A `recipe.yaml`
        beside a `checkpoints/` folder alone is what many ML projects have: not enough."""
        if self.marker.is_file() and not self.marker.is_symlink():
            return True
        if not (self.recipe.is_file() and self.checkpoints.is_dir()):
            return False
        return valid_recipe(self.recipe) and any(
            distill_checkpoint(p) for p in (self.last, self.best)
        )

    def owned(self) -> list[Path]:
        """The entries of the folder distill wrote (by name): all `--overwrite` may delete."""
        if not self.path.is_dir():
            return []
        return [
            child
            for child in self.path.iterdir()
            if child.name in _OWNED
            or (child.name.startswith("report_") and child.suffix == ".png")
            or (child.name.startswith(".") and child.name.endswith(".tmp"))
        ]

    def claim(self) -> None:
        """Refuse a folder that is not ours before anything is written or locked in it: a
        symlink, a file, or a folder with content that is not a distill run."""
        if self.path.is_symlink():
            raise DistillError(
                "the run folder is a symlink; distill never writes through one",
                str(self.path),
                "set output.dir to the folder the link points to",
            )
        if not self.path.exists():
            above = next(p for p in self.path.parents if p.exists() or p == p.parent)
            if above.exists() and not above.is_dir():
                raise DistillError(
                    f"the run folder cannot be made: {above} is not a folder",
                    str(self.path),
                    "set output.dir to a folder",
                )
            return
        if not self.path.is_dir():
            raise DistillError(
                "the run folder path is not a folder", str(self.path), "set output.name or dir"
            )
        if not self.is_run and any(c != self.lockfile for c in self.path.iterdir()):
            raise DistillError(
                "the output folder exists and is not a distill run; distill will not write "
                "into it or delete it",
                str(self.path),
                "set output.name (or output.dir) to a new or empty folder",
            )

    def planned(
        self, recipe_yaml: str | None = None, *, resume: bool = False, overwrite: bool = False
    ) -> str:
        """What `--dry-run` says of the folder: refused (`claim`) where any run would refuse
        it, whatever its flags; else `new`, or that it holds a run (a run needs a flag). With
        the run's flags it is refused as that run would refuse it (`check`: a changed recipe
        on --resume, --resume beside --overwrite), else it says what that run would do: a
        dry run of `--resume` said "continue it with --resume" and nothing of where."""
        self.check_intent(resume=resume, overwrite=overwrite)
        self.claim()
        if not (self.path.exists() and self.is_run):
            return "new"
        if not (resume or overwrite) or recipe_yaml is None:
            return "holds a run: continue it with --resume or replace it with --overwrite"
        if not self.check(recipe_yaml, resume=resume, overwrite=overwrite):
            if overwrite:
                return "holds a run: --overwrite deletes it and starts over"
            return "holds a run stopped before its first checkpoint: --resume starts it over"
        from distill_cli.models.checkpoint import read_train_state  # torch: only when asked

        step = int(read_train_state(self.last).get("step", 0))
        if self.summary.is_file():  # what `--resume` does with a run that ended
            return f"holds a finished run (step {step:,}): --resume has no steps left to train"
        return f"holds a run: --resume continues it from step {step:,} (its last checkpoint)"

    def training(self) -> str | None:
        """The pid of a live run holding this folder (`lock`), else None: what reads a run
        while it trains (its export) says so, as its `best` is not the run's last word."""
        return lock_held(self.lockfile)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run folder for the life of a run.

        An advisory ``flock`` on ``.distill-lock``: the kernel drops it when the process dies,
        even by SIGKILL, so a crashed run never leaves a stale lock behind, and two live
        processes can never write the same run. The folder is claimed (:meth:`claim`) before
        the lock file is opened, so a foreign folder is never touched. A folder made here
        whose run failed before its first step (the build failed, the optimizer refused a
        setting) is removed again with the parents made for it: a refused run leaves nothing.
        """
        self.claim()
        made = [p for p in (self.path, *self.path.parents) if not p.exists()]
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise fs_failed(exc, self.path, "create the run folder") from exc
        had_lock = self.lockfile.exists()

        def busy(fd: int) -> DistillError:
            return DistillError(
                f"the run folder is in use by a live run (pid {holder(fd)})",
                str(self.path),
                "wait for it to finish, stop it, or set output.name",
            )

        fd = lock_exclusive(self.lockfile, create=True, doing="lock the run folder", busy=busy)
        failed = True
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
            failed = False
        finally:
            unlock(fd)
            if made and failed and not self.started:
                self._remove(self.owned())
                for folder in made:  # innermost first; a folder someone else filled stays
                    with contextlib.suppress(OSError):
                        folder.rmdir()
            elif not self.is_run and not had_lock:
                self.lockfile.unlink(missing_ok=True)

    @property
    def started(self) -> bool:
        """Whether training took a step here: a metrics line or a checkpoint exists."""
        return self.last.is_file() or any(r is not None for _, r in self.metric_lines())

    @staticmethod
    def _remove(paths: list[Path]) -> None:
        for child in paths:
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink(missing_ok=True)

    def clean_temporaries(self) -> None:
        """Remove the temp files a kill during an atomic write left behind (GBs for real
        models); only ours: `.<name>.<random>.tmp` in the run folder and `checkpoints/`."""
        for folder in (self.path, self.checkpoints):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    if tmp.is_file():
                        tmp.unlink(missing_ok=True)

    def check(self, recipe_yaml: str, *, resume: bool, overwrite: bool) -> bool:
        """What the folder alone refuses, writing nothing (asked before the run is built, so a
        forgotten `--resume` is told at once, not after the data's scan and the teacher's
        load); True when there is a checkpoint to resume. A run that died before its first
        checkpoint starts over; one whose `last` is gone but left results is refused, never
        wiped; a run is never resumed under another recipe nor replaced without `--overwrite`.
        """
        self.check_intent(resume=resume, overwrite=overwrite)
        self.claim()
        if not self.path.is_dir():
            return False
        has_recipe = self.recipe.is_file()
        has_run = has_recipe or self.metrics.is_file()
        ignore = WHERE_THE_RUN_IS
        if self.data_print.is_file():  # the data is compared by content (train.engine)
            ignore += CHECKED_BY_THE_FINGERPRINT
        changes = (
            recipe_changes(self.recipe, recipe_yaml, ignore, self.path)
            if resume and has_recipe
            else []
        )
        if changes:
            raise DistillError(
                "the recipe differs from the one this run was started with: "
                + "; ".join(map(str, changes[:3]))
                + (f" (+{len(changes) - 3} more)" if len(changes) > 3 else ""),
                str(self.recipe),
                "resume with the same recipe and --set values, or start a new run"
                + (
                    "; if the same files only moved, write their new paths into this file"
                    if any(c.moved for c in changes)
                    else ""
                ),
            )
        if resume and self.last.is_file():
            return True
        kept = [p.name for p in (self.best, self.summary) if p.is_file()]
        if resume and kept:
            raise DistillError(
                f"cannot resume: {self.last.name} is missing but the run has results "
                f"({', '.join(kept)}) that starting over would delete",
                str(self.last),
                "restore last.safetensors, pass --overwrite to start over, or set output.name",
            )
        if has_run and not (resume or overwrite):
            raise DistillError(
                "the output folder already holds a run",
                str(self.path),
                "pass --resume to continue it, --overwrite to replace it, or set output.name",
            )
        return False

    def prepare(self, recipe_yaml: str, *, resume: bool, overwrite: bool) -> bool:
        """Create or reopen the folder after `check`; True when there is a checkpoint to resume."""
        resuming = self.check(recipe_yaml, resume=resume, overwrite=overwrite)
        self.path.mkdir(parents=True, exist_ok=True)
        self.clean_temporaries()
        if resuming:
            return True
        # a distill run (claimed above): distill's own files, all but the lock we hold
        self._remove([c for c in self.owned() if c != self.lockfile])
        atomic_write(self.marker, MARKER_TEXT)
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        atomic_write(self.recipe, recipe_yaml)
        return False

    def record_launch(self, launch: str | None) -> None:
        """Note the launch this run now trains under (None: started by hand)."""
        if launch != self.launched_by():
            atomic_write(self.marker, MARKER_TEXT + (f"{_LAUNCH_LINE}{launch}\n" if launch else ""))

    def launched_by(self) -> str | None:
        """The launch the run last started or resumed under; None when unknown."""
        try:
            lines = self.marker.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return None
        return next((x[len(_LAUNCH_LINE) :] for x in lines if x.startswith(_LAUNCH_LINE)), None)

    def log(self, record: dict[str, Any]) -> None:
        """Append one line (never through a symlink planted where metrics.jsonl belongs)."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
        try:
            fd = os.open(self.metrics, flags, 0o666)
        except OSError as exc:
            raise fs_failed(exc, self.metrics, "append to the metrics") from exc
        with os.fdopen(fd, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def metric_lines(self) -> list[tuple[bytes, dict[str, Any] | None]]:
        """metrics.jsonl's lines, each with its record, or None where the line is not one
        distill writes (blank, torn by a kill during its write, garbled bytes, a hand edit
        with wrong types): resume, reports and the bench read only valid records."""
        if not self.metrics.is_file():
            return []
        out: list[tuple[bytes, dict[str, Any] | None]] = []
        for line in self.metrics.read_bytes().splitlines():
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):  # not JSON, not UTF-8, absurdly deep
                record = None
            ok = isinstance(record, dict) and record_problem(record) is None
            out.append((line, record if ok else None))
        return out

    def truncate_metrics(self, step: int) -> None:
        """Drop records after `step`: a resumed run re-logs them, so history stays single.

        A line that does not parse is dropped too: it cannot be placed, and the resumed run
        logs its steps again. So is the `test` line (logged once, after the last step): a run
        resumed at its end logs it again, and a finished run resumed had two.
        """
        if not self.metrics.is_file():
            return
        keep = [
            line.decode()
            for line, record in self.metric_lines()
            if record is not None and record.get("step", 0) <= step and record.get("kind") != "test"
        ]
        atomic_write(self.metrics, "".join(line + "\n" for line in keep))
