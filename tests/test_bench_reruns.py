"""The benchmark scripts rerun with other settings, in-process (each case stops before training).

What a rerun relies on beyond test_bench_options.py: a `--set` of what an option sets is refused
with that option (it used to be replaced without a word, or to run under the option's label), an
existing results file is replaced only when asked, a cut run leaves its finished rows, every
results JSON says with what it ran, and each script refuses what it cannot measure in one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))

import benchargs  # noqa: E402
import full_data_scales  # noqa: E402
import gpu_check  # noqa: E402
import patience  # noqa: E402
import tuning  # noqa: E402

from distill_cli.errors import DistillError  # noqa: E402


def _fd_args(**given: object) -> argparse.Namespace:
    base = dict(teacher=None, students=None, lengths=None, seeds=None, jobs=None, quick=True)
    base.update(methods=None)
    base.update(overrides=[], teacher_overrides=[])
    return argparse.Namespace(**{**base, **given})


def _patience_args(**given: object) -> argparse.Namespace:
    base = dict(quick=True, lengths=None, subset=None, holdout=None, compare_at=None)
    base.update(tune_at=None, teacher=None, student=None, overrides=[], teacher_overrides=[])
    return argparse.Namespace(**{**base, **given})


def _main(module: Any, argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys) -> str:
    """Runs a script's `main` with `argv`; it must stop with exit 2 and one `error:` line."""
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *argv])
    with pytest.raises(SystemExit) as stop:
        module.main()
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# --- a --set of what an option sets: refused, naming the option ------------------------------


@pytest.mark.parametrize(
    ("given", "option"),
    [
        ({"overrides": ["schedule.epochs=5"]}, "--lengths"),
        ({"overrides": ["runtime.seed=3"]}, "--seeds"),
        ({"overrides": ["student.model=resnet18"]}, "--students"),
        ({"overrides": ["optim={lr: 0.1}"]}, "grid"),  # a section holding an owned key
        ({"overrides": ["runtime.threads=1"]}, "--jobs"),
        ({"teacher_overrides": ["model.model=resnet18"]}, "--teacher"),
        ({"teacher_overrides": ["output.dir=/tmp/x"]}, "--out"),
    ],
)
def test_full_data_refuses_a_set_of_what_its_options_set(given: dict, option: str) -> None:
    scale, variant, _ = full_data_scales.choose("quick", _fd_args(**given))
    with pytest.raises(DistillError, match="which the benchmark sets itself") as info:
        full_data_scales.validate(scale, variant)
    assert option in (info.value.hint or "")


@pytest.mark.parametrize(
    "given",
    [{"overrides": ["data.holdout=null"]}, {"teacher_overrides": ["data.holdout=null"]}],
)
def test_full_data_keeps_the_holdout_its_choices_are_made_on(given: dict) -> None:
    """`--set data.holdout=null` made the test set the one the grid was picked on, and ended in
    an AssertionError when the first run had no separate test result."""
    scale, variant, _ = full_data_scales.choose("quick", _fd_args(**given))
    with pytest.raises(DistillError, match="no holdout") as info:
        full_data_scales.validate(scale, variant)
    assert info.value.where == ("--set" if "overrides" in given else "--teacher-set")
    other = _fd_args(overrides=["data.holdout=100"], teacher_overrides=["data.holdout=100"])
    scale, variant, _ = full_data_scales.choose("quick", other)  # another size is fine
    for recipe, sets in [
        (full_data_scales.TEACHER_RECIPE, scale.teacher_overrides(variant.teacher_sets)),
        (full_data_scales.STUDENT_RECIPE, scale.student_overrides(variant.sets)),
    ]:
        tuning.check_holdout(recipe, sets, "--set")


def test_full_data_and_patience_keep_a_set_they_do_not_own() -> None:
    sets = ["schedule.batch_size=25", "augment.random_erasing=0.25", "data.root=/data/fmnist"]
    tuning.check_not_owned(sets, full_data_scales.STUDENT_OWNED, "--set")
    plan = patience.choose(_patience_args(tune_at=0, overrides=["optim.lr=0.1", *sets]))
    tuning.check_not_owned(plan.variant.sets, patience.owned(plan.tuned), "--set")  # no grid: free
    tuned = patience.choose(_patience_args(overrides=["optim.lr=0.1"]))
    with pytest.raises(DistillError, match=r"optim\.lr"):
        tuning.check_not_owned(tuned.variant.sets, patience.owned(tuned.tuned), "--set")


