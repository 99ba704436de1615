"""Which timm student fits my latency budget? The logic behind `distill students`.

1. **Candidates** are the teacher's students as `distill models --teacher` finds them
   (``model_search.find_models``: built on the meta device, cached per timm version), narrowed
   by pattern, family or an explicit list, and de-duplicated: within a family, architectures
   with near-equal parameters and GFLOPs (vendor ports such as ``tf_efficientnet_b0``,
   resolution variants such as ``*_384``) are timed once.
2. **Order**: a budget-guided search. The first candidate timed is the cheapest; after that the
   next one is the candidate whose latency, predicted from its GFLOPs and the ms-per-GFLOP of
   what was timed so far (its family's when known), is closest to the budget. The frontier (the
   largest models that still fit) is what the ranking needs, and it is found first.
3. **Skips**, each with its reason: a candidate with at least the GFLOPs and parameters of a
   family member already over the budget, or with `SKIP_FACTOR` times the GFLOPs of any model
   over the budget, is not exported (``measure_all`` turns this off).
4. **Timing** (``student_bench``): `distill export`'s exporter, variants and protocol. Results
   are cached on disk per (architecture, input size, classes, device, threads, precision, batch,
   exporter, opset, protocol, package versions, CPU model), so a repeated query is instant; the
   candidate list itself is cached too, so a fully cached query never imports torch or timm.
5. **Ranking**: candidates within the budget first, by expected quality: ImageNet top-1 from an
   accuracy table when one is available (timm's ``results-imagenet.csv``; timm's wheel ships
   none, so only when the user points at one or it is found locally), else capacity (GFLOPs,
   then parameters). Then those over the budget (fastest first), skipped, not measured, failed.
"""

from __future__ import annotations

import fnmatch
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from distill_cli.errors import DistillError, RunFailed, did_you_mean
from distill_cli.host import refuse_existing
from distill_cli.students.cache import Cache, cache_root, cpu_model, package_versions, read, write
from distill_cli.students.rank import Accuracy, entry_for, family_of, load_accuracy, rank
from distill_cli.students.types import (
    PROBE_FACTOR,
    Candidate,
    Duplicate,
    StudentEntry,
    StudentQuery,
    StudentSearch,
    Timing,
)

#: A model this many times the GFLOPs of one already over the budget is not exported.
SKIP_FACTOR = 4.0
#: Near-identical: parameters within 3% and GFLOPs within 10% (same family).
NEAR_PARAMS, NEAR_GFLOPS = 0.03, 0.10
_VENDOR_PREFIXES = ("tf_", "tv_", "gluon_", "legacy_", "ig_", "ssl_", "swsl_")
Progress = Callable[[int, int, str], None]
_clock = time.perf_counter  # one name to patch in tests


# --- candidates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pool:
    teacher_params: int | None
    candidates: list[Candidate]
    duplicates: list[Duplicate]
    notes: list[str]


def _near(a: Candidate, b: Candidate) -> bool:
    if a.family != b.family or abs(a.params - b.params) > NEAR_PARAMS * max(a.params, b.params):
        return False
    if a.gflops_est is None or b.gflops_est is None:
        return False
    return abs(a.gflops_est - b.gflops_est) <= NEAR_GFLOPS * max(a.gflops_est, b.gflops_est)


def deduplicate(cands: list[Candidate]) -> tuple[list[Candidate], list[Duplicate]]:
    """One per group of near-identical architectures; pretrained, unprefixed, short names win."""
    preferred = sorted(
        cands,
        key=lambda c: (not c.pretrained, c.name.startswith(_VENDOR_PREFIXES), len(c.name), c.name),
    )
    kept: list[Candidate] = []
    dups: list[Duplicate] = []
    for cand in preferred:
        twin = next((k for k in kept if _near(k, cand)), None)
        if twin is None:
            kept.append(cand)
        else:
            dups.append(Duplicate(cand.name, twin.name))
    return sorted(kept, key=lambda c: c.name), sorted(dups, key=lambda d: d.name)


