"""Which timm models could be my student? The logic behind `distill models`.

Picking a student means comparing sizes across ~1300 timm architectures, and nobody wants to
download weights for that. Every model is built on the meta device, so counting parameters (and,
on request, forward FLOPs) allocates no memory and touches no network. Building is still ~0.1 s a
model, so results are cached per timm version (the registry only changes when timm does) and
the listing is capped by default; `limit=None` lists every match.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import get_pretrained_cfg, is_model_pretrained, split_model_name_tag

from distill_cli.errors import DistillError, did_you_mean
from distill_cli.files import atomic_write
from distill_cli.host import cache_dir
from distill_cli.models.create import count_flops

_WILDCARDS = "*?["
#: Sized-up models are written to the cache at least this often (a long first sizing).
SAVE_EVERY = 50


@dataclass(frozen=True)
class ModelEntry:
    """One timm model sized up; None fields mean 'could not tell', not zero."""

    name: str
    params: int | None
    input_size: tuple[int, int] | None
    gflops: float | None = None
    pretrained: bool = False
    ratio: float | None = None
    student: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_size"] = list(self.input_size) if self.input_size else None
        return out


@dataclass(frozen=True)
class ModelSearch:
    """A listing plus what it was measured against, so the table and JSON explain themselves."""

    pattern: str
    teacher: ModelEntry | None
    entries: list[ModelEntry]
    total_matches: int
    max_ratio: float
    flops: bool = False

    @property
    def truncated(self) -> bool:
        return len(self.entries) < self.total_matches

    def to_dict(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "teacher": self.teacher.to_dict() if self.teacher else None,
            "max_ratio": self.max_ratio,
            "total_matches": self.total_matches,
            "shown": len(self.entries),
            "entries": [e.to_dict() for e in self.entries],
        }


def cache_path() -> Path:
    """Keyed by timm version because a new timm may change architectures under the same name."""
    return cache_dir() / f"models-{timm.__version__}.json"


def _load_cache(path: Path) -> dict[str, dict[str, Any]]:
    # A cache is only an optimisation: anything unreadable is treated as empty, never an error.
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        return {}
    return {k: v for k, v in models.items() if isinstance(v, dict) and _valid_stats(v)}


def _valid_stats(stats: dict[str, Any]) -> bool:
    """A cached entry distill could have written: params an int, gflops a finite number (or
    None); anything else (a hand edit, NaN) is measured again."""
    params, gflops = stats.get("params"), stats.get("gflops")
    if params is not None and (isinstance(params, bool) or not isinstance(params, int)):
        return False
    if gflops is None:
        return True
    ok = not isinstance(gflops, bool) and isinstance(gflops, (int, float))
    return ok and math.isfinite(gflops) and gflops >= 0


def _save_cache(path: Path, models: dict[str, dict[str, Any]]) -> None:
    # Written to a temporary file and renamed (never through a symlink), so a killed listing
    # never leaves half a file; a cache that cannot be written only costs speed.
    merged = {**_load_cache(path), **models}
    with contextlib.suppress(DistillError):
        atomic_write(path, json.dumps({"timm": timm.__version__, "models": merged}, sort_keys=True))


def _input_size(name: str) -> tuple[int, int] | None:
    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError:
        return None
    if cfg is None or not cfg.input_size:
        return None
    return int(cfg.input_size[-2]), int(cfg.input_size[-1])


def _measure(name: str, flops: bool) -> dict[str, Any]:
    """Build on meta: shapes without storage, so even a giant ViT costs no memory."""
    out: dict[str, Any] = {"params": None}
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            model = timm.create_model(name)
        out["params"] = int(sum(p.numel() for p in model.parameters()))
    except Exception:  # one odd architecture must not sink the listing
        return {**out, "gflops": None} if flops else out
    if flops:
        out["gflops"] = _gflops(model)
    return out


def _gflops(model: torch.nn.Module) -> float | None:
    chans, h, w = model.pretrained_cfg.get("input_size", (3, 224, 224))
    flops = count_flops(model, (chans, h, w))
    return None if flops is None else flops / 1e9


def _entries(
    names: list[str], flops: bool, progress: Callable[[int, int], None] | None
) -> dict[str, ModelEntry]:
    path = cache_path()
    cache = _load_cache(path)
    fresh: dict[str, dict[str, Any]] = {}
    saved = 0
    out: dict[str, ModelEntry] = {}
    for i, name in enumerate(names, 1):
        if len(fresh) - saved >= SAVE_EVERY:  # an interrupted sizing keeps what it measured
            _save_cache(path, fresh)
            saved = len(fresh)
        stats = cache.get(name, {})
        if "params" not in stats or (flops and "gflops" not in stats):
            if stats.get("params", 0) is None:  # failed before: flops cannot work either
                stats = {**stats, "gflops": None}
            else:
                stats = {**stats, **_measure(name, flops)}
            fresh[name] = stats
        out[name] = ModelEntry(
            name=name,
            params=stats.get("params"),
            input_size=_input_size(name),
            gflops=stats.get("gflops") if flops else None,
            pretrained=is_model_pretrained(split_model_name_tag(name)[0]),
        )
        if progress:
            progress(i, len(names))
    if fresh:
        _save_cache(path, fresh)
    return out


def size_models(
    names: list[str], flops: bool = False, progress: Callable[[int, int], None] | None = None
) -> dict[str, ModelEntry]:
    """`names` sized up (parameters, and GFLOPs at timm's default input with `flops`), from the
    cache where it has them; `progress(done, total)` after each."""
    return _entries(list(names), flops, progress)


def judge(entry: ModelEntry, teacher: ModelEntry | None, max_ratio: float) -> ModelEntry:
    """`entry` with its size ratio to `teacher` and whether it counts as a student."""
    return _judge(entry, teacher, max_ratio)


def _match(pattern: str, pretrained_only: bool) -> list[str]:
    # Tagged names ('resnet50.a1_in1k') only exist among pretrained cfgs; list architectures.
    def archs(filt: str) -> list[str]:
        if pretrained_only or "." in filt:
            tagged = timm.list_models(filt, pretrained=True)
            return sorted({split_model_name_tag(n)[0] for n in tagged})
        return sorted(timm.list_models(filt))

    names = archs(pattern)
    if not names and not any(c in pattern for c in _WILDCARDS):
        names = archs(f"*{pattern}*")  # people type 'mobilenet', not 'mobilenet*'
    return names


def find_models(
    pattern: str = "*",
    *,
    teacher: str | None = None,
    pretrained_only: bool = False,
    limit: int | None = 50,
    flops: bool = False,
    max_ratio: float = 0.5,
    progress: Callable[[int, int], None] | None = None,
) -> ModelSearch:
    """List timm models matching `pattern`, sized up against `teacher` when one is given.

    `limit` (None or 0: all) cuts the name-sorted matches before anything is built, because
    building is the slow part. With a teacher, students come first, biggest first: the largest
    model still under the budget is usually the strongest candidate. Non-students follow
    smallest first (nearest to qualifying), then models that could not be measured.
    """
    pattern = pattern or "*"
    if teacher is not None and not timm.is_model(teacher):
        hint = did_you_mean(teacher, timm.list_models()) or "see `distill models`"
        raise DistillError(f"unknown timm model {teacher!r}", "--teacher", hint)
    names = _match(pattern, pretrained_only)
    if not names:
        hint = did_you_mean(pattern.strip(_WILDCARDS), timm.list_models())
        if pretrained_only and _match(pattern, False):
            hint = "matches exist, but none has pretrained weights; drop --pretrained"
        hint = hint or "try a wildcard, e.g. 'resnet*'"
        raise DistillError(f"no timm model matches {pattern!r}", "PATTERN", hint)
    judge = _entries([teacher], flops, None)[teacher] if teacher is not None else None
    measured = _entries(names[:limit] if limit and limit > 0 else names, flops, progress)
    entries = [_judge(e, judge, max_ratio) for e in measured.values()]
    if judge is not None:
        entries.sort(key=_student_order)
    return ModelSearch(pattern, judge, entries, len(names), max_ratio, flops)


def _judge(entry: ModelEntry, teacher: ModelEntry | None, max_ratio: float) -> ModelEntry:
    if teacher is None or teacher.params is None or not entry.params:
        return entry
    student = entry.params <= max_ratio * teacher.params
    return replace(entry, ratio=teacher.params / entry.params, student=student)


def _student_order(e: ModelEntry) -> tuple[int, int, str]:
    if e.params is None or e.student is None:
        return (2, 0, e.name)
    return (0, -e.params, e.name) if e.student else (1, e.params, e.name)
