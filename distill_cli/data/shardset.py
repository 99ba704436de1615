"""One split as shards: the units, the samples they hold, and which of them a split reads.

The data model the shard readers (`shards.py` for tar, `parquet.py` for parquet and arrow)
produce and `ShardStream` (`stream.py`) reads; kept apart so that a reader needs only this, not
the streaming machinery.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from distill_cli.errors import EXIT_FAILURE, EXIT_USAGE


@dataclass(frozen=True)
class Unit:
    """One shard: a tar file, a parquet row group or an arrow file; `start` numbers its samples.

    `count` is the samples the set reads from it: all of them, or those its `Pick` passes.
    """

    path: Path
    count: int
    start: int = 0
    part: int = 0


@dataclass(frozen=True)
class Sample:
    index: int  # stable across epochs: the unit's start + the position in the unit
    raw: bytes
    label: int  # -1 when the set has no labels
    key: str  # where it came from, for error messages


#: reads the samples of one unit, in order (a picklable function: workers call it)
Reader = Callable[["ShardSet", Unit], Iterator[Sample]]
#: reads only the labels of one unit's samples, in order, without their images
LabelReader = Callable[["ShardSet", Unit], list[int]]


@dataclass(frozen=True)
class Pick:
    """Samples chosen by their `index` (stable across epochs): only `indices`, or all but them.

    How `data.holdout` splits a stream (`streamed.split_shards`): the training set drops the
    held-out indices, the holdout keeps only them. A frozenset pickles to the loader's workers
    and answers per sample in constant time.
    """

    indices: frozenset[int]
    keep: bool

    def __call__(self, index: int) -> bool:
        return (index in self.indices) == self.keep


@dataclass
class ShardSet:
    """One split as shards: what `ImageSet` is for files in memory or folders."""

    name: str
    classes: list[str]
    units: list[Unit]
    reader: Reader
    labeled: bool = True
    #: data label -> the teacher's numbering (set by `align_classes`); None = as stored
    label_order: list[int] | None = None
    #: reader settings (parquet column names)
    options: dict[str, str] = field(default_factory=dict)
    #: the labels without the images (what `data.holdout` draws from); None: not available
    label_reader: LabelReader | None = None
    #: the samples this set reads (the units' counts are of them); None: every sample
    pick: Pick | None = None

    def __len__(self) -> int:
        return sum(u.count for u in self.units)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return 3

    @property
    def from_files(self) -> bool:
        """Shards hold encoded images, decoded at a load size (as `ImageSet` files are)."""
        return True

    def limited(self, limit: int | None, seed: int) -> ShardSet:
        """About `limit` samples (exactly, when the set holds them): whole shards in an order
        seeded by `seed`, each read front to back, the last one cut short.

        What an export checks parity and calibrates int8 on. Not a per-sample draw, which would
        need every sample's place and class first (a pass over all the shards: ImageNet's 1.28 M
        tar members) for a few hundred images; shards are written shuffled (webdataset's
        advice), and the seeded order mixes the shards of a set written class by class."""
        if limit is None or limit >= len(self):
            return self
        order = torch.randperm(len(self.units), generator=torch.Generator().manual_seed(seed))
        units, left = [], limit
        for i in order.tolist():
            if left <= 0:
                break
            unit = self.units[i]
            units.append(replace(unit, count=min(unit.count, left)))
            left -= unit.count
        return replace(self, units=units)

    def balanced(self, count: int | None, seed: int) -> ShardSet:
        """`limited`: a class-balanced draw needs every sample's class first (see there)."""
        return self.limited(count, seed)

    def renumbered(self, order: torch.Tensor, names: list[str]) -> ShardSet:
        return replace(self, classes=list(names), label_order=order.tolist())

    def samples(self, unit: Unit) -> Iterator[Sample]:
        for sample in self.reader(self, unit):
            if self.pick is not None and not self.pick(sample.index):
                continue
            if self.labeled and sample.label < 0:
                raise SampleFault("sample has no label", sample.key, "every sample needs one")
            if self.labeled and self.classes and sample.label >= len(self.classes):
                raise SampleFault(  # it would index past the model's outputs
                    f"label {sample.label} is beyond the {len(self.classes)} classes",
                    sample.key,
                    f"labels are 0..{len(self.classes) - 1}, the train split's classes",
                )
            if self.label_order is not None and sample.label >= 0:
                sample = replace(sample, label=self.label_order[sample.label])
            yield sample


class SampleFault(Exception):
    """A bad sample met inside a worker: carried to the main process as data, then raised there
    as the one-line DistillError (an exception crossing the worker boundary is re-built from
    its message and would lose `where` and `hint`)."""

    def __init__(self, what: str, where: str, hint: str = "", *, failed: bool = False) -> None:
        super().__init__(what)
        self.args3 = (what, where, hint)
        #: the input was fine when the run started (a shard cut short since): exit 1, not 2
        self.code = EXIT_FAILURE if failed else EXIT_USAGE
