"""Long runs survive crashes, bad input gets a one-line error, nothing unsafe is loaded."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from distill_cli import api
from distill_cli.errors import RunFailed
from distill_cli.methods import StepOutput
from distill_cli.recipe.document import load_recipe
from distill_cli.rundir.layout import RunDir
from distill_cli.train.build import build
from distill_cli.train.trainer import Trainer
from tests.conftest import CLI, fm_body, teacher_body, write_recipe
from tests.test_cli import _assert_one_line_error, distill

ROOT = Path(__file__).resolve().parents[1]


def _long_body(out: Path) -> dict[str, Any]:
    """A supervised run of a few seconds with frequent checkpoints, single-threaded (bitwise)."""
    body = teacher_body(out, epochs=12)
    body["data"]["synthetic"]["train_size"] = 512
    body["schedule"].update(batch_size=16, checkpoint_every=7, log_every=8)
    body["runtime"] = {"threads": 1}
    return body


def _model_weights(run: Path) -> dict[str, torch.Tensor]:
    tensors = load_file(str(run / "checkpoints" / "last.safetensors"))
    return {k: v for k, v in tensors.items() if not k.startswith("__")}


def _popen(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "distill_cli", *args],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for_lock(run: Path, proc: subprocess.Popen[str]) -> None:
    """Until `proc` holds the run folder's lock (its setup is done and training begins)."""
    deadline = time.monotonic() + 120
    lock = run / ".distill-lock"
    while time.monotonic() < deadline and proc.poll() is None:
        if lock.is_file() and lock.read_text().strip() == str(proc.pid):
            return
        time.sleep(0.01)


def test_sigkill_at_random_points_then_resume_is_bit_identical(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ref = write_recipe(tmp_path / "a", "long", _long_body(tmp_path / "a" / "runs"))
    assert distill("run", str(ref), "-q").returncode == 0
    recipe = write_recipe(tmp_path / "b", "long", _long_body(tmp_path / "b" / "runs"))
    run = tmp_path / "b" / "runs" / "long"
    rng = random.Random(1234)
    kills, positions, window = 0, [], 1.5
    while kills < 5:
        proc = _popen("run", str(recipe), "--resume", "-q")
        _wait_for_lock(run, proc)  # set up and training: now a random point in steps or writes
        try:
            proc.wait(timeout=rng.uniform(0.0, window))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            last = run / "checkpoints" / "last.json"
            positions.append(json.loads(last.read_text())["step"] if last.is_file() else 0)
            if len(positions) > 1 and positions[-1] == positions[-2]:
                window *= 2  # a loaded machine: no save in the window, so the next waits longer
            continue
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
        subprocess.run(["rm", "-rf", str(run)], check=True)  # finished too soon: start over
        kills, positions, window = 0, [], max(1.5, window / 2)
    final = distill("run", str(recipe), "--resume", "-q")
    assert final.returncode == 0, final.stderr
    assert len(set(positions)) >= 2, f"kills did not land at different points: {positions}"
    a, b = _model_weights(tmp_path / "a" / "runs" / "long"), _model_weights(run)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)


