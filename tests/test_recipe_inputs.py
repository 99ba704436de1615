"""Recipes and `--set` values as people write them: YAML 1.1's surprises, values typed on a
command line, sections left empty, keys that crashed the error line. All in-process, no model
built (`load_recipe`), except the `--model-arg` sibling (timm's constructor only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from distill_cli.errors import DistillError
from distill_cli.recipe.document import load_recipe
from distill_cli.recipe.yaml_text import parse_yaml, recipe_text
from tests.conftest import fm_body, write_recipe


def _recipe(tmp_path: Path, edit: tuple[str, str] | None = None, head: str = "") -> Path:
    """The tiny function-matching recipe, with one line of its text replaced."""
    path = write_recipe(tmp_path, "r", fm_body(tmp_path / "runs", None))
    text = path.read_text()
    if edit is not None:
        assert edit[0] in text
        text = text.replace(edit[0], edit[1], 1)
    path.write_text(head + text)
    return path


def _error(path: Path, sets: list[str] | None = None) -> str:
    with pytest.raises(DistillError) as info:
        load_recipe(path, sets)
    return str(info.value)


def test_numbers_and_names_read_as_written_not_as_yaml_1_1(tmp_path: Path) -> None:
    """YAML 1.1 made `010` 8, `3:4` 184, zero-padded class folders other names, `no` false and
    `1e-1` text that reached timm's kwargs as a string."""
    recipe = load_recipe(
        _recipe(tmp_path, ("  num_classes: 4", "  class_names: [001, 010, 'no', yes]")),
        ["runtime.seed=010", "student.kwargs={drop_rate: 1e-1, pretrained_strict: no}"],
    )
    assert recipe.teacher.class_names == ["001", "010", "no", "yes"]
    assert recipe.runtime.seed == 10
    assert recipe.student.kwargs == {"drop_rate": 0.1, "pretrained_strict": False}
    assert load_recipe(_recipe(tmp_path, ("lr: 0.003", "lr: 5e-4"))).optim.lr == 5e-4
    epochs = load_recipe(_recipe(tmp_path, ("epochs: 2", "epochs: 1e1"))).schedule.epochs
    assert epochs == 10
    flip = _recipe(tmp_path, ("optim:", "augment:\n  flip: off\noptim:"))
    assert load_recipe(flip).augment.flip is False
    # base-60 is no number a user means: refused, not 184
    ratio = _recipe(tmp_path, ("optim:", "augment:\n  crop_ratio: [3:4, 4:3]\noptim:"))
    assert "augment.crop_ratio.0: Input should be a valid number" in _error(ratio)
    # a yes/no word where a number goes is still refused naming the key
    assert "schedule.epochs: true/false" in _error(_recipe(tmp_path, ("epochs: 2", "epochs: yes")))
    # class_map keys: a folder called `no` is the name "no"
    mapped = load_recipe(_recipe(tmp_path), ["data.class_map={no: healthy, 007: sick}"])
    assert mapped.data.class_map == {"no": "healthy", "007": "sick"}


def test_the_saved_recipe_reads_back_the_same_here_and_in_yaml_1_1(tmp_path: Path) -> None:
    """Text that either reading would take for a number, a bool or a date is quoted."""
    data = {"names": ["no", "1e3", "010", "1:30", "2024-01-01", "on", "x"], "lr": 1e-5}
    text = recipe_text(data)
    assert parse_yaml(text) == data and yaml.safe_load(text) == data
    recipe = load_recipe(
        _recipe(tmp_path, ("  num_classes: 4", "  class_names: ['1e3', 'no', '010', y]"))
    )
    saved = tmp_path / "saved.yaml"
    saved.write_text(recipe.to_yaml())
    assert load_recipe(saved) == recipe


