"""Bad-input battery, round 12: numbers only a slip reaches. A recipe's `optim.lr: 1e30`,
`method.temperature: 1e30`, `weight_decay: 1e9`, betas above 1, `mixup_alpha: 1e9`, mean/std
copied from a 0-255 config, `schedule.steps: 1e23`, `crop_ratio: [1e-30, 1e30]` and a 300-byte
run name passed `--dry-run`; the run then stopped on NaN, learnt nothing (no crops), or failed
when its folder was made. Export's `--atol`/`--rtol 1e30`, `--max-top1-drop 1e30` and
`--max-latency-ms 1e30` made gates that could not fail, `--max-latency-ms 0` one that could not
pass. `--batch 100000000` was the allocator's traceback. Each is now refused before any work,
in one line naming the key or flag, the range and why; the values practitioners use still load."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from distill_cli.cli.entry import entry
from distill_cli.errors import DistillError
from distill_cli.export import ExportOptions, Gates
from distill_cli.export.protocol import batch_memory, check_batch_memory
from distill_cli.models.side_file import parse_side_file
from distill_cli.recipe.document import load_recipe
from tests.conftest import refused as _refused
from tests.conftest import teacher_body, write_recipe


def _error(path: Path, sets: list[str]) -> str:
    with pytest.raises(DistillError) as info:
        load_recipe(path, sets)
    return str(info.value)


# --- b. recipe numbers: refused at load with the key, the range and the reason -----------------


@pytest.mark.parametrize(
    ("sets", "needles"),
    [
        (["optim.lr=1e30"], ["optim", "lr 1e+30 is outside 1e-09 to 1", "diverge"]),
        (["optim.lr=1e-30"], ["optim", "lr 1e-30", "do not move"]),
        (["optim.lr=2"], ["lr 2 is outside 1e-09 to 1", "adamw"]),
        (["optim={name: sgd, lr: 1000}"], ["lr 1000 is outside 1e-09 to 100", "sgd"]),
        (["optim.weight_decay=1e9"], ["weight_decay 1e+09", "times lr 0.003", "less than 333.3"]),
        (
            ["optim.weight_decay=1.5", "optim.weight_decay_scale=schedule"],
            ["weight_decay 1.5", "weight_decay_scale: schedule", "less than 1"],
        ),
        (["optim.betas=[1.5, 0.999]"], ["optim.betas.0", "not from 0 up to, not including, 1"]),
        (["optim.betas=[0.9, -0.1]"], ["optim.betas.1", "-0.1 is not from 0"]),
        (["method.temperature=1e30"], ["method.temperature", "outside 0.01 to 100", "uniform"]),
        (["method.temperature=1e-30"], ["method.temperature", "outside 0.01 to 100", "one-hot"]),
        (["schedule.epochs=100000000000000000"], ["schedule.epochs", "1e+12", "30 years"]),
        (
            ["schedule.epochs=null", "schedule.steps=100000000000000000"],
            ["schedule.steps", "outside 1 to 1e+12"],
        ),
        (
            ["student.mean=[123.675, 116.28, 103.53]", "student.std=[58.395, 57.12, 57.375]"],
            ["student", "pixels from 0 to 1", "divided by 255", "mean [0.485, 0.456, 0.406]"],
        ),
        (["teacher.mean=[0.5, 0.5, 0.5]", "teacher.std=[255, 255, 255]"], ["std is at most 1"]),
        (["teacher.mean=[-0.5, 0.5, 0.5]", "teacher.std=[0.5, 0.5, 0.5]"], ["mean lies in 0-1"]),
        (
            ["student.mean=[0.5, 0.5, 0.5]", "student.std=[1e-30, 0.2, 0.2]"],
            ["student", "std below 0.001", "more than 1,000"],
        ),
        (["augment.crop_ratio=[1e-30, 1e30]"], ["augment.crop_ratio.0", "outside 0.1 to 10"]),
        (["optim.clip_grad_norm=1e-30"], ["optim.clip_grad_norm", "1e-30 is below 0.001", "eps"]),
        (["output.name=" + "x" * 300], ["300 bytes", "(255)", "shorter name"]),
        (["output.name=-rf"], ["run name '-rf' starts with '-'", "an option", "run-rf"]),
        (["name=-x"], ["starts with '-'"]),
        (["output.name='~'"], ["run name '~' starts with '~'", "home folder"]),
        (["output.name=" + "é" * 128], ["256 bytes"]),
    ],
    ids=[
        "lr-1e30",
        "lr-1e-30",
        "adamw-lr-2",
        "sgd-lr-1000",
        "wd-zeroes-weights",
        "wd-schedule-scale",
        "beta-above-1",
        "beta-negative",
        "temperature-huge",
        "temperature-tiny",
        "epochs-1e23",
        "steps-1e23",
        "mean-std-0-255",
        "std-255",
        "mean-negative",
        "std-1e-30",
        "crop-ratio-1e30",
        "clip-1e-30",
        "name-300-bytes",
        "name-an-option",
        "recipe-name-an-option",
        "name-home",
        "name-unicode-256-bytes",
    ],
)
def test_numbers_only_a_slip_reaches_are_refused(
    fm: Path, sets: list[str], needles: list[str]
) -> None:
    message = _error(fm, sets)
    for needle in needles:
        assert needle in message, message


def test_mixup_alpha_above_10_is_refused(sup: Path) -> None:
    message = _error(sup, ["method.mixup_alpha=1e9"])
    assert "method.mixup_alpha" in message and "outside 0 to 10" in message, message
    assert "50/50" in message


@pytest.mark.parametrize(
    "sets",
    [
        ["optim={name: sgd, lr: 10, weight_decay: 1e-4}"],  # linear scaling at batch 25k
        ["optim={name: sgd, lr: 100}"],
        ["optim.lr=1e-8"],
        ["optim.lr=1", "optim.weight_decay=0.5"],
        ["optim.weight_decay=0.3", "optim.weight_decay_scale=schedule"],
        ["optim.betas=[0.0, 0.99]"],
        ["method.temperature=0.04"],  # DINO's teacher temperature
        ["method.temperature=20"],
        ["method.temperature=100"],
        ["schedule.epochs=30000"],  # the function-matching paper's Pets schedule
        ["student.mean=[0, 0, 0]", "student.std=[1, 1, 1]"],
        ["output.name=" + "é" * 127],
        ["augment.crop_ratio=[0.5, 2]"],
        ["optim.clip_grad_norm=0.01"],
        ["optim.clip_grad_norm=1e30"],
    ],
    ids=lambda sets: " ".join(sets)[:40],
)
def test_values_practitioners_use_still_load(fm: Path, sets: list[str]) -> None:
    load_recipe(fm, sets)


def test_mixup_alpha_in_use_still_loads(sup: Path) -> None:
    assert load_recipe(sup, ["method.mixup_alpha=1.0"]).method.mixup_alpha == 1.0


def test_the_cli_says_it_in_one_line_before_any_work(
    fm: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    line = _refused(["run", str(fm), "--dry-run", "--set", "optim.lr=1e30"], "optim", capfd)
    assert "lr 1e+30 is outside" in line
    assert not (fm.parent / "runs").exists()


def test_a_side_file_with_mean_std_for_0_255_pixels_is_named(tmp_path: Path) -> None:
    side = {"model": "resnet18", "mean": [123.675, 116.28, 103.53], "std": [58.4, 57.1, 57.4]}
    with pytest.raises(DistillError) as info:
        parse_side_file(side, tmp_path / "w.json")
    assert "side file" in str(info.value) and "divided by 255" in str(info.value)
    assert str(tmp_path / "w.json") in str(info.value)
    plain = parse_side_file({"model": "resnet18", "mean": [0.5] * 3, "std": [0.5] * 3}, Path("x"))
    assert plain.mean == (0.5, 0.5, 0.5)


# --- a. export tolerances and gates that could not fail (or not pass) --------------------------


@pytest.mark.parametrize(
    ("options", "flag", "needle"),
    [
        ({"atol": 1e30}, "--atol", "is above 0.1"),
        ({"tolerance": 5.0}, "--tolerance", "is above 0.1"),
        ({"rtol": 1e30}, "--rtol", "is above 0.05"),
        ({"rtol": 1.0}, "--rtol", "is above 0.05"),
        ({"gates": Gates(max_top1_drop=1e30)}, "--max-top1-drop", "more than top-1 can drop"),
        ({"gates": Gates(max_top1_drop=100.5)}, "--max-top1-drop", "(100)"),
        ({"gates": Gates(max_latency_ms=0.0)}, "--max-latency-ms", "no file meets"),
        ({"gates": Gates(max_latency_ms=1e30)}, "--max-latency-ms", "above 3,600,000 ms"),
    ],
    ids=[
        "atol",
        "tolerance",
        "rtol",
        "rtol-100pct",
        "drop-huge",
        "drop-101",
        "latency-0",
        "latency-huge",
    ],
)
def test_export_gates_that_cannot_fail_are_refused(
    options: dict[str, object], flag: str, needle: str
) -> None:
    with pytest.raises(DistillError) as info:
        ExportOptions("test_resnet", **options)  # type: ignore[arg-type]
    assert info.value.where == flag and needle in str(info.value), str(info.value)


def test_the_parity_refusal_names_the_measured_figures(capfd: pytest.CaptureFixture[str]) -> None:
    line = _refused(["export", "test_resnet", "--atol", "1e30"], "--atol", capfd)
    assert "2.4e-7" in line and "5.9e-4" in line and "Parity tolerances" in line
    assert "give at most 0.1" in line


@pytest.mark.parametrize(
    "options",
    [
        {"atol": 0.1, "rtol": 0.05},
        {"tolerance": 1e-3},
        {"gates": Gates(max_top1_drop=100.0, max_latency_ms=3_600_000.0)},
        {"gates": Gates(max_top1_drop=0.0, max_latency_ms=0.5)},
    ],
    ids=["ceilings", "old-name", "gate-ceilings", "strict-gates"],
)
def test_export_bounds_at_their_limits_are_accepted(options: dict[str, object]) -> None:
    ExportOptions("test_resnet", **options)  # type: ignore[arg-type]


# --- the throughput batch: a size no memory holds is one line, not the allocator's traceback ---


@pytest.mark.parametrize("command", [["bench", "latency"], ["export"]], ids=" ".join)
def test_a_throughput_batch_no_memory_holds_is_refused_before_it_is_made(
    command: list[str], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`--batch 100000000` asked torch for 30 TB: "DefaultCPUAllocator: can't allocate memory"
    with a traceback, in `bench latency`, `export` and `students` alike (the export after its
    ONNX file, parity and int8 work). Now refused once the model's input is known."""
    out = ["--out", str(tmp_path / "out")] if command == ["export"] else []
    argv = [*command, "test_resnet", "--batch", "100000000", *out]
    line = _refused(argv, "--batch", capfd)
    assert "100,000,000 inputs takes" in line and "GiB" in line and "lower --batch" in line
    assert not (tmp_path / "out").exists()
    check_batch_memory(32, (3, 224, 224))  # 18 MiB: any machine


