"""Recipe loading: validation, errors that name the bad key, --set overrides, saved recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from distill_cli.errors import DistillError
from distill_cli.recipe.document import Recipe, load_recipe
from distill_cli.recipe.overrides import apply_overrides
from tests.conftest import fm_body, write_recipe


def _load_error(tmp_path: Path, body: dict, overrides: list[str] | None = None) -> str:
    path = write_recipe(tmp_path, "r", body)
    with pytest.raises(DistillError) as info:
        load_recipe(path, overrides)
    return str(info.value)


def test_valid_recipe_loads_with_defaults(tmp_path: Path) -> None:
    recipe = load_recipe(write_recipe(tmp_path, "r", fm_body(tmp_path, None)))
    assert recipe.method.name == "function_matching"
    assert recipe.method.temperature == 2.0
    assert recipe.method.mixup is True
    assert recipe.optim.clip_grad_norm == 1.0
    assert recipe.run_dir == tmp_path / "r"


def test_unknown_key_is_named_with_its_path_and_a_suggestion(tmp_path: Path) -> None:
    body = fm_body(tmp_path, None)
    body["optim"]["lrr"] = 0.1
    msg = _load_error(tmp_path, body)
    assert "optim.lrr" in msg
    assert "unknown key" in msg
    assert "'lr'" in msg


def test_unknown_key_inside_a_method_section(tmp_path: Path) -> None:
    body = fm_body(tmp_path, None)
    body["method"]["temprature"] = 3
    msg = _load_error(tmp_path, body)
    assert "method.temprature" in msg
    assert "'temperature'" in msg


def test_wrong_type_and_range_name_the_key(tmp_path: Path) -> None:
    body = fm_body(tmp_path, None)
    body["schedule"]["batch_size"] = "big"
    assert "schedule.batch_size" in _load_error(tmp_path, body)
    body = fm_body(tmp_path, None)
    body["optim"]["lr"] = -1
    assert "optim.lr" in _load_error(tmp_path, body)


def test_unknown_method_and_missing_teacher(tmp_path: Path) -> None:
    body = fm_body(tmp_path, None)
    body["method"] = {"name": "function_matchin"}
    assert "method" in _load_error(tmp_path, body)
    body = fm_body(tmp_path, None)
    del body["teacher"]
    assert "needs a teacher" in _load_error(tmp_path, body)


def test_missing_required_section(tmp_path: Path) -> None:
    body = fm_body(tmp_path, None)
    del body["schedule"]
    msg = _load_error(tmp_path, body)
    assert "schedule" in msg and "missing" in msg


def test_yaml_syntax_error_reports_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nstudent: {model: resnet18\nmethod: [\n")
    with pytest.raises(DistillError) as info:
        load_recipe(path)
    assert "YAML" in str(info.value)
    assert "bad.yaml:" in str(info.value)


def test_missing_recipe_file(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_set_overrides_keep_types_and_create_sections(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, "r", fm_body(tmp_path, None))
    recipe = load_recipe(
        path,
        ["optim.lr=3e-3", "schedule.epochs=7", "augment.crop_scale=[0.5, 1.0]", "runtime.seed=3"],
    )
    assert recipe.optim.lr == pytest.approx(3e-3)
    assert recipe.schedule.epochs == 7
    assert recipe.augment.crop_scale == (0.5, 1.0)
    assert recipe.runtime.seed == 3
    msg = _load_error(tmp_path, fm_body(tmp_path, None), ["optim.nope=1"])
    assert "optim.nope" in msg


def test_bad_override_syntax() -> None:
    with pytest.raises(DistillError, match="KEY=VALUE"):
        apply_overrides({}, ["optim.lr"])


def test_resolved_recipe_round_trips(tmp_path: Path) -> None:
    recipe = load_recipe(write_recipe(tmp_path, "r", fm_body(tmp_path, None)), ["optim.lr=0.5"])
    again = Recipe.model_validate(yaml.safe_load(recipe.to_yaml()))
    assert again == recipe


def test_model_is_an_alias_of_student(tmp_path: Path) -> None:
    body = fm_body(tmp_path, None)
    body["model"] = body.pop("student")
    assert load_recipe(write_recipe(tmp_path, "r", body)).student.model == "test_efficientnet"


def test_importing_the_recipe_does_not_import_torch() -> None:
    """Reading recipes (the CLI's help, schemas, reports of saved runs) stays light: the method
    union is resolved at the first validation, not at import."""
    import subprocess
    import sys

    code = "import sys, distill_cli.recipe.document; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_home_paths_mean_the_home_folder_in_the_run_not_only_in_the_saved_recipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`~/data` in a recipe is the user's home, as in a shell, for every path the run opens."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    body = fm_body(Path("~/runs"), Path("~/teacher.pth"))
    body["data"] = {"source": "image_folder", "root": "~/photos", "distill_dir": "~/unlabeled"}
    body["teacher"]["class_names"] = "~/classes.txt"
    recipe = load_recipe(write_recipe(tmp_path, "r", body))
    home = tmp_path / "home"
    assert recipe.teachers[0].checkpoint == home / "teacher.pth"
    assert recipe.teachers[0].class_names == home / "classes.txt"
    assert (recipe.data.root, recipe.data.distill_dir) == (home / "photos", home / "unlabeled")
    assert recipe.run_dir == home / "runs" / "r"


def test_environment_variables_in_paths_are_expanded_or_named_when_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`$SCRATCH/data` (cluster recipes, `--set` too) is the variable's folder, as in a shell;
    it was looked for as a folder literally named `$SCRATCH`. An unset variable is an error
    naming it and the key, not a later "not found"."""
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    body = fm_body(Path("$SCRATCH/runs"), Path("${SCRATCH}/teacher.pth"))
    body["data"] = {"source": "image_folder", "root": "$SCRATCH/photos"}
    path = write_recipe(tmp_path, "r", body)
    recipe = load_recipe(path)
    scratch = tmp_path / "scratch"
    assert recipe.teachers[0].checkpoint == scratch / "teacher.pth"
    assert recipe.data.root == scratch / "photos" and recipe.run_dir == scratch / "runs" / "r"
    assert str(scratch / "photos") in recipe.to_yaml()  # the saved recipe holds the folder
    assert load_recipe(path, ["data.root=$SCRATCH/other"]).data.root == scratch / "other"
    with pytest.raises(DistillError, match=r"data\.root: .*NOT_SET_HERE is not set"):
        load_recipe(path, ["data.root=$NOT_SET_HERE/photos"])


def test_devices_written_as_torch_names_them_say_what_to_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cuda:3` and `mps` were "Input should be 'auto', 'cpu' or 'cuda'": the user learnt the
    values but not how to pick GPU 3. An empty CUDA_VISIBLE_DEVICES (a scheduler giving no
    GPU) is named where CUDA is asked for and missing."""
    import torch

    from distill_cli.train.build import resolve_device

    path = write_recipe(tmp_path, "r", fm_body(tmp_path, None))
    with pytest.raises(DistillError, match=r"runtime\.device: .*CUDA_VISIBLE_DEVICES=3") as info:
        load_recipe(path, ["runtime.device=cuda:3"])
    assert len(str(info.value).splitlines()) == 1
    with pytest.raises(DistillError, match=r"runtime\.device: .*'mps' is not supported"):
        load_recipe(path, ["runtime.device=mps"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(DistillError, match="CUDA_VISIBLE_DEVICES='' hides the GPUs"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_a_path_written_from_the_recipes_folder_is_refused_saying_the_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`data.root: photos` in `configs/r.yaml`, run from the project: relative paths are the
    cwd's, so the run said "data folder not found" for a folder right beside the recipe. The
    error says the rule and the path to write; from the recipe's folder it loads."""
    configs = tmp_path / "configs"
    (configs / "photos").mkdir(parents=True)
    (configs / "teacher.pth").write_bytes(b"")
    body = fm_body(Path("runs"), Path("teacher.pth"))
    body["data"] = {"source": "image_folder", "root": "photos"}
    write_recipe(configs, "r", body)
    monkeypatch.chdir(tmp_path)
    # every such path at once (fixing one only met the next)
    with pytest.raises(
        DistillError, match=r"teacher\.checkpoint: teacher\.pth; data\.root: "
    ) as info:
        load_recipe(Path("configs/r.yaml"))
    assert "are not found from the directory distill runs in" in str(info.value)
    assert "write teacher.checkpoint: configs/teacher.pth, data.root: configs/photos (" in str(
        info.value
    )
    with pytest.raises(DistillError, match=r"data\.root: .*not to the recipe's folder") as info:
        load_recipe(Path("configs/r.yaml"), [f"teacher.checkpoint={configs / 'teacher.pth'}"])
    assert f"write data.root: {Path('configs') / 'photos'} (found beside the recipe)" in str(
        info.value
    )
    monkeypatch.chdir(configs)
    assert load_recipe(Path("r.yaml")).data.root == Path("photos")


def test_a_key_written_twice_is_refused_not_silently_replaced(tmp_path: Path) -> None:
    """Plain YAML keeps the last of two equal keys: a pasted second `schedule:` replaced the
    first one's settings without a word."""
    path = write_recipe(tmp_path, "r", fm_body(tmp_path, None))
    text = path.read_text()
    path.write_text(text + "schedule:\n  epochs: 9\n")
    with pytest.raises(DistillError, match=r"duplicate key 'schedule'.*r\.yaml:\d+"):
        load_recipe(path)
    path.write_text(text.replace("epochs: 2", "epochs: 2\n  epochs: 3"))
    with pytest.raises(DistillError, match="duplicate key 'epochs'"):
        load_recipe(path)
    path.write_text(text)
    with pytest.raises(DistillError, match="duplicate key 'epochs'"):
        load_recipe(path, ["schedule={epochs: 1, epochs: 2}"])
    assert load_recipe(path, ["schedule={epochs: 4, batch_size: 8}"]).schedule.epochs == 4


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("schedule", "epochs", True),  # lax pydantic read it as 1 epoch
        ("optim", "lr", True),  # ... and as 1.0
        ("data", "holdout", False),
        ("method", "temperature", True),  # a method's own section (its own base class)
        ("student", "mean", [0.5, True, 0.5]),  # inside a list
        ("student", "model", True),  # a text key
    ],
)
def test_true_or_false_where_a_key_takes_none_names_the_key(
    tmp_path: Path, section: str, key: str, value: object
) -> None:
    body = fm_body(tmp_path, None)
    body[section][key] = value
    msg = _load_error(tmp_path, body)
    assert f"{section}.{key}: true/false is not a value this key takes" in msg
    # the same through --set, as a user types it (YAML 1.1's yes/on for true)
    word = "[0.5, yes, 0.5]" if isinstance(value, list) else "on"
    if key == "model":  # a text key reads the word as the text typed (YAML 1.2)
        recipe = load_recipe(
            write_recipe(tmp_path, "r", fm_body(tmp_path, None)), [f"{section}.{key}={word}"]
        )
        assert recipe.student.model == "on"
        return
    msg = _load_error(tmp_path, fm_body(tmp_path, None), [f"{section}.{key}={word}"])
    assert f"{section}.{key}: true/false" in msg


def test_numbers_as_yaml_and_set_give_them_and_true_false_keys_still_load(tmp_path: Path) -> None:
    """`lr: 1e-3` is the string "1e-3" in YAML 1.1: it stays a number, as do numeric strings
    from --set; keys that take true/false (and free-form kwargs) still take them."""
    path = tmp_path / "r.yaml"
    text = yaml.safe_dump({"name": "r", **fm_body(tmp_path, None)}, sort_keys=False)
    path.write_text(text.replace("lr: 0.003", "lr: 1e-3"))
    assert yaml.safe_load(path.read_text())["optim"]["lr"] == "1e-3"
    recipe = load_recipe(
        path,
        [
            "schedule.epochs=3",
            "optim.weight_decay=5e-5",
            "runtime.sync_bn=true",
            "student.pretrained=false",
            "student.kwargs={drop_rate: 0.1, pretrained_strict: true}",
        ],
    )
    assert recipe.optim.lr == 1e-3 and recipe.optim.weight_decay == 5e-5
    assert recipe.schedule.epochs == 3 and recipe.runtime.sync_bn is True
    assert recipe.student.kwargs["pretrained_strict"] is True
    # a number where text is expected, and a scalar where a list is, stay errors
    assert "student.model: 3 is a number, and this key takes text; write '3'" in _load_error(
        tmp_path, fm_body(tmp_path, None), ["student.model=3"]
    )
    assert "student.mean: write [0.5] (a list, in brackets)" in _load_error(
        tmp_path, fm_body(tmp_path, None), ["student.mean=0.5"]
    )


def test_the_saved_recipe_writes_paths_as_typed_and_reads_back_the_same(tmp_path: Path) -> None:
    """A path with accents was saved as "/data/photos \\xE9t\\xE9": valid YAML, but a user
    searching the run's recipe.yaml for their folder did not find it. A path longer than 80
    characters was folded over two lines (PyYAML's default width): it is kept on one."""
    from distill_cli.rundir.checks import recipe_changes

    out = tmp_path / ("runs été ü " + "long folder name " * 6)
    body = fm_body(out, None)
    recipe = load_recipe(write_recipe(tmp_path, "r", body))
    text = recipe.to_yaml()
    assert str(out) in text and "\\x" not in text
    saved = tmp_path / "saved.yaml"
    saved.write_bytes(text.encode())
    assert not recipe_changes(saved, text) and load_recipe(saved).output.dir == out
    # a run saved by an earlier version (escaped) still counts as the same recipe on --resume
    saved.write_text(yaml.safe_dump(yaml.safe_load(text), sort_keys=False))
    assert "\\x" in saved.read_text() and not recipe_changes(saved, text)


def test_class_names_written_as_numbers_are_the_folder_names(tmp_path: Path) -> None:
    """Class folders `0`..`9` are named in YAML as `[0, 1, ...]` and `{0: tench}`: these were
    refused ("Input should be a valid string", plus a path error for the list)."""
    body = fm_body(tmp_path / "runs", None)
    body["teacher"]["class_names"] = [0, 1, 2, 3]
    body["data"]["class_map"] = {10: 3, "cat": "dog"}
    recipe = load_recipe(write_recipe(tmp_path, "numbers", body))
    assert recipe.teacher.class_names == ["0", "1", "2", "3"]
    assert recipe.data.class_map == {"10": "3", "cat": "dog"}
    body["teacher"]["class_names"] = [True, False]  # not a number written by mistake for a name
    with pytest.raises(DistillError, match=r"teacher\.class_names"):
        load_recipe(write_recipe(tmp_path, "bools", body))
