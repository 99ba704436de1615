"""The same photo where it makes a number wrong, and which teacher taught the student.

Users copy photos around: a `val/` holding renamed copies of training photos, a photo saved into
two class folders, a test set made from the training set. Nothing noticed, and the validation
accuracy was inflated by every image the model had trained on. Now each such copy is found
(byte for byte, compared by size first), warned about with counts and examples before
training and in summary.json, and `data.on_duplicates: error` refuses the run.

A run's opening lines (and summary.json) name the teacher's weights file, its checkpoint
entry, size and SHA-256: a `best.pth` replaced by a later training is another teacher.
"""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from distill_cli import api
from distill_cli.data import DataBundle, build_data
from distill_cli.data.duplicates import SAMPLE, find_duplicates
from distill_cli.data.sources import ImageSet
from distill_cli.errors import DistillError
from distill_cli.rundir.summary import RunSummary
from tests.conftest import write_recipe


def _photo(path: Path, seed: int, side: int = 8) -> Path:
    """A PNG of its own (random pixels: no two seeds give the same bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _folder(root: Path) -> None:
    """train/ and val/ of 3 classes x 3 photos, every photo its own."""
    seed = 0
    for split in ("train", "val"):
        for cls in ("cat", "dog", "owl"):
            for i in range(3):
                seed += 1
                _photo(root / split / cls / f"{i}.png", seed)


def test_copies_across_splits_and_classes_are_counted_with_examples(tmp_path: Path) -> None:
    _folder(tmp_path)
    assert find_duplicates(build_data("image_folder", tmp_path), tmp_path).findings == ()
    shutil.copy(tmp_path / "train/cat/0.png", tmp_path / "val/cat/IMG_0001.png")  # renamed
    shutil.copy(tmp_path / "train/dog/1.png", tmp_path / "val/owl/x.png")  # and relabelled
    shutil.copy(tmp_path / "train/owl/2.png", tmp_path / "train/cat/owl.png")  # two classes
    found = find_duplicates(build_data("image_folder", tmp_path), tmp_path)
    labels, overlap = found.findings
    assert (overlap.kind, overlap.role, overlap.count, overlap.of) == ("overlap", "val", 2, 11)
    assert overlap.relabelled == 1
    assert overlap.examples == (
        "val/cat/IMG_0001.png = train/cat/0.png",
        "val/owl/x.png = train/dog/1.png",
    )
    assert (labels.kind, labels.role, labels.count) == ("labels", "train", 2)
    assert labels.examples == ("train/cat/owl.png = train/owl/2.png",)
    warnings = found.warnings()
    assert warnings[1].startswith("2 of 11 val images are also in train, byte for byte, 1 of")
    assert "the val numbers count them as unseen" in warnings[1]
    assert "two or more classes of train" in warnings[0] and "\n" not in "".join(warnings)


def test_the_test_split_is_compared_with_train_and_the_holdout(tmp_path: Path) -> None:
    _folder(tmp_path)
    shutil.copy(tmp_path / "train/cat/0.png", tmp_path / "val/cat/copy.png")
    shutil.copy(tmp_path / "train/cat/0.png", tmp_path / "train/cat/again.png")
    data = build_data("image_folder", tmp_path, holdout=3)
    assert data.test is not None  # val/ is the test split now
    found = {(f.kind, f.role): f for f in find_duplicates(data, tmp_path).findings}
    # the copy in val/ is in the training folder, wherever the holdout drew it from
    assert found[("overlap", "test")].count == 1
    assert found[("overlap", "test")].seen_in == ("train", "holdout")
    assert ("labels", "train") not in found  # a copy in one class: weighted twice, not wrong


def test_copies_within_the_training_folder_leak_into_the_holdout(tmp_path: Path) -> None:
    """`data.holdout` draws from the training folder: a photo saved there four times has
    copies on both sides of the draw, and the holdout's top-1 (and `best`) counts it unseen."""
    _folder(tmp_path)
    for i in range(3):
        shutil.copy(tmp_path / "train/cat/0.png", tmp_path / f"train/cat/again{i}.png")
    data = build_data("image_folder", tmp_path, holdout=3)
    assert tmp_path / "train/cat/again0.png" in (data.val.files or [])  # this seed's draw
    (overlap,) = find_duplicates(data, tmp_path).findings
    assert (overlap.role, overlap.count, overlap.seen_in) == ("holdout", 1, ("train",))
    assert overlap.examples == ("train/cat/again0.png = train/cat/0.png",)


