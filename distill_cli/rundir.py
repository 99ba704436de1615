"""The run directory: everything a run leaves behind, in one place.

``runs/<name>/`` holds ``recipe.yaml`` (the resolved recipe: re-running it reproduces the run),
``metrics.jsonl`` (one JSON object per log step and per evaluation), ``checkpoints/`` and
``summary.json``. A folder that already holds a different run is never overwritten by accident.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from distill_cli.checkpoint import atomic_write
from distill_cli.errors import DistillError


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.recipe = path / "recipe.yaml"
        self.metrics = path / "metrics.jsonl"
        self.summary = path / "summary.json"
        self.checkpoints = path / "checkpoints"
        self.last = self.checkpoints / "last.safetensors"
        self.best = self.checkpoints / "best.safetensors"

    def checkpoint(self, name: str) -> Path:
        return self.checkpoints / f"{name}.safetensors"

    def prepare(self, recipe_yaml: str, *, resume: bool, overwrite: bool) -> bool:
        """Create or reopen the folder; returns True when there is a run to resume."""
        has_run = self.recipe.is_file()
        if resume:
            if not self.last.is_file():
                if has_run or self.metrics.is_file():
                    raise DistillError(
                        "nothing to resume: the run has no last checkpoint yet",
                        str(self.path),
                        "run without --resume (with --overwrite) to start over",
                    )
                resume = False
            elif self.recipe.read_text() != recipe_yaml:
                raise DistillError(
                    "the recipe differs from the one this run was started with",
                    str(self.recipe),
                    "resume with the same recipe and --set values, or start a new run",
                )
        elif has_run or self.metrics.is_file():
            if not overwrite:
                raise DistillError(
                    "the output folder already holds a run",
                    str(self.path),
                    "pass --resume to continue it, --overwrite to replace it, or set output.name",
                )
            shutil.rmtree(self.path)
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        atomic_write(self.recipe, recipe_yaml)
        return resume

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
