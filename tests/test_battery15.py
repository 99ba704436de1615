"""Bad inputs, round 15: numbers as notebooks and slips give them (numpy and torch scalars,
fractions where a count belongs, whole numbers beyond int64), overrides of the wrong shape,
and the other corners this round's battery found."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill_cli import api
from tests.conftest import refused

HUGE = 10**400


@pytest.mark.parametrize(
    "key",
    ["schedule.epochs", "data.synthetic.train_size", "optim.lr", "student.input_size", "name"],
)
def test_a_whole_number_beyond_int64_in_a_recipe_is_one_line_naming_its_key(
    fm: Path, key: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """`epochs: 999...9` (400 digits) was an OverflowError traceback from the bound's `:g`
    (train_size: 'integer division result too large for a float'), other keys printed all
    400 digits."""
    line = refused(["run", str(fm), "--dry-run", "--set", f"{key}={HUGE}"], key, capfd)
    assert "401-digit number, too large" in line and len(line) < 300, line


def test_a_whole_number_beyond_int64_in_a_recipe_file_or_list(
    fm: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Past Python's 4,300 digits int() itself raised (a ValueError traceback from the YAML
    loader); a `--set` of as many was pydantic's message with all 5,000 digits."""
    text = fm.read_text()
    fm.write_text(text.replace("epochs: 2", f"epochs: {'9' * 5000}"))
    line = refused(["run", str(fm), "--dry-run"], "a 5,000-digit number", capfd)
    assert len(line) < 300 and "fm.yaml:" in line
    fm.write_text(text)
    line = refused(
        ["run", str(fm), "--dry-run", "--set", f"schedule.epochs={'9' * 5000}"],
        "schedule.epochs: a 5,000-digit number",
        capfd,
    )
    assert len(line) < 300
    refused(
        ["run", str(fm), "--dry-run", "--set", f"student.input_size=[24, {HUGE}]"],
        "student.input_size: a 401-digit",
        capfd,
    )


def test_the_largest_whole_number_still_meets_its_keys_own_bound(
    fm: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    refused(
        ["run", str(fm), "--dry-run", "--set", f"schedule.epochs={2**63 - 1}"],
        "schedule.epochs: 9.22337e+18 is outside 1 to 1e+12",
        capfd,
    )


def test_numpy_and_torch_numbers_are_taken_as_python_numbers(fm: Path) -> None:
    """A notebook's grid gives numpy scalars: `throughput=np.int64(800)` was refused as "not a
    number", an array `input_size` was numpy's "truth value of an array is ambiguous"."""
    np = pytest.importorskip("numpy")
    import torch

    plan = api.plan(
        fm,
        throughput=np.int64(800),
        student__input_size=np.array([24, 24]),
        schedule__epochs=torch.tensor(3),
        method__mixup=np.bool_(False),
    )
    assert plan.epochs == 3 and plan.student.input_size[-2:] == (24, 24)
    assert plan.cost.throughput == 800 and type(plan.cost.throughput) is int
    plan = api.plan({**_body(fm), "optim": {"lr": np.float32(1e-3)}})
    assert type(plan.to_dict()) is dict


def _body(recipe: Path) -> dict:
    import yaml

    return yaml.safe_load(recipe.read_text())


def test_a_numpy_nan_is_refused_as_a_python_nan_is() -> None:
    """np.float32 is no Python float: its NaN passed the finite checks of --min-time (and
    `np.int64` timings failed when report.json was written: 'not JSON serializable')."""
    np = pytest.importorskip("numpy")
    with pytest.raises(api.DistillError, match=r"nan is not a finite number \(--min-time\)"):
        api.export("test_resnet", min_time_s=np.float32("nan"))
    with pytest.raises(api.DistillError, match=r"\(--max-latency-ms\)"):
        api.students("resnet50", np.float64("nan"))


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: api.export("test_resnet", min_top1=HUGE), "min_top1"),
        (lambda: api.export("test_resnet", atol=HUGE), "atol"),
        (lambda: api.export("test_resnet", max_latency_ms=HUGE), "max_latency_ms"),
        (lambda: api.students("resnet50", HUGE), "max_latency_ms"),
        (lambda: api.models("test_*", limit=HUGE), "limit"),
        (lambda: api.bench_latency("test_resnet", runs=10**5000), "runs"),
    ],
)
def test_an_api_number_beyond_int64_is_one_line_naming_it(call, name: str) -> None:
    """`min_top1=10**400` was an OverflowError traceback (its message's `:g`), `seed=` one that
    printed 400 digits."""
    with pytest.raises(api.DistillError) as info:
        call()
    assert f"{name} is a " in str(info.value) and "-digit number" in str(info.value)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize(
    ("call", "flag"),
    [
        (lambda: api.export("test_resnet", runs=2.5), "--runs"),
        (lambda: api.export("test_resnet", images=2.5), "--images"),
        (lambda: api.export("test_resnet", seed=1.5), "--seed"),
        (lambda: api.export("test_resnet", opset=18.0), "--opset"),
        (lambda: api.models("test_*", limit=2.5), "--limit"),
        (lambda: api.students("resnet50", 5.0, limit=2.5), "--limit"),
        (lambda: api.bench_latency("test_resnet", batch=1.5), "--batch"),
    ],
)
def test_a_fraction_where_a_count_belongs_is_a_wrong_type(call, flag: str) -> None:
    """`limit=2.5` was a TypeError from a slice; `runs=2.5`, `seed=1.5` passed the bounds."""
    with pytest.raises(api.WrongType, match="is not a whole number") as info:
        call()
    assert info.value.where == flag


@pytest.mark.parametrize("throughput", [float("nan"), float("inf")])
def test_a_plan_at_a_throughput_that_is_no_rate_is_refused(fm: Path, throughput: float) -> None:
    """`api.plan(throughput=nan)` planned NaN GPU-hours (and inf 0 hours) without a word; the
    CLI's `--throughput` refuses both."""
    with pytest.raises(api.DistillError, match="is not a positive finite number"):
        api.plan(fm, throughput=throughput)


def test_an_overrides_mapping_with_a_key_that_is_no_text_is_a_wrong_type(fm: Path) -> None:
    """`overrides={1: 2}` was an AttributeError ('int' object has no attribute 'count')."""
    with pytest.raises(api.WrongType, match=r"overrides key must be a dotted key .* not int"):
        api.plan(fm, {1: 2})
    with pytest.raises(api.WrongType, match=r"not tuple"):
        api.run(fm, {("optim", "lr"): 0.1})
