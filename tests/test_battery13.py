"""Bad-input battery, round 13: what only YAML documents hold, typed into `--set` and
`--model-arg` (an anchor, an alias, a tag, a pasted block of lines) and aliases that expand to
billions of values in a recipe; counts only a slip reaches, in the recipe (`shuffle_buffer`,
batch sizes, class and channel counts) and in the commands' flags (`--num-classes`, `--seed`,
`--nproc`, `bench train --steps`, `students --warmup`/`--max-latency-ms`); run folders renamed,
summaries and checkpoint records of another shape or a newer distill; paths holding a line
break or blanks alone; a device, a FIFO, a folder or a symlink loop where a file belongs (a
class names file, a recipe, an accuracy table, an image, a tar shard: never opened); IDX files
of the wrong shape, streamed labels past the class ceiling, float TIFFs of NaN. Each is one
`error:` line naming the key, flag or file and what to do, before any work (or a note where
the command goes on); what users really write still works."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from distill_cli.cli.entry import entry
from distill_cli.errors import DistillError
from distill_cli.recipe.document import load_recipe
from tests.conftest import refused as _refused
from tests.conftest import teacher_body, write_recipe


def _error(path: Path, sets: list[str]) -> DistillError:
    with pytest.raises(DistillError) as info:
        load_recipe(path, sets)
    return info.value


# --- b. what only a YAML document holds, in a --set value ------------------------------------

#: Ten lists of ten aliases of the one before: 10^7 values from a 300-character line.
BOMB = (
    "[&a [1,1,1,1,1,1,1,1,1,1]"
    + "".join(
        f", &{b} [{', '.join(['*' + a] * 10)}]" for a, b in zip("abcdef", "bcdefg", strict=True)
    )
    + "]"
)


@pytest.mark.parametrize(
    ("value", "needles"),
    [
        ("optim=&a {lr: 0.1}", ["(--set optim)", "YAML anchor (&a)", "drop the &a"]),
        ("data.root=&x /data", ["(--set data.root)", "anchor (&x)", "quote text"]),
        ("optim.lr=*a", ["(--set optim.lr)", "YAML alias (*a)", "write the value itself"]),
        ("optim.lr=[1, *a]", ["alias (*a)"]),
        (f"student.kwargs.x={BOMB}", ["(--set student.kwargs.x)", "anchor (&a)"]),
        ("optim=!!python/object:os.system {}", ["tag !!python/object:os.system", "remove the tag"]),
        ("optim.lr=!!binary aGVsbG8=", ["tag !!binary is not read"]),
        ("data.class_map=!!set {a}", ["tag !!set"]),
        ("optim.lr=!foo 1", ["tag !foo"]),
        ("optim.lr=1\n---\n2", ["(--set optim.lr)", "'1\\n---\\n2' holds a line break"]),
        ("optim={lr: 0.1}\n{lr: 0.2}", ["line break", "one value on one line"]),
        ("data.root=/da\rta", ["line break"]),
        ("optim.betas=[0.9", ["(--set optim.betas)", "unparsable", "close the bracket"]),
    ],
    ids=[
        "anchor-section",
        "anchor-path",
        "alias",
        "alias-in-list",
        "alias-bomb",
        "python-tag",
        "binary-tag",
        "set-tag",
        "local-tag",
        "two-documents",
        "two-mappings",
        "carriage-return",
        "open-bracket",
    ],
)
def test_a_set_value_only_a_yaml_document_holds_is_one_line(
    fm: Path, value: str, needles: list[str]
) -> None:
    message = str(_error(fm, [value]))
    for needle in needles:
        assert needle in message, message
    assert "a number, true/false, null, text" in message or "tag" in message, message


def test_set_values_users_write_still_load(fm: Path) -> None:
    sets = [
        "optim.lr=!!float 3e-3",
        "data.root='&x /data'",
        "data.train_dir=a&b",
        "output.name=run*2",
        "student.kwargs={drop_rate: 0.1}",
    ]
    recipe = load_recipe(fm, sets)
    assert recipe.optim.lr == 3e-3 and str(recipe.data.root) == "&x /data"
    assert recipe.data.train_dir == "a&b" and recipe.output.name == "run*2"


def test_aliases_that_expand_to_billions_are_refused_at_once(tmp_path: Path) -> None:
    """A recipe file whose aliases expand to 10^7 values validated for over a minute."""
    path = tmp_path / "bomb.yaml"
    path.write_text(
        f"name: b\nstudent: {{model: test_resnet, kwargs: {{x: {BOMB}}}}}\n"
        "data: {source: synthetic}\nmethod: {name: supervised}\nschedule: {epochs: 1}\n"
    )
    start = time.monotonic()
    with pytest.raises(DistillError, match=r"aliases \(\*name\) expand to more than 100,000"):
        load_recipe(path)
    assert time.monotonic() - start < 5


def test_anchors_and_merges_in_a_recipe_file_still_load(tmp_path: Path) -> None:
    body = (
        "x-common: &c {lr: 0.01}\nname: m\nstudent: {model: test_resnet}\n"
        "data: {source: synthetic}\nmethod: {name: supervised}\nschedule: {epochs: 1}\n"
        "optim: {<<: *c, weight_decay: 0.001}\n"
    )
    (tmp_path / "m.yaml").write_text(body)
    recipe = load_recipe(tmp_path / "m.yaml")
    assert recipe.optim.lr == 0.01 and recipe.optim.weight_decay == 0.001


@pytest.mark.parametrize(
    ("line", "tag"),
    [
        ("optim: !!python/object:os.system {}", "!!python/object:os.system"),
        ("seed: !!set {1}", "!!set"),
    ],
)
def test_a_tag_in_a_recipe_file_is_named_with_its_line(tmp_path: Path, line: str, tag: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(f"name: t\n{line}\n")
    with pytest.raises(DistillError) as info:
        load_recipe(path)
    assert f"the tag {tag} is not read in a recipe" in str(info.value)
    assert info.value.where == f"{path}:2" and "remove the tag" in info.value.hint


@pytest.mark.parametrize("value", ["x=[1", "x=!!set {1}", "x=&a 1", "x=1\n2"])
def test_a_model_arg_yaml_cannot_hold_is_one_line(
    value: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """`--model-arg 'x=[1'` was a yaml.scanner traceback."""
    _refused(["export", "test_resnet", "--model-arg", value], "(--model-arg x)", capfd)


# --- a. integer keys: a count only a slip reaches is refused at load --------------------------


@pytest.mark.parametrize(
    ("key", "needles"),
    [
        ("data.shuffle_buffer", ["data.shuffle_buffer", "above 100,000", "each data worker"]),
        ("schedule.eval_batch_size", ["schedule.eval_batch_size", "above 1,048,576"]),
        ("schedule.batch_size", ["schedule.batch_size", "1,000,000,000,000 is above 1,048,576"]),
        ("student.num_classes", ["student.num_classes", "above 1,000,000", "21,843"]),
        ("teacher.num_classes", ["teacher.num_classes", "above 1,000,000"]),
        ("data.synthetic.num_classes", ["data.synthetic.num_classes", "above 1,000,000"]),
        ("student.in_chans", ["student.in_chans", "above 1,024", "hyperspectral"]),
        ("teacher.in_chans", ["teacher.in_chans", "above 1,024"]),
        ("data.train_images", ["data.train_images", "above 10,000,000,000"]),
        ("data.val_images", ["data.val_images", "above 10,000,000,000"]),
    ],
)
def test_a_count_only_a_slip_reaches_is_refused_at_load(
    fm: Path, key: str, needles: list[str]
) -> None:
    """Each loaded: `shuffle_buffer: 1e12` filled every worker's buffer until the machine ran
    out, `synthetic.num_classes` was the allocator's traceback, `in_chans` its error blamed on
    the input size, `eval_batch_size` one batch of the whole split."""
    message = str(_error(fm, [f"{key}=1000000000000"]))
    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize(
    "sets",
    [
        ["data.shuffle_buffer=100000", "schedule.eval_batch_size=1048576"],
        ["schedule.batch_size=65536"],
        ["teacher.num_classes=21843", "student.num_classes=21843"],
        ["student.in_chans=224", "teacher.in_chans=4"],
        ["data.train_images=1281167", "data.val_images=50000"],
    ],
    ids=["at-the-bounds", "lars-batch", "imagenet-21k", "hyperspectral", "imagenet-counts"],
)
def test_counts_in_use_still_load(fm: Path, sets: list[str]) -> None:
    load_recipe(fm, sets)


def test_the_cli_refuses_the_count_before_any_work(
    sup: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", str(sup), "--dry-run", "--set", "data.synthetic.num_classes=1000000000000"]
    line = _refused(argv, "data.synthetic.num_classes", capfd)
    assert "1,000,000,000,000 is above 1,000,000" in line
    assert not (sup.parent / "runs").exists()


# --- c. distill students: a budget that keeps everything; a warm-up that never ended ----------


def test_a_students_budget_no_model_misses_is_refused(capfd: pytest.CaptureFixture[str]) -> None:
    """`--max-latency-ms 1e30` fitted every candidate: a ranking by size, under a budget's
    name; export's gate refuses the same value (battery 12)."""
    argv = ["students", "test_resnet", "--max-latency-ms", "1e30", "--candidates", "test_vit"]
    line = _refused(argv, "(--max-latency-ms)", capfd)
    assert "above 3,600,000 ms" in line and "distill models --teacher" in line


