"""Architecture sweep: timm families export to ONNX with the default exporter and keep parity.

Random weights (nothing is downloaded) at 64 px, through the same `api.export` as the CLI, with
random inputs (no data) and no latency: what is checked is that the graph exports, passes the
full ONNX check, loads in ONNX Runtime, keeps a dynamic batch axis, and computes what PyTorch
computes (max |logit diff| <= 1e-4 at batch 64 and batch 1, 100% top-1 agreement). Families that
do not export are listed in the README with the reason.
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

#: (timm name, create_model kwargs): one or two per family, the smallest of each.
ARCHS: list[tuple[str, dict[str, Any]]] = [
    ("resnet18", {}),  # ResNet
    ("regnetx_002", {}),  # RegNet
    ("repvgg_a0", {}),  # RepVGG (ByobNet)
    ("efficientnet_b0", {}),  # EfficientNet
    ("mobilenetv3_small_050", {}),  # MobileNetV3
    ("mobilenetv4_conv_small", {}),  # MobileNetV4
    ("lcnet_050", {}),  # LCNet
    ("convnext_atto", {}),  # ConvNeXt
    ("edgenext_xx_small", {}),  # EdgeNeXt
    ("deit_tiny_patch16_224", VIT),  # DeiT / ViT
    ("levit_128s", VIT),  # LeViT
    ("mobilevit_xxs", {}),  # MobileViT
    ("efficientvit_b0", {}),  # EfficientViT (MIT)
    ("test_coatnet", VIT),  # CoAtNet
    ("test_nfnet", {}),  # NFNet
    ("test_mambaout", {}),  # MambaOut
]


@pytest.mark.parametrize(("arch", "kwargs"), ARCHS, ids=[a for a, _ in ARCHS])
def test_architecture_exports_with_parity(
    arch: str, kwargs: dict[str, Any], tmp_path: Path
) -> None:
    torch.manual_seed(0)  # timm's random init: the same weights on every run
    report = api.export(
        arch,
        out=tmp_path,
        input_size=SIZE,
        num_classes=10,
        model_kwargs=kwargs,
        latency=False,
        simplify=False,
        check=False,
    )
    parity = report["parity"]
    assert parity["passed"], parity["misses"]
    assert parity["max_abs_diff"] <= 1e-4 and parity["batch1_max_abs_diff"] <= 1e-4
    assert parity["top1_agreement"] == 100.0 and parity["inputs"]["images"] == 64
    exporter = report["model"]["onnx"]["exporter"]
    assert exporter["used"] == "dynamo", exporter["attempts"]
    model = onnx.load(str(tmp_path / "model.onnx"), load_external_data=False)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    assert {p.key: p.value for p in model.metadata_props}["distill.model"] == arch
