"""The deployer, the student-chooser, the reproducer and the grayscale user (story 15).

Each test replays what such a user does, from the README and docs/ alone, and what went wrong:
a grayscale teacher's distillation saved a `recipe.yaml` that built a 3-channel teacher, so
re-running the run's own recipe was "checkpoint does not fit" and its export could not time the
teacher.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import CLI, write_recipe

#: A timing plan that measures little: the tests check what is timed, not how fast
QUICK = ["--threads", "1", "--warmup", "1", "--runs", "2", "--min-time", "0", "-q"]


def _gray() -> dict[str, Any]:
    """Generated 1-channel 48 px images, the grayscale user's small industrial set."""
    return {
        "source": "synthetic",
        "synthetic": {"num_classes": 3, "train_size": 48, "val_size": 12, "image_size": 48,
                      "channels": 1},
    }  # fmt: skip


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
