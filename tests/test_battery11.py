"""Bad-input battery, round 11: the forms users write for `--input-size`, paths in the run's
JSON files read from elsewhere, checkpoints holding two models, a file of another family, SLURM
without its step variables, and a sweep of odd flag values. Each refusal is one `error:` line,
exit 2, naming the flag and the fix; each accepted form gives the result it says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill_cli import api
from distill_cli.arguments import input_size, square_side
from distill_cli.cli.entry import entry
from distill_cli.errors import DistillError


def _refused(argv: list[str], needle: str, capfd: pytest.CaptureFixture[str], code: int = 2) -> str:
    """Run the CLI in-process; it must end with exactly one `error:` line holding `needle`."""
    with pytest.raises(SystemExit) as exit_info:
        entry(argv)
    out, err = capfd.readouterr()
    assert exit_info.value.code == code, out + err
    lines = [line for line in (out + err).splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in out + err, out + err
    assert needle in lines[0] and " - " in lines[0], lines[0]
    return lines[0]


# --- a. --input-size: a side or HxW, as a recipe's input_size; one parser for every command ---


@pytest.mark.parametrize(
    ("given", "size"),
    [
        ("224", (224, 224)),
        ("224x192", (224, 192)),
        (" 64X48 ", (64, 48)),
        ("64×48", (64, 48)),
        (32, (32, 32)),
        ((32, 40), (32, 40)),
        ([40, 32], (40, 32)),
    ],
)
def test_input_size_forms_users_write(given: object, size: tuple[int, int]) -> None:
    assert input_size(given) == size


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        ("", "not an input size"),
        ("   ", "not an input size"),
        ("-5", "not an input size"),
        ("nan", "not an input size"),
        ("1e30", "not an input size"),
        ("32.5", "not an input size"),
        ("32x", "not an input size"),
        ("x32", "not an input size"),
        ("32,32", "not an input size"),
        ("1x2x3x4", "not an input size"),
        ("٣٢", "not an input size"),  # Arabic-Indic digits: isdigit() but not a size
        ("3x224x224", "give 224x224"),
        ("0", "below 1 px"),
        ("32x0", "below 1 px"),
        ("99999", "4096"),
        ("32x99999", "4096"),
    ],
)
def test_input_size_refusals_say_the_forms(given: str, needle: str) -> None:
    with pytest.raises(DistillError) as caught:
        input_size(given)
    assert needle in str(caught.value) and caught.value.where == "--input-size"
    assert caught.value.code == 2 and "\n" not in str(caught.value)


def test_students_take_one_square_side() -> None:
    assert square_side("64x64", least=8) == 64 and square_side(64, least=8) == 64
    with pytest.raises(DistillError, match="not square"):
        square_side("64x32", least=8)
    with pytest.raises(DistillError, match="below 8 px"):
        square_side("4", least=8)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["export", "test_resnet", "--input-size", "3x32x32"], "give 32x32"),
        (["export", "test_resnet", "--input-size", ""], "not an input size"),
        (["export", "test_resnet", "--input-size", "-32"], "not an input size"),
        (["bench", "latency", "test_resnet", "--input-size", "32x"], "not an input size"),
        (["bench", "latency", "test_resnet", "--input-size", "inf"], "not an input size"),
        (["students", "test_resnet", "--max-latency-ms", "5", "--input-size", "64x32"], "square"),
        (["students", "test_resnet", "--max-latency-ms", "5", "--input-size", "nan"], "not an"),
    ],
)
def test_input_size_flags_refuse_in_one_line(
    argv: list[str], needle: str, capfd: pytest.CaptureFixture[str]
) -> None:
    line = _refused(argv, needle, capfd)
    assert "--input-size" in line


def test_export_at_height_by_width(tmp_path: Path) -> None:
    """`--input-size 32x48` exports a 32x48 model (the flag took one number only)."""
    report = api.export("test_resnet", out=tmp_path / "out", input_size="32x48", latency=False)
    assert report.to_dict()["model"]["input_size"] == [32, 48]
    import onnx

    dims = onnx.load(str(report.onnx)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][2:] == [32, 48]


# --- b. paths in summary.json and an export's report.json: absolute when written, and a
# run folder read back is where it was read from (it may have moved) -------------------------


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 1-epoch supervised run made with a relative output.dir."""
    import os

    from tests.conftest import teacher_body, write_recipe

    work = tmp_path_factory.mktemp("battery11 runs é")
    body = teacher_body(Path("runs"), epochs=1)  # relative: from the directory distill ran in
    body["data"]["synthetic"]["train_size"] = 64
    recipe = write_recipe(work, "small", body)
    here = os.getcwd()
    os.chdir(work)
    try:
        api.run(recipe)
    finally:
        os.chdir(here)
    return work / "runs" / "small"


