"""The API inside the user's own process: each call leaves it as it was found.

A notebook or a script calls `distill_cli.api` many times in one process; after every call,
returned or raised, the process must be as before: torch threads, backend flags, default dtype,
RNG states (torch, numpy, random), warnings filters, logging, signal handlers, environment,
working directory, sys.path, open files, threads and child processes. The snapshot below is
written here, independently of `distill_cli.process_state`, so it checks that module rather
than repeating it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import multiprocessing
import os
import random
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from distill_cli import api
from distill_cli.errors import DistillError
from distill_cli.process_state import leaves_process_as_found
from tests.conftest import fm_body, teacher_body, write_recipe

#: Font files matplotlib keeps open in its font cache once it has drawn with them (a report's
#: first figure): the library's cache, the same files for every later call.
FONT_SUFFIXES = (".ttf", ".otf", ".afm", ".pfb")


def _open_files() -> dict[str, str]:
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, closed by now
            continue
        if not target.endswith(FONT_SUFFIXES):
            found[fd] = target
    return found


def _loggers() -> dict[str, Any]:
    loggers = {"": logging.root, **logging.root.manager.loggerDict}
    return {
        name: (log.level, tuple(log.handlers), log.propagate, log.disabled)
        for name, log in loggers.items()
        if isinstance(log, logging.Logger)
    }


def _snapshot() -> dict[str, Any]:
    """Everything process-wide a call could leave changed."""
    gc.collect()  # objects a call dropped (a finished loader's workers) are gone
    backends = torch.backends
    return {
        "threads": torch.get_num_threads(),
        "interop threads": torch.get_num_interop_threads(),
        "cudnn": (backends.cudnn.benchmark, backends.cudnn.deterministic, backends.cudnn.enabled),
        "fp32 precision": (
            backends.fp32_precision,
            backends.cuda.matmul.fp32_precision,
            backends.cudnn.conv.fp32_precision,
            backends.mkldnn.matmul.fp32_precision,
        ),
        "default dtype": torch.get_default_dtype(),
        "deterministic": (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        ),
        "grad": torch.is_grad_enabled(),
        "torch rng": torch.get_rng_state().tolist(),
        "torch seed": torch.initial_seed(),
        "numpy rng": json.dumps(np.random.get_state(legacy=False), default=str),
        "random": random.getstate(),
        "warnings": list(warnings.filters),
        "logging disable": logging.root.manager.disable,
        "signals": {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)},
        "environ": dict(os.environ),
        "cwd": os.getcwd(),
        "sys.path": list(sys.path),
        "open files": _open_files(),
        "threads alive": sorted(t.name for t in threading.enumerate()),
        "children": sorted(p.pid for p in multiprocessing.active_children()),
    }


def _changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    changed = [key for key in before if before[key] != after[key]]
    # loggers a library's first import created are its own; those that existed must be as
    # they were (a duplicated handler is a duplicated log line at every call after)
    old, new = before["loggers"], after["loggers"]
    changed += [f"logger {name!r}" for name in old if new.get(name) != old[name]]
    return [key for key in changed if key != "loggers"]


def _state() -> dict[str, Any]:
    return {**_snapshot(), "loggers": _loggers()}


def _assert_left_as_found(call: Callable[[], Any]) -> None:
    before = _state()
    with contextlib.suppress(DistillError):  # a failed call must leave it as a finished one
        call()
    assert _changed(before, _state()) == []


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny finished runs (one step each) and their recipe, made once for the module."""
    folder = tmp_path_factory.mktemp("process")
    body = teacher_body(folder / "runs", epochs=1)
    body["data"]["synthetic"]["train_size"] = 32
    recipe = write_recipe(folder, "sup", body)
    first = api.train(recipe, runtime__seed=1).run_dir
    second = api.train(recipe, runtime__seed=2, name="sup-2").run_dir
    return {"recipe": recipe, "a": first, "b": second, "folder": folder}


CALLS: dict[str, Callable[[dict[str, Path]], Any]] = {
    "recipes": lambda r: (api.recipes(), api.shipped_recipe("methods/kd")),
    "plan": lambda r: api.plan(r["recipe"], runtime__threads=1),
    "train": lambda r: api.train(r["recipe"], overwrite=True, name="again", runtime__threads=1),
    "run-fm": lambda r: api.run(_fm(r["folder"]), overwrite=True),
    "run-fails-in-build": lambda r: api.run(_fm(r["folder"]), student__model="no_such_net"),
    "run-fails-on-a-key": lambda r: api.run(r["recipe"], optim__lrr=1.0),
    "report": lambda r: api.report(r["a"]),
    "compare": lambda r: api.compare([r["a"], r["b"]]),
    "models": lambda r: api.models("test_*", teacher="test_resnet"),
    "export": lambda r: api.export(
        r["a"],
        out=r["folder"] / "export",
        exporter="torchscript",
        opset=17,
        images=4,
        simplify=False,
        latency=False,
        force=True,
    ),
    "export-fails": lambda r: api.export(r["folder"] / "missing"),
    "bench-train": lambda r: api.bench_train(r["recipe"], ["runtime.threads=1"], steps=1, warmup=0),
}


def _fm(folder: Path) -> Path:
    body = fm_body(folder / "runs", None, epochs=1)
    body["data"]["synthetic"]["train_size"] = 32
    body["runtime"] = {"threads": 1, "seed": 5}
    return write_recipe(folder, "fm", body)