def test_set_values_are_the_text_typed_unless_written_as_yaml(tmp_path: Path) -> None:
    """`#` began a YAML comment (`/data/set #2` was "/data/set"), `: ` a mapping and `@`
    a syntax error; quoted values and lists still parse."""
    path = _recipe(tmp_path)
    sets = ["data.root=/data/set #2", "data.train_dir=a: b", "data.val_dir=@val"]
    recipe = load_recipe(path, sets)
    assert str(recipe.data.root) == "/data/set #2"
    assert (recipe.data.train_dir, recipe.data.val_dir) == ("a: b", "@val")
    recipe = load_recipe(path, ["data.train_dir='my dir'", "student.input_size=[24, 24]"])
    assert (recipe.data.train_dir, recipe.student.input_size) == ("my dir", (24, 24))
    assert load_recipe(path, ["schedule.epochs=3 # three"]).schedule.epochs == 3
    # a key given twice: the last wins, as later flags do (a script appends its own)
    assert load_recipe(path, ["schedule.epochs=3", "schedule.epochs=4"]).schedule.epochs == 4
    assert "unparsable" in _error(path, ["optim.betas=[0.9"])


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["schedule.epochs 3"], "write --set schedule.epochs=3 (no space)"),
        (["schedule..epochs=3"], "has an empty part"),
        (["schedule.epochs.x=1"], "schedule.epochs is a value (2), not a section"),
        (
            ["schedule=3"],
            "schedule: is a section, not a value; set one of its keys: schedule.epochs=3",
        ),
        (["method=kd"], "set one of its keys: method.name=kd"),
        (["student=test_resnet"], "student.model=test_resnet"),
        (["student.input_size=32,32"], "student.input_size: write [32,32] (a list, in brackets)"),
        (["runtime.log_to=tensorboard"], "write [tensorboard]"),
        (["schedule.batch_size="], "schedule.batch_size: is empty (null"),
        (["schedule.steps=5", "schedule.epochs=3"], "epochs (3) and steps (5) are both set"),
        (["Schedule.Epochs=3"], "Schedule: unknown key; did you mean 'schedule'?"),
        (["teacher.model=~"], "teacher.model: is empty"),
        (["name=2024"], "name: 2024 is a number, and this key takes text; write '2024'"),
        (["optim.clip_grad_norm=None"], "optim.clip_grad_norm: write null (or ~)"),
        (["optim.lr=1e-300"], "optim.lr: 1e-300 is too small for float32 (it would become 0)"),
    ],
)
def test_set_mistakes_say_what_to_write(tmp_path: Path, sets: list[str], expected: str) -> None:
    msg = _error(_recipe(tmp_path), sets)
    assert expected in msg and "instance of" not in msg and "constrained" not in msg, msg
    assert "valid list" not in msg, msg  # teacher's list member is not what was written


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("schedule:", "Schedule:"), "Schedule: unknown key; did you mean 'schedule'?"),
        (("schedule:", "? [a, b]\n: 1\nschedule:"), "a key must be a plain word"),
        (("schedule:", "model: {model: test_resnet}\nschedule:"), "both `student:` and `model:`"),
        (("  epochs: 2", "\tepochs: 2"), "r.yaml:20) - indent with spaces"),
        (("  epochs: 2", "  epochs:2"), "with a space after the colon (here or on the line above)"),
        (("name: r", "name: r\n---\nname: s"), "remove the second `---`"),
        (("output:", "description: @home\noutput:"), "needs quotes ('@value')"),
        (
            ("  epochs: 2\n  batch_size: 32\n  log_every: 2", "  # all commented out"),
            "schedule: is empty",
        ),
    ],
)
def test_file_mistakes_are_one_line_not_a_crash(
    tmp_path: Path, edit: tuple[str, str], expected: str
) -> None:
    """A capitalised section name was an IndexError, a list as a key a TypeError."""
    assert expected in _error(_recipe(tmp_path, edit))


def test_empty_optional_sections_and_anchors_and_blank_names(tmp_path: Path) -> None:
    """`optim:` with every line commented out takes the defaults; anchors may live under a
    top-level `x-` key; a model name from a `|` block or with a space is the name."""
    path = _recipe(tmp_path, ("optim:\n  lr: 0.003", "optim:\n  # lr: 0.003\naugment:"))
    recipe = load_recipe(path, ["student.kwargs=", "schedule.save_epochs=~"])
    assert recipe.optim.lr == 1e-3 and recipe.augment.flip is True
    assert recipe.student.kwargs == {} and recipe.schedule.save_epochs == []
    no_name = _recipe(tmp_path, ("  name: function_matching\n", ""))
    assert "method.name: required key is missing; one of 'kd'" in _error(no_name)
    anchored = _recipe(
        tmp_path,
        ("teacher:\n  model: test_resnet", "teacher:\n  <<: *common\n  model: test_resnet"),
        head="x-common: &common {num_classes: 4}\n",
    )
    assert load_recipe(anchored).teacher.num_classes == 4
    assert "x-common" not in load_recipe(anchored).to_yaml()
    block = _recipe(tmp_path, ("  model: test_efficientnet", "  model: |\n    test_efficientnet"))
    assert load_recipe(block).student.model == "test_efficientnet"
    assert load_recipe(path, ["student.model= test_efficientnet "]).student.model == (
        "test_efficientnet"
    )


