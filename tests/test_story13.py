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
    if getattr(args, "model_ema", False):
        state["state_dict_ema"] = model.state_dict()
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
    assert read_sidecar(embedded).origin == "timm train.py (the checkpoint's args)"
    assert read_sidecar(beside).origin == "timm train.py (args.yaml)"  # the plan names the file
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
    # another script's `args` (a model timm does not know) are not timm's train.py's words
    custom = tmp_path / "custom.pth"
    state = {"args": {"model": "MyResNet", "img_size": 99}}
    torch.save(
        {**state, "state_dict": torch.load(beside, weights_only=False)["state_dict"]}, custom
    )
    assert read_sidecar(custom).input_size is None and read_sidecar(custom).model is None
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
    assert plan.teacher.mean == (0.4, 0.4, 0.4)
    assert plan.teacher.sources.input_size == "timm train.py (args.yaml)"  # which file said it
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
    recipe = write_recipe(tmp_path, "timm-order-plan", body)
    plan = api.plan(recipe)
    assert plan.teacher is not None
    assert plan.teacher.sources.class_names == "data, in timm's train.py order"
    # the teacher exported itself with the data's recipe: its ONNX file names its outputs
    # timm's way, and its parity top-1 is on labels in that order
    for source, options in ((ckpt, {}), ("test_resnet", {"checkpoint": ckpt})):
        out = tmp_path / f"export-{len(options)}"
        report = api.export(source, recipe=recipe, out=out, latency=False, **options)
        assert report.to_dict()["model"]["class_names"] == NATURAL

    # with --class-map the file's lines are the order (here: the sorted one), not natural
    mapped = tmp_path / "classes.txt"
    mapped.write_text("\n".join(sorted(CLASSES)) + "\n")
    ckpt = _timm_checkpoint(tmp_path / "timm-map", _args(img_size=32, class_map=str(mapped)))
    assert read_sidecar(ckpt).class_names == sorted(CLASSES)


def _photo(kind: str, colour: tuple[int, int, int], path: Path, size: tuple[int, int]) -> Path:
    """One photo as cameras, editors and scanners save them."""
    import numpy as np

    w, h = size
    ramp = np.linspace(0, 60, w, dtype=np.float32)[None, :, None]
    pixels = (np.zeros((h, w, 3), np.float32) + colour + ramp).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    if kind == "exif":  # a phone photo stored sideways, upright by its EXIF orientation
        exif = Image.Exif()
        exif[0x0112] = 6
        image.transpose(Image.Transpose.ROTATE_90).save(path.with_suffix(".jpg"), exif=exif)
        return path.with_suffix(".jpg")
    if kind == "rgba":  # a cut-out: the top third transparent over black
        rgba = np.asarray(image.convert("RGBA")).copy()
        rgba[: h // 3, :, :] = 0
        image = Image.fromarray(rgba)
    elif kind == "png16":
        image = Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 257)
    elif kind in ("L", "P", "CMYK"):
        image = image.convert(kind)
    suffix = {"CMYK": ".jpeg", "webp": ".webp", "JPG": ".JPG", "RGB": ".jpg"}.get(kind, ".png")
    image.save(path.with_suffix(suffix), "JPEG" if suffix == ".JPG" else None)
    return path.with_suffix(suffix)


KINDS = ["RGB", "JPG", "L", "P", "rgba", "CMYK", "exif", "png16", "webp"]


