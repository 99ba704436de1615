"""Structural reparameterization before export: ship the inference form of a model.

RepVGG, MobileOne, FastViT, RepGhost, EfficientViT-style blocks and others train with parallel
branches (3x3 + 1x1 + identity, each with its BatchNorm) that are algebraically one convolution
at inference. timm fuses them (``timm.utils.model.reparameterize_model``: a module's ``fuse()``,
``reparameterize()`` or ``switch_to_deploy()``); exporting without that ships the training-time
graph, about twice the nodes and slower. The fused copy is what is exported; the parity gate
compares the ONNX file with the *unfused* model, so the fusion itself is checked too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

HOOKS = ("fuse", "reparameterize", "switch_to_deploy")


def fusable(module: nn.Module) -> list[str]:
    """Names of the submodules timm would reparameterize (the root itself is never one)."""
    return [
        name
        for name, child in module.named_modules()
        if name and any(callable(getattr(child, hook, None)) for hook in HOOKS)
    ]


@dataclass
class Reparam:
    """What reparameterization did: `module` is what to export (the original when not applied)."""

    module: nn.Module
    requested: bool | None
    applied: bool
    blocks: int
    params_before: int
    params_after: int
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested": "auto" if self.requested is None else self.requested,
            "applied": self.applied,
            "blocks": self.blocks,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "reason": self.reason,
        }


def reparameterize(module: nn.Module, requested: bool | None) -> Reparam:
    """A fused copy of `module` when it has reparameterizable blocks and `requested` is not
    False (None: automatic, i.e. on when there is something to fuse); `module` is untouched."""
    from timm.utils.model import reparameterize_model

    blocks = fusable(module)
    params = sum(p.numel() for p in module.parameters())
    if requested is False:
        return Reparam(module, requested, False, len(blocks), params, params, "--no-reparam")
    if not blocks:
        return Reparam(module, requested, False, 0, params, params, "no reparameterizable blocks")
    fused = reparameterize_model(module.eval(), inplace=False).eval()
    after = sum(p.numel() for p in fused.parameters())
    return Reparam(fused, requested, True, len(blocks), params, after)
