"""The user's own teacher, loaded right or refused (issue 23, items 1-3).

- A checkpoint of a neighbouring architecture (resnet34 weights into resnet18) is refused with
  counts and names, however it was saved; `strict: false` loads what matches.
- What a checkpoint cannot say is a recipe key (`class_names`), the plan says where each fact
  came from, and a teacher near chance stops the run before training.
- One rule feeds a model everywhere: a teacher whose size comes from its side file is fed the
  same pixels by the run and by the export of the student (same top-1, same interpolation).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from rich.console import Console
from safetensors.torch import save_file

from distill_cli import api
from distill_cli.cli.console import summary_table
from distill_cli.errors import DistillError
from distill_cli.models.create import create_net
from distill_cli.models.weights import load_weights
from distill_cli.recipe.sections import ModelSpec
from tests.conftest import fm_body, write_recipe


def _resnet(name: str) -> torch.nn.Module:
    return timm.create_model(name, num_classes=4)  # no weights: the shapes are what matter


@pytest.fixture(scope="module")
def resnet34_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return _resnet("resnet34").state_dict()


def _saved_the_usual_ways(state: dict[str, torch.Tensor], folder: Path) -> list[Path]:
    paths = [folder / "w.safetensors", folder / "w.pth", folder / "sd.pt", folder / "ddp.pth"]
    save_file(state, str(paths[0]))
    torch.save(state, paths[1])
    torch.save({"state_dict": state, "epoch": 90}, paths[2])
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, paths[3])
    return paths


def test_a_neighbouring_architecture_is_refused_however_it_was_saved(
    tmp_path: Path, resnet34_state: dict[str, torch.Tensor]
) -> None:
    unexpected = len(set(resnet34_state) - set(_resnet("resnet18").state_dict()))
    assert unexpected > 0
    for path in _saved_the_usual_ways(resnet34_state, tmp_path):
        with pytest.raises(DistillError) as info:
            load_weights(_resnet("resnet18"), path)
        message = str(info.value)
        assert f"{unexpected} unexpected (layer" in message, (path.name, message)
        assert " missing" not in message and len(message.splitlines()) == 1
        # both models named: the one built and the one the keys and shapes are
        assert "the model resnet18:" in message and "set model: resnet34" in message


def test_strict_false_loads_the_matching_keys(
    tmp_path: Path, resnet34_state: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "w.safetensors"
    save_file(resnet34_state, str(path))
    with pytest.raises(DistillError, match="unexpected"):
        create_net(ModelSpec(model="resnet18", checkpoint=path, input_size=32), 4)
    net = create_net(ModelSpec(model="resnet18", checkpoint=path, input_size=32, strict=False), 4)
    assert torch.equal(net.module.conv1.weight, resnet34_state["conv1.weight"])
    assert torch.equal(net.module.fc.weight, resnet34_state["fc.weight"])


def test_missing_and_wrong_shape_keys_are_counted_and_named(tmp_path: Path) -> None:
    state = _resnet("resnet18").state_dict()
    state.pop("fc.bias")
    state["fc.weight"] = torch.zeros(7, 512)
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    # strict: false keeps the model's own head (a fine-tune on other classes) and says so
    report = load_weights(_resnet("resnet18"), path, strict=False)
    assert report.missing == ["fc.bias"] and report.mismatched == ["fc.weight"]
    with pytest.raises(DistillError) as info:
        load_weights(_resnet("resnet18"), path)
    assert "1 missing (fc.bias), 1 wrong-shape (fc.weight) keys" in str(info.value)
    # BatchNorm step counters, which some trainers do not save, are not an architecture
    state = {k: v for k, v in _resnet("resnet18").state_dict().items() if "num_batches" not in k}
    save_file(state, str(path))
    load_weights(_resnet("resnet18"), path)


def test_class_names_come_from_the_recipe_as_a_list_or_a_file(tmp_path: Path) -> None:
    names = ["cat", "dog", "fox", "owl"]
    assert ModelSpec(model="test_resnet", class_names=names).names() == names
    listed = tmp_path / "names.txt"
    listed.write_text("\n".join(names) + "\n")
    assert ModelSpec(model="test_resnet", class_names=listed).names() == names
    with pytest.raises(ValueError, match="class_names has 4 names for num_classes 3"):
        ModelSpec(model="test_resnet", class_names=names, num_classes=3)
    listed.write_text("cat\ncat\n")
    with pytest.raises(DistillError, match="distinct names"):
        ModelSpec(model="test_resnet", class_names=listed).names()


def _teacher_recipe(tmp_path: Path, ckpt: Path, name: str, **teacher: object) -> Path:
    body = fm_body(tmp_path / "runs", ckpt, epochs=1)
    body["teacher"] = {"model": "test_resnet", "checkpoint": str(ckpt), **teacher}
    body["schedule"] = {"steps": 1, "batch_size": 32}
    return write_recipe(tmp_path, name, body)


def test_the_plan_says_where_each_fact_came_from(tmp_path: Path, trained_teacher: Path) -> None:
    plan = api.plan(_teacher_recipe(tmp_path, trained_teacher, "plan"))
    teacher, student = plan.teacher, plan.student
    assert teacher.input_size == (32, 32)  # the side file's, not test_resnet's 160
    assert teacher.sources.num_classes == "side file"
    assert teacher.sources.class_names == "side file"
    assert teacher.sources.input_size == "side file"
    assert teacher.sources.mean_std == "side file"
    assert teacher.sources.interpolation.startswith("distill (bilinear)")
    assert teacher.interpolation == "bilinear"
    assert student.sources.input_size == "recipe"
    assert student.sources.mean_std == "timm default"
    assert student.sources.class_names == "teacher"
    names = [f"class_{i}" for i in range(4)]
    plan = api.plan(_teacher_recipe(tmp_path, trained_teacher, "named", class_names=names))
    assert plan.teacher.sources.class_names == "recipe"


def test_a_teacher_near_chance_stops_the_run_before_training(
    tmp_path: Path, trained_teacher: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the head's rows in another order than the data's labels: the recipe's names say so
    rolled = [f"class_{i}" for i in (1, 2, 3, 0)]
    recipe = _teacher_recipe(tmp_path, trained_teacher, "rolled", class_names=rolled)
    with pytest.raises(DistillError) as info:
        api.run(recipe)
    message = str(info.value)
    assert "below 1.5x chance (37.50% for 4 classes)" in message
    assert "class order" in message and "teacher.check_accuracy: false" in message
    assert "on 64 validation images" in message  # the whole (small) validation set
    assert not (tmp_path / "runs" / "rolled").exists()  # refused before the folder is written
    # a large validation set is scored on a fixed subset
    monkeypatch.setattr("distill_cli.train.teacher_check.CHECK_IMAGES", 16)
    with pytest.raises(DistillError, match="on 16 validation images"):
        api.run(recipe)
    result = api.run(recipe, teacher__check_accuracy=False)
    assert result.teacher is not None and result.teacher.top1 is not None
    assert result.teacher.top1 < 37.5
    # the right order passes the check
    right = [f"class_{i}" for i in range(4)]
    ok = api.run(_teacher_recipe(tmp_path, trained_teacher, "right", class_names=right))
    assert ok.teacher is not None and ok.teacher.top1 is not None and ok.teacher.top1 > 37.5
    # a plain state dict names no entry: nothing more in the summary or its table
    assert ok.teacher.weights is None
    assert "weights" not in json.loads((ok.run_dir / "summary.json").read_text())["teacher"]
    with Console(width=200, record=True) as console:
        console.print(summary_table(ok))
    assert "teacher weights" not in console.export_text()


def test_a_near_chance_teacher_says_which_weights_of_its_checkpoint_were_loaded(
    tmp_path: Path, trained_teacher: Path
) -> None:
    """timm's train.py --model-ema file: `state_dict` first (here a head in another class
    order, near chance), the good weights under `state_dict_ema`. The refusal says which
    entry was loaded and that checkpoint_key picks the other, and with it the check passes."""
    from safetensors.torch import load_file

    good = load_file(str(trained_teacher))
    bad = {**good, "fc.weight": good["fc.weight"].roll(1, 0), "fc.bias": good["fc.bias"].roll(1)}
    ckpt = tmp_path / "model_best.pth.tar"
    torch.save({"arch": "test_resnet", "state_dict": bad, "state_dict_ema": good}, ckpt)
    recipe = _teacher_recipe(tmp_path, ckpt, "ema", input_size=32, num_classes=4)
    with pytest.raises(DistillError, match=r"below 1\.5x chance") as info:
        api.run(recipe)
    assert "weights loaded: state_dict (also state_dict_ema)" in str(info.value)
    assert "teacher.checkpoint_key picks the other weights" in str(info.value)
    result = api.run(recipe, teacher__checkpoint_key="state_dict_ema")
    assert result.teacher is not None and (result.teacher.top1 or 0) > 37.5
    # a normal run says which weights taught: in its summary, summary.json and printed table
    assert result.teacher.weights == "state_dict_ema (also state_dict)"
    saved = json.loads((result.run_dir / "summary.json").read_text())
    assert saved["teacher"]["weights"] == "state_dict_ema (also state_dict)"
    assert api.RunSummary.load(result.run_dir).teacher == result.teacher
    with Console(width=200, record=True) as console:
        console.print(summary_table(result))
    shown = " ".join(console.export_text().split())  # the caption wraps to the table
    assert "teacher weights: state_dict_ema (also state_dict) of its checkpoint" in shown


def _photos(root: Path, per_class: dict[str, int], seed: int) -> None:
    """Learnable photos of mixed sizes: each class its own colour and stripe direction."""
    rng = np.random.default_rng(seed)
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)]
    for split, count in per_class.items():
        for c, colour in enumerate(colours):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                h, w = (int(v) for v in rng.integers(48, 96, size=2))
                pixels = rng.normal(colour, 40, size=(h, w, 3))
                if c % 2:
                    pixels[::6] = 255
                else:
                    pixels[:, ::6] = 255
                image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
                image.save(folder / f"{i}.jpg", quality=95)


def test_export_feeds_the_student_as_the_run_evaluated_it(tmp_path: Path) -> None:
    """The standard flow: a teacher trained at a non-default size, distilled with a recipe that
    does not state it (the side file does), then the student exported."""
    photos = tmp_path / "photos"
    _photos(photos, {"train": 12, "val": 6}, seed=0)
    runs = tmp_path / "runs"
    data = {"source": "image_folder", "root": str(photos), "workers": 0}
    teacher_body = {
        "model": {"model": "test_resnet", "input_size": 64},
        "data": data,
        "method": {"name": "supervised"},
        "optim": {"lr": 3e-3},
        "schedule": {"epochs": 2, "batch_size": 16},
        "output": {"dir": str(runs)},
    }
    api.run(write_recipe(tmp_path, "t64", teacher_body))
    ckpt = runs / "t64" / "checkpoints" / "best.safetensors"
    side = json.loads(ckpt.with_suffix(".json").read_text())
    assert side["input_size"] == [64, 64] and side["load_size"] == 74  # round(64 * 1.15)
    body = {
        "teacher": {"model": "test_resnet", "checkpoint": str(ckpt), "check_accuracy": False},
        "student": {"model": "test_resnet", "input_size": 32},
        "data": data,
        "method": {"name": "kd"},
        "schedule": {"epochs": 1, "batch_size": 16},
        "output": {"dir": str(runs)},
    }
    result = api.run(write_recipe(tmp_path, "s32", body))
    best = json.loads((runs / "s32" / "checkpoints" / "best.json").read_text())
    assert best["load_size"] == 74  # the teacher's 64 px decided the decode size, not 224
    exported = api.export(result.run_dir, images=0, latency=False, exporter="torchscript")
    report = exported.to_dict()
    assert report["parity"]["inputs"]["images"] == 24 and report["parity"]["inputs"]["labeled"]
    assert report["parity"]["top1_pytorch"] == pytest.approx(result.best_score, abs=1e-4)
    prep = report["preprocess"]
    assert prep["load_size"] == 74
    assert prep["interpolation"] == best["interpolation"] == "bilinear"
    assert side["interpolation"] == "bilinear"  # test_resnet's timm default is bicubic
