"""A deployer with only onnxruntime + numpy + PIL: examples/onnx_consumer.py, fed by the ONNX
file's metadata alone, classifies Fashion-MNIST PNG files exactly as distill evaluated them.

A small student is trained on real Fashion-MNIST (grayscale, so the metadata must say "repeat
to 3 channels"; crop_pct 0.9 and a 20 px input, so the crop and an antialiased downscale are
both exercised), exported, and its validation images are written as PNG files. The consumer's
top-1 on those files must equal the top-1 distill's export measured on the same ONNX file, and
its input tensors must be distill's to float rounding.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from distill_cli import api
from distill_cli.data import build_data
from distill_cli.export.inputs import InputSet
from distill_cli.models.view import ModelInfo
from distill_cli.recipe.document import load_recipe
from distill_cli.recipe.sections import FASHION_MNIST_ROOT
from tests.conftest import write_recipe

ROOT = Path(__file__).resolve().parents[1]
VAL = 300

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not FASHION_MNIST_ROOT.is_dir(), reason="Fashion-MNIST is not installed"),
]


def _consumer() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "onnx_consumer", ROOT / "examples/onnx_consumer.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_consumer_example_reproduces_distills_evaluation(tmp_path: Path) -> None:
    body = {
        "model": {"model": "test_resnet", "input_size": 20, "crop_pct": 0.9},
        "data": {"source": "fashion_mnist", "train_limit": 2048, "val_limit": VAL},
        "method": {"name": "supervised"},
        "optim": {"lr": 1e-2},
        "schedule": {"epochs": 1, "batch_size": 64, "log_every": 8},
        "output": {"dir": str(tmp_path / "runs")},
    }
    recipe_path = write_recipe(tmp_path, "fm-consumer", body)
    run = Path(api.run(recipe_path).run_dir)
    report = api.export(
        run, out=tmp_path / "export", images=0, latency=False, exporter="torchscript"
    ).to_dict()
    parity = report["parity"]
    assert parity["passed"] and parity["inputs"]["images"] == VAL and parity["inputs"]["labeled"]
    distill_top1 = parity["top1_onnx"]

    recipe = load_recipe(recipe_path)
    val = build_data(**recipe.data.data_args(), seed=recipe.runtime.seed).val
    assert val.images is not None and val.labels is not None and len(val) == VAL
    folder = tmp_path / "png"
    folder.mkdir()
    paths = []
    for i, pixels in enumerate(val.images[:, 0].numpy()):
        paths.append(folder / f"{i:04d}.png")
        Image.fromarray(pixels, mode="L").save(paths[-1])

    consumer = _consumer()
    session, pre = consumer.load(report["files"]["onnx"])
    assert pre["source_channels"] == 1 and pre["channel_conversion"] == "repeat"
    assert pre["load_size"] is None and pre["interpolation"] == "bilinear" and pre["antialias"]
    assert pre["class_names"] == val.classes  # never "null"
    logits = consumer.classify(session, pre, paths)
    labels = val.labels.numpy()
    consumer_top1 = float((logits.argmax(1) == labels).mean() * 100)
    assert consumer_top1 == pytest.approx(distill_top1, abs=1e-9)
    assert distill_top1 > 30  # a trained model: ties between classes are not what agrees

    # Stronger than equal accuracy: the very same input tensors, image by image.
    fields = {k: report["model"][k] for k in _INFO_KEYS}
    for key in ("input_size", "mean", "std"):
        fields[key] = tuple(fields[key])
    info = ModelInfo(**fields)
    expected = np.concatenate([x for x, _ in InputSet(info, val, 0).batches()])
    ours = np.stack([consumer.preprocess(Image.open(p), pre) for p in paths])
    assert ours.shape == expected.shape == (VAL, 3, 20, 20)
    assert np.abs(ours - expected).max() < 1e-5

    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["distill.class_names"]) == val.classes
    assert meta["distill.class_names_source"] == "checkpoint"  # the run wrote them in its sidecar
    assert json.loads(meta["distill.dynamic_axes"]) == {"0": "batch"}


_INFO_KEYS = ("name", "num_classes", "in_chans", "input_size", "mean", "std", "crop_pct")
