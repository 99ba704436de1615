"""Optimizer and learning-rate schedule: timm's factory, plus warmup + cosine by step.

The schedule is a pure function of the step, so a resumed run needs no scheduler state: the
learning rate at step s is the same whether or not the run was interrupted before it.
"""

from __future__ import annotations

import math
from typing import Literal

import timm.optim
import torch
from torch import nn


def build_optimizer(
    module: nn.Module,
    name: Literal["adamw", "sgd"],
    lr: float,
    weight_decay: float,
    device: torch.device,
    *,
    betas: tuple[float, float] = (0.9, 0.999),
    momentum: float = 0.9,
    weight_decay_scale: Literal["lr", "schedule"] = "lr",
) -> torch.optim.Optimizer:
    """AdamW (fused on CUDA) or SGD; no weight decay on biases and norm layers (timm's default).

    Plain arguments, as timm's `create_optimizer_v2` takes, so the optimizer needs no recipe
    schema. `betas` is AdamW's, `momentum` SGD's (Nesterov); `weight_decay_scale` is explained
    at :func:`decay_coefficient`.
    """
    kwargs: dict = {}
    if name == "adamw":
        kwargs["betas"] = tuple(betas)
    else:
        kwargs["momentum"] = momentum
        kwargs["nesterov"] = True
    if device.type == "cuda":
        kwargs["fused"] = True
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: every parameter is frozen")
    decay = decay_coefficient(lr, weight_decay, weight_decay_scale)
    return timm.optim.create_optimizer_v2(module, opt=name, lr=lr, weight_decay=decay, **kwargs)


def decay_coefficient(
    lr: float, weight_decay: float, scale: Literal["lr", "schedule"] = "lr"
) -> float:
    """The `weight_decay` to hand PyTorch's AdamW so that each step decays as the recipe says.

    AdamW shrinks a weight by `lr_t * weight_decay` per step, lr_t being the scheduled learning
    rate. big_vision (the function-matching paper's code) adds `wd * param` *after* scaling by
    the base lr, so its decay per step is `schedule_t * wd`: the paper's `lr 1e-2, wd 1e-4`
    is AdamW's `weight_decay 1e-2`. `scale: schedule` divides by the base lr, so published
    values can be used as they are.
    """
    if scale == "schedule":
        return weight_decay / lr
    return weight_decay


def lr_factor(step: int, total: int, warmup: int = 0, min_lr_ratio: float = 0.0) -> float:
    """Linear warmup to 1 over `warmup` steps, then cosine decay to `min_lr_ratio` at the last
    of `total` steps."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> float:
    """Set every group's lr to `base_lr * factor` (times timm's per-group `lr_scale`, e.g.
    layer decay) and return it: the schedule is applied by hand, so no scheduler state needs
    saving for a resume."""
    lr = base_lr * factor
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return lr
