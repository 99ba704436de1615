"""Bad-input battery, round 14: the schedule's and the data's counts that still had no ceiling
(`warmup_steps`, `log_every`, `eval_every`, `checkpoint_every`, `evals`, `save_epochs`, the
epoch counts of methods, `train_limit`/`subset`/`val_limit`/`holdout`: `1e12` passed, a warmup
of it as a warning only) and an `eval_every` longer than the run (evaluated only at the end,
without a word); multi-frame images (a multi-page TIFF, an animated GIF/WebP/PNG) read as their
first frame without a word; timm's `args` in a legacy (non-zip) torch checkpoint not read; the
environment a command runs in (`OMP_NUM_THREADS`, `CUDA_VISIBLE_DEVICES`, `HOME`, `TMPDIR`,
`LC_ALL=C`, a narrow terminal, stdout on a full disk, stdin closed); file names that are not
UTF-8, differ only by case or Unicode form, sit at NAME_MAX, start with `-`, or are URLs; files
that change under a command; input sizes a model cannot shrink. Each refusal is one `error:`
line naming the key, flag, file or variable and what to do; what users really write works and
says what it did.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import CLI, refused

# --- a. counts only a slip reaches: refused at load, naming the key, the bound and why ---------


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("schedule.warmup_steps", "1e12", "above 10,000,000"),
        ("schedule.log_every", "1e12", "above 1,000,000,000"),
        ("schedule.checkpoint_every", "1e12", "above 1,000,000,000"),
        ("schedule.eval_every", "1e12", "above 1,000,000"),
        ("schedule.evals", "1e12", "above 1,000,000"),
        ("schedule.save_epochs", "[1e12]", "above 1,000,000"),
        ("data.train_limit", "1e12", "above 10,000,000,000"),
        ("data.subset", "1e12", "above 10,000,000,000"),
        ("data.val_limit", "1e12", "above 10,000,000,000"),
        ("data.holdout", "1e12", "above 10,000,000,000"),
    ],
)
def test_a_schedule_or_data_count_only_a_slip_reaches_is_refused_at_load(
    key: str, value: str, needle: str, fm: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`warmup_steps: 1e12` passed `--dry-run` with a warning, `log_every`/`eval_every`/
    `checkpoint_every: 1e12` without a word (no line, evaluation or checkpoint but the epoch
    ends'), `data.holdout: 1e12` only once the data was read."""
    line = refused(["run", str(fm), "--set", f"{key}={value}", "--dry-run"], key, capfd)
    assert needle in line, line
    assert not (fm.parent / "runs").exists()


@pytest.mark.parametrize(
    ("method", "key"),
    [
        ("eskd", "kd_stop_epoch"),
        ("stage_by_stage", "stage_epochs"),
        ("stage_by_stage", "head_epochs"),
    ],
)
def test_a_methods_epoch_count_only_a_slip_reaches_is_refused(
    method: str, key: str, fm: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", str(fm), "--set", f"method.name={method}", "--set", f"method.{key}=1e12"]
    line = refused([*argv, "--dry-run"], f"method.{key}", capfd)
    assert "above 1,000,000" in line and "10,000 epochs" in line, line


def test_the_values_practitioners_use_still_load(tmp_path: Path) -> None:
    """The function-matching paper's 10,000 epochs, ViT's 10k warmup steps, and limits far
    above the data (a limit, not a size) load as before."""
    from distill_cli.recipe import load_recipe

    path = tmp_path / "r.yaml"
    schedule = {
        "epochs": 10_000,
        "batch_size": 64,
        "warmup_steps": 10_000,
        "log_every": 1_000_000,
        "checkpoint_every": 100_000,
        "eval_every": 1_000,
        "save_epochs": [5_000],
    }
    path.write_text(
        yaml.safe_dump(
            {
                "name": "r",
                "model": {"model": "test_resnet"},
                "data": {"source": "synthetic", "holdout": 8, "train_limit": 10**9},
                "method": {"name": "supervised"},
                "schedule": schedule,
            }
        )
    )
    recipe = load_recipe(path)
    assert recipe.schedule.warmup_steps == 10_000 and recipe.data.train_limit == 10**9


def test_an_eval_every_longer_than_the_run_says_only_the_end_is_evaluated(
    fm: Path, cli: CLI
) -> None:
    """A recipe's `eval_every: 5` under `--set schedule.epochs=3` evaluated once, at the end,
    and `best` was the last epoch, without a word."""
    sets = ["--set", "schedule.eval_every=5", "--set", "schedule.epochs=3"]
    result = cli("run", str(fm), *sets, "--dry-run")
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.split())
    assert "schedule.eval_every (5) is more than the run's 3 epochs" in said, said
    quiet = cli("run", str(fm), "--set", "schedule.epochs=3", "--dry-run")
    assert "evaluated only at the end" not in " ".join(quiet.stdout.split())


