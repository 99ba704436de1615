"""Streamed data sets (issue 25, item 3): WebDataset tar shards and Hugging Face parquet/arrow.

Small generated data: an image folder of 3 classes x 8 JPEGs, written as shards by the
converter script and as parquet row groups in the layout `datasets` writes.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from distill_cli import api
from distill_cli.data.parquet import scan_hf_split
from distill_cli.data.shards import scan_tar_split
from distill_cli.data.shardset import ShardSet
from distill_cli.data.stream import ShardStream
from distill_cli.errors import DistillError
from tests.conftest import class_jpeg, write_recipe

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["cat", "dog", "fox"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("folder")
    for split in ("train", "val"):
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for n in range(8 if split == "train" else 4):
                (root / split / name / f"{n}.jpg").write_bytes(class_jpeg(label, n))
    return root


@pytest.fixture(scope="module")
def shards(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder converted by the script: train 4 shards of 6 images, val 2 of 6."""
    import runpy

    script = runpy.run_path(str(ROOT / "scripts" / "folder_to_shards.py"))  # not as __main__
    out = tmp_path_factory.mktemp("wds")
    for split in ("train", "val"):
        args = [str(folder / split), str(out), "--prefix", split, "--per-shard", "6"]
        assert script["main"](args) == 0
    return out


def _stream(data: ShardSet, batch: int, **kw: Any) -> ShardStream:
    return ShardStream(data, batch, torch.device("cpu"), load_size=16, seed=3, **kw)


def _indices(stream: ShardStream, epoch: int, start: int = 0) -> list[list[int]]:
    return [b.index.tolist() for b in stream.epoch(epoch, start)]


def test_converter_writes_webdataset_shards_and_an_index(shards: Path) -> None:
    names = sorted(p.name for p in shards.glob("*.tar"))
    assert names == [f"train-{i:06d}.tar" for i in range(4)] + ["val-000000.tar", "val-000001.tar"]
    index = json.loads((shards / "train.shards.json").read_text())
    assert index["classes"] == CLASSES and sum(index["shards"].values()) == 24
    with tarfile.open(shards / "train-000000.tar") as tar:
        members = tar.getnames()
    assert len(members) == 12 and {m.split(".")[-1] for m in members} == {"jpg", "cls"}
    # the index and a count from the headers agree
    split = scan_tar_split(str(shards / "train-{000000..000003}.tar"), "data.train_dir")
    (shards / "train.shards.json").rename(shards / "moved")
    try:
        counted = scan_tar_split(str(shards / "train-*.tar"), "data.train_dir")
    finally:
        (shards / "moved").rename(shards / "train.shards.json")
    assert [u.count for u in split.units] == [u.count for u in counted.units] == [6] * 4
    assert split.classes == CLASSES and counted.classes == ["class_0", "class_1", "class_2"]


def test_epochs_are_split_across_processes_and_workers_without_overlap(shards: Path) -> None:
    data = scan_tar_split(str(shards / "train-{000000..000003}.tar"), "data.train_dir")
    one = _stream(data, 8, workers=2)
    ranks = [_stream(data, 8, workers=2, rank=r, world=2) for r in (0, 1)]
    read = [
        {
            (p.unit.path, i)
            for lane in s.lanes(0)
            for p in lane
            for i in range(p.skip, p.skip + p.take)
        }
        for s in ranks
    ]
    assert len(read[0]) == len(read[1]) == 12 and not read[0] & read[1], "a sample read twice"
    assert all(len(s.lanes(0)) == 2 for s in ranks), "each process's range dealt to 2 workers"
    for epoch in (0, 1):
        per_rank = [_indices(s, epoch) for s in ranks]
        assert all(len(b) == 4 for batches in per_rank for b in batches)
        seen = [i for batches in per_rank for b in batches for i in b]
        assert sorted(seen) == list(range(24)), "each image once per epoch"
        # the global batch of a step is split in two disjoint halves
        for a, b in zip(*per_rank, strict=True):
            assert not set(a) & set(b)
    assert _indices(one, 0) == _indices(_stream(data, 8, workers=2), 0), "seeded"
    assert _indices(one, 0) != _indices(one, 1), "another order every epoch"
    assert sorted(i for b in _indices(one, 1) for i in b) == list(range(24))