def test_export_model_args_read_numbers_as_set_does() -> None:
    """`--model-arg drop_rate=1e-1` reached timm as the text "1e-1" (YAML 1.1)."""
    from distill_cli.cli.export import _model_args

    args = ["drop_rate=1e-1", "img_size=[32, 32]", "global_pool=avg", "pretrained_strict=no"]
    assert _model_args(args) == {
        "drop_rate": 0.1,
        "img_size": [32, 32],
        "global_pool": "avg",
        "pretrained_strict": False,
    }


def test_recipe_files_as_editors_and_scripts_write_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UTF-16 with its BOM (PowerShell's `>`) was "not UTF-8 text (byte 0) - pass a YAML
    file", advice that did not work; a Latin-1 file now names its line and how to convert;
    JSON is YAML; `-` reads the recipe from standard input (it was "recipe file not found")."""
    import io
    import json

    text = _recipe(tmp_path).read_text()
    utf16 = tmp_path / "win.yaml"
    utf16.write_bytes(text.encode("utf-16"))
    assert load_recipe(utf16).schedule.epochs == 2
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(text.replace("name: r", "name: r\ndescription: café").encode("latin-1"))
    msg = _error(latin)
    assert "latin.yaml:2" in msg and "save it as UTF-8" in msg
    as_json = tmp_path / "r.json"
    as_json.write_text(json.dumps(yaml.safe_load(text)))
    assert load_recipe(as_json) == load_recipe(_recipe(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert load_recipe("-", ["schedule.epochs=3"]).schedule.epochs == 3


def test_cli_forms_of_set_and_paths_from_the_recipes_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--set schedule.epochs 3` was only "unexpected extra argument (3)"; `--set=k=v` works;
    `../data` in `configs/r.yaml` run from the project root said to write `configs/../data`."""
    from distill_cli.cli.entry import entry

    (tmp_path / "data").mkdir()
    (tmp_path / "configs").mkdir()
    path = _recipe(tmp_path / "configs")
    monkeypatch.chdir(tmp_path)

    def error(*args: str) -> str:
        with pytest.raises(SystemExit) as stop:
            entry(["run", "configs/r.yaml", "--dry-run", *args])
        assert stop.value.code == 2
        return capsys.readouterr().err

    assert "write --set schedule.epochs=3" in error("--set", "schedule.epochs", "3")
    assert "schedule.epochs: Input should be greater than 0" in error("--set=schedule.epochs=0")
    with pytest.raises(DistillError, match=r"- write data\.root: data \(found beside the recipe\)"):
        load_recipe(path.relative_to(tmp_path), ["data.root=../data"])


def test_a_run_folder_inside_the_data_is_refused_before_it_is_made(tmp_path: Path) -> None:
    """`output.dir: data/train` made the run folder, then the scan took it for an empty class
    ("add images to them, or remove them"); `--dry-run` passed. A run beside the splits is
    fine, and a saved run's recipe still loads (export)."""
    from distill_cli.recipe.given import given_recipe

    data = tmp_path / "data"
    path = _recipe(tmp_path)
    folders = f"data={{source: image_folder, root: '{data}'}}"
    for out, key in [(data / "train", "train_dir"), (data / "val" / "x", "val_dir")]:
        with pytest.raises(DistillError, match=rf"inside data\.root/{key}") as info:
            given_recipe(path, [folders, f"output.dir={out}"], {})
        assert info.value.where == "output.dir"
    pool = f"data.distill_dir={tmp_path / 'pool'}"
    with pytest.raises(DistillError, match=r"inside data\.distill_dir"):
        given_recipe(path, [pool, f"output.dir={tmp_path / 'pool' / 'runs'}"], {})
    assert given_recipe(path, [folders, f"output.dir={data}"], {}).run_dir == data / "r"
    assert load_recipe(path, [folders, f"output.dir={data / 'train'}"]).name == "r"


def test_a_missing_recipe_says_which_file_was_meant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "recipe file not found - check the path" for `configs/r` (no suffix), a typo, or a
    shipped recipe's name as `distill recipes` lists it; each advice, followed, loads."""
    (tmp_path / "configs").mkdir()
    _recipe(tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    assert _error(Path("configs/r")).endswith("- write configs/r.yaml")
    assert _error(Path("configs/rr.yaml")).endswith("- did you mean configs/r.yaml?")
    assert load_recipe("configs/r.yaml").name == "r"
    shipped = _error(Path("methods/kd"))
    assert "methods/kd is a shipped recipe: distill run " in shipped
    assert load_recipe(shipped.rsplit("distill run ", 1)[1]).method.name == "kd"
    assert "there is no folder nope" in _error(Path("nope/r.yaml"))
    # a folder (or an empty argument: an unset $RECIPE) names the recipes in it
    assert _error(Path("configs")).endswith("- pass a recipe file: configs/r.yaml")
    (tmp_path / "configs" / "notes.json").write_text("{}")  # YAML first; JSON when it is all
    assert _error(Path("configs")).endswith("- pass a recipe file: configs/r.yaml")
    run = tmp_path / "runs" / "r"  # a run folder: its data.json, eval.json were offered
    (run / "checkpoints").mkdir(parents=True)
    (run / "data.json").write_text("{}")
    (run / ".distill-run").write_text("{}")
    (run / "recipe.yaml").write_text((tmp_path / "configs" / "r.yaml").read_text())
    said = _error(Path("runs/r"))
    assert "the recipe is a run folder" in said and "its recipe is runs/r/recipe.yaml" in said
    monkeypatch.chdir(tmp_path / "configs")
    assert "an unset $RECIPE, is this folder" in _error(Path(""))


def test_set_method_name_switches_the_method_of_a_recipe_file(tmp_path: Path) -> None:
    """`--set method.name=supervised` on a function-matching recipe was refused for the file's
    `method.temperature`, which no `--set` can remove; a key the overrides give themselves
    is still checked, now naming the keys the method takes."""
    path = _recipe(tmp_path)
    assert load_recipe(path, ["method.name=supervised"]).method.name == "supervised"
    kd = load_recipe(path, ["method.name=kd"]).method
    assert kd.name == "kd" and kd.temperature == 2.0  # a key both methods take is kept
    msg = _error(path, ["method.name=supervised", "method.temperature=3"])
    assert "method.temperature: unknown key; method 'supervised' takes label_smoothing" in msg
    assert "method.kd_stop_epoch: required key is missing" in _error(path, ["method.name=eskd"])
    # the API's Recipe objects switch the same way
    from distill_cli.recipe.document import override_recipe

    recipe = override_recipe(load_recipe(path), {"method.name": "supervised"})
    assert recipe.method.name == "supervised"


def test_a_set_alternative_replaces_the_files_one(tmp_path: Path) -> None:
    """`--set schedule.steps=100` (a quick run of an epochs recipe) was refused as "set exactly
    one of epochs or steps"; the same for warmup_fraction over warmup_steps and a teacher's
    `pretrained` over its `checkpoint`. Null or false chooses nothing."""
    body = fm_body(tmp_path / "runs", tmp_path / "t.safetensors")
    body["teacher"]["checkpoint_key"] = "state_dict"
    body["schedule"]["warmup_steps"] = 10
    path = write_recipe(tmp_path, "r", body)
    recipe = load_recipe(path, ["schedule.steps=5", "schedule.warmup_fraction=0.1"])
    assert (recipe.schedule.epochs, recipe.schedule.steps) == (None, 5)
    assert (recipe.schedule.warmup_steps, recipe.schedule.warmup_fraction) == (0, 0.1)
    teacher = load_recipe(path, {"teacher.pretrained": True}).teacher
    assert teacher.pretrained and teacher.checkpoint is None and teacher.checkpoint_key is None
    kept = load_recipe(path, ["teacher.pretrained=false", "schedule.steps=null"])
    assert kept.teacher.checkpoint is not None and kept.schedule.epochs == 2


def test_set_reaches_into_an_ensemble_and_lists(tmp_path: Path) -> None:
    """`--set teacher.model=x` on an ensemble replaced the list of teachers by one teacher;
    a number now indexes a list, and a key a list does not have names the positions."""
    body = fm_body(tmp_path / "runs", None)
    body["teacher"] = [dict(body["teacher"]), dict(body["teacher"])]
    body["optim"]["betas"] = [0.9, 0.999]
    path = write_recipe(tmp_path, "ens", body)
    recipe = load_recipe(path, ["teacher.1.model=test_efficientnet", "optim.betas.1=0.98"])
    assert [t.model for t in recipe.teachers] == ["test_resnet", "test_efficientnet"]
    assert recipe.optim.betas == (0.9, 0.98)
    msg = _error(path, ["teacher.model=test_efficientnet"])
    assert msg.endswith("- write teacher.0.model or teacher.1.model")
    assert "teacher is a list of 2: '2' is not one of its positions" in _error(
        path, ["teacher.2.model=x"]
    )
    # a list the recipe does not have cannot be indexed: set whole
    msg = _error(_recipe(tmp_path), ["optim.betas.1=0.98"])
    assert "optim.betas: is a list; set it whole: optim.betas=[...]" in msg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the recipe is empty"),
        ("# name: r\n# student: ...\n", "the recipe is empty"),
        ("- name: r\n", "a YAML mapping of keys (name:, student:, data:, ...), not a list"),
        ("recipe.yaml\n", "not the value 'recipe.yaml'"),
    ],
)
def test_a_recipe_with_no_keys_says_so_and_where_to_start(
    tmp_path: Path, text: str, expected: str
) -> None:
    """An empty file or one of comments was five "required key is missing" errors."""
    path = tmp_path / "r.yaml"
    path.write_text(text)
    msg = _error(path)
    assert expected in msg and "distill recipes show function_matching > recipe.yaml" in msg


