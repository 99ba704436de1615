"""What a model is fed: its input config (`ModelInfo`) and its own view of shared pixels.

Every model in a run (student, teacher, each ensemble member) looks at the same [0, 1] pixels,
resized to its own input size and normalized with its own mean/std. The config and the code
that applies it live together here, below both `models` (which builds the configs) and the
batch augmentation in `data.augment` (which makes the shared pixels), so neither imports the
other.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

#: The one resize distill applies to every model view (`resize`): the run's evaluation, the
#: checkpoint side file and the export's preprocessing metadata all name it.
INTERPOLATION = "bilinear"
#: Image files are decoded to a square of this many times the largest model input side for
#: evaluation (the centre crop then takes `crop_pct` of it), and to this many times for
#: training crops, unless the recipe sets `data.load_size`.
EVAL_LOAD_RATIO, TRAIN_LOAD_RATIO = 1.15, 1.5


def load_sizes(view_side: int, load_size: int | None) -> tuple[int, int]:
    """(train, eval) decode sizes of image files for models whose largest input side is
    `view_side`: the recipe's `data.load_size`, else the ratios above. The run's streams and
    the export's inputs both ask here, so the export decodes exactly as the run evaluated."""
    if load_size:
        return load_size, load_size
    return round(view_side * TRAIN_LOAD_RATIO), round(view_side * EVAL_LOAD_RATIO)


@dataclass(frozen=True)
class ModelInfo:
    """What anyone needs to feed a model: its identity and its input config."""

    name: str
    num_classes: int
    in_chans: int
    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float
    interpolation: str = INTERPOLATION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]."""
    return images.float().div_(255.0)


#: ITU-R BT.601 luma weights: how RGB pixels feed a 1-channel model.
LUMA = (0.299, 0.587, 0.114)


#: The channel counts distill's data has: every photo is decoded to RGB (RGBA composited on
#: white, 16-bit scaled), Fashion-MNIST and `synthetic.channels: 1` are grayscale. A 4-channel
#: (RGBA, RGB-NIR) model was told to "use 4-channel data", which no data source gives.
DATA_CHANNELS = (1, 3)


def channels_fit(have: int, channels: int) -> bool:
    """Whether `match_channels` can feed `have`-channel images to a `channels`-channel model:
    the same count, grayscale to any, RGB to grayscale."""
    return have == channels or have == 1 or (have == 3 and channels == 1)


def match_channels(
    x: torch.Tensor, channels: int, luma: torch.Tensor | None = None
) -> torch.Tensor:
    """Grayscale feeds 3-channel models by repeat; RGB feeds 1-channel models as luminance.

    `luma`: the (1, 3, 1, 1) weights already on the device (a compiled caller passes them in);
    by default the per-device cached copy.
    """
    have = x.shape[1]
    if have == channels:
        return x
    if have == 1:
        return x.expand(-1, channels, -1, -1)
    if have == 3 and channels == 1:
        weights = luma if luma is not None else _constant(LUMA, x.device, x.dtype)
        return (x * weights).sum(1, keepdim=True)
    raise ValueError(f"cannot feed {have}-channel images to a {channels}-channel model")


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize (a no-op at the same size): what export's preprocessing
    reproduces, so it is the one resize every model view uses."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode=INTERPOLATION, antialias=True, align_corners=False)


def normalize(x: torch.Tensor, info: ModelInfo) -> torch.Tensor:
    """Per-model channel adaptation and mean/std normalization of [0, 1] pixels."""
    return normalizer(info, x.device, x.dtype)(x)


@dataclass(frozen=True, eq=False)
class Normalizer:
    """One model's channel adaptation and mean/std as tensors already on the device.

    Plain tensors, looked up once: a compiled caller (the batched views) takes them as inputs
    instead of building constants inside its graph, and an eager caller does no host-to-device
    copy per step.
    """

    in_chans: int
    mean: torch.Tensor
    std: torch.Tensor
    luma: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (match_channels(x, self.in_chans, self.luma) - self.mean) / self.std


def normalizer(
    info: ModelInfo, device: torch.device, dtype: torch.dtype = torch.float32
) -> Normalizer:
    return Normalizer(
        info.in_chans,
        _constant(tuple(info.mean), device, dtype),
        _constant(tuple(info.std), device, dtype),
        _constant(LUMA, device, dtype),
    )


@functools.lru_cache(maxsize=64)
def _constant(values: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(1, C, 1, 1) per-channel constants, made once per device: building them from Python
    lists on every step costs a host-to-device copy per model per step, which is felt where
    small images make steps short."""
    with torch.inference_mode(False):  # a cached tensor must also serve autograd later
        return torch.tensor(values, dtype=dtype, device=device).view(1, -1, 1, 1)


def model_view(x: torch.Tensor, info: ModelInfo, channels_last: bool = False) -> torch.Tensor:
    """The same [0, 1] pixels, resized to this model's input size and normalized its own way."""
    return feed(x, tuple(info.input_size), normalizer(info, x.device, x.dtype), channels_last)


def feed(
    x: torch.Tensor, input_size: tuple[int, int], norm: Normalizer, channels_last: bool
) -> torch.Tensor:
    """`model_view` with the normalizer already resolved (what a compiled caller passes in)."""
    out = norm(resize(x, input_size))
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def eval_pixels(images: torch.Tensor, info: ModelInfo) -> torch.Tensor:
    """Validation view: centre crop of `crop_pct` of the shorter side, resized to the input size."""
    x = to_float(images)
    height, width = x.shape[-2:]
    side = max(1, round(min(height, width) * info.crop_pct))
    top, left = (height - side) // 2, (width - side) // 2
    return resize(x[..., top : top + side, left : left + side], info.input_size)
