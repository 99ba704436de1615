"""Every recipe in recipes/ runs: its method, views and schedule, on tiny models and generated data.

The recipes name real models, datasets and teacher checkpoints; here those are swapped for timm's
tiny test models and synthetic images, and long schedules are shortened, so each recipe's method
settings are exercised end to end in a second or two.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from distill_cli import api
from distill_cli.recipe.document import load_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").rglob("*.yaml"))


def _tiny(raw: dict[str, Any], out: Path) -> dict[str, Any]:
    tiny_model = {"model": "test_resnet", "input_size": 32, "num_classes": 4}
    if "teacher" in raw:
        teachers = raw["teacher"] if isinstance(raw["teacher"], list) else [raw["teacher"]]
        tiny = [dict(tiny_model, input_size=32 + 8 * i) for i in range(len(teachers))]
        raw["teacher"] = tiny if isinstance(raw["teacher"], list) else tiny[0]
    key = "student" if "student" in raw else "model"
    raw[key] = dict(tiny_model)
    raw["data"] = {"source": "synthetic", "synthetic": {"num_classes": 4, "train_size": 64}}
    method = raw["method"]
    schedule = raw["schedule"]
    epochs = min(schedule.get("epochs") or 2, 3)
    if method["name"] == "stage_by_stage":
        stages = len(method.get("stage_map") or [None] * 5)
        epochs = stages * method.get("stage_epochs", 1) + method.get("head_epochs", 1)
    if method["name"] == "eskd":
        method["kd_stop_epoch"] = min(method["kd_stop_epoch"], epochs - 1)
    raw["schedule"] = {
        **schedule,
        "epochs": epochs,
        "steps": None,
        "batch_size": 16,
        "warmup_steps": 2,
        "warmup_fraction": None,
        "eval_every": 1,
        "evals": None if schedule.get("evals") is None else min(schedule["evals"], epochs),
        "save_epochs": [],
    }
    raw["output"] = {"dir": str(out)}
    return raw


def test_recipes_are_shipped() -> None:
    names = {p.relative_to(ROOT / "recipes").as_posix() for p in RECIPES}
    for expected in (
        "quickstart/teacher.yaml",
        "quickstart/distill.yaml",
        "methods/kd.yaml",
        "methods/eskd.yaml",
        "methods/stage_by_stage.yaml",
        "ablations/fixed_teacher.yaml",
        "ensemble.yaml",
    ):
        assert expected in names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.relative_to(ROOT / "recipes").as_posix())
def test_shipped_recipe_runs_on_tiny_models(path: Path, tmp_path: Path) -> None:
    load_recipe(path)  # valid as shipped
    raw = _tiny(yaml.safe_load(path.read_text()), tmp_path / "runs")
    recipe = tmp_path / path.name
    recipe.write_text(yaml.safe_dump(raw))
    summary = api.run(recipe)
    assert summary.steps == raw["schedule"]["epochs"] * (64 // 16)
    assert summary.student.top1 is not None
    assert (tmp_path / "runs" / raw["name"] / "checkpoints" / "best.safetensors").is_file()


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks").glob("*.yaml")), ids=lambda p: p.name)
def test_benchmark_recipes_validate(path: Path) -> None:
    assert load_recipe(path).method.name
