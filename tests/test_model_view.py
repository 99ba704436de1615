"""Each model's own view of shared pixels: channel matching, resize, normalization, eval crop."""

from __future__ import annotations

import torch

from distill_cli.models.view import ModelInfo, eval_pixels, match_channels, model_view


def _info(size: int = 8, chans: int = 3, mean: float = 0.5, std: float = 0.25) -> ModelInfo:
    return ModelInfo("m", 10, chans, (size, size), (mean,) * chans, (std,) * chans, 1.0)


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
