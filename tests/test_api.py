"""The Python API: typed results, keyword overrides, and the shipped example end to end."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import pytest
import yaml

from distill_cli import api
from distill_cli.errors import DistillError, WrongType
from distill_cli.recipe.document import load_recipe
from distill_cli.rundir.summary import ModelResult, RunSummary
from tests.conftest import teacher_body, write_recipe

ROOT = Path(__file__).resolve().parents[1]


def test_keywords_override_recipe_fields_and_the_result_is_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = write_recipe(tmp_path, "sup", teacher_body(tmp_path / "runs", epochs=1))
    monkeypatch.chdir(tmp_path)  # output.dir as people write it: relative to where they are
    result = api.train(
        recipe, ["schedule.batch_size=16"], optim__lr=1e-3, name="renamed", output__dir="runs"
    )
    monkeypatch.chdir("/")  # a notebook's `%cd` after the run: the result still finds its folder
    assert isinstance(result, RunSummary) and isinstance(result.student, ModelResult)
    assert result.name == "renamed" and result.run_dir == tmp_path / "runs" / "renamed"
    saved = yaml.safe_load((result.run_dir / "recipe.yaml").read_text())
    assert saved["optim"]["lr"] == 1e-3 and saved["schedule"]["batch_size"] == 16
    assert result.steps == 128 // 16 and result.teacher is None
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert result.to_dict() == summary and result.student.top1 == summary["student"]["top1"]
    assert RunSummary.load(result.run_dir) == result  # the folder is the source of truth


def test_overrides_apply_to_a_recipe_object_without_changing_it(tmp_path: Path) -> None:
    recipe = load_recipe(write_recipe(tmp_path, "sup", teacher_body(tmp_path / "runs")))
    plan = api.plan(recipe, schedule__epochs=5)
    assert plan.epochs == 5 and recipe.schedule.epochs == 3
    with pytest.raises(DistillError, match=r"optim\.lrr: unknown key; did you mean 'lr'"):
        api.plan(recipe, optim__lrr=1.0)


def test_the_python_api_example_runs_end_to_end(tmp_path: Path) -> None:
    example = runpy.run_path(str(ROOT / "examples" / "python_api.py"))
    example["main"](tmp_path)
    for run in ("teacher", "fm", "fm-independent"):
        assert (tmp_path / run / "summary.json").is_file()
    assert (tmp_path / "compare.png").is_file()
    assert (tmp_path / "fm" / "export" / "model.onnx").is_file()
    report = (tmp_path / "fm" / "report.md").read_text()
    assert "report_latency.png" in report and "## Export" in report


def test_keywords_switch_the_method_like_set_does(tmp_path: Path) -> None:
    from tests.conftest import fm_body

    path = write_recipe(tmp_path, "fm", fm_body(tmp_path / "runs", None))
    from_file = api.plan(path, method__name="kd", method__alpha=0.3)
    from_object = api.plan(load_recipe(path), method__name="kd", method__alpha=0.3)
    assert from_file.method == from_object.method == "kd"


def test_a_run_from_before_a_new_recipe_key_can_still_be_resumed(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, "sup", teacher_body(tmp_path / "runs", epochs=1))
    first = api.train(recipe)
    saved = first.run_dir / "recipe.yaml"
    old = yaml.safe_load(saved.read_text())
    del old["runtime"]["log_to"]  # as written by the version before `log_to` existed
    saved.write_text(yaml.safe_dump(old, sort_keys=False))
    again = api.train(recipe, resume=True)  # same recipe: only the defaults grew
    assert again.steps == first.steps
    with pytest.raises(DistillError, match="recipe differs"):
        api.train(recipe, resume=True, optim__lr=0.5)


def test_a_tracker_that_cannot_start_leaves_no_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "mlflow", None)  # not installed
    body = teacher_body(tmp_path / "runs", epochs=1)
    body["runtime"] = {"log_to": ["tensorboard", "mlflow"]}
    with pytest.raises(DistillError, match="mlflow package is not installed"):
        api.train(write_recipe(tmp_path, "sup", body))
    assert not (tmp_path / "runs" / "sup").exists()


@pytest.mark.parametrize(
    ("keywords", "flag"),
    [
        ({"runs": 0}, "--runs"),
        ({"batch": 0}, "--batch"),
        ({"threads": -2}, "--threads"),
        ({"max_time_s": float("inf")}, "--max-time"),
        ({"images": -1}, "--images"),
        ({"input_size": 0}, "--input-size"),
        ({"tolerance": float("nan")}, "--tolerance"),
        ({"min_top1": 150.0}, "--min-top1"),
        ({"max_top1_drop": -1.0}, "--max-top1-drop"),
        ({"opset": 13}, "--opset"),
    ],
)
def test_api_export_checks_numbers_as_the_cli_flags_do(keywords: dict, flag: str) -> None:
    """A Python caller bypasses click's range checks: the options object makes the same ones,
    as a one-line DistillError naming the flag, before any model is built."""
    with pytest.raises(DistillError) as info:
        api.export("test_resnet", **keywords)
    assert flag in str(info.value) and "\n" not in str(info.value)


def test_api_bench_latency_checks_the_protocol_and_opset() -> None:
    with pytest.raises(DistillError, match="--runs"):
        api.bench_latency("test_resnet", runs=0)
    with pytest.raises(DistillError, match="opset"):
        api.bench_latency("test_resnet", opset=9)


def test_api_export_takes_the_options_object_the_cli_builds(tmp_path: Path) -> None:
    from distill_cli.export import ExportOptions, TimingPlan

    options = ExportOptions(
        source="test_resnet",
        out=tmp_path,
        images=8,
        simplify=False,
        latency=False,
        timing=TimingPlan(threads=1),
    )
    result = api.export(options)
    assert result.parity_passed and result.report_path == tmp_path / "report.json"
    with pytest.raises(TypeError):
        api.export(options, runs=5)


def test_the_shipped_recipes_through_the_api() -> None:
    names = [entry.name for entry in api.recipes()]
    assert "quickstart/distill" in names and names == sorted(names)
    entry = api.shipped_recipe("methods/kd.yaml")
    assert entry.name == "methods/kd" and "KD" in entry.summary
    assert entry.text() == entry.path.read_text()
    with pytest.raises(DistillError, match="did you mean 'methods/kd'"):
        api.shipped_recipe("methods/kdd")


@pytest.mark.parametrize(
    ("call", "line"),
    [
        (lambda r: api.plan(123), "recipe must be a Recipe, a dict or a recipe file's path"),
        (lambda r: api.plan(r, ["optim.lr=1", 5]), "overrides must be 'KEY=VALUE' strings"),
        (lambda r: api.plan(r, throughput="fast"), "throughput must be a number, not str"),
        (lambda r: api.plan(r, overrides=5), "overrides must be a list of 'KEY=VALUE' strings"),
        (lambda r: api.export(7), "source must be a run folder, checkpoint or file path"),
        (lambda r: api.export("test_resnet", opset="17"), "'17' is not a number (str) (--opset)"),
        (lambda r: api.export("test_resnet", runs="9"), "'9' is not a number (str) (--runs)"),
        (lambda r: api.report(5), "run_dir must be a path (str or pathlib.Path), not int"),
        (lambda r: api.compare("runs/a"), "run_dirs must be a list of run folders, not one path"),
        (lambda r: api.models(5), "pattern must be a str, not int"),
        (lambda r: api.bench_latency(None), "source must be a run folder"),
        (lambda r: api.run(r, resume="no"), "resume must be True or False, not str"),
        (lambda r: api.train(r, reporter="rich"), "reporter must have the methods start"),
    ],
    ids=[
        "recipe-int",
        "override-int",
        "throughput-str",
        "overrides-int",
        "export-int",
        "opset-str",
        "runs-str",
        "report-int",
        "compare-one-path",
        "models-int",
        "bench-none",
        "resume-str",
        "reporter-str",
    ],
)
def test_arguments_of_the_wrong_type_are_one_line_errors(
    tmp_path: Path, call: Any, line: str
) -> None:
    """They were TypeErrors from deep inside (pathlib, a comparison), a number taken for a timm
    model's name, or a path's characters taken for run folders (`no such run folder (r)`)."""
    recipe = write_recipe(tmp_path, "sup", teacher_body(tmp_path / "runs"))
    with pytest.raises(WrongType) as caught:
        call(recipe)
    error = caught.value
    assert isinstance(error, TypeError) and error.code == 2 and "\n" not in str(error)
    assert str(error).startswith(line) or line in str(error)


def test_one_override_string_is_one_override_not_its_characters(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, "sup", teacher_body(tmp_path / "runs"))
    assert api.plan(recipe, "schedule.epochs=2").epochs == 2  # was "override 'o' is not..."
    assert api.plan(load_recipe(recipe), ("schedule.epochs=4",)).epochs == 4


def test_two_runs_in_one_process_are_the_same_run_and_leave_its_threads(tmp_path: Path) -> None:
    """`runtime.threads` stayed set in the caller's process after `api.run` (and after a mere
    `api.plan`): the next run without it, or the caller's own torch work, ran on 1 thread."""
    import torch

    body = teacher_body(tmp_path / "runs", epochs=1)
    body["data"]["synthetic"]["train_size"] = 64
    recipe = write_recipe(tmp_path, "sup", body)
    before = torch.get_num_threads()
    api.plan(recipe, runtime__threads=1)
    assert torch.get_num_threads() == before
    first = api.run(recipe, runtime__threads=1)
    assert torch.get_num_threads() == before
    again = api.run(recipe, overwrite=True, runtime__threads=1)
    assert torch.get_num_threads() == before
    assert first.student.top1 == again.student.top1 and first.steps == again.steps == 2
    records = (first.run_dir / "metrics.jsonl").read_text().splitlines()
    losses = [json.loads(r)["loss"] for r in records if '"kind": "train"' in r]
    third = api.run(recipe, overwrite=True, runtime__threads=1)
    records = (third.run_dir / "metrics.jsonl").read_text().splitlines()
    assert losses and losses == [json.loads(r)["loss"] for r in records if '"kind": "train"' in r]