def test_a_documented_word_that_yaml_1_1_read_as_false_is_the_word(tmp_path: Path) -> None:
    """`data.on_duplicates: off` (a documented value) was false under YAML 1.1, refused with
    "write the value itself", which the user had done; false itself now lists the words."""
    path = _recipe(tmp_path, ("  source: synthetic", "  source: synthetic\n  on_duplicates: off"))
    assert load_recipe(path).data.on_duplicates == "off"
    msg = _error(_recipe(tmp_path), ["data.on_duplicates=false"])
    assert "data.on_duplicates: true/false is not a value this key takes (it takes one of " in msg
    assert "'warn', 'error', 'off'); write one of them" in msg


def test_paths_no_file_system_takes_are_one_line(tmp_path: Path) -> None:
    """A NUL in a path (`"\\u0000"` in YAML) raised ValueError from os.stat, and a name longer
    than the file system's limit OSError from the check for a path meant from the recipe's
    folder: tracebacks from `api.run`, not lines."""
    from distill_cli.recipe.given import given_recipe

    (tmp_path / "configs").mkdir()
    path = _recipe(tmp_path / "configs")
    with pytest.raises(DistillError, match=r"output\.dir: a path cannot hold a NUL"):
        given_recipe(path, ['output.dir="/tmp/a\\0b"'], {})
    long = "x" * 300
    assert given_recipe(path, [f"teacher.checkpoint={long}"], {}).teacher.checkpoint == Path(long)


