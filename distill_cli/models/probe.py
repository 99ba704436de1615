"""The build-time probe: one dummy batch through a freshly built model, before any training.

A model that cannot run at its input size (a position embedding or attention bias of another
size, a too-small input for the downsampling, a block size the feature map must divide) or
that does not answer with one row of class logits per image fails here, in `--dry-run` and
before the first step, as one line naming the recipe key to change, instead of a traceback at
step 1 or at the first evaluation. When it fails, the same model is rebuilt on the meta device
(no memory, no weights, shapes only) to say which fact is wrong: the channel count, or the
size, with the nearest sizes it does run at, so a user does not guess a fixed-size model's
grid (CrossViT's two patch grids, HaloNet's 8-pixel blocks at stride 32).
"""

from __future__ import annotations

import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from distill_cli.errors import DistillError
from distill_cli.models.create import Net, accepts_img_size, size_kwargs, square
from distill_cli.models.view import ModelInfo

#: The sizes tried when the probe fails: every multiple of SIZE_STEP from MIN_SIDE up, nearest
#: first, for at most SEARCH_SECONDS (a failed probe is an error path: a few seconds is fine).
SIZE_STEP, MIN_SIDE, SEARCH_SECONDS = 8, 16, 10.0


def probe(net: Net, role: str, device: torch.device) -> None:
    """One dummy batch through `net` at its input size: shape problems (a position embedding
    of another size, a too-small input for the downsampling) show in `--dry-run` and before
    any training, as one line instead of a traceback at step 1. So does an output that is not
    one row of class logits per image (inception_v3's `aux_logits` pair, `global_pool: ''`'s
    feature map), which every method, the evaluation and the export assume."""
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
    with the recipe's, else the size, naming the nearest sizes it runs at."""
    info = net.info
    h, w = info.input_size
    what = f"the {role} {info.name} fails on a {info.in_chans}x{h}x{w} input: {_reason(exc)}"
    if (
        timm.is_model(info.name.split(".")[0])
        and info.in_chans != 3
        and runs_on_meta(net, info.in_chans, (h, w)) is False
        and runs_on_meta(net, 3, (h, w))
    ):
        return DistillError(
            f"{what}; it runs with 3 channels",
            f"{role}.in_chans",
            "set in_chans: 3 (grayscale images are fed to it repeated to 3 channels)",
        )
    below, above = nearest_sizes(net)
    found = [s for s in (below, above) if s is not None]
    if not found:
        return DistillError(
            what,
            f"{role}.input_size",
            "set input_size (and in_chans) to what the model accepts" + _size_hint(info),
        )
    runs = " and ".join(f"{s} px" for s in found)
    pick = above if above is not None else below
    default = timm.get_pretrained_cfg_value(info.name.split(".")[0], "input_size")
    also = ""
    if default and default[-1] != pick:
        also = f"; timm's default for {info.name} is input_size: {default[-1]}"
    return DistillError(
        f"{what}; it runs at {runs} (the nearest sizes)",
        f"{role}.input_size",
        f"set input_size: {pick} (or another size the model accepts{also})",
    )


def _reason(exc: BaseException) -> str:
    """The exception's first line; for one without a message (a bare `assert`), the failing
    source line and where it is, which says what the model requires."""
    lines = str(exc).strip().splitlines()
    if lines:
        return f"{type(exc).__name__}: {lines[0][:200]}"
    frames = traceback.extract_tb(exc.__traceback__)
    torch_dir = str(Path(torch.__file__).parent)
    own = [f for f in frames if not f.filename.startswith(torch_dir)]  # not torch._assert's
    if not own:
        return type(exc).__name__
    last = own[-1]
    code = (last.line or "").strip()[:160]
    return f"{type(exc).__name__} at {Path(last.filename).name}:{last.lineno}: {code}"


def runs_on_meta(
    net: Net, in_chans: int, size: tuple[int, int], built: nn.Module | None = None
) -> bool | None:
    """Whether `net`'s architecture, rebuilt as distill builds it for `size` and `in_chans`
    (or `built`, such a rebuild that does not depend on the size), runs a batch there: on the
    meta device, shapes only. None when that cannot tell (an op without a meta kernel,
    data-dependent code)."""
    model = built if built is not None else _meta_build(net, in_chans, size)
    if model is None:  # timm cannot build it for that size or channel count
        return False
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model(torch.zeros(2, in_chans, *size, device="meta"))
    except NotImplementedError:
        return None
    except Exception as exc:
        return None if "meta" in str(exc).lower() else False
    return True


def _meta_build(net: Net, in_chans: int, size: tuple[int, int] | None) -> nn.Module | None:
    """`net`'s architecture on the meta device, in eval mode, built as distill builds it for
    `size` (None: a model that takes no `img_size`); None when timm cannot build it."""
    name = net.info.name
    kwargs = {k: v for k, v in net.kwargs.items() if k not in ("pretrained", "pretrained_cfg")}
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = timm.create_model(
                name,
                num_classes=net.info.num_classes,
                in_chans=in_chans,
                **size_kwargs(name, size, kwargs),
            )
    except Exception:
        return None
    return model.eval()


def nearest_sizes(net: Net) -> tuple[int | None, int | None]:
    """The nearest square sizes below and above the net's input size that it runs at
    (`runs_on_meta`), (None, None) when the meta device does not reproduce the failure (its
    verdicts then mean nothing). timm's default size is tried first, then every SIZE_STEP
    multiple nearest first (a size farther than one found on its side is skipped), for at
    most SEARCH_SECONDS; a model that takes no `img_size` is
    built once for all of them."""
    h, w = net.info.input_size
    name, chans = net.info.name, net.info.in_chans
    if not timm.is_model(name.split(".")[0]):  # an ensemble's joined name
        return None, None
    once = (
        None
        if accepts_img_size(name) or "img_size" in net.kwargs
        else _meta_build(net, chans, None)
    )
    if runs_on_meta(net, chans, (h, w), once) is not False:
        return None, None
    side = max(h, w)
    default = timm.get_pretrained_cfg_value(name.split(".")[0], "input_size")
    default_side = square(default)[0] if default else side
    top = max(2 * side, default_side)
    grid = sorted(range(MIN_SIDE, top + 1, SIZE_STEP), key=lambda s: (abs(s - side), s))
    below: int | None = None
    above: int | None = None
    deadline = time.monotonic() + SEARCH_SECONDS
    for s in [default_side, *grid]:
        if s == side or time.monotonic() > deadline:
            continue
        if s < side and below is not None and s <= below:
            continue
        if s > side and above is not None and s >= above:
            continue
        if runs_on_meta(net, chans, (s, s), once):
            if s < side:
                below = s
            else:
                above = s
    return below, above


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
