"""Which input sizes a timm model is built for and runs at.

Models with fixed-size position embeddings, windows or attention biases take timm's
`img_size` at creation (`accepts_img_size`, `size_kwargs`: the one rule every build of a
recipe's model follows). When a model cannot be built or run at the recipe's size, the same
build is retried on the meta device (no memory, no weights, shapes only) at other sizes, so
the error names the nearest sizes it does run at (`size_advice`) instead of leaving the user
to guess a grid: CrossViT's two patch grids, HaloNet's 8-pixel blocks at stride 32,
MaxViT's windows, Inception's minimum side.
"""

from __future__ import annotations

import functools
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

#: The sizes tried: timm's default, then every multiple of SIZE_STEP from MIN_SIDE up to twice
#: the side (or the default), nearest first, for at most SEARCH_SECONDS (an error path: a few
#: seconds are fine; what was found by then is named).
SIZE_STEP, MIN_SIDE, SEARCH_SECONDS = 8, 16, 10.0


@functools.lru_cache(maxsize=256)
def accepts_img_size(name: str) -> bool:
    """Whether timm builds `name` for a given input size (`img_size`): models with fixed-size
    position embeddings or windows (ViT, DeiT, Swin, LeViT...) must be told the size at
    creation, while convnets take any size and refuse the keyword. Probed on the meta device:
    no memory, no weights."""
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            timm.create_model(name, num_classes=1, img_size=224)
    except TypeError as exc:
        return "img_size" not in str(exc)
    except Exception:  # the probe size itself may not suit the model; it takes the keyword
        return True
    return True