def test_resume_continues_at_the_exact_sample(shards: Path) -> None:
    data = scan_tar_split(str(shards / "train-*.tar"), "data.train_dir")
    for kw in ({"workers": 2}, {"workers": 0}, {"workers": 2, "rank": 1, "world": 2}):
        stream = _stream(data, 6, **kw)
        whole = _indices(stream, 2)
        assert _indices(stream, 2, start=3) == whole[3:], kw
    # a process whose shards run out before the epoch's end reads them again
    uneven = scan_tar_split(str(shards / "train-{000000..000002}.tar"), "data.train_dir")
    halves = [_indices(_stream(uneven, 6, rank=r, world=2), 0) for r in (0, 1)]
    assert [len(h) for h in halves] == [3, 3]


def test_a_limited_streamed_split_reads_exactly_that_many_samples_of_seeded_shards(
    shards: Path,
) -> None:
    """What an export takes for parity and int8 calibration from a streamed split: `limit`
    samples, whole shards in a seeded order, the last one cut short, none read twice."""
    train = scan_tar_split(str(shards / "train-*.tar"), "data.train_dir")
    assert train.limited(None, 0) is train and train.limited(24, 0) is train
    picked = train.limited(8, seed=1)
    assert len(picked) == 8 and [u.count for u in picked.units] == [6, 2]
    read = [i for b in _indices(_stream(picked, 4, shuffle=False, drop_last=False), 0) for i in b]
    assert len(read) == len(set(read)) == 8
    first = picked.units[0]
    assert set(read) >= set(range(first.start, first.start + 6))  # a whole shard, then a part
    others = {tuple(u.path for u in train.limited(8, seed=s).units) for s in range(6)}
    assert len(others) > 1  # the seed picks the shards


def _run_body(out: Path, data: dict) -> dict:
    return {
        "model": {"model": "test_resnet", "input_size": 16},
        "data": {"workers": 0, "load_size": 16, "shuffle_buffer": 8, **data},
        "method": {"name": "supervised"},
        "schedule": {"epochs": 1, "batch_size": 6, "log_every": 2},
        "runtime": {"threads": 1},
        "output": {"dir": str(out)},
    }


def test_a_run_on_shards_decodes_like_the_image_folder(shards: Path, folder: Path) -> None:
    out = shards.parent / "runs"
    data = {"source": "shards", "root": str(shards)}
    data |= {"train_dir": "train-{000000..000003}.tar", "val_dir": "val-*.tar"}
    recipe = write_recipe(shards.parent, "wds", _run_body(out, data))
    summary = api.run(recipe, overwrite=True)
    assert summary.steps == 4 and summary.student.top1 is not None
    _export_checks_real_images(summary.run_dir, shards.parent / "export")
    # the validation images decoded from the shards are the folder's, fitted the same way
    from distill_cli.data.folders import scan_image_folder
    from distill_cli.data.loader import BatchStream

    val = scan_tar_split(str(shards / "val-*.tar"), "data.val_dir")
    streamed = list(_stream(val, 4, shuffle=False, drop_last=False).epoch(0))
    pixels = torch.cat([b.images for b in streamed])
    assert pixels.shape == (12, 3, 16, 16)
    files = BatchStream(scan_image_folder(folder / "val"), 4, torch.device("cpu"), load_size=16)
    expected = torch.cat([b.images for b in files.epoch(0)])
    key = lambda t: sorted(map(tuple, t.flatten(1).tolist()))  # noqa: E731
    assert key(pixels) == key(expected)
    # the batched decode (nvJPEG on CUDA; here its CPU fallback) gives the same pixels
    batched = _stream(val, 4, shuffle=False, drop_last=False, decode_on_device=True)
    assert torch.equal(torch.cat([b.images for b in batched.epoch(0)]), pixels)


def _export_checks_real_images(run: Path, out: Path) -> None:
    """An export of a streamed run checks parity on its validation images and calibrates int8
    on its training images: it used random inputs (int8 calibrated on noise) with a note."""
    report = api.export(
        run, out=out, quantize="int8", images=10, calib_images=8, latency=False,
        exporter="torchscript", simplify=False, check=False,
    ).to_dict()  # fmt: skip
    parity = report["parity"]["inputs"]
    assert parity["kind"] == "validation" and parity["images"] == 10 and parity["labeled"]
    calib = report["variants"]["int8"]["calibration"]
    assert calib["random_inputs"] is False and calib["images"] == 8
    assert report["parity"]["top1_pytorch"] is not None  # labels: the gate can use accuracy
    assert not any("random inputs" in n for n in report["source"]["notes"])


