"""`data.holdout`: a class-balanced split of the training images evaluated during training and
for `best`, with the data's validation split kept as a test set read only at the end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

from distill_cli import api
from distill_cli.cli.console import summary_table
from distill_cli.data import build_data
from distill_cli.data.sources import make_synthetic
from distill_cli.errors import DistillError
from distill_cli.recipe.document import load_recipe
from distill_cli.rundir.summary import RunSummary
from distill_cli.train.build import build
from distill_cli.train.evaluate import Evaluator
from tests.conftest import fm_body, write_recipe

SYNTH = {"num_classes": 4, "train_size": 200, "val_size": 48, "image_size": 8, "channels": 1}


def _rows(images: torch.Tensor) -> set[bytes]:
    return {bytes(row.numpy()) for row in images.flatten(1)}


def test_holdout_is_class_balanced_disjoint_and_fixed_by_the_seed() -> None:
    full = make_synthetic(5, 500, 8, 1, seed=0, split="train")
    rest, held = full.split_off(103, seed=3)
    counts = torch.bincount(held.labels, minlength=5)
    assert len(held) == 103 and counts.max() - counts.min() <= 1
    assert len(rest) == 397
    assert not _rows(rest.images) & _rows(held.images)  # no image in both
    assert _rows(rest.images) | _rows(held.images) == _rows(full.images)  # nothing lost
    again_rest, again = full.split_off(103, seed=3)
    assert torch.equal(again.images, held.images) and torch.equal(again_rest.labels, rest.labels)
    assert not torch.equal(full.split_off(103, seed=4)[1].images, held.images)


def test_build_data_holds_out_training_images_and_keeps_val_as_the_test_set() -> None:
    plain = build_data("synthetic", synthetic=SYNTH, seed=1)
    data = build_data("synthetic", synthetic=SYNTH, holdout=40, seed=1)
    assert plain.test is None
    assert data.test is not None and torch.equal(data.test.images, plain.val.images)
    assert len(data.val) == 40 and len(data.train) == 160
    assert torch.bincount(data.val.labels, minlength=4).tolist() == [10, 10, 10, 10]
    assert not _rows(data.train.images) & _rows(data.val.images)
    assert _rows(data.train.images) | _rows(data.val.images) == _rows(plain.train.images)


def test_subset_is_drawn_after_the_holdout_so_runs_share_it() -> None:
    full = build_data("synthetic", synthetic=SYNTH, holdout=40, seed=1)
    small = build_data("synthetic", synthetic=SYNTH, holdout=40, subset=20, seed=1)
    assert torch.equal(full.val.images, small.val.images)
    assert len(small.train) == 20 and not _rows(small.train.images) & _rows(small.val.images)


def test_holdout_on_fashion_mnist() -> None:
    root = Path("/usr/share/datasets/fashion-mnist")
    if not root.is_dir():
        pytest.skip("Fashion-MNIST is not installed")
    data = build_data("fashion_mnist", root, holdout=5000, seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (55_000, 5000, 10_000)
    assert torch.bincount(data.val.labels, minlength=10).tolist() == [500] * 10
    assert data.test.name == "fashion_mnist/val"


def test_holdout_on_an_image_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 6), ("val", 2)):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / cls / f"{i}.png")
    data = build_data("image_folder", tmp_path, holdout=4, seed=0)
    assert len(data.train) == 8 and len(data.val) == 4 and len(data.test) == 4
    assert not set(data.train.files) & set(data.val.files)
    assert all(p.parent.parent.name == "train" for p in data.val.files)
    assert all(p.parent.parent.name == "val" for p in data.test.files)
    assert sorted(data.val.labels.tolist()) == [0, 0, 1, 1]


def test_holdout_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match="cannot hold out 200 of 200"):
        build_data("synthetic", synthetic=SYNTH, holdout=200)
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "imgs" / "x.png")
    with pytest.raises(DistillError, match="needs labels"):
        build_data("synthetic", synthetic=SYNTH, distill_dir=tmp_path / "imgs", holdout=1)
    # streamed sources hold out too (tests/test_streamed_holdout.py)


def test_a_run_chooses_best_on_the_holdout_and_reads_the_test_set_once_at_the_end(
    tmp_path: Path,
) -> None:
    body = fm_body(tmp_path / "runs", None, epochs=3)
    body["data"]["synthetic"].update(train_size=160, val_size=64)
    body["data"]["holdout"] = 30
    body["schedule"]["batch_size"] = 26
    recipe = write_recipe(tmp_path, "held", body)
    assert api.plan(recipe).data.test.images == 64
    result = api.run(recipe)

    records = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    tests = [r for r in records if r["kind"] == "test"]
    assert len(tests) == 1 and records[-1]["kind"] == "test"  # once, after the last evaluation
    assert result.test is not None and result.test.images == 64
    assert RunSummary.load(result.run_dir) == result  # summary.json round-trips the test block

    # the evaluations during training, and `best`, are the holdout's: re-evaluating the best
    # checkpoint on the holdout gives the best score, on the test split its test number
    setup = build(load_recipe(recipe))
    assert len(setup.data.val) == 30 and setup.test_stream is not None
    api_best = result.run_dir / "checkpoints" / "best.safetensors"
    from distill_cli.models.weights import load_weights

    load_weights(setup.student.module, api_best)
    held = Evaluator(setup.val_stream, 4).student_metrics(setup.student, None)["top1"]
    test = Evaluator(setup.test_stream, 4).student_metrics(setup.student, None)["top1"]
    evals = [r["top1"] for r in records if r["kind"] == "eval"]
    assert result.best_score == pytest.approx(held) == pytest.approx(max(evals))
    assert result.test.best_top1 == pytest.approx(test)
    assert result.student.top1 == pytest.approx(evals[-1])

    # and every place that shows a result shows the test set apart from the holdout
    console = Console(width=200, record=True)
    console.print(summary_table(result))
    text = console.export_text()
    assert "holdout top-1" in text and "test top-1 (64)" in text
    assert f"{result.test.top1:.2f}%" in text
    report = api.report(result.run_dir)
    markdown = (result.run_dir / "report.md").read_text()
    assert report and "test top-1 (64 images)" in markdown
    copy = shutil.copytree(result.run_dir, tmp_path / "held copy")  # compare takes two runs
    comparison = api.compare([result.run_dir, copy])
    assert comparison.results[0]["test top-1"] == pytest.approx(result.test.top1)
    assert comparison.results[0]["test top-1 of best"] == pytest.approx(result.test.best_top1)


def test_holdout_must_be_positive(tmp_path: Path) -> None:
    body = fm_body(tmp_path / "runs", None)
    body["data"]["holdout"] = 0
    with pytest.raises(DistillError, match="holdout"):
        load_recipe(write_recipe(tmp_path, "bad", body))


def test_holdout_leaves_every_class_a_training_image(tmp_path: Path) -> None:
    """A class of one photo among larger ones: its share of the holdout would take it whole,
    and the model would have an output it never trains on; the draw leaves it its image and
    takes the share from the other classes, and a holdout that cannot leave every class an
    image is one error naming the largest that can."""
    for cls, count in (("big", 6), ("mid", 4), ("one", 1)):
        (tmp_path / "train" / cls).mkdir(parents=True)
        (tmp_path / "val" / cls).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(np.full((8, 8, 3), i * 20, np.uint8)).save(
                tmp_path / "train" / cls / f"{i}.png"
            )
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "val" / cls / "v.png")
    for seed in range(4):
        data = build_data("image_folder", tmp_path, holdout=6, seed=seed)
        assert len(data.val) == 6 and len(data.train) == 5
        assert torch.bincount(data.train.labels, minlength=3).min() >= 1
        assert not set(data.train.files) & set(data.val.files)
    assert torch.bincount(data.val.labels, minlength=3).tolist()[2] == 0
    with pytest.raises(DistillError, match="at most 8"):
        build_data("image_folder", tmp_path, holdout=9)
    # where no class runs out, the draw is the one it always was (benchmarks' holdouts hold)
    from distill_cli.data.sources import balanced_indices

    labels = torch.arange(60) % 3
    assert torch.equal(
        balanced_indices(labels, 3, 12, 5), balanced_indices(labels, 3, 12, 5, keep=1)
    )


def test_a_train_folder_alone_or_class_folders_at_the_root_validate_on_a_holdout(
    tmp_path: Path,
) -> None:
    """What users bring: class folders directly under the root, or train/ with no val/. Both
    are one error naming the recipe that reads them; with it (`train_dir: .`, `holdout`) the
    holdout is the validation split, drawn from the training images, and there is no test."""
    flat = tmp_path / "flat"
    for cls in ("cat", "dog", "fox"):
        (flat / cls).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((8, 8, 3), i * 9, np.uint8)).save(flat / cls / f"{i}.png")
    with pytest.raises(DistillError, match=r"no train/ folder.*\(cat, dog, fox\).*train_dir: \."):
        build_data("image_folder", flat)
    with pytest.raises(DistillError, match=r"no validation folder val/.*data.holdout"):
        build_data("image_folder", flat, train_dir=".")
    data = build_data("image_folder", flat, train_dir=".", holdout=6, subset=6, seed=2)
    assert data.test is None and len(data.val) == 6 and len(data.train) == 6
    assert torch.bincount(data.val.labels, minlength=3).tolist() == [2, 2, 2]
    assert torch.bincount(data.train.labels, minlength=3).tolist() == [2, 2, 2]
    assert not set(data.train.files) & set(data.val.files)
    full = build_data("image_folder", flat, train_dir=".", holdout=6, seed=2)
    assert full.val.files == data.val.files and len(full.train) == 9  # the same holdout
    (tmp_path / "split").mkdir()
    (flat).rename(tmp_path / "split" / "train")
    alone = build_data("image_folder", tmp_path / "split", holdout=6, seed=2)
    assert [p.name for p in alone.val.files] == [p.name for p in full.val.files]
    assert alone.val.name.endswith("(holdout)") and alone.test is None
    with pytest.raises(DistillError, match="val_limit"):  # not silently ignored
        build_data("image_folder", tmp_path / "split", holdout=6, val_limit=3)
    # a val/ with a class train/ lacks is refused with what to do
    (tmp_path / "split" / "val" / "wolf").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(
        tmp_path / "split" / "val" / "wolf" / "w.png"
    )
    with pytest.raises(DistillError, match=r"\['wolf'\].*add these to train"):
        build_data("image_folder", tmp_path / "split")