def test_bench_train_applies_overrides_to_a_recipe_object(tmp_path: Path) -> None:
    """A Recipe object's overrides were dropped without a word (the file path's were not),
    and its runtime.threads stayed set in the caller's process."""
    import torch

    recipe = load_recipe(write_recipe(tmp_path, "sup", teacher_body(tmp_path / "runs")))
    before = torch.get_num_threads()
    overrides = ["schedule.batch_size=16", "runtime.threads=1"]
    result = api.bench_train(recipe, overrides, steps=1, warmup=0)
    assert result.batch_size == 16 and torch.get_num_threads() == before


WRONG_ARGUMENTS: dict[str, Any] = {
    "export-out-int": lambda r: api.export("test_resnet", out=5),
    "export-unknown-keyword": lambda r: api.export("test_resnet", runz=5),
    "export-check-str": lambda r: api.export("test_resnet", check="no"),
    "export-log-int": lambda r: api.export("test_resnet", log=5),
    "export-object-and-keywords": lambda r: api.export(_options(r), runs=5),
    "bench-checkpoint-int": lambda r: api.bench_latency("test_resnet", checkpoint=5),
    "bench-input-float": lambda r: api.bench_latency("test_resnet", input_size=32.5),
    "bench-classes-str": lambda r: api.bench_latency("test_resnet", num_classes="3"),
    "bench-unknown-keyword": lambda r: api.bench_latency("test_resnet", runz=3),
    "bench-train-bare-int": lambda r: api.bench_train(r, bare=5),
    "bench-train-steps-str": lambda r: api.bench_train(r, steps="3"),
    "compare-none": lambda r: api.compare(None),
    "models-teacher-int": lambda r: api.models("test_*", teacher=5),
    "models-unknown-keyword": lambda r: api.models("test_*", limt=5),
    "models-limit-str": lambda r: api.models("test_*", limit="5"),
    "students-no-budget": lambda r: api.students("resnet18"),
    "students-teacher-none": lambda r: api.students(None, 5.0),
    "students-budget-str": lambda r: api.students("resnet18", "5"),
    "students-unknown-keyword": lambda r: api.students("resnet18", 5.0, runz=3),
    "students-write-recipe-int": lambda r: api.students("resnet18", 5.0, write_recipe=5),
    "shipped-recipe-none": lambda r: api.shipped_recipe(None),
}


