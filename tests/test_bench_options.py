"""The tuned benchmarks rerun with other models and settings (`full_data.py`, `patience.py`).

What a rerun relies on: the options reach the recipes, a teacher is reused only while its whole
recipe holds (another model or any teacher override trains a new one, in its own folder), a
variant never writes over the committed results, an unknown model is one line before anything
trains, and the shared tuning code still reads and names the committed results as before.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import full_data  # noqa: E402
import full_data_report  # noqa: E402
import full_data_scales  # noqa: E402
import patience  # noqa: E402
import patience_report  # noqa: E402
import tuning  # noqa: E402

from distill_cli.errors import DistillError  # noqa: E402
from distill_cli.recipe.document import load_recipe  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def _fd_args(**given: object) -> argparse.Namespace:
    base = dict(teacher=None, students=None, lengths=None, seeds=None, jobs=None, quick=False)
    base.update(overrides=[], teacher_overrides=[], out=None, json=None, figure=None, methods=None)
    return argparse.Namespace(**{**base, **given})


def _patience_args(**given: object) -> argparse.Namespace:
    base = dict(quick=False, lengths=[10, 30], subset=1000, holdout=5000, compare_at=600)
    base.update(tune_at=100, teacher=None, student=None, overrides=[], teacher_overrides=[])
    return argparse.Namespace(**{**base, **given})


# --- options -> scale and recipes ----------------------------------------------------------------


def test_full_data_options_replace_the_scales_models_and_reach_the_recipes() -> None:
    a = _fd_args(
        students=["resnet18", "test_vit"],
        teacher="resnet50",
        overrides=["schedule.batch_size=64"],
        teacher_overrides=["schedule.epochs=8"],
        lengths=[30, 5],
        seeds=[2],
    )
    scale, variant, tag = full_data_scales.choose("cpu", a)
    cpu = full_data_scales.SCALES["cpu"]
    assert (scale.teacher, scale.students) == ("resnet50", ("resnet18", "test_vit"))
    assert scale.lengths == (5, 30) and scale.seeds == (0, 2)  # seed 0 always runs
    assert scale.grid == cpu.grid and scale.jobs == cpu.jobs  # the rest is the scale's
    teacher = load_recipe(full_data.TEACHER_RECIPE, scale.teacher_overrides(variant.teacher_sets))
    assert teacher.student.model == "resnet50" and teacher.schedule.epochs == 8
    assert teacher.data.train_limit == 10_000  # the scale's data still applies
    for method in full_data.METHODS.values():  # --set before each method's own overrides
        items = [*scale.student_overrides(variant.sets), *method, "student.model=resnet18"]
        student = load_recipe(full_data.STUDENT_RECIPE, items)
        assert student.student.model == "resnet18" and student.schedule.batch_size == 64
        assert student.teacher is None or student.teachers[0].model == "resnet50"
    assert tag and tag.startswith("resnet50-resnet18-test-vit-")
    assert variant.record()["sets"] == ("schedule.batch_size=64",)


def test_the_scales_own_settings_are_the_default_and_keep_their_names() -> None:
    for name, scale in full_data_scales.SCALES.items():
        same = _fd_args(teacher=scale.teacher, students=list(scale.students))
        assert full_data_scales.choose(name, same)[2] == ""
        assert full_data_scales.choose(name, _fd_args(jobs=7))[2] == ""  # jobs: not a result
    cpu = load_recipe(full_data.TEACHER_RECIPE, full_data_scales.SCALES["cpu"].teacher_overrides())
    assert cpu.student.model == "resnet10t"  # what the committed CPU results were made with


@pytest.mark.parametrize(
    "given",
    [
        {"students": ["mobilenetv3_small_100"]},
        {"teacher": "resnet18"},
        {"overrides": ["schedule.batch_size=64"]},
        {"teacher_overrides": ["data.val_limit=100"]},
        {"lengths": [10, 30]},
        {"seeds": [0, 1]},
    ],
)
def test_a_variant_never_names_the_committed_results(given: dict) -> None:
    _, _, tag = full_data_scales.choose("cpu", _fd_args(**given))
    assert tag
    out, results, fig = full_data.outputs("cpu", tag, _fd_args(**given))
    assert results.parent == RESULTS and results.name == f"full_data_cpu_{tag}.json"
    assert results != RESULTS / "full_data_cpu.json" and fig == results.with_suffix(".png")
    assert out == ROOT / "runs" / "full_data"
    row = full_data.make_row("mobilenetv3_small_050", full_data.FM, 10, (1e-2, 1e-4), 0, "tune")
    tagged = full_data.make_row(
        "mobilenetv3_small_050", full_data.FM, 10, (1e-2, 1e-4), 0, "tune", tag
    )
    assert tagged.run == f"{row.run}-{tag}"
    default = full_data.outputs("cpu", "", _fd_args())
    assert default[1:] == (RESULTS / "full_data_cpu.json", ROOT / "docs/img/full_data_cpu.png")


def test_patience_options_reach_the_recipes_and_name_a_variant_apart() -> None:
    default = patience.choose(_patience_args())
    assert default.tag == "" and default.teacher_name == "patience-teacher"
    plan = patience.choose(
        _patience_args(student="resnet18", teacher_overrides=["schedule.epochs=2"])
    )
    assert plan.tag.startswith("resnet10t-resnet18-") and plan.variant.students == ("resnet18",)
    assert plan.teacher_name.startswith("patience-teacher-resnet10t-")
    run = load_recipe(patience.FM_RECIPE, plan.common)
    assert run.student.model == "resnet18" and run.teachers[0].model == "resnet10t"
    assert load_recipe(patience.TEACHER_RECIPE, plan.teacher_sets).schedule.epochs == 2
    rows = patience.ladder_rows([10], 600, {}, plan.tag)
    assert all(r.run.endswith(plan.tag) for r in rows)
    other = patience.choose(_patience_args(student="resnet18"))
    assert other.teacher_name == "patience-teacher"  # same teacher: shared, not retrained
    assert other.tag != plan.tag


# --- the teacher's reuse key ---------------------------------------------------------------------


def _fake_teacher(out: Path, recipe: Path, name: str, overrides: list[str]) -> None:
    """A finished teacher run folder as `distill train` leaves it (its resolved recipe)."""
    items = [*overrides, f"output.dir={out}", f"output.name={name}", "runtime.threads=2"]
    run = out / name
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text(load_recipe(recipe, items).to_yaml())
    (run / "summary.json").write_text("{}")


@pytest.mark.parametrize(
    ("overrides", "reused"),
    [
        ([], True),  # the same recipe (threads differ: where it ran, not what it learned)
        (["model.model=resnet18"], False),  # another teacher
        (["schedule.epochs=2"], False),
        (["data.val_limit=100"], False),  # changes the teacher's recorded test top-1
        (["augment.random_erasing=0.25"], False),
        (["runtime.precision=fp32"], False),
    ],
)
def test_a_teacher_is_reused_only_while_its_whole_recipe_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overrides: list[str], reused: bool
) -> None:
    base = ["data.holdout=5000", "model.model=resnet10t"]
    _fake_teacher(tmp_path, patience.TEACHER_RECIPE, "t", base)
    launched: list[list[str]] = []
    monkeypatch.setattr(tuning, "launch", lambda args, *_: launched.append(list(args)) or 0)
    run = tuning.teacher_run(tmp_path, patience.TEACHER_RECIPE, "t", [*base, *overrides], 1)
    assert run == tmp_path / "t"
    assert (not launched) == reused
    if launched:  # trained with every override, into the named folder
        assert all(item in launched[0] for item in overrides)
        assert "output.name=t" in launched[0]


def test_another_teacher_gets_its_own_folder_and_the_default_keeps_its_own() -> None:
    cpu = full_data_scales.SCALES["cpu"]
    default = cpu.variant()
    other_model = tuning.Variant("resnet18", cpu.students)
    other_sets = tuning.Variant(cpu.teacher, cpu.students, teacher_sets=("schedule.epochs=3",))
    students_only = tuning.Variant(cpu.teacher, ("resnet18",))
    assert default.teacher_tag(default) == "" and students_only.teacher_tag(default) == ""
    tags = {other_model.teacher_tag(default), other_sets.teacher_tag(default)}
    assert len(tags) == 2 and "" not in tags


# --- unknown models: one line, close matches, exit 2 ----------------------------------------------


def test_unknown_models_are_refused_before_anything_trains(tmp_path: Path) -> None:
    with pytest.raises(DistillError) as info:
        tuning.check_models(["resnet18", "mobilenetv3_smal_050"], "--students")
    assert info.value.where == "--students" and "mobilenetv3_small_050" in str(info.value)
    scale, variant, _ = full_data_scales.choose("quick", _fd_args(teacher="resnet10"))
    with pytest.raises(DistillError, match=r"unknown timm model 'resnet10'.*--teacher"):
        full_data_scales.validate(scale, variant)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "patience.py"), "--out", str(tmp_path)]
    done = subprocess.run(
        [*cmd, "--student", "test_resnt"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: unknown timm model 'test_resnt' (--student) - close matches:")
    assert "test_resnet" in line and not list(tmp_path.iterdir())  # nothing ran


def test_a_bad_override_is_refused_before_anything_trains(tmp_path: Path) -> None:
    scale, variant, _ = full_data_scales.choose("quick", _fd_args(overrides=["optim.lrr=1"]))
    with pytest.raises(DistillError, match=r"optim\.lrr"):
        full_data_scales.validate(scale, variant)
    plan = patience.choose(_patience_args(teacher_overrides=["schedule.epohcs=1"]))
    with pytest.raises(DistillError, match=r"schedule\.epohcs"):
        patience.validate(plan)


# --- the shared tuning code reads and names the committed results as before -------------------


def test_committed_results_still_make_their_committed_tables() -> None:
    data = json.loads((RESULTS / "full_data_cpu.json").read_text())
    assert full_data_report.markdown(data) + "\n" == (RESULTS / "full_data_cpu.md").read_text()
    result = json.loads((RESULTS / "patience.json").read_text())
    table, tune = patience_report.markdown(result), patience_report.tuning_markdown(result)
    assert table + "\n" + f"\n{tune}\n" == (RESULTS / "patience.md").read_text()


def test_run_names_and_picks_match_the_committed_results() -> None:
    """A rerun of the defaults finds the committed runs and makes the committed picks."""
    data = json.loads((RESULTS / "full_data_cpu.json").read_text())
    for r in data["rows"]:
        cfg = (r["lr"], r["wd"])
        row = full_data.make_row(r["student"], r["method"], r["epochs"], cfg, r["seed"], r["role"])
        assert row.run == r["run"]
    for student, picked in data["picked"].items():
        for method, cfg in picked.items():
            tried = [
                full_data.Row(**{**r, "curve": []})
                for r in data["rows"]
                if (r["student"], r["method"], r["role"]) == (student, method, "tune")
            ]
            assert tuning.best_on_holdout(tried) == tuple(cfg)
    result = json.loads((RESULTS / "patience.json").read_text())
    grid = tuple(tuple(cfg) for cfg in result["grid"])
    tuned = [patience.RunRow(**{**r, "curve": []}) for r in result["tune"]]
    assert {r.run for r in patience.tune_rows(result["tune_at"], grid)} == {r.run for r in tuned}
    assert patience.pick(tuned) == {k: tuple(v) for k, v in result["picks"].items()}
    picks = {k: tuple(v) for k, v in result["picks"].items()}
    names = {r.run for r in patience.ladder_rows(result["lengths"], result["compare_at"], picks)}
    # ladder rows the tuning already ran keep the tuning run's name
    assert {r["run"] for r in result["rows"]} <= names | {r.run for r in tuned}


def test_split_done_reuses_finished_runs_by_key() -> None:
    rows = [("fm", 1), ("fm", 3), ("kd", 3)]
    todo, reused = tuning.split_done(rows, [("kd", 3), ("fm", 1), ("fm", 9)], key=lambda r: r)
    assert todo == [("fm", 3)] and reused == [("fm", 1), ("kd", 3)]


def test_a_failed_teacher_is_one_line_and_a_part_needs_its_student(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distill_cli.errors import RunFailed

    def fail(args: list[str], log: Path, *_: object) -> int:
        log.write_text("...\nerror: the loss diverged\n")
        return 1

    monkeypatch.setattr(tuning, "launch", fail)
    with pytest.raises(RunFailed, match="the loss diverged") as info:
        tuning.teacher_run(tmp_path, patience.TEACHER_RECIPE, "t", [], 1)
    assert info.value.code == 1
    scale, _, _ = full_data_scales.choose("cpu", _fd_args(students=["resnet18"]))
    assert full_data.part_students(scale, "2") == ("resnet18",)
    assert full_data.part_students(scale, "all") == ("resnet18",)
    with pytest.raises(DistillError, match="--students"):
        full_data.part_students(scale, "3")