@pytest.mark.parametrize(
    ("given", "option"),
    [
        ({"overrides": ["data.subset=50"]}, "--subset"),
        ({"overrides": ["data.holdout=100"]}, "--holdout"),
        ({"overrides": ["schedule.epochs=7"]}, "--lengths"),
        ({"overrides": ["optim.lr=0.1"]}, "--tune-at 0"),  # the grid sets it while tuning
        ({"teacher_overrides": ["data.holdout=100"]}, "--holdout"),
        ({"teacher_overrides": ["model.model=resnet18"]}, "--teacher"),
    ],
)
def test_patience_refuses_a_set_of_what_its_options_set(given: dict, option: str) -> None:
    plan = patience.choose(_patience_args(**given))
    with pytest.raises(DistillError, match="which the benchmark sets itself") as info:
        patience.validate(plan)
    assert option in (info.value.hint or "")


def test_fmnist_methods_and_export_latency_refuse_a_set_of_their_options(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import export_latency
    import fmnist_methods

    line = _main(fmnist_methods, ["--set", "schedule.epochs=9"], monkeypatch, capsys)
    assert "schedule.epochs" in line and "use --epochs" in line
    line = _main(fmnist_methods, ["--set", "output.name=x"], monkeypatch, capsys)
    assert "use --out" in line
    line = _main(fmnist_methods, ["--teacher-set", "model.model=x"], monkeypatch, capsys)
    assert "use --teacher" in line
    line = _main(export_latency, ["--train-set", "model.model=resnet18"], monkeypatch, capsys)
    assert "use --arch" in line
    line = _main(export_latency, ["--skip-224", "--skip-trained"], monkeypatch, capsys)
    assert "leave no table" in line
    line = _main(export_latency, ["--", "--no-latency"], monkeypatch, capsys)  # StopIteration
    assert "--no-latency after -- is set by this script" in line
    line = _main(export_latency, ["--", "--out=/tmp/x"], monkeypatch, capsys)
    assert "use --out-dir" in line
    line = _main(export_latency, ["--skip-224", "--size", "64"], monkeypatch, capsys)
    assert "--size 64 with --skip-224" in line


def test_train_throughput_refuses_what_it_cannot_time(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    import train_throughput

    line = _main(train_throughput, ["--device", "cpu", "--bare", "x.py"], monkeypatch, capsys)
    assert "--bare runs on CUDA only" in line
    line = _main(train_throughput, ["--steps", "2", "--window", "5"], monkeypatch, capsys)
    assert "--window 5 is more than --steps 2" in line
    line = _main(train_throughput, ["--device", "cpu", "--student", "resnet1"], monkeypatch, capsys)
    assert "unknown timm model 'resnet1' (--student)" in line
    if not torch.cuda.is_available():  # named the recipe key, which this script has no option for
        line = _main(train_throughput, ["--steps", "2", "--window", "1"], monkeypatch, capsys)
        assert "(--device)" in line and "--device cpu" in line
    import distill_cli.bench.train as bench

    def too_small(recipe: object, **_: object) -> dict:
        raise DistillError("the student fails on a 3x32x32 input", "student.input_size", "72")

    monkeypatch.setattr(bench, "bench_train", too_small)
    argv = ["--device", "cpu", "--res", "32", "--steps", "2", "--window", "1"]
    assert "(--res) - 72 (here: --res)" in _main(train_throughput, argv, monkeypatch, capsys)
    from distill_cli.bench.train_result import DataPathTiming, StepRounds, StepTiming, TrainBench

    step = StepRounds.of([StepTiming(1.0, "one span")])
    ran = TrainBench("bench", 1, "cpu", "fp32", False, 8, "s", "t", 0.9, step, DataPathTiming(1.0))
    monkeypatch.setattr(bench, "bench_train", lambda *_, **__: replace(ran, bare=step))
    monkeypatch.setattr(sys, "argv", ["train_throughput.py", *argv, "--mode", "bf16_cl"])
    train_throughput.main()  # the header says what ran, not the --mode asked for
    assert "32 px, fp32 on cpu (--mode bf16_cl)" in capsys.readouterr().out


# --- results files: replaced only when asked, kept when a run is cut ---------------------------


def test_an_existing_results_file_is_replaced_only_with_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import export_parity

    old = tmp_path / "r.json"
    old.write_text('{"rows": []}')
    with pytest.raises(SystemExit):
        benchargs.output_file(old, "--json", overwrite=False)
    assert benchargs.output_file(old, "--json", overwrite=True) == old
    assert benchargs.output_file(old, "--json") == old  # None: the caller merges (full_data)
    capsys.readouterr()
    argv = ["--arch", "resnet18", "--json", str(old)]
    line = _main(export_parity, argv, monkeypatch, capsys)
    assert "exists (--json)" in line and "--overwrite" in line
    assert old.read_text() == '{"rows": []}'


def test_export_parity_measures_a_timm_model_outside_the_sweep_at_another_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rerun with another model and setting: `--arch test_vit --size 32` exports test_vit at
    32 px (outside the sweep, no kwargs) and records the size it measured at."""
    import export_parity

    out = tmp_path / "p.json"
    argv = ["export_parity.py", "--arch", "test_vit", "--size", "32", "--json", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    export_parity.main()
    assert "1 architectures" in capsys.readouterr().out
    record = json.loads(out.read_text())
    (row,) = record["rows"]
    assert record["size"] == 32 and row["arch"] == "test_vit" and "error" not in row
    assert row["exporter"] == "torchscript" and row["top1_agreement"] == 100.0


def test_an_output_folder_that_is_a_file_is_one_line_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--out FILE` was a FileExistsError traceback, for the sweeps after every model ran."""
    import arch_sweep
    import full_data

    afile = tmp_path / "afile"
    afile.write_text("")
    made = benchargs.output_folder(tmp_path / "new folder" / "deep", "--out")
    assert made.is_dir()
    for module, argv in [
        (full_data, ["--quick", "--out", str(afile)]),
        (patience, ["--quick", "--out", str(afile)]),
        (gpu_check, [str(afile), "--smoke", "--parts", "1"]),
    ]:
        line = _main(module, argv, monkeypatch, capsys)
        assert f"{afile} is a file" in line and "name a folder" in line
    with pytest.raises(SystemExit) as stop:
        arch_sweep.main(["--models", "resnet18", "--quick", "--out", str(afile)])
    assert stop.value.code == 2 and "is a file (--out)" in capsys.readouterr().err


def test_fmnist_methods_saves_every_finished_row_and_what_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run cut after two methods leaves their rows, with the models, versions and command;
    with --out the teacher is trained there too, not into runs/; the table gives each row's
    own epochs (stage-by-stage runs its phases, not --epochs)."""
    import fmnist_methods

    taught: list[Path] = []
    monkeypatch.setattr(fmnist_methods, "teacher_run", lambda out, *_: taught.append(out) or out)
    planned: list[tuple[str, list[str]]] = []  # check_runs: tested on its own below
    monkeypatch.setattr(fmnist_methods, "check_runs", lambda r, o, w: planned.append((w, o)))
    done: list[list[str]] = []

    def run(recipe: Path, overrides: list[str], overwrite: bool) -> SimpleNamespace:
        if len(done) == cut:
            raise KeyboardInterrupt  # the session is cut during the third method
        done.append(overrides)
        if "stage_by_stage" in str(recipe):
            raise DistillError("stage_map names a stage the models lack", "method.stage_map")
        epochs = 3 if "ablations" in str(recipe) else 2
        summary = {"student": {"top1": 50.0, "model": "test_convnext"}, "teacher": None}
        summary |= {"agreement": {"top1": None}, "kl": None, "images_per_s": 1.0}
        summary |= {"epochs": epochs}
        summary |= {"data": {"val_images": 300}, "device": "cpu"}
        return SimpleNamespace(to_dict=lambda: summary)

    cut = 2
    monkeypatch.setattr(fmnist_methods.api, "run", run)
    out, path = tmp_path / "runs", tmp_path / "r.json"
    argv = ["--student", "test_convnext", "--epochs", "2", "--out", str(out), "--json", str(path)]
    monkeypatch.setattr(sys, "argv", ["fmnist_methods.py", *argv])
    # a bad value of the user's is refused in one line before the teacher trains
    monkeypatch.setattr(sys, "argv", ["fmnist_methods.py", *argv, "--set", "optim.lrr=1"])
    with pytest.raises(SystemExit) as refused:
        fmnist_methods.main()
    assert refused.value.code == 2 and taught == [] and done == []
    assert "optim.lrr: unknown key" in capsys.readouterr().err
    # test_convnext has 4 stages, the stage_by_stage recipe maps stage 4: that row is a failed
    # row, decided before the teacher trains, and the other methods run (the whole benchmark
    # was refused, and the docstring's own `--student test_convnext` example with it)
    monkeypatch.setattr(sys, "argv", ["fmnist_methods.py", *argv])
    with pytest.raises(KeyboardInterrupt):
        fmnist_methods.main()
    said = capsys.readouterr().out
    assert "stage_by_stage.yaml: not run with these models: stage_map [[2, 2], [4, 4]]" in said
    data = json.loads(path.read_text())
    assert [r["recipe"] for r in data["rows"]] == [r for _, r in fmnist_methods.ROWS[:2]]
    assert data["rows"][0]["epochs"] == 2 and data["rows"][0]["test_images"] == 300
    assert data["models"] == {"student": "test_convnext", "teacher": "resnet10t"}
    assert data["environment"]["versions"]["timm"] and "--student" in data["command"]
    assert taught == [out.resolve()]
    assert [w for w, _ in planned] == ["--teacher", "--student"]
    assert "student.model=test_convnext" in planned[1][1]
    assert all(f"output.dir={out.resolve()}" in o and "schedule.epochs=2" in o for o in done)
    capsys.readouterr()
    cut, done[:] = -1, []  # the whole table, one method failing: exit 1
    path.unlink()
    with pytest.raises(SystemExit) as stop:
        fmnist_methods.main()
    table = capsys.readouterr().out
    assert stop.value.code == 1 and "| method | recipe | epochs | student top-1 |" in table
    # the row's words are the check's, not the stub's run: it never ran
    assert "| `recipes/methods/stage_by_stage.yaml` | | failed: stage_map [[2, 2], [4, 4]]" in table
    assert "| `recipes/ablations/independent.yaml` | 3 | 50.00% |" in table
    assert "`recipes/methods/stage_by_stage.yaml` | | failed: stage_map" in table
    assert "test images 300" in table and "student test_convnext" in table


def test_patience_replaces_only_a_results_file_of_the_same_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rerun with other lengths (or models) into the same OUT wrote over the earlier run's
    JSON; it is refused now unless --overwrite, while the same run again may complete it."""
    import patience_report

    old = json.loads((RESULTS / "patience.json").read_text())  # lengths 10..1000, no models
    path = tmp_path / "patience.json"
    path.write_text(json.dumps(old))
    keys = (path, "benchmarks/patience.py", patience_report.ROW_KEYS, patience_report.KEYS)
    same = {k: old[k] for k in patience.SETTINGS}
    benchargs.replaceable(*keys, same, overwrite=False)  # the same settings: continued
    with pytest.raises(SystemExit):
        benchargs.replaceable(*keys, {**same, "lengths": [10, 30]}, overwrite=False)
    assert "its lengths differ" in capsys.readouterr().err
    benchargs.replaceable(*keys, {**same, "lengths": [10, 30]}, overwrite=True)
    argv = ["--quick", "--out", str(tmp_path), "--json", str(path)]
    monkeypatch.setattr(patience, "validate", lambda plan: None)  # tested above; slow here
    line = _main(patience, argv, monkeypatch, capsys)
    assert "holds the results of another run" in line and "quick" in line
    assert json.loads(path.read_text()) == old


def test_a_cut_patience_run_leaves_its_finished_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """patience.py wrote its JSON only at the end of hours of runs; every finished (or failed)
    row is in it now as it ends, `complete: false` until the last."""
    import patience_report
    from patience_rows import ladder_rows

    result = json.loads((RESULTS / "patience.json").read_text())
    result.update(rows=[], tune=[], complete=False)
    path = tmp_path / "patience.json"
    progress = patience.Progress(path, result, 0.0)

    def run(row: patience.RunRow, *_: object) -> patience.RunRow:
        if row.epochs == 3:
            raise KeyboardInterrupt  # the session ends during the third run
        row.top1, row.error = (50.0, None) if row.epochs == 30 else (None, "boom")
        row.wall_s = 60.0
        return row

    monkeypatch.setattr(patience, "_run", run)
    rows = [r for r in ladder_rows([1, 3, 30], 600, {}) if r.label == patience_report.FM_LABEL]
    with pytest.raises(KeyboardInterrupt):
        patience.run_pool(rows, tmp_path, [], 1, 1, progress.add)  # longest first: 30, 3, 1
    saved = json.loads(path.read_text())  # the pool's other row still ends (and fails)
    assert saved["complete"] is False and [r["epochs"] for r in saved["rows"]] == [30, 1]
    table = patience_report.markdown(saved)  # the partial file still makes a table
    assert "| 30 |" in table and "failed: boom" in table and "| 3 |" not in table


def test_a_run_that_cannot_start_is_refused_before_the_teacher_trains() -> None:
    """`tuning.check_runs` (api.plan: models built and run at the recipe's sizes, data read)
    names the benchmark's option; a missing Fashion-MNIST folder used to fail every run."""
    scale = full_data_scales.SCALES["quick"]
    sets = [*scale.student_overrides(("data.root=/no/fashion-mnist",)), "student.model=test_vit"]
    with pytest.raises(DistillError, match="Fashion-MNIST") as info:
        tuning.check_runs(full_data_scales.STUDENT_RECIPE, sets, "--students test_vit")
    assert info.value.where == "--students test_vit: /no/fashion-mnist" and info.value.code == 2


def test_full_data_names_the_scale_it_can_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--quick --scale cpu` ran the quick scale without a word; the default gpu scale on a
    machine without CUDA failed in the teacher's run with a recipe key to change."""
    import full_data
    import torch

    line = _main(full_data, ["--quick", "--scale", "cpu"], monkeypatch, capsys)
    assert "--quick runs its own scale, not --scale cpu" in line
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    scale, variant, _ = full_data_scales.choose("gpu", _fd_args(quick=False))
    with pytest.raises(DistillError, match="runs on CUDA") as info:
        full_data_scales.validate(scale, variant)
    assert info.value.where == "--scale" and "--scale cpu" in (info.value.hint or "")


def test_full_data_drops_another_teachers_rows_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rerun whose teacher came out otherwise (trained again elsewhere) emptied the results
    file, the published one included, with one printed line; it is refused now."""
    import full_data

    published = json.loads((RESULTS / "full_data_cpu.json").read_text())["teacher"]
    same = {**published, "run": "/elsewhere/full-data-teacher"}
    other = {**same, "test_top1": published["test_top1"] - 0.3}
    path = tmp_path / "r.json"
    assert full_data.same_teacher(published, same, path, overwrite=False)
    assert full_data.same_teacher(None, other, path, overwrite=False)  # a new file
    with pytest.raises(SystemExit) as stop:
        full_data.same_teacher(published, other, path, overwrite=False)
    assert stop.value.code == 2 and "rows of another teacher" in capsys.readouterr().err
    assert not full_data.same_teacher(published, other, path, overwrite=True)


def test_an_arch_sweep_rerun_at_another_size_replaces_its_row() -> None:
    """`arch_sweep.py --models resnet18 --size 32 --stages student --update` merged its 32 px
    student stage into the 64 px row (export, teacher...) and labelled it all 32 px: a row has
    one size, so the rerun replaces the whole row (the table holds a family's member once)."""
    from arch_sweep_report import ArchResult, StageResult, merge

    ok = StageResult("pass", 1.0, 0, "")
    old = [ArchResult("resnet18", "resnet", 64, {"student": ok, "export": ok}, 1e-6)]
    again = merge(old, [ArchResult("resnet18", "resnet", 64, {"student": ok}, None)])
    assert [(r.size, sorted(r.stages), r.parity_max_abs) for r in again] == [
        (64, ["export", "student"], 1e-6)  # the same size: the stage run again replaced
    ]
    import arch_sweep

    with pytest.raises(SystemExit) as stop:  # --quick is a set of stages: not both
        arch_sweep.main(["--quick", "--stages", "teacher"])
    assert stop.value.code == 2
    other = merge(old, [ArchResult("resnet18", "resnet", 32, {"student": ok}, None)])
    assert [(r.size, sorted(r.stages), r.parity_max_abs) for r in other] == [
        (32, ["student"], None)
    ]


def test_the_figures_name_the_models_of_their_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rerun's figure said 'teacher (x%)' and 'function matching vs the shortcuts' whatever
    ran; the models (and a variant's tag) now come from the results JSON."""
    import full_data_report
    import patience_report
    from matplotlib.figure import Figure

    drawn: list[Figure] = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *_, **__: drawn.append(fig))
    result = json.loads((RESULTS / "patience.json").read_text())
    result["teacher"]["model"], result["student"]["model"] = "resnet18", "test_vit"
    patience_report.figure(result, tmp_path / "p.png")
    data = json.loads((RESULTS / "full_data_cpu.json").read_text())
    data["teacher"]["model"], data["tag"] = "resnet50", "resnet50-abc123"
    full_data_report.figure(data, tmp_path / "f.png")
    (patience_fig, full_fig) = drawn
    axes = patience_fig.axes[0]
    assert "test_vit distilled from resnet18" in axes.get_title()
    assert any(t.get_text().startswith("teacher resnet18 (") for t in axes.get_legend().texts)
    assert "variant resnet50-abc123" in full_fig.get_suptitle()
    legend = full_fig.axes[0].get_legend().texts
    assert any(t.get_text().startswith("teacher resnet50 (") for t in legend)


def test_the_runs_threads_come_from_the_cores_this_process_may_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under `taskset -c 0-3` on a 64-core host, two runs side by side got 32 threads each."""
    import os

    import full_data

    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1, 2, 3}, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    scale = full_data_scales.SCALES["cpu"]  # two jobs
    bench = full_data.Bench(scale, tmp_path, tmp_path / "r.json", 0.0)
    from distill_cli.export.protocol import TimingPlan
    from distill_cli.host import cpu_count, thread_budget

    assert cpu_count() == 4 and bench.threads == 2
    assert tuning.environment()["usable_cores"] == 4
    assert thread_budget() == 4 == TimingPlan().threads


def test_a_thread_budget_the_caller_set_is_obeyed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two spinning torch threads beside another busy process ran a step 10x slower than one (the
    test suite's workers, a batch scheduler's one core): OMP_NUM_THREADS caps every run and
    timing the benchmarks start, as it caps torch; nonsense in it is ignored, not obeyed."""
    import os

    import full_data
    from gpu.common import tiny

    from distill_cli.export.protocol import TimingPlan
    from distill_cli.host import thread_budget

    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1, 2, 3}, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    bench = full_data.Bench(full_data_scales.SCALES["cpu"], tmp_path, tmp_path / "r.json", 0.0)
    assert thread_budget() == 1 == bench.threads == TimingPlan().threads
    assert "runtime.threads=1" in tiny([])  # gpu_check --smoke, which the suite runs
    assert TimingPlan(threads=3).threads == 3  # an explicit --threads still wins
    for value, budget in (("64", 4), ("0", 4), ("two", 4), ("2,1", 4), ("", 4)):
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        assert thread_budget() == budget, value


def test_the_export_table_has_a_column_per_exporter_that_ran(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """export_archs.py printed a fixed 'dynamo | torchscript' header and read cells[0..1]."""
    import export_archs

    from distill_cli.export import onnx_export as ox

    monkeypatch.setattr(ox, "EXPORTERS", ("dynamo", "torchscript", "other"))
    fails = {"ok": False, "error": "boom"}
    row = {"dynamo": {"ok": True, "max_abs_diff": 0.0}, "torchscript": fails, "other": fails}
    monkeypatch.setattr(export_archs, "sweep", lambda name, size: {"arch": name, **row})
    monkeypatch.setattr(sys, "argv", ["export_archs.py", "--arch", "resnet18"])
    export_archs.main()
    out = capsys.readouterr().out
    assert "| architecture | dynamo | torchscript | other |\n|---|---|---|---|" in out
    assert "| resnet18 | ok | fails: boom | fails: boom |" in out


def test_every_results_json_says_with_what_it_ran() -> None:
    env = tuning.environment()
    assert env["versions"]["torch"] and env["versions"]["timm"] and env["versions"]["onnx"]
    assert env["device"] and env["cpu_cores"] and env["command"].startswith("python ")


def test_gpu_check_keeps_the_parts_of_the_first_command(tmp_path: Path) -> None:
    """The second prepared command in the same OUT used to start the results file afresh,
    dropping parts 1-3; their entries are kept now, each with the command that ran it."""
    path = tmp_path / "gpu_check_cpu-smoke_2026-12-07.json"
    first = {"command": "gpu_check.py OUT --parts 1,2", "device": "cpu-smoke"}
    first["parts"] = {"1": {"ok": True}, "2": {"ok": False}}
    path.write_text(json.dumps(first))
    second = {"command": "gpu_check.py OUT --parts 2,5", "commands": [], "device": "cpu-smoke"}
    merged = gpu_check.earlier(path, {**second, "parts": {}})
    assert merged["commands"] == [first["command"], second["command"]]
    assert merged["parts"]["1"] == {"check_command": first["command"], "ok": True}
    assert list(merged["parts"]) == ["1", "2"]  # part 2 is replaced when this command runs it
    assert gpu_check.earlier(tmp_path / "none.json", second) == second
    path.write_text("[1, 2]")  # not such a file: refused, not replaced
    with pytest.raises(SystemExit):
        gpu_check.earlier(path, second)


def test_full_data_runs_a_subset_of_methods_as_a_variant_named_apart() -> None:
    """`--methods kd fm` (the long CPU schedules cost hours per method): METHODS' order, only
    those validated and tuned, recorded in the JSON and in the tag; every method given is the
    default, and the tags of the variants recorded before the option are unchanged."""
    scale, variant, tag = full_data_scales.choose("quick", _fd_args(methods=["kd", "fm", "kd"]))
    assert scale.methods == (full_data_scales.FM, "classic KD")
    assert tag and variant.record()["methods"] == scale.methods
    every = ["fm", "labels", "kd", "fixed"]
    assert full_data_scales.choose("quick", _fd_args(methods=every))[2] == ""
    older = full_data_scales.choose("quick", _fd_args(lengths=[1, 3]))[1]
    assert "methods" not in older.record()  # what the tag of a variant without it hashes
    with pytest.raises(SystemExit):
        full_data_scales.choose("quick", _fd_args(methods=["dkd"]))


@pytest.mark.parametrize(
    "argv",
    [
        ["--names", "a", "b", "--lengths", "3", "10"],
        ["--names", "a,b", "--lengths", "3,10"],
        ["--names", "a", "--names", "b", "--lengths", "3", "--lengths", "10"],
        ["--names", "a, b,", "--lengths", "3,", "10"],
    ],
)
def test_every_list_option_takes_spaces_commas_and_repeats(argv: list[str]) -> None:
    """arch_sweep took `--models a,b`, full_data `--students a b`, export_latency `--arch a
    --arch b`: a rerun written with another script's habit was refused, or `a,b` was looked up
    as one timm name. `benchargs.Several` reads all three the same, converting each value."""
    p = argparse.ArgumentParser()
    p.add_argument("--names", action=benchargs.Several, default=["default"])
    p.add_argument("--lengths", action=benchargs.Several, item=benchargs.at_least(1))
    args = p.parse_args(argv)
    assert args.names == ["a", "b"]  # the default is replaced, not extended
    assert args.lengths == [3, 10]
    assert p.parse_args([]).names == ["default"]


@pytest.mark.parametrize("value", ["3,0", ",", "x"])
def test_a_bad_value_in_a_list_option_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--lengths", action=benchargs.Several, item=benchargs.at_least(1))
    with pytest.raises(SystemExit) as stop:
        p.parse_args(["--lengths", value])
    assert stop.value.code == 2
    assert "argument --lengths:" in capsys.readouterr().err