def _options(recipe: Path) -> Any:
    from distill_cli.export import ExportOptions

    return ExportOptions(source="test_resnet", out=recipe.parent / "export")


@pytest.mark.parametrize("name", list(WRONG_ARGUMENTS))
def test_every_api_function_refuses_wrong_arguments_in_one_line(tmp_path: Path, name: str) -> None:
    """Each was a bare TypeError, AttributeError or IndexError from deep inside (pathlib, a
    comparison, `str.split`, an empty median), or a plain TypeError of the API's own."""
    recipe = write_recipe(tmp_path, "sup", teacher_body(tmp_path / "runs"))
    with pytest.raises(WrongType) as caught:
        WRONG_ARGUMENTS[name](recipe)
    assert caught.value.code == 2 and "\n" not in str(caught.value)


def test_out_of_range_counts_are_one_line_errors(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, "sup", teacher_body(tmp_path / "runs"))
    with pytest.raises(DistillError, match=r"--steps"):  # was StatisticsError: no median
        api.bench_train(recipe, steps=0)
    with pytest.raises(DistillError, match=r"--rounds"):  # was IndexError
        api.bench_train(recipe, steps=1, rounds=0)


def test_a_recipe_can_be_a_dict_and_its_mistakes_are_the_files(tmp_path: Path) -> None:
    """A dict was refused with advice (`Recipe.model_validate(your_dict)`) that, followed,
    raised pydantic's multi-line ValidationError for any mistake in it."""
    body = {"name": "d", **teacher_body(tmp_path / "runs")}
    assert api.plan(body, schedule__epochs=2).epochs == 2
    assert body["schedule"]["epochs"] == 3  # the caller's dict is left alone
    with pytest.raises(DistillError, match=r"optim\.lrr: unknown key; did you mean 'lr'") as bad:
        api.plan({**body, "optim": {"lrr": 1.0}})
    assert "\n" not in str(bad.value)


def test_a_recipe_object_changed_after_validation_is_checked_again(tmp_path: Path) -> None:
    """In-place edits and `model_copy(update=...)` skip pydantic's assignment check; the bad
    value reached the run (a tracker named 'wandb', a negative learning rate)."""
    recipe = load_recipe(write_recipe(tmp_path, "sup", teacher_body(tmp_path / "runs")))
    edited = recipe.model_copy(deep=True)
    edited.runtime.log_to.append("wandb")  # type: ignore[arg-type]
    with pytest.raises(DistillError, match=r"runtime\.log_to\.0"):
        api.plan(edited)
    copied = recipe.model_copy(update={"optim": recipe.optim.model_copy(update={"lr": -1.0})})
    with pytest.raises(DistillError, match=r"optim\.lr: Input should be greater than 0"):
        api.plan(copied)
    assert api.plan(recipe).epochs == 3
