"""What a run will cost, before it runs (issue 25, item 5): `distill run --dry-run`'s projection,
and the paper's ImageNet recipe planned on a machine without its shards."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill_cli import api
from distill_cli.train.cost import cached_throughput, pair_key, remember_throughput

ROOT = Path(__file__).resolve().parents[1]
IMAGENET = ROOT / "recipes" / "imagenet" / "function_matching.yaml"
# the recipe's pair swapped for tiny models: the plan's counts do not depend on them
TINY = [
    "teacher.model=test_resnet",
    "teacher.pretrained=false",
    "teacher.input_size=32",
    "student.model=test_resnet",
    "student.input_size=32",
    "runtime.precision=fp32",
    "data.root=/nonexistent/imagenet-wds",
]


def test_imagenet_recipe_is_planned_without_its_data() -> None:
    plan = api.plan(IMAGENET, TINY, throughput=1000.0)
    assert plan.data.read is False
    assert plan.data.train.images == 1_281_167 and plan.data.classes == 1000
    assert plan.steps_per_epoch == 1_281_167 // 4096 == 312
    cost = plan.cost
    assert cost.steps == 312 * 9600 and cost.images == 312 * 9600 * 4096
    assert cost.throughput_source == "--throughput"
    hours = cost.images / 1000 / 3600
    assert [p.gpus for p in cost.projections] == [1, 8, 64]
    for row in cost.projections:
        assert row.gpu_hours == pytest.approx(hours)
        assert row.wall_hours == pytest.approx(hours / row.gpus)


def test_the_plan_uses_the_throughput_bench_train_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTILL_CACHE_DIR", str(tmp_path))
    plan = api.plan(IMAGENET, TINY)
    assert plan.cost.throughput is None and plan.cost.projections == []
    key = pair_key(plan.models, plan.precision, "cpu")
    assert cached_throughput(key) is None
    remember_throughput(key, 250.0, batch=64)  # what `distill bench train` leaves
    cost = api.plan(IMAGENET, TINY).cost
    assert cost.throughput == 250.0 and "distill bench train" in cost.throughput_source
    assert cost.projections[2].wall_hours == pytest.approx(cost.images / 250 / 64 / 3600)
    # another pair (another input size) is another measurement
    other = api.plan(IMAGENET, [*TINY, "student.input_size=48"]).cost
    assert other.throughput is None


def test_a_plan_needs_the_data_or_its_stated_size() -> None:
    from distill_cli.errors import DistillError

    with pytest.raises(DistillError, match="no tar shards match"):
        api.plan(IMAGENET, [*TINY, "data.train_images=null"])


def test_a_figure_measured_on_this_cpu_is_not_called_a_gpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`distill bench train` on a CPU caches a CPU figure; the plan of a CPU run projects with
    it per CPU process, not per GPU. A `--throughput` stays a GPU's (a laptop planning a GPU
    run)."""
    from distill_cli.cli.console_plan import cost_text

    monkeypatch.setenv("DISTILL_CACHE_DIR", str(tmp_path))
    plan = api.plan(IMAGENET, TINY)
    remember_throughput(pair_key(plan.models, plan.precision, "cpu"), 250.0, batch=64)
    text = cost_text(api.plan(IMAGENET, TINY).cost)
    assert "per CPU process" in text and "CPU-hours" in text and "64 CPU processes" in text
    assert "GPU" not in text
    given = cost_text(api.plan(IMAGENET, TINY, throughput=1000.0).cost)
    assert "per GPU (--throughput)" in given and "GPU-hours" in given and "8 GPUs" in given


def test_a_short_run_costs_what_it_costs_not_zero() -> None:
    """A few seconds of work read "0 GPU-hours; 1 GPU: 0.0 h wall"; counts had no separators."""
    from distill_cli.cli.console_plan import _amount, _epochs, _hours

    assert [_hours(h) for h in (0.3 / 3600, 20 / 3600, 0.02, 5.0, 96.0)] == [
        "0.3 s",
        "20 s",
        "1.2 min",
        "5.0 h",
        "4.0 days",
    ]
    assert _hours(1e-6) == "< 0.1 s"
    assert [_amount(h) for h in (7e-5, 0.036, 3.6, 1234.5)] == ["< 0.01", "0.036", "3.6", "1,234"]
    assert [_epochs(n) for n in (1, 100000, 2.5)] == ["1 epoch", "100,000 epochs", "2.5 epochs"]