# --- c. timm's `args` in a legacy (non-zip) torch checkpoint -----------------------------------


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_timm_args_are_read_from_a_legacy_checkpoint_as_from_a_zip_one(
    zipped: bool, tmp_path: Path
) -> None:
    """A `model_best.pth.tar` saved with `_use_new_zipfile_serialization=False` (torch before
    1.6, and savers that still pass it) had its `args` ignored: a 64 px teacher fed timm's 160
    px and its default mean/std. Only the pickle is read (its tensors on the meta device)."""
    import argparse

    import timm
    import torch

    from distill_cli.models.checkpoint import read_sidecar

    net = timm.create_model("test_resnet", num_classes=4)
    args = argparse.Namespace(
        model="test_resnet", img_size=64, mean=[0.4, 0.4, 0.4], std=[0.2, 0.2, 0.2], num_classes=4
    )
    path = tmp_path / "model_best.pth.tar"
    state = {"state_dict": net.state_dict(), "args": args, "epoch": 7}
    torch.save(state, path, _use_new_zipfile_serialization=zipped)
    side = read_sidecar(path)
    assert side.input_size == (64, 64) and side.mean == (0.4, 0.4, 0.4), side
    assert side.num_classes == 4


def test_a_plain_pickle_is_not_read_as_timm_args(tmp_path: Path) -> None:
    """A `pickle.dump` file (not torch.save's) starts like a legacy checkpoint: no args, no
    error (the weights' reader names it)."""
    import pickle

    from distill_cli.models import timm_args

    path = tmp_path / "model_best.pth.tar"
    path.write_bytes(pickle.dumps({"args": {"model": "test_resnet"}}, protocol=2))
    assert timm_args.train_args(path) is None


# --- b. files of several frames: read as their first, and said ---------------------------------


def _frames(colour_count: int) -> list[Any]:
    from PIL import Image

    colours = ("red", "green", "blue", "white", "black")
    return [Image.new("RGB", (20, 16), colours[i]) for i in range(colour_count)]


@pytest.mark.parametrize(
    ("name", "options", "frames"),
    [
        ("scan.tif", {}, 4),
        ("scan.tiff", {"big_tiff": True}, 3),
        ("clip.gif", {"duration": 50}, 2),  # a GIF's frames are counted up to two
        ("clip.webp", {"duration": 50}, 3),
        ("clip.png", {"duration": 50}, 3),
        ("clip.apng", {"duration": 50, "format": "PNG"}, 2),
    ],
)
def test_a_files_frames_are_counted_from_its_header(
    name: str, options: dict[str, Any], frames: int, tmp_path: Path
) -> None:
    from distill_cli.data.frames import frame_count

    first, *rest = _frames(max(frames, 3) if name.endswith(".gif") else frames)
    first.save(tmp_path / name, save_all=True, append_images=rest, **options)
    assert frame_count(tmp_path / name) == frames
    single = tmp_path / f"one{Path(name).suffix}"
    first.save(single, **({"format": "PNG"} if name.endswith(".apng") else {}))
    assert frame_count(single) == 1
    (tmp_path / "cut").write_bytes((tmp_path / name).read_bytes()[:30])
    assert frame_count(tmp_path / "cut") == 1  # damage: the decoder names it, not the scan