def test_a_warmup_longer_than_the_run_is_said_before_training(tmp_path: Path) -> None:
    """`warmup_steps: 1500` copied from the paper's recipe into a 6-step run kept the learning
    rate rising for the whole run without a word; the plan and the opening now say so."""
    from distill_cli import api

    path = write_recipe(tmp_path, "warm", fm_body(tmp_path / "runs", None))
    plan = api.plan(path, ["schedule.warmup_steps=1500", "data.synthetic.train_size=64"])
    (line,) = plan.recipe_warnings
    assert "schedule.warmup_steps (1500) is not shorter than the run (4 steps)" in line
    assert api.plan(path, ["schedule.warmup_steps=2"]).recipe_warnings == []


def test_dry_run_says_what_the_run_folder_would_make_a_run_do(tmp_path: Path) -> None:
    """`--dry-run` planned a run into a folder of the user's files, which the run itself then
    refused, and said nothing of a folder holding a run (a run needs --resume or --overwrite)."""
    from distill_cli import api
    from distill_cli.rundir.layout import RunDir

    path = write_recipe(tmp_path, "dry", fm_body(tmp_path / "runs", None))
    mine = tmp_path / "runs" / "dry"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(DistillError, match="exists and is not a distill run"):
        api.plan(path)
    (mine / "notes.txt").unlink()
    assert api.plan(path).run_folder == "new"
    RunDir(mine).marker.write_text("a distill run folder")
    assert "continue it with --resume" in api.plan(path).run_folder