@pytest.mark.parametrize(
    "failure",
    [
        MemoryError(),
        RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate"),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    ],
    ids=["numpy", "torch-cpu", "torch-cuda"],
)
def test_an_allocation_that_fails_while_the_batch_runs_names_the_flag(failure: Exception) -> None:
    with pytest.raises(DistillError) as info, batch_memory(4096):
        raise failure
    assert info.value.where == "--batch" and "4,096 inputs did not fit" in str(info.value)


def test_other_failures_while_the_batch_runs_are_not_blamed_on_it() -> None:
    with pytest.raises(ValueError, match="shape"), batch_memory(8):
        raise ValueError("shape mismatch")


# --- a stdout that cannot encode a path: escaped, not a traceback after the work -------------


def test_a_unicode_path_on_an_ascii_stdout_is_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`PYTHONIOENCODING=ascii distill report "dossier é/..."` wrote its figures, then died on
    the line naming them (UnicodeEncodeError, a traceback); a Windows code page does the same
    for names outside it."""
    body = teacher_body(tmp_path / "dossier é")
    recipe = write_recipe(tmp_path, "t", body)
    raw = io.BytesIO()
    stdout = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
    monkeypatch.setattr(sys, "stdout", stdout)
    from distill_cli.cli.console import console

    # the path on one line, not wrapped in the plan's table (a stdout that is no terminal is 80
    # columns wide, the width rich gave the console when it was made)
    monkeypatch.setattr(console, "width", 1000)
    with pytest.raises(SystemExit) as exit_info:
        entry(["train", str(recipe), "--dry-run"])
    stdout.flush()
    assert exit_info.value.code == 0
    assert "dossier \\xe9" in raw.getvalue().decode("ascii")


# --- a model's channels the data cannot feed: refused in the plan, not a traceback at step 1 --


@pytest.mark.parametrize(
    ("body", "sets", "key"),
    [
        ("sup", ["model.in_chans=4"], "model.in_chans"),
        ("fm", ["student.in_chans=2"], "student.in_chans"),
        ("fm", ["teacher.in_chans=4"], "teacher.in_chans"),
    ],
    ids=["rgba-model-on-rgb", "student-2ch", "teacher-4ch"],
)
def test_a_model_the_data_cannot_feed_is_refused_in_the_plan(
    body: str, sets: list[str], key: str, fm: Path, sup: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`in_chans: 4` (an RGBA or RGB-NIR model) on RGB images passed `--dry-run`, then "ValueError:
    cannot feed 3-channel images to a 4-channel model" with a traceback at the first step."""
    recipe = sup if body == "sup" else fm
    argv = ["train" if body == "sup" else "run", str(recipe), "--dry-run"]
    line = _refused([*argv, *(a for s in sets for a in ("--set", s))], f"({key})", capfd)
    assert "and the data has 3 channels" in line and f"set {key}: 3" in line


def test_grayscale_data_feeds_any_model_and_rgb_a_grayscale_one(
    fm: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", str(fm), "--dry-run", "--set", "teacher.in_chans=1"]
    with pytest.raises(SystemExit) as exit_info:
        entry(argv)
    assert exit_info.value.code == 0, capfd.readouterr()
    gray = ["--set", "data.synthetic.channels=1", "--set", "student.in_chans=4"]
    with pytest.raises(SystemExit) as exit_info:
        entry([*argv, *gray])
    assert exit_info.value.code == 0, capfd.readouterr()


def test_a_device_file_given_as_the_run_is_named_as_such() -> None:
    """`distill report /dev/null` said "no such run folder" of something that is there."""
    from distill_cli import api

    if not Path("/dev/null").exists():
        pytest.skip("no /dev/null here")
    words = r"not a run folder \(not a regular file or folder\)"
    for read in (api.report, lambda p: api.compare([p, p])):
        with pytest.raises(DistillError, match=words) as info:
            read("/dev/null")
        assert info.value.code == 2
