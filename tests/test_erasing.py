"""`augment.random_erasing`: a random box of each chosen training view replaced by noise,
batched on the device, drawn from the run's seed like the crops."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from distill_cli.data.augment import BatchAugment, erase
from distill_cli.errors import DistillError
from distill_cli.recipe.document import load_recipe
from distill_cli.train.build import build
from tests.conftest import teacher_body, write_recipe


def test_erase_replaces_exactly_the_box_of_the_chosen_images() -> None:
    x = torch.zeros(2, 1, 6, 8)
    fill = torch.ones(2, 1, 6, 8)
    boxes = torch.tensor([[2.0, 1.0, 3.0, 2.0], [0.0, 0.0, 8.0, 6.0]])  # x0, y0, w, h
    out = erase(x, (boxes, torch.tensor([True, False]), fill))
    expected = torch.zeros(6, 8)
    expected[1:3, 2:5] = 1
    torch.testing.assert_close(out[0, 0], expected)
    assert out[1].abs().sum() == 0  # not chosen: untouched


def _views(probability: float, seed: int, n: int = 64) -> torch.Tensor:
    images = torch.randint(0, 256, (n, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(seed)
    return BatchAugment((20, 20), random_erasing=probability)(images.to(torch.uint8))


def test_erasing_follows_the_seed_and_erases_a_box_of_the_right_size() -> None:
    plain, erased = _views(0.0, seed=5), _views(1.0, seed=5)
    torch.testing.assert_close(_views(1.0, seed=5), erased)  # same seed, same views
    assert not torch.equal(_views(1.0, seed=6), erased)
    changed = (plain != erased)[:, 0]  # the crops are the same draws: only the boxes differ
    for mask in changed:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        area = int(height * width) / 400
        assert 0.02 * 0.7 <= area <= 1 / 3 * 1.3  # rounding of a 20 px view
        assert mask.sum() >= 0.9 * height * width  # one solid box (noise may equal a pixel)


def test_erasing_probability_is_the_share_of_erased_views() -> None:
    plain, erased = _views(0.0, seed=1, n=1000), _views(0.3, seed=1, n=1000)
    share = (plain != erased).flatten(1).any(1).float().mean().item()
    assert 0.25 <= share <= 0.35


def test_the_recipe_key_reaches_the_augmentation_and_is_checked(tmp_path: Path) -> None:
    body = teacher_body(tmp_path / "runs", epochs=1)
    body["augment"] = {"random_erasing": 0.25}
    setup = build(load_recipe(write_recipe(tmp_path, "re", body)))
    assert setup.method.ctx.augment.erasing == 0.25
    body["augment"] = {"random_erasing": 1.5}
    with pytest.raises(DistillError, match="random_erasing"):
        load_recipe(write_recipe(tmp_path, "bad", body))
