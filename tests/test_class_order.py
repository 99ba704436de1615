"""Class names are matched between teacher and data (issue 12, item 1).

A teacher trained on Fashion-MNIST's IDX files (classes in the dataset's order) and distilled on
an image folder of the same images (class folders sorted alphabetically) must score the same on
both: the folder's labels are renumbered to the teacher's order, and the student's checkpoint
names its outputs in that order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from distill_cli import api
from distill_cli.data import build_data
from distill_cli.data.sources import FASHION_MNIST_CLASSES
from distill_cli.errors import DistillError
from distill_cli.recipe.document import load_recipe
from distill_cli.recipe.sections import FASHION_MNIST_ROOT
from tests.conftest import write_recipe

pytestmark = pytest.mark.skipif(
    not FASHION_MNIST_ROOT.is_dir(), reason="needs the Fashion-MNIST IDX files"
)


def _folder_name(cls: str) -> str:
    return cls.replace("/", "_")  # "T-shirt/top" cannot be a folder name


@pytest.fixture(scope="module")
def fm_teacher(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A small teacher trained on an IDX subset, and its validation images as a JPEG folder."""
    folder = tmp_path_factory.mktemp("class_order")
    body = {
        "model": {"model": "test_resnet", "in_chans": 1, "input_size": 28},
        "data": {"source": "fashion_mnist", "train_limit": 3000, "val_limit": 400},
        "augment": {"crop_scale": [0.6, 1.0]},
        "method": {"name": "supervised"},
        "optim": {"lr": 3e-3},
        "schedule": {"epochs": 1, "batch_size": 64, "log_every": 20},
        "output": {"dir": str(folder / "runs")},
    }
    recipe = write_recipe(folder, "fm_teacher", body)
    result = api.run(recipe)
    # the very images the teacher was scored on
    val = build_data(**load_recipe(recipe).data.data_args()).val
    assert val.images is not None and val.labels is not None
    images = folder / "jpeg"
    for split in ("train", "val"):
        for i, (pixels, label) in enumerate(zip(val.images, val.labels.tolist(), strict=True)):
            target = images / split / _folder_name(FASHION_MNIST_CLASSES[label])
            target.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[0].numpy(), mode="L").save(target / f"{i}.jpg", quality=100)
    return {
        "folder": folder,
        "top1": result.student.top1,
        "ckpt": folder / "runs" / "fm_teacher" / "checkpoints" / "best.safetensors",
        "images": images,
    }


def _distill_body(fm_teacher: dict[str, object], class_map: dict[str, str] | None) -> dict:
    data: dict[str, object] = {
        "source": "image_folder",
        "root": str(fm_teacher["images"]),
        "load_size": 28,
        "workers": 0,
    }
    if class_map is not None:
        data["class_map"] = class_map
    return {
        "teacher": {"model": "test_resnet", "in_chans": 1, "checkpoint": str(fm_teacher["ckpt"])},
        "student": {"model": "test_efficientnet", "in_chans": 1, "input_size": 28},
        "data": data,
        "method": {"name": "function_matching"},
        "schedule": {"steps": 1, "batch_size": 32},
        "output": {"dir": str(Path(str(fm_teacher["folder"])) / "runs")},
    }


def test_teacher_scores_the_same_on_the_folder_as_on_the_idx_files(fm_teacher: dict) -> None:
    idx_top1 = fm_teacher["top1"]
    assert idx_top1 > 50, "the teacher must be far better than the ~30% a permutation gives"
    folder = fm_teacher["folder"]
    body = _distill_body(fm_teacher, {"T-shirt_top": "T-shirt/top"})
    recipe = write_recipe(folder, "on_folder", body)
    result = api.run(recipe)
    # same images (JPEG at quality 100, decoded at the same size): the same score
    assert result.teacher.top1 == pytest.approx(idx_top1, abs=1.0)
    # the student's outputs follow the teacher's order, and its checkpoint says so
    meta = json.loads((result.run_dir / "checkpoints" / "best.json").read_text())
    assert meta["class_names"] == FASHION_MNIST_CLASSES
    teacher_meta = json.loads(Path(fm_teacher["ckpt"]).with_suffix(".json").read_text())
    assert teacher_meta["class_names"] == FASHION_MNIST_CLASSES


def test_different_class_names_are_one_error_unless_mapped(fm_teacher: dict) -> None:
    folder = fm_teacher["folder"]
    recipe = write_recipe(folder, "unmapped", _distill_body(fm_teacher, None))
    with pytest.raises(DistillError, match=r"teacher's classes and the data's differ.*T-shirt"):
        api.plan(recipe)
    bad = write_recipe(folder, "badmap", _distill_body(fm_teacher, {"Sweater": "T-shirt/top"}))
    with pytest.raises(DistillError, match="class_map names classes the data does not have"):
        api.plan(bad)
