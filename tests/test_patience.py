"""What long schedules on small data rely on: balanced subsets, evaluation and warmup that scale
with the run, and inception crops drawn from whole photos."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from distill_cli import api
from distill_cli.data.augment import BatchAugment, sample_boxes
from distill_cli.data.folders import scan_image_folder
from distill_cli.data.loader import BatchStream
from distill_cli.data.sources import make_synthetic
from distill_cli.errors import DistillError
from distill_cli.recipe.document import load_recipe
from distill_cli.recipe.loop_sections import ScheduleSpec
from distill_cli.recipe.sections import AugmentSpec
from distill_cli.train.optim import lr_factor
from tests.conftest import fm_body, write_recipe


def test_balanced_subset_has_equal_classes_and_is_fixed_by_the_seed() -> None:
    data = make_synthetic(5, 500, 8, 1, seed=0, split="train")
    sub = data.balanced(103, seed=3)
    counts = torch.bincount(sub.labels, minlength=5)
    assert len(sub) == 103 and counts.max() - counts.min() <= 1  # 21,21,21,20,20 in some order
    again = data.balanced(103, seed=3)
    assert torch.equal(sub.images, again.images) and torch.equal(sub.labels, again.labels)
    other = data.balanced(103, seed=4)
    assert not torch.equal(sub.images, other.images)
    assert data.balanced(None, 0) is data and data.balanced(500, 0) is data
    with pytest.raises(DistillError, match="larger than the training data"):
        data.balanced(10_000, 0)  # a subset larger than the data is an error, never clamped


def test_balanced_subset_fills_from_other_classes_when_one_is_short() -> None:
    data = make_synthetic(3, 90, 8, 1, seed=0, split="train")
    keep = torch.cat(
        [torch.nonzero(data.labels == c).flatten()[:n] for c, n in enumerate([5, 40, 40])]
    )
    skewed = data.subset(keep.sort().values)  # class 0 has only 5 images
    sub = skewed.balanced(60, seed=0)
    counts = torch.bincount(sub.labels, minlength=3).tolist()
    assert len(sub) == 60 and counts[0] == 5 and sum(counts) == 60
    assert torch.unique(sub.images.flatten(1), dim=0).shape[0] == 60  # no image twice


def test_subset_reaches_the_run(tmp_path: Path) -> None:
    body = fm_body(tmp_path / "runs", None, epochs=1)
    body["data"]["subset"] = 64
    plan = api.plan(write_recipe(tmp_path, "sub", body))
    assert plan.data.train.images == 64 and plan.steps_per_epoch == 2


@pytest.mark.parametrize(
    ("epochs", "evals", "expected"),
    [(1000, 10, [100 * k for k in range(1, 11)]), (7, 3, [3, 5, 7]), (2, 2, [1, 2]), (10, 1, [10])],
)
def test_evals_are_spread_over_the_run_and_include_the_last_epoch(
    epochs: int, evals: int, expected: list[int]
) -> None:
    spec = ScheduleSpec(epochs=epochs, evals=evals)
    assert [e for e in range(1, epochs + 1) if spec.eval_due(e, epochs)] == expected


def test_more_evaluations_than_epochs_is_an_error_not_a_clamp() -> None:
    with pytest.raises(ValueError, match="evals"):  # issue 22: never silently fewer
        ScheduleSpec(epochs=2, evals=5)


def test_eval_every_still_counts_epochs() -> None:
    spec = ScheduleSpec(epochs=6, eval_every=2)
    assert [e for e in range(1, 7) if spec.eval_due(e, 6)] == [2, 4, 6]
    assert not any(ScheduleSpec(epochs=6, eval_every=0).eval_due(e, 6) for e in range(1, 7))


def test_a_run_evaluates_as_often_as_evals_says_and_keeps_the_best(tmp_path: Path) -> None:
    body = fm_body(tmp_path / "runs", None, epochs=6)
    body["schedule"].update(evals=2, eval_every=1)  # a saved recipe carries both: evals wins
    result = api.run(write_recipe(tmp_path, "ev", body))
    lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    evals = [json.loads(x) for x in lines if '"eval"' in x]
    assert [e["epoch"] for e in evals] == [3, 6]
    best = max(e["agreement_top1"] if e.get("top1") is None else e["top1"] for e in evals)
    assert result.best_score == pytest.approx(best)
    assert (result.run_dir / "checkpoints" / "best.safetensors").is_file()
    # the saved recipe is a valid recipe again (evals and eval_every side by side)
    assert load_recipe(result.run_dir / "recipe.yaml").schedule.evals == 2


def test_warmup_fraction_scales_with_the_run() -> None:
    spec = ScheduleSpec(steps=1000, warmup_fraction=0.1)
    assert spec.warmup(1000) == 100 and spec.warmup(50) == 5
    assert lr_factor(49, 1000, spec.warmup(1000), spec.min_lr_ratio) == pytest.approx(0.5)
    assert lr_factor(99, 1000, spec.warmup(1000), spec.min_lr_ratio) == pytest.approx(1.0)
    assert lr_factor(999, 1000, spec.warmup(1000), spec.min_lr_ratio) < 1e-3
    with pytest.raises(ValueError, match="warmup_steps or warmup_fraction"):
        ScheduleSpec(steps=10, warmup_steps=5, warmup_fraction=0.1)


def test_bad_subset_and_evals_are_recipe_errors(tmp_path: Path) -> None:
    body = fm_body(tmp_path / "runs", None)
    body["data"]["subset"] = 0
    body["schedule"]["evals"] = -1
    with pytest.raises(DistillError) as info:
        load_recipe(write_recipe(tmp_path, "bad", body))
    assert "data.subset" in str(info.value) and "schedule.evals" in str(info.value)


# --- inception crops from whole photos ------------------------------------------------------------


def test_boxes_respect_each_images_own_extent() -> None:
    torch.manual_seed(0)
    heights = torch.tensor([10.0, 40.0] * 500)
    widths = torch.tensor([40.0, 10.0] * 500)
    boxes = sample_boxes(1000, heights, widths, (0.08, 1.0), (3 / 4, 4 / 3), torch.device("cpu"))
    x0, y0, w, h = boxes.unbind(1)
    assert (x0 >= 0).all() and (y0 >= 0).all()
    assert (x0 + w <= widths).all() and (y0 + h <= heights).all()
    area = w * h / (heights * widths)
    assert area.max() <= 1.0 and area.min() > 0.05


def _wide_folder(root: Path, n: int = 8) -> None:
    """Wide photos (3:1): red left third, green middle, blue right third."""
    for split in ("train", "val"):
        folder = root / split / "only"
        folder.mkdir(parents=True)
        for i in range(n):
            img = Image.new("RGB", (96, 32), (0, 255, 0))
            img.paste((255, 0, 0), (0, 0, 32, 32))
            img.paste((0, 0, 255), (64, 0, 96, 32))
            img.save(folder / f"{i}.png")


def test_training_crops_see_the_whole_width_of_wide_photos(tmp_path: Path) -> None:
    _wide_folder(tmp_path)
    data = scan_image_folder(tmp_path / "train")
    stream = BatchStream(data, 8, torch.device("cpu"), load_size=48, fit="whole")
    batch = next(iter(stream.epoch(0)))
    assert batch.extent is not None
    assert batch.extent.tolist() == [[16, 48]] * 8  # aspect kept, longer side at load_size
    assert batch.images[:, :, 16:].sum() == 0  # below the photo: padding, never sampled

    torch.manual_seed(0)
    heights, widths = batch.extent[:, 0].float(), batch.extent[:, 1].float()
    spec = AugmentSpec(crop_scale=(0.08, 1.0))
    boxes = sample_boxes(
        4000,
        heights.repeat(500),
        widths.repeat(500),
        spec.crop_scale,
        spec.crop_ratio,
        torch.device("cpu"),
    )
    x0, _, w, h = boxes.unbind(1)
    assert x0.min() == 0 and (x0 + w).max() == 48  # crops reach both sides
    assert ((boxes[:, 1] + h) <= 16).all()

    views = BatchAugment((16, 16), **spec.model_dump())(
        batch.images.repeat(50, 1, 1, 1), batch.extent.repeat(50, 1)
    )
    red = (views[:, 0] > 0.9) & (views[:, 1] < 0.1)
    blue = (views[:, 2] > 0.9) & (views[:, 1] < 0.1)
    black = views.sum(1) < 0.1
    assert red.flatten(1).any(1).any() and blue.flatten(1).any(1).any()
    assert not black.any()  # no padding ever enters a view


def test_evaluation_view_is_still_the_centre_square(tmp_path: Path) -> None:
    _wide_folder(tmp_path)
    data = scan_image_folder(tmp_path / "val")
    stream = BatchStream(data, 4, torch.device("cpu"), shuffle=False, drop_last=False, load_size=32)
    batch = next(iter(stream.epoch(0)))
    assert batch.extent is None and batch.images.shape[-2:] == (32, 32)
    green = batch.images[:, 1].float().mean() / 255
    assert green > 0.95 and batch.images[:, 0].float().mean() < 0.05 * 255


def test_a_photo_folder_run_trains_on_whole_images(tmp_path: Path) -> None:
    _wide_folder(tmp_path)
    for split in ("train", "val"):  # a second class: one class is refused (its loss is 0)
        (tmp_path / split / "other").mkdir()
        Image.new("RGB", (96, 32), (9, 9, 9)).save(tmp_path / split / "other" / "0.png")
    body = fm_body(tmp_path / "runs", None, epochs=1)
    body["data"] = {"source": "image_folder", "root": str(tmp_path), "workers": 0}
    body["teacher"]["num_classes"] = 2
    body["schedule"]["batch_size"] = 4
    result = api.run(write_recipe(tmp_path, "photos", body))
    assert result.steps == 2 and math.isfinite(result.kl or 0.0)


@pytest.mark.slow
@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="no Fashion-MNIST"
)
def test_patience_benchmark_quick_mode_runs_the_whole_pipeline(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    cmd = [
        sys.executable,
        str(root / "benchmarks" / "patience.py"),
        "--quick",
        "--out",
        str(tmp_path / "out dir"),
        "--md",
        str(tmp_path / "table.md"),
        # overrides that cost nothing (logging only) make this a variant: named apart, recorded
        "--set",
        "schedule.log_every=7",
        "--teacher-set",
        "schedule.log_every=7",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=root)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (path,) = (tmp_path / "out dir").glob("patience_resnet10t-test-resnet-*.json")
    result = json.loads(path.read_text())
    assert result["models"]["teacher_sets"] == ["schedule.log_every=7"]
    assert result["models"]["students"] == ["test_resnet"] == [result["student"]["model"]]
    assert Path(result["teacher"]["run"]).name.startswith("patience-teacher-resnet10t-")
    rows = result["rows"]
    assert [r["error"] for r in rows] == [None] * 8
    fm = [r for r in rows if r["label"] == "function matching"]
    assert [r["epochs"] for r in fm] == [1, 3]
    assert {r["epochs"] for r in rows if r["label"] != "function matching"} == {3}
    for r in rows:  # every run trained, was evaluated on the holdout, then tested once
        assert 0 <= r["top1"] <= 100 and r["curve"] and r["curve"][-1][0] == r["epochs"]
        assert r["curve"][-1][1] == pytest.approx(r["holdout_top1"])
        assert 0 <= r["best_top1"] <= 100
    # the same tuning budget for each compared method, picked on the holdout only
    tune = result["tune"]
    grid = [tuple(cfg) for cfg in result["grid"]]
    assert len(grid) == 2 and result["tune_at"] == 1
    for label in ("function matching", "student from scratch (subset labels)"):
        tried = [r for r in tune if r["label"] == label]
        assert sorted((r["lr"], r["wd"]) for r in tried) == sorted(grid)
        best = max(tried, key=lambda r: r["holdout_top1"])
        assert tuple(result["picks"][label]) == (best["lr"], best["wd"])
    for r in rows:  # every row runs with its method's pick (an ablation: its parent's)
        parent = result["shares"].get(r["label"], r["label"])
        assert [r["lr"], r["wd"]] == result["picks"][parent]
    fm1 = next(r for r in fm if r["epochs"] == 1)  # the tuning run, reused, not run again
    assert fm1["run"] in {r["run"] for r in tune}
    assert result["teacher"]["top1"] > 0 and result["student"]["params"] > 0
    assert result["holdout"] == 500
    assert path.with_suffix(".png").stat().st_size > 10_000
    table = (tmp_path / "table.md").read_text()
    assert table.count("\n| ") == 9 + 7  # header + 8 rows, then header + 6 tuning runs


def test_schedule_scaled_weight_decay_matches_big_vision_per_step_decay() -> None:
    """One AdamW step on a zero gradient: the weight shrinks by schedule_t * wd (big_vision)."""
    from distill_cli.recipe.loop_sections import OptimSpec
    from distill_cli.train.optim import build_optimizer, set_lr

    for scale, expected in (("schedule", 0.5 * 1e-3), ("lr", 0.5 * 1e-2 * 1e-3)):
        layer = torch.nn.Linear(4, 4, bias=False)
        torch.nn.init.ones_(layer.weight)
        spec = OptimSpec(lr=1e-2, weight_decay=1e-3, weight_decay_scale=scale)
        opt = build_optimizer(layer, device=torch.device("cpu"), **spec.optimizer_args())
        set_lr(opt, spec.lr, 0.5)  # halfway down the schedule
        layer.weight.grad = torch.zeros_like(layer.weight)
        opt.step()
        torch.testing.assert_close(layer.weight, torch.full((4, 4), 1 - expected))
    with pytest.raises(ValueError, match="adamw"):
        OptimSpec(name="sgd", weight_decay_scale="schedule")


def test_last_is_saved_at_evaluations_not_every_short_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tiny epochs: `last` follows the evaluations (and a minute's timer), not every epoch."""
    from distill_cli.train import trainer

    saved: list[int] = []
    real = trainer.save_weights

    def spy(path: Path, module: torch.nn.Module, meta: dict, *args: object) -> None:
        if Path(path).name.startswith("last"):
            saved.append(meta["step"])
        real(path, module, meta, *args)

    monkeypatch.setattr(trainer, "save_weights", spy)
    body = fm_body(tmp_path / "runs", None, epochs=6)  # 4 steps per epoch
    body["schedule"]["evals"] = 2
    api.run(write_recipe(tmp_path, "few", body))
    assert saved == [4, 12, 24]  # the first epoch (never saved yet), then the two evaluations
    saved.clear()
    monkeypatch.setattr(trainer, "LAST_EVERY_S", 0.0)  # the timer: every epoch end is due
    api.run(write_recipe(tmp_path, "few", body), overwrite=True)
    assert saved == [4, 8, 12, 16, 20, 24]