@pytest.mark.parametrize("name", list(CALLS))
def test_each_api_call_leaves_the_process_as_it_found_it(runs: dict[str, Path], name: str) -> None:
    """Before the fix a run left the torch RNG where its last step seeded it (the user's seeded
    code after it gave other numbers), an export left the `random` state, a logger's handlers,
    TORCHINDUCTOR_CACHE_DIR and onnxruntime's folder on sys.path changed, and a dynamo export
    a tqdm monitor thread running."""
    torch.manual_seed(1234)
    np.random.seed(4321)
    random.seed(99)
    _assert_left_as_found(lambda: CALLS[name](runs))


def test_the_users_seeded_code_and_ctrl_c_work_after_a_run(runs: dict[str, Path]) -> None:
    def draws() -> tuple[list[float], list[float], float]:
        return torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random()

    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    expected = draws()
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    api.train(runs["recipe"], overwrite=True, name="seeded")
    assert draws() == expected
    with pytest.raises(KeyboardInterrupt):  # the run's own SIGINT handler is gone
        os.kill(os.getpid(), signal.SIGINT)
        threading.Event().wait(1.0)


def test_two_seeds_in_one_process_are_the_runs_separate_processes_give(tmp_path: Path) -> None:
    """Seed 2 after seed 1, with the user's own random draws between, trains exactly as
    seed 2 first: nothing of one run carries into the next (separate processes give these
    numbers too: one run is one process's first)."""
    body = fm_body(tmp_path / "runs", None, epochs=1)
    body["data"]["synthetic"].update(train_size=32, val_size=16)
    body["schedule"].update(batch_size=16, log_every=1)
    recipe = write_recipe(tmp_path, "fm", body)

    def trained(seed: int) -> tuple[list[float], float | None]:
        summary = api.run(recipe, overwrite=True, runtime__seed=seed)
        lines = (summary.run_dir / "metrics.jsonl").read_text().splitlines()
        losses = [json.loads(line)["loss"] for line in lines if '"kind": "train"' in line]
        return losses, summary.agreement_top1

    alone = trained(2)
    trained(1)
    torch.rand(100)
    np.random.rand(100)
    assert trained(2) == alone


def test_runs_in_a_loop_do_not_grow_the_process(tmp_path: Path) -> None:
    """Runs in a loop in one process: no file, thread, child process or log handler more
    after the tenth than after the second, and the resident memory flat (a leak of the
    models or the data per run would be megabytes each)."""
    body = teacher_body(tmp_path / "runs", epochs=1)
    body["data"]["synthetic"].update(train_size=32, val_size=16)
    recipe = write_recipe(tmp_path, "tiny", body)

    def rss_mib() -> float:
        return (
            int(Path("/proc/self/statm").read_text().split()[1])
            * os.sysconf("SC_PAGE_SIZE")
            / 2**20
        )

    api.train(recipe, overwrite=True)
    api.train(recipe, overwrite=True)
    before, memory = _state(), rss_mib()
    for _ in range(8):
        api.train(recipe, overwrite=True)
    assert _changed(before, _state()) == []
    assert rss_mib() - memory < 40


def test_a_package_that_extends_sys_path_on_import_is_put_back(tmp_path: Path) -> None:
    """onnxruntime.transformers appends its folder to sys.path when first imported (its modules
    import each other by bare name). The call's sys.path is the caller's again afterwards, and
    the package still imports, then and in the next call, as the folder comes back with it."""
    package = tmp_path / "addspath"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import os, sys\nsys.path.append(os.path.dirname(__file__))\n"
    )
    (package / "sibling.py").write_text("VALUE = 7\n")
    (package / "user.py").write_text("from sibling import VALUE\n")
    sys.path.insert(0, str(tmp_path))
    try:
        path = list(sys.path)

        @leaves_process_as_found
        def uses_it() -> int:
            from addspath.user import VALUE

            return VALUE

        assert uses_it() == 7 and sys.path == path
        assert uses_it() == 7 and sys.path == path  # a second call imports it again
        from addspath.user import VALUE  # and so does the caller

        assert VALUE == 7
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.split(".")[0] in ("addspath", "sibling")]:
            del sys.modules[name]


def test_a_progress_bar_left_open_does_not_leave_its_monitor_thread() -> None:
    """torch.fx's interpreter (the dynamo exporter) opens a tqdm bar it never closes; tqdm's
    monitor thread then ran for the process's life."""
    from tqdm import tqdm

    bars = []

    @leaves_process_as_found
    def leaves_a_bar() -> None:
        bars.append(tqdm(total=3, disable=True))

    names = sorted(t.name for t in threading.enumerate())
    leaves_a_bar()
    assert sorted(t.name for t in threading.enumerate()) == names
    bars[0].close()


@pytest.mark.gpu
def test_a_cuda_run_leaves_the_cuda_rng_and_backend_flags(runs: dict[str, Path]) -> None:
    """A run on the GPU seeds the CUDA generators at every step too; the user's seeded CUDA
    draws after it are the ones before it, and the cuDNN/TF32 switches are theirs."""
    torch.manual_seed(11)
    expected = torch.rand(4, device="cuda").tolist()
    torch.manual_seed(11)
    before = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.fp32_precision)
    api.train(runs["recipe"], overwrite=True, name="on-gpu", runtime__device="cuda")
    assert torch.rand(4, device="cuda").tolist() == expected
    assert (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.fp32_precision) == before