def _candidate(entry: Any, size: int) -> Candidate:
    est = None
    if entry.gflops is not None and entry.input_size:
        h, w = entry.input_size
        est = entry.gflops * size * size / (h * w)  # convolutions and tokens both scale ~ pixels
    return Candidate(entry.name, family_of(entry.name), entry.params, est, entry.pretrained)


def _search(q: StudentQuery, progress: Callable[[int, int], None] | None) -> _Pool:
    """Sized-up students of the teacher (timm on the meta device: slow once, then cached).

    Parameters first for every match (cheap), GFLOPs then only for the students: counting FLOPs
    runs a forward pass, and most of timm's registry is larger than any sensible student.
    """
    import timm

    from distill_cli.students.model_search import find_models

    common: dict[str, Any] = {"teacher": q.teacher, "limit": None, "max_ratio": q.max_ratio}
    notes: list[str] = []
    if q.candidates:
        for name in q.candidates:
            if not timm.is_model(name):
                hint = did_you_mean(name, timm.list_models()) or "see `distill models`"
                raise DistillError(f"unknown timm model {name!r}", "--candidates", hint)
        names = list(dict.fromkeys(q.candidates))
    else:
        search = find_models(q.pattern, pretrained_only=q.pretrained_only, **common)
        names = [e.name for e in search.entries if e.student]
        if q.families:
            names = [n for n in names if any(fnmatch.fnmatch(family_of(n), f) for f in q.families)]
    teacher_params = None
    students = []
    for i, name in enumerate(names):
        found = find_models(name, flops=True, **common)
        teacher_params = found.teacher.params if found.teacher else None
        entry = next(e for e in found.entries if e.name == name)
        if entry.params is None:
            notes.append(f"{name}: could not be built on the meta device; not a candidate")
        elif not entry.student:
            notes.append(f"{name}: more than {q.max_ratio:g}x the teacher's parameters")
        else:
            students.append(entry)
        if progress:
            progress(i + 1, len(names))
    cands = [_candidate(e, q.input_size) for e in students]
    dups: list[Duplicate] = []
    if q.dedup and not q.candidates:
        cands, dups = deduplicate(cands)
    return _Pool(teacher_params, cands, dups, notes)


def _pool(q: StudentQuery, cache: Cache, progress: Progress | None) -> _Pool:
    key = cache.pool_key(q)
    path = cache.path("pools", key)
    value = read(path, key)
    if isinstance(value, dict):
        return _Pool(
            value["teacher_params"],
            [Candidate(**c) for c in value["candidates"]],
            [Duplicate(**d) for d in value["duplicates"]],
            list(value["notes"]),
        )

    def sizing(done: int, total: int) -> None:
        if progress:
            progress(done, total, "sizing up timm models (once per timm version)")

    pool = _search(q, sizing)
    value = {
        "teacher_params": pool.teacher_params,
        "candidates": [c.__dict__ for c in pool.candidates],
        "duplicates": [d.__dict__ for d in pool.duplicates],
        "notes": pool.notes,
    }
    write(path, key, value)
    return pool


# --- the sweep -------------------------------------------------------------------------------


def _over(t: Timing, q: StudentQuery) -> bool:
    value = t.stat(q.latency_stat)
    return value is not None and value > q.max_latency_ms


def _skip_reason(c: Candidate, over: list[tuple[Candidate, Timing]]) -> str | None:
    if c.gflops_est is None:
        return None
    for o, t in over:
        if o.gflops_est is None:
            continue
        same = o.family == c.family and c.gflops_est >= o.gflops_est and c.params >= o.params
        if same or c.gflops_est >= SKIP_FACTOR * o.gflops_est:
            why = (
                "a family member with fewer GFLOPs" if same else f"{SKIP_FACTOR:g}x+ the GFLOPs of"
            )
            return f"predicted over budget: {why} {o.name} takes {t.p50_ms:.2f} ms (p50)"
    return None


