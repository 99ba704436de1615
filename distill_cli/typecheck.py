"""Checking a dataclass read back from a JSON file against its declared field types.

Files distill wrote can come back hand-edited or damaged (`"top1": "abc"`, a list where an
object belongs, `NaN` latencies). The typed readers (summary.json, the students cache) build
their dataclass and then ask :func:`field_problem` whether every value has its declared type,
so a damaged file is refused (or re-measured) where it is read instead of failing later in an
f-string or a sum, far from the file that caused it.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any


def _fits(kind: str, value: Any, finite: bool) -> bool:
    """Whether `value` fits the annotation text `kind` (`float | None`, `int`, `str`, ...)."""
    if value is None:
        return "None" in kind
    if dataclasses.is_dataclass(value):
        return field_problem(value, finite=finite) is None
    if isinstance(value, bool):
        return kind.startswith("bool")
    if kind.startswith("bool"):
        return False
    if "float" in kind:
        return isinstance(value, (int, float)) and (not finite or math.isfinite(value))
    if kind.startswith("int"):
        return isinstance(value, int)
    if kind.startswith("str"):
        return isinstance(value, str)
    if kind.startswith("Path"):
        return isinstance(value, Path)
    if kind.startswith("dict"):
        return isinstance(value, dict)
    if kind.startswith(("list", "tuple")):
        return isinstance(value, (list, tuple))
    return True  # a type this checker does not know: trusted


def field_problem(obj: Any, *, finite: bool = False) -> str | None:
    """The first field of dataclass `obj` whose value does not have its declared type (with
    `finite`, a NaN or infinite float counts as wrong), as `name: value`; None when all fit."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if not _fits(str(f.type), value, finite):
            return f"{f.name}: {str(value)[:40]!r}"
    return None
