"""The deployer, the student-chooser, the reproducer and the grayscale user (story 15).

Each test replays what such a user does, from the README and docs/ alone, and what went wrong:
a grayscale teacher's distillation saved a `recipe.yaml` that built a 3-channel teacher, so
re-running the run's own recipe was "checkpoint does not fit" and its export could not time the
teacher.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import onnx
import pytest
import torch
import yaml
from PIL import Image

from tests.conftest import CLI, refused, write_recipe

ROOT = Path(__file__).resolve().parents[1]

#: A timing plan that measures little: the tests check what is timed, not how fast
QUICK = ["--threads", "1", "--warmup", "1", "--runs", "2", "--min-time", "0", "-q"]


def _gray() -> dict[str, Any]:
    """Generated 1-channel 48 px images, the grayscale user's small industrial set."""
    return {
        "source": "synthetic",
        "synthetic": {"num_classes": 3, "train_size": 48, "val_size": 12, "image_size": 48,
                      "channels": 1},
    }  # fmt: skip


@pytest.mark.slow
def test_a_grayscale_teachers_run_saves_a_recipe_that_reruns_and_exports(
    tmp_path: Path, cli: CLI
) -> None:
    """The teacher trained with `in_chans: 1`; the distillation recipe names its checkpoint and
    leaves in_chans to its side file, as docs/recipe.md says. The run worked, but its saved
    recipe said `in_chans: 3`: the copy of it was refused ("the file's first convolution takes
    1 channel(s)"), and the export's note said "teacher not timed". Now the saved recipe says
    1, and the export times the teacher beside the non-square 40x32 student."""
    runs = tmp_path / "runs"
    teacher = {
        "model": {"model": "test_resnet", "input_size": 48, "in_chans": 1},
        "data": _gray(),
        "method": {"name": "supervised"},
        "schedule": {"epochs": 1, "batch_size": 16},
        "runtime": {"threads": 1},
        "output": {"dir": str(runs)},
    }
    assert cli("train", str(write_recipe(tmp_path, "gteacher", teacher)), "-q").returncode == 0
    student = {
        "teacher": {
            "model": "test_resnet",
            "checkpoint": str(runs / "gteacher" / "checkpoints" / "best.safetensors"),
            "check_accuracy": False,
        },
        "student": {"model": "test_efficientnet", "input_size": [40, 32], "in_chans": 1},
        "data": _gray(),
        "method": {"name": "function_matching"},
        "schedule": {"epochs": 1, "batch_size": 16},
        "runtime": {"threads": 1},
        "output": {"dir": str(runs)},
    }
    done = cli("run", str(write_recipe(tmp_path, "gstudent", student)), "-q")
    assert done.returncode == 0, done.stderr
    saved = runs / "gstudent" / "recipe.yaml"
    assert yaml.safe_load(saved.read_text())["teacher"]["in_chans"] == 1

    again = tmp_path / "again.yaml"
    shutil.copy(saved, again)  # a new run from the run's own recipe
    plan = cli("run", str(again), "--set", "name=again", "--dry-run")
    assert plan.returncode == 0, plan.stderr

    exported = cli("export", str(runs / "gstudent"), *QUICK, "--json")
    assert exported.returncode == 0, exported.stderr
    report = yaml.safe_load(exported.stdout)
    names = [e["name"] for e in report["latency"]["entries"]]
    assert "teacher/onnxruntime/fp32" in names, report["source"]
    assert report["model"]["input_size"] == [40, 32] and report["model"]["in_chans"] == 1
    assert report["preprocess"]["channel_order"] == "L"


def _photos(root: Path) -> None:
    """Three colour classes of JPEG photos of mixed sizes and aspects, train/ and val/."""
    colours = {"blue": (30, 40, 200), "green": (30, 180, 40), "red": (200, 30, 30)}
    for split, count in (("train", 8), ("val", 4)):
        for name, rgb in colours.items():
            (root / split / name).mkdir(parents=True)
            for n in range(count):
                size = ((64, 48), (50, 70), (80, 80))[n % 3]
                shade = tuple(min(255, v + 9 * n) for v in rgb)
                Image.new("RGB", size, shade).save(root / split / name / f"{n}.jpg")


