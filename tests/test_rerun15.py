"""Benchmark reruns from another folder and with other settings (the rerun battery of issue 15).

The scripts run `distill` and their own parts in child processes whose working folder is the
checkout, so a path option given relative to the folder the user started in must reach them
absolute; every path option goes through `benchargs.place`.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import benchargs  # noqa: E402
import fuzz_decode  # noqa: E402

#: A command line joined with spaces (unquoted): what benchargs.command replaced.
JOINED = r'" "\.join\((sys\.argv|\["python", \*sys\.argv)'


def _path_options(script: Path) -> list[str]:
    """The options of `script` whose argparse type is the bare `Path` (kept relative)."""
    found = []
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            for kw in node.keywords:
                if kw.arg == "type" and isinstance(kw.value, ast.Name) and kw.value.id == "Path":
                    found.append(ast.literal_eval(node.args[0]) if node.args else "?")
    return found


def test_no_benchmark_option_keeps_a_path_relative() -> None:
    scripts = sorted(BENCH.glob("*.py"))
    assert len(scripts) > 15
    relative = {s.name: opts for s in scripts if (opts := _path_options(s))}
    assert relative == {}, f"path options read as given, not via benchargs.place: {relative}"


def test_a_path_option_is_made_absolute_against_the_start_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert benchargs.place("runs dir/x") == tmp_path / "runs dir" / "x"
    assert benchargs.place(str(tmp_path / "y")) == tmp_path / "y"


def test_fuzz_decode_from_another_folder_decodes_the_files_it_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--keep` relative to another folder: the child (working in the checkout) used to look
    for the files there, find none and count every one `bad`, exit 0."""
    handed: list[Path] = []

    def decode_all(files: list[Path]) -> list[str]:  # the child's side: what it is given
        handed.extend(files)
        return ["ok" if f.is_absolute() and f.is_file() else "bad" for f in files]

    monkeypatch.setattr(fuzz_decode, "decode_all", decode_all)
    monkeypatch.chdir(tmp_path)
    assert fuzz_decode.main(["--count", "3", "--keep", "kept here"]) == 0
    assert "ok 3" in capsys.readouterr().out
    assert handed and all(f.parent == tmp_path / "kept here" for f in handed)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [(["--count", "0"], "--count"), (["--count", "-3"], "--count")],
)
def test_fuzz_decode_refuses_no_files(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        fuzz_decode.main(argv)
    assert stop.value.code == 2 and needle in capsys.readouterr().err


def test_fuzz_decode_keep_that_is_a_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(SystemExit) as stop:
        fuzz_decode.main(["--count", "1", "--keep", str(tmp_path / "f")])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert "--keep" in err[0]


def test_the_recorded_command_can_be_pasted_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import shlex

    argv = ["benchmarks/patience.py", "--json", "my runs/p.json", "--set", "optim.lr=1e-3"]
    monkeypatch.setattr(sys, "argv", argv)
    assert shlex.split(benchargs.command()) == ["python", *argv]
    named = ["python", "benchmarks/x.py", *argv[1:]]
    assert shlex.split(benchargs.command("benchmarks/x.py")) == named
    unquoted = [s.name for s in BENCH.glob("*.py") if re.search(JOINED, s.read_text())]
    assert unquoted == [], f"commands recorded without benchargs.command: {unquoted}"


def test_bench_train_times_the_bare_step_at_the_students_size_and_records_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-square student: the built-in bare step ran at height x height (a smaller step
    than distill's, a ratio in the bare step's favour), and the JSON said no size at all."""
    import torch

    from distill_cli.bench.train import bench_train
    from distill_cli.recipe.document import load_recipe
    from tests.conftest import fm_body, write_recipe

    body = fm_body(tmp_path / "runs", None)
    body["student"]["input_size"] = [24, 40]
    recipe = load_recipe(write_recipe(tmp_path, "wide", body))
    shapes: list[tuple[int, ...]] = []
    randn = torch.randn

    def spy(*size: Any, **kw: Any) -> torch.Tensor:
        shapes.append(tuple(size[0] if len(size) == 1 else size))
        return randn(*size, **kw)

    monkeypatch.setattr(torch, "randn", spy)
    result = bench_train(recipe, steps=2, warmup=1, window=1, data_batches=2)
    inputs = [s[-2:] for s in shapes if len(s) == 4]
    assert (24, 40) in inputs and (24, 24) not in inputs, inputs
    assert result.input_size == (24, 40)
    assert result.to_dict()["input_size"] == (24, 40)


@pytest.mark.parametrize(
    "argv", [["--seeds", "0,1,1"], ["--seeds", "1", "--seeds", "1"], ["--seeds", "2", "02"]]
)
def test_a_list_option_refuses_a_value_given_twice(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`full_data.py --seeds 1,1` made two rows of one run name, run side by side into one
    folder; every list option (benchargs.Several) refuses the repeat as a usage error."""
    p = benchargs.parser(None)
    p.add_argument("--seeds", action=benchargs.Several, item=benchargs.at_least(0))
    assert p.parse_args(["--seeds", "0,1", "--seeds", "2"]).seeds == [0, 1, 2]
    with pytest.raises(SystemExit) as stop:
        p.parse_args(argv)
    assert stop.value.code == 2 and "given twice" in capsys.readouterr().err


def test_fmnist_methods_from_another_folder_runs_beside_its_teacher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --out the teacher went to the checkout's runs/ and the method runs to ./runs of
    whatever folder the script was started in (the recipes' relative `output.dir`)."""
    import fmnist_methods

    taught: list[Path] = []
    monkeypatch.setattr(fmnist_methods, "teacher_run", lambda out, *_: taught.append(out) or out)
    monkeypatch.setattr(fmnist_methods, "check_runs", lambda *_: None)
    ran: list[list[str]] = []

    def run(recipe: Path, overrides: list[str], overwrite: bool) -> None:
        ran.append(overrides)
        raise KeyboardInterrupt  # one row is enough: where it would write

    monkeypatch.setattr(fmnist_methods.api, "run", run)
    monkeypatch.setattr(sys, "argv", ["fmnist_methods.py", "--epochs", "2"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        fmnist_methods.main()
    assert taught == [ROOT / "runs"]
    assert f"output.dir={ROOT / 'runs'}" in ran[0]


def test_int8_options_refuses_a_train_subset_smaller_than_a_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--train 64` reached distill, whose refusal said `set schedule.batch_size=64`: an option
    this script does not have. Now one line naming --train, before anything trains."""
    import int8_options

    started: list[tuple[str, ...]] = []
    monkeypatch.setattr(int8_options, "distill", lambda *a: started.append(a))
    with pytest.raises(SystemExit) as stop:
        int8_options.train_runs(tmp_path, 64, 32, 1, False)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and started == [] and len(err) == 1, err
    assert err[0].startswith("error: --train 64 is fewer images than one batch (256)")
    assert "--train 256 or more" in err[0]


def test_a_batch_of_one_image_for_a_batch_norm_student_is_one_line(
    fm: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`distill run --set schedule.batch_size=1` (and train_throughput.py --batch 1) with a
    batch-norm student ended in torch's traceback from inside the first step."""
    from tests.conftest import refused

    line = refused(["run", str(fm), "--set", "schedule.batch_size=1"], "batch size 1", capfd)
    assert "schedule.batch_size" in line and "2 or more" in line


def test_a_distill_child_reads_relative_paths_where_the_script_was_started(
    fm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The benchmarks' `distill` children ran in the checkout: a relative `--set data.root=...`
    (or recipe, checkpoint) that the checks before them read in the user's folder was read
    there, so the checks passed and every run failed."""
    import tuning

    monkeypatch.chdir(tmp_path)
    log = tmp_path / "plan.log"
    assert tuning.launch(["run", fm.name, "--dry-run"], log, 1) == 0, log.read_text()