def size_kwargs(name: str, size: tuple[int, int] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` plus `img_size=size` for the models timm builds for one input size (unless
    the kwargs set it): the one rule every build of a recipe's model follows."""
    if size is not None and "img_size" not in kwargs and accepts_img_size(name):
        return {**kwargs, "img_size": size}
    return dict(kwargs)


@dataclass(frozen=True)
class Build:
    """A model as distill builds it, short of the size: what the meta-device retries rebuild."""

    name: str
    num_classes: int
    in_chans: int
    #: timm keyword arguments beyond num_classes, in_chans and the size's img_size
    kwargs: dict[str, Any] = field(default_factory=dict)

    def meta(self, in_chans: int, size: tuple[int, int] | None) -> nn.Module | None:
        """The model on the meta device in eval mode, built for `size` (None: no `img_size`);
        None when timm cannot build it so."""
        kwargs = {k: v for k, v in self.kwargs.items() if k not in ("pretrained", "pretrained_cfg")}
        try:
            with torch.device("meta"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = timm.create_model(
                    self.name,
                    num_classes=self.num_classes,
                    in_chans=in_chans,
                    **size_kwargs(self.name, size, kwargs),
                )
        except Exception:
            return None
        return model.eval()


def runs_on_meta(
    build: Build, in_chans: int, size: tuple[int, int], built: nn.Module | None = None
) -> bool | None:
    """Whether `build`, made for `size` and `in_chans` (or `built`, such a model that does not
    depend on the size), runs a batch there, on the meta device. None when that cannot tell
    (an op without a meta kernel, data-dependent code)."""
    model = built if built is not None else build.meta(in_chans, size)
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


def nearest_sizes(build: Build, size: tuple[int, int]) -> tuple[int | None, int | None]:
    """The nearest square sides below and above `size`'s longer side (or at it, for a
    non-square size) that `build` runs at
    (`runs_on_meta`); (None, None) when the meta device does not reproduce the failure at
    `size` (its verdicts then mean nothing) or `build` is no timm model (an ensemble). A size
    farther than one found on its side is skipped; a model that takes no `img_size` is built
    once for all of them."""
    if not timm.is_model(build.name.split(".")[0]):
        return None, None
    chans = build.in_chans
    fixed = accepts_img_size(build.name) or "img_size" in build.kwargs
    once = None if fixed else build.meta(chans, None)
    if runs_on_meta(build, chans, size, once) is not False:
        return None, None
    side = max(size)
    default = timm.get_pretrained_cfg_value(build.name.split(".")[0], "input_size")
    default_side = int(default[-1]) if default else side
    grid = range(MIN_SIDE, max(2 * side, default_side) + 1, SIZE_STEP)
    below: int | None = None
    above: int | None = None
    deadline = time.monotonic() + SEARCH_SECONDS
    for s in [default_side, *sorted(grid, key=lambda s: (abs(s - side), s))]:
        # the size's own side is known to fail only when the size is square: at 64x96 the
        # square 96 may run (Inception's minimum side is 75), and is the nearest to name
        if (s == side and size[0] == size[1]) or time.monotonic() > deadline:
            continue
        if (s < side and below is not None and s <= below) or (
            s > side and above is not None and s >= above
        ):
            continue
        if runs_on_meta(build, chans, (s, s), once):
            below, above = (s, above) if s < side else (below, s)
    return below, above


def failure_reason(exc: BaseException) -> str:
    """Why a model failed to build or run, in one line: the exception's first line; for one
    without a message (a bare `assert`, in timm's constructor or in forward), the failing source
    line and where it is, which says what the model requires (`AssertionError` alone says
    nothing)."""
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


@dataclass(frozen=True)
class SizeAdvice:
    """What a failed build or probe adds to its error: a fact and what to set."""

    fact: str
    key: str  # the recipe key to change: "in_chans" or "input_size"
    hint: str


def kwargs_advice(build: Build, size: tuple[int, int] | None) -> SizeAdvice | None:
    """The recipe's `kwargs` as the cause of a failed build or probe: the same model without
    them builds and runs at `size` on the meta device (`global_pool: foo`, `output_stride: 7`
    and `drop_rate: 2` were blamed on the input size). None when there are none, or when the
    model fails without them too (then the size or channels are the cause)."""
    own = {k: v for k, v in build.kwargs.items() if k != "img_size"}
    if not own:
        return None
    bare = Build(build.name, build.num_classes, build.in_chans)
    model = bare.meta(build.in_chans, size)
    if model is None or (size is not None and not runs_on_meta(bare, build.in_chans, size, model)):
        return None
    shown = ", ".join(f"{k}: {v!r}" for k, v in own.items())
    return SizeAdvice(
        f"it builds and runs without its kwargs ({shown})",
        "kwargs",
        "fix or remove those kwargs (they are passed to timm.create_model as written; see the "
        "model's class in timm for the values it takes)",
    )


def size_advice(build: Build, size: tuple[int, int]) -> SizeAdvice | None:
    """Why `build` does not run at `size`, when the meta device can tell: the channel count
    (it runs with 3 channels, not the recipe's), else the nearest sizes it runs at."""
    if (
        build.in_chans != 3
        and timm.is_model(build.name.split(".")[0])
        and runs_on_meta(build, build.in_chans, size) is False
        and runs_on_meta(build, 3, size)
    ):
        return SizeAdvice(
            "it runs with 3 channels",
            "in_chans",
            "set in_chans: 3 (grayscale images are fed to it repeated to 3 channels)",
        )
    below, above = nearest_sizes(build, size)
    found = [s for s in (below, above) if s is not None]
    if not found:
        return None
    pick = found[-1]
    default = timm.get_pretrained_cfg_value(build.name.split(".")[0], "input_size")
    also = ""
    if default and default[-1] != pick:
        also = f"; timm's default for {build.name} is input_size: {default[-1]}"
    return SizeAdvice(
        "it runs at " + " and ".join(f"{s} px" for s in found) + " (the nearest sizes)",
        "input_size",
        f"set input_size: {pick} (or another size the model accepts{also})",
    )


def checkpoint_size(build: Build, shapes: dict[str, tuple[int, ...]]) -> int | None:
    """The square side `build` must be made at (`img_size`) for every tensor of a checkpoint
    (`shapes`, its names and shapes) to fit: timm's default side first, then every multiple of
    16 nearest to it, on the meta device, for at most SEARCH_SECONDS. None for a model built
    the same at every size, or when no size fits (then it is not the size that differs)."""
    if not accepts_img_size(build.name) or "img_size" in build.kwargs:
        return None
    default = timm.get_pretrained_cfg_value(build.name.split(".")[0], "input_size")
    default_side = int(default[-1]) if default else 224
    grid = range(MIN_SIDE, max(2 * default_side, 512) + 1, 16)
    deadline = time.monotonic() + SEARCH_SECONDS
    for s in [default_side, *sorted(grid, key=lambda s: (abs(s - default_side), s))]:
        if time.monotonic() > deadline:
            return None
        model = build.meta(build.in_chans, (s, s))
        if model is None:
            continue
        own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if all(own.get(k) == shape for k, shape in shapes.items()):
            return s
    return None
