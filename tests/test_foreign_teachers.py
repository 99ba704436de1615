"""Teachers (and students to export) made outside distill, as people save and describe them:
loaded right, or refused in one line, alike by every command that reads them (the run and its
plan through `create_net`, the report through `model_cost`, export and bench latency through
`resolve_source`)."""

from __future__ import annotations

import argparse
import json
import pathlib
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from distill_cli.errors import DistillError
from distill_cli.export.source import resolve_source
from distill_cli.models.create import create_net, model_cost
from distill_cli.models.weights import load_weights, weights_source
from distill_cli.recipe.sections import ModelSpec


def _model(classes: int = 3, chans: int = 3) -> torch.nn.Module:
    return timm.create_model("test_resnet", num_classes=classes, in_chans=chans)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _every_reader(path: Path) -> list:
    """What each command does with a teacher file: the run (create_net), the report
    (model_cost) and export / bench latency (resolve_source)."""
    spec = ModelSpec(model="test_resnet", checkpoint=path)
    return [
        lambda: create_net(spec, 3, role="teacher"),
        lambda: model_cost(spec, 3),
        lambda: resolve_source("test_resnet", checkpoint=path),
    ]


@pytest.mark.parametrize(
    ("side", "words"),
    [
        ({"img_size": 40}, r"key distill does not read: 'img_size'.* write it as 'input_size'"),
        ({"labels": ["a", "b", "c"]}, r"'labels'.* write it as 'class_names'"),
        ({"input_size": "40"}, r"bad input_size: '40'.* \[H, W\] in pixels"),
        ({"num_classes": "3"}, r"bad num_classes: '3'"),
        ({"input_size": [9000, 9000]}, r"bad input_size: \[9000, 9000\] .*above the limit"),
        ({"mean": [0.5], "std": "x"}, r"bad std: 'x'"),
        ({"crop_pct": 1.5}, r"bad crop_pct: 1\.5"),
        ({"class_names": "a,b,c"}, r"bad class_names: 'a,b,c'"),
        ({"class_names": ["a", "b"], "num_classes": 3}, r"names 2 classes for num_classes 3"),
        ({"mean": [0.5, 0.5, 0.5]}, r"gives mean without std"),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(v),
)
def test_a_side_file_key_misspelt_or_mistyped_is_refused_alike_everywhere(
    tmp_path: Path, side: dict, words: str
) -> None:
    """`img_size` was ignored without a word; `"input_size": "40"` was read as (4, 0) by the
    run and was a pydantic traceback in export; a side file without num_classes was a KeyError
    in export. Now every command refuses it in one line naming the file and the key."""
    path = tmp_path / "teacher.pth"
    torch.save(_model().state_dict(), path)
    (tmp_path / "teacher.json").write_text(json.dumps({"model": "test_resnet", **side}))
    for read in _every_reader(path):
        with pytest.raises(DistillError, match=words) as caught:
            read()
        assert "teacher.json" in str(caught.value) and "\n" not in str(caught.value)


def test_a_side_file_in_timms_words_is_read_alike_everywhere(tmp_path: Path) -> None:
    """timm's [C, H, W] input size, class names without num_classes (whole numbers, as a
    recipe takes them), a grayscale teacher's in_chans (the run built it with 3 channels and
    refused it while the export built 1), a file saved with a BOM: all readers build what the
    side file says."""
    torch.manual_seed(0)
    gray = _model(chans=1)
    path = tmp_path / "gray.pth"
    torch.save({"state_dict": gray.state_dict()}, path)
    side = {"model": "test_resnet", "in_chans": 1, "input_size": [1, 40, 40],
            "class_names": [7, 8, 9]}  # fmt: skip
    (tmp_path / "gray.json").write_text(json.dumps(side), encoding="utf-8-sig")
    net = create_net(ModelSpec(model="test_resnet", checkpoint=path), 3, role="teacher")
    assert net.info.in_chans == 1 and net.info.input_size == (40, 40) and _same(net.module, gray)
    assert model_cost(ModelSpec(model="test_resnet", checkpoint=path), 3).input_size == (40, 40)
    for source in (resolve_source(str(path)), resolve_source("test_resnet", checkpoint=path)):
        assert source.student.info.in_chans == 1 and source.student.info.num_classes == 3
        assert source.class_names == ["7", "8", "9"] and _same(source.student.module, gray)
    (tmp_path / "gray.json").write_text(json.dumps({"model": "test_efficientnet"}))
    with pytest.raises(DistillError, match=r"says it holds 'test_efficientnet'.*builds 'test_r"):
        create_net(ModelSpec(model="test_resnet", checkpoint=path), 3, role="teacher")


def test_a_refusal_names_the_setting_the_weights_disagree_with(tmp_path: Path) -> None:
    """It said "check the model name, num_classes and in_chans" and named neither model:
    the keys tell which (the stem's channels, the head's rows, another model of the family)."""
    gray, ten = tmp_path / "gray.pth", tmp_path / "ten.pth"
    torch.save(_model(chans=1).state_dict(), gray)
    torch.save(_model(classes=10).state_dict(), ten)
    with pytest.raises(DistillError, match=r"takes 1 channel\(s\), the model 3: set in_chans: 1"):
        load_weights(_model(), gray)
    with pytest.raises(DistillError, match=r"classifier has 10 outputs: set num_classes: 10"):
        load_weights(_model(), ten)
    with torch.device("meta"):  # names and shapes are what matter
        resnet18 = timm.create_model("resnet18", num_classes=4).state_dict()
    r18 = tmp_path / "r18.pth"
    torch.save({k: torch.zeros(v.shape, dtype=v.dtype) for k, v in resnet18.items()}, r18)
    with pytest.raises(DistillError) as caught:
        load_weights(timm.create_model("resnet34", num_classes=4), r18)
    message = str(caught.value)
    assert "does not fit the model resnet34: 80 missing" in message
    assert "its names and shapes are resnet18's" in message and "set model: resnet18" in message


def test_strict_false_that_loads_little_is_refused_and_a_partial_load_says_its_share(
    tmp_path: Path,
) -> None:
    """`strict: false` loaded the two keys of a classifier and passed as a trained teacher."""
    torch.manual_seed(1)
    state = _model().state_dict()
    head = tmp_path / "head.pth"
    torch.save({"fc.weight": state["fc.weight"], "fc.bias": state["fc.bias"]}, head)
    with pytest.raises(DistillError, match=r"strict: false loaded under 1% .*2 of \d+ tensors"):
        create_net(ModelSpec(model="test_resnet", checkpoint=head, strict=False), 3)
    body = tmp_path / "body.pth"  # a new head over a trained body: loads, and says so
    torch.save({k: v for k, v in state.items() if not k.startswith("fc.")}, body)
    net = create_net(ModelSpec(model="test_resnet", checkpoint=body, strict=False), 3)
    assert (
        net.sources["weights"].startswith("checkpoint (")
        and "% of the model's" in net.sources["weights"]
    )
    assert torch.equal(net.module.conv1[0].weight, state["conv1.0.weight"])
    torch.save({**state, "aux_head.weight": torch.zeros(3, 8)}, body)  # extra keys: counted
    net = create_net(ModelSpec(model="test_resnet", checkpoint=body, strict=False), 3)
    assert net.sources["weights"] == "checkpoint (1 of the file's tensors unused)"


def test_lightning_checkpoints_load_the_models_own_attribute(tmp_path: Path) -> None:
    """A LightningModule saves its models under their attribute names beside the rest: a
    distillation module `teacher.` and `student.`, a classifier `net.` beside its loss's
    buffers; with `hyper_parameters` (paths) and `optimizer_states`. They were refused."""
    torch.manual_seed(2)
    teacher, student = _model(), timm.create_model("test_efficientnet", num_classes=3)
    extras = {"hyper_parameters": {"data_dir": pathlib.PosixPath("/data"), "lr": 0.1},
              "optimizer_states": [{"state": {}, "param_groups": []}], "callbacks": {},
              "pytorch-lightning_version": "2.4.0", "epoch": 3, "global_step": 90}  # fmt: skip
    both = {**{f"teacher.{k}": v for k, v in teacher.state_dict().items()},
            **{f"student.{k}": v for k, v in student.state_dict().items()}}  # fmt: skip
    torch.save({"state_dict": both, **extras}, tmp_path / "kd.ckpt")
    fresh = _model()
    load_weights(fresh, tmp_path / "kd.ckpt")
    assert _same(fresh, teacher)
    net = {f"net.{k}": v for k, v in teacher.state_dict().items()}
    beside = {"criterion.weight": torch.ones(3), "temperature": torch.ones(())}
    torch.save({"state_dict": {**net, **beside}, **extras}, tmp_path / "cls.ckpt")
    source = resolve_source("test_resnet", checkpoint=tmp_path / "cls.ckpt")
    assert _same(source.student.module, teacher)
    twins = {**net, **{f"ema.{k}": v for k, v in teacher.state_dict().items()}}
    torch.save({"state_dict": twins}, tmp_path / "twins.ckpt")
    with pytest.raises(DistillError, match=r"holds 2 models that fit this one, under 'net\.'"):
        load_weights(_model(), tmp_path / "twins.ckpt")


def test_timm_train_py_ema_v3_and_whole_pickled_models(tmp_path: Path) -> None:
    """timm's ModelEmaV3 saves `state_dict_ema` with `module.` keys beside an optimizer and
    `args`; `torch.save(model)` pickles the model's classes and was only "more than tensors"."""
    torch.manual_seed(3)
    live, ema = _model(), _model()
    path = tmp_path / "checkpoint-3.pth.tar"
    torch.save({"epoch": 3, "arch": "test_resnet", "state_dict": live.state_dict(),
                "state_dict_ema": {f"module.{k}": v for k, v in ema.state_dict().items()},
                "optimizer": torch.optim.SGD(live.parameters(), lr=0.1).state_dict(),
                "args": argparse.Namespace(model="test_resnet"), "version": 2}, path)  # fmt: skip
    fresh = _model()
    load_weights(fresh, path, entry="state_dict_ema")
    assert _same(fresh, ema)
    torch.save(live, tmp_path / "whole.pt")
    with pytest.raises(DistillError, match=r"whole pickled model .*timm\.models\.resnet") as info:
        load_weights(_model(), tmp_path / "whole.pt")
    assert "torch.save(model.state_dict()" in str(info.value)


def _sharded(folder: Path, state: dict[str, torch.Tensor]) -> Path:
    """A Hub folder as `save_pretrained(max_shard_size=...)` leaves it: two shards, an index."""
    folder.mkdir()
    keys = list(state)
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    halves = [keys[: len(keys) // 2], keys[len(keys) // 2 :]]
    for name, part in zip(names, halves, strict=True):
        save_file({k: state[k].contiguous() for k in part}, str(folder / name))
    weight_map = {k: names[i] for i, part in enumerate(halves) for k in part}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    config = {
        "architecture": "test_resnet",
        "num_classes": 3,
        "pretrained_cfg": {"input_size": [3, 40, 40], "mean": [0.5] * 3, "std": [0.2] * 3},
    }
    (folder / "config.json").write_text(json.dumps(config))  # fmt: skip
    return folder


def test_a_sharded_hub_folder_loads_everywhere_and_is_an_export_source(tmp_path: Path) -> None:
    """Sharded weights were "holds no model.safetensors"; a Hub folder as export SOURCE was
    "not a run directory", and as --checkpoint a crash hashing the folder."""
    torch.manual_seed(4)
    model = _model()
    folder = _sharded(tmp_path / "hub", model.state_dict())
    for path in (folder, folder / "model.safetensors.index.json"):
        net = create_net(ModelSpec(model="test_resnet", checkpoint=path), 3, role="teacher")
        assert _same(net.module, model) and net.info.input_size == (40, 40)
    sources = [resolve_source(str(folder)), resolve_source("test_resnet", checkpoint=folder)]
    for source in sources:
        assert _same(source.student.module, model) and source.student.info.std == (0.2,) * 3
        assert source.checkpoint_sha256 == weights_source(folder, None).sha256
    (folder / "config.json").unlink()  # weights alone: the model must be named
    with pytest.raises(DistillError, match=r"no timm config\.json.*export MODEL --checkpoint"):
        resolve_source(str(folder))
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(DistillError, match=r"1 of the 2 weight shards are not there \(model-0"):
        load_weights(_model(), folder)


@pytest.mark.parametrize("name", ["model_best.pth.tar", "last.ckpt", "pytorch_model.bin"])
def test_an_export_source_named_like_a_weights_file_is_not_a_timm_name(name: str) -> None:
    """A missing `last.ckpt` was "unknown timm model 'last.ckpt'" (close matches: dla60...)."""
    with pytest.raises(DistillError, match="checkpoint file not found"):
        resolve_source(name)


def test_a_run_folder_is_a_teachers_checkpoint_as_it_is_an_export_source(tmp_path: Path) -> None:
    """`distill export runs/teacher` takes the run's best checkpoint; `teacher.checkpoint:
    runs/teacher` was "holds no model.safetensors", and so was `--checkpoint runs/teacher`."""
    from distill_cli.models.checkpoint import save_weights
    from distill_cli.rundir.layout import MARKER, RunDir

    torch.manual_seed(5)
    model, run = _model(), RunDir(tmp_path / "runs" / "teacher")
    run.checkpoints.mkdir(parents=True)
    (run.path / MARKER).write_text("")
    side = {"model": "test_resnet", "num_classes": 3, "input_size": [48, 48],
            "class_names": ["x", "y", "z"]}  # fmt: skip
    save_weights(run.best, model, side)
    net = create_net(ModelSpec(model="test_resnet", checkpoint=run.path), 3, role="teacher")
    assert _same(net.module, model) and net.info.input_size == (48, 48)
    assert net.weights_files[0].path == str(run.best.resolve())
    source = resolve_source("test_resnet", checkpoint=run.path)
    assert source.class_names == ["x", "y", "z"] and _same(source.student.module, model)
    run.best.unlink()
    with pytest.raises(DistillError, match="the run 'teacher' has not written it"):
        create_net(ModelSpec(model="test_resnet", checkpoint=run.path), 3, role="teacher")


def test_distill_students_refuses_a_teacher_file_the_run_would_refuse_before_timing(
    tmp_path: Path,
) -> None:
    """`distill students T --teacher-checkpoint F --write-recipe R` wrote F into the recipe
    unread, after minutes of timing: another model's weights failed only at `distill run`;
    without --write-recipe the flag was ignored."""
    from distill_cli import api
    from distill_cli.students.recipe import check_teacher_file

    other = tmp_path / "other.pth"
    torch.save(timm.create_model("test_efficientnet", num_classes=3).state_dict(), other)
    with pytest.raises(DistillError, match="does not fit the model test_resnet"):
        api.students("test_resnet", 5.0, write_recipe=tmp_path / "r.yaml", data="synthetic",
                     teacher_checkpoint=other, include_test_models=True)  # fmt: skip
    assert not (tmp_path / "r.yaml").exists()
    with pytest.raises(DistillError, match=r"--teacher-checkpoint goes into the recipe --write-r"):
        api.students("test_resnet", 5.0, teacher_checkpoint=other)  # was ignored, unread
    ten = tmp_path / "ten.pth"  # no side file: the head's rows, as the run finds them
    torch.save({"state_dict": _model(classes=10).state_dict(), "epoch": 3}, ten)
    check_teacher_file("test_resnet", ten)
    (tmp_path / "ten.json").write_text(json.dumps({"num_classes": 4}))
    with pytest.raises(DistillError, match="classifier has 10 outputs: set num_classes: 10"):
        check_teacher_file("test_resnet", ten)


def test_weights_in_the_models_original_names_load_and_another_size_is_still_refused(
    tmp_path: Path,
) -> None:
    """ConvNeXt's own repository names its head `head.weight` and `norm.weight` (timm:
    `head.fc.`, `head.norm.`): refused as 4 missing, 4 unexpected keys, though timm renames
    them for its own hub weights (`checkpoint_filter_fn`). Renames load; a ViT's filter, which
    resamples the position embedding, is not used: the size stays refused, naming it."""
    torch.manual_seed(6)
    model = timm.create_model("test_convnext", num_classes=3)
    moved = {"head.fc.": "head.", "head.norm.": "norm."}
    original = {}
    for key, value in model.state_dict().items():
        prefix = next((p for p in moved if key.startswith(p)), None)
        original[moved[prefix] + key[len(prefix) :] if prefix else key] = value
    torch.save({"model": original}, tmp_path / "convnext.pth")
    net = create_net(ModelSpec(model="test_convnext", checkpoint=tmp_path / "convnext.pth"), 3)
    assert _same(net.module, model) and "checkpoint_filter_fn" in net.sources["weights"]
    source = resolve_source("test_convnext", checkpoint=tmp_path / "convnext.pth")
    assert source.student.info.num_classes == 3  # the renamed head's rows, not timm's 1000
    vit32 = timm.create_model("test_vit", num_classes=3, img_size=32).state_dict()
    torch.save(vit32, tmp_path / "vit32.pth")
    spec = ModelSpec(model="test_vit", checkpoint=tmp_path / "vit32.pth", input_size=64)
    with pytest.raises(DistillError, match=r"pos_embed.*another input size: 32"):
        create_net(spec, 3)


def test_weights_saved_on_a_gpu_load_on_a_machine_without_one(tmp_path: Path) -> None:
    """A checkpoint saved from cuda:0 names that device; torch.load alone fails on a CPU
    machine ("Attempting to deserialize object on a CUDA device"). The storages are tagged
    cuda:0 as a GPU save tags them, on any machine."""
    from unittest import mock

    if torch.cuda.is_available():
        pytest.skip("the point is a machine without CUDA")
    torch.manual_seed(7)
    model, path = _model(), tmp_path / "gpu.pth"
    with mock.patch("torch.serialization.location_tag", lambda storage: "cuda:0"):
        torch.save({"state_dict": model.state_dict(), "epoch": 1}, path)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(path, weights_only=True)
    net = create_net(ModelSpec(model="test_resnet", checkpoint=path), 3, role="teacher")
    assert _same(net.module, model) and next(net.module.parameters()).device.type == "cpu"
    assert _same(resolve_source("test_resnet", checkpoint=path).student.module, model)


def test_a_weights_file_in_the_model_key_names_the_checkpoint_key(tmp_path: Path) -> None:
    """`teacher.model: runs/teacher` (or a .safetensors) was "unknown timm model": the file is
    meant for `teacher.checkpoint`, and where its side file names the model, the fix says it."""
    path = tmp_path / "teacher.safetensors"
    save_file(_model().state_dict(), str(path))
    (tmp_path / "teacher.json").write_text(json.dumps({"model": "test_resnet"}))
    timm_train = tmp_path / "model_best.pth.tar"  # timm's train.py: no side file, its `arch`
    torch.save({"arch": "test_resnet", "state_dict": _model().state_dict()}, timm_train)
    for key, name, words in [
        ("teacher", str(path), f"set teacher.model: test_resnet and teacher.checkpoint: {path}"),
        (
            "teacher",
            str(timm_train),
            f"set teacher.model: test_resnet and teacher.checkpoint: {timm_train}",
        ),
        ("student", str(path), f"set student.model: test_resnet and student.checkpoint: {path}"),
        ("teacher", "missing.pth", "set teacher.model to the timm name it was built from"),
    ]:
        with pytest.raises(DistillError, match="not a timm model name") as info:
            create_net(ModelSpec(model=name), 3, role=key)
        assert info.value.where == f"{key}.model" and info.value.hint.startswith(words)
    with pytest.raises(DistillError, match="unknown timm model 'resnt18'"):  # a name stays one
        create_net(ModelSpec(model="resnt18"), 3, role="teacher")
