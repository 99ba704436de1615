"""Batched, device-agnostic training augmentation: random resized crop, flip, erasing, mixup.

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

Random erasing (Zhong et al. 2020, timm's `RandomErasing` defaults: area 2%-33%, aspect 0.3-3.3,
per-pixel random fill) is batched the same way: timm's and torchvision's loop over the images
with Python's `random`, which would neither follow the run's seed nor fit in a CUDA graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from distill_cli.models.view import ModelInfo, Normalizer, feed, normalizer, to_float

_TRIES = 10
#: Random erasing's box: area fraction and aspect range (timm's `RandomErasing` defaults).
ERASE_SCALE = (0.02, 1 / 3)
ERASE_RATIO = (0.3, 1 / 0.3)
#: One erasing draw for a batch: boxes (B, 4) in output pixels, which images (B,), the fill.
Erasing = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


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
    hgt, wid = _sizes(height, n, device), _sizes(width, n, device)
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


def _sizes(value: int | torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    """(n,) float sizes on `device`. A Python number is filled in on the device: building it
    with `torch.as_tensor(..., device=cuda)` would be a host-to-device copy, which blocks the
    host until the GPU has finished all queued work, once per step."""
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=torch.float32).expand(n)
    return torch.full((n,), float(value), dtype=torch.float32, device=device)


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
    images: torch.Tensor,
    boxes: torch.Tensor,
    flips: torch.Tensor,
    size: tuple[int, int],
    extent: torch.Tensor | None = None,
) -> torch.Tensor:
    """Crop each image to its box, mirror it where `flips` is set, and resize to `size`.

    `images` is float (B, C, H, W); the result is float (B, C, *size). One affine grid per image
    maps output pixels into the box (align_corners=False convention, pixel centres at +0.5).
    `extent` (B, 2), for photos in the top-left corner of a padded canvas: bilinear sampling
    at the far edge of an enlarged crop reads up to half a pixel past the box, which there
    would be padding; the photo's last row and column are repeated instead, as
    ``padding_mode="border"`` does at the tensor's own edge.
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
    if extent is not None:
        ext = extent.to(grid.dtype)  # the last valid pixel centres, in grid coordinates:
        limit = torch.stack([(2 * ext[:, 1] - 1) / width - 1, (2 * ext[:, 0] - 1) / height - 1], 1)
        grid = torch.minimum(grid, limit[:, None, None, :])
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def draw_erasing(
    n: int, channels: int, size: tuple[int, int], probability: float, device: torch.device
) -> Erasing:
    """One erasing box per image (applied with `probability`) and its random fill, on `device`.

    Boxes are sampled like crop boxes (ten tries); in the rare case none fits, the fallback is
    the whole view, as for crops. The fill is uniform noise in [0, 1] pixel space, timm's
    per-pixel mode before normalization.
    """
    boxes = sample_boxes(n, size[0], size[1], ERASE_SCALE, ERASE_RATIO, device)
    chosen = torch.rand(n, device=device) < probability
    fill = torch.rand(n, channels, *size, device=device)
    return boxes, chosen, fill


def erase(x: torch.Tensor, erasing: Erasing) -> torch.Tensor:
    """Replace each chosen image's box by its fill; float (B, C, H, W) in and out."""
    boxes, chosen, fill = erasing
    x0, y0, w, h = boxes.unbind(1)
    ys = torch.arange(x.shape[2], device=x.device, dtype=boxes.dtype)
    xs = torch.arange(x.shape[3], device=x.device, dtype=boxes.dtype)
    rows = (ys[None] >= y0[:, None]) & (ys[None] < (y0 + h)[:, None])
    cols = (xs[None] >= x0[:, None]) & (xs[None] < (x0 + w)[:, None])
    inside = rows[:, :, None] & cols[:, None, :] & chosen[:, None, None]
    return torch.where(inside[:, None], fill.to(x.dtype), x)


