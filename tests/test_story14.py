"""The cluster operator, the notebook researcher and the streamed-data team (story 14).

Each test replays what such a user does and what went wrong: a task of a SLURM job whose node
lacked the data stopped without a word while rank 0 said only "lost contact"; SLURM's
preemption signal (which reaches every process of the step) killed the data workers first and
the run died on torch's traceback, its position unsaved; Ctrl-C in a notebook's `api.run` was a
`DistillError`, which a sweep's `except Exception: continue` swallowed; a webdataset user's list
of shards was pydantic's "Input should be a valid string".
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from distill_cli import api
from tests.conftest import class_jpeg, fm_body, refused, write_recipe

ROOT = Path(__file__).resolve().parents[1]


def _losses(run_dir: Path) -> list[tuple[int, float]]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in lines if r["kind"] == "train"]


class _CtrlCAt:
    """A reporter that presses Ctrl-C (SIGINT to this process) at training step `step`, as the
    notebook's interrupt button does."""

    def __init__(self, step: int) -> None:
        self.step, self.steps = step, 0

    def start(self, *args: Any, **kwargs: Any) -> None:
        pass

    def advance(self, *args: Any, **kwargs: Any) -> None:
        self.steps += 1
        if self.steps == self.step:
            os.kill(os.getpid(), signal.SIGINT)

    def log(self, record: Any) -> None:
        pass

    def finish(self, *args: Any, **kwargs: Any) -> None:
        pass


def test_ctrl_c_in_a_notebook_sweep_stops_the_sweep_and_the_run_resumes_exactly(
    tmp_path: Path,
) -> None:
    """api.run raised a DistillError on Ctrl-C: the sweep's `except Exception` took it for a
    failed run and went on to the next. Now a KeyboardInterrupt (api.RunInterrupted) naming the
    saved position; `resume=True` ends where an uninterrupted run ends."""
    body = fm_body(tmp_path / "runs", None, epochs=2)
    body["data"]["synthetic"].update(train_size=64, val_size=16)
    body["schedule"].update(batch_size=16, log_every=1)
    started: list[str] = []
    with pytest.raises(KeyboardInterrupt) as info:
        for name in ("a", "b"):  # the sweep a notebook writes
            started.append(name)
            try:
                api.run(body, name=name, reporter=_CtrlCAt(3))
            except Exception:
                continue
    assert started == ["a"]  # the sweep stopped at the Ctrl-C, not at the next run
    assert isinstance(info.value, api.RunInterrupted)
    assert info.value.error.code == 130 and "position saved" in str(info.value)
    run = tmp_path / "runs" / "a"
    assert (run / "checkpoints" / "last.safetensors").is_file()
    assert not (run / "summary.json").exists()
    # the process is usable: the run resumes, and ends as one that was never stopped
    resumed = api.run(body, name="a", resume=True)
    whole = api.run(body, name="whole")
    assert _losses(run) == _losses(tmp_path / "runs" / "whole")
    assert resumed.student.top1 == whole.student.top1 and resumed.kl == whole.kl


class _Pids(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> int:
        return os.getpid()


def test_data_workers_outlive_the_signals_that_stop_a_run() -> None:
    """SLURM's preemption and its `--signal=USR1@90` reach every process of the job step, a
    shell's Ctrl-C the whole group: a decode worker died of SIGTERM/SIGUSR1 first, and the run
    ended on torch's 'DataLoader worker is killed by signal' traceback instead of saving its
    position. The workers leave the signals to the main process."""
    from distill_cli.data.loader import worker_batches

    batches = worker_batches(_Pids(), batch_size=1, num_workers=1, prefetch_factor=1)
    worker = int(next(batches)[0])
    assert worker != os.getpid()
    for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        os.kill(worker, sig)
        threading.Event().wait(0.2)
        assert int(next(batches)[0]) == worker  # the same worker, alive, still reading


def test_every_data_loader_of_distill_is_made_in_one_place() -> None:
    """The workers' signal rule holds for every loader only while they are all made by
    `worker_batches` (image folders, both decode paths, shards, parquet)."""
    makers = [
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "distill_cli").rglob("*.py")
        if "DataLoader(" in path.read_text()
    ]
    assert makers == ["distill_cli/data/loader.py"]


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("data.train_dir=[train-000.tar, train-001.tar]", "a brace pattern (train-{000..009}"),
        ("data.train_dir=train-{000..001}.tar::train-{002..003}.tar", "joined by '::'"),
    ],
    ids=["yaml-list", "webdataset-url-list"],
)
def test_a_webdataset_users_list_of_shards_is_one_line_saying_what_to_write(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], value: str, needle: str
) -> None:
    (tmp_path / "data").mkdir()
    for shard in range(4):
        with tarfile.open(tmp_path / "data" / f"train-{shard:03d}.tar", "w") as tar:
            for n in range(4):
                for ext, raw in (("jpg", class_jpeg(n % 2, n)), ("cls", str(n % 2).encode())):
                    member = tarfile.TarInfo(f"s{shard}_{n}.{ext}")
                    member.size = len(raw)
                    tar.addfile(member, io.BytesIO(raw))
    body = fm_body(tmp_path / "runs", None)
    body["data"] = {"source": "shards", "root": str(tmp_path / "data"), "val_dir": "train-000.tar"}
    recipe = write_recipe(tmp_path, "wds", body)
    refused(["run", str(recipe), "--dry-run", "--set", value], needle, capfd)


