"""Shared fixtures: tiny recipes on generated data, written into a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

# distill's caches (model sizes, student timings, bench train throughputs) go to the suite's own
# folder, not the user's ~/.cache/distill: a test's throughput of a tiny pair was picked up by a
# later `--dry-run` of the same pair. Kept between local runs (.pytest_cache), fresh on CI.
os.environ["DISTILL_CACHE_DIR"] = str(
    Path(__file__).resolve().parents[1] / ".pytest_cache" / "distill"
)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # scripts/test.sh runs a worker per core: one torch thread each (also in the CLI runs the
    # tests start, through OMP_NUM_THREADS), as two threads per worker oversubscribe the cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
else:
    torch.set_num_threads(2)


def write_recipe(folder: Path, name: str, body: dict[str, Any]) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **body}, sort_keys=False))
    return path


def teacher_body(out: Path, epochs: int = 3) -> dict[str, Any]:
    return {
        "model": {"model": "test_resnet", "input_size": 32},
        "data": {"source": "synthetic", "synthetic": {"num_classes": 4, "train_size": 128}},
        "method": {"name": "supervised"},
        "optim": {"lr": 3e-3},
        "schedule": {"epochs": epochs, "batch_size": 32, "log_every": 2},
        "output": {"dir": str(out)},
    }


def fm_body(out: Path, teacher_ckpt: Path | None, epochs: int = 2) -> dict[str, Any]:
    teacher: dict[str, Any] = {"model": "test_resnet", "input_size": 32}
    if teacher_ckpt is not None:
        teacher["checkpoint"] = str(teacher_ckpt)
    else:
        teacher["num_classes"] = 4
    return {
        "teacher": teacher,
        "student": {"model": "test_efficientnet", "input_size": 24},
        "data": {"source": "synthetic", "synthetic": {"num_classes": 4, "train_size": 128}},
        "method": {"name": "function_matching", "temperature": 2.0},
        "optim": {"lr": 3e-3},
        "schedule": {"epochs": epochs, "batch_size": 32, "log_every": 2},
        "output": {"dir": str(out)},
    }


@pytest.fixture
def fm(tmp_path: Path) -> Path:
    """A function-matching recipe on generated images (no teacher checkpoint), in tmp_path."""
    return write_recipe(tmp_path, "fm", fm_body(tmp_path / "runs", None))


@pytest.fixture
def sup(tmp_path: Path) -> Path:
    """A supervised recipe on generated images, in tmp_path."""
    return write_recipe(tmp_path, "sup", teacher_body(tmp_path / "runs"))


def refused(argv: list[str], needle: str, capfd: pytest.CaptureFixture[str]) -> str:
    """Run the CLI in-process; it must end with exit 2 and exactly one `error:` line holding
    `needle` and a hint (` - `), without a traceback. The bad-input batteries' one check."""
    from distill_cli.cli.entry import entry

    with pytest.raises(SystemExit) as exit_info:
        entry(argv)
    out, err = capfd.readouterr()
    assert exit_info.value.code == 2, out + err
    lines = [line for line in (out + err).splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in out + err, out + err
    assert needle in lines[0] and " - " in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def tiny_recipes(tmp_path: Path) -> dict[str, Path]:
    """A supervised teacher recipe and a function-matching recipe that uses its checkpoint."""
    runs = tmp_path / "runs"
    teacher = write_recipe(tmp_path, "teacher", teacher_body(runs))
    ckpt = runs / "teacher" / "checkpoints" / "best.safetensors"
    fm = write_recipe(tmp_path, "fm", fm_body(runs, ckpt))
    return {"teacher": teacher, "fm": fm, "runs": runs, "teacher_ckpt": ckpt}


@pytest.fixture(scope="session")
def trained_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A teacher trained once per session on the synthetic data; returns its best checkpoint."""
    from distill_cli import api

    folder = tmp_path_factory.mktemp("teacher")
    body = teacher_body(folder / "runs", epochs=4)
    body["data"]["synthetic"]["train_size"] = 1024  # a confident teacher, not just a right one
    recipe = write_recipe(folder, "teacher", body)
    summary = api.run(recipe)
    assert summary.student.top1 is not None
    return folder / "runs" / "teacher" / "checkpoints" / "best.safetensors"


CLI = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def cli(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CLI:
    """`distill ARGS` run in this process: (args, cwd=None) -> a CompletedProcess with its exit
    code and what it wrote to the file descriptors 1 and 2, as tests/test_cli.py's `distill`
    returns it from a subprocess. For the tests that check a command's output and exit code, not
    the process boundary (signals, a fresh interpreter, torchrun): a subprocess costs a torch
    import (3-5 s of CPU) each time."""
    from distill_cli.cli.entry import entry

    def show(message: Any, category: Any, filename: str, lineno: int, *_: Any) -> None:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno))

    def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        capfd.readouterr()  # what the test printed before is not the command's
        with monkeypatch.context() as scoped, warnings.catch_warnings():
            # a warning reaches stderr as in a fresh interpreter (pytest would record it)
            warnings.resetwarnings()
            for quiet in (DeprecationWarning, PendingDeprecationWarning, ImportWarning):
                warnings.simplefilter("ignore", quiet)
            warnings.simplefilter("ignore", ResourceWarning)
            warnings.showwarning = show
            if cwd is not None:
                scoped.chdir(cwd)
            try:
                entry(list(args))
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess(["distill", *args], code, out, err)

    return run


#: The files that hold the suite's longest tests (the benchmarks' --quick runs, kills and
#: resumes, several processes): collected first, so that pytest-xdist, which hands out a file at
#: a time in collection order, starts them at once instead of leaving one worker at the end.
LONG_FILES = (
    "test_gpu_check.py",
    "test_patience.py",
    "test_full_data.py",
    "test_reliability.py",
    "test_interrupts.py",
    "test_multinode.py",
    "test_distributed.py",
    "test_sync_bn.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long files first (stable: every other test keeps its order); tests marked `gpu`
    need CUDA, and without it they are skipped, not failed."""
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def class_jpeg(label: int, n: int) -> bytes:
    """A small JPEG whose colour channel `label` is lit and row `n` white: every image its own,
    its class visible (the streamed-data tests write shards and parquet files of them)."""
    from torchvision.io import encode_jpeg

    img = torch.zeros(3, 20, 16, dtype=torch.uint8)
    img[label] = 200
    img[:, n % 20, :] = 255
    return bytes(encode_jpeg(img, quality=95).numpy())
