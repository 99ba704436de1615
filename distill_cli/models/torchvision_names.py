"""Weights saved from a torchvision model, told by their key names.

torchvision's resnet, resnext and densenet name their weights as timm's do and load as they
are; its mobilenet, efficientnet, convnext, swin, regnet, vgg and ViT do not, and loading one
into the timm model of the same name failed with bare key counts ("314 unexpected") that read
as a wrong model name.
timm converts torchvision weights only for the families it ships them for (`.tv_in1k` tags,
each model's pretrained filter), and only as it loads them from its hub: there is no public
converter for a file, so the message says which timm weights to use instead.
"""

from __future__ import annotations

import re

#: torchvision's models by a key name only they have, in the order they are told apart, with
#: what to do in timm: the families timm ships torchvision's own ImageNet weights for (a
#: `.tv_in1k`/`.tv2_in1k` tag, converted by the model's pretrained filter when timm loads them
#: from its hub), else the nearest timm model, whose weights are timm's own (timm 1.0 has no
#: converter for a torchvision file of these).
_TORCHVISION = (
    (
        "vit",
        re.compile(r"conv_proj\.weight|encoder\.layers\.encoder_layer_"),
        "vit_base_patch16_224",
    ),
    ("convnext", re.compile(r"features\.\d+\.\d+\.layer_scale"), "convnext_tiny"),
    (
        "swin",
        re.compile(r"features\.\d+\.\d+\.attn\.relative_position"),
        "swin_tiny_patch4_window7_224",
    ),
    ("efficientnet", re.compile(r"features\.\d+\.\d+\.block\.\d+\.\d+\."), "efficientnet_b0"),
    ("mobilenet_v3", re.compile(r"features\.\d+\.block\.\d+\.\d+\."), "mobilenetv3_large_100"),
    ("mobilenet_v2", re.compile(r"features\.\d+\.conv\.\d+\.\d+\."), "mobilenetv2_100"),
    ("regnet", re.compile(r"trunk_output\."), "regnety_016.tv2_in1k"),
    ("vgg", re.compile(r"classifier\.6\.weight"), "vgg16.tv_in1k"),
)


def torchvision_note(
    unexpected: list[str], missing: list[str], built: str | None
) -> tuple[str, str] | None:
    """What is wrong and what to do, when a checkpoint that does not fit the model (`unexpected`
    and `missing` keys) was saved from a torchvision model whose key names timm's do not share
    (resnet's are timm's, and load): the key counts alone read as "wrong model"; None if not."""
    found = next((row for row in _TORCHVISION if any(row[1].match(k) for k in unexpected)), None)
    if found is None or not missing:
        return None
    family, pattern, timm_name = found
    example = next(k for k in unexpected if pattern.match(k))
    what = f"it is a torchvision {family} state_dict (torchvision's key names, e.g. {example})" + (
        f", not one of timm's {built!r}" if built else ""
    )
    if timm_name is not None and ".tv" in timm_name:
        fix = (
            f"timm ships torchvision's ImageNet weights for {family} as pretrained tags (e.g. "
            f"model: {timm_name}, pretrained: true), converted as it loads them"
        )
    else:
        fix = (
            f"timm has no converter for torchvision {family} weights: use timm's own (e.g. "
            f"model: {timm_name}, pretrained: true) or train the model "
            "in timm (torchvision's resnet/resnext keys are timm's and load as they are)"
        )
    return what, fix