def test_the_consumer_reproduces_distills_evaluation_for_every_photo_kind(tmp_path: Path) -> None:
    """A photo folder of every mode and format a team has (RGB/CMYK/EXIF-rotated JPEGs, grey,
    palette, RGBA and 16-bit PNGs, WebP, upper-case suffixes, class names with spaces and
    accents), distilled and exported: examples/onnx_consumer.py, fed by the ONNX metadata
    alone, gives distill's own evaluation input for every photo, and so its class and
    probabilities. The same holds for the run's checkpoint exported alone (copied away from
    the run and its data): the metadata used to drop the photo decode and load steps there."""
    import importlib.util

    import numpy as np

    from distill_cli.data import build_data
    from distill_cli.export.parity import InputSet
    from distill_cli.models.view import ModelInfo
    from distill_cli.recipe.document import load_recipe

    colours = {"red car": (190, 20, 20), "café crème": (20, 150, 40)}
    for split, sizes in (("train", [(40, 30), (30, 44)]), ("val", [(52, 36), (36, 60)])):
        for name, colour in colours.items():
            (tmp_path / "data" / split / name).mkdir(parents=True)
            for i, kind in enumerate(KINDS):
                _photo(kind, colour, tmp_path / "data" / split / name / f"{i}", sizes[i % 2])
    body = {
        "model": {"model": "test_resnet", "input_size": 24},
        "data": {"source": "image_folder", "root": str(tmp_path / "data"), "workers": 0},
        "method": {"name": "supervised"},
        "schedule": {"steps": 2, "batch_size": 8},
        "output": {"dir": str(tmp_path / "runs")},
    }
    recipe_path = write_recipe(tmp_path, "photos", body)
    run = Path(api.run(recipe_path).run_dir)
    alone = tmp_path / "alone"
    alone.mkdir()
    for name in ("best.safetensors", "best.json"):
        (alone / name).write_bytes((run / "checkpoints" / name).read_bytes())
    spec = importlib.util.spec_from_file_location(
        "consumer", Path(__file__).resolve().parents[1] / "examples/onnx_consumer.py"
    )
    assert spec is not None and spec.loader is not None
    consumer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(consumer)

    recipe = load_recipe(recipe_path)
    val = build_data(**recipe.data.data_args(), seed=recipe.runtime.seed).val
    for source, out in ((run, tmp_path / "x1"), (alone / "best.safetensors", tmp_path / "x2")):
        report = api.export(source, out=out, latency=False, teacher=False, images=0)
        session, pre = consumer.load(report.onnx)
        assert pre["load_size"] == 28 and pre["exif_orientation"] == "applied"  # 1.15 x 24
        assert pre["class_names"] == ["café crème", "red car"]
        keys = ("name", "num_classes", "in_chans", "input_size", "mean", "std", "crop_pct")
        fields = {k: report.to_dict()["model"][k] for k in keys}
        for key in ("input_size", "mean", "std"):
            fields[key] = tuple(fields[key])
        inputs = InputSet(ModelInfo(**fields), val, 0, load_size=pre["load_size"])
        expected = np.concatenate([x for x, _ in inputs.batches()])
        files = inputs.images.files
        assert files is not None and len(files) == len(expected) == 2 * len(KINDS)
        ours = np.stack([consumer.preprocess(Image.open(p), pre) for p in files])
        # JPEG decoders (libjpeg-turbo in torchvision, Pillow's) differ by a level here and there
        assert np.abs(ours - expected).max() < 0.05, files[np.abs(ours - expected).argmax()]
        name = session.get_inputs()[0].name
        mine, theirs = (session.run(None, {name: x})[0] for x in (ours, expected))
        assert (mine.argmax(1) == theirs.argmax(1)).all()
        probs = [np.exp(v - v.max(1, keepdims=True)) for v in (mine, theirs)]
        probs = [p / p.sum(1, keepdims=True) for p in probs]
        assert np.abs(probs[0] - probs[1]).max() < 0.01


def test_a_class_names_file_saved_by_notepad_reads_as_its_names(tmp_path: Path) -> None:
    """Windows Notepad's UTF-8 starts with a byte-order mark and ends lines with CRLF: the
    first class was read as '\\ufeffcat', an invisible difference the data's names then
    refused."""
    path = tmp_path / "classes.txt"
    path.write_bytes("cat\r\ncafé\r\n".encode("utf-8-sig"))
    spec = ModelSpec(model="test_resnet", class_names=path)
    assert spec.names() == ["cat", "café"]