def test_dry_run_with_the_runs_flags_says_where_it_resumes_or_refuses_as_it_would(
    tmp_path: Path,
) -> None:
    """`--dry-run --resume` said "continue it with --resume", and planned a resume under a
    changed recipe that the run then refused; with the run's flags it says what that run
    does (the step a resume continues from) or refuses what it would refuse."""
    from distill_cli import api
    from distill_cli.rundir.layout import RunDir

    body = fm_body(tmp_path / "runs", None)
    body["data"]["synthetic"]["train_size"] = 32
    body["schedule"] = {"steps": 2, "batch_size": 16, "evals": 1}
    path = write_recipe(tmp_path, "again", body)
    api.run(path)
    assert (
        "finished run (step 2): --resume has no steps left"
        in api.plan(path, resume=True).run_folder
    )
    RunDir(tmp_path / "runs" / "again").summary.unlink()  # as a run stopped after its save
    resumed = api.plan(path, resume=True).run_folder
    assert "--resume continues it from step 2" in resumed
    assert "--overwrite deletes it" in api.plan(path, overwrite=True).run_folder
    with pytest.raises(DistillError, match=r"recipe differs.*schedule\.steps: 2 -> 3"):
        api.plan(path, ["schedule.steps=3"], resume=True)
    with pytest.raises(DistillError, match="contradict"):
        api.plan(path, resume=True, overwrite=True)


def test_a_piped_recipe_is_refused_for_several_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each process of `--nproc 2` (or torchrun) would read the one pipe: all but one empty."""
    import io

    from distill_cli.cli.entry import entry

    monkeypatch.setattr("sys.stdin", io.StringIO(_recipe(tmp_path).read_text()))
    with pytest.raises(SystemExit) as stop:
        entry(["run", "-", "--nproc", "2"])
    assert stop.value.code == 2
    assert "cannot be read by 2 processes" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "0")
    assert "cannot be read by 4 processes" in _error(Path("-"))


def test_a_teacher_under_a_supervised_method_is_said_to_be_unused(tmp_path: Path) -> None:
    """`method.name: supervised` (or a `--set method.name=supervised`) on a recipe with a
    teacher built no teacher and said nothing; the plan and the run's opening now say so."""
    from distill_cli import api

    path = write_recipe(tmp_path, "sup", fm_body(tmp_path / "runs", None))
    (line,) = api.plan(path, ["method.name=supervised"]).recipe_warnings
    assert "the recipe's teacher is not used: 'supervised'" in line and "method.name" in line
    assert api.plan(path).recipe_warnings == []


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("yes", "drop_rate: true/false is not a rate"),  # was dropout with p=1.0
        ("2", "drop_rate: 2 is outside [0, 1)"),
        ("1.0", "drop_rate: 1.0 is outside [0, 1)"),  # drops every feature
        ("'0.1'", "drop_rate: '0.1' is not a rate"),  # quoted: text, reached timm as text
    ],
)
def test_a_models_dropout_rates_are_probabilities(tmp_path: Path, value: str, says: str) -> None:
    """timm's `*_rate` kwargs are probabilities; `yes` became p=1.0 (a student that learns
    nothing) and 2 failed at the first forward, blamed on the input size."""
    assert says in _error(_recipe(tmp_path), [f"student.kwargs={{drop_rate: {value}}}"])
    ok = load_recipe(_recipe(tmp_path), ["student.kwargs={drop_path_rate: 0.1, drop_rate: 0}"])
    assert ok.student.kwargs == {"drop_path_rate": 0.1, "drop_rate": 0}


def test_a_count_too_large_for_an_integer_says_so(tmp_path: Path) -> None:
    """`steps: 1e20` said pydantic's "Unable to parse input string as an integer, exceeded
    maximum size"."""
    err = _error(_recipe(tmp_path), ["schedule.epochs=1e20"])
    assert "schedule.epochs: 1e+20 is too large for a count" in err and "parse" not in err
