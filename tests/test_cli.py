"""The command line as users and CI drive it: exit codes, one-line errors, files written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from distill_cli import api
from tests.conftest import CLI, fm_body, write_recipe


def distill(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "distill_cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def _assert_one_line_error(
    result: subprocess.CompletedProcess[str], code: int, *needles: str
) -> None:
    assert result.returncode == code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_version_and_help() -> None:
    assert distill("--version").stdout.startswith("distill ")
    out = distill("--help").stdout
    assert "run" in out and "train" in out


def test_run_then_resume_and_json_output(tmp_path: Path, trained_teacher: Path) -> None:
    recipe = write_recipe(tmp_path, "fm", fm_body(tmp_path / "runs", trained_teacher, epochs=1))
    result = distill("run", str(recipe), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["method"] == "function_matching"
    assert (tmp_path / "runs" / "fm" / "checkpoints" / "best.safetensors").is_file()
    # a finished run resumes to the same summary without training again
    again = distill("run", str(recipe), "--resume", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["steps"] == summary["steps"]
    # the folder is protected unless --overwrite
    _assert_one_line_error(distill("run", str(recipe)), 2, "already holds a run", "--overwrite")
    assert distill("run", str(recipe), "--overwrite", "-q").returncode == 0


def test_dry_run_prints_the_plan(tmp_path: Path, cli: CLI) -> None:
    recipe = write_recipe(tmp_path, "fm", fm_body(tmp_path / "runs", None))
    result = cli("run", str(recipe), "--dry-run")
    assert result.returncode == 0, result.stderr
    for word in ("test_efficientnet", "test_resnet", "params", "steps", "fp32", "cpu"):
        assert word in result.stdout
    plan = json.loads(cli("run", str(recipe), "--dry-run", "--json").stdout)
    assert plan["total_steps"] == 8
    assert not (tmp_path / "runs").exists()
    # `distill train` refuses a distillation recipe; its plan did not, and planned it
    refused = cli("train", str(recipe), "--dry-run")
    _assert_one_line_error(refused, 2, "`distill train` is for supervised recipes", "distill run")


def test_set_override_reaches_the_run(tmp_path: Path, cli: CLI) -> None:
    recipe = write_recipe(tmp_path, "fm", fm_body(tmp_path / "runs", None))
    result = cli("run", str(recipe), "--dry-run", "--json", "--set", "schedule.batch_size=64")
    assert json.loads(result.stdout)["steps_per_epoch"] == 2


@pytest.mark.parametrize(
    ("mutate", "needles"),
    [
        (lambda b: b["optim"].update(lrr=1), ["optim.lrr", "'lr'"]),
        (lambda b: b["schedule"].update(epochs="many"), ["schedule.epochs"]),
        (lambda b: b["student"].update(model="resnet_18"), ["resnet_18", "resnet18"]),
        (lambda b: b["teacher"].update(checkpoint="/nope/t.safetensors"), ["not found", "/nope"]),
        (lambda b: b["schedule"].update(batch_size=100000), ["batch size", "larger than"]),
    ],
    ids=["unknown-key", "wrong-type", "unknown-model", "missing-checkpoint", "batch-too-big"],
)
def test_expected_errors_are_one_line_with_exit_code_2(
    tmp_path: Path, cli: CLI, mutate, needles
) -> None:
    """In-process (`cli`): the one line and the exit code; a fresh process's own output (import
    warnings, a traceback at exit) is test_missing_recipe_and_debug_traceback's and
    test_run_then_resume_and_json_output's."""
    body = fm_body(tmp_path / "runs", None)
    mutate(body)
    recipe = write_recipe(tmp_path, "fm", body)
    _assert_one_line_error(cli("run", str(recipe)), 2, *needles)


def test_missing_recipe_and_debug_traceback(tmp_path: Path) -> None:
    missing = distill("run", str(tmp_path / "none.yaml"))
    _assert_one_line_error(missing, 2, "recipe file not found")
    assert missing.stdout == ""  # the error line alone: no empty line on stdout before it
    debug = distill("--debug", "run", str(tmp_path / "none.yaml"))
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_recipes_list_and_show() -> None:
    listing = distill("recipes")
    assert listing.returncode == 0
    for name in (
        "quickstart/distill",
        "methods/kd",
        "methods/eskd",
        "methods/stage_by_stage",
        "ablations/fixed_teacher",
        "ensemble",
    ):
        assert name in listing.stdout
    lines = listing.stdout.splitlines()  # one line each, in a pipe too (the README's promise)
    for entry in api.recipes():
        assert any(entry.name in line and entry.summary in line for line in lines), entry.name
    shown = distill("recipes", "show", "methods/eskd")
    assert shown.returncode == 0 and "kd_stop_epoch" in shown.stdout and "Cho" in shown.stdout
    _assert_one_line_error(distill("recipes", "show", "method/eskd"), 2, "methods/eskd")


