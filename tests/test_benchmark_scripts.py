"""The benchmark scripts as a user or reviewer reruns them with other models and settings.

Every script answers `--help` (what it measures, what it writes) and turns bad values into one
`error:` line with a non-zero exit, never a traceback or a table drawn from the wrong file; a
partial or other-model rerun never replaces the published results. Each case stops before any
training, so the whole file takes seconds (the two peer harnesses import torch for `--help`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"
#: Every script of benchmarks/ (a file a user runs: it has a `__main__` block); the modules
#: beside them (tuning.py, full_data_scales.py, arch_sweep_report.py, benchargs.py, gpu/,
#: peers/common.py) are imported by these.
SCRIPTS = sorted(
    p.relative_to(ROOT).as_posix()
    for p in BENCH.rglob("*.py")
    if "third_party" not in p.parts and 'if __name__ == "__main__":' in p.read_text()
)


def _script(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    return subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


def _one_error_line(done: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The run stopped with `code` and said why in one line (the project's or argparse's)."""
    assert done.returncode == code, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, done.stderr
    return errors[0]


def test_every_script_is_found() -> None:
    names = {Path(s).name for s in SCRIPTS}
    assert {"full_data.py", "full_data_report.py", "patience.py", "arch_sweep.py"} <= names
    assert {"gpu_check.py", "timm_kd.py", "export_parity.py", "train_throughput.py"} <= names
    assert len(SCRIPTS) >= 15


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_answers_help_with_what_it_measures(script: str) -> None:
    done = _script(script, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:"), done.stdout
    # the description is the script's docstring: its first sentence is in the help
    text = (ROOT / script).read_text()
    first = text.split('"""')[1].strip().splitlines()[0]
    assert first[:40] in " ".join(done.stdout.split()), done.stdout
    # every argument says what it does: its help follows on its line or on the next
    lines = done.stdout.splitlines()
    heads = ("positional arguments:", "options:")
    lines = lines[next(i for i, line in enumerate(lines) if line in heads) :]
    for i, line in enumerate(lines):
        if re.match(r"^  \S", line) and not re.match(r"^  \S.*?\s{2,}\S", line):
            follows = lines[i + 1] if i + 1 < len(lines) else ""
            assert re.match(r"^\s{6,}\S", follows), f"{script}: no help for {line.strip()}"


@pytest.mark.parametrize(
    ("report", "other"),
    [
        ("full_data_report.py", "patience.json"),
        ("full_data_report.py", "arch_sweep_cpu.json"),
        ("patience_report.py", "full_data_cpu.json"),
        ("patience_report.py", "fmnist_methods.json"),
    ],
)
def test_a_report_script_refuses_another_scripts_results(report: str, other: str) -> None:
    line = _one_error_line(_script(BENCH / report, RESULTS / other))
    assert "not a results file of" in line and other in line


def test_a_report_script_names_a_missing_file_and_draws_where_asked(tmp_path: Path) -> None:
    assert "no such results file" in _one_error_line(
        _script(BENCH / "full_data_report.py", tmp_path / "none.json")
    )
    figure = tmp_path / "a folder with spaces" / "new" / "fig.png"
    done = _script(BENCH / "patience_report.py", RESULTS / "patience.json", figure)
    assert done.returncode == 0, done.stderr
    assert figure.is_file() and "| function matching |" in done.stdout
    done = _script(BENCH / "full_data_report.py", RESULTS / "full_data_cpu.json")
    assert done.returncode == 0 and "mobilenetv3_small_050" in done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["patience.py", "--lengths", "10", "0"],
        ["patience.py", "--subset", "-5"],
        ["patience.py", "--jobs", "0"],
        ["full_data.py", "--quick", "--lengths", "-1"],
        ["full_data.py", "--quick", "--jobs", "0"],
        ["full_data.py", "--quick", "--budget-min", "0"],
        ["arch_sweep.py", "--size", "0"],
        ["export_archs.py", "--size", "-64"],
        ["train_throughput.py", "--device", "cpu", "--batch", "0"],
        ["int8_options.py", "--epochs", "0"],
        ["fmnist_methods.py", "--epochs", "1"],
        ["gpu_check.py", "OUT", "--smoke", "--parts", "9"],
        ["gpu_check.py", "OUT", "--smoke", "--parts", "x"],
        ["gpu_check.py", "OUT", "--smoke", "--parts", "1,1"],
        ["gpu_check.py", "OUT", "--smoke", "--fmnist", "/no/such/fashion-mnist"],
    ],
)
def test_bad_values_are_one_usage_error_before_any_work(args: list[str]) -> None:
    _one_error_line(_script(BENCH / args[0], *args[1:]))