def test_a_peers_own_error_is_said_by_rank_0_in_one_line() -> None:
    """In-process, the store's half: what rank 1 leaves before it exits is what rank 0 says
    when it finds the peer gone, with the peer's exit code; without a word left, 'lost
    contact' as before."""
    import torch.distributed as dist

    from distill_cli.errors import DistillError
    from distill_cli.train import distributed
    from distill_cli.train.world import World

    gone = RuntimeError("[gloo/transport/tcp/pair.cc:561] Connection closed by peer [10.0.0.2]:1")
    distributed._store = dist.HashStore()
    try:
        lost = distributed.peer_lost(gone, World(rank=0, size=2))
        assert lost is not None and str(lost).startswith("lost contact")
        error = DistillError("no images", "/scratch/data", "copy the data to this node")
        distributed.tell_main(error, World(rank=1, size=2))
        said = distributed.peer_lost(gone, World(rank=0, size=2))
        assert said is not None and said.code == 2
        assert str(said) == "rank 1 of 2: no images (/scratch/data) - copy the data to this node"
    finally:
        distributed._store = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_a_task_whose_node_lacks_the_data_is_named_by_rank_0(tmp_path: Path) -> None:
    """Two srun tasks (the variables srun sets, by hand), the data folder present on rank 0's
    node only: rank 1 stopped without a word (a refused input is said by rank 0, which had
    no such error) and rank 0 said 'lost contact with the other processes'. Now rank 0 says
    rank 1's line, both exit 2, and no run folder is left."""
    data = tmp_path / "node0" / "train"
    for cls in ("a", "b"):
        (data / cls).mkdir(parents=True)
        for n in range(8):
            Image.new("RGB", (16, 16), (40 * n, 200 * (cls == "a"), 90)).save(
                data / cls / f"{n}.png"
            )
    body = {
        "model": {"model": "test_resnet", "input_size": 16},
        "data": {"source": "image_folder", "root": "${DATA}", "train_dir": "train", "holdout": 4},
        "method": {"name": "supervised"},
        "schedule": {"epochs": 1, "batch_size": 4},
        "runtime": {"threads": 1},
        "output": {"dir": str(tmp_path / "runs")},
    }
    recipe = write_recipe(tmp_path, "r", body)
    port = str(_free_port())
    procs = []
    for rank, root in ((0, tmp_path / "node0"), (1, tmp_path / "node1")):
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC"))},
            "DATA": str(root),
            "SLURM_JOB_ID": "77",
            "SLURM_PROCID": str(rank),
            "SLURM_LOCALID": str(rank),
            "SLURM_STEP_NUM_TASKS": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
        }
        for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
            env.pop(name, None)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "distill_cli", "train", str(recipe), "-q"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = [p.communicate(timeout=120) for p in procs]
    errs = [err.strip().splitlines() for _, err in results]
    assert [p.returncode for p in procs] == [2, 2], errs
    assert errs[1] == [], errs  # said once, by rank 0
    assert len(errs[0]) == 1 and errs[0][0].startswith("error: rank 1 of 2: "), errs
    assert str(tmp_path / "node1") in errs[0][0] and "Traceback" not in results[0][1]
    assert not (tmp_path / "runs").exists()


def test_nproc_passes_slurms_warning_signal_on_as_itself(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`distill run --nproc 2` and SIGUSR1 (`--signal=USR1@90`): torchrun's launcher left it to
    distill's handler, which stopped the launcher, which sent its processes SIGTERM: the run
    said `interrupted by SIGTERM at step N; position saved` and then `interrupted by SIGUSR1
    ... run it again to finish`. torchrun now passes every stop signal on as itself, and the
    launcher stopped by one ends with its code and no line of its own."""
    import torch.distributed.run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException

    from distill_cli.cli.entry import entry

    handled: list[str] = []

    def stopped(args: Any) -> None:
        handled.extend(args.signals_to_handle.split(","))
        raise SignalException("got SIGUSR1", sigval=signal.SIGUSR1)

    for name in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(torchrun, "run", stopped)
    with pytest.raises(SystemExit) as info:
        entry(["run", "r.yaml", "--nproc", "2", "-q"])
    assert {"SIGINT", "SIGTERM", "SIGUSR1"} <= set(handled)
    assert info.value.code == 138 and capsys.readouterr().err == ""
