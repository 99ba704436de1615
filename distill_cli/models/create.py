"""Teacher and student creation: timm models, their input configs, and their weights.

Model defaults travel with the model, as in timm: input size, mean, std and crop fraction come
from ``timm.data.resolve_model_data_config`` unless the recipe sets them, so distill keeps no
table of normalisation constants of its own (the order of recipe, side file and timm default
is `feed.py`'s).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import timm
import torch
from torch import nn

from distill_cli.errors import DistillError
from distill_cli.models.feed import (
    infer_num_classes,
    resolve_feed,
    resolve_info,
    same_as_side_file,
    side_file_chans,
    trained_size,
)
from distill_cli.models.hub_access import fetch_error, hub_fetch
from distill_cli.models.mismatch import ShapeMismatch
from distill_cli.models.names import check_model_name
from distill_cli.models.sizes import (
    Build,
    checkpoint_size,
    failure_reason,
    kwargs_advice,
    size_advice,
    size_kwargs,
)
from distill_cli.models.view import ModelInfo, model_view
from distill_cli.models.weights import load_weights, weights_source

if TYPE_CHECKING:
    from distill_cli.recipe.sections import ModelSpec
    from distill_cli.rundir.summary import WeightsSource


@dataclass
class Net:
    """A model together with its input config: what methods and evaluation are handed.

    `module` owns the weights (and their plain state-dict keys); calling the Net runs `runner`,
    which the engine may set to a compiled or DDP-wrapped version of the same module.
    """

    module: nn.Module
    info: ModelInfo
    runner: nn.Module | None = None
    #: where each fact of `info` came from (recipe, side file, timm default): the plan shows it
    sources: dict[str, str] = field(default_factory=dict)
    #: the keyword arguments timm built `module` with, beyond num_classes, in_chans and the
    #: size's `img_size` (`size_kwargs`): what the probe rebuilds it with at other sizes
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: the weights files loaded into it (an ensemble: its members'); empty for hub or random
    weights_files: list[WeightsSource] = field(default_factory=list)
    params: int = field(init=False)

    def __post_init__(self) -> None:
        self.params = sum(p.numel() for p in self.module.parameters())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # `is None`, not `or`: a compiled module (OptimizedModule) refuses bool() via len()
        return (self.module if self.runner is None else self.runner)(x)


_HUB, _INITIALISED = "timm hub", "initialised"
#: The plan's `weights` facts that name no entry of a checkpoint dict (a plain state dict is
#: `WeightsFile.described()`'s "checkpoint").
UNNAMED_WEIGHTS = frozenset({_HUB, _INITIALISED, "checkpoint"})


def create_net(
    spec: ModelSpec, num_classes: int, *, role: str | None = None, **overrides: Any
) -> Net:
    """Build a timm model from a recipe spec, load its weights, and resolve its input config.

    The input size (recipe, or the checkpoint's sidecar) reaches timm as `img_size` for the
    models that take it, so a ViT trained at 32x32 has a 32x32 position embedding. `role` is
    the recipe section the spec came from ("student", "teacher"): an error names its key
    (`student.input_size`), which the user can find; without it, the model's name.
    """
    check_model_name(spec.model, f"{role}.model" if role else "model")
    spec = side_file_chans(spec)
    section = role or spec.model
    same_as_side_file(spec, section)
    kwargs = size_kwargs(spec.model, trained_size(spec), {**spec.kwargs, **overrides})
    offline: str | None = None
    try:
        with hub_fetch(spec.pretrained) as offline:
            model = timm.create_model(
                spec.model,
                pretrained=spec.pretrained,
                num_classes=num_classes,
                in_chans=spec.in_chans,
                **kwargs,
            )
    except (OSError, RuntimeError) as exc:
        if spec.pretrained:
            raise fetch_error(spec.model, role, exc, offline) from exc
        raise _cannot_build(spec, num_classes, kwargs, exc, section) from exc
    except TypeError as exc:
        raise DistillError(f"bad model kwargs: {exc}", f"{section}.kwargs", "fix the key") from exc
    except (
        AssertionError,
        ValueError,
        IndexError,
        KeyError,
        AttributeError,
        ZeroDivisionError,
    ) as exc:
        raise _cannot_build(spec, num_classes, kwargs, exc, section) from exc
    own = _own_kwargs(spec, kwargs)
    weights = _HUB if spec.pretrained else _INITIALISED
    files: list[WeightsSource] = []
    if spec.checkpoint is not None:
        try:
            loaded = load_weights(model, spec.checkpoint, spec.strict, spec.checkpoint_key)
        except ShapeMismatch as exc:
            made_at = _made_at(exc, Build(spec.model, num_classes, spec.in_chans, own))
            if made_at is None:
                raise
            raise made_at from exc
        weights = loaded.weights
        files = [weights_source(spec.checkpoint, loaded.entry)]
    info, sources = resolve_feed(model, spec, num_classes)
    return Net(
        model, info, sources={**sources, "weights": weights}, kwargs=own, weights_files=files
    )


def _made_at(exc: ShapeMismatch, build: Build) -> DistillError | None:
    """A checkpoint of a fixed-size model made at another size: the error names that size,
    found by rebuilding the model at other sizes on the meta device (`checkpoint_size`)."""
    side = checkpoint_size(build, exc.shapes)
    if side is None:
        return None
    return DistillError(
        f"{exc.what}; it was made for another input size: {side}",
        exc.where,
        f"set input_size: {side} (the size it was trained at), or write it into its .json "
        "side file",
    )


def _own_kwargs(spec: ModelSpec, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The kwargs a model was built with, less the `img_size` distill added for the input size
    (`size_kwargs`): what a rebuild at another size starts from."""
    return {k: v for k, v in kwargs.items() if k != "img_size" or "img_size" in spec.kwargs}


def _cannot_build(
    spec: ModelSpec, num_classes: int, kwargs: dict[str, Any], exc: BaseException, section: str
) -> DistillError:
    """timm refused to build the model: with the size it was given, the nearest sizes it
    builds and runs at (`size_advice`), else the general advice; `section` is the recipe key
    the advice is about (`student`)."""
    detail = failure_reason(exc)  # a bare assert in timm's constructor: its source line
    shown = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    what = f"timm cannot build {spec.model!r}" + (f" with {shown}" if shown else "")
    what += f" ({detail})"
    size = trained_size(spec)
    own = _own_kwargs(spec, kwargs)
    build = Build(spec.model, num_classes, spec.in_chans, own)
    advice = kwargs_advice(build, size)
    if advice is None and size is not None and not spec.pretrained:
        advice = size_advice(build, size)
    if advice is not None:
        return DistillError(f"{what}; {advice.fact}", f"{section}.{advice.key}", advice.hint)
    return DistillError(
        what,
        f"{section}.input_size",
        "pick an input size the model supports (e.g. a multiple of its patch/window size)",
    )


class Ensemble(nn.Module):
    """Averages the logits of several teachers, each fed its own view of the same pixels.

    It takes [0, 1] pixels (its Net's mean/std are the identity) and resizes and normalizes them
    per member, so each member sees exactly what it would see alone.
    """

    def __init__(self, nets: list[Net]) -> None:
        super().__init__()
        self.members = nn.ModuleList(net.module for net in nets)
        self.infos = [net.info for net in nets]
        self.sources = [net.sources for net in nets]
        self.kwargs = [net.kwargs for net in nets]  # what the probe rebuilds a member with

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        channels_last = pixels.is_contiguous(memory_format=torch.channels_last)
        logits = [
            member(model_view(pixels, info, channels_last)).float()
            for member, info in zip(self.members, self.infos, strict=True)
        ]
        return torch.stack(logits).mean(0)


def create_teacher(specs: list[ModelSpec], data_classes: int | None) -> Net:
    """One teacher, or an ensemble of several whose logits are averaged. An ensemble member's
    errors name its key as `--set` writes it (`teacher.1.model`), not the first one's."""
    roles = ["teacher"] if len(specs) == 1 else [f"teacher.{i}" for i in range(len(specs))]
    nets = [
        create_net(spec, infer_num_classes(spec, data_classes), role=role)
        for spec, role in zip(specs, roles, strict=True)
    ]
    if len(nets) == 1:
        return nets[0]
    classes = {net.info.num_classes for net in nets}
    if len(classes) != 1:
        raise DistillError(
            f"ensemble teachers predict different class counts {sorted(classes)}",
            "teacher",
            "ensemble teachers of one label space (their outputs are averaged class for class)",
        )
    chans = max(net.info.in_chans for net in nets)
    info = ModelInfo(
        name="+".join(net.info.name for net in nets),
        num_classes=classes.pop(),
        in_chans=chans,
        input_size=(
            max(net.info.input_size[0] for net in nets),
            max(net.info.input_size[1] for net in nets),
        ),
        mean=(0.0,) * chans,
        std=(1.0,) * chans,
        crop_pct=nets[0].info.crop_pct,
    )
    return Net(Ensemble(nets), info, weights_files=[f for net in nets for f in net.weights_files])


def count_flops(module: nn.Module, shape: tuple[int, int, int]) -> float | None:
    """Forward FLOPs at batch 1 (a multiply-add counts 2), via torch's FlopCounterMode.

    The input lives where the weights do, so a model built on the meta device (no memory, no
    time) is counted as exactly as a real one. No inference_mode/no_grad: under them the
    counter's module tracking fails on some models (timm's test_vit3), and a batch-1 graph
    costs little.
    """
    from torch.utils.flop_counter import FlopCounterMode

    module.eval()
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    try:
        with warnings.catch_warnings(), FlopCounterMode(display=False) as counter:
            warnings.simplefilter("ignore")
            module(torch.zeros(1, *shape, device=device))
    except Exception:  # an op the counter cannot trace: report no figure rather than fail
        return None
    return float(counter.get_total_flops())


@dataclass(frozen=True)
class ModelCost:
    params: int
    gflops: float | None
    input_size: tuple[int, int]


def model_cost(spec: ModelSpec, num_classes: int) -> ModelCost:
    """Parameters and GFLOPs of a recipe's model at its input size, without its weights.

    Built on the meta device, so a report can describe a 300M-parameter teacher in a second
    without memory or a checkpoint at hand.
    """
    check_model_name(spec.model)
    spec = side_file_chans(spec)
    kwargs = size_kwargs(spec.model, trained_size(spec), spec.kwargs)
    with torch.device("meta"):
        model = timm.create_model(
            spec.model, num_classes=num_classes, in_chans=spec.in_chans, **kwargs
        )
    info = resolve_info(model, spec, num_classes)
    params = sum(p.numel() for p in model.parameters())
    flops = count_flops(model, (info.in_chans, *info.input_size))
    return ModelCost(params, None if flops is None else flops / 1e9, info.input_size)
