"""Run folders, resume and checkpoint hygiene (issue 12, items 5, 6 and 8).

distill deletes only what it made: run names are plain folder names, every run folder carries a
marker, a folder without one is never emptied, a run whose `last` is gone is not wiped by
`--resume`, stale temp files go, files follow the umask, and the folder is locked before any
model or data is built.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from distill_cli import api
from distill_cli.errors import DistillError
from distill_cli.recipe.document import load_recipe
from distill_cli.recipe.run_name import check_run_name
from distill_cli.rundir.layout import MARKER, RunDir
from tests.conftest import teacher_body, write_recipe


def _recipe(tmp_path: Path, name: str = "t", epochs: int = 1, **output: str) -> Path:
    body = teacher_body(tmp_path / "runs", epochs=epochs)
    body["data"]["synthetic"]["train_size"] = 64
    body["output"].update(output)
    return write_recipe(tmp_path, name, body)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", [".", "..", "a/b", "/tmp/x", "../runs", "a\\b", ""])
def test_run_names_are_plain_folder_names(tmp_path: Path, name: str) -> None:
    recipe = _recipe(tmp_path)
    (tmp_path / "keep.txt").write_text("user data")
    before = _tree(tmp_path)
    with pytest.raises(DistillError, match=r"not a plain folder name|output\.name"):
        api.run(recipe, output__name=name, overwrite=True)
    assert _tree(tmp_path) == before
    with pytest.raises(DistillError):
        check_run_name(name)


def test_recipe_names_dot_and_dotdot_are_refused(tmp_path: Path) -> None:
    for name in (".", ".."):
        body = teacher_body(tmp_path / "runs")
        path = tmp_path / "r.yaml"
        import yaml

        path.write_text(yaml.safe_dump({"name": name, **body}))
        with pytest.raises(DistillError, match="name"):
            api.plan(path)


def test_a_folder_distill_did_not_make_is_never_emptied(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    mine = tmp_path / "runs" / "photos"
    mine.mkdir(parents=True)
    (mine / "holiday.jpg").write_bytes(b"not really a jpeg")
    before = _tree(tmp_path)
    for flags in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(DistillError, match="not a distill run"):
            api.run(recipe, output__name="photos", **flags)
    assert _tree(tmp_path) == before


def test_runs_are_marked_and_overwrite_replaces_only_a_marked_run(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    result = api.run(recipe)
    run = RunDir(result.run_dir)
    assert run.marker.is_file() and run.best.is_file()
    (run.path / "notes.txt").write_text("mine")  # a user's file inside a run folder
    (run.path / "report_loss.png").write_bytes(b"old figure")  # distill's: replaced
    api.run(recipe, overwrite=True)
    assert run.marker.is_file() and (run.path / "notes.txt").read_text() == "mine"
    assert not (run.path / "report_loss.png").exists()


def test_a_run_from_before_the_marker_is_still_a_run(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, epochs=2)
    run = RunDir(api.run(recipe, schedule__epochs=2).run_dir)
    run.marker.unlink()  # what a run made by an older distill looks like
    api.run(recipe, schedule__epochs=2, overwrite=True)
    assert run.marker.is_file()


def test_a_failed_build_leaves_no_folder_behind(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    with pytest.raises(DistillError, match="unknown timm model"):
        api.run(recipe, model__model="resnet_18")
    assert not (tmp_path / "runs" / "t").exists()


def test_resume_without_last_refuses_instead_of_wiping(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    run = RunDir(api.run(recipe).run_dir)
    run.last.unlink()  # a natural way to save disk once a run is done
    run.last.with_suffix(".json").unlink()
    before = _tree(run.path)
    with pytest.raises(DistillError, match=r"last\.safetensors is missing"):
        api.run(recipe, resume=True)
    assert _tree(run.path) == before
    assert run.best.is_file() and run.summary.is_file()


def test_a_moved_run_folder_resumes_and_a_changed_recipe_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project copied elsewhere (a cluster's scratch disk) resumes from its new place: the
    run folder is where it is, whatever output.dir was saved as, and the data moved with it is
    the same data by its fingerprint. A recipe changed on --resume is refused naming the keys
    and values that differ, not only "the recipe differs"."""
    import shutil

    from PIL import Image

    old = tmp_path / "laptop"
    for split in ("train", "val"):
        for shade, cls in enumerate(("cat", "dog")):
            (old / "photos" / split / cls).mkdir(parents=True)
            for i in range(4):
                pixels = Image.new("RGB", (8, 8), (120 * shade, 10 * i, 0))
                pixels.save(old / "photos" / split / cls / f"{i}.png")
    body = teacher_body(Path("runs"), epochs=1)  # relative to the cwd, as users write it
    body["data"] = {"source": "image_folder", "root": "photos", "workers": 0}
    body["schedule"]["batch_size"] = 4
    write_recipe(old, "t", body)
    monkeypatch.chdir(old)
    api.run(Path("t.yaml"))
    new = tmp_path / "scratch"
    shutil.copytree(old, new)
    shutil.rmtree(old)
    monkeypatch.chdir(new)
    assert api.run(Path("t.yaml"), resume=True).student.top1 is not None
    from distill_cli.export.source import resolve_source  # its data moved with it: parity on it

    source = resolve_source(str(new / "runs" / "t"))
    assert source.data is not None and source.recipe is not None
    assert source.recipe.data.root == new / "photos" and not source.notes
    with pytest.raises(DistillError, match=r"differs .*: optim\.lr: 0\.003 -> 0\.5 \("):
        api.run(Path("t.yaml"), resume=True, optim__lr=0.5)


