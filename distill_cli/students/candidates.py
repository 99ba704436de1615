"""The candidates of `distill students`: the teacher's students, sized up and de-duplicated.

Built once per query and timm version, then cached (`cache.py`): a fully cached query reads the
list without importing timm. The sizing itself goes through `model_search` (timm on the meta
device) and reports progress in phase "candidates", saving to its cache as it goes.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from distill_cli.errors import DistillError, did_you_mean
from distill_cli.students.cache import Cache, read, write
from distill_cli.students.rank import family_of
from distill_cli.students.types import Candidate, Duplicate, StudentQuery

#: Near-identical: parameters within 3% and GFLOPs within 10% (same family).
NEAR_PARAMS, NEAR_GFLOPS = 0.03, 0.10
_VENDOR_PREFIXES = ("tf_", "tv_", "gluon_", "legacy_", "ig_", "ssl_", "swsl_")
#: progress(phase, done, total, name): phase "candidates" while the list is sized up (once per
#: timm version, then cached), "timing" while candidates are exported and timed.
Progress = Callable[[str, int, int, str], None]
#: timm's unit-test networks (test_resnet, test_vit, ...): tiny by design, never a real student.
TEST_PREFIX = "test_"


# --- candidates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pool:
    """The teacher's size and its candidate students, with what was left out and why."""

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


def _size_up(q: StudentQuery, progress: Progress | None) -> Pool:
    """Sized-up students of the teacher (timm on the meta device: slow once, then cached).

    Parameters first for every match (cheap), GFLOPs then only for the students: counting FLOPs
    runs a forward pass, and most of timm's registry is larger than any sensible student. Both
    passes report progress and save to the cache as they go, so an interrupted first call is not
    lost. timm's unit-test networks (`test_*`) are left out unless named by the pattern or
    `candidates`, or `include_test_models`.
    """
    import timm

    from distill_cli.students.model_search import find_models, judge, size_models

    def step(what: str) -> Callable[[int, int], None] | None:
        if progress is None:
            return None
        return lambda done, total: progress("candidates", done, total, what)

    notes: list[str] = []
    if not timm.is_model(q.teacher):
        hint = did_you_mean(q.teacher, timm.list_models()) or "see `distill models`"
        raise DistillError(f"unknown timm model {q.teacher!r}", "TEACHER", hint)
    base, _, tag = q.teacher.partition(".")
    tags = [t.partition(".")[2] for t in timm.list_pretrained(f"{base}.*")]
    if tag and tag not in tags:  # timm.is_model ignores the tag; the written recipe fetched it
        raise DistillError(
            f"timm has no pretrained weights {q.teacher!r}",
            "TEACHER",
            f"its tags: {', '.join(tags[:8])}" if tags else f"pass {base} without a tag",
        )
    teacher = size_models([q.teacher])[q.teacher]
    if q.candidates:
        for name in q.candidates:
            if any(c in name for c in "*?["):  # was "unknown model", suggesting unrelated names
                raise DistillError(
                    f"--candidates takes exact timm names; {name!r} is a pattern",
                    "--candidates",
                    f"pass it as --pattern '{name}', or list the names (distill models '{name}')",
                )
            if not timm.is_model(name):
                hint = did_you_mean(name, timm.list_models()) or "see `distill models`"
                raise DistillError(f"unknown timm model {name!r}", "--candidates", hint)
        names = list(dict.fromkeys(q.candidates))
    else:
        search = find_models(
            q.pattern,
            teacher=q.teacher,
            pretrained_only=q.pretrained_only,
            limit=None,
            max_ratio=q.max_ratio,
            progress=step("parameters of every match"),
        )
        names = [e.name for e in search.entries if e.student]
        if not (q.include_test_models or q.pattern.startswith(TEST_PREFIX)):
            tests = [n for n in names if n.startswith(TEST_PREFIX)]
            if tests:
                notes.append(
                    f"{len(tests)} of timm's unit-test networks left out ({', '.join(tests[:3])}"
                    f"{', ...' if len(tests) > 3 else ''}): --include-test-models keeps them"
                )
            names = [n for n in names if not n.startswith(TEST_PREFIX)]
        if q.families:
            names = [n for n in names if any(fnmatch.fnmatch(family_of(n), f) for f in q.families)]
    sized = size_models(names, flops=True, progress=step("GFLOPs of the students"))
    students = []
    for name in names:
        entry = judge(sized[name], teacher, q.max_ratio)
        if entry.params is None:
            notes.append(f"{name}: could not be built on the meta device; not a candidate")
        elif entry.student is False:
            notes.append(f"{name}: more than {q.max_ratio:g}x the teacher's parameters")
        else:
            students.append(entry)
    cands = [_candidate(e, q.input_size) for e in students]
    dups: list[Duplicate] = []
    if q.dedup and not q.candidates:
        cands, dups = deduplicate(cands)
    return Pool(teacher.params, cands, dups, notes)


def prepare(q: StudentQuery, cache: Cache, progress: Progress | None) -> Pool:
    """The candidate list of `q`, from the cache when this query was prepared before."""
    key = cache.pool_key(q)
    path = cache.path("pools", key)
    value = read(path, key)
    if isinstance(value, dict):
        return Pool(
            value["teacher_params"],
            [Candidate(**c) for c in value["candidates"]],
            [Duplicate(**d) for d in value["duplicates"]],
            list(value["notes"]),
        )
    pool = _size_up(q, progress)
    value = {
        "teacher_params": pool.teacher_params,
        "candidates": [c.__dict__ for c in pool.candidates],
        "duplicates": [d.__dict__ for d in pool.duplicates],
        "notes": pool.notes,
    }
    write(path, key, value)
    return pool