def test_a_folder_of_multi_page_files_says_only_the_first_frame_is_read(
    tmp_path: Path, cli: CLI
) -> None:
    """A multi-page TIFF (a scan), an animated GIF and an `.apng` (skipped as not an image)
    were read as their first frame, or not at all, without a word."""
    for split in ("train", "val"):
        for label, colour in (("cat", "red"), ("dog", "blue")):
            folder = tmp_path / "photos" / split / label
            folder.mkdir(parents=True)
            for i, frame in enumerate(_frames(2)):
                frame.save(folder / f"{colour}{i}.png")
    first, *rest = _frames(4)
    first.save(tmp_path / "photos/train/cat/scan.tif", save_all=True, append_images=rest)
    first.save(tmp_path / "photos/train/dog/clip.gif", save_all=True, append_images=rest)
    first.save(tmp_path / "photos/val/dog/clip.apng", save_all=True, append_images=rest)
    recipe = tmp_path / "r.yaml"
    body = {
        "name": "r",
        "model": {"model": "test_resnet", "input_size": 32},
        "data": {"source": "image_folder", "root": str(tmp_path / "photos")},
        "method": {"name": "supervised"},
        "schedule": {"epochs": 1, "batch_size": 2},
        "output": {"dir": str(tmp_path / "runs")},
    }
    recipe.write_text(yaml.safe_dump(body))
    result = cli("run", str(recipe), "--dry-run")
    said = " ".join(result.stdout.split())
    assert result.returncode == 0, result.stderr
    assert "train 6 images" in said and "val 5" in said, said  # the .apng is read
    assert "2 train image file(s) hold several frames" in said, said
    assert "e.g. train/cat/scan.tif: 4 pages" in said and "first frame only" in said, said
    assert "1 val image file(s) hold several frames" in said and "clip.apng: 4 frames" in said


# --- the environment a command runs in ----------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "0", "-1", "1e3", ""])
def test_an_omp_num_threads_that_is_no_count_is_dropped_and_said(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libgomp printed "Invalid value for environment variable OMP_NUM_THREADS" at torch's
    import and used every core, as distill's thread budget did, without saying so."""
    from distill_cli.cli.environment import environment_warnings

    monkeypatch.setenv("OMP_NUM_THREADS", value)
    lines = environment_warnings()
    assert len(lines) == 1 and f"OMP_NUM_THREADS={value!r} is not a thread count" in lines[0]
    assert "OMP_NUM_THREADS" not in os.environ
    for good in ("1", "8", "4,2"):
        monkeypatch.setenv("OMP_NUM_THREADS", good)
        assert environment_warnings() == [] and os.environ["OMP_NUM_THREADS"] == good


def _distill(args: list[str], env: dict[str, str], **kwargs: Any) -> Any:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "distill_cli", *args],
        env={**os.environ, **env},
        capture_output=not kwargs,
        text=True,
        timeout=120,
        **kwargs,
    )


def test_the_process_environment_is_said_not_a_traceback(tmp_path: Path) -> None:
    """In one process each (the environment is the input): `OMP_NUM_THREADS=abc` is one
    warning line and no libgomp message; a closed stdout (`>&-`) was an AttributeError
    traceback at the last flush, and its descriptor was free for the next file opened;
    `> /dev/full` said "cannot work with a file ... (a file)"."""
    import subprocess
    import sys

    missing = str(tmp_path / "missing.yaml")
    result = _distill(["run", missing], {"OMP_NUM_THREADS": "abc"})
    assert result.returncode == 2 and "libgomp" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("warning: OMP_NUM_THREADS='abc' is not a thread count"), lines
    assert lines[1].startswith("error: recipe file not found") and len(lines) == 2, lines
    shut = subprocess.run(
        f"{sys.executable} -m distill_cli run {missing} >&-",
        shell=True,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )
    assert shut.returncode == 2 and "Traceback" not in shut.stderr, shut.stderr
    assert shut.stderr.startswith("error: recipe file not found"), shut.stderr
    with open("/dev/full", "w") as full:
        result = _distill(["--version"], {}, stdout=full, stderr=subprocess.PIPE)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        "error: cannot write the command's output: No space left on device (standard output)"
        " - free disk space and run again"
    )