def _predict(c: Candidate, timed: list[tuple[Candidate, Timing]]) -> float | None:
    """Predicted ms from GFLOPs and the ms/GFLOP of what was timed (family first)."""
    if c.gflops_est is None:
        return None

    def rates(pairs: list[tuple[Candidate, Timing]]) -> list[float]:
        return [
            t.p50_ms / o.gflops_est
            for o, t in pairs
            if t.ok and t.p50_ms is not None and o.gflops_est
        ]

    family = rates([(o, t) for o, t in timed if o.family == c.family])
    rate = family or rates(timed)
    return c.gflops_est * statistics.median(rate) if rate else None


def _next(remaining: list[Candidate], timed: list[tuple[Candidate, Timing]], q: StudentQuery):
    """Cheapest first; then the one predicted closest to the budget (log scale)."""

    def cost(c: Candidate) -> tuple[int, float, int, str]:
        if not timed:
            flops = c.gflops_est if c.gflops_est is not None else math.inf
            return (0, flops, c.params, c.name)
        pred = _predict(c, timed)
        if pred is None or pred <= 0:
            return (1, float(c.params), c.params, c.name)
        return (0, abs(math.log(pred / q.max_latency_ms)), c.params, c.name)

    return min(remaining, key=cost)


def find_students(
    query: StudentQuery,
    *,
    progress: Progress | None = None,
    accuracy: Accuracy | None = None,
) -> StudentSearch:
    """Rank the teacher's students by expected quality within the latency budget."""
    query.validate()
    started = _clock()
    threads = query.threads or os.cpu_count() or 1
    machine = {"cpu": cpu_model(), "threads": threads, "versions": package_versions()}
    cache = Cache(cache_root(query), machine)
    accuracy = accuracy if accuracy is not None else load_accuracy(query.accuracy_csv)
    pool = _pool(query, cache, progress)
    if not pool.candidates:
        raise DistillError(
            f"no candidate students of {query.teacher} match",
            "--pattern / --family / --candidates",
            f"widen the pattern, raise --max-ratio ({query.max_ratio:g}) or pass --all-weights",
        )
    remaining = list(pool.candidates)
    timed: list[tuple[Candidate, Timing]] = []
    over: list[tuple[Candidate, Timing]] = []
    entries: list[StudentEntry] = []
    measured = from_cache = attempted = 0
    stopped: str | None = None
    bench: Any = None
    total = len(remaining)
    while remaining:
        cand = _next(remaining, timed, query)
        remaining.remove(cand)
        if progress:
            progress(total - len(remaining) - 1, total, cand.name)
        reason = None if query.measure_all else _skip_reason(cand, over)
        if reason:
            entries.append(entry_for(cand, "skipped", query, reason=reason))
            continue
        if query.limit and attempted >= query.limit:
            stopped = stopped or f"--limit {query.limit}"
            entries.append(entry_for(cand, "unmeasured", query, reason="beyond --limit"))
            continue
        timing = cache.timing(cand.name, query)
        if timing is not None and not timing.complete and not _over_probe(timing, query):
            timing = None  # an early-stopped estimate says nothing about a larger budget
        cached = timing is not None
        if timing is None and not stopped:
            if query.max_sweep_s is not None and _clock() - started > query.max_sweep_s:
                stopped = f"--max-time {query.max_sweep_s:g} s"
            else:
                bench = bench or _bench(query)
                try:
                    timing = bench.measure(
                        cand.name, query, threads, PROBE_FACTOR * query.max_latency_ms
                    )
                except KeyboardInterrupt:
                    stopped = "interrupted"
                else:
                    cache.save_timing(timing, query)
        if timing is None:
            entries.append(entry_for(cand, "unmeasured", query, reason=f"stopped: {stopped}"))
            continue
        attempted += 1
        measured += not cached
        from_cache += cached
        entries.append(entry_for(cand, None, query, timing=timing, cached=cached))
        if timing.ok:
            timed.append((cand, timing))
            if _over(timing, query):
                over.append((cand, timing))
    if progress:
        progress(total, total, "done")
    notes = list(pool.notes)
    if query.batch != 1 or query.device != "cpu":
        notes.append(
            "`distill export --max-latency-ms` gates batch-1 latency on the CPU provider; "
            f"this budget (batch {query.batch}, {query.device}) is not what it checks"
        )
    if stopped:
        notes.append(f"sweep stopped ({stopped}): not-measured candidates are listed as such")
    return StudentSearch(
        query=query,
        teacher_params=pool.teacher_params,
        entries=rank(entries, accuracy),
        duplicates=pool.duplicates,
        ranking=accuracy.describe() if accuracy else "capacity: GFLOPs, then parameters",
        environment={**machine, "cpu_count": os.cpu_count()},
        seconds=_clock() - started,
        measured=measured,
        from_cache=from_cache,
        stopped=stopped,
        notes=notes,
    )


