"""The run directory: everything a run leaves behind, in one place.

``runs/<name>/`` holds ``recipe.yaml`` (the resolved recipe: re-running it reproduces the run),
``metrics.jsonl`` (one JSON object per log step and per evaluation), ``checkpoints/`` and
``summary.json``. A folder that already holds a different run is never overwritten by accident.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from distill_cli.checkpoint import atomic_write
from distill_cli.errors import DistillError


def _same_recipe(saved: Path, recipe_yaml: str) -> bool:
    """The saved recipe, re-read with today's defaults, is the one given: a run started before
    a recipe key existed (saved without it) can still be resumed after an upgrade."""
    import yaml
    from pydantic import ValidationError

    from distill_cli.recipe import Recipe

    text = saved.read_text()
    if text == recipe_yaml:
        return True
    try:
        return Recipe.model_validate(yaml.safe_load(text)).to_yaml() == recipe_yaml
    except (ValidationError, yaml.YAMLError, TypeError):
        return False


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.recipe = path / "recipe.yaml"
        self.metrics = path / "metrics.jsonl"
        self.summary = path / "summary.json"
        self.checkpoints = path / "checkpoints"
        self.last = self.checkpoints / "last.safetensors"
        self.best = self.checkpoints / "best.safetensors"
        self.lockfile = path / ".lock"

    def checkpoint(self, name: str) -> Path:
        return self.checkpoints / f"{name}.safetensors"

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run folder for the life of a run.

        An advisory ``flock`` on ``.lock``: the kernel drops it when the process dies, even by
        SIGKILL, so a crashed run never leaves a stale lock behind, and two live processes can
        never write the same run.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lockfile, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
                raise DistillError(
                    f"the run folder is in use by a live run (pid {holder})",
                    str(self.path),
                    "wait for it to finish, stop it, or set output.name",
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)

    def prepare(self, recipe_yaml: str, *, resume: bool, overwrite: bool) -> bool:
        """Create or reopen the folder; returns True when there is a checkpoint to resume.

        `--resume` of a run that died before its first checkpoint starts it over (nothing was
        lost); a run is never resumed under a different recipe, and an existing run is never
        replaced without `--overwrite`.
        """
        has_run = self.recipe.is_file() or self.metrics.is_file()
        if resume and self.recipe.is_file() and not _same_recipe(self.recipe, recipe_yaml):
            raise DistillError(
                "the recipe differs from the one this run was started with",
                str(self.recipe),
                "resume with the same recipe and --set values, or start a new run",
            )
        if resume and self.last.is_file():
            return True
        if has_run and not (resume or overwrite):
            raise DistillError(
                "the output folder already holds a run",
                str(self.path),
                "pass --resume to continue it, --overwrite to replace it, or set output.name",
            )
        if self.path.is_dir():
            for child in self.path.iterdir():  # everything but the lock we hold
                if child != self.lockfile:
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        atomic_write(self.recipe, recipe_yaml)
        return False

    def log(self, record: dict[str, Any]) -> None:
        with self.metrics.open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    def truncate_metrics(self, step: int) -> None:
        """Drop records after `step`: a resumed run re-logs them, so history stays single."""
        if not self.metrics.is_file():
            return
        keep = [
            line
            for line in self.metrics.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step
        ]
        atomic_write(self.metrics, "".join(line + "\n" for line in keep))

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics.is_file():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write(self.summary, json.dumps(summary, indent=2) + "\n")
