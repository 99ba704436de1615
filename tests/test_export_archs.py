"""Architecture sweep: timm families export to ONNX with both exporters and keep parity.

Random weights (nothing is downloaded) at 64 px, through the same `api.export` as the CLI, with
random inputs (no data), no latency, and each exporter on half of the families. Checked: the
graph exports, passes the full ONNX check, loads in ONNX Runtime, keeps a dynamic batch axis and
computes what PyTorch computes (max |logit diff| <= 1e-4 at batch 64 and batch 1, 100% top-1
agreement). Families that do not export are listed in the README with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import pytest
import torch

from distill_cli import api

SIZE = 64
VIT = {"img_size": SIZE}

#: (timm name, create_model kwargs, exporter): one per family, the smallest of each. Half go
#: through each exporter, so both are exercised across families (dynamo is the default; the
#: TorchScript half keeps the sweep inside the test budget, dynamo being 3-5x slower to export).
ARCHS: list[tuple[str, dict[str, Any], str]] = [
    ("resnet18", {}, "dynamo"),  # ResNet
    ("regnetx_002", {}, "dynamo"),  # RegNet
    ("repvgg_a0", {}, "torchscript"),  # RepVGG (ByobNet)
    ("efficientnet_b0", {}, "torchscript"),  # EfficientNet
    ("mobilenetv3_small_050", {}, "dynamo"),  # MobileNetV3
    ("mobilenetv4_conv_small", {}, "dynamo"),  # MobileNetV4
    ("lcnet_050", {}, "dynamo"),  # LCNet
    ("convnext_atto", {}, "dynamo"),  # ConvNeXt
    ("edgenext_xx_small", {}, "torchscript"),  # EdgeNeXt
    ("deit_tiny_patch16_224", VIT, "torchscript"),  # DeiT / ViT
    ("levit_128s", VIT, "torchscript"),  # LeViT
    ("mobilevit_xxs", {}, "torchscript"),  # MobileViT
    ("efficientvit_b0", {}, "torchscript"),  # EfficientViT (MIT)
    ("test_coatnet", VIT, "dynamo"),  # CoAtNet
    ("test_nfnet", {}, "torchscript"),  # NFNet
    ("test_mambaout", {}, "dynamo"),  # MambaOut
]


@pytest.mark.parametrize(("arch", "kwargs", "exporter"), ARCHS, ids=[a for a, _, _ in ARCHS])
def test_architecture_exports_with_parity(
    arch: str, kwargs: dict[str, Any], exporter: str, tmp_path: Path
) -> None:
    torch.manual_seed(0)  # timm's random init: the same weights on every run
    report = api.export(
        arch,
        out=tmp_path,
        input_size=SIZE,
        num_classes=10,
        model_kwargs=kwargs,
        exporter=exporter,
        latency=False,
        simplify=False,
        check=False,
    ).to_dict()
    parity = report["parity"]
    assert parity["passed"], parity["misses"]
    assert parity["max_abs_diff"] <= 1e-4 and parity["batch1_max_abs_diff"] <= 1e-4
    assert parity["top1_agreement"] == 100.0 and parity["inputs"]["images"] == 64
    record = report["model"]["onnx"]["exporter"]
    assert record["used"] == exporter, record["attempts"]  # no fallback was needed
    model = onnx.load(str(tmp_path / "model.onnx"), load_external_data=False)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    assert {p.key: p.value for p in model.metadata_props}["distill.model"] == arch
