"""Batches streamed from shards (tar files, parquet row groups, arrow files), deterministically.

A data set too large for a file list (ImageNet on a cluster) comes as a few hundred shards, read
front to back. `ShardStream` has `BatchStream`'s interface (`steps_per_epoch`, `epoch(e, s)`),
so the engine does not know which one it drives. How an epoch is read:

- the shards are permuted by (seed, epoch) and read as one sequence of samples; the samples the
  epoch's steps use are cut into one contiguous range per process and, within it, per data
  loader worker ("lane"; worker w makes the steps t with t % workers == w). Every sample is
  read by one worker of one process, at most once an epoch; a shard at the boundary of two
  ranges is opened by both, each reading its own part (the rest of the shard is skipped);
- each lane streams its range through a shuffle buffer seeded by (seed, epoch, rank, lane)
  (webdataset's `shuffle`), so batches mix shards as far as the buffer reaches;
- the bytes go through the image folder's decoding: in the workers on the CPU, or batched on the
  device (nvJPEG), as `data.decode` says.

A bad sample (on_bad_image=skip) counts once, by index; in training a good sample of its batch
stands in (a folder's next good file cannot: a stream reads front to back, and pulling the next
sample would shift the lane's later batches, breaking the exact resume); evaluations drop it.

Resume: the order of every step is a function of (seed, epoch, processes, workers), so with the
same processes and `data.workers` a resumed run continues at the exact sample (each lane re-reads,
without decoding, the part of its range the interrupted run had used). With another count the
remaining steps of the interrupted epoch are drawn from the epoch's ranges cut the new way (some
of its images are then seen twice, others not at all); later epochs are whole.

A split cut by `data.holdout` reads only its `Pick` of sample indices, and its units count only
those, so all of the above holds for it as for a whole split.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import KW_ONLY, dataclass, replace
from itertools import islice

import torch
from torch.utils.data import IterableDataset, get_worker_info

from distill_cli.data.decode import Fit, decode_on_device, fit_image
from distill_cli.data.loader import Batch, SplitStream, worker_batches
from distill_cli.data.pixels import decode_bytes
from distill_cli.data.shardset import Sample, SampleFault, ShardSet, Unit
from distill_cli.errors import DistillError


@dataclass(eq=False, repr=False)
class ShardStream(SplitStream):
    """Epochs of (uint8 images, labels) batches on `device`, streamed from a `ShardSet`.

    `buffer` is the shuffle buffer's size; `evaluated` marks a split an evaluation reads: it
    leaves bad samples out (`Batch.stand_in`), so a batch with no decodable sample is fine
    there, while training needs a good sample to stand in. `bad_files` holds sample indices
    (stable across epochs).
    """

    data: ShardSet
    _: KW_ONLY
    buffer: int = 1000
    evaluated: bool = False

    def ordered(self, data: ShardSet | None = None) -> ShardStream:
        """A stream over `data` (default: this one's) front to back, every sample once, read and
        decoded as this one reads (one process's view): `BatchStream.ordered` for shards, what
        one-off passes such as the teacher check iterate."""
        data = self.data if data is None else data
        return replace(
            self, data=data, shuffle=False, drop_last=False, rank=0, world=1, evaluated=True
        )

    def step_sizes(self) -> list[int]:
        """This process's batch size at each step of an epoch (the last may be short)."""
        n, size = len(self.data), self.batch_size
        sizes = [min(size, n - t * size) for t in range(self.steps_per_epoch)]
        return [s // self.world for s in sizes]

    def lanes(self, epoch: int) -> list[list[Piece]]:
        """This process's pieces of shards for `epoch`, one list per lane (worker)."""
        units = list(self.data.units)
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            units = [units[i] for i in torch.randperm(len(units), generator=gen).tolist()]
        sizes = self.step_sizes()
        count = self.lane_count
        demand = [sum(sizes[lane::count]) for lane in range(count)]
        offset = self.rank * sum(sizes)
        lanes = []
        for need in demand:
            lanes.append(_cut(units, offset, need))
            offset += need
        return lanes

    @property
    def lane_count(self) -> int:
        return max(1, min(self.workers, self.steps_per_epoch))

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        """The batches of `epoch` from `start_step` on (this process's slice of each)."""
        lanes = self.lanes(epoch)
        plan = _LanePlan(
            data=self.data,
            lanes=lanes,
            sizes=self.step_sizes(),
            start=start_step,
            seed=(self.seed, epoch, self.rank) if self.shuffle else None,
            buffer=self.buffer,
            decode=None if self.decode_on_device else (self.load_size, self.fit),
        )
        if self.workers:
            batches = worker_batches(
                plan,
                batch_size=None,
                num_workers=len(lanes),
                pin_memory=self.device.type == "cuda",
                prefetch_factor=4,
            )
        else:
            batches = plan
        for item in batches:
            yield self._batch(item)

    def _batch(self, item: dict) -> Batch:
        if "fault" in item:
            raise DistillError(*item["fault"], code=item["code"])
        raws, labels, index = item["raw"], item["labels"], item["index"]
        if "images" in item:
            images, extent, bad = item["images"], item["extent"], item["bad"]
        else:
            decoded = decode_on_device(
                list(raws.split(item["lengths"].tolist())), self.device, self.load_size, self.fit
            )
            bad = torch.tensor([img is None for img in decoded])
            fill = next((d for d in decoded if d is not None), None)
            if fill is None and self.skip_bad and not self.evaluated:
                raise DistillError(
                    "no image of a batch can be decoded",
                    item["keys"][0],
                    "check the shards' images (copy them again, or write them anew)",
                )
            if fill is None:  # left out, or refused below naming the file: any pixels will do
                side = self.load_size
                fill = (torch.zeros(3, side, side, dtype=torch.uint8), torch.tensor([side] * 2))
            decoded = [d if d is not None else fill for d in decoded]
            images = torch.stack([img for img, _ in decoded])
            extent = torch.stack([e for _, e in decoded])
        stand_in = bad.clone() if bool(bad.any()) else None
        if stand_in is not None:
            first = item["keys"][int(bad.nonzero()[0])]
            if not self.skip_bad:
                raise DistillError(
                    "cannot decode image", first, "fix the shard, or set data.on_bad_image=skip"
                )
            self.bad_files.update(index[bad].tolist())
            good = (~bad).nonzero().flatten()
            if not len(good) and not self.evaluated:
                raise DistillError(
                    "no image of a batch can be decoded",
                    first,
                    "check the data's images (copy the files again, or write them anew)",
                )
            if not len(good):  # an evaluation leaves every position out: nothing to stand in
                good = torch.arange(len(bad))
            # a stand-in from the same batch (why not the next sample: the module docstring)
            swap = torch.arange(len(bad))
            swap[bad] = good[torch.arange(int(bad.sum())) % len(good)]
            images, labels, index, extent = images[swap], labels[swap], index[swap], extent[swap]
        return Batch(
            images.to(self.device, non_blocking=True),
            labels.to(self.device, non_blocking=True) if self.data.labeled else None,
            index.to(self.device, non_blocking=True),
            None if self.fit == "square" else extent.to(self.device, non_blocking=True),
            stand_in,
        )


@dataclass(frozen=True)
class Piece:
    """Samples [skip, skip + take) of one unit."""

    unit: Unit
    skip: int
    take: int


def _cut(units: list[Unit], offset: int, count: int) -> list[Piece]:
    """Samples [offset, offset + count) of the units read one after another, as pieces."""
    pieces, start = [], 0
    for unit in units:
        lo, hi = max(offset, start), min(offset + count, start + unit.count)
        if lo < hi:
            pieces.append(Piece(unit, lo - start, hi - lo))
        start += unit.count
    return pieces


@dataclass
class _LanePlan(IterableDataset):
    """The batches of one epoch, made lane by lane (in workers, or interleaved in-process)."""

    data: ShardSet
    lanes: list[list[Piece]]
    sizes: list[int]  # this process's batch size at each step of the epoch
    start: int
    seed: tuple[int, int, int] | None
    buffer: int
    decode: tuple[int, Fit] | None

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        count = len(self.lanes)
        if info is not None:
            # worker w makes step start + w first: the loader takes workers in turn
            yield from self._lane((self.start + info.id) % count)
            return
        streams = {lane: self._lane(lane) for lane in range(count)}
        order = [(self.start + i) % count for i in range(count)]
        while order:  # the loader's turn-taking, in this process
            for lane in list(order):
                item = next(streams[lane], None)
                if item is None:
                    order.remove(lane)
                    continue
                yield item

    def _lane(self, lane: int) -> Iterator[dict]:
        """The batches of the steps t >= start with t % lanes == lane."""
        mine = list(range(lane, len(self.sizes), len(self.lanes)))
        done = [t for t in mine if t < self.start]
        samples = self._samples(lane)
        try:
            for _ in islice(samples, sum(self.sizes[t] for t in done)):
                pass  # read, not decoded: where the interrupted run stopped
            for t in mine[len(done) :]:
                yield self._collate(list(islice(samples, self.sizes[t])))
        except SampleFault as fault:
            yield {"fault": fault.args3, "code": fault.code}

    def _samples(self, lane: int) -> Iterator[Sample]:
        def pieces() -> Iterator[Sample]:
            for piece in self.lanes[lane]:
                yield from islice(
                    self.data.samples(piece.unit), piece.skip, piece.skip + piece.take
                )

        if self.seed is None:
            return pieces()
        import webdataset as wds

        rng = random.Random("-".join(map(str, (*self.seed, lane))))
        return iter(wds.shuffle(self.buffer, min(self.buffer, 100), rng=rng)(pieces()))

    def _collate(self, chunk: list[Sample]) -> dict:
        out = {
            "labels": torch.tensor([s.label for s in chunk]),
            "index": torch.tensor([s.index for s in chunk]),
            "keys": [s.key for s in chunk],
        }
        raws = [_bytes(s.raw) for s in chunk]
        if self.decode is None:  # decoded on the device by the main process
            out["raw"] = torch.cat(raws)
            out["lengths"] = torch.tensor([len(r) for r in raws])
            return out
        size, fit = self.decode
        images, extents, bad = [], [], []
        for raw in raws:
            fitted = _decode_cpu(raw, size, fit)
            bad.append(fitted is None)
            if fitted is None:
                fitted = (torch.zeros(3, size, size, dtype=torch.uint8), torch.tensor([size] * 2))
            images.append(fitted[0])
            extents.append(fitted[1])
        out.update(
            raw=torch.empty(0),
            images=torch.stack(images),
            extent=torch.stack(extents),
            bad=torch.tensor(bad),
        )
        return out


def _bytes(raw: bytes) -> torch.Tensor:
    """A sample's bytes as a tensor; an empty image member is a bad image (frombuffer raised)."""
    return (
        torch.frombuffer(bytearray(raw), dtype=torch.uint8)
        if raw
        else torch.empty(0, dtype=torch.uint8)
    )


def _decode_cpu(raw: torch.Tensor, size: int, fit: Fit) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The image folder's worker decode (`FolderImages`), on bytes from a shard."""
    img = decode_bytes(raw)
    return None if img is None else fit_image(img, size, fit)
