"""What a run's splits hold: `data.train_limit` keeps every class, and undecodable files are
counted once per file in every split (training, holdout/val, test), on both decode paths and for
streamed sources, and left out of the evaluated images rather than replaced there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from distill_cli.data import build_data
from distill_cli.data.draws import limit_indices
from distill_cli.data.sources import FASHION_MNIST_CLASSES, load_fashion_mnist
from distill_cli.errors import DistillError

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def _old_limit(n: int, limit: int, seed: int) -> torch.Tensor:
    """`data.train_limit`'s draw before it kept every class (ImageSet.limited, as it was)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[:limit].sort().values


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


# --- data.train_limit ----------------------------------------------------------------------------


def test_train_limit_keeps_a_training_image_of_every_class() -> None:
    """A class of one image among 100: the plain random draw of 10 drops it for most seeds,
    leaving an output the model never trains on; the draw keeps it, at the same size, and
    changes only what it had to (one image of a class that keeps others gives way)."""
    labels = torch.tensor([0] * 60 + [1] * 39 + [2])
    dropped = [s for s in range(20) if 99 not in _old_limit(100, 10, s).tolist()]
    assert dropped  # the old draw loses the class (the test fails before the fix)
    for seed in dropped:
        old, new = _old_limit(100, 10, seed), limit_indices(labels, 10, seed)
        assert len(new) == 10 and len(set(new.tolist())) == 10
        assert torch.bincount(labels[new], minlength=3).min() >= 1
        assert len(set(old.tolist()) - set(new.tolist())) == 1  # one swapped, the rest kept
        assert torch.equal(limit_indices(labels, 10, seed), new)  # fixed by the seed
    with pytest.raises(DistillError, match=r"train_limit \(2\).*3 classes.*at least 3"):
        limit_indices(labels, 2, 0)


def test_train_limit_keeps_every_class_of_an_image_folder(tmp_path: Path) -> None:
    for cls, count in (("big", 12), ("one", 1)):
        for i in range(count):
            _png(tmp_path / "train" / cls / f"{i}.png", i * 10)
        _png(tmp_path / "val" / cls / "v.png", 0)
    for seed in range(6):
        data = build_data("image_folder", tmp_path, train_limit=3, seed=seed)
        assert len(data.train) == 3
        assert torch.bincount(data.train.labels, minlength=2).tolist()[1] == 1
    with pytest.raises(DistillError, match=r"data\.train_limit"):
        build_data("image_folder", tmp_path, train_limit=1, seed=0)


def test_train_limit_draws_as_it_always_did_where_no_class_runs_out() -> None:
    """The committed benchmark splits stay: balanced labels draw the old indices exactly."""
    labels = torch.arange(6000) % 10
    for limit, seed in ((400, 0), (2048, 1), (4000, 0), (37, 5)):
        assert torch.equal(limit_indices(labels, limit, seed), _old_limit(6000, limit, seed))
    if not FASHION_MNIST.is_dir():
        return
    train = load_fashion_mnist(FASHION_MNIST, "train")
    assert train.labels is not None and train.classes == FASHION_MNIST_CLASSES
    for limit in (400, 2048, 3000, 4000, 10_000):  # what benchmarks/ and tests/ use
        for seed in (0, 1, 2):
            new = limit_indices(train.labels, limit, seed)
            assert torch.equal(new, _old_limit(len(train), limit, seed)), (limit, seed)
    # and through build_data, after a holdout (full_data's scales)
    held = build_data("fashion_mnist", FASHION_MNIST, holdout=200, seed=0)
    limited = build_data("fashion_mnist", FASHION_MNIST, holdout=200, train_limit=400, seed=0)
    old = held.train.subset(_old_limit(len(held.train), 400, 0))
    assert torch.equal(limited.train.labels, old.labels)
    assert torch.equal(limited.train.images, old.images)
