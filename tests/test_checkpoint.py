"""Checkpoints: weights + sidecar round trip, optimizer state, atomic writes, foreign formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

from distill_cli.errors import DistillError, RunFailed
from distill_cli.models.checkpoint import (
    atomic_write,
    load_training,
    read_sidecar,
    read_train_state,
    save_weights,
)
from distill_cli.models.weights import load_weights, read_state_dict
from tests.conftest import CLI


def _model() -> torch.nn.Module:
    return timm.create_model("test_resnet", num_classes=3)


def test_weights_and_sidecar_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _model()
    path = tmp_path / "ck" / "best.safetensors"
    save_weights(path, model, {"model": "test_resnet", "num_classes": 3, "epoch": 4})
    assert read_sidecar(path).written() == {"model": "test_resnet", "num_classes": 3, "epoch": 4}
    fresh = _model()
    load_weights(fresh, path)
    for (k, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_training_state_round_trip_restores_the_optimizer(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    path = tmp_path / "last.safetensors"
    save_weights(path, model, {"model": "test_resnet"}, opt, {"step": 17, "best": 0.5})
    assert read_train_state(path)["step"] == 17

    model2 = _model()
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-3)
    state, extra = load_training(path, model2, opt2)
    assert extra == {}
    assert state["step"] == 17 and state["best"] == 0.5
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for idx, entry in a["state"].items():
        for key, value in entry.items():
            assert torch.equal(value, b["state"][idx][key]), (idx, key)
    # the weights-only view of a `last` checkpoint is just the model
    assert set(read_state_dict(path)) == set(model.state_dict())


def test_atomic_write_leaves_no_partial_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "f.bin"
    atomic_write(path, b"old")

    def crash(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", crash)
    with pytest.raises(RunFailed, match=r"f\.bin"):  # exit 1, naming the file (issue 22)
        atomic_write(path, b"new contents")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_pt_checkpoints_with_wrappers_and_prefixes_load(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = _model()
    wrapped = {"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3}
    path = tmp_path / "w.pth"
    torch.save(wrapped, path)
    fresh = _model()
    report = load_weights(fresh, path)
    assert report.missing == [] and report.unexpected == []
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True)
    )


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize(
    "layout",
    [
        "timm-train-py",
        "numpy-metric",
        "compiled-ddp",
        "safetensors-as-bin",
        "pytorch-tutorial",
        "lightning",
    ],
)
def test_checkpoints_saved_the_usual_ways_load_exactly(tmp_path: Path, layout: str) -> None:
    """What trainers really write: timm's train.py puts its argparse.Namespace beside the
    weights, scripts a numpy best accuracy, torch.compile over DDP prefixes both ways round,
    and a `.bin` may be safetensors. Each loads to the very same weights."""
    import argparse

    import numpy as np
    from safetensors.torch import save_file

    torch.manual_seed(2)
    model = _model()
    sd = model.state_dict()
    path = tmp_path / "model.pth.tar"
    if layout == "timm-train-py":
        args = argparse.Namespace(model="test_resnet", lr=0.1, img_size=None, mean=(0.5,))
        ema = {k: torch.zeros_like(v) for k, v in sd.items()}  # the live weights come first
        torch.save({"epoch": 3, "arch": "test_resnet", "state_dict": sd, "args": args,
                    "state_dict_ema": ema, "metric": 71.2, "version": 2}, path)  # fmt: skip
    elif layout == "numpy-metric":
        torch.save({"model": sd, "best_acc1": np.float64(0.9), "hist": np.zeros(3)}, path)
    elif layout == "pytorch-tutorial":  # pytorch.org's "saving and loading a general checkpoint"
        opt = torch.optim.SGD(model.parameters(), lr=0.1).state_dict()
        torch.save({"epoch": 5, "model_state_dict": sd, "optimizer_state_dict": opt}, path)
    elif layout == "lightning":  # a LightningModule holding the model as `self.net`
        net = {f"net.{k}": v for k, v in sd.items()}
        torch.save({"epoch": 1, "global_step": 9, "state_dict": net, "lr_schedulers": []}, path)
    elif layout == "compiled-ddp":
        torch.save({f"_orig_mod.module.{k}": v for k, v in sd.items()}, path)
    else:
        path = tmp_path / "pytorch_model.bin"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    fresh = _model()
    load_weights(fresh, path)
    assert _same_weights(model, fresh)


def test_timm_train_py_ema_weights_are_chosen_by_name_and_the_arch_is_checked(
    tmp_path: Path,
) -> None:
    """timm's train.py --model-ema saves `state_dict` and `state_dict_ema` side by side, with
    the model it trained as `arch`: the live weights load by default and the plan says which
    (and that the EMA is there), `checkpoint_key` picks the EMA, a key the file lacks lists
    those it has, and weights that fit but were saved from another model (deit into vit: same
    keys, other mean/std) are refused naming it."""
    import argparse

    from distill_cli.models import create_net
    from distill_cli.recipe.sections import ModelSpec

    torch.manual_seed(3)
    live, ema = _model(), _model()
    args = argparse.Namespace(model="test_resnet", model_ema=True)
    path = tmp_path / "model_best.pth.tar"
    saved = {"epoch": 9, "arch": "test_resnet", "state_dict": live.state_dict(), "args": args}
    torch.save({**saved, "state_dict_ema": ema.state_dict(), "metric": 80.1}, path)
    spec = {"model": "test_resnet", "checkpoint": path}
    net = create_net(ModelSpec(**spec), 3)
    assert _same_weights(net.module, live)
    assert net.sources["weights"] == "state_dict (also state_dict_ema)"
    net = create_net(ModelSpec(**spec, checkpoint_key="state_dict_ema"), 3)
    assert _same_weights(net.module, ema) and net.sources["weights"].startswith("state_dict_ema")
    with pytest.raises(DistillError, match=r"no weights under 'ema'.*\['state_dict', 'state_d"):
        load_weights(_model(), path, entry="ema")
    other = tmp_path / "other.pth.tar"
    torch.save({"arch": "resnet18", "state_dict": live.state_dict(), "args": args}, other)
    with pytest.raises(DistillError, match=r"saved from 'resnet18'.*builds 'test_resnet'"):
        load_weights(_model(), other)
    tagged = tmp_path / "tagged.pth.tar"  # a pretrained tag is the same model
    torch.save({"arch": "test_resnet.r160_in1k", "state_dict": live.state_dict()}, tagged)
    assert load_weights(_model(), tagged).weights == "state_dict"
    with pytest.raises(DistillError, match="saved from 'test_resnet'"):  # named where keys differ
        load_weights(timm.create_model("test_efficientnet", num_classes=3), path)
    from distill_cli.export.source import resolve_source

    bare = tmp_path / "model_best.pth"  # `arch` alone, no train.py arguments: the model is
    torch.save({"arch": "test_resnet", "state_dict": live.state_dict()}, bare)  # not certain
    with pytest.raises(DistillError, match=r"distill export test_resnet --checkpoint .*best"):
        resolve_source(str(bare))  # no side file: the command to run names the file's arch
    assert resolve_source(str(path)).student.info.name == "test_resnet"  # its args name it


@pytest.mark.parametrize("content", [b"", b"name: my recipe\n", b"<html>404</html>"])
def test_a_file_that_is_no_checkpoint_is_named_as_such(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "teacher.pth"
    path.write_bytes(content)
    with pytest.raises(DistillError, match="not a checkpoint") as info:
        read_state_dict(path)
    assert "pickle" not in str(info.value)  # not blamed on pickled code


def test_weights_holding_nan_are_refused_not_loaded(tmp_path: Path) -> None:
    model = _model()
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["fc.weight"][0, 0] = float("inf")
    path = tmp_path / "diverged.pt"
    torch.save(sd, path)
    fresh = _model()
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(DistillError, match=r"'fc\.weight' holds NaN/Inf"):
        load_weights(fresh, path, strict=False)
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())


def test_wrong_architecture_is_refused_with_key_counts(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_weights(path, timm.create_model("test_efficientnet", num_classes=3), {})
    with pytest.raises(DistillError) as info:
        load_weights(_model(), path)
    assert "missing" in str(info.value) and "unexpected" in str(info.value)


def test_another_class_count_is_refused_with_the_sizes_that_differ(tmp_path: Path) -> None:
    path = tmp_path / "ten.pth"
    torch.save(timm.create_model("test_resnet", num_classes=10).state_dict(), path)
    with pytest.raises(DistillError) as info:
        load_weights(_model(), path)
    message = str(info.value)
    assert "2 wrong-shape (fc.weight, fc.bias)" in message and str(path) in message
    assert (
        "fc.weight is 10x" in message and "in the file, 3x" in message and "num_classes" in message
    )


def test_truncated_checkpoint_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    save_weights(path, _model(), {})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DistillError, match="cannot read checkpoint"):
        read_state_dict(path)


def test_pickled_code_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": Evil()}, path)
    with pytest.raises(DistillError):
        read_state_dict(path)
    assert not marker.exists()


def test_sidecar_is_plain_json(tmp_path: Path) -> None:
    path = tmp_path / "a.safetensors"
    save_weights(path, _model(), {"class_names": ["a", "b", "c"]})
    assert json.loads(path.with_suffix(".json").read_text())["class_names"] == ["a", "b", "c"]


def test_resumed_optimizer_moments_keep_the_parameters_memory_format(tmp_path: Path) -> None:
    """channels_last weights: restored moments get the same strides (fused CUDA AdamW checks)."""
    import timm
    import timm.optim

    from distill_cli.models.checkpoint import load_training, save_weights

    def make() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        model = timm.create_model("test_resnet", num_classes=4)
        model = model.to(memory_format=torch.channels_last)
        return model, timm.optim.create_optimizer_v2(model, opt="adamw", lr=1e-3)

    model, opt = make()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    path = tmp_path / "last.safetensors"
    save_weights(path, model, {"step": 1}, opt, {"step": 1}, {})
    model2, opt2 = make()
    load_training(path, model2, opt2)
    convs = [p for p in model2.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    for param in convs:
        for key in ("exp_avg", "exp_avg_sq"):
            assert opt2.state[param][key].stride() == param.stride(), key
            torch.testing.assert_close(
                opt2.state[param][key], opt.state[_twin(model, model2, param)][key]
            )


def _twin(a: torch.nn.Module, b: torch.nn.Module, param: torch.nn.Parameter) -> torch.nn.Parameter:
    name = next(n for n, p in b.named_parameters() if p is param)
    return dict(a.named_parameters())[name]


def test_a_compiled_runner_is_called_not_asked_for_its_truth() -> None:
    """torch.compile's OptimizedModule raises on bool() (via len()); Net must not ask."""
    from distill_cli.models.create import Net  # noqa: F401

    class Runner(torch.nn.Module):
        def __len__(self) -> int:
            raise TypeError("does not support len()")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 1

    from distill_cli.models.create import create_net
    from distill_cli.recipe.sections import ModelSpec

    net = create_net(ModelSpec(model="test_resnet", input_size=32), 4)
    net.runner = Runner()
    assert torch.equal(net(torch.zeros(1)), torch.ones(1))