def test_run_and_export_paths_hold_from_another_directory_and_after_a_move(
    small_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from distill_cli.rundir.summary import RunSummary

    written = json.loads((small_run / "summary.json").read_text())
    assert Path(written["run_dir"]) == small_run  # was "runs/small": the cwd of the run
    moved = tmp_path / "moved" / "small"
    shutil.copytree(small_run, moved)
    monkeypatch.chdir(tmp_path / "moved")
    assert RunSummary.load("small").run_dir == Path("small")  # where it was read, not written
    report = api.export("small", out="out", latency=False, images=8)
    on_disk = json.loads((tmp_path / "moved" / "out" / "report.json").read_text())
    for key in ("onnx", "report"):
        assert Path(on_disk["files"][key]).is_absolute(), on_disk["files"]
        assert Path(on_disk["files"][key]).is_file()
    assert Path(on_disk["model"]["onnx"]["path"]).is_absolute()
    assert Path(on_disk["source"]["path"]) == moved
    assert report.onnx == moved.parent / "out" / "model.onnx"
    monkeypatch.chdir(tmp_path)  # the report reads the moved run from elsewhere
    assert api.report(moved).html.is_file()


# --- c. a Lightning checkpoint holding two models that both fit: named, and loadable ---------


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    import timm
    import torch

    torch.manual_seed(0)
    teacher = timm.create_model("test_resnet", num_classes=4).state_dict()
    student = timm.create_model("test_resnet", num_classes=4).state_dict()
    both = {
        **{f"module.teacher.{k}": v for k, v in teacher.items()},  # DDP's prefix in front too
        **{f"student.{k}": v for k, v in student.items()},
    }
    path = tmp_path_factory.mktemp("lightning") / "kd run.ckpt"
    torch.save({"state_dict": both, "state_dict_ema": dict(both), "epoch": 3}, path)
    return path, teacher, student


def test_two_fitting_models_are_named_and_picked_by_checkpoint_key(two_models: tuple) -> None:
    import timm
    import torch

    from distill_cli.models.weights import load_weights

    path, teacher, student = two_models
    with pytest.raises(DistillError) as caught:
        load_weights(timm.create_model("test_resnet", num_classes=4), path)
    line = str(caught.value)
    assert "'teacher.' and 'student.'" in line and "checkpoint_key: teacher or student" in line
    for key, want in (
        ("teacher", teacher),
        ("student", student),
        ("state_dict_ema.student", student),
    ):
        model = timm.create_model("test_resnet", num_classes=4)
        loaded = load_weights(model, path, entry=key)
        assert loaded.entry == key
        assert all(torch.equal(model.state_dict()[k], v) for k, v in want.items())
    with pytest.raises(DistillError, match="no weights under 'teachr'"):
        load_weights(timm.create_model("test_resnet", num_classes=4), path, entry="teachr")


def test_two_fitting_models_through_the_cli(
    two_models: tuple, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = str(two_models[0])
    argv = ["export", "test_resnet", "--checkpoint", path, "--num-classes", "4"]
    line = _refused([*argv, "--input-size", "32"], "--checkpoint-key teacher", capfd)
    assert "'teacher.' and 'student.'" in line
    report = api.export(
        "test_resnet", checkpoint=path, checkpoint_key="teacher", num_classes=4, input_size=32,
        out=tmp_path / "out", latency=False, images=4,
    )  # fmt: skip
    assert report.parity_passed and report.to_dict()["source"]["checkpoint"] == path


# --- d. weights of the same code at the same depth (resnext50 given as resnet50) are named ---


@pytest.mark.parametrize(
    ("file", "given"),
    [("resnext50_32x4d", "resnet50"), ("seresnext26d_32x4d", "resnet26d")],
)
def test_mismatch_names_a_model_of_the_same_code_outside_the_name_family(
    file: str, given: str
) -> None:
    """The search for the model a file holds stayed in the name family (resnet*), so resnext
    weights given as resnet50 got "check the model name, num_classes and in_chans"."""
    import timm
    import torch

    from distill_cli.models.mismatch import refusal
    from distill_cli.models.weights import _compared

    with torch.device("meta"):  # names and shapes only: no weights are made
        state = timm.create_model(file).state_dict()
        model = timm.create_model(given)
    keys = _compared(state, model.state_dict())
    error = refusal(model, Path("weights.pth"), state, keys, True, "")
    assert f"its names and shapes are {file}'s" in error.what
    assert error.hint == f"set model: {file} (the weights are {file}'s, not {given}'s)"


# --- e. SLURM without srun's step variables: no rank confusion, one line ---------------------


@pytest.fixture
def no_launcher(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for name in list(os.environ):
        if name.startswith(("SLURM_", "TORCHELASTIC_")) or name in (
            "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
        ):  # fmt: skip
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"SLURM_PROCID": "3", "SLURM_NTASKS": "4"}, "SLURM_PROCID=3 is set but SLURM_STEP_NUM"),
        ({"SLURM_PROCID": "1"}, "SLURM_STEP_NUM_TASKS is not"),
        ({"SLURM_STEP_NUM_TASKS": "4"}, "every process would be rank 0"),
        ({"SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "x"}, "SLURM_PROCID='x'"),
    ],
)
def test_slurm_variables_that_cannot_describe_a_world(
    no_launcher: pytest.MonkeyPatch, env: dict[str, str], needle: str
) -> None:
    from distill_cli.train.world import world_from_env

    for name, value in env.items():
        no_launcher.setenv(name, value)
    with pytest.raises(DistillError, match=needle) as caught:
        world_from_env()
    assert caught.value.code == 2 and caught.value.where == "environment"


@pytest.mark.parametrize(
    "env",
    [
        {"SLURM_NTASKS": "8", "SLURM_JOB_ID": "7"},  # salloc's shell
        {"SLURM_NTASKS": "8", "SLURM_PROCID": "0", "SLURM_JOB_ID": "7"},  # the batch script
        {"SLURM_STEP_NUM_TASKS": "1"},  # one task, its number not passed on
    ],
)
def test_a_slurm_shell_or_batch_script_is_one_process(
    no_launcher: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    from distill_cli.train.world import world_from_env

    for name, value in env.items():
        no_launcher.setenv(name, value)
    world = world_from_env()
    assert (world.rank, world.size, world.launched) == (0, 1, False)


def test_the_task_rank_0_does_not_see_says_its_line(
    no_launcher: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A task above 0 without the step's count says why it stops (rank 0 cannot say it)."""
    no_launcher.setenv("SLURM_PROCID", "2")
    no_launcher.setenv("SLURM_NTASKS", "4")
    _refused(["run", "no-such.yaml"], "SLURM_PROCID=2", capfd)


def test_nproc_in_one_srun_task_starts_the_processes(
    no_launcher: pytest.MonkeyPatch,
) -> None:
    """`srun -n 1 distill run --nproc 2` was refused as nested; several tasks still are."""
    import torch.distributed.run as torchrun

    from distill_cli.cli.launch import processes

    started: list[list[str]] = []
    no_launcher.setattr(torchrun, "run", lambda args: started.append(args.training_script_args))
    no_launcher.setenv("SLURM_STEP_NUM_TASKS", "1")
    no_launcher.setenv("SLURM_PROCID", "0")
    with pytest.raises(SystemExit) as exit_info:
        processes(2, ["run", "r.yaml", "--nproc", "2"])
    assert exit_info.value.code == 0 and started == [["run", "r.yaml"]]
    no_launcher.setenv("SLURM_STEP_NUM_TASKS", "2")
    with pytest.raises(DistillError, match="already started 2 processes"):
        processes(2, ["run", "r.yaml", "--nproc", "2"])


# --- sweep: a file of the wrong type is named as what it is --------------------------------


@pytest.fixture(scope="module")
def odd_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PNG, an ONNX model named .pt, a recipe named .pt, a truncated safetensors."""
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    w = tmp_path_factory.mktemp("odd files ü")
    Image.new("RGB", (8, 8)).save(w / "photo.png")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten())
    torch.onnx.export(net, (torch.zeros(1, 3, 8, 8),), str(w / "model.onnx"), dynamo=False)
    (w / "model.pt").write_bytes((w / "model.onnx").read_bytes())
    (w / "recipe.pt").write_text("name: r\nstudent: {model: test_resnet}\n")
    save_file({"w": torch.zeros(64)}, str(w / "full.safetensors"))
    data = (w / "full.safetensors").read_bytes()
    (w / "cut.safetensors").write_bytes(data[: len(data) // 2])
    return w


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", "photo.png"], "the recipe is not UTF-8 text: the file is a PNG image"),
        (["train", "model.pt"], "the recipe is not UTF-8 text: the file is an ONNX model"),
        (["bench", "train", "cut.safetensors"], "a safetensors weights file"),
        (["export", "model.pt"], "not a checkpoint: the file is an ONNX model"),
        (["export", "photo.png"], "not a checkpoint: the file is a PNG image"),
        (["export", "recipe.pt"], "not a checkpoint: the file is a text file"),
        (["bench", "latency", "recipe.pt"], "not a checkpoint: the file is a text file"),
        (["bench", "latency", "test_resnet", "--checkpoint", "model.pt"], "an ONNX model"),
        (["export", "test_resnet", "--onnx", "photo.png"], "not an ONNX file: the file is a PNG"),
        (["export", "test_resnet", "--onnx", "recipe.pt"], "not an ONNX file: the file is a text"),
    ],
)
def test_a_file_of_the_wrong_type_is_named(
    odd_files: Path,
    argv: list[str],
    needle: str,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A PNG as the recipe was "not UTF-8 (byte 0) - iconv ...", an ONNX model as a checkpoint
    "neither a torch.save file nor safetensors", a recipe as --onnx "is the file complete?"."""
    monkeypatch.chdir(odd_files)
    _refused(argv, needle, capfd)


def test_file_kinds_by_first_bytes(odd_files: Path) -> None:
    from distill_cli.file_kinds import kind_of

    kinds = {p.name: kind_of(p) for p in odd_files.iterdir()}
    assert kinds == {
        "photo.png": "a PNG image",
        "model.onnx": "an ONNX model",
        "model.pt": "an ONNX model",
        "recipe.pt": "a text file",
        "full.safetensors": "a safetensors weights file",
        "cut.safetensors": "a safetensors weights file",
    }
    assert kind_of(odd_files / "missing") is None and kind_of(odd_files) is None


def test_a_refused_export_leaves_no_folder(
    odd_files: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """An export refused after claiming its folder left `OUT/.distill-export` (and the folders
    above it it had made); a folder that was there stays."""
    out = tmp_path / "new" / "deep er" / "out"
    argv = ["export", "test_resnet", "--onnx", str(odd_files / "recipe.pt"), "--out", str(out)]
    _refused(argv, "not an ONNX file", capfd)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "mine").mkdir()
    _refused([*argv[:-1], str(tmp_path / "mine")], "not an ONNX file", capfd)
    assert (tmp_path / "mine").is_dir() and list((tmp_path / "mine").iterdir()) == []


# --- sweep: empty arguments, --debug after the command, hints, --bare -------------------------


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["export", ""], "SOURCE is empty"),
        (["export", "  "], "SOURCE is empty"),
        (["bench", "latency", ""], "SOURCE is empty"),  # was "not a run directory (.)"
        (["report", ""], "'run_dir': is empty (an unset variable?)"),
        (["students", " ", "--max-latency-ms", "5"], "give a timm name"),
        (["students", "test_resnet", "--max-latency-ms", "0"], "e.g. --max-latency-ms 5"),
        (["students", "test_resnet", "--max-latency-ms", "5", "--top", "0"], "distill students"),
    ],
)
def test_empty_and_zero_arguments_say_what_to_do(
    argv: list[str], needle: str, capfd: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    _refused(argv, needle, capfd)
    assert list(tmp_path.iterdir()) == []


def test_debug_after_the_command_shows_the_traceback(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`distill export x --debug` was "No such option: --debug"; only `distill --debug export`
    worked."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISTILL_DEBUG", "0")  # undone after the test: --debug sets it to 1
    with pytest.raises(SystemExit) as exit_info:
        entry(["export", "", "--debug"])
    err = capfd.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" in err
    assert err.rstrip().splitlines()[-1].startswith("error: SOURCE is empty")


def test_students_accuracy_table_of_the_wrong_type(
    odd_files: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    argv = ["students", "test_resnet", "--max-latency-ms", "5", "--accuracy"]
    _refused([*argv, str(odd_files / "photo.png")], "not UTF-8 text: the file is a PNG", capfd)
    _refused([*argv, str(odd_files)], "the accuracy table is a folder", capfd)


def test_bench_train_bare_script_of_the_wrong_type_or_failing(
    odd_files: Path, tmp_path: Path
) -> None:
    """--bare photo.png was accepted (and run by Python on CUDA); a failing script was a
    CalledProcessError traceback."""
    from types import SimpleNamespace

    from distill_cli.bench.train import _bare_script, bench_train
    from distill_cli.errors import RunFailed

    with pytest.raises(DistillError, match="not a Python file: the file is a PNG image"):
        bench_train(None, bare_script=odd_files / "photo.png")  # type: ignore[arg-type]
    script = tmp_path / "bare_kd_step.py"
    script.write_text("import sys\nsys.exit('boom: no CUDA here')\n")
    info = SimpleNamespace(name="test_resnet", num_classes=4)
    setup = SimpleNamespace(teacher=SimpleNamespace(info=info), student=SimpleNamespace(info=info))
    with pytest.raises(RunFailed, match="boom: no CUDA here") as caught:
        _bare_script(setup, script, 8, 32, "fm", 2)  # type: ignore[arg-type]
    assert caught.value.code == 1 and "\n" not in str(caught.value)


def test_a_timing_that_would_never_end_is_bounded_or_refused(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """`--min-time 1e30 --max-time 1e30` timed one model forever; `--warmup 1000000000` too."""
    import time

    from distill_cli.export.latency import warm_up

    _refused(["bench", "latency", "test_resnet", "--max-time", "1e30"], "3600", capfd)
    _refused(["students", "x", "--max-latency-ms", "5", "--min-time", "4000"], "--min-time", capfd)
    calls: list[int] = []
    start = time.perf_counter()
    made = warm_up(lambda: calls.append(time.sleep(0.01) or 1), 10**9, 0.2)
    assert made == len(calls) and 5 <= made < 100 and time.perf_counter() - start < 2


def test_keep_fp32_without_an_int8_file_is_refused(capfd: pytest.CaptureFixture[str]) -> None:
    """`--keep-fp32 first` without `--quantize int8` was ignored without a word."""
    _refused(["export", "test_resnet", "--keep-fp32", "first"], "add --quantize int8", capfd)