def test_kill_during_a_checkpoint_write_leaves_the_previous_one(tmp_path: Path) -> None:
    path = tmp_path / "last.safetensors"
    script = f"""
import os, sys, time
import timm, torch
from pathlib import Path
from distill_cli.models.checkpoint import save_weights
model = timm.create_model("test_resnet", num_classes=3)
opt = torch.optim.AdamW(model.parameters())
save_weights(Path({str(path)!r}), model, {{"v": 1}}, opt, {{"step": 1}})
def stall(fd):
    print("writing", flush=True)
    time.sleep(120)
os.fsync = stall
torch.nn.init.zeros_(model.fc.weight)
save_weights(Path({str(path)!r}), model, {{"v": 2}}, opt, {{"step": 2}})
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers, "the kill should have hit the write of the temporary file"
    import timm

    from distill_cli.models.checkpoint import load_training

    model = timm.create_model("test_resnet", num_classes=3)
    state, _ = load_training(path, model, torch.optim.AdamW(model.parameters()))
    assert state["step"] == 1 and model.fc.weight.abs().sum() > 0
    assert json.loads(path.with_suffix(".json").read_text()) == {"v": 1}


def test_sigterm_saves_the_position_and_resume_finishes_identically(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    body = _long_body(tmp_path / "a" / "runs")
    body["schedule"]["checkpoint_every"] = None
    assert distill("run", str(write_recipe(tmp_path / "a", "long", body)), "-q").returncode == 0
    body = _long_body(tmp_path / "b" / "runs")
    body["schedule"]["checkpoint_every"] = None
    recipe = write_recipe(tmp_path / "b", "long", body)
    run = tmp_path / "b" / "runs" / "long"
    proc = _popen("run", str(recipe), "-q")
    while (
        not (run / "metrics.jsonl").is_file() or "train" not in (run / "metrics.jsonl").read_text()
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM" in err and "--resume" in err and "Traceback" not in err
    step = json.loads((run / "checkpoints" / "last.json").read_text())["step"]
    assert step % 32 != 0, "saved mid-epoch, not only at the last epoch end"
    assert distill("run", str(recipe), "--resume", "-q").returncode == 0
    a, b = _model_weights(tmp_path / "a" / "runs" / "long"), _model_weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)


def _nan_at(setup, steps: set[int]):
    original = setup.method.step
    calls = {"n": 0}

    def step(batch, epoch):
        calls["n"] += 1
        out = original(batch, epoch)
        if calls["n"] in steps:
            return StepOutput(out.loss * float("nan"), out.logs)
        return out

    setup.method.step = step


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    body = teacher_body(tmp_path / "runs", epochs=3)  # 4 steps per epoch
    recipe = load_recipe(write_recipe(tmp_path, "nan", body))
    setup = build(recipe)
    _nan_at(setup, {6})
    run = RunDir(recipe.run_dir)
    run.prepare(recipe.to_yaml(), resume=False, overwrite=False)
    with pytest.raises(RunFailed, match="at step 6"):
        Trainer(setup, run).fit()
    assert json.loads((run.path / "checkpoints" / "last.json").read_text())["step"] == 4
    weights = load_file(str(run.last))
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_nan_loss_skip_mode_counts_skipped_steps(tmp_path: Path) -> None:
    body = teacher_body(tmp_path / "runs", epochs=2)
    body["runtime"] = {"on_nonfinite": "skip"}
    recipe = load_recipe(write_recipe(tmp_path, "nan", body))
    setup = build(recipe)
    _nan_at(setup, {2, 5})
    run = RunDir(recipe.run_dir)
    run.prepare(recipe.to_yaml(), resume=False, overwrite=False)
    summary = Trainer(setup, run).fit()
    assert summary.skipped_steps == 2 and summary.steps == 8
    assert all(torch.isfinite(p).all() for p in setup.student.module.parameters())


def test_diverging_run_exits_1_with_one_line(tmp_path: Path, cli: CLI) -> None:
    body = teacher_body(tmp_path / "runs", epochs=2)
    body["optim"] = {"name": "sgd", "lr": 100, "clip_grad_norm": None}  # the most lr allows
    result = cli("run", str(write_recipe(tmp_path, "nan", body)))
    _assert_one_line_error(result, 1, "NaN/Inf at step")


def test_a_live_run_holds_its_folder(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, "t", teacher_body(tmp_path / "runs", epochs=1))
    with RunDir(tmp_path / "runs" / "t").lock():
        _assert_one_line_error(
            distill("run", str(recipe)), 2, "in use by a live run", str(os.getpid())
        )
    assert distill("run", str(recipe), "-q").returncode == 0  # released when the holder is gone


def test_pickled_checkpoint_is_refused_without_running_it(tmp_path: Path, cli: CLI) -> None:
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": Evil()}, tmp_path / "evil.pt")
    body = fm_body(tmp_path / "runs", tmp_path / "evil.pt")
    result = cli("run", str(write_recipe(tmp_path, "fm", body)))
    _assert_one_line_error(result, 2, "did not run it", "evil.pt", "state_dict()")
    assert not marker.exists()


def _write_images(folder: Path, n: int, size: int = 20) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        arr = (np.random.default_rng(i).random((size, size, 3)) * 255).astype("uint8")
        Image.fromarray(arr).save(folder / f"{i}.png")


def _folder_recipe(tmp_path: Path, **data: Any) -> Path:
    body = teacher_body(tmp_path / "runs", epochs=1)
    body["data"] = {"source": "image_folder", "root": str(tmp_path / "data"), "workers": 0, **data}
    body["schedule"]["batch_size"] = 4
    return write_recipe(tmp_path, "folder", body)


def test_undecodable_images_are_skipped_and_counted_or_fatal(tmp_path: Path, cli: CLI) -> None:
    for split in ("train", "val"):
        for cls in ("a", "b"):
            _write_images(tmp_path / "data" / split / cls, 4, size=6)  # smaller than the crop
    (tmp_path / "data" / "train" / "a" / "broken.jpg").write_bytes(b"not an image at all")
    recipe = _folder_recipe(tmp_path)
    summary = api.run(recipe, schedule__epochs=2)
    assert summary.bad_images == 1  # one bad file, read in each of two epochs, counted once
    printed = cli("run", str(recipe), "--overwrite")
    assert printed.returncode == 0
    said = " ".join(printed.stdout.split())  # the caption wraps at the terminal width
    assert "1 training image(s) could not be decoded and were skipped" in said
    # the generated images are alike in every class and split: their duplicates warning (stderr,
    # before the error) is tests/test_duplicates.py's business, off here
    recipe = _folder_recipe(tmp_path, on_bad_image="error", on_duplicates="off")
    _assert_one_line_error(
        cli("run", str(recipe), "--overwrite"), 2, "cannot decode image", "broken.jpg"
    )


@pytest.mark.parametrize(
    ("case", "needles"),
    [
        ("yaml", ["YAML syntax error", ".yaml:3"]),
        ("range", ["optim.clip_grad_norm"]),
        ("truncated", ["cannot read checkpoint"]),
        ("architecture", ["side file says it holds 'test_resnet'", "builds 'test_convnext'"]),
        ("classes", ["teacher predicts 7 classes", "data has 4"]),
        ("empty-folder", ["no images found"]),
        ("missing-folder", ["data folder not found"]),
        ("cuda", ["asks for CUDA"]),
    ],
)
def test_bad_input_is_one_line_with_exit_code_2(
    tmp_path: Path, trained_teacher: Path, cli: CLI, case: str, needles: list[str]
) -> None:
    body = fm_body(tmp_path / "runs", trained_teacher)
    if case == "yaml":
        path = tmp_path / "bad.yaml"
        path.write_text("name: x\nmethod:\n  name: a: b\nschedule: {}\n")
        _assert_one_line_error(cli("run", str(path)), 2, *needles)
        return
    if case == "range":
        body["optim"]["clip_grad_norm"] = -1
    elif case == "truncated":
        broken = tmp_path / "t.safetensors"
        broken.write_bytes(trained_teacher.read_bytes()[:200])
        body["teacher"]["checkpoint"] = str(broken)
    elif case == "architecture":
        body["teacher"]["model"] = "test_convnext"
    elif case == "classes":
        body["method"] = {"name": "kd"}
        body["teacher"] = {"model": "test_resnet", "num_classes": 7, "input_size": 32}
    elif case in ("empty-folder", "missing-folder"):
        if case == "empty-folder":
            (tmp_path / "data" / "train" / "a").mkdir(parents=True)
            (tmp_path / "data" / "val" / "a").mkdir(parents=True)
        body["data"] = {"source": "image_folder", "root": str(tmp_path / "data")}
    elif case == "cuda":
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        body["runtime"] = {"device": "cuda"}
    _assert_one_line_error(cli("run", str(write_recipe(tmp_path, "r", body))), 2, *needles)


def test_an_onnx_file_that_fails_to_load_is_one_line(tmp_path: Path, cli: CLI) -> None:
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"\x08\x07 this is not a protobuf of a model")
    _assert_one_line_error(cli("bench", "latency", str(broken)), 2, "fails to load", "model.onnx")
