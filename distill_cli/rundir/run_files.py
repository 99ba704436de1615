"""A run's typed JSON files, written and read back: data.json (the data's fingerprint),
summary.json and eval.json. Anything read that is not what distill writes (bad JSON, missing
or mistyped fields: a file edited by hand or cut short) is one line naming the file.

`RunFiles` is the half of `RunDir` that reads and writes these; `layout.RunDir` (the folder,
its names, its lifecycle) inherits it, so callers keep writing `RunDir(x).read_summary()`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from distill_cli.errors import DistillError
from distill_cli.files import atomic_write

if TYPE_CHECKING:
    from distill_cli.data.fingerprint import DataFingerprint
    from distill_cli.rundir.class_eval import ClassEval
    from distill_cli.rundir.summary import RunSummary

T = TypeVar("T")


class RunFiles:
    """The typed files of a run folder; the names are `RunDir`'s."""

    path: Path
    summary: Path
    class_eval: Path
    data_print: Path

    def write_fingerprint(self, fingerprint: DataFingerprint) -> None:
        """The data the run started on (`data.fingerprint`), checked by `--resume`."""
        atomic_write(self.data_print, json.dumps(fingerprint.to_dict(), indent=1) + "\n")

    def read_fingerprint(self) -> DataFingerprint | None:
        """The data the run started on; None for a run from before the fingerprint."""
        from distill_cli.data.fingerprint import DataFingerprint

        if not self.data_print.is_file():
            return None
        return _read_typed(
            self.data_print,
            DataFingerprint.from_dict,
            "data.json is unreadable (not the JSON a run writes)",
            "delete it to resume without checking that the data is unchanged",
        )

    def write_summary(self, summary: RunSummary) -> None:
        atomic_write(self.summary, json.dumps(summary.to_dict(), indent=2) + "\n")

    def write_class_eval(self, result: ClassEval) -> None:
        atomic_write(self.class_eval, json.dumps(result.to_dict(), indent=2) + "\n")

    def read_class_eval(self) -> ClassEval | None:
        """The final evaluation per class; None when the run has none (no labels, older runs)."""
        from distill_cli.rundir.class_eval import ClassEval

        if not self.class_eval.is_file():
            return None
        return _read_typed(
            self.class_eval,
            ClassEval.from_dict,
            "eval.json is unreadable (not the JSON a finished run writes)",
        )

    def read_summary(self) -> RunSummary:
        """The finished run's summary; a one-line error when the run has not finished."""
        from distill_cli.rundir.summary import RunSummary

        if not self.summary.is_file():
            raise DistillError(
                "no summary.json: the run has not finished", str(self.path), "let it end first"
            )
        summary = _read_typed(
            self.summary,
            RunSummary.from_dict,
            "summary.json is unreadable (not the JSON a finished run writes)",
        )
        # the folder it was read from: the one written is wrong once the folder has moved
        return replace(summary, run_dir=self.path)


def _read_typed(path: Path, parse: Callable[[Any], T], what: str, fix: str | None = None) -> T:
    """One of the run's typed JSON files read back; anything that is not what distill writes
    (bad JSON, missing or mistyped fields) is one line naming the file."""
    try:
        return parse(json.loads(path.read_bytes()))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DistillError(what, str(path), fix) from exc