@pytest.mark.parametrize("value", ["", "-1", "7"])
def test_cuda_asked_for_with_gpus_hidden_names_the_variable(
    value: str, fm: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`CUDA_VISIBLE_DEVICES=-1` (the other usual way to hide every GPU) was not named."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a machine with a GPU: CUDA is available")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    argv = ["run", str(fm), "--set", "runtime.device=cuda", "--dry-run"]
    line = refused(argv, f"CUDA_VISIBLE_DEVICES={value!r}", capfd)
    assert ("hides the GPUs" in line) == (value != "7"), line


def test_a_console_narrower_than_a_table_renders_at_a_floor_width() -> None:
    """`COLUMNS=10` printed the results table with every cell cut to nothing (no figure) and
    the run folder's path in 5-character pieces with characters lost."""
    import io

    from rich.console import Console
    from rich.table import Table

    from distill_cli.cli.console import FLOOR_COLUMNS, _floored

    console = _floored(Console(file=io.StringIO(), width=10))
    assert console.width == FLOOR_COLUMNS
    table = Table("model", "params", "top-1")
    table.add_row("test_efficientnet", "100,224", "25.00%")
    console.print(table)
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "test_efficientnet" in shown and "100,224" in shown and "25.00%" in shown
    assert _floored(Console(file=io.StringIO(), width=60)).width == 60  # a real pane: kept


