"""The batched augmentation: crop boxes, flips, resize, mixup, normalization."""

from __future__ import annotations

import torch

from distill_cli.data.augment import BatchAugment, crop_resize, mixup, sample_boxes
from distill_cli.model_view import ModelInfo, eval_pixels, match_channels, model_view


def _info(size: int = 8, chans: int = 3, mean: float = 0.5, std: float = 0.25) -> ModelInfo:
    return ModelInfo("m", 10, chans, (size, size), (mean,) * chans, (std,) * chans, 1.0)


def test_boxes_stay_inside_the_image_and_respect_scale_and_ratio() -> None:
    torch.manual_seed(0)
    boxes = sample_boxes(2000, 40, 60, (0.2, 0.6), (0.5, 2.0), torch.device("cpu"))
    x0, y0, w, h = boxes.unbind(1)
    assert (x0 >= 0).all() and (y0 >= 0).all()
    assert (x0 + w <= 60).all() and (y0 + h <= 40).all()
    area = w * h / (40 * 60)
    # rounding to whole pixels moves the area a little outside the nominal range
    assert area.min() > 0.18 and area.max() < 0.63
    ratio = w / h
    assert ratio.min() > 0.45 and ratio.max() < 2.2
    assert w.unique().numel() > 10  # really random per image


def test_full_box_without_flip_is_the_identity() -> None:
    img = torch.rand(3, 2, 9, 7)
    boxes = torch.tensor([[0.0, 0.0, 7.0, 9.0]] * 3)
    out = crop_resize(img, boxes, torch.zeros(3, dtype=torch.bool), (9, 7))
    torch.testing.assert_close(out, img, atol=1e-5, rtol=0)


def test_flip_mirrors_only_the_flagged_images() -> None:
    img = torch.rand(2, 1, 6, 6)
    boxes = torch.tensor([[0.0, 0.0, 6.0, 6.0]] * 2)
    out = crop_resize(img, boxes, torch.tensor([True, False]), (6, 6))
    torch.testing.assert_close(out[0], img[0].flip(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], img[1], atol=1e-5, rtol=0)


def test_crop_takes_the_right_region() -> None:
    img = torch.arange(64.0).view(1, 1, 8, 8)
    boxes = torch.tensor([[2.0, 4.0, 4.0, 2.0]])  # x0=2, y0=4, w=4, h=2
    out = crop_resize(img, boxes, torch.zeros(1, dtype=torch.bool), (2, 4))
    torch.testing.assert_close(out, img[..., 4:6, 2:6], atol=1e-4, rtol=0)


def test_augment_outputs_float_pixels_at_the_view_size() -> None:
    aug = BatchAugment((12, 16))
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    out = aug(images)
    assert out.shape == (5, 1, 12, 16) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1


def test_mixup_rolls_the_batch_by_one() -> None:
    x = torch.arange(4.0).view(4, 1, 1, 1)
    out = mixup(x, torch.tensor(0.25))
    expected = 0.25 * x + 0.75 * torch.tensor([3.0, 0.0, 1.0, 2.0]).view(4, 1, 1, 1)
    torch.testing.assert_close(out, expected)


def test_model_view_normalizes_with_the_models_own_stats_and_size() -> None:
    pixels = torch.rand(2, 1, 8, 8)
    out = model_view(pixels, _info(size=8, chans=3, mean=0.5, std=0.25))
    assert out.shape == (2, 3, 8, 8)  # grayscale repeated to 3 channels
    torch.testing.assert_close(out[:, 0], (pixels[:, 0] - 0.5) / 0.25)
    assert model_view(pixels, _info(size=4)).shape == (2, 3, 4, 4)


def test_channel_matching() -> None:
    rgb = torch.rand(1, 3, 2, 2)
    gray = match_channels(rgb, 1)
    torch.testing.assert_close(
        gray[:, 0], 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    )
    assert match_channels(torch.rand(1, 1, 2, 2), 3).shape == (1, 3, 2, 2)


def test_eval_view_centre_crops_and_resizes() -> None:
    images = torch.zeros(1, 1, 10, 10, dtype=torch.uint8)
    images[..., 3:7, 3:7] = 255
    info = ModelInfo("m", 2, 1, (4, 4), (0.0,), (1.0,), 0.4)
    out = eval_pixels(images, info)
    assert out.shape == (1, 1, 4, 4)
    torch.testing.assert_close(out, torch.ones_like(out))