def _photo_project(root: Path, epochs: int) -> Path:
    """A project folder: photos/ (train, val) and t.yaml naming them relative to the cwd."""
    from PIL import Image

    for split in ("train", "val"):
        for shade, cls in enumerate(("cat", "dog")):
            (root / "photos" / split / cls).mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (8, 8), (120 * shade, 10 * i, 0)).save(
                    root / "photos" / split / cls / f"{i}.png"
                )
    body = teacher_body(Path("runs"), epochs=epochs)
    body["data"] = {"source": "image_folder", "root": "photos", "workers": 0}
    body["schedule"]["batch_size"] = 4
    return write_recipe(root, "t", body)


def test_a_runs_saved_recipe_resumes_the_run_it_is_in_after_the_project_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`distill run runs/t/recipe.yaml --resume` (the line distill gives for a run) in a copy
    of the project resumed the ORIGINAL run: the saved recipe's absolute output.dir pointed
    there, so the copy's run was never continued and the original was written into. The run
    is the folder that holds the recipe, and its data is followed to where it moved."""
    import shutil

    old, copy, moved = tmp_path / "laptop", tmp_path / "scratch", tmp_path / "renamed"
    _photo_project(old, epochs=2)
    monkeypatch.chdir(old)
    api.run(Path("t.yaml"), schedule__epochs=1)  # as if stopped after its first epoch
    shutil.copytree(old, copy)
    before = _tree(old / "runs")
    monkeypatch.chdir(copy)
    saved = Path("runs/t/recipe.yaml")
    assert load_recipe(saved).run_dir == copy / "runs" / "t"
    summary = api.run(saved, resume=True, schedule__epochs=1)
    assert summary.run_dir == copy / "runs" / "t"
    assert _tree(old / "runs") == before  # the original project is left alone
    shutil.copytree(copy, moved)
    monkeypatch.chdir(tmp_path)
    shutil.rmtree(copy)
    shutil.rmtree(old)  # moved, not copied: the saved paths are gone
    rec = load_recipe(moved / "runs" / "t" / "recipe.yaml")
    assert rec.data.root == moved / "photos" and rec.run_dir == moved / "runs" / "t"
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)  # from another folder, by its full path
    summary = api.run(moved / "runs" / "t" / "recipe.yaml", resume=True, schedule__epochs=1)
    assert summary.run_dir == moved / "runs" / "t"
    # a recipe.yaml outside a run (copied out, renamed) is the user's: left as written
    out = moved / "runs" / "t2"
    out.mkdir()
    text = (moved / "runs" / "t" / "recipe.yaml").read_text().replace("name: t\n", "name: t2\n", 1)
    (out / "recipe.yaml").write_text(text)
    import yaml

    written = Path(yaml.safe_load(text)["output"]["dir"])
    assert written != moved / "runs" and load_recipe(out / "recipe.yaml").run_dir == written / "t2"


def test_a_teacher_that_moved_with_the_run_folder_is_the_same_teacher(tmp_path: Path) -> None:
    """The saved recipe holds absolute paths: a teacher checkpoint inside the project copied to
    a cluster was "teacher.checkpoint: /laptop/... -> /scratch/..." on --resume. A path that
    moved with the run folder (the same place under the new project root) is the same file;
    another path is still a change, named."""
    from distill_cli.recipe.document import load_recipe
    from distill_cli.rundir.checks import recipe_changes

    old, new = tmp_path / "laptop", tmp_path / "scratch"
    for base in (old, new):
        (base / "teachers").mkdir(parents=True)
        (base / "teachers" / "t.pt").write_bytes(b"")
    body = teacher_body(old / "runs", epochs=1)
    body["teacher"] = {"model": "test_resnet", "checkpoint": str(old / "teachers" / "t.pt")}
    body["method"] = {"name": "kd"}
    saved = tmp_path / "saved.yaml"
    saved.write_text(load_recipe(write_recipe(tmp_path, "t", body)).to_yaml())
    body["output"]["dir"] = str(new / "runs")
    body["teacher"]["checkpoint"] = str(new / "teachers" / "t.pt")
    moved = load_recipe(write_recipe(tmp_path, "t", body)).to_yaml()
    assert recipe_changes(saved, moved, run=new / "runs" / "t") == []
    (new / "other.pt").write_bytes(b"")
    body["teacher"]["checkpoint"] = str(new / "other.pt")
    other = load_recipe(write_recipe(tmp_path, "t", body)).to_yaml()
    changed = recipe_changes(saved, other, run=new / "runs" / "t")
    assert [c.key for c in changed] == ["teacher.checkpoint"] and changed[0].moved


def test_resume_and_overwrite_together_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match="contradict"):
        api.run(_recipe(tmp_path), resume=True, overwrite=True)


def test_stale_temp_files_are_removed_at_the_next_start(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, epochs=2)
    run = RunDir(api.run(recipe, schedule__epochs=1).run_dir)
    # what a kill in the middle of atomic_write leaves (GBs for a real model)
    stale = [run.checkpoints / ".last.safetensors.k1ll3d.tmp", run.path / ".summary.json.x.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 1024)
    keep = run.path / "user.tmp"  # not ours: left alone, even by --overwrite
    keep.write_text("x")
    api.run(recipe, schedule__epochs=1, overwrite=True)
    assert not any(p.exists() for p in stale) and keep.read_text() == "x"
    run2 = RunDir(api.run(_recipe(tmp_path, "t2", epochs=2)).run_dir)
    (run2.checkpoints / ".best.safetensors.zz.tmp").write_bytes(b"x")
    run2.last.unlink()
    run2.best.unlink()
    run2.summary.unlink()
    api.run(_recipe(tmp_path, "t2", epochs=2), resume=True)  # died before `last`: starts over
    assert not (run2.checkpoints / ".best.safetensors.zz.tmp").exists()


def test_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        run = RunDir(api.run(_recipe(tmp_path)).run_dir)
    finally:
        os.umask(old)
    for path in (run.best, run.last, run.summary, run.recipe, run.best.with_suffix(".json")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_the_folder_is_locked_before_models_and_data_are_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = _recipe(tmp_path)
    run = RunDir(tmp_path / "runs" / "t")

    def build(*args: object, **kwargs: object) -> None:
        raise AssertionError("built models and data while another run held the folder")

    with run.lock():
        monkeypatch.setattr("distill_cli.train.engine.build", build)
        with pytest.raises(DistillError, match="in use by a live run"):
            api.run(recipe)
    assert MARKER == ".distill-run"


def test_what_the_folder_alone_refuses_is_refused_before_anything_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forgotten --resume, a changed recipe on --resume and a run whose `last` is gone are
    told before the data is scanned and the teacher loaded (minutes on a real data set)."""
    recipe = _recipe(tmp_path)
    run = RunDir(tmp_path / "runs" / "t")
    run.prepare(load_recipe(recipe).to_yaml(), resume=False, overwrite=False)

    def build(*args: object, **kwargs: object) -> None:
        raise AssertionError("built models and data for a run the folder refuses")

    monkeypatch.setattr("distill_cli.train.engine.build", build)
    with pytest.raises(DistillError, match="already holds a run"):
        api.run(recipe)
    with pytest.raises(DistillError, match=r"differs .*schedule\.epochs: 1 -> 2"):
        api.run(recipe, schedule__epochs=2, resume=True)
    run.best.write_bytes(b"")  # results without `last`
    with pytest.raises(DistillError, match=r"last\.safetensors is missing"):
        api.run(recipe, resume=True)
