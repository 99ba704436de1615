"""`data.holdout` on the streamed sources (tar shards, parquet/arrow): the same class-balanced,
seeded draw as for images held in memory, chosen from the labels alone, kept as sample indices
that the training stream skips and the holdout stream reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from distill_cli import api
from distill_cli.data import DataBundle, build_data
from distill_cli.data.shard_writer import write_shards
from distill_cli.data.sources import balanced_indices
from distill_cli.data.stream import ShardSet, ShardStream
from distill_cli.data.streamed import unread_splits
from distill_cli.errors import DistillError
from tests.conftest import class_jpeg, write_recipe

CLASSES = ["cat", "dog", "fox"]
SIZES = {"train": (10, 8, 6), "val": (4, 4, 4)}  # uneven training classes: 24 images


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("folder")
    for split, sizes in SIZES.items():
        for label, (name, count) in enumerate(zip(CLASSES, sizes, strict=True)):
            (root / split / name).mkdir(parents=True)
            for n in range(count):
                (root / split / name / f"{n}.jpg").write_bytes(class_jpeg(label, n))
    return root


@pytest.fixture(scope="module")
def shards(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train: 5 shards of at most 5 images, val: 3 of 5, with their `shards.json` indexes."""
    out = tmp_path_factory.mktemp("wds")
    for split in SIZES:
        write_shards(folder / split, out, prefix=split, per_shard=5)
    return out


def _parquet(folder: Path, out: Path, split: str, labeled: bool = True) -> None:
    """A split as `datasets` pushes it: an Image struct column, a ClassLabel column."""
    rows: dict[str, list[Any]] = {"image": [], "label": []}
    for label, name in enumerate(CLASSES):
        for path in sorted((folder / split / name).glob("*.jpg")):
            rows["image"].append({"bytes": path.read_bytes(), "path": path.name})
            rows["label"].append(label)
    features = {"image": {"_type": "Image"}, "label": {"_type": "ClassLabel", "names": CLASSES}}
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    table = pa.table(rows).replace_schema_metadata(meta)
    if not labeled:
        table = table.drop_columns("label")
    (out / split).mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / split / "data.parquet", row_group_size=5)


