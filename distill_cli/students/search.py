"""Which timm student fits my latency budget? The logic behind `distill students`.

1. **Candidates** (``candidates.py``) are the teacher's students as `distill models --teacher`
   finds them (``model_search``: built on the meta device, cached per timm version), narrowed
   by pattern, family or an explicit list, without timm's unit-test networks (``test_*``), and
   de-duplicated: within a family, architectures with near-equal parameters and GFLOPs (vendor
   ports such as ``tf_efficientnet_b0``, resolution variants such as ``*_384``) are timed once.
2. **Order**: a budget-guided search. The first candidate timed is the cheapest; after that the
   next one is the candidate whose latency, predicted from its GFLOPs and the ms-per-GFLOP of
   what was timed so far (its family's when known), is closest to the budget. The frontier (the
   largest models that still fit) is what the ranking needs, and it is found first.
3. **Skips**, each with its reason: a candidate with at least the GFLOPs and parameters of a
   family member already over the budget, or with `SKIP_FACTOR` times the GFLOPs of any model
   over the budget, is not exported (``measure_all`` turns this off and lifts ``limit``).
4. **Timing** (``student_bench``): `distill export`'s exporter, variants and protocol. Results
   are cached on disk per (architecture, input size, classes, device, threads, precision, batch,
   exporter, opset, protocol, package versions, CPU model), so a repeated query is instant; the
   candidate list itself is cached too, so a fully cached query never imports torch or timm.
5. **Ranking**: candidates within the budget first, by expected quality: ImageNet top-1 from an
   accuracy table when one is available (timm's ``results-imagenet.csv``; timm's wheel ships
   none, so only when the user points at one or it is found locally), else capacity (GFLOPs,
   then parameters). Then those over the budget (fastest first), skipped, not measured, failed.
6. **Limits**: ``limit`` candidates timed, ``time_budget_s`` seconds of timing (counted from
   when the candidate list is ready). What they leave untimed is counted in the answer; an
   answer with nothing timed is its own error (``outcome``), not "nothing fits".
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from distill_cli.errors import EXIT_NOT_MEASURED, DistillError, RunFailed
from distill_cli.students.cache import Cache, cache_root, cpu_model, package_versions
from distill_cli.students.candidates import Progress, prepare
from distill_cli.students.rank import Accuracy, entry_for, load_accuracy, rank
from distill_cli.students.types import (
    PROBE_FACTOR,
    Candidate,
    StudentEntry,
    StudentQuery,
    StudentSearch,
    Timing,
)

if TYPE_CHECKING:
    from distill_cli.students.recipe import RecipeAsk

#: A model this many times the GFLOPs of one already over the budget is not exported.
SKIP_FACTOR = 4.0

_clock = time.perf_counter  # one name to patch in tests


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
    """Rank the teacher's students by expected quality within the latency budget.

    The candidate list is prepared first (cached); `time_budget_s` starts after it, so a first
    call that sizes timm's registry still times candidates. Candidates beyond `limit` or the
    time budget are listed as unmeasured and counted (`StudentSearch.untimed`): the answer is
    final only when none is left (`measure_all` times every one).
    """
    query.validate()
    prepared = _clock()
    threads = query.threads
    machine = {"cpu": cpu_model(), "threads": threads, "versions": package_versions()}
    cache = Cache(cache_root(query), machine)
    accuracy = accuracy if accuracy is not None else load_accuracy(query.accuracy_csv)
    pool = prepare(query, cache, progress)
    if not pool.candidates:
        left_out = [n for n in pool.notes if "--include-test-models" in n]
        raise DistillError(
            f"no candidate students of {query.teacher} match"
            + (f" ({left_out[0]})" if left_out else ""),
            "--pattern / --family / --candidates",
            f"widen the pattern, raise --max-ratio ({query.max_ratio:g}) or pass --all-weights",
        )
    started = _clock()
    remaining = list(pool.candidates)
    timed: list[tuple[Candidate, Timing]] = []
    over: list[tuple[Candidate, Timing]] = []
    entries: list[StudentEntry] = []
    measured = from_cache = attempted = 0
    stopped: str | None = None
    bench: Any = None
    total = len(remaining)
    limit = query.sweep_limit
    while remaining:
        cand = _next(remaining, timed, query)
        remaining.remove(cand)
        if progress:
            progress("timing", total - len(remaining) - 1, total, cand.name)
        reason = None if query.measure_all else _skip_reason(cand, over)
        if reason:
            entries.append(entry_for(cand, "skipped", query, reason=reason))
            continue
        if limit and attempted >= limit:
            stopped = stopped or f"--limit {limit}"
            entries.append(entry_for(cand, "unmeasured", query, reason="beyond --limit"))
            continue
        timing = cache.timing(cand.name, query)
        if timing is not None and not timing.complete and not _over_probe(timing, query):
            timing = None  # an early-stopped estimate says nothing about a larger budget
        cached = timing is not None
        if timing is None and not stopped:
            budget = query.time_budget_s
            if budget is not None and _clock() - started > budget:
                stopped = f"--time-budget {budget:g} s"
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
        progress("timing", total, total, "done")
    notes = list(pool.notes)
    if not query.export_gate_checks_it:
        notes.append(
            "`distill export --max-latency-ms` gates batch-1 latency on the CPU provider; "
            f"this budget (batch {query.batch}, {query.device}) is not what it checks"
        )
    untimed = sum(e.status == "unmeasured" for e in entries)
    if untimed:
        notes.append(
            f"sweep stopped ({stopped}): {untimed} of {total} candidates untimed, so the answer "
            "may change; a rerun reuses every cached timing and continues, --measure-all times "
            "every candidate"
        )
    return StudentSearch(
        query=query,
        teacher_params=pool.teacher_params,
        entries=rank(entries, accuracy),
        duplicates=pool.duplicates,
        ranking=accuracy.describe() if accuracy else "capacity: GFLOPs, then parameters",
        environment={**machine, "cpu_count": os.cpu_count()},
        seconds=_clock() - prepared,
        measured=measured,
        from_cache=from_cache,
        stopped=stopped,
        notes=notes,
        prepare_seconds=started - prepared,
    )


def outcome(search: StudentSearch) -> DistillError | None:
    """The error a search without an answer ends with, or None when a candidate fits.

    Nothing timed at all (every candidate unmeasured or skipped) is not "nothing fits": it
    says so, with its own exit code (EXIT_NOT_MEASURED), so a CI job can tell "give it more
    time" from "no student is fast enough".
    """
    if search.best is not None:
        return None
    q = search.query
    timed = [e for e in search.entries if e.status in ("fits", "over")]
    if not timed and search.failed and not search.untimed:
        first = search.failed[0]
        return DistillError(  # more time cannot help: no candidate builds and exports here
            f"no candidate could be exported at {q.input_size} px ({len(search.failed)} failed; "
            f"{first.name}: {first.reason})",
            "--candidates" if q.candidates else q.teacher,
            "pick candidates that run at this --input-size (the table's reasons), "
            "or change --input-size",
        )
    if not timed:
        failed = len(search.failed)
        return DistillError(
            f"nothing was measured: {search.untimed} candidates untimed"
            + (f", {failed} failed to export" if failed else "")
            + (f" ({search.stopped})" if search.stopped else ""),
            q.teacher,
            "raise --time-budget or --limit, or pass --measure-all; cached timings are kept",
            code=EXIT_NOT_MEASURED,
        )
    return RunFailed(
        f"no candidate fits {q.max_latency_ms:g} ms ({q.latency_stat}, batch {q.batch}, "
        f"{q.precision}); {len(timed)} timed"
        + (f", {search.untimed} untimed" if search.untimed else ""),
        q.teacher,
        "raise --max-latency-ms, lower --input-size, or try --precision int8",
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
    query: StudentQuery, *, progress: Progress | None = None, recipe: RecipeAsk | None = None
) -> StudentSearch:
    """`api.students` (see there): the search, then the recipe when one is asked for."""
    from distill_cli.students.recipe import NoFit, write_recipe

    if recipe is not None:
        recipe.check(query.teacher)  # usage errors before minutes of timing
    search = find_students(query, progress=progress)
    if recipe is None:
        return search
    try:
        path = write_recipe(search, recipe)
    except RunFailed as exc:  # nothing (or not that student) fits: the timings still count
        raise NoFit(outcome(search) or exc, search) from exc
    return replace(search, recipe_path=path)
