"""Runs started by an external launcher: two torchrun "nodes" on this machine (issue 25, item 1).

Each launcher is one node with one process; they meet through a c10d rendezvous on localhost,
as two machines of a cluster would through `--rdzv-endpoint`. The run must be the run one
process makes with the same global batch, written by global rank 0 alone, and a run stopped on
two processes must resume on one (and the reverse) to the same weights: the data order of a
step does not depend on how many processes share it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import write_recipe
from tests.test_distributed import ROOT, _body, _records, _weights

TOL = {"atol": 2e-4, "rtol": 2e-3}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(nodes: int, *args: str) -> list[subprocess.Popen]:
    """`nodes` torchrun launchers (one process each) meeting at one c10d endpoint."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if nodes == 1:
        cmd = [sys.executable, "-m", "distill_cli", *args]
        return [subprocess.Popen(cmd, cwd=ROOT, env=env, **_pipes())]
    endpoint = f"127.0.0.1:{_free_port()}"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={nodes}",
        "--nproc_per_node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={endpoint}",
        f"--rdzv-id=test-{endpoint}",
        "-m",
        "distill_cli",
        *args,
    ]
    return [subprocess.Popen(cmd, cwd=ROOT, env=env, **_pipes()) for _ in range(nodes)]


def _pipes() -> dict:
    return {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}


def _wait(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]


def _stop_after(procs: list[subprocess.Popen], run: Path, step: int) -> None:
    """SIGTERM every launcher once `step` is logged (a scheduler's preemption)."""
    deadline = time.monotonic() + 300
    metrics = run / "metrics.jsonl"
    while time.monotonic() < deadline and all(p.poll() is None for p in procs):
        if metrics.is_file() and f'"step": {step}' in metrics.read_text():
            break
        time.sleep(0.05)
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.communicate(timeout=300)
        assert proc.returncode != 0, "the run ended before it could be stopped"


def _recipe(tmp_path: Path, name: str) -> tuple[Path, Path]:
    folder = tmp_path / name
    folder.mkdir()
    recipe = write_recipe(folder, "mn", _body(folder / "runs", epochs=4))
    return recipe, folder / "runs" / "mn"


def test_two_nodes_match_one_process_and_resume_across_world_sizes(tmp_path: Path) -> None:
    recipe, one = _recipe(tmp_path, "one")
    _wait(_launch(1, "run", str(recipe), "-q"))
    reference = _weights(one)
    for first, then in ((2, 1), (1, 2)):
        recipe, run = _recipe(tmp_path, f"{first}to{then}")
        _stop_after(_launch(first, "run", str(recipe), "-q"), run, 6)
        stopped = json.loads((run / "checkpoints" / "last.json").read_text())["step"]
        assert 0 < stopped < 16
        _wait(_launch(then, "run", str(recipe), "-q", "--resume"))
        summary = json.loads((run / "summary.json").read_text())
        assert summary["processes"] == then
        # the same weights as one uninterrupted process: every step saw the same images
        for key, value in _weights(run).items():
            torch.testing.assert_close(value, reference[key], **TOL, msg=f"{first}->{then} {key}")
        # global rank 0 alone wrote: each (kind, step) line once (the stop adds its own
        # train line), every line of the uninterrupted run, the same files as one process
        lines = [(r["kind"], r["step"]) for r in _records(run)]
        assert len(lines) == len(set(lines))
        assert {(r["kind"], r["step"]) for r in _records(one)} <= set(lines)
        files = sorted(p.relative_to(run).as_posix() for p in run.rglob("*"))
        assert files == sorted(p.relative_to(one).as_posix() for p in one.rglob("*"))


def test_the_world_srun_describes(monkeypatch: pytest.MonkeyPatch) -> None:
    from distill_cli.errors import DistillError
    from distill_cli.train.distributed import init
    from distill_cli.train.world import World, world_from_env

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    # the batch script itself: the job's task count is not this process's world
    monkeypatch.setenv("SLURM_NTASKS", "16")
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert world_from_env() == World()
    # a task started by srun (16 tasks, the 11th, 4th on its node)
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "16")
    monkeypatch.setenv("SLURM_PROCID", "10")
    monkeypatch.setenv("SLURM_LOCALID", "2")
    world = world_from_env()
    assert (world.rank, world.size, world.local_rank, world.launched) == (10, 16, 2, True)
    assert world.init_method is None and not world.is_main
    with pytest.raises(DistillError, match="MASTER_ADDR"):
        init(world, torch.device("cpu"))  # one line saying what to export, not a hang
    monkeypatch.setenv("MASTER_ADDR", "node0")
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert world_from_env().init_method == "tcp://node0:29500"
    # torchrun under srun: torchrun's variables win
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    world = world_from_env()
    assert (world.rank, world.size, world.init_method) == (1, 2, "env://")