def test_a_name_that_is_no_timm_model_is_refused_by_export_parity() -> None:
    """Any timm model can be measured (a rerun with other models); a typo is one line."""
    line = _one_error_line(_script(BENCH / "export_parity.py", "--arch", "no_such_net"))
    assert "neither in the export sweep nor a timm model" in line and "--arch" in line


def test_full_data_will_not_mix_its_rows_into_another_runs_results(tmp_path: Path) -> None:
    """A results file of another scale/variant (or another script) is refused, not continued:
    the committed JSON stays as it is."""
    committed = RESULTS / "full_data_cpu.json"
    before = committed.read_bytes()
    out = tmp_path / "runs"
    line = _one_error_line(
        _script(BENCH / "full_data.py", "--quick", "--out", out, "--json", committed)
    )
    assert "holds the results of another run" in line
    line = _one_error_line(
        _script(
            BENCH / "full_data.py", "--quick", "--out", out, "--json", RESULTS / "patience.json"
        )
    )
    assert "not a results file of benchmarks/full_data.py" in line
    assert committed.read_bytes() == before


def test_a_partial_arch_sweep_does_not_replace_the_published_table(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    from arch_sweep_report import RESULTS as PUBLISHED
    from arch_sweep_report import SCRATCH, results_folder

    assert results_folder(None, whole=True, update=False) == PUBLISHED
    assert results_folder(None, whole=False, update=True) == PUBLISHED  # a merge, asked for
    assert results_folder(None, whole=False, update=False) == SCRATCH
    assert results_folder(tmp_path, whole=False, update=False) == tmp_path
    assert SCRATCH.is_relative_to(ROOT / "runs")  # ignored by git
    line = _one_error_line(_script(BENCH / "arch_sweep.py", "--models", "no_such_net", "--quick"))
    assert "unknown timm model 'no_such_net'" in line


def test_an_arch_sweep_update_keeps_the_other_cells_of_a_row_at_its_size() -> None:
    """`--update` merges the stages run into a row and keeps its other cells and parity; a rerun
    at another `--size` replaced the row's px but kept cells measured at the old size (a row
    claiming 50 px with a 64 px export and parity): it now replaces the whole row."""
    sys.path.insert(0, str(BENCH))
    from arch_sweep_report import ArchResult, StageResult, merge

    ok, bad = StageResult("pass", 1.0, 0), StageResult("error", 1.0, 2, "error: x")
    earlier = [
        ArchResult("a", "fa", 64, {"student": ok, "export": ok, "gray": bad}, 1e-7),
        ArchResult("b", "fb", 64, {"student": ok, "export": ok}, 2e-7),
    ]
    fresh = [
        ArchResult("a", "fa", 64, {"teacher": ok, "gray": ok}),
        ArchResult("b", "fb", 50, {"student": bad}),
        ArchResult("c", "fc", 64, {"student": ok}),
    ]
    a, b, c = merge(earlier, fresh)
    assert a.stages == {"student": ok, "export": ok, "gray": ok, "teacher": ok}
    assert a.parity_max_abs == 1e-7  # export not rerun: its parity stays
    assert (b.size, b.stages, b.parity_max_abs) == (50, {"student": bad}, None)
    assert c.name == "c" and c.stages == {"student": ok}


def test_an_arch_sweep_at_a_non_square_size_keeps_it_through_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--size 64x96` sweeps the recipes' `input_size: [64, 96]` (the size `--size` took only
    as one side); its rows say 64x96, and read back from the JSON (a list) they are the same
    size, so an `--update` at 64x96 merges into them instead of replacing them."""
    sys.path.insert(0, str(BENCH))
    from arch_sweep_report import (
        ArchResult,
        StageResult,
        load_results,
        merge,
        parse_size,
        write_results,
    )

    assert parse_size("80") == 80 and parse_size("64x96") == parse_size("64X96") == (64, 96)
    ok = StageResult("pass", 1.0, 0)
    import arch_sweep

    with pytest.raises(SystemExit) as stopped:  # argparse's usage error, before any work
        arch_sweep.main(["--size", "64x96x3", "--quick", "--out", str(tmp_path)])
    assert stopped.value.code == 2
    assert "give a side (80) or HxW (64x96), not '64x96x3'" in capsys.readouterr().err
    write_results([ArchResult("a", "fa", (64, 96), {"student": ok})], ("student",), tmp_path, 1)
    assert "| a | fa | 64x96 | pass |" in (tmp_path / "arch_sweep_cpu.md").read_text()
    earlier = load_results(tmp_path / "arch_sweep_cpu.json")
    assert earlier[0].size == (64, 96)
    (row,) = merge(earlier, [ArchResult("a", "fa", (64, 96), {"export": ok})])
    assert row.stages == {"student": ok, "export": ok}
    # such a table said "`python benchmarks/arch_sweep.py`, 20 architectures": the default
    # sweep's command; it now says the command that made it
    seen: dict[str, object] = {}
    monkeypatch.setattr(arch_sweep, "sweep_all", lambda *_, **table: seen.update(table))
    argv = ["--models", "resnet18", "--size", "64x96", "--quick", "--out", str(tmp_path)]
    assert arch_sweep.main(argv) == 0
    assert seen["intro"] == f"`python benchmarks/arch_sweep.py {' '.join(argv)}`"


def test_the_sweeps_tell_a_one_line_refusal_from_a_crash() -> None:
    sys.path.insert(0, str(BENCH))
    from arch_sweep import judge

    refused = judge(2, "", "a warning\nerror: bad (model.input_size) - set it\n", 1.0)
    assert (refused.status, refused.rc, refused.message) == (
        "error",
        2,
        "error: bad (model.input_size) - set it",
    )
    traced = judge(1, "", "Traceback (most recent call last):\nerror: boom\nValueError: x", 1.0)
    assert (traced.status, traced.message) == ("CRASH", "ValueError: x")
    assert judge(-9, "", "", 1.0).status == "CRASH"
    assert judge(0, "", "noise", 1.0).status == "pass"


def test_the_methods_sweep_resumes_every_model_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`resume` was once 'skip' for models outside a fixed list (distilled DeiT), which the
    table reads as "a stage it needs failed"; every model now runs it."""
    sys.path.insert(0, str(BENCH))
    import arch_sweep_methods as sweep
    from arch_sweep import Arch
    from arch_sweep_report import StageResult

    seen: list[Path] = []

    def fake_resume(recipe: Path, run: Path, timeout: float) -> StageResult:
        seen.append(run)
        return StageResult("pass", 0.1, 0, "stopped at step 3, ended at 12 of 12")

    monkeypatch.setattr(sweep, "resume_stage", fake_resume)
    arch = Arch("deit_tiny_distilled_patch16_224", "deit distilled")
    result = sweep.sweep_one(arch, tmp_path, ("resume",), 1.0)
    assert result.stages["resume"].status == "pass"
    assert seen == [tmp_path / "runs" / "r-deit_tiny_distilled_patch16_224"]


def test_output_files_get_their_folder_and_a_folder_is_refused(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    from benchargs import output_file

    target = tmp_path / "with space" / "new" / "r.json"
    assert output_file(target, "--json") == target and target.parent.is_dir()
    with pytest.raises(SystemExit) as stop:
        output_file(tmp_path, "--json")
    assert stop.value.code == 2


def test_patience_records_the_images_its_teacher_really_trained_on(tmp_path: Path) -> None:
    """The table's 'trained on N images' is read from the teacher's recipe, not the defaults."""
    sys.path.insert(0, str(BENCH))
    from patience import train_images

    run = tmp_path / "teacher"
    run.mkdir()
    body = {
        "name": "t",
        "model": {"model": "test_resnet"},
        "data": {"source": "fashion_mnist", "holdout": 5000, "train_limit": 800},
        "method": {"name": "supervised"},
        "schedule": {"epochs": 1},
    }
    (run / "recipe.yaml").write_text(json.dumps(body))
    assert train_images(run) == 800
    body["data"] = {"source": "fashion_mnist", "holdout": 2000}
    (run / "recipe.yaml").write_text(json.dumps(body))
    assert train_images(run) == 58000


def test_patience_quick_keeps_what_the_command_line_gives() -> None:
    """--quick fills in only what the command leaves unsaid: `--quick --lengths 1 2` runs 1 and
    2 epochs (the quick budget replaced them silently before)."""
    import argparse

    sys.path.insert(0, str(BENCH))
    from patience import choose

    given = {"lengths": [1, 2], "subset": 60, "compare_at": None, "tune_at": None}
    a = argparse.Namespace(
        quick=True, holdout=None, teacher=None, student=None, overrides=[], teacher_overrides=[]
    )
    a.__dict__.update(given)
    plan = choose(a)
    assert (a.lengths, a.subset, a.compare_at, a.tune_at, a.holdout) == ([1, 2], 60, 3, 1, 500)
    assert "data.subset=60" in plan.common and "data.holdout=500" in plan.teacher_sets
    assert plan.tag == ""  # the recipes' own models: the default run's names


def test_patience_table_without_a_finished_student_run() -> None:
    sys.path.insert(0, str(BENCH))
    from patience_report import markdown

    result = json.loads((RESULTS / "patience.json").read_text())
    result["student"]["params"] = None
    result["rows"] = [{**result["rows"][0], "error": "distill run failed (1): boom"}]
    table = markdown(result)
    assert "no run of it finished" in table and "failed: distill run failed (1): boom" in table


def test_a_trained_run_is_reused_only_with_the_same_settings(tmp_path: Path) -> None:
    """export_latency.py and int8_options.py reuse a trained run only when its recipe, overrides
    included, is the one asked for (a run of 2 epochs is not read as one of 1)."""
    import yaml

    sys.path.insert(0, str(BENCH))
    from tuning import same_run

    from distill_cli.recipe.document import load_recipe

    recipe = BENCH / "export_fmnist.yaml"
    items = ["name=r", f"output.dir={tmp_path}", "schedule.epochs=2"]
    run = tmp_path / "r"
    run.mkdir()
    saved = load_recipe(recipe, items).model_dump(mode="json")
    (run / "recipe.yaml").write_text(yaml.safe_dump(saved))
    assert not same_run(run, recipe, items)  # not finished: no summary.json
    (run / "summary.json").write_text("{}")
    assert same_run(run, recipe, items)
    assert not same_run(run, recipe, [*items, "schedule.epochs=1"])
    assert not same_run(run, recipe, [*items, "model.model=test_convnext"])


def test_patience_reuses_a_finished_run_only_of_its_settings_and_teacher(tmp_path: Path) -> None:
    """A cut benchmark run again reruns only what is missing: a finished run of the same
    settings is reused, one of an older teacher (same checkpoint path, retrained) is not."""
    import yaml

    sys.path.insert(0, str(BENCH))
    from patience import FM_RECIPE, finished

    from distill_cli.recipe.document import load_recipe

    teacher = tmp_path / "teacher.safetensors"
    teacher.write_bytes(b"weights")
    items = [f"teacher.checkpoint={teacher}", "data.subset=100", "schedule.epochs=20"]
    items += [f"output.dir={tmp_path}", "output.name=r"]
    run = tmp_path / "r"
    run.mkdir()
    (run / "recipe.yaml").write_text(
        yaml.safe_dump(load_recipe(FM_RECIPE, items).model_dump(mode="json"))
    )
    (run / "summary.json").write_text("{}")
    assert finished(run, items)
    assert not finished(run, [*items, "data.subset=50"])
    os.utime(teacher, (run.stat().st_mtime + 60,) * 2)  # the teacher was trained again since
    assert not finished(run, items)


def test_a_set_that_changes_the_compared_method_is_refused(tmp_path: Path) -> None:
    """`--set method.name=kd` would run KD under the label 'function matching'."""
    done = _script(BENCH / "patience.py", "--quick", "--set", "method.name=kd", "--out", tmp_path)
    line = _one_error_line(done)
    assert "makes the function_matching rows run kd" in line
    assert not list(tmp_path.iterdir())  # refused before any teacher trained


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("full_data.py", ["--quick", "--students", "test_vit,no_such_net"]),
        ("full_data.py", ["--quick", "--students", "test_vit", "no_such_net"]),
        ("arch_sweep.py", ["--quick", "--models", "test_vit", "no_such_net"]),
        ("export_archs.py", ["--arch", "test_vit,no_such_net"]),
    ],
)
def test_list_options_read_commas_and_spaces_alike(script: str, args: list[str]) -> None:
    """The refusal names the one unknown model, so `a,b` and `a b` were both read as two names
    (before, full_data looked up 'test_vit,no_such_net' as one, and arch_sweep refused the
    space: 'unrecognized arguments')."""
    line = _one_error_line(_script(BENCH / script, *args))
    assert "'no_such_net'" in line and "test_vit," not in line
