"""`--resume` on data that changed since the run started is refused, saying what changed.

A run records a fingerprint of its data (`data.json`: per split the classes, the image count
and a digest of the files' paths and sizes, no decoding); a resume on an image folder where
files were added or removed, or a class renamed, would train on other images than its
checkpoint's. Run folders from before the fingerprint still resume.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from distill_cli import api
from distill_cli.data.fingerprint import DataFingerprint
from distill_cli.errors import DistillError
from distill_cli.rundir.layout import RunDir
from tests.conftest import teacher_body, write_recipe


def _folder(root: Path) -> None:
    for split, count in (("train", 6), ("val", 2)):
        for k, name in enumerate(("cat", "dog")):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                colour = (200 * k, 40 * i, 90)
                Image.new("RGB", (20, 16), colour).save(root / split / name / f"{i}.png")


def _recipe(tmp_path: Path) -> Path:
    body = teacher_body(tmp_path / "runs", epochs=1)
    body["data"] = {"source": "image_folder", "root": str(tmp_path / "photos"), "workers": 0}
    body["schedule"].update(batch_size=4, log_every=1)
    return write_recipe(tmp_path, "r", body)


def _refusal(recipe: Path) -> str:
    with pytest.raises(DistillError) as info:
        api.train(recipe, resume=True)
    assert info.value.code == 2 and "\n" not in str(info.value)
    assert "start a new run" in (info.value.hint or "")
    return info.value.what


def test_resume_refuses_data_that_changed_and_says_what(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    _folder(photos)
    recipe = _recipe(tmp_path)
    api.train(recipe)
    run = RunDir(tmp_path / "runs" / "r")
    saved = run.read_fingerprint()
    assert saved is not None and [s.role for s in saved.splits] == ["train", "val"]
    assert saved.splits[0].classes == ["cat", "dog"] and saved.splits[0].count == 12
    api.train(recipe, resume=True)  # the same data: resumes (twice in a row is fine too)
    api.train(recipe, resume=True)

    # a file added
    shutil.copy(photos / "train" / "cat" / "0.png", photos / "train" / "cat" / "new.png")
    assert _refusal(recipe) == "the data changed since this run started (train: 12 -> 13 images)"
    # ... the same count, but one file swapped for another
    (photos / "train" / "cat" / "0.png").unlink()
    assert "train: the same number of images, but files renamed" in _refusal(recipe)
    (photos / "train" / "cat" / "new.png").rename(photos / "train" / "cat" / "0.png")
    api.train(recipe, resume=True)  # restored as it was: resumes again
    # a class renamed (train and val)
    for split in ("train", "val"):
        (photos / split / "dog").rename(photos / split / "hound")
    what = _refusal(recipe)
    assert "train: classes ['dog'] gone, ['hound'] new" in what and "val: classes" in what
    assert json.loads(run.data_print.read_text()) == saved.to_dict()  # the record is kept

    # a run folder from before the fingerprint resumes, and gets one
    run.data_print.unlink()
    api.train(recipe, resume=True)
    now = run.read_fingerprint()
    assert isinstance(now, DataFingerprint) and now.splits[0].classes == ["cat", "hound"]
    # a damaged record is one line naming it
    run.data_print.write_text("[1, 2]")
    with pytest.raises(DistillError, match=r"data\.json is unreadable"):
        api.train(recipe, resume=True)


def test_the_fingerprint_of_streamed_and_in_memory_data_sees_a_change(tmp_path: Path) -> None:
    """Shards by their units' paths, counts and sizes (no image read); images in memory by
    their pixels."""
    from distill_cli.data import build_data
    from distill_cli.data.fingerprint import of_bundle
    from distill_cli.data.shard_writer import write_shards
    from distill_cli.data.shards import scan_tar_split

    _folder(tmp_path / "photos")
    write_shards(tmp_path / "photos" / "train", tmp_path / "wds", prefix="train", per_shard=5)
    pattern = str(tmp_path / "wds" / "train-*.tar")
    split = scan_tar_split(pattern, "data.train_dir")
    bundle = build_data("synthetic", synthetic=_SYNTH, seed=0)
    bundle.train = split
    before = of_bundle(bundle, tmp_path)
    assert before.changes(of_bundle(bundle, tmp_path)) == []
    shard = tmp_path / "wds" / "train-000001.tar"
    shard.write_bytes(shard.read_bytes() + bytes(10240))  # the same samples, another file
    assert before.changes(of_bundle(bundle, tmp_path)) == [
        "train: the same number of images, but files renamed, moved or replaced"
    ]
    # in memory: the same sizes, other pixels (another seed)
    other = build_data("synthetic", synthetic=_SYNTH, seed=1)
    other.train = split
    changes = before.changes(of_bundle(other, tmp_path))
    assert changes[-1].startswith("val: the same number of images")


_SYNTH = {"num_classes": 2, "train_size": 8, "val_size": 4, "image_size": 8, "channels": 3}