def test_the_students_warm_up_stops_at_max_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """`distill students --warmup 1000000000000` timed its first model until it was killed:
    the warm-up loop had no time bound (export's has `--max-time`)."""
    from distill_cli.export import latency
    from distill_cli.export.protocol import TimingPlan
    from distill_cli.students import measure
    from distill_cli.students.types import StudentQuery

    class Session:
        def get_inputs(self) -> list[object]:
            return [type("Input", (), {"name": "x"})()]

        def run(self, *_: object) -> None:
            time.sleep(0.001)

    monkeypatch.setattr(latency, "ort_session", lambda *_: (Session(), 1.0))
    plan = TimingPlan(warmup=10**12, runs=1, min_time_s=0.0, max_time_s=0.2, threads=1)
    query = StudentQuery("test_resnet", 5.0, timing=plan)
    start = time.monotonic()
    result = measure._time(Path("m.onnx"), (3, 8, 8), query, 1, "cpu", None)
    assert time.monotonic() - start < 5
    assert 10 <= result["warmup"] < 10**6 and result["runs"] >= 1


# --- the commands' own counts: a value only a slip reaches ------------------------------------


@pytest.mark.parametrize(
    ("argv", "flag", "needle"),
    [
        (["export", "test_resnet", "--num-classes", "1000000000000"], "--num-classes", "21,843"),
        (["bench", "latency", "test_resnet", "--num-classes", "10000000"], "--num-classes", "head"),
        (
            ["students", "test_resnet", "--max-latency-ms", "5", "--num-classes", "10000000"],
            "--num-classes",
            "above 1,000,000",
        ),
        (["export", "test_resnet", "--seed", "1000000000000000"], "--seed", "4294967295"),
        (["export", "test_resnet", "--seed", "-1"], "--seed", "0<=x"),
        (["run", "RECIPE", "--nproc", "1000000000000"], "--nproc", "at most"),
        (["bench", "train", "RECIPE", "--steps", "1000000000000"], "--steps", "above 10,000"),
        (["bench", "train", "RECIPE", "--warmup", "100000000"], "--warmup", "above 10,000"),
        (["bench", "train", "RECIPE", "--rounds", "1000000"], "--rounds", "above 100"),
    ],
    ids=[
        "export-classes",
        "bench-classes",
        "students-classes",
        "export-seed-huge",
        "export-seed-negative",
        "nproc",
        "bench-steps",
        "bench-warmup",
        "bench-rounds",
    ],
)
def test_a_commands_count_only_a_slip_reaches_is_refused(
    argv: list[str], flag: str, needle: str, sup: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`export --num-classes 1e12` was the allocator's error blamed on the model's kwargs,
    `--seed 1e23` numpy's OverflowError traceback, `run --nproc 1e12` torchrun starting
    processes until it was killed, `bench train --steps 1e12` a benchmark that never ended."""
    argv = [str(sup) if arg == "RECIPE" else arg for arg in argv]
    line = _refused(argv, f"({flag})", capfd)
    assert needle in line, line
    assert not (sup.parent / "runs").exists()


def test_an_interrupted_bench_train_does_not_advise_a_resume(
    sup: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM during `distill bench train` said "position saved (/tmp/tmpxyz/bench/...) -
    continue with --resume": bench train has no --resume and deletes that folder."""
    import signal

    from distill_cli.bench import train as bench
    from distill_cli.errors import RunFailed
    from distill_cli.train.stop import Interrupted

    def stopped(_: object) -> None:
        raise Interrupted(signal.SIGTERM, 12, "/tmp/tmpx/bench/checkpoints/last.safetensors")

    monkeypatch.setattr(bench.engine, "run", stopped)
    with pytest.raises(RunFailed) as info:
        bench.distill_step(load_recipe(sup), 1, 2, 1)
    message = str(info.value)
    assert "interrupted by SIGTERM at step 12 (distill bench train)" in message
    assert "--resume" not in message and "/tmp/tmpx" not in message and info.value.code == 143


# --- run folders in odd states -----------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny finished supervised run (two steps), shared by the module's run-folder cases."""
    from distill_cli import api

    folder = tmp_path_factory.mktemp("run")
    body = teacher_body(folder / "runs", epochs=1)
    body["data"]["synthetic"]["train_size"] = 64
    api.run(write_recipe(folder, "t", body))
    return folder / "runs" / "t"


def test_a_renamed_run_folders_recipe_does_not_start_the_run_it_names(
    finished_run: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`cp -r runs/t runs/t-try; distill run runs/t-try/recipe.yaml --resume` resumed (or with
    --overwrite replaced) runs/t, the run the saved recipe names, without a word."""
    import shutil

    copy = finished_run.parent / "t-try"
    shutil.copytree(finished_run, copy)
    try:
        before = sorted((p.name, p.stat().st_mtime_ns) for p in finished_run.rglob("*"))
        for flag in ("--resume", "--overwrite"):
            line = _refused(["run", str(copy / "recipe.yaml"), flag], "renamed 't-try'", capfd)
            assert "saved recipe of the run 't'" in line
            # runs/t is still there: renaming the copy back cannot help, resuming runs/t can
            assert f"distill run {finished_run / 'recipe.yaml'} --resume" in line
        assert sorted((p.name, p.stat().st_mtime_ns) for p in finished_run.rglob("*")) == before
        # the readers read the folder itself: a renamed run still reports
        with pytest.raises(SystemExit) as exit_info:
            entry(["report", str(copy)])
        assert exit_info.value.code == 0, capfd.readouterr()
        # with the run itself gone (the copy is all that is left), its name is the way back
        hidden = finished_run.with_name("t-away")
        finished_run.rename(hidden)
        try:
            line = _refused(["run", str(copy / "recipe.yaml"), "--resume"], "renamed", capfd)
            assert "name the folder 't' again" in line
        finally:
            hidden.rename(finished_run)
        # moved whole under its own name, it still resumes where it is (test_run_folders.py)
        moved = tmp_path / "t"
        shutil.move(copy, moved)
        assert load_recipe(moved / "recipe.yaml").run_dir == moved
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def test_a_sidecar_from_a_newer_distill_says_so(finished_run: Path, tmp_path: Path) -> None:
    """A key a later distill adds to its own checkpoint record read "a key distill does not
    read: 'ema' - remove it", as if the user had mistyped it."""
    import json

    from distill_cli.models.side_file import parse_side_file

    record = json.loads((finished_run / "checkpoints" / "best.json").read_text())
    with pytest.raises(DistillError) as info:
        parse_side_file({**record, "ema": True}, tmp_path / "best.json")
    assert "written by a distill newer than this one" in str(info.value)
    assert "'ema'" in str(info.value) and info.value.where == str(tmp_path / "best.json")
    with pytest.raises(DistillError, match="write it as 'mean'"):  # a user's typo stays one
        parse_side_file({"model": "resnet18", "mena": [0.5]}, tmp_path / "w.json")
    with pytest.raises(DistillError, match="above 1,000,000"):
        parse_side_file({**record, "num_classes": 10**12}, tmp_path / "best.json")


# --- paths only a slip writes: a line break, a tab, blanks alone -------------------------------


@pytest.mark.parametrize(
    ("sets", "needle"),
    [
        (['output.name="a\\nb"'], "run name 'a\\nb' holds a control character"),
        (['output.name=" "'], "run name ' ' is blank"),
        (['output.dir=" "'], "output: dir: the path ' ' is blank"),
        (['output.dir="runs\\nx"'], "output: dir: the path 'runs\\nx' holds a control"),
    ],
    ids=["name-newline", "name-blank", "dir-blank", "dir-newline"],
)
def test_a_recipe_path_only_a_slip_writes_is_refused(
    fm: Path, sets: list[str], needle: str
) -> None:
    """`output.name: "a\\nb"` made a run folder whose name holds a line break (two names to
    `ls`, two words to a script), `output.dir: " "` a folder named " " beside the recipe."""
    assert needle in str(_error(fm, sets))


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["export", "test_resnet", "--out", " "], "--out"),
        (["export", "test_resnet", "--out", "out\nx"], "--out"),
        (
            [
                *("students", "test_resnet", "--max-latency-ms", "5", "--data", "synthetic"),
                *("--write-recipe", "a\tb.yaml"),
            ],
            "--write-recipe",
        ),
    ],
    ids=["out-blank", "out-newline", "write-recipe-tab"],
)
def test_an_output_path_only_a_slip_writes_is_refused_before_any_work(
    argv: list[str],
    flag: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    _refused(argv, flag, capfd)  # blank: the flag's parser (cli.options.given_path) says so
    assert list(tmp_path.iterdir()) == []


def test_a_plot_name_with_a_line_break_is_refused(
    finished_run: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import shutil

    other = tmp_path / "t2"
    shutil.copytree(finished_run, other)
    plot = tmp_path / "a\nb.png"
    _refused(["compare", str(finished_run), str(other), "--plot", str(plot)], "control", capfd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t2"]


def test_an_error_quoting_a_line_break_stays_one_line(capfd: pytest.CaptureFixture[str]) -> None:
    """`--checkpoint $'a\\nb'` printed "error: checkpoint file not found (a" and, on a line of
    its own, "b) - check the path": the error line is one line whatever it quotes."""
    line = _refused(["export", "test_resnet", "--checkpoint", "a\nb"], "(a\\nb)", capfd)
    assert "not found" in line


@pytest.mark.parametrize("kind", ["folder", "fifo", "device", "loop"])
@pytest.mark.parametrize("flag", ["--onnx", "--bare"])
def test_a_file_option_given_something_else_says_what_it_is(
    flag: str, kind: str, sup: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`--onnx /dev/zero` (or a FIFO, a folder) was "ONNX file not found", of what is there;
    `bench train --bare` the same. A FIFO is never opened (it waits for a writer forever)."""
    import os

    target = {"folder": tmp_path, "device": Path("/dev/zero")}.get(kind, tmp_path / kind)
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "loop":
        (tmp_path / "loop2").symlink_to(tmp_path / "loop")
        target.symlink_to(tmp_path / "loop2")
    if not target.exists() and kind == "device":
        pytest.skip("no /dev/zero here")
    what = {"folder": "a folder", "fifo": "a pipe (FIFO)", "device": "a device"}
    command = (
        ["export", "test_resnet", "--onnx", str(target)]
        if flag == "--onnx"
        else ["bench", "train", str(sup), "--bare", str(target)]
    )
    line = _refused(command, f"({target})", capfd)
    assert f"is {what.get(kind, 'a symlink loop')}" in line, line


# --- numbers in the data: IDX files cut short, of another shape, with labels out of range ------


def _idx(path: Path, array: object) -> None:
    import struct

    import numpy as np

    arr = np.asarray(array, dtype=np.uint8)
    dims = struct.pack(">" + "I" * arr.ndim, *arr.shape)
    path.write_bytes(struct.pack(">HBB", 0, 8, arr.ndim) + dims + arr.tobytes())


@pytest.mark.parametrize(
    ("broken", "needle"),
    [
        ("header", "IDX file is truncated (in its header)"),
        ("label-200", "a label is 200; Fashion-MNIST's are 0 to 9"),
        ("labels-as-images", "the images file holds a 1-D array"),
        ("images-as-labels", "the labels file holds a 3-D array"),
    ],
)
def test_an_idx_file_of_the_wrong_shape_is_named_before_training(
    broken: str, needle: str, tmp_path: Path
) -> None:
    """Each was a traceback: struct.error for a header cut short, "not enough values to
    unpack" at the first step for a labels file where the images belong, torch's "Class
    values must be smaller than num_classes" for a label of 200."""
    import numpy as np

    from distill_cli.data.sources import load_fashion_mnist

    images, labels = tmp_path / "train-images-idx3-ubyte", tmp_path / "train-labels-idx1-ubyte"
    _idx(images, np.zeros((8, 28, 28)))
    _idx(labels, np.arange(8))
    if broken == "header":
        images.write_bytes(images.read_bytes()[:6])
    elif broken == "label-200":
        _idx(labels, [200] * 8)
    elif broken == "labels-as-images":
        _idx(images, np.arange(8))
    else:
        _idx(labels, np.zeros((8, 28, 28)))
    with pytest.raises(DistillError) as info:
        load_fashion_mnist(tmp_path, "train")
    assert needle in str(info.value) and info.value.where in (str(images), str(labels))
    assert info.value.code == 2


@pytest.mark.parametrize("source", ["shards", "parquet"])
def test_a_label_past_the_class_ceiling_is_refused_before_the_names_are_made(
    source: str, tmp_path: Path
) -> None:
    """A streamed source names classes `class_0..class_<largest label>`: a `.cls` of
    999999999999 (or a parquet label of it, no ClassLabel names) made 10^12 names until the
    machine ran out of memory."""
    import io
    import tarfile

    from distill_cli.data.parquet import scan_hf_split
    from distill_cli.data.shards import scan_tar_split
    from tests.conftest import class_jpeg

    split = tmp_path / "train"
    split.mkdir()
    if source == "shards":
        with tarfile.open(split / "a.tar", "w") as tar:
            for name, raw in (("s0.jpg", class_jpeg(0, 0)), ("s0.cls", b"999999999999")):
                info = tarfile.TarInfo(name)
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        image = [{"bytes": class_jpeg(0, 0), "path": "0.jpg"}]
        table = pa.table({"image": image, "label": pa.array([999999999999], pa.int64())})
        pq.write_table(table, split / "train-00000-of-00001.parquet")
    start = time.monotonic()
    with pytest.raises(DistillError) as info:
        if source == "shards":
            scan_tar_split(str(split), "data.train_dir")
        else:
            scan_hf_split(split, "data.train_dir", "image", "label")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "1,000,000,000,000 classes is above 1,000,000" in message and "0..N-1" in message


@pytest.mark.parametrize(
    ("value", "mean"), [(float("nan"), None), (float("inf"), None), (0.5, 128)]
)
def test_a_float_tiff_with_non_finite_pixels_is_a_bad_file(value: float, mean: int | None) -> None:
    """A float TIFF of NaN was cast to uint8 as 0: a black image trained on without a word.
    It is now a bad file (counted, skipped or refused by `data.on_bad_image`)."""
    import io

    import numpy as np
    import torch
    from PIL import Image

    from distill_cli.data.pixels import decode_bytes

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, np.float32), mode="F").save(buf, format="TIFF")
    pixels = decode_bytes(torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8))
    if mean is None:
        assert pixels is None
    else:
        assert pixels is not None and pixels.shape == (3, 8, 8)
        assert int(pixels.float().mean()) == mean


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ('{"name": "t"}', "no 'run_dir'"),
        ("WRONG", "a value of another type"),
        ("[]", "not a JSON object (list)"),
        ('{"name": "t", "run_d', "not valid JSON"),
    ],
    ids=["missing-keys", "wrong-type", "a-list", "cut-short"],
)
def test_compare_says_which_summary_it_left_out(
    content: str,
    why: str,
    finished_run: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run whose summary.json was cut short or edited was compared from its metrics alone
    without a word (the report said so; compare did not); the report's note quoted Python's
    "ModelResult() argument after ** must be a mapping, not str"."""
    import json
    import shutil

    from rich.console import Console

    from distill_cli.cli import console as cli_console

    broken = tmp_path / "t"
    shutil.copytree(finished_run, broken)
    if content == "WRONG":
        summary = json.loads((broken / "summary.json").read_text())
        content = json.dumps({**summary, "student": "abc"})
    (broken / "summary.json").write_text(content)
    monkeypatch.setattr(cli_console, "console", Console(width=400, force_terminal=False))
    with pytest.raises(SystemExit) as exit_info:
        entry(["compare", str(broken), str(finished_run), "--no-plot"])
    out, err = capfd.readouterr()
    assert exit_info.value.code == 0, out + err
    notes = [line for line in (out + err).splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and f"{broken}: summary.json" in notes[0], out + err
    assert why in notes[0] and "argument after" not in notes[0], notes[0]


# --- a device, a pipe or a folder where the recipe names a text file: never read --------------


def _never_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading the file fails the test instead of reading /dev/zero until memory runs out."""

    def read(self: Path, *_: object, **__: object) -> str:
        raise AssertionError(f"{self} was read")

    monkeypatch.setattr(Path, "read_text", read)
    monkeypatch.setattr(Path, "read_bytes", read)
    monkeypatch.setattr(Path, "open", read)


@pytest.mark.parametrize("kind", ["device", "fifo", "folder", "loop", "huge"])
def test_a_class_names_file_that_is_no_file_is_refused_unread(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`class_names: /dev/zero` was read until the OOM killer ended the process (exit 137, no
    line); a FIFO waited for a writer forever."""
    import os

    from distill_cli.recipe.sections import ModelSpec

    target = {"device": Path("/dev/zero"), "folder": tmp_path}.get(kind, tmp_path / kind)
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "loop":
        (tmp_path / "other").symlink_to(target)
        target.symlink_to(tmp_path / "other")
    elif kind == "huge":
        with target.open("wb") as fh:  # sparse: no 65 MiB written
            fh.truncate(65 << 20)
    if not os.path.lexists(target):
        pytest.skip("no /dev/zero here")
    spec = ModelSpec(model="test_resnet", class_names=target)
    _never_read(monkeypatch)
    with pytest.raises(DistillError) as info:
        spec.names()
    what = {"device": "a device", "fifo": "a pipe (FIFO)", "folder": "a folder"}
    words = "65 MiB, more than" if kind == "huge" else what.get(kind, "a symlink loop")
    assert f"the class names file is {words}" in str(info.value)
    assert info.value.where == str(target)


@pytest.mark.parametrize("kind", ["fifo", "huge", "loop"])
def test_a_recipe_that_is_a_pipe_or_huge_is_refused_unread(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    target = tmp_path / "r.yaml"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "loop":  # was "recipe file not found", of a link that is there
        (tmp_path / "other.yaml").symlink_to(target)
        target.symlink_to(tmp_path / "other.yaml")
    else:
        with target.open("wb") as fh:
            fh.truncate(65 << 20)
    _never_read(monkeypatch)
    words = {"fifo": "not a regular file", "huge": "65 MiB", "loop": "a symlink loop"}[kind]
    with pytest.raises(DistillError, match=f"the recipe is {words}") as info:
        load_recipe(target)
    assert info.value.where == str(target)


def test_a_students_accuracy_table_that_is_a_device_is_refused_unread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`distill students --accuracy /dev/zero` read it until memory ran out."""
    from distill_cli.students import rank

    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero here")
    _never_read(monkeypatch)
    with pytest.raises(DistillError, match="the accuracy table is a device, not a file"):
        rank._read(Path("/dev/zero"), strict=True)


@pytest.mark.parametrize("kind", ["fifo", "device-link"])
def test_an_image_name_on_a_pipe_or_device_is_refused_at_the_scan(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mkfifo train/cat/x.jpg` (or `ln -s /dev/zero x.jpg`): `distill train` waited on the
    FIFO forever in the duplicate scan, and SIGTERM did not stop it."""
    import os

    from distill_cli.data.folders import scan_image_folder
    from tests.conftest import class_jpeg

    for label in range(2):
        folder = tmp_path / f"c{label}"
        folder.mkdir()
        for n in range(3):
            (folder / f"{n}.jpg").write_bytes(class_jpeg(label, n))
    odd = tmp_path / "c1" / "odd.jpg"
    if kind == "fifo":
        os.mkfifo(odd)
    elif Path("/dev/zero").exists():
        odd.symlink_to("/dev/zero")
    else:
        pytest.skip("no /dev/zero here")
    _never_read(monkeypatch)
    with pytest.raises(DistillError) as info:
        scan_image_folder(tmp_path)
    words = "a pipe (FIFO)" if kind == "fifo" else "a device"
    assert f"1 image name is not a file: odd.jpg is {words}" in str(info.value)
    assert info.value.where == str(odd)


def test_a_tar_shard_that_is_a_pipe_is_refused_unopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from distill_cli.data.shards import resolve_shards

    os.mkfifo(tmp_path / "train-000000.tar")
    _never_read(monkeypatch)
    with pytest.raises(DistillError, match=r"the shard train-000000.tar is a pipe \(FIFO\)"):
        resolve_shards(str(tmp_path), "data.train_dir")