def test_copies_of_an_undecodable_file_are_bad_files_not_a_photo_under_two_labels(
    tmp_path: Path,
) -> None:
    """A scraped folder holds the same error page saved as `.jpg` in several classes: it was
    reported as "the same photo under two labels, one of them wrong" (and refused with
    `data.on_duplicates: error`) while the run skipped those files as undecodable. A real
    photo copied into two classes is still found."""
    from distill_cli.data import build_data
    from distill_cli.data.duplicates import find_duplicates

    for j, split in enumerate(("train", "val")):
        for i, name in enumerate(("cat", "dog")):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            Image.new("RGB", (8 + i, 8), (i * 90, 20 + j, 20)).save(folder / "own.png")
            (folder / "page.jpg").write_bytes(b"<html>404 Not Found</html>" * 40)
    found = find_duplicates(build_data("image_folder", tmp_path), tmp_path)
    assert found.findings == ()
    Image.new("RGB", (9, 9), (1, 2, 3)).save(tmp_path / "train" / "cat" / "both.png")
    Image.new("RGB", (9, 9), (1, 2, 3)).save(tmp_path / "train" / "dog" / "both.png")
    found = find_duplicates(build_data("image_folder", tmp_path), tmp_path)
    assert [f.kind for f in found.findings] == ["labels"] and found.findings[0].count == 2


def _one_step_recipe(tmp_path: Path, name: str, teacher: Path) -> Path:
    """One function-matching step from the test_resnet checkpoint `teacher` (4 classes)."""
    body = {
        "teacher": {"model": "test_resnet", "checkpoint": str(teacher), "check_accuracy": False},
        "student": {"model": "test_efficientnet", "input_size": 24},
        "data": {"source": "synthetic", "synthetic": {"num_classes": 4, "train_size": 64}},
        "method": {"name": "function_matching"},
        "schedule": {"steps": 1, "batch_size": 16},
        "output": {"dir": str(tmp_path / "runs")},
    }
    return write_recipe(tmp_path, name, body)


def test_a_teacher_file_that_says_nothing_of_its_input_is_named_before_training(
    tmp_path: Path, cli
) -> None:
    """`torch.save(model.state_dict())` of a teacher trained at 64 px, no side file: it was fed
    timm's 160 px and mean/std without a word (the plan's table alone said `timm default`).
    The plan and the run's opening now name the file, the size it gets and what to write."""
    torch.manual_seed(0)
    weights = tmp_path / "teacher.pth"
    torch.save(timm.create_model("test_resnet", num_classes=4).state_dict(), weights)
    recipe = _one_step_recipe(tmp_path, "guessed", weights)
    (line,) = api.plan(recipe).recipe_warnings
    assert "teacher.pth does not say the input size and mean/std" in line
    assert "(160x160 px)" in line and "teacher.json" in line
    done = cli("run", str(recipe), "--dry-run")
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0 and "teacher.pth does not say" in said
    assert api.plan(recipe, ["teacher.input_size=48"]).recipe_warnings == []
    weights.with_suffix(".json").write_text(json.dumps({"input_size": 48}))
    assert api.plan(recipe).recipe_warnings == []


def test_a_timm_model_best_chosen_on_its_ema_weights_says_which_weights_are_loaded(
    tmp_path: Path,
) -> None:
    """With `--model-ema` timm's train.py saves `model_best.pth.tar` at the epoch its EMA
    weights scored best; distill loads the live `state_dict` by default, which the plan's
    table alone hinted at (`also state_dict_ema`). The plan and the opening now say so."""
    ckpt = _timm_checkpoint(tmp_path / "ema", _args(model_ema=True))
    recipe = _one_step_recipe(tmp_path, "ema", ckpt)
    (line,) = api.plan(recipe).recipe_warnings
    assert "chose model_best.pth.tar by its EMA weights' accuracy" in line
    assert "teacher.checkpoint_key: state_dict_ema" in line
    assert api.plan(recipe, ["teacher.checkpoint_key=state_dict_ema"]).recipe_warnings == []
    assert api.plan(recipe, ["teacher.checkpoint_key=state_dict"]).recipe_warnings == []