def _hf_parquet(folder: Path, out: Path, group: int) -> Path:
    """The folder as `datasets` would push it: an Image struct column, a ClassLabel column."""
    rows = {"image": [], "label": []}
    for label, name in enumerate(CLASSES):
        for path in sorted((folder / "train" / name).glob("*.jpg")):
            rows["image"].append({"bytes": path.read_bytes(), "path": path.name})
            rows["label"].append(label)
    features = {"image": {"_type": "Image"}, "label": {"_type": "ClassLabel", "names": CLASSES}}
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    table = pa.table(rows).replace_schema_metadata(meta)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / "train-00000-of-00001.parquet", row_group_size=group)
    return out


def test_hf_parquet_and_arrow_sets_stream_every_row(folder: Path, tmp_path: Path) -> None:
    root = _hf_parquet(folder, tmp_path / "hf", group=5)
    data = scan_hf_split(root, "data.train_dir", "image", "label")
    assert data.classes == CLASSES and len(data) == 24
    assert [u.count for u in data.units] == [5, 5, 5, 5, 4]  # row groups are the shards
    batches = list(_stream(data, 6, workers=2).epoch(0))
    assert sorted(i for b in batches for i in b.index.tolist()) == list(range(24))
    for b in batches:  # the class colour survives decoding: labels belong to their images
        colour = b.images.float().mean(dim=(2, 3)).argmax(dim=1)
        assert torch.equal(colour, b.labels)
    # a save_to_disk folder: arrow stream files and dataset_info.json
    table = pq.read_table(root / "train-00000-of-00001.parquet")
    disk = tmp_path / "disk"
    disk.mkdir()
    arrow = str(disk / "data-00000-of-00001.arrow")
    with pa.OSFile(arrow, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    info = {"features": {"label": {"_type": "ClassLabel", "names": CLASSES}}}
    (disk / "dataset_info.json").write_text(json.dumps(info))
    on_disk = scan_hf_split(disk, "data.train_dir", "image", "label")
    assert on_disk.classes == CLASSES and [u.count for u in on_disk.units] == [24]
    assert len([i for b in _stream(on_disk, 6).epoch(0) for i in b.index.tolist()]) == 24


def test_hub_downloads_and_dataset_dicts_are_read_one_split_at_a_time(
    folder: Path, tmp_path: Path
) -> None:
    """A Hub download keeps its splits side by side (`plain_text/train-*.parquet`,
    `plain_text/test-*.parquet`): pointing train_dir at that folder read both, the test split
    trained on. It is refused naming each split's pattern, and a split not found names the
    splits there are (the Hub files, or a save_to_disk DatasetDict's dataset_dict.json)."""
    from distill_cli.data.streamed import streamed_splits

    hub = tmp_path / "cifar10"
    _hf_parquet(folder, hub / "plain_text", group=6)
    train = hub / "plain_text" / "train-00000-of-00001.parquet"
    train.rename(hub / "plain_text" / "test-00000-of-00001.parquet")
    _hf_parquet(folder, hub / "plain_text", group=6)
    columns, limits = ("image", "label"), {"subset": None}
    patterns = r"test: plain_text/test-\*\.parquet, train: plain_text/train-\*\.parquet"
    with pytest.raises(DistillError, match=r"holds the files of 2 splits \(test, train\)") as info:
        streamed_splits("hf_dataset", hub, "plain_text", "plain_text", columns, limits)
    assert "would mix them" in str(info.value) and len(str(info.value).splitlines()) == 1
    with pytest.raises(DistillError, match=patterns):  # the default train/ is not there
        streamed_splits("hf_dataset", hub, "train", "val", columns, limits)
    train_s, val_s = streamed_splits(
        "hf_dataset", hub, "plain_text/train-*.parquet", "plain_text/test-*", columns, limits
    )
    assert len(train_s) == len(val_s) == 24
    dd = tmp_path / "dd"  # DatasetDict.save_to_disk: train/ and test/, no val/
    for split in ("train", "test"):
        (dd / split).mkdir(parents=True)
        table = pq.read_table(train.parent / f"{split}-00000-of-00001.parquet")
        arrow = str(dd / split / "data-00000-of-00001.arrow")
        with pa.OSFile(arrow, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    (dd / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    with pytest.raises(DistillError, match=r"data set's splits are train, test"):
        streamed_splits("hf_dataset", dd, "train", "val", columns, limits)
    assert len(streamed_splits("hf_dataset", dd, "train", "test", columns, limits)[1]) == 24


def test_splits_whose_class_labels_are_in_another_order_are_refused(
    folder: Path, tmp_path: Path
) -> None:
    """Label 0 is `cat` in train and `fox` in val (splits written apart, their ClassLabel
    names in another order): val's numbers were read with train's names, every evaluation on
    wrong labels without a word. Refused naming both orders; a training split without names
    (`class_0`, ...) has nothing to compare and reads as before."""
    from distill_cli.data.streamed import streamed_splits

    root = tmp_path / "hf"
    _hf_parquet(folder, root / "train", group=6)
    val = root / "val"
    val.mkdir()
    table = pq.read_table(root / "train" / "train-00000-of-00001.parquet")
    features = {"label": {"_type": "ClassLabel", "names": CLASSES[::-1]}}
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    pq.write_table(table.replace_schema_metadata(meta), val / "val-00000-of-00001.parquet")
    columns, limits = ("image", "label"), {"subset": None}
    with pytest.raises(DistillError, match=r"\['fox', 'dog', 'cat'\] are not the training"):
        streamed_splits("hf_dataset", root, "train", "val", columns, limits)
    bare = table.replace_schema_metadata({})  # a training split without ClassLabel names
    pq.write_table(bare, root / "train" / "train-00000-of-00001.parquet")
    assert streamed_splits("hf_dataset", root, "train", "val", columns, limits)[0].classes == [
        f"class_{i}" for i in range(3)
    ]


def test_a_run_on_a_hf_dataset(folder: Path, tmp_path: Path) -> None:
    root = _hf_parquet(folder, tmp_path / "hf" / "train", group=6)
    _hf_parquet(folder, tmp_path / "hf" / "val", group=6)
    data = {"source": "hf_dataset", "root": str(tmp_path / "hf")}
    recipe = write_recipe(tmp_path, "hf", _run_body(tmp_path / "runs", data))
    summary = api.run(recipe)
    assert summary.steps == 4 and root.is_dir()
    _export_checks_real_images(summary.run_dir, tmp_path / "export")


@pytest.mark.parametrize("checked", [12, 11], ids=["whole-split", "seeded-shards"])
def test_a_teacher_checkpoint_is_scored_on_streamed_validation_data(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checked: int
) -> None:
    """Function matching on shards from a teacher checkpoint (runs.md's sharded data with a
    trained teacher) scores the teacher before training like an image folder's run: it was a
    traceback (`ShardSet` has no `labels`). A teacher that always says `cat` (4 of 12 val
    images) is near chance, on the whole split and on the seeded shards of a bounded check."""
    import timm

    from distill_cli.train import teacher_check

    monkeypatch.setattr(teacher_check, "CHECK_IMAGES", checked)
    teacher = timm.create_model("test_resnet", num_classes=3)
    with torch.no_grad():
        teacher.fc.weight.zero_()
        teacher.fc.bias.copy_(torch.tensor([5.0, 0.0, 0.0]))
    torch.save(teacher.state_dict(), tmp_path / "cat.pt")
    data = {"source": "shards", "root": str(shards)}
    data |= {"train_dir": "train-*.tar", "val_dir": "val-*.tar"}
    body = _run_body(tmp_path / "runs", data)
    body["teacher"] = {"model": "test_resnet", "input_size": 16, "checkpoint": "cat.pt"}
    body["student"] = body.pop("model")
    body["method"] = {"name": "function_matching"}
    recipe = write_recipe(tmp_path, "fm", body)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DistillError) as caught:
        api.run(recipe)
    assert str(caught.value).startswith("the teacher scores ")
    assert f"top-1 on {checked} validation images, below 1.5x chance" in str(caught.value)
    assert not (tmp_path / "runs").exists()
    summary = api.run(recipe, ["teacher.check_accuracy=false"])
    assert summary.teacher.top1 is not None and summary.steps == 4


# --- bad inputs: one line each ---------------------------------------------------------------


def _error(recipe: Path, *sets: str) -> str:
    """What `distill run --dry-run` says for `recipe`: one line, as the CLI prints it."""
    with pytest.raises(DistillError) as caught:
        api.plan(recipe, list(sets))
    assert "\n" not in str(caught.value) and caught.value.code == 2
    return str(caught.value)


def test_bad_streamed_inputs_are_one_line_errors(
    shards: Path, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a shard with a sample that has no label: through the CLI, exit 2 and one line
    bad = tmp_path / "bad"
    bad.mkdir()
    with tarfile.open(bad / "s-0.tar", "w") as tar:
        members = (("a.jpg", class_jpeg(0, 0)), ("a.cls", b"0"), ("b.jpg", class_jpeg(1, 1)))
        for name, raw in members:
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    data = {"source": "shards", "root": str(bad), "train_dir": "s-{0..0}.tar", "val_dir": "."}
    recipe = write_recipe(tmp_path, "bad", _run_body(tmp_path / "runs", data))
    args = [sys.executable, "-m", "distill_cli", "run", str(recipe), "--dry-run"]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        f"error: 1 of 2 samples have no .cls label ({bad / 's-0.tar'}) - give every sample its "
        "{key}.cls, or none (unlabeled distillation data)"
    ]
    # a pattern that matches nothing
    line = _error(recipe, "data.train_dir=s-{1..3}.tar")
    assert line.startswith("no tar shards match (data.train_dir: ")
    # a parquet file without the named column
    hf = _hf_parquet(folder, tmp_path / "hf", group=6)
    data = {"source": "hf_dataset", "root": str(hf.parent), "train_dir": "hf", "val_dir": "hf"}
    recipe = write_recipe(tmp_path, "cols", _run_body(tmp_path / "runs", data))
    line = _error(recipe, "data.image_column=img")
    assert "no column 'img'" in line and "data.image_column" in line
    # a world size that does not divide the global batch (checked before joining the group)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "0")
    assert _error(recipe) == (
        "batch size 6 cannot be split over 4 processes (schedule.batch_size) - use a multiple "
        "of 4 (it is the global batch)"
    )


def test_unlabeled_training_splits_take_the_validation_classes(
    folder: Path, tmp_path: Path
) -> None:
    from distill_cli.data import build_data

    _hf_parquet(folder, tmp_path / "val", group=6)
    table = pq.read_table(tmp_path / "val" / "train-00000-of-00001.parquet").drop_columns("label")
    (tmp_path / "train").mkdir()
    pq.write_table(table, tmp_path / "train" / "images.parquet", row_group_size=6)
    data = build_data("hf_dataset", tmp_path)
    assert not data.labeled_train and data.train.classes == data.val.classes == CLASSES
    batch = next(iter(_stream(data.train, 6).epoch(0)))
    assert batch.labels is None and batch.images.shape == (6, 3, 16, 16)


def _tar(path: Path, labels: list[bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for n, label in enumerate(labels):
            for name, raw in ((f"s{n}.jpg", class_jpeg(n % 3, n)), (f"s{n}.cls", label)):
                info = tarfile.TarInfo(name)
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))


def test_labels_outside_the_classes_are_one_line_errors(tmp_path: Path) -> None:
    """A validation shard labelled 0..4 beside a 2-class train split trained, then crashed in
    the confusion matrix; a `-1` label was reported as missing. Each is named, before any step
    where the headers tell, or at the first batch that holds it (shards with an index)."""
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    _tar(tmp_path / "train" / "a.tar", [b"0", b"1"] * 3)
    _tar(tmp_path / "val" / "a.tar", [b"0", b"4"])
    train = scan_tar_split(str(tmp_path / "train"), "data.train_dir")
    with pytest.raises(DistillError, match="label 4 is beyond the train split's 2 classes"):
        scan_tar_split(str(tmp_path / "val"), "data.val_dir", train.classes)
    _tar(tmp_path / "val" / "a.tar", [b"0", b"-1"])
    with pytest.raises(DistillError, match=r"label '-1' is not a class number"):
        scan_tar_split(str(tmp_path / "val"), "data.val_dir", train.classes)
    _tar(tmp_path / "val" / "a.tar", [b"0", b"4"])
    index = {"classes": ["a", "b"], "shards": {"a.tar": 2}}  # the index: headers not read
    (tmp_path / "val" / "val.shards.json").write_text(json.dumps(index))
    val = scan_tar_split(str(tmp_path / "val"), "data.val_dir", train.classes)
    with pytest.raises(DistillError, match="label 4 is beyond the 2 classes"):
        list(_stream(val, 2).epoch(0))


def _cut_points(shard: Path) -> dict[str, int]:
    """Where a copy of `shard` can stop: inside a header, at a member boundary, inside an
    image, and after the last member (only the end-of-archive marker lost)."""
    with tarfile.open(shard) as tar:
        members = tar.getmembers()
    third, last = members[2], members[-1]
    return {
        "mid-header": third.offset + 100,
        "member-boundary": third.offset,
        "mid-member": third.offset_data + 10,
        "marker-lost": last.offset_data + 512 * ((last.size + 511) // 512),
    }


@pytest.mark.parametrize("indexed", [True, False], ids=["with-index", "headers-read"])
def test_a_truncated_shard_is_refused_before_training_naming_it(
    shards: Path, tmp_path: Path, indexed: bool
) -> None:
    """A copy cut short read as a smaller shard (a cut at a member boundary or inside a header
    is the end of the archive to Python's tar reader) and trained on what it held."""
    import shutil

    for name in ("train-000000.tar", "train-000001.tar", "train.shards.json"):
        shutil.copy(shards / name, tmp_path / name)
    if not indexed:
        (tmp_path / "train.shards.json").unlink()
    pattern = str(tmp_path / "train-{000000..000001}.tar")
    whole = (tmp_path / "train-000001.tar").read_bytes()
    assert len(scan_tar_split(pattern, "data.train_dir")) == 12  # the whole copies are fine
    for where, cut in _cut_points(tmp_path / "train-000001.tar").items():
        (tmp_path / "train-000001.tar").write_bytes(whole[:cut])
        with pytest.raises(DistillError) as info:
            scan_tar_split(pattern, "data.train_dir")
        err = info.value
        assert err.where == str(tmp_path / "train-000001.tar"), where
        assert err.code == 2 and "copy the shard again" in (err.hint or ""), where
        assert "truncated" in str(err) or "unexpected end" in str(err), (where, str(err))


def test_a_shard_cut_short_during_a_run_stops_it_naming_the_shard(
    shards: Path, tmp_path: Path
) -> None:
    import shutil

    for name in ("train-000000.tar", "train-000001.tar", "train.shards.json"):
        shutil.copy(shards / name, tmp_path / name)
    data = scan_tar_split(str(tmp_path / "train-{000000..000001}.tar"), "data.train_dir")
    shard = tmp_path / "train-000001.tar"
    cut = _cut_points(shard)["mid-header"]  # the stream itself ends here without an error
    shard.write_bytes(shard.read_bytes()[:cut])
    with pytest.raises(DistillError) as info:
        _indices(_stream(data, 4, workers=0), 0)
    assert info.value.where == str(shard) and info.value.code == 1  # the run failed
    assert "truncated" in str(info.value)


def _parquet_with(out: Path, meta: dict[bytes, bytes] | None = None, **columns: Any) -> Path:
    table = pa.table(columns)
    if meta is not None:
        table = table.replace_schema_metadata(meta)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / "train-00000-of-00001.parquet", row_group_size=2)
    return out


def _scan_error(root: Path) -> str:
    with pytest.raises(DistillError) as caught:
        scan_hf_split(root, "data.train_dir", "image", "label")
    assert "\n" not in str(caught.value) and caught.value.code == 2
    return str(caught.value)


def test_broken_or_mistyped_parquet_data_sets_are_one_line_errors(tmp_path: Path) -> None:
    """String labels and a list column were tracebacks, float labels trained truncated to
    ints (1.5 -> class 1), image paths stored as strings crashed a DataLoader worker, broken
    feature metadata was a JSONDecodeError; a truncated file is named."""
    images = [{"bytes": class_jpeg(i % 3, i), "path": f"{i}.jpg"} for i in range(6)]
    labels = [i % 3 for i in range(6)]
    good = _parquet_with(tmp_path / "good", image=images, label=labels)
    raw = (good / "train-00000-of-00001.parquet").read_bytes()
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "train-00000-of-00001.parquet").write_bytes(raw[: len(raw) // 2])  # a cut download
    assert _scan_error(cut).startswith("cannot read data set file: ")
    damaged = bytearray(raw)  # the footer is whole; a row group's label pages are not
    group = pq.ParquetFile(good / "train-00000-of-00001.parquet").metadata.row_group(1)
    (column,) = [
        c for c in map(group.column, range(group.num_columns)) if c.path_in_schema == "label"
    ]
    start = column.dictionary_page_offset or column.data_page_offset
    damaged[start : start + column.total_compressed_size] = b"\x5a" * column.total_compressed_size
    (cut / "train-00000-of-00001.parquet").write_bytes(bytes(damaged))
    assert _scan_error(cut).startswith("cannot read data set file: ")  # was a multi-line OSError
    names = ["cat", "dog", "fox"]
    strings = _parquet_with(tmp_path / "s", image=images, label=[names[n] for n in labels])
    assert _scan_error(strings).startswith("column 'label' holds string, not class numbers")
    floats = _parquet_with(tmp_path / "f", image=images, label=[n + 0.5 for n in labels])
    assert _scan_error(floats).startswith("column 'label' holds double, not class numbers")
    paths = _parquet_with(
        tmp_path / "p", image=[f"/photos/{i}.jpg" for i in range(6)], label=labels
    )
    assert "holds string, not image bytes (file paths are not read" in _scan_error(paths)
    meta = {b"huggingface": b"{not json"}
    broken = _parquet_with(tmp_path / "m", meta, image=images, label=labels)
    assert _scan_error(broken).startswith("the data set's feature description is not valid JSON")
    # the second file of a split lacks the label column (the first one was the only one read)
    pq.write_table(pa.table({"image": images}), good / "train-00001-of-00001.parquet")
    assert _scan_error(good).startswith("the data set has no column 'label'")


def test_an_empty_image_in_a_parquet_row_is_a_bad_image_and_no_bytes_is_refused(
    folder: Path, tmp_path: Path
) -> None:
    """One damaged row (empty bytes) is a bad image like a damaged file (on_bad_image: skip
    counts it once and the batch's stand-in fills it); a row with no bytes at all (a data set
    that stores paths) is refused before training, naming the file and how to drop it."""
    root = _hf_parquet(folder, tmp_path / "hf", group=6)
    table = pq.read_table(root / "train-00000-of-00001.parquet")
    images = table.column("image").to_pylist()
    images[3] = {"bytes": b"", "path": "damaged.jpg"}
    damaged = table.set_column(0, "image", pa.array(images, type=table.schema.field(0).type))
    pq.write_table(damaged, root / "train-00000-of-00001.parquet", row_group_size=6)
    stream = _stream(scan_hf_split(root, "data.train_dir", "image", "label"), 6)
    for epoch in range(2):
        batches = list(stream.epoch(epoch))
        assert sum(len(b.index) for b in batches) == 24
    assert stream.bad_images == 1
    images[3] = {"bytes": None, "path": "elsewhere.jpg"}
    missing = table.set_column(0, "image", pa.array(images, type=table.schema.field(0).type))
    pq.write_table(missing, root / "train-00000-of-00001.parquet", row_group_size=6)
    with pytest.raises(DistillError) as caught:  # before training: the footer counts nulls
        scan_hf_split(root, "data.train_dir", "image", "label")
    assert str(caught.value).startswith("1 rows have no image bytes in column 'image' (")
    assert "dataset.filter" in str(caught.value)


def test_a_shard_written_again_after_its_index_is_refused_not_streamed_by_the_old_count(
    folder: Path, tmp_path: Path
) -> None:
    """With an index the headers are not read: a shard rewritten with fewer images was
    streamed by the index's count. The index keeps each shard's size; another size is refused."""
    from distill_cli.data.shard_writer import write_shards

    write_shards(folder / "train", tmp_path, prefix="train", per_shard=12)
    assert len(scan_tar_split(str(tmp_path / "train-*.tar"), "data.train_dir")) == 24
    # the first shard again, from half the images: the old index still says 12
    with tarfile.open(tmp_path / "train-000000.tar") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()][:12]
    with tarfile.open(tmp_path / "train-000000.tar", "w") as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data))
    with pytest.raises(DistillError, match=r"index is stale: train-000000\.tar") as info:
        scan_tar_split(str(tmp_path / "train-*.tar"), "data.train_dir")
    assert "delete train.shards.json" in info.value.hint
    (tmp_path / "train.shards.json").unlink()  # counted from the headers instead
    assert len(scan_tar_split(str(tmp_path / "train-*.tar"), "data.train_dir")) == 18
