"""The build-time probe: one dummy batch through a freshly built model, before any training.

A model that cannot run at its input size (a position embedding or attention bias of another
size, a too-small input for the downsampling, a block size the feature map must divide) or
that does not answer with one row of class logits per image fails here, in `--dry-run` and
before the first step, as one line naming the recipe key to change, instead of a traceback at
step 1 or at the first evaluation; `models.sizes` says which fact is wrong (the channel count,
or the size, with the nearest sizes the model runs at).
"""

from __future__ import annotations

from typing import Any

import timm
import torch

from distill_cli.errors import DistillError
from distill_cli.models.create import Ensemble, Net
from distill_cli.models.feed import square
from distill_cli.models.sizes import (
    Build,
    accepts_img_size,
    failure_reason,
    kwargs_advice,
    size_advice,
)
from distill_cli.models.view import ModelInfo


def probe(net: Net, role: str, device: torch.device) -> None:
    """One dummy batch through `net` at its input size: shape problems (a position embedding
    of another size, a too-small input for the downsampling) show in `--dry-run` and before
    any training, as one line instead of a traceback at step 1. So does an output that is not
    one row of class logits per image (inception_v3's `aux_logits` pair, `global_pool: ''`'s
    feature map), which every method, the evaluation and the export assume. An ensemble's
    members are probed alone first, so an error names the member (`teacher.1.input_size`)
    and its own input, not the joined name at the largest member's size."""
    if isinstance(net.module, Ensemble):
        parts = zip(net.module.members, net.module.infos, net.module.kwargs, strict=True)
        for i, (member, info, kwargs) in enumerate(parts):
            probe(Net(member, info, kwargs=kwargs), f"{role}.{i}", device)
    h, w = net.info.input_size
    modes = [(m, m.training) for m in net.module.modules()]
    net.module.eval()
    try:
        with torch.no_grad():
            out = net.module(torch.zeros(2, net.info.in_chans, h, w, device=device))
    except Exception as exc:
        raise _cannot_run(net, role, exc) from exc
    finally:
        for module, mode in modes:
            module.training = mode
    _check_logits(out, net.info, role)


def _cannot_run(net: Net, role: str, exc: BaseException) -> DistillError:
    """The probe's failure as one line: the channel count when the model runs with 3 but not
    with the recipe's, else the size, naming the nearest sizes it runs at (`size_advice`)."""
    info = net.info
    h, w = info.input_size
    what = f"the {role} {info.name} fails on a {info.in_chans}x{h}x{w} input: {failure_reason(exc)}"
    build = Build(info.name, info.num_classes, info.in_chans, net.kwargs)
    advice = kwargs_advice(build, (h, w)) or size_advice(build, (h, w))
    if advice is None:
        return DistillError(
            what,
            f"{role}.input_size",
            "set input_size (and in_chans) to what the model accepts" + _size_hint(info),
        )
    return DistillError(f"{what}; {advice.fact}", f"{role}.{advice.key}", advice.hint)


def _check_logits(out: Any, info: ModelInfo, role: str) -> None:
    expected = (2, info.num_classes)
    if isinstance(out, torch.Tensor) and tuple(out.shape) == expected:
        return
    if isinstance(out, tuple | list):
        got = f"{len(out)} outputs (an auxiliary head's, e.g. aux_logits)"
        hint = "build it with one classifier output: drop aux_logits (or the like) from kwargs"
    else:
        shape = getattr(out, "shape", None)
        got = type(out).__name__ if shape is None else "shape " + "x".join(map(str, shape))
        hint = "keep timm's classifier head and pooling: drop num_classes/global_pool from kwargs"
    raise DistillError(
        f"the {role} {info.name} returns {got}, not {expected[0]}x{expected[1]} class logits",
        f"{role}.kwargs",
        hint,
    )


def _size_hint(info: ModelInfo) -> str:
    """timm's own size for the model, when the probe failed at another: the one size a model
    built for a fixed input (EfficientFormer's 7x7 attention biases) runs at."""
    name = info.name.split(".")[0]
    if not timm.is_model(name):  # an ensemble's joined name
        return ""
    default = timm.get_pretrained_cfg_value(name, "input_size")
    if not default or square(default) == tuple(info.input_size):
        return ""
    fixed = timm.get_pretrained_cfg_value(name, "fixed_input_size")
    side = f"{default[-2]}" if default[-2] == default[-1] else f"[{default[-2]}, {default[-1]}]"
    if fixed and not accepts_img_size(name):
        return f" (timm builds {name} for {side} px only: input_size: {side})"
    return f" (timm's default for {name}: input_size: {side}" + (
        ", which it may only accept)" if fixed else ")"
    )
