"""How `distill students` orders its answer: families, an optional accuracy table, the ranking.

Expected quality within the budget is what the ranking is about. Without data nobody knows how
well a student will distill, so the default is capacity: more GFLOPs at the deployment size,
then more parameters (the rule of thumb behind every scaling curve). When an ImageNet accuracy
table is at hand (timm publishes ``results-imagenet.csv`` in its repository; its wheel ships
none), pretrained top-1 ranks first and the table is named in the output.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

from distill_cli.errors import DistillError
from distill_cli.file_kinds import kind_of, not_a_file
from distill_cli.students.types import (
    PROBE_FACTOR,
    STATUS_ORDER,
    Candidate,
    Status,
    StudentEntry,
    StudentQuery,
    Timing,
)

_PREFIXES = ("tf_", "tv_", "gluon_", "legacy_", "ig_", "ssl_", "swsl_", "test_")


def family_of(name: str) -> str:
    """'tf_efficientnet_b0' -> 'efficientnet', 'mobilenetv3_large_100' -> 'mobilenetv3',
    'resnet18d' -> 'resnet': the architecture line, without vendor prefixes and sizes."""
    base = name.split(".")[0]
    for prefix in _PREFIXES:
        if base.startswith(prefix) and len(base) > len(prefix):
            base = base[len(prefix) :]
    head = base.split("_")[0]
    if re.fullmatch(r"[a-z]+v\d+", head):
        return head
    match = re.match(r"[a-z]+", head)
    return match.group(0) if match else head


@dataclass(frozen=True)
class Accuracy:
    """ImageNet top-1 per architecture (the best of its pretrained tags) and where it came from."""

    top1: dict[str, float]
    source: Path

    def describe(self) -> str:
        return f"ImageNet top-1 of timm's pretrained weights from {self.source}, then capacity"


def _default_tables() -> list[Path]:
    found = []
    env = os.environ.get("DISTILL_ACCURACY_CSV")
    if env:
        found.append(Path(env))
    spec = importlib.util.find_spec("timm")  # locates timm without importing it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found.append(Path(folder) / "results" / "results-imagenet.csv")
        found.append(Path(folder).parent / "results" / "results-imagenet.csv")
    return found


def load_accuracy(path: Path | None) -> Accuracy | None:
    """The table at `path` (an error if unusable), else the first one found locally, else None."""
    if path is not None:
        return _read(Path(path), strict=True)
    for candidate in _default_tables():
        if candidate.is_file():
            table = _read(candidate, strict=False)
            if table is not None:
                return table
    return None


def _read(path: Path, strict: bool) -> Accuracy | None:
    def fail(what: str) -> Accuracy | None:
        if strict:
            raise DistillError(what, str(path), "a CSV with columns model,top1 (timm's results)")
        return None

    there = not_a_file(path)  # /dev/zero was read until memory ran out; a FIFO waited forever
    if there:
        return fail(f"the accuracy table is {there}, not a file")
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except UnicodeDecodeError:  # a PNG or a checkpoint named by mistake: say which
        what = kind_of(path) or "not text"
        return fail(f"the accuracy table is not UTF-8 text: the file is {what}")
    except IsADirectoryError:
        return fail("the accuracy table is a folder")
    except (OSError, csv.Error) as exc:
        return fail(f"cannot read the accuracy table: {exc}")
    if not rows or not {"model", "top1"} <= set(rows[0]):
        return fail("the accuracy table needs the columns model and top1")
    top1: dict[str, float] = {}
    for row in rows:
        try:
            value = float(row["top1"])
        except (TypeError, ValueError):
            continue
        arch = (row["model"] or "").split(".")[0]
        if arch:
            top1[arch] = max(value, top1.get(arch, value))
    if not top1:
        return fail("the accuracy table has no numeric top1 values")
    return Accuracy(top1, path)


def entry_for(
    cand: Candidate,
    status: Status | None,
    query: StudentQuery,
    *,
    timing: Timing | None = None,
    cached: bool = False,
    reason: str | None = None,
) -> StudentEntry:
    """A table row; with a timing, its status (fits, over, failed) follows from the budget."""
    if timing is None:
        assert status is not None
        return StudentEntry(
            cand.name,
            cand.family,
            status,
            cand.params,
            cand.gflops_est,
            reason=reason,
            pretrained=cand.pretrained,
        )
    if not timing.ok:
        return StudentEntry(
            cand.name,
            cand.family,
            "failed",
            cand.params,
            cand.gflops_est,
            cached=cached,
            reason=timing.error,
            pretrained=cand.pretrained,
        )
    value = timing.stat(query.latency_stat)
    assert value is not None
    headroom = query.max_latency_ms - value
    # the export's believability check (protocol.assess) judged the timing; its words are kept
    notes = [] if timing.complete else [f"warm-up only: over {PROBE_FACTOR:g}x the budget"]
    issues = [] if not timing.complete else list(timing.protocol_issues)
    return StudentEntry(
        name=cand.name,
        family=cand.family,
        status="fits" if headroom >= 0 else "over",
        params=timing.params,
        gflops=timing.gflops,
        p50_ms=timing.p50_ms,
        p90_ms=timing.p90_ms,
        headroom_ms=headroom,
        meets_protocol=timing.meets_protocol,
        cached=cached,
        reason="; ".join(notes + issues) or None,
        model_kwargs=dict(timing.model_kwargs),
        pretrained=cand.pretrained,
        protocol_issues=issues,
        exporter=timing.exporter,
    )


def rank(entries: list[StudentEntry], accuracy: Accuracy | None) -> list[StudentEntry]:
    """Fits by expected quality (numbered), then over (fastest first), skipped, unmeasured,
    failed."""
    from dataclasses import replace

    def top1(e: StudentEntry) -> float | None:
        return accuracy.top1.get(e.name) if accuracy else None

    with_acc = [replace(e, top1=top1(e)) for e in entries]

    def key(e: StudentEntry) -> tuple[int, bool, float, float, float, str]:
        order = STATUS_ORDER[e.status]
        if e.status == "fits":
            quality = -(e.top1 or 0.0)
            return (order, e.top1 is None, quality, -(e.gflops or 0.0), -(e.params or 0), e.name)
        if e.status == "over":  # nearest to fitting first
            return (order, False, -(e.headroom_ms or 0.0), 0.0, 0, e.name)
        return (order, False, 0.0, e.gflops or 0.0, e.params or 0, e.name)

    ranked = sorted(with_acc, key=key)
    out, n = [], 0
    for e in ranked:
        if e.status == "fits":
            n += 1
            out.append(replace(e, rank=n))
        else:
            out.append(e)
    return out
