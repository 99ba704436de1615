"""Batched, device-agnostic training augmentation: random resized crop, flip, mixup.

Everything here takes a whole uint8 batch and is written with tensor ops only, so the same code
runs on the GPU in training and on the CPU in tests: there is no per-image PIL work in the hot
path and no host synchronisation (random numbers are drawn on the batch's device).

The crop + flip + resize of every image in a batch is one ``grid_sample`` call: each image gets
its own affine transform that maps the output grid onto its random crop box, mirrored when it is
flipped. Box sampling follows torchvision's ``RandomResizedCrop`` (area scale and log-uniform
aspect ratio, ten tries, then the fallback's size: the whole image clipped to the aspect range),
vectorised over the batch. One difference: torchvision centres a fallback box, this places it at
random like any other box (tests/test_augment.py pins it; kept so that training results stay as
they were).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from distill_cli.model_view import to_float

_TRIES = 10


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
    # The first valid try per image; images with none get the fallback size below (placed at
    # random like the others, where torchvision would centre it).
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


class BatchAugment:
    """Random resized crop + horizontal flip for a whole batch, at one output size.

    Plain arguments (torchvision's `RandomResizedCrop` defaults), so the recipe's `augment`
    section is spelled out by the caller and this module needs no recipe schema.
    """

    def __init__(
        self,
        size: tuple[int, int],
        crop_scale: tuple[float, float] = (0.08, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: bool = True,
    ) -> None:
        self.scale = tuple(crop_scale)
        self.ratio = tuple(crop_ratio)
        self.flip = flip
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