def mixup(x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Mix every image with its neighbour (the batch rolled by one) using one coefficient."""
    return lam * x + (1 - lam) * x.roll(1, dims=0)


#: A model's view as the renderer needs it: its input size and its normalizer.
ViewSpec = tuple[tuple[int, int], Normalizer]


def render_views(
    images: torch.Tensor,
    extent: torch.Tensor | None,
    boxes: torch.Tensor,
    flips: torch.Tensor,
    lam: torch.Tensor | None,
    size: tuple[int, int],
    specs: Sequence[ViewSpec],
    channels_last: bool,
    erasing: Erasing | None = None,
) -> list[torch.Tensor]:
    """uint8 batch -> crop + flip + resize (+ erasing, + mixup) -> each model's normalized input.

    Pure tensor code (the boxes, flips, erasing and mixup coefficient are drawn by the caller), so
    `torch.compile` can fuse the whole chain into a few kernels; the eager version stays the
    reference the tests compare it with.
    """
    x = crop_resize(to_float(images), boxes, flips, size, extent)
    if erasing is not None:  # per image, before mixing images: as timm's transform order
        x = erase(x, erasing)
    if lam is not None:
        x = mixup(x, lam)
    return [feed(x, input_size, norm, channels_last) for input_size, norm in specs]


class BatchAugment:
    """Random resized crop + horizontal flip for a whole batch, at one output size.

    Plain arguments (torchvision's `RandomResizedCrop` defaults), so the recipe's `augment`
    section is spelled out by the caller and this module needs no recipe schema. With `compile`
    (the run compiles its models) the pixel work of `model_inputs` is compiled too: eager, it
    is a dozen full-batch kernels per step (crop, mixup, a normalization and a layout copy per
    model), which cost the 224 px GPU step of the first GPU check a tenth of its time.
    """

    def __init__(
        self,
        size: tuple[int, int],
        crop_scale: tuple[float, float] = (0.08, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: bool = True,
        random_erasing: float = 0.0,
        compile: bool = False,
    ) -> None:
        self.scale = tuple(crop_scale)
        self.ratio = tuple(crop_ratio)
        self.flip = flip
        self.erasing = random_erasing
        self.size = size
        self._render: Callable[..., list[torch.Tensor]] = render_views
        if compile:
            # the draws stay eager: compiled (even with inductor's fallback_random) they did not
            # reproduce the eager crops on CUDA in the GPU check, so a compiled run would train
            # on other pictures than its eager twin
            self._render = torch.compile(render_views, dynamic=False)

    def draw(
        self, images: torch.Tensor, extent: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One random crop box (n, 4) and flip flag (n,) per image, drawn on its device.

        `extent` (B, 2): each image's valid (height, width) in the top-left corner of its
        canvas (photos loaded whole); crops are drawn inside it. None: the whole tensor.
        """
        b, _, height, width = images.shape
        if extent is not None:
            height, width = extent[:, 0], extent[:, 1]
        boxes = sample_boxes(b, height, width, self.scale, self.ratio, images.device)  # type: ignore[arg-type]
        if self.flip:
            flips = torch.rand(b, device=images.device) < 0.5
        else:
            flips = torch.zeros(b, dtype=torch.bool, device=images.device)
        return boxes, flips

    def __call__(self, images: torch.Tensor, extent: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float [0, 1] (B, C, *size), one random view per image."""
        boxes, flips = self.draw(images, extent)
        x = crop_resize(to_float(images), boxes, flips, self.size, extent)
        erasing = self.draw_erasing(images)
        return x if erasing is None else erase(x, erasing)

    def draw_erasing(self, images: torch.Tensor) -> Erasing | None:
        """This batch's erasing draw, or None when `random_erasing` is off."""
        if self.erasing <= 0:
            return None
        b, channels = images.shape[:2]
        return draw_erasing(b, channels, self.size, self.erasing, images.device)

    def model_inputs(
        self,
        images: torch.Tensor,
        extent: torch.Tensor | None,
        infos: Sequence[ModelInfo],
        lam: torch.Tensor | None = None,
        *,
        independent: bool = False,
        channels_last: bool = False,
    ) -> list[torch.Tensor]:
        """Each model's input for one step: its own resize and normalization of the views.

        Consistent views (the default) share one crop; `independent` draws one per model, in
        the order of `infos`. Models fed alike (same input size, channels, mean and std) get
        the very same tensor: the second normalization and layout copy would be the same work
        twice. `lam` mixes every view with the batch rolled by one.
        """
        if independent:
            out: list[torch.Tensor] = []
            for info in infos:
                out += self._views(images, extent, lam, [_spec(info, images)], channels_last)
            return out
        first: dict[tuple, ModelInfo] = {}  # one rendered input per distinct way of feeding
        for info in infos:
            first.setdefault(_fed_alike(info), info)
        specs = [_spec(info, images) for info in first.values()]
        views = self._views(images, extent, lam, specs, channels_last)
        rendered = dict(zip(first, views, strict=True))
        return [rendered[_fed_alike(info)] for info in infos]

    def _views(
        self,
        images: torch.Tensor,
        extent: torch.Tensor | None,
        lam: torch.Tensor | None,
        specs: Sequence[ViewSpec],
        channels_last: bool,
    ) -> list[torch.Tensor]:
        """One crop per image (drawn eagerly), rendered for each spec."""
        boxes, flips = self.draw(images, extent)
        erasing = self.draw_erasing(images)
        return self._render(
            images, extent, boxes, flips, lam, self.size, specs, channels_last, erasing
        )


def _fed_alike(info: ModelInfo) -> tuple:
    """What decides a model's input tensor: models equal here are fed the same tensor."""
    return (tuple(info.input_size), info.in_chans, tuple(info.mean), tuple(info.std))


def _spec(info: ModelInfo, images: torch.Tensor) -> ViewSpec:
    return (tuple(info.input_size), normalizer(info, images.device))  # type: ignore[return-value]
