"""The Python API: typed results, keyword overrides, and the shipped example end to end."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
import yaml

from distill_cli import api
from distill_cli.errors import DistillError
from distill_cli.recipe import load_recipe
from distill_cli.results import ModelResult, RunResult
from tests.conftest import teacher_body, write_recipe

ROOT = Path(__file__).resolve().parents[1]


def test_keywords_override_recipe_fields_and_the_result_is_typed(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, "sup", teacher_body(tmp_path / "runs", epochs=1))
    result = api.train(recipe, ["schedule.batch_size=16"], optim__lr=1e-3, name="renamed")
    assert isinstance(result, RunResult) and isinstance(result.student, ModelResult)
    assert result.name == "renamed" and result.run_dir == tmp_path / "runs" / "renamed"
    saved = yaml.safe_load((result.run_dir / "recipe.yaml").read_text())
    assert saved["optim"]["lr"] == 1e-3 and saved["schedule"]["batch_size"] == 16
    assert result.steps == 128 // 16 and result.teacher is None
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert result.to_dict() == summary and result.student.top1 == summary["student"]["top1"]
    assert RunResult.load(result.run_dir) == result  # the folder is the source of truth


def test_overrides_apply_to_a_recipe_object_without_changing_it(tmp_path: Path) -> None:
    recipe = load_recipe(write_recipe(tmp_path, "sup", teacher_body(tmp_path / "runs")))
    plan = api.plan(recipe, schedule__epochs=5)
    assert plan["epochs"] == 5 and recipe.schedule.epochs == 3
    with pytest.raises(DistillError, match=r"optim\.lrr: unknown key; did you mean 'lr'"):
        api.plan(recipe, optim__lrr=1.0)


def test_the_python_api_example_runs_end_to_end(tmp_path: Path) -> None:
    example = runpy.run_path(str(ROOT / "examples" / "python_api.py"))
    example["main"](tmp_path)
    for run in ("teacher", "fm", "fm-independent"):
        assert (tmp_path / run / "summary.json").is_file()
    assert (tmp_path / "compare.png").is_file()
    assert (tmp_path / "fm" / "export" / "model.onnx").is_file()
    report = (tmp_path / "fm" / "report.md").read_text()
    assert "report_latency.png" in report and "## Export" in report
