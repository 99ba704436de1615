"""`distill models`: sizes must match real models, and the listing must never need weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
from rich.console import Console

from distill_cli.cli.console_students import models_table
from distill_cli.errors import DistillError
from distill_cli.students import model_search
from distill_cli.students.model_search import find_models


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DISTILL_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_params_and_input_size_match_a_real_model() -> None:
    search = find_models("test_resnet")
    (entry,) = search.entries
    real = timm.create_model("test_resnet")
    assert entry.params == sum(p.numel() for p in real.parameters())
    assert entry.input_size == tuple(real.pretrained_cfg["input_size"][-2:])
    assert entry.pretrained is True
    assert entry.ratio is None and entry.student is None


def test_teacher_marks_students_by_max_ratio() -> None:
    search = find_models("test_*", teacher="test_maxvit", limit=None)
    budget = 0.5 * search.teacher.params
    kinds = {e.student for e in search.entries}
    assert kinds == {True, False}
    for e in search.entries:
        assert e.student == (e.params <= budget)
        assert e.ratio == pytest.approx(search.teacher.params / e.params)
    flags = [e.student for e in search.entries]
    assert flags == sorted(flags, reverse=True)  # students first
    students = [e.params for e in search.entries if e.student]
    assert students == sorted(students, reverse=True)  # biggest student first

    loose = find_models("test_*", teacher="test_maxvit", limit=None, max_ratio=1.0)
    assert all(e.student for e in loose.entries)


def test_unknown_teacher_suggests_a_name() -> None:
    with pytest.raises(DistillError) as info:
        find_models("test_*", teacher="resnet5O")
    assert info.value.where == "--teacher"
    assert "did you mean" in info.value.hint and "resnet50" in info.value.hint


def test_no_match_is_an_error() -> None:
    with pytest.raises(DistillError) as info:
        find_models("zzqqxx*")
    assert info.value.where == "PATTERN"
    assert "'zzqqxx*'" in str(info.value)
    assert info.value.hint


def test_limit_cuts_before_building_and_reports_total() -> None:
    search = find_models("test_*", limit=3)
    assert len(search.entries) == 3
    assert search.total_matches == len(timm.list_models("test_*"))
    assert search.truncated
    assert [e.name for e in search.entries] == sorted(timm.list_models("test_*"))[:3]
    assert search.to_dict()["shown"] == 3
    json.dumps(search.to_dict())


def test_bare_word_is_a_substring_search() -> None:
    search = find_models("resne", limit=3)
    assert search.total_matches > 50
    assert all("resne" in e.name for e in search.entries)


def test_pretrained_only_lists_architectures() -> None:
    search = find_models("test_vit*", pretrained_only=True, limit=None)
    names = [e.name for e in search.entries]
    assert names == ["test_vit", "test_vit2", "test_vit3"]
    assert all(e.pretrained for e in search.entries)


def test_cache_is_written_and_reused(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = find_models("test_vit*", flops=True, limit=None)
    path = cache_dir / f"models-{timm.__version__}.json"
    assert path.is_file()
    assert all(e.gflops and e.gflops > 0 for e in first.entries)

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("should have come from the cache")

    monkeypatch.setattr(model_search.timm, "create_model", boom)
    second = find_models("test_vit*", flops=True, limit=None)
    assert second.entries == first.entries


def test_corrupt_cache_is_ignored(cache_dir: Path) -> None:
    (cache_dir / f"models-{timm.__version__}.json").write_text("{not json")
    (entry,) = find_models("test_vit").entries
    assert entry.params is not None


def test_unbuildable_model_gets_no_params(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("needs arguments")

    monkeypatch.setattr(model_search.timm, "create_model", boom)
    (entry,) = find_models("test_vit", teacher="test_vit").entries
    assert entry.params is None and entry.student is None


def test_table_renders() -> None:
    search = find_models("test_*", teacher="test_maxvit", limit=4, flops=True)
    console = Console(record=True, width=120)
    console.print(models_table(search))
    text = console.export_text()
    for e in search.entries:
        assert e.name in text
    assert "✓" in text and "GFLOPs" in text and "student?" in text
    assert "teacher test_maxvit" in text and "1.1 M" in text
    assert f"showing 4 of {search.total_matches} matches" in text
