"""A split as shards: the data model `ShardStream` (stream.py) reads and the sources build.

`shards.py` (WebDataset tar), `parquet.py` (Hugging Face parquet/arrow) and `streamed.py` (the
holdout's `Pick`) make `ShardSet`s of `Unit`s; a `Reader` yields a unit's `Sample`s, and a bad
sample met inside a loader worker travels to the main process as a `SampleFault`. Kept apart
from the streaming itself so that a source does not import the loader machinery.
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
