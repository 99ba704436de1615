"""Batched, device-agnostic augmentation: crop, flip, mixup, resize, normalize.

Everything here takes a whole uint8 batch and is written with tensor ops only, so the same code
runs on the GPU in training and on the CPU in tests: there is no per-image PIL work in the hot
path and no host synchronisation (random numbers are drawn on the batch's device).

The crop + flip + resize of every image in a batch is one ``grid_sample`` call: each image gets
its own affine transform that maps the output grid onto its random crop box, mirrored when it is
flipped. Box sampling follows torchvision's ``RandomResizedCrop`` (area scale and log-uniform
aspect ratio, ten tries, then a centre crop fallback), vectorised over the batch.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from distill_cli.models import ModelInfo
    from distill_cli.recipe import AugmentSpec

_TRIES = 10


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]."""
    return images.float().div_(255.0)


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Grayscale feeds 3-channel models by repeat; RGB feeds 1-channel models as luminance."""
    have = x.shape[1]
    if have == channels:
        return x
    if have == 1:
        return x.expand(-1, channels, -1, -1)
    if have == 3 and channels == 1:
        weights = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (x * weights).sum(1, keepdim=True)
    raise ValueError(f"cannot feed {have}-channel images to a {channels}-channel model")


def sample_boxes(
    n: int,
    height: int | torch.Tensor,
    width: int | torch.Tensor,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    device: torch.device,
) -> torch.Tensor:
    """Random resized crop boxes as (x0, y0, w, h) in pixels, shape (n, 4).

    `height` and `width` are the image size, or per-image sizes (n,) when the images of a batch
    differ (photos loaded whole, aspect kept): each box lies inside its own image, its area a
    fraction of that image's area, as torchvision's `RandomResizedCrop` samples one image.
    """
    hgt = torch.as_tensor(height, dtype=torch.float32, device=device).expand(n)
    wid = torch.as_tensor(width, dtype=torch.float32, device=device).expand(n)
    area = (hgt * wid)[:, None]
    target = torch.empty(n, _TRIES, device=device).uniform_(*scale) * area
    log_r = torch.empty(n, _TRIES, device=device).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(log_r)
    w = torch.sqrt(target * aspect).round()
    h = torch.sqrt(target / aspect).round()
    ok = (w > 0) & (h > 0) & (w <= wid[:, None]) & (h <= hgt[:, None])
    # The first valid try per image; images with none get the centre-crop fallback below.
    first = torch.argmax(ok.int(), dim=1, keepdim=True)
    any_ok = ok.any(dim=1)
    w = torch.gather(w, 1, first).squeeze(1)
    h = torch.gather(h, 1, first).squeeze(1)
    fallback_w, fallback_h = _fallback_size(hgt, wid, ratio)
    w = torch.where(any_ok, w, fallback_w)
    h = torch.where(any_ok, h, fallback_h)
    x0 = torch.floor(torch.rand(n, device=device) * (wid - w + 1))
    y0 = torch.floor(torch.rand(n, device=device) * (hgt - h + 1))
    return torch.stack([x0, y0, w, h], dim=1)


def _fallback_size(
    height: torch.Tensor, width: torch.Tensor, ratio: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's fallback: the whole image, clipped to the aspect range (per image)."""
    in_ratio = width / height
    narrow, wide = in_ratio < ratio[0], in_ratio > ratio[1]
    w = torch.where(wide, torch.round(height * ratio[1]), width)
    h = torch.where(narrow, torch.round(width / ratio[0]), height)
    return w, h


def crop_resize(
    images: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """Crop each image to its box, mirror it where `flips` is set, and resize to `size`.

    `images` is float (B, C, H, W); the result is float (B, C, *size). One affine grid per image
    maps output pixels into the box (align_corners=False convention, pixel centres at +0.5).
    """
    b, _, height, width = images.shape
    x0, y0, w, h = boxes.unbind(1)
    sign = 1.0 - 2.0 * flips.to(images.dtype)
    theta = images.new_zeros(b, 2, 3)
    theta[:, 0, 0] = (w / width) * sign
    theta[:, 0, 2] = (2 * x0 + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * y0 + h) / height - 1
    grid = F.affine_grid(theta, [b, images.shape[1], *size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def mixup(x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Mix every image with its neighbour (the batch rolled by one) using one coefficient."""
    return lam * x + (1 - lam) * x.roll(1, dims=0)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def normalize(x: torch.Tensor, info: ModelInfo) -> torch.Tensor:
    """Per-model channel adaptation and mean/std normalization of [0, 1] pixels."""
    x = match_channels(x, info.in_chans)
    mean = _constant(tuple(info.mean), x.device, x.dtype)
    std = _constant(tuple(info.std), x.device, x.dtype)
    return (x - mean) / std


@functools.lru_cache(maxsize=64)
def _constant(values: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(1, C, 1, 1) per-channel constants, made once per device: building them from Python
    lists on every step costs a host-to-device copy per model per step, which is felt where
    small images make steps short."""
    with torch.inference_mode(False):  # a cached tensor must also serve autograd later
        return torch.tensor(values, dtype=dtype, device=device).view(1, -1, 1, 1)


def model_view(x: torch.Tensor, info: ModelInfo, channels_last: bool = False) -> torch.Tensor:
    """The same [0, 1] pixels, resized to this model's input size and normalized its own way."""
    out = normalize(resize(x, info.input_size), info)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def eval_pixels(images: torch.Tensor, info: ModelInfo) -> torch.Tensor:
    """Validation view: centre crop of `crop_pct` of the shorter side, resized to the input size."""
    x = to_float(images)
    height, width = x.shape[-2:]
    side = max(1, round(min(height, width) * info.crop_pct))
    top, left = (height - side) // 2, (width - side) // 2
    return resize(x[..., top : top + side, left : left + side], info.input_size)


class BatchAugment:
    """Random resized crop + horizontal flip for a whole batch, at one output size."""

    def __init__(self, spec: AugmentSpec, size: tuple[int, int]) -> None:
        self.scale = tuple(spec.crop_scale)
        self.ratio = tuple(spec.crop_ratio)
        self.flip = spec.flip
        self.size = size

    def __call__(self, images: torch.Tensor, extent: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float [0, 1] (B, C, *size), one random view per image.

        `extent` (B, 2): each image's valid (height, width) in the top-left corner of its
        canvas (photos loaded whole); crops are drawn inside it. None: the whole tensor.
        """
        x = to_float(images)
        b, _, height, width = x.shape
        if extent is not None:
            height, width = extent[:, 0], extent[:, 1]
        boxes = sample_boxes(b, height, width, self.scale, self.ratio, x.device)  # type: ignore[arg-type]
        if self.flip:
            flips = torch.rand(b, device=x.device) < 0.5
        else:
            flips = torch.zeros(b, dtype=torch.bool, device=x.device)
        return crop_resize(x, boxes, flips, self.size)
