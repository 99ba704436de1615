"""The inputs every check of an exported model runs on: the same float32 batches for PyTorch
and ONNX Runtime, for the parity gate, the int8 calibration and `distill students`' checks.

Real validation images go through the model's own validation preprocessing (``eval_pixels`` +
``normalize``, exactly what `distill run` evaluated); without data, seeded random inputs. Batches
are 64 images plus the remainder, and the first image is also run alone (parity.py), so the
dynamic batch axis is exercised at three sizes, one of them 1 (what latency is measured at).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from distill_cli.data.loader import BatchStream
from distill_cli.data.shardset import ShardSet
from distill_cli.data.sources import ImageSet
from distill_cli.data.stream import ShardStream
from distill_cli.models.view import ModelInfo, eval_pixels, load_sizes, normalize

BATCH = 64
#: Inputs held in memory up to this size (bytes); larger sets are re-read for every model.
_CACHE_LIMIT = 512 * 1024 * 1024


@dataclass
class InputSet:
    """Preprocessed float32 inputs for one model, in a fixed order, re-iterable.

    `images` None means random inputs (`count` of them, seeded); otherwise a fixed subset of
    `count` images of `images` (all of them when `count` is 0 or larger than the set), with the
    classes as equal as the data allows when `balanced` (int8 calibration: a random subset of
    a skewed set would calibrate the ranges on the common classes only). Streamed data (tar
    shards, a Hugging Face data set) gives `count` images of a seeded choice of its shards
    (`ShardSet.limited`), read as the run's evaluation reads them.
    """

    info: ModelInfo
    images: ImageSet | ShardSet | None
    count: int
    seed: int = 0
    load_size: int | None = None
    workers: int = 0
    batch: int = BATCH
    purpose: str = "validation"
    balanced: bool = False

    def __post_init__(self) -> None:
        if self.images is not None:
            # all of a set smaller than `count` (`balanced` refuses a count above the set size)
            limit = self.count if 0 < self.count < len(self.images) else None
            pick = self.images.balanced if self.balanced else self.images.limited
            self.images = pick(limit, self.seed)
            self.count = len(self.images)
        # Labels only mean something when the model predicts the data's classes.
        self.use_labels = (
            self.images is not None
            and self.images.labeled
            and self.images.num_classes == self.info.num_classes
        )
        self._cache: list[tuple[np.ndarray, np.ndarray | None]] | None = None
        #: undecodable files met (and left out) by the last full pass over the images
        self.bad_images = 0

    @property
    def kind(self) -> str:
        return self.purpose if self.images is not None else "random"

    def describe(self) -> dict[str, Any]:
        name = self.images.name if self.images is not None else "normal(0, 1), seeded"
        out = {
            "kind": self.kind,
            "images": self.count - self.bad_images,
            "source": name,
            "labeled": self.use_labels,
        }
        if self.bad_images:
            out["bad_images"] = self.bad_images  # undecodable, left out of every comparison
        return out

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """(inputs NCHW float32, labels or None) batches; cached when small enough."""
        if self._cache is not None:
            yield from self._cache
            return
        c, (h, w) = self.info.in_chans, self.info.input_size
        cache = self.count * c * h * w * 4 <= _CACHE_LIMIT
        kept: list[tuple[np.ndarray, np.ndarray | None]] = []
        for item in self._generate():
            if cache:
                kept.append(item)
            yield item
        if cache:
            self._cache = kept

    def _generate(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        c, (h, w) = self.info.in_chans, self.info.input_size
        if self.images is None:
            gen = torch.Generator().manual_seed(self.seed)
            for start in range(0, self.count, self.batch):
                n = min(self.batch, self.count - start)
                yield torch.randn(n, c, h, w, generator=gen).numpy(), None
            return
        load = self.load_size or load_sizes(max(h, w), None)[1]
        streamed = isinstance(self.images, ShardSet)
        stream = (ShardStream if streamed else BatchStream)(
            self.images,
            self.batch,
            torch.device("cpu"),
            shuffle=False,
            drop_last=False,
            load_size=load,
            workers=self.workers,
            **({"evaluated": True} if streamed else {}),  # a bad sample is left out, not replaced
        )
        for batch in stream.epoch(0):
            x = normalize(eval_pixels(batch.images, self.info), self.info).contiguous()
            labels = batch.labels if self.use_labels else None
            if batch.stand_in is not None:  # an undecodable file: left out, as a run's
                keep = ~batch.stand_in  # evaluation leaves it (not another image twice)
                x, labels = x[keep], (labels[keep] if labels is not None else None)
                if not len(x):
                    continue
            yield x.numpy(), (labels.numpy() if labels is not None else None)
        self.bad_images = stream.bad_images


@dataclass
class Batches:
    """Batches already in memory (e.g. one batch of an InputSet, to check a candidate fast)."""

    items: list[tuple[np.ndarray, np.ndarray | None]]

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        yield from self.items