@pytest.mark.parametrize(
    ("name", "suggested"), [("modèle_v2", "modele_v2"), ("my run", "my-run"), ("日本", "run")]
)
def test_a_recipe_name_with_odd_characters_names_them_and_a_name_to_write(
    name: str, suggested: str, fm: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`name: modèle` was "String should match pattern '^[A-Za-z0-9._-]+$'"."""
    line = refused(["run", str(fm), "--set", f"name={name}", "--dry-run"], "name:", capfd)
    assert f"e.g. name: {suggested}" in line and "pattern" not in line, line


# --- file names and paths: URLs, a leading '-', longer than the system takes --------------------


@pytest.mark.parametrize(
    ("argv", "needle", "hint"),
    [
        (["run", "s3://bucket/r.yaml"], "URL (s3://)", "aws s3 cp s3://bucket/r.yaml ."),
        (["run", "https://x.org/r.yaml"], "URL (https://)", "curl -LO https://x.org/r.yaml"),
        (["run", "file:///data/r.yaml"], "file:// URL", "pass the path itself: /data/r.yaml"),
        (["export", "gs://b/best.safetensors"], "URL (gs://)", "gcloud storage cp"),
        (["export", "test_resnet", "--checkpoint", "hf://t/r.pt"], "URL (hf://)", "hf-hub:"),
        (["report", "https://x.org/runs/a"], "URL (https://)", "pass the local path"),
        (["bench", "latency", "s3://b/runs/a"], "URL (s3://)", "aws s3 cp"),
    ],
)
def test_a_url_where_a_local_path_belongs_is_refused_saying_so(
    argv: list[str], needle: str, hint: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """`distill run s3://bucket/r.yaml` was "recipe file not found (s3:/bucket/r.yaml) ...
    there is no folder s3:/bucket": pathlib folds the slashes, and nothing said distill reads
    local files only."""
    line = refused(argv, needle, capfd)
    assert hint in line, line


@pytest.mark.parametrize("key", ["data.root", "teacher.checkpoint", "output.dir"])
def test_a_url_in_a_recipe_path_is_refused_at_load(
    key: str, fm: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A Path made of `s3://b/x` is `s3:/b/x`: the URL was looked for as a folder `s3:`."""
    argv = ["run", str(fm), "--set", f"{key}=s3://b/x", "--dry-run"]
    line = refused(argv, f"{key}: 's3://b/x' is a URL (s3://)", capfd)
    assert "aws s3 cp s3://b/x ." in line


def test_a_name_starting_with_a_dash_says_how_to_pass_it(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`distill export -run` (a run folder named `-run`) was "No such option: -r" alone."""
    (tmp_path / "-run").mkdir()
    monkeypatch.chdir(tmp_path)
    line = refused(["export", "-run"], "No such option", capfd)
    assert "pass it as ./-run" in line, line


def test_a_path_longer_than_the_system_takes_is_an_input_error_shown_short(
    fm: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """An `output.dir` of 5,000 bytes was exit 1 ("check the path, free space and
    permissions") with the whole path in the line."""
    long = fm.parent / "/".join(["a" * 200] * 25)
    argv = ["run", str(fm), "--set", f"output.dir={long}", "--dry-run"]
    line = refused(argv, "File name too long", capfd)
    assert "shorten it" in line and len(line) < 400 and "bytes)" in line, line


# --- numbers and shapes at the edges: 1 px inputs, one class, a single image per class ---------


@pytest.mark.parametrize(
    ("key", "value"),
    [("student.input_size", "1"), ("student.input_size", "[2,64]"), ("teacher.input_size", "4")],
)
def test_an_input_of_a_few_pixels_is_refused_naming_a_size_that_works(
    key: str, value: str, fm: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A CNN pads a 1x1 input through every stage and runs: `student.input_size: 1` trained a
    student on one colour per image without a word (a ViT or ConvNeXt failed in the probe)."""
    line = refused(["run", str(fm), "--set", f"{key}={value}", "--dry-run"], key, capfd)
    assert "below 8 px" in line and "e.g. input_size: 32" in line, line


def test_a_very_non_square_input_still_plans(fm: Path, cli: CLI) -> None:
    result = cli("run", str(fm), "--set", "student.input_size=[16,512]", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "16x512" in result.stdout


@pytest.mark.parametrize("key", ["teacher.num_classes", "data.synthetic.num_classes"])
def test_one_class_is_refused_at_load(
    key: str, fm: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`num_classes: 1` trained: the softmax of one output is 1, every loss 0, top-1 100%."""
    line = refused(["run", str(fm), "--set", f"{key}=1", "--dry-run"], f"{key}: 1 class", capfd)
    assert "a classifier needs two or more" in line


def _folder(root: Path, classes: list[str], per_class: int) -> None:
    from PIL import Image

    for split in ("train", "val"):
        for k, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (12, 12), (40 * k, 10 * i, 90)).save(
                    root / split / name / f"{i}.png"
                )


def _folder_recipe(tmp_path: Path, **data: Any) -> Path:
    recipe = tmp_path / "f.yaml"
    body = {
        "name": "f",
        "model": {"model": "test_resnet", "input_size": 32},
        "data": {"source": "image_folder", "root": str(tmp_path / "photos"), **data},
        "method": {"name": "supervised"},
        "schedule": {"epochs": 1, "batch_size": 2},
        "output": {"dir": str(tmp_path / "runs")},
    }
    recipe.write_text(yaml.safe_dump(body))
    return recipe


def test_a_holdout_from_one_image_per_class_says_to_drop_it_not_at_most_0(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """One image per class: "set data.holdout to at most 0", a value the key refuses."""
    _folder(tmp_path / "photos", ["cat", "dog"], 1)
    argv = ["run", str(_folder_recipe(tmp_path, holdout=1)), "--dry-run"]
    line = refused(argv, "data.holdout", capfd)
    assert "drop data.holdout" in line and "at most 0" not in line, line


def test_one_image_per_class_trains_when_nothing_is_held_out(tmp_path: Path, cli: CLI) -> None:
    _folder(tmp_path / "photos", ["cat", "dog"], 1)
    result = cli("run", str(_folder_recipe(tmp_path)), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "train 2 images" in " ".join(result.stdout.split())


# --- files that change under a command ----------------------------------------------------------


def test_a_run_folder_deleted_while_it_is_written_says_its_folder_is_gone() -> None:
    """`rm -rf runs/x` during the run ended in "cannot append to the metrics: No such file or
    directory (...) - check the path, free space and permissions": space was not the cause."""
    import errno

    from distill_cli.files import fs_failed

    exc = FileNotFoundError(errno.ENOENT, "No such file or directory")
    failed = fs_failed(exc, "/runs/x/metrics.jsonl", "append to the metrics")
    assert failed.code == 1 and "its folder is gone" in str(failed), str(failed)