@pytest.fixture(scope="module")
def hf(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hf")
    for split in SIZES:
        _parquet(folder, out, split)
    return out


def _tar(root: Path, **kw: Any) -> DataBundle:
    return build_data("shards", root, train_dir="train-*.tar", val_dir="val-*.tar", **kw)


def _stream(data: ShardSet, batch: int, **kw: Any) -> ShardStream:
    return ShardStream(data, batch, torch.device("cpu"), load_size=16, seed=3, **kw)


def _read(data: ShardSet, **kw: Any) -> tuple[list[int], list[int]]:
    """(indices, labels) of one whole pass over `data`, in stream order."""
    batches = list(_stream(data, 4, shuffle=False, drop_last=False, **kw).epoch(0))
    index = [i for b in batches for i in b.index.tolist()]
    return index, [x for b in batches for x in b.labels.tolist()]


def _no_images(*args: Any) -> Any:
    raise AssertionError("images read to choose the holdout")


def _all_labels(data: ShardSet) -> torch.Tensor:
    """Every sample's label at its index, read through the stream (images and all)."""
    index, labels = _read(data)
    out = torch.full((len(index),), -1)
    out[torch.tensor(index)] = torch.tensor(labels)
    return out


@pytest.mark.parametrize("kind", ["shards", "hf_dataset"])
def test_streamed_holdout_is_balanced_disjoint_and_fixed_by_the_seed(
    kind: str, shards: Path, hf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def build(**kw: Any) -> DataBundle:
        return _tar(shards, **kw) if kind == "shards" else build_data("hf_dataset", hf, **kw)

    plain = build()
    # choosing reads the labels only: a reader of images that fails is never called
    reader = {"shards": "shards.read_tar", "hf_dataset": "parquet.read_rows"}[kind]
    with monkeypatch.context() as patch:
        patch.setattr(f"distill_cli.data.{reader}", _no_images)
        held_only = build(holdout=9, seed=0)
    data = build(holdout=9, seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (15, 9, 12)
    assert data.test.name == plain.val.name and data.val.name.endswith("(holdout)")
    assert [u.count for u in held_only.val.units] == [u.count for u in data.val.units]

    held, held_labels = _read(data.val)
    rest, _ = _read(data.train, workers=2)
    assert len(held) == 9 and len(rest) == 15 and not set(held) & set(rest)
    assert sorted(held + rest) == list(range(24))  # nothing lost
    assert torch.bincount(torch.tensor(held_labels), minlength=3).tolist() == [3, 3, 3]
    # the draw is the in-memory one (ImageSet.split_off's), on the same labels and seed
    expected = balanced_indices(_all_labels(plain.train), 3, 9, 0 + 7)
    assert sorted(held) == expected.tolist()

    assert sorted(_read(build(holdout=9, seed=0).val)[0]) == sorted(held)  # same seed, same
    assert sorted(_read(build(holdout=9, seed=1).val)[0]) != sorted(held)
    # 20 of 10/8/6: quotas 7/7/6 in a seeded order; every class keeps a training image, so a
    # short class gives all but one and the others fill in
    big, big_labels = _read(build(holdout=20, seed=0).val)
    counts = torch.bincount(torch.tensor(big_labels), minlength=3).tolist()
    assert len(set(big)) == 20 and sum(counts) == 20
    assert all(n <= size - 1 for n, size in zip(counts, (10, 8, 6), strict=True))
    with pytest.raises(DistillError, match="leave each of the 3 classes"):
        build(holdout=22, seed=0)


def test_index_and_headers_hold_out_the_same_samples(shards: Path, tmp_path: Path) -> None:
    copy = tmp_path / "wds"
    copy.mkdir()
    for path in shards.glob("*.tar"):
        (copy / path.name).write_bytes(path.read_bytes())  # no shards.json: counted from headers
    counted, indexed = _tar(copy, holdout=7, seed=4), _tar(shards, holdout=7, seed=4)
    assert [u.count for u in counted.train.units] == [u.count for u in indexed.train.units]
    assert sorted(_read(counted.val)[0]) == sorted(_read(indexed.val)[0])


def test_filtered_streams_count_steps_exactly_and_resume_at_the_sample(shards: Path) -> None:
    data = _tar(shards, holdout=9, seed=0)
    train = _stream(data.train, 4, workers=2)
    assert len(data.train) == 15 and train.steps_per_epoch == 3
    for epoch in (0, 1):
        batches = [b.index.tolist() for b in train.epoch(epoch)]
        assert [len(b) for b in batches] == [4, 4, 4]
        assert not {i for b in batches for i in b} & set(data.val.pick.indices)
    whole = [b.index.tolist() for b in train.epoch(2)]
    assert [b.index.tolist() for b in train.epoch(2, 1)] == whole[1:]  # exact resume
    assert [b.index.tolist() for b in _stream(data.train, 4, workers=2).epoch(2)] == whole
    for kw in ({"workers": 0}, {"workers": 2, "rank": 1, "world": 2}):
        stream = _stream(data.train, 4, **kw)
        assert [b.index.tolist() for b in stream.epoch(1, 2)] == [
            b.index.tolist() for b in stream.epoch(1)
        ][2:], kw
    # every kept sample once an epoch, without drop_last; the holdout's last batch is short
    every = _stream(data.train, 5, drop_last=False, workers=2)
    assert sorted(i for b in every.epoch(0) for i in b.index.tolist()) == sorted(
        _read(data.train)[0]
    )
    held = _stream(data.val, 4, shuffle=False, drop_last=False)
    assert held.steps_per_epoch == 3 and [len(b.index) for b in held.epoch(0)] == [4, 4, 1]


def test_an_unlabeled_streamed_training_split_is_refused(folder: Path, tmp_path: Path) -> None:
    _parquet(folder, tmp_path, "train", labeled=False)
    _parquet(folder, tmp_path, "val")
    assert not build_data("hf_dataset", tmp_path).labeled_train
    with pytest.raises(DistillError, match="needs labels") as err:
        build_data("hf_dataset", tmp_path, holdout=3)
    assert "\n" not in str(err.value) and err.value.where.startswith("data.holdout")
    assert err.value.hint


def test_a_plan_without_the_data_counts_the_holdout(tmp_path: Path) -> None:
    train, val, test = unread_splits("train", "val", tmp_path, (100, 20), 4, 10)
    assert (len(train), len(val), len(test)) == (90, 10, 20)
    assert unread_splits("train", "val", tmp_path, (100, 20), 4)[2] is None
    with pytest.raises(DistillError, match="cannot hold out 100 of 100"):
        unread_splits("train", "val", tmp_path, (100, 20), 4, 100)


def test_a_run_on_shards_with_a_holdout_reports_its_test_set(shards: Path, tmp_path: Path) -> None:
    data = {"source": "shards", "root": str(shards), "train_dir": "train-*.tar"}
    data |= {"val_dir": "val-*.tar", "holdout": 6, "workers": 0, "load_size": 16}
    body = {
        "model": {"model": "test_resnet", "input_size": 16},
        "data": {"shuffle_buffer": 8, **data},
        "method": {"name": "supervised"},
        "schedule": {"epochs": 2, "batch_size": 6, "log_every": 2},
        "runtime": {"threads": 1},
        "output": {"dir": str(tmp_path / "runs")},
    }
    recipe = write_recipe(tmp_path, "held", body)
    plan = api.plan(recipe).data
    assert (plan.train.images, plan.val.images, plan.test.images) == (18, 6, 12)
    summary = api.run(recipe)
    assert summary.steps == 6  # 18 training samples, batches of 6, two epochs
    assert summary.test is not None and summary.test.images == 12
    assert summary.test.top1 is not None and summary.test.best_top1 is not None
    written = json.loads((summary.run_dir / "summary.json").read_text())
    assert written["test"]["images"] == 12
    records = (summary.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["kind"] for r in records].count("test") == 1