def test_files_are_read_only_where_their_size_collides_and_whole_only_if_samples_do(
    tmp_path: Path,
) -> None:
    """The cost on a big folder: files of a size no other split or class has are not opened;
    a file longer than two samples is read whole only when its samples match another's, and
    files that differ only in the middle are told apart."""
    # a BMP header (an image's, as the check reads it) over random pixel bytes
    header = io.BytesIO()
    Image.new("RGB", (64, 128)).save(header, "BMP")
    noise = np.random.default_rng(1).integers(0, 255, 6 * SAMPLE - 54, dtype=np.uint8)
    blob = header.getvalue()[:54] + bytes(noise)
    middle = bytearray(blob)
    middle[3 * SAMPLE] ^= 1  # same size, same first and last 4 KiB, another file
    for path, data in (
        ("train/a/big.jpg", blob),
        ("train/b/other.jpg", bytes(middle)),
        ("val/a/big.jpg", blob),
    ):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)
    for i in range(20):  # sizes of their own: never opened
        _photo(tmp_path / "train" / ("a" if i % 2 else "b") / f"{i}.png", 100 + i, side=4 + i)
    files = [tmp_path / "train/a/big.jpg", tmp_path / "train/b/other.jpg"]
    train = build_data("image_folder", tmp_path).train
    assert isinstance(train, ImageSet) and len(train) == 22
    val = ImageSet("val", train.classes, torch.tensor([0]), files=[tmp_path / "val/a/big.jpg"])
    found = find_duplicates(DataBundle(train, val), tmp_path)
    assert (found.files, found.read, found.hashed) == (23, 3, 3)
    assert [(f.kind, f.count) for f in found.findings] == [("overlap", 1)]  # not `labels`
    assert found.findings[0].examples == ("val/a/big.jpg = train/a/big.jpg",)
    assert all(f.stat().st_size == 6 * SAMPLE for f in files)


def test_pixels_in_memory_are_compared_too() -> None:
    """Fashion-MNIST and generated data are held as pixels: a repeated image is found there."""
    images = torch.arange(4 * 3 * 2 * 2, dtype=torch.uint8).reshape(4, 3, 2, 2)
    train = ImageSet("t", ["a", "b"], torch.tensor([0, 1, 0, 1]), images=images)
    val_images = torch.stack([images[2], images[2] + 1])
    val = ImageSet("v", ["a", "b"], torch.tensor([1, 0]), images=val_images)
    (overlap,) = find_duplicates(DataBundle(train, val), None).findings
    assert (overlap.count, overlap.relabelled, overlap.examples) == (
        1,
        1,
        ("val image 0 = train image 2",),
    )


def _recipe(tmp_path: Path, **data: Any) -> Path:
    body = {
        "model": {"model": "test_resnet", "input_size": 16},
        "data": {"source": "image_folder", "root": str(tmp_path), "workers": 0, **data},
        "method": {"name": "supervised"},
        "schedule": {"epochs": 1, "batch_size": 4},
        "output": {"dir": str(tmp_path / "runs")},
    }
    return write_recipe(tmp_path, "dup", body)


def test_the_plan_warns_and_on_duplicates_error_refuses_before_anything_trains(
    tmp_path: Path,
) -> None:
    _folder(tmp_path)
    shutil.copy(tmp_path / "train/cat/0.png", tmp_path / "val/cat/copy.png")
    plan = api.plan(_recipe(tmp_path))
    (warning,) = plan.data.duplicates
    assert warning.startswith("1 of 10 val images are also in train")
    with pytest.raises(DistillError) as info:
        api.plan(_recipe(tmp_path, on_duplicates="error"))
    assert str(info.value).startswith("1 of 10 val images are also in train")
    assert "data.on_duplicates: warn" in str(info.value) and info.value.code == 2
    assert not (tmp_path / "runs").exists()