def _over_probe(timing: Timing, q: StudentQuery) -> bool:
    stat = timing.p50_ms
    return stat is not None and stat > PROBE_FACTOR * q.max_latency_ms


def _bench(q: StudentQuery) -> Any:
    """The timing module, imported only when something must be timed (torch takes seconds)."""
    from distill_cli.students import measure as student_bench

    if q.device == "cuda" and not student_bench.cuda_ready():
        raise DistillError(
            "--device cuda needs ONNX Runtime's CUDA provider and a GPU",
            "--device",
            "install onnxruntime-gpu on a machine with a GPU, or use --device cpu",
        )
    return student_bench


def search_students(
    teacher: str,
    max_latency_ms: float,
    *,
    progress: Progress | None = None,
    write_recipe: str | Path | None = None,
    data: str | Path | None = None,
    teacher_checkpoint: str | Path | None = None,
    student: str | None = None,
    recipe_name: str | None = None,
    force: bool = False,
    **options: Any,
) -> StudentSearch:
    """`api.students` (see there). Lives here so the CLI can call it without importing the
    training engine: a fully cached query then never imports torch and answers in well under
    a second."""
    from distill_cli.students.recipe import NoFit, data_section
    from distill_cli.students.recipe import write_recipe as write_file

    fields = set(StudentQuery.__dataclass_fields__) - {"teacher", "max_latency_ms"}
    unknown = set(options) - fields
    if unknown:
        raise TypeError(f"unknown students options: {sorted(unknown)}")
    for key in ("families", "candidates"):
        if isinstance(options.get(key), str):
            options[key] = (options[key],)
        elif options.get(key) is not None:
            options[key] = tuple(options[key])
    for key in ("accuracy_csv", "cache_dir"):
        if options.get(key) is not None:
            options[key] = Path(options[key])
    if write_recipe is not None:  # usage errors before minutes of timing
        if data is None:
            hint = "synthetic, fashion_mnist or an image folder"
            raise DistillError("--write-recipe needs --data", "--data", hint)
        data_section(str(data))
        if not force:  # refused before minutes of timing, not after
            refuse_existing(Path(write_recipe), "--force")
    query = StudentQuery(teacher=teacher, max_latency_ms=float(max_latency_ms), **options)
    search = find_students(query, progress=progress)
    if write_recipe is None:
        return search
    try:
        path = write_file(
            search,
            Path(write_recipe),
            data=str(data),
            teacher_checkpoint=Path(teacher_checkpoint) if teacher_checkpoint else None,
            student=student,
            name=recipe_name,
            force=force,
        )
    except RunFailed as exc:  # nothing (or not that student) fits: the timings still count
        raise NoFit(exc, search) from exc
    return replace(search, recipe_path=path)
