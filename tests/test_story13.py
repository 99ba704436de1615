"""A team's own teacher and data, end to end (story 13).

A teacher trained with timm's train.py is fed what that script trained it with (the `args` its
checkpoint holds, or the `args.yaml` beside it), and its outputs are matched to the data's
classes in the order timm's train.py numbers an image folder (natural order), so the distilled
student and its ONNX file name every output correctly.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import timm
import torch
import yaml
from PIL import Image

from distill_cli import api
from distill_cli.models.checkpoint import read_sidecar
from distill_cli.recipe.sections import ModelSpec
from tests.conftest import write_recipe

#: Class folders whose sorted order (upper case first, digits as text) is not timm's
CLASSES = ["Zebra", "ant", "cat10", "cat2"]
NATURAL = ["ant", "cat2", "cat10", "Zebra"]  # timm's natural_key order


def _timm_checkpoint(folder: Path, args: argparse.Namespace, embed: bool = True) -> Path:
    """What timm's train.py leaves in its output folder: model_best.pth.tar and args.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = timm.create_model(args.model, num_classes=args.num_classes)
    state = {"epoch": 3, "arch": args.model, "state_dict": model.state_dict(), "version": 2}
    if embed:
        state["args"] = args
    path = folder / "model_best.pth.tar"
    torch.save(state, path)
    (folder / "args.yaml").write_text(yaml.safe_dump(vars(args), default_flow_style=False))
    return path


def _args(**given: object) -> argparse.Namespace:
    base = dict(model="test_resnet", num_classes=4, img_size=None, input_size=None, mean=None)
    base.update(std=None, crop_pct=None, dataset="", class_map="", data_dir="data", in_chans=None)
    return argparse.Namespace(**{**base, **given})


def test_a_timm_train_py_teacher_is_fed_the_size_and_normalization_it_trained_with(
    tmp_path: Path,
) -> None:
    """`--img-size 48 --mean ... --std ... --crop-pct 0.8` were ignored: the teacher was fed
    timm's default 160 px and mean/std. From the checkpoint's own `args`, from args.yaml when
    the file holds none, and a JSON side file still wins."""
    args = _args(img_size=48, mean=[0.4, 0.4, 0.4], std=[0.2, 0.25, 0.3], crop_pct=0.8)
    embedded = _timm_checkpoint(tmp_path / "a", args)
    beside = _timm_checkpoint(tmp_path / "b", args, embed=False)
    for path in (embedded, beside):
        side = read_sidecar(path)
        assert side.input_size == (48, 48) and side.crop_pct == 0.8
        assert side.mean == (0.4, 0.4, 0.4) and side.std == (0.2, 0.25, 0.3)
        assert side.model == "test_resnet" and side.num_classes == 4
    # timm's [C, H, W] --input-size, a mean without std (timm took the model's std)
    other = _timm_checkpoint(tmp_path / "c", _args(input_size=[3, 40, 56], mean=[0.3] * 3))
    side = read_sidecar(other)
    assert side.input_size == (40, 56) and side.std == (0.5, 0.5, 0.5)
    # nothing given: timm's defaults, as distill's own (no fact invented)
    plain = read_sidecar(_timm_checkpoint(tmp_path / "d", _args()))
    assert plain.input_size is None and plain.mean is None and plain.crop_pct is None
    # a hand-written side file beside it says otherwise: it wins
    embedded.with_suffix(".json").write_text(json.dumps({"input_size": 32}))
    assert read_sidecar(embedded).input_size == (32, 32)
    # a file not named as timm's saver names them does not take a folder's args.yaml
    stray = tmp_path / "b" / "teacher.pth"
    torch.save(torch.load(beside, weights_only=False)["state_dict"], stray)
    assert read_sidecar(stray).input_size is None

    plan = api.plan(
        {
            "name": "timm-teacher",
            "teacher": {"model": "test_resnet", "checkpoint": str(beside)},
            "student": {"model": "test_efficientnet", "input_size": 24},
            "data": {"source": "synthetic", "synthetic": {"num_classes": 4, "train_size": 64}},
            "method": {"name": "function_matching"},
            "schedule": {"steps": 1, "batch_size": 16},
            "output": {"dir": str(tmp_path / "runs")},
        }
    )
    assert plan.teacher is not None and plan.teacher.input_size == (48, 48)
    assert plan.teacher.mean == (0.4, 0.4, 0.4) and plan.teacher.sources.input_size == "side file"
    # a recipe whose model differs from the arguments' is refused naming both
    with pytest.raises(api.DistillError, match="side file says it holds 'test_resnet'"):
        from distill_cli.models.feed import same_as_side_file

        same_as_side_file(ModelSpec(model="resnet18", checkpoint=beside), "teacher")


def _folder(root: Path) -> None:
    """Four classes, each a colour the teacher below tells apart."""
    colours = {"Zebra": (250, 250, 250), "ant": (200, 0, 0), "cat10": (0, 200, 0)}
    colours["cat2"] = (0, 0, 200)
    for split, count in (("train", 6), ("val", 3)):
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (30 + i, 24), colours[name]).save(root / split / name / f"{i}.png")


def test_a_timm_train_py_teacher_on_an_image_folder_keeps_timms_class_order(
    tmp_path: Path,
) -> None:
    """timm's train.py numbers a folder's classes in natural order (`ant, cat2, cat10, Zebra`),
    distill in sorted order (`Zebra, ant, cat10, cat2`): the student learnt output i of the
    teacher under the data's name i, and its ONNX file named every class wrongly. The run now
    takes the teacher's order, so the student's checkpoint (and so the export) names output i
    as timm numbered it; a `--class-map` file gives the names as written."""
    _folder(tmp_path / "data")
    ckpt = _timm_checkpoint(tmp_path / "timm", _args(img_size=32))
    body = {
        "teacher": {"model": "test_resnet", "checkpoint": str(ckpt), "check_accuracy": False},
        "student": {"model": "test_resnet", "input_size": 24},
        "data": {"source": "image_folder", "root": str(tmp_path / "data"), "workers": 0},
        "method": {"name": "function_matching"},
        "schedule": {"steps": 1, "batch_size": 8},
        "output": {"dir": str(tmp_path / "runs")},
    }
    result = api.run(write_recipe(tmp_path, "timm-order", body))
    best = Path(result.run_dir) / "checkpoints" / "best.safetensors"
    assert read_sidecar(best).class_names == NATURAL
    plan = api.plan(write_recipe(tmp_path, "timm-order-plan", body))
    assert plan.teacher is not None
    assert plan.teacher.sources.class_names == "data, in timm's train.py order"

    # with --class-map the file's lines are the order (here: the sorted one), not natural
    mapped = tmp_path / "classes.txt"
    mapped.write_text("\n".join(sorted(CLASSES)) + "\n")
    ckpt = _timm_checkpoint(tmp_path / "timm-map", _args(img_size=32, class_map=str(mapped)))
    assert read_sidecar(ckpt).class_names == sorted(CLASSES)