def _fixed(source: Path, target: Path, batch: int) -> None:
    """The deployer's step for an edge runtime: onnxruntime's own tool fixes the batch."""
    subprocess.run(
        [sys.executable, "-m", "onnxruntime.tools.make_dynamic_shape_fixed", "--dim_param",
         "batch", "--dim_value", str(batch), str(source), str(target)],
        check=True, capture_output=True,
    )  # fmt: skip


@pytest.mark.slow
def test_a_deployers_batch_1_file_is_checked_quantized_timed_and_consumed(
    tmp_path: Path, cli: CLI, capfd: pytest.CaptureFixture[str]
) -> None:
    """The phone wants a fixed batch of 1. The deployer fixes the batch of the exported file with
    onnxruntime's tool and checks it as docs/export.md says (`--onnx shipped/model.onnx`), with
    int8 and a latency gate: that was ONNX Runtime's "Got invalid dimensions" traceback (parity
    fed it batches of 64). Now it is checked image by image, calibrated, timed at batch 1 and
    gated; the consumer example classifies with it as distill measured; a fixed batch of 2 is
    one line naming the tool's command. `--input-size 64` for the run is refused naming
    `--dynamic-size` (it pointed only at re-exporting the weights under a timm name). The int8
    file checked alone with `--onnx` fails fp32 parity, now with a note saying to check it as a
    variant."""
    _photos(tmp_path / "photos")
    body = {
        "model": {"model": "test_resnet", "input_size": 40},
        "data": {"source": "image_folder", "root": str(tmp_path / "photos"), "workers": 0},
        "method": {"name": "supervised"},
        "optim": {"lr": 3e-3},
        "schedule": {"epochs": 2, "batch_size": 8},
        "runtime": {"threads": 1},
        "output": {"dir": str(tmp_path / "runs")},
    }
    run = tmp_path / "runs" / "edge"
    assert cli("train", str(write_recipe(tmp_path, "edge", body)), "-q").returncode == 0
    assert cli("export", str(run), "--no-latency", "--exporter", "torchscript").returncode == 0
    shipped = tmp_path / "shipped" / "model.onnx"
    shipped.parent.mkdir()
    _fixed(run / "export" / "model.onnx", shipped, 1)

    out = tmp_path / "checked"
    gates = ["--max-latency-ms", "1000", "--min-variant-agreement", "50"]
    done = cli("export", str(run), "--onnx", str(shipped), "--out", str(out), "--quantize",
               "int8", "--no-teacher", *gates, *QUICK, "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["parity"]["passed"] and report["parity"]["inputs"]["images"] == 12
    assert report["variants"]["int8"]["calibration"]["images"] == 24
    assert report["latency"]["protocol"]["batch"] == 1 and report["gates"]["passed"]
    int8 = onnx.load(str(out / "model.int8.onnx"), load_external_data=False)
    assert int8.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1

    spec = importlib.util.spec_from_file_location("consumer", ROOT / "examples/onnx_consumer.py")
    assert spec is not None and spec.loader is not None
    consumer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(consumer)
    session, pre = consumer.load(shipped)
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["distill.channel_order"] == "RGB" == pre["channel_order"]
    paths = sorted((tmp_path / "photos" / "val").glob("*/*.jpg"))
    logits = consumer.classify(session, pre, paths)
    named = [pre["class_names"][i] for i in logits.argmax(1)]
    hits = [name == p.parent.name for name, p in zip(named, paths, strict=True)]
    assert 100 * sum(hits) / len(hits) == pytest.approx(report["parity"]["top1_onnx"])

    # the int8 file checked on its own failed fp32 parity without a word of why
    int8_alone = cli("export", str(run), "--onnx", str(out / "model.int8.onnx"), "--out",
                     str(tmp_path / "c8"), "--no-latency", "-q")  # fmt: skip
    assert int8_alone.returncode == 1 and "error: parity" in int8_alone.stderr
    said = " ".join((int8_alone.stdout + int8_alone.stderr).split())  # the table wraps lines
    assert "model.int8.onnx is an int8 file" in said and "--quantize int8" in said, said

    _fixed(run / "export" / "model.onnx", tmp_path / "two.onnx", 2)
    refused(["export", str(run), "--onnx", str(tmp_path / "two.onnx"), "--out",
             str(tmp_path / "x")], "fixed batch of 2", capfd)  # fmt: skip
    # the phone's camera pipeline gives 64 px: the refusal names the flag that makes such a file
    refused(["export", str(run), "--input-size", "64"], "--dynamic-size exports", capfd)


def test_a_four_channel_model_is_refused_saying_distills_data_has_one_or_three(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The multispectral user keeps RGBA PNGs (a fourth band in alpha) and sets `in_chans: 4`.
    The refusal said "or use 4-channel data", which no data source gives (every photo is
    decoded to RGB, alpha composited on white, as docs/data.md says); now it says so."""
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for n in range(2):
                band = (90 * n, 200 * (cls == "a"), 40, 128)
                Image.new("RGBA", (20, 16), band).save(tmp_path / split / cls / f"{n}.png")
    body = {
        "model": {"model": "test_resnet", "input_size": 16, "in_chans": 4},
        "data": {"source": "image_folder", "root": str(tmp_path), "workers": 0},
        "method": {"name": "supervised"},
        "schedule": {"epochs": 1, "batch_size": 4},
        "output": {"dir": str(tmp_path / "runs")},
    }
    recipe = write_recipe(tmp_path, "rgba", body)
    line = refused(["train", str(recipe), "--dry-run"], "model.in_chans: 3", capfd)
    assert "1 or 3 channels" in line and "4-channel data" not in line


@pytest.mark.slow
def test_the_student_chooser_trains_and_gates_what_students_picked(
    tmp_path: Path, cli: CLI
) -> None:
    """`distill students RUN --write-recipe` -> `distill run` -> the export line the recipe's
    header gives. The header said the pick "ran at p50 X ms" even when that figure missed the
    timing protocol (a short or noisy timing, flagged in the table only), so the file read alone
    promised a figure the export then did not see; it now says the figure is not protocol. The
    run trains the picked student at the asked size, and the header's export gate passes."""
    runs = tmp_path / "runs"
    teacher = {
        "model": {"model": "test_resnet", "input_size": 32},
        "data": {"source": "synthetic", "synthetic": {"num_classes": 3, "train_size": 48}},
        "method": {"name": "supervised"},
        "schedule": {"epochs": 1, "batch_size": 16},
        "runtime": {"threads": 1},
        "output": {"dir": str(runs)},
    }
    assert cli("train", str(write_recipe(tmp_path, "t", teacher)), "-q").returncode == 0
    chosen = tmp_path / "student.yaml"
    picked = cli(
        "students", str(runs / "t"), "--max-latency-ms", "500", "--input-size", "32",
        "--candidates", "test_efficientnet", "--max-ratio", "2", "--threads", "1",
        "--warmup", "0", "--runs", "2",
        "--min-time", "0", "--cache-dir", str(tmp_path / "cache"), "--write-recipe", str(chosen),
        "--data", "synthetic", "--name", "picked", "-q",
    )  # fmt: skip
    assert picked.returncode == 0, picked.stderr
    header = [line for line in chosen.read_text().splitlines() if line.startswith("#")]
    assert any("does not meet the timing protocol (short" in line for line in header), header
    gate = next(line for line in header if "distill export" in line)
    recipe = yaml.safe_load(chosen.read_text())
    assert recipe["student"]["model"] == "test_efficientnet"
    assert recipe["student"]["input_size"] == 32
    offline = ["--set", "student.pretrained=false"]  # timm's test weights need the Hub
    trained = cli("run", str(chosen), "--set", "schedule.epochs=1", "--set",
                  f"output.dir={runs}", *offline, "-q")  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    args = gate.split("distill export ", 1)[1].split()
    assert args[:1] == ["runs/picked"] and "--max-latency-ms" in args
    exported = cli("export", str(runs / "picked"), *args[1:], *QUICK[2:], "--no-teacher")
    assert exported.returncode == 0, exported.stderr[-2000:]


def _weights(run: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(run / "checkpoints" / "last.safetensors"))


@pytest.mark.slow
def test_the_reproducer_kills_resumes_and_moves_the_project(tmp_path: Path, cli: CLI) -> None:
    """Same recipe, same seed: identical weights. `kill -9` mid-run, the project folder moved
    (`mv proj moved`), then `distill run runs/cut/recipe.yaml --resume` from the new place ends
    on the uninterrupted run's weights, and the moved run exports and reports from elsewhere."""
    proj = tmp_path / "proj"
    _photos(proj / "photos")
    teacher = {
        "model": {"model": "test_resnet", "input_size": 32},
        "data": {"source": "image_folder", "root": "photos", "workers": 0},
        "method": {"name": "supervised"},
        "optim": {"lr": 3e-3},
        "schedule": {"epochs": 2, "batch_size": 8},
        "runtime": {"threads": 1},
    }
    assert cli("train", str(write_recipe(proj, "teacher", teacher)), "-q", cwd=proj).returncode == 0
    fm = {
        "teacher": {"model": "test_resnet", "checkpoint": "runs/teacher", "check_accuracy": False},
        "student": {"model": "test_efficientnet", "input_size": 24},
        "data": {"source": "image_folder", "root": "photos", "workers": 1},
        "method": {"name": "function_matching"},
        "schedule": {"epochs": 16, "batch_size": 8, "log_every": 1},
        "runtime": {"threads": 1},
    }
    recipe = write_recipe(proj, "fm", fm)
    for name in ("whole", "again"):
        done = cli("run", recipe.name, "--set", f"name={name}", "-q", cwd=proj)
        assert done.returncode == 0, done.stderr
    whole = _weights(proj / "runs" / "whole")
    again = _weights(proj / "runs" / "again")
    assert all(torch.equal(whole[k], again[k]) for k in whole)

    cut = subprocess.Popen(
        [sys.executable, "-m", "distill_cli", "run", "fm.yaml", "--set", "name=cut", "-q"],
        cwd=proj, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    metrics = proj / "runs" / "cut" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and cut.poll() is None:
        if metrics.is_file() and '"epoch": 3' in metrics.read_text():
            break
        time.sleep(0.05)
    cut.kill()  # kill -9, mid-run
    cut.wait()
    assert not (proj / "runs" / "cut" / "summary.json").exists()

    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    proj.rename(moved)
    resumed = cli("run", "runs/cut/recipe.yaml", "--resume", "-q", cwd=moved)
    assert resumed.returncode == 0, resumed.stderr
    cut_weights = _weights(moved / "runs" / "cut")
    assert all(torch.equal(whole[k], cut_weights[k]) for k in whole)

    exported = cli("export", "moved/runs/cut", "--no-latency", "--exporter", "torchscript",
                   "--min-top1", "5", "-q", "--json", cwd=moved.parent)  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-2000:]
    report = json.loads(exported.stdout)
    assert report["parity"]["inputs"]["labeled"] and report["parity"]["inputs"]["images"] == 12
    assert cli("report", "moved/runs/cut", cwd=moved.parent).returncode == 0
    assert (moved / "runs" / "cut" / "report.html").is_file()


def _wait(started: Any, seconds: float) -> None:
    started.set()  # the fork's hooks have run: the child is a worker at work
    time.sleep(seconds)


def test_a_forked_worker_does_not_keep_a_killed_runs_folder_locked(tmp_path: Path) -> None:
    """`kill -9` of a run left its forked decode workers alive a few seconds (torch's watchdog
    ends them), each holding a copy of the run folder's lock: `--resume` at once was refused as
    "in use by a live run (pid N)" with N already gone. A forked child now closes its copies:
    the lock ends with the process that took it."""
    import multiprocessing

    from distill_cli.errors import DistillError
    from distill_cli.locks import lock_exclusive, lock_held, unlock

    path = tmp_path / ".distill-lock"
    fd = lock_exclusive(path, create=True, doing="lock", busy=lambda _: DistillError("busy"))
    os.pwrite(fd, b"4242", 0)
    fork = multiprocessing.get_context("fork")
    started = fork.Event()
    child = fork.Process(target=_wait, args=(started, 20))
    child.start()
    try:
        assert started.wait(10)
        assert lock_held(path) == "4242"
        unlock(fd)  # what the kernel does for the killed run
        assert child.is_alive() and lock_held(path) is None
    finally:
        child.kill()
        child.join()