def test_export_of_a_foreign_checkpoint_takes_its_class_count_from_its_head(
    tmp_path: Path,
) -> None:
    """`distill export resnet18 --checkpoint my.pth` with a 10-class head and no side file was
    built with timm's 1000 classes and refused; the head's rows say 10 (and the weights load
    exactly), while an explicit --num-classes still wins and must fit."""
    from distill_cli.export.source import resolve_source

    torch.manual_seed(3)
    model = timm.create_model("test_resnet", num_classes=10)
    path = tmp_path / "mine.pth"
    torch.save({"state_dict": model.state_dict(), "epoch": 9}, path)
    source = resolve_source("test_resnet", checkpoint=path)
    assert source.student.info.num_classes == 10
    assert _same_weights(model, source.student.module)
    with pytest.raises(DistillError, match=r"fc\.weight is 10x"):
        resolve_source("test_resnet", checkpoint=path, num_classes=4)


def _hub_folder(folder: Path, model: torch.nn.Module, weights: str) -> Path:
    """A timm model as a Hub snapshot lies on disk: config.json beside the weights."""
    from safetensors.torch import save_file

    folder.mkdir()
    pretrained_cfg = {"input_size": [3, 40, 40], "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]}
    config = {
        "architecture": "test_resnet",
        "num_classes": 3,
        "label_names": ["class_0", "class_1", "class_2"],
        "pretrained_cfg": {**pretrained_cfg, "crop_pct": 0.9},
    }
    (folder / "config.json").write_text(json.dumps(config))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if weights == "model.safetensors":
        save_file(state, str(folder / weights))
    else:
        torch.save(state, folder / weights)
    return folder


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_a_hugging_face_model_folder_loads_with_its_own_input_config(
    tmp_path: Path, weights: str
) -> None:
    """The folder was refused ("not a regular file"); its weights file named directly loaded
    with timm's default mean/std instead of the config's, silently feeding the teacher wrong."""
    from distill_cli import api
    from tests.conftest import write_recipe

    torch.manual_seed(3)
    model = _model()
    folder = _hub_folder(tmp_path / "hub", model, weights)
    for checkpoint in (folder, folder / weights):
        fresh = _model()
        load_weights(fresh, checkpoint)
        assert _same_weights(model, fresh)
        side = read_sidecar(checkpoint)
        assert side.mean == (0.5, 0.4, 0.3) and side.input_size == (40, 40)
        assert side.class_names == ["class_0", "class_1", "class_2"] and side.num_classes == 3
    body = {
        "teacher": {"model": "test_resnet", "checkpoint": str(folder), "check_accuracy": False},
        "student": {"model": "test_resnet", "input_size": 24},
        "data": {"source": "synthetic", "synthetic": {"num_classes": 3, "train_size": 32}},
        "method": {"name": "function_matching"},
        "schedule": {"epochs": 1, "batch_size": 16},
        "output": {"dir": str(tmp_path / "runs")},
    }
    teacher = api.plan(write_recipe(tmp_path, "hub", body)).teacher
    assert list(teacher.mean) == [0.5, 0.4, 0.3] and list(teacher.std) == [0.2] * 3
    assert list(teacher.input_size) == [40, 40]
    assert teacher.sources.mean_std == teacher.sources.input_size == "Hub config.json"
    (folder / weights).unlink()
    with pytest.raises(DistillError, match=r"holds no model\.safetensors or pytorch_model\.bin"):
        read_state_dict(folder)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_half_precision_weights_load_into_the_float32_model(
    tmp_path: Path, dtype: torch.dtype
) -> None:
    torch.manual_seed(4)
    model = _model()
    half = {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save(half, tmp_path / "half.pth")
    fresh = _model()
    load_weights(fresh, tmp_path / "half.pth")
    loaded = fresh.state_dict()
    assert all(loaded[k].dtype == v.dtype for k, v in model.state_dict().items())
    assert all(torch.equal(loaded[k], v.to(loaded[k].dtype)) for k, v in half.items())


def test_a_torchscript_file_is_named_as_such(tmp_path: Path) -> None:
    """It was "not a weights-only file - is the file complete?", which sent users after a
    broken copy; it is a program, whose weights can be saved apart."""
    model = _model().eval()
    path = tmp_path / "teacher.pt"
    torch.jit.save(torch.jit.trace(model, torch.zeros(1, 3, 32, 32)), str(path))
    with pytest.raises(DistillError, match=r"TorchScript program \(torch\.jit\.save\)") as caught:
        load_weights(_model(), path)
    assert "torch.jit.load(FILE).state_dict()" in str(caught.value)
    torch.save(torch.jit.load(str(path)).state_dict(), tmp_path / "weights.pt")  # the hint works
    fresh = _model()
    load_weights(fresh, tmp_path / "weights.pt")
    assert _same_weights(model, fresh)


def test_export_and_bench_latency_pick_a_foreign_checkpoints_ema_weights(
    tmp_path: Path, cli: CLI
) -> None:
    """timm's train.py --model-ema file holds `state_dict` and `state_dict_ema`: export and
    bench latency loaded the first with no way to pick the EMA. `--checkpoint-key` (the api's
    `checkpoint_key`) picks it, the class count read from that entry's head; a key the file
    lacks, or one without --checkpoint, is one line with exit code 2 before any work."""
    from distill_cli.export.source import resolve_source

    torch.manual_seed(4)
    model, ema = (timm.create_model("test_resnet", num_classes=6) for _ in range(2))
    path = tmp_path / "model_best.pth.tar"
    torch.save({"state_dict": model.state_dict(), "state_dict_ema": ema.state_dict()}, path)
    assert _same_weights(model, resolve_source("test_resnet", checkpoint=path).student.module)
    source = resolve_source("test_resnet", checkpoint=path, checkpoint_key="state_dict_ema")
    assert source.student.info.num_classes == 6 and _same_weights(ema, source.student.module)
    for command in (["export"], ["bench", "latency"]):
        result = cli(
            *command, "test_resnet", "--checkpoint", str(path), "--checkpoint-key", "ema",
            cwd=tmp_path,
        )  # fmt: skip
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert "Traceback" not in result.stderr and "no weights under 'ema'" in lines[0]
        assert "state_dict_ema" in lines[0] and "--checkpoint-key" in lines[0]
    result = cli("export", "test_resnet", "--checkpoint-key", "state_dict_ema", cwd=tmp_path)
    assert result.returncode == 2 and "give --checkpoint FILE too" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # nothing written


@pytest.mark.parametrize(
    ("torchvision_name", "timm_name", "family", "advice"),
    [
        ("mobilenet_v2", "test_efficientnet", "mobilenet_v2", "model: mobilenetv2_100"),
        ("efficientnet_b0", "efficientnet_b0", "efficientnet", "model: efficientnet_b0"),
        ("convnext_tiny", "test_convnext", "convnext", "model: convnext_tiny"),
        ("vit_b_16", "test_vit", "vit", "model: vit_base_patch16_224"),
        ("vgg11", "test_resnet", "vgg", "pretrained tags (e.g. model: vgg16.tv_in1k"),
    ],
)
def test_torchvision_weights_whose_names_timm_does_not_share_are_named_as_such(
    tmp_path: Path, torchvision_name: str, timm_name: str, family: str, advice: str
) -> None:
    """torchvision's mobilenet/efficientnet/convnext/ViT state dicts into timm models were
    refused with bare key counts ("314 unexpected"): the error says it is a torchvision file
    and which timm weights to use (timm has no converter for a file)."""
    import torchvision

    with torch.device("meta"):  # the key names are what matter: no memory, no init time
        names = getattr(torchvision.models, torchvision_name)(weights=None).state_dict()
    path = tmp_path / "tv.pth"
    torch.save({name: torch.zeros(1) for name in names}, path)
    with pytest.raises(DistillError) as info:
        load_weights(timm.create_model(timm_name, num_classes=10), path)
    message = str(info.value)
    assert f"it is a torchvision {family} state_dict" in message, message
    assert f"not one of timm's {timm_name!r}" in message and advice in message


def test_torchvision_resnet_weights_load_into_timm_as_they_are(tmp_path: Path) -> None:
    """The families whose key names timm shares load (the advice above says so for resnet;
    densenet121 loads too, left out here for time)."""
    import torchvision

    for name in ("resnet18",):
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None, num_classes=10)
        torch.save(model.state_dict(), tmp_path / f"{name}.pth")
        built = timm.create_model(name, num_classes=10)
        load_weights(built, tmp_path / f"{name}.pth")
        assert _same_weights(model, built)
