"""The architecture list of the 30+-family export sweep (tests/test_export_sweep.py), shared with
the parity measurement that chose the default tolerances (benchmarks/export_parity.py)."""

from __future__ import annotations

from typing import Any

SIZE = 64
VIT = {"img_size": SIZE}

#: (timm name, create_model kwargs, exporter, reparameterizable): one or two per family, the
#: smallest of each, at 64 px. TorchScript for most (3-5x faster to export than dynamo, which
#: the 16-family test covers); the reparameterizable ones are exported with and without
#: --reparam.
SWEEP: list[tuple[str, dict[str, Any], str, bool]] = [
    ("resnet18", {}, "torchscript", False),  # ResNet
    ("resnext26ts", {}, "torchscript", False),  # ResNeXt (ByobNet)
    ("regnetx_002", {}, "torchscript", False),  # RegNetX
    ("regnety_002", {}, "dynamo", False),  # RegNetY (squeeze-excite)
    ("repvgg_a0", {}, "torchscript", True),  # RepVGG
    ("mobileone_s0", {}, "torchscript", True),  # MobileOne
    ("fastvit_t8", {}, "torchscript", True),  # FastViT
    ("repghostnet_050", {}, "torchscript", True),  # RepGhost
    ("efficientvit_m0", {"img_size": SIZE}, "torchscript", True),  # EfficientViT (MSRA)
    ("efficientnet_b0", {}, "torchscript", False),  # EfficientNet
    ("mobilenetv3_small_050", {}, "torchscript", False),  # MobileNetV3
    ("mobilenetv4_conv_small", {}, "torchscript", False),  # MobileNetV4
    ("lcnet_050", {}, "torchscript", False),  # LCNet
    ("ghostnet_050", {}, "torchscript", False),  # GhostNet
    ("mixnet_s", {}, "torchscript", False),  # MixNet
    ("mnasnet_small", {}, "torchscript", False),  # MnasNet
    ("rexnet_100", {}, "torchscript", False),  # ReXNet
    ("densenet121", {}, "torchscript", False),  # DenseNet
    ("dla34", {}, "torchscript", False),  # DLA (logits ~100 with random weights)
    ("hrnet_w18_small", {}, "torchscript", False),  # HRNet
    ("dpn68", {}, "torchscript", False),  # DPN
    ("selecsls42b", {}, "torchscript", False),  # SelecSLS
    ("ese_vovnet19b_dw", {}, "torchscript", False),  # VoVNet
    ("convnext_atto", {}, "torchscript", False),  # ConvNeXt
    ("edgenext_xx_small", {}, "torchscript", False),  # EdgeNeXt
    ("inception_next_atto", {}, "torchscript", False),  # InceptionNeXt
    ("poolformer_s12", {}, "torchscript", False),  # PoolFormer (MetaFormer)
    ("deit_tiny_patch16_224", VIT, "torchscript", False),  # DeiT / ViT
    ("pit_ti_224", VIT, "torchscript", False),  # PiT
    ("levit_128s", VIT, "torchscript", False),  # LeViT
    ("mobilevit_xxs", {}, "torchscript", False),  # MobileViT
    ("efficientvit_b0", {}, "torchscript", False),  # EfficientViT (MIT)
    ("test_coatnet", VIT, "torchscript", False),  # CoAtNet
    ("test_nfnet", {}, "torchscript", False),  # NFNet
    ("test_mambaout", {}, "torchscript", False),  # MambaOut
]


#: The part of the sweep the test suite runs every time (tests/test_export_sweep.py): one of each
#: kind of graph the export handles differently (plain convolution, the dynamo exporter,
#: reparameterization of convolutions and of attention blocks, ViT and hybrid attention, the
#: Resize of HRNet's fusion, timm's test models). The whole list takes minutes on two cores, so
#: it runs in benchmarks/export_parity.py, or in the test with DISTILL_FULL_SWEEP=1.
CORE = {
    "resnet18",
    "regnety_002",
    "repvgg_a0",
    "fastvit_t8",
    "hrnet_w18_small",
    "deit_tiny_patch16_224",
    "levit_128s",
    "mobilevit_xxs",
    "test_coatnet",
    "test_mambaout",
}