class _Records:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def start(self, total_steps: int, done_steps: int, epochs: int) -> None:
        pass

    def advance(self, step: int, epoch: int) -> None:
        pass

    def log(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def finish(self) -> None:
        pass


def test_the_opening_and_the_summary_name_the_teacher_weights_and_the_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A timm train.py checkpoint holds `state_dict` and `state_dict_ema`: the run says which
    it loaded, from which file, its size and hash, before training and in summary.json."""
    import timm

    _folder(tmp_path)
    shutil.copy(tmp_path / "train/dog/0.png", tmp_path / "val/owl/copy.png")
    teacher = timm.create_model("test_resnet", num_classes=3)
    ckpt = tmp_path / "teacher.pth"
    state = teacher.state_dict()
    torch.save({"state_dict": state, "state_dict_ema": state, "epoch": 3}, ckpt)
    body = {
        "teacher": {
            "model": "test_resnet",
            "input_size": 16,
            "checkpoint": str(ckpt),
            "checkpoint_key": "state_dict_ema",
            "check_accuracy": False,
        },
        "student": {"model": "test_resnet", "input_size": 16},
        "data": {"source": "image_folder", "root": str(tmp_path), "workers": 0},
        "method": {"name": "kd"},
        "schedule": {"steps": 1, "batch_size": 4},
        "output": {"dir": str(tmp_path / "runs")},
        "runtime": {"threads": 1},
    }
    reporter = _Records()
    summary = api.run(write_recipe(tmp_path, "kd", body), reporter=reporter)
    opening = reporter.records[0]
    assert opening["kind"] == "opening" and opening["teacher"] == "test_resnet"
    (file,) = opening["teacher_files"]
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert file == {
        "path": str(ckpt.resolve()),
        "entry": "state_dict_ema",
        "bytes": ckpt.stat().st_size,
        "sha256": sha,
    }
    assert (opening["train"], opening["val"], opening["classes"]) == (9, 10, 3)
    assert opening["warnings"][0].startswith("1 of 10 val images are also in train")
    saved = RunSummary.load(summary.run_dir)
    assert saved.teacher is not None and saved.teacher.files[0].sha256 == sha
    assert saved.teacher.files[0].entry == "state_dict_ema"
    assert saved.duplicates == opening["warnings"]
    # as the CLI prints it into a log (80 columns): each fact one line, however long the path
    from distill_cli.cli.console import RichReporter

    capsys.readouterr()
    RichReporter().log(opening)
    out, err = capsys.readouterr()
    assert f"teacher test_resnet <- {ckpt.resolve()} [state_dict_ema]" in out.splitlines()[1]
    assert out.splitlines()[1].endswith(f"sha256 {sha[:12]}")
    assert err.splitlines() == [f"warning: {line}" for line in opening["warnings"]]


def test_an_unlabeled_distill_pool_holding_val_photos_is_an_overlap(tmp_path: Path) -> None:
    """`data.distill_dir`: the student matches the teacher on these images, so a val photo
    among them inflates the val agreement and accuracy alike (no label to disagree with)."""
    _folder(tmp_path)
    for i in range(4):
        _photo(tmp_path / "pool" / f"p{i}.png", 100 + i)
    shutil.copy(tmp_path / "val/dog/2.png", tmp_path / "pool/IMG_7.png")
    data = build_data("image_folder", tmp_path, distill_dir=tmp_path / "pool")
    (overlap,) = find_duplicates(data, tmp_path).findings
    assert (overlap.role, overlap.count, overlap.relabelled) == ("val", 1, 0)
    assert overlap.examples == ("val/dog/2.png = pool/IMG_7.png",)


def test_streamed_splits_that_read_the_training_shards_are_an_overlap(tmp_path: Path) -> None:
    """Shards' images are not read before training, but their files are compared: a val
    pattern that names a training shard is found, a holdout drawn from the training shards
    (other samples of the same files) is not. A pattern over both splits' shards (`*.tar` over
    train-* and val-*) is refused when the data is built (data/shards.py)."""
    from distill_cli.data.shard_writer import write_shards

    _folder(tmp_path / "photos")
    write_shards(tmp_path / "photos/train", tmp_path / "wds", prefix="train", per_shard=5)
    write_shards(tmp_path / "photos/val", tmp_path / "wds", prefix="val", per_shard=5)
    root = tmp_path / "wds"
    apart = build_data("shards", root, train_dir="train-*.tar", val_dir="val-*.tar")
    assert find_duplicates(apart, root).findings == ()
    with pytest.raises(DistillError, match="shards are of 2 splits"):  # refused before this
        build_data("shards", root, train_dir="train-*.tar", val_dir="*.tar")
    mixed = build_data("shards", root, train_dir="train-*.tar", val_dir="train-000000.tar")
    (overlap,) = find_duplicates(mixed, root).findings
    assert (overlap.role, overlap.count, overlap.of) == ("val", 5, 5)
    assert overlap.examples[0] == "train-000000.tar = train-000000.tar"
    held = build_data("shards", root, train_dir="train-*.tar", val_dir="val-*.tar", holdout=3)
    assert find_duplicates(held, root).findings == ()