def test_bench_train_command(tmp_path: Path, cli: CLI) -> None:
    recipe = write_recipe(tmp_path, "fm", fm_body(tmp_path / "runs", None))
    result = cli("bench", "train", str(recipe), "--steps", "4", "--warmup", "2", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["distill"]["images_per_s"] > 0 and report["bare"]["images_per_s"] > 0
    assert report["ratio"] > 0 and report["data_path"]["images_per_s"] > 0


@pytest.mark.parametrize("command", ["run", "train"])
def test_nproc_relaunches_under_torchrun(tmp_path: Path, command: str) -> None:
    """`--nproc` on both training commands (`distill train` trains teachers on several GPUs)."""
    from tests.test_distributed import _body

    recipe = write_recipe(tmp_path, "ddp", _body(tmp_path / "runs", epochs=1))
    result = distill(command, str(recipe), "--nproc", "2", "-q", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["processes"] == 2


def test_models_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: CLI) -> None:
    monkeypatch.setenv("DISTILL_CACHE_DIR", str(tmp_path))  # read at each call
    result = cli("models", "test_*", "--teacher", "test_vit", "--limit", "0", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert listing["teacher"]["name"] == "test_vit" and listing["shown"] >= 10
    for entry in listing["entries"]:
        student = entry["params"] <= 0.5 * listing["teacher"]["params"]
        assert entry["student"] is student and entry["name"].startswith("test_")
    assert list(tmp_path.glob("models-*.json"))  # sized once, cached for the next listing
    table = cli("models", "test_resnet", "--flops")
    assert table.returncode == 0 and "test_resnet" in table.stdout and "GFLOPs" in table.stdout
    _assert_one_line_error(cli("models", "no_such_net_xyz"), 2, "no timm model matches")


def test_bench_train_times_the_step_without_the_runs_evaluations(tmp_path: Path) -> None:
    """`bench train` repeats the run's step for each round: the teacher check and evaluations
    of every validation/test image (minutes a round on a CPU) are cut, the step is not."""
    from distill_cli.bench.train import timing_recipe
    from distill_cli.recipe.document import load_recipe
    from distill_cli.train.build import build

    body = fm_body(tmp_path / "runs", None)
    body["data"]["holdout"] = 40
    body["data"]["synthetic"]["val_size"] = 200
    recipe = load_recipe(write_recipe(tmp_path, "fm", body))
    timed = timing_recipe(recipe, build(recipe))
    assert timed.teacher.check_accuracy is False and recipe.teacher.check_accuracy is True
    assert timed.data.holdout == 4 and timed.data.val_limit == recipe.schedule.batch_size
    setup = build(timed)
    assert len(setup.data.val) == 4 and len(setup.data.test) == 32  # one per class; a batch
    assert timed.schedule == recipe.schedule and timed.student == recipe.student


@pytest.mark.parametrize(
    "command", [[], ["run"], ["export"], ["students"], ["bench", "latency"], ["recipes", "show"]]
)
def test_dash_h_is_help_for_every_command(command: list[str], cli: CLI) -> None:
    """`distill run -h`, the habit of argparse tools (timm's train.py, the benchmarks), was
    "No such option: -h"; it is now `--help`, inherited by every command."""
    short, long = cli(*command, "-h"), cli(*command, "--help")
    assert short.returncode == long.returncode == 0, short.stderr
    assert short.stdout == long.stdout and "Usage: distill" in short.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["run", ""],
        ["report", " "],
        ["compare", "", "runs/a"],
        ["export", "test_resnet", "--checkpoint", ""],
        ["export", "runs/a", "--onnx", ""],
        ["export", "runs/a", "--out", " "],
        ["bench", "train", "r.yaml", "--bare", ""],
        ["students", "test_resnet", "--max-latency-ms", "5", "--write-recipe", ""],
    ],
)
def test_an_empty_path_is_refused_naming_its_flag(args: list[str], cli: CLI) -> None:
    """click made "" the working directory: `--checkpoint "$CKPT"` with the variable unset was
    "the checkpoint folder holds no model.safetensors (.)", `--onnx ""` "the ONNX file is a
    folder (.)". Every path flag and argument now says it is empty, naming itself."""
    done = cli(*args)
    assert done.returncode == 2, done.stderr
    assert "is empty (an unset variable?)" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
