"""What the recipe alone says a method cannot run is refused before the data, the weights or
any training: stage_by_stage with stage counts that differ and no `stage_map` (or an ensemble
teacher, or a schedule that is not its phases' length), early-stopped KD stopping after the
last epoch, fixed teacher targets on streamed data, a labelled method on unlabeled images.

Each was refused, but late: after the scan of the data and the teacher's load in `distill run`,
at the first epoch (with the run folder written) for fixed targets on shards, and in
`benchmarks/fmnist_methods.py` as a failed row after the teacher had trained. The data here is
a folder that does not exist: a refusal that reads it first fails on it instead.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from distill_cli import api
from distill_cli.errors import DistillError
from distill_cli.recipe.document import load_recipe
from tests.conftest import write_recipe

ROOT = Path(__file__).resolve().parents[1]


def _body(tmp_path: Path, method: dict[str, Any], **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "teacher": {"model": "test_convnext", "input_size": 32, "num_classes": 4},
        "student": {"model": "test_resnet", "input_size": 32},
        "data": {"source": "image_folder", "root": str(tmp_path / "nowhere")},
        "method": method,
        "schedule": {"epochs": 2, "batch_size": 8},
        "output": {"dir": str(tmp_path / "runs")},
    }
    return {**body, **over}


CASES = {
    "stage counts": (
        {"name": "stage_by_stage"},
        {},
        "stage counts differ: student 5, teacher 4",
        "method.stage_map",
    ),
    "stage map": (
        {"name": "stage_by_stage", "stage_map": [[0, 0], [4, 4]]},
        {},
        "stage_map [[0, 0], [4, 4]] names a stage the models lack",
        "method.stage_map",
    ),
    "stage length": (
        {"name": "stage_by_stage", "stage_map": [[0, 0], [1, 1]]},
        {},
        "stage_by_stage trains 2 stages x 1 + 1 head epochs = 3 epochs, but the schedule has 2",
        "schedule.epochs",
    ),
    "stage ensemble": (
        {"name": "stage_by_stage", "stage_map": [[0, 0]]},
        {
            "teachers": [
                {"model": "test_convnext", "num_classes": 4},
                {"model": "test_resnet", "num_classes": 4},
            ]
        },
        "stage_by_stage mimics one teacher's stages; the teacher is an ensemble of 2",
        "teacher",
    ),
    "eskd stop": (
        {"name": "eskd", "kd_stop_epoch": 2},
        {},
        "method.kd_stop_epoch=2 but the run has 2 epochs",
        "method.kd_stop_epoch",
    ),
    "fixed on shards": (
        {"name": "function_matching", "teacher_targets": "fixed", "mixup": False},
        {"data": {"source": "shards", "root": "/nowhere", "train_dir": "t", "val_dir": "v"}},
        "precomputed teacher targets need the images in a fixed order",
        "method.teacher_targets",
    ),
    "labels without labels": (
        {"name": "kd"},
        {"data": {"source": "image_folder", "root": "/nowhere", "distill_dir": "/nowhere/u"}},
        "method 'kd' needs labels but data.distill_dir has none",
        "data.distill_dir",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_from_the_recipe_before_the_data_is_read(tmp_path: Path, case: str) -> None:
    method, over, what, where = CASES[case]
    body = _body(tmp_path, method, **over)
    if "teachers" in body:
        body["teacher"] = body.pop("teachers")
    recipe = write_recipe(tmp_path, "r", body)
    for call in (api.plan, api.run):  # --dry-run refuses what the run refuses, the same way
        with pytest.raises(DistillError) as info:
            call(recipe)
        assert str(info.value).startswith(what) and info.value.where == where, str(info.value)
    assert not (tmp_path / "runs").exists()


def test_a_benchmark_checks_each_row_before_its_teacher_trains(tmp_path: Path) -> None:
    """`tuning.check_recipe` (which fmnist_methods.py, patience.py and full_data_scales.py call
    for every row before training a teacher) refuses a stage_by_stage row for these models."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from tuning import check_recipe
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    recipe = ROOT / "recipes/methods/stage_by_stage.yaml"
    stages = load_recipe(recipe).method
    assert stages.name == "stage_by_stage"
    check_recipe(recipe, [])  # the shipped recipe maps its stages: accepted
    with pytest.raises(DistillError, match="stage counts differ: student 5, teacher 4"):
        check_recipe(recipe, ["method.stage_map=null", "teacher.model=test_convnext"])
