"""What launchers hand distill (torchrun, srun, a restart, a wrong environment), in-process.

Each case was a silent failure: RANK without WORLD_SIZE ran every process alone into one
folder, a torchrun restart (`--max-restarts`) was refused (or, with `--overwrite`, started over)
instead of continuing, a `--dry-run` under torchrun waited forever for processes that had
nothing to wait for, `distill report` ran once per process, every rank printed the same error
line, and a dead peer was a 60-line traceback on each survivor. The multi-process runs
themselves are in test_distributed.py and test_multinode.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from distill_cli.cli.entry import entry
from distill_cli.errors import AgreedStop, DistillError, RunFailed
from distill_cli.train.world import World, world_from_env
from tests.conftest import teacher_body, write_recipe

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER_PREFIXES = ("SLURM_", "TORCHELASTIC_")
LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR")


@pytest.fixture(autouse=True)
def _no_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the launcher's variables it means; none leak in from the machine."""
    for name in list(os.environ):
        if name in LAUNCHER_VARS or name.startswith(LAUNCHER_PREFIXES):
            monkeypatch.delenv(name)


def _env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def _exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    with pytest.raises(SystemExit) as info:
        entry(argv)
    out = capsys.readouterr()
    return int(info.value.code or 0), out.err.strip().splitlines(), out.out


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"RANK": "1"}, "WORLD_SIZE"),  # a hand-made launcher that forgot the size
        ({"WORLD_SIZE": "2"}, "RANK"),  # every process would be rank 0
        ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2"),
        ({"RANK": "a", "WORLD_SIZE": "2"}, "RANK='a'"),
        ({"RANK": "0", "WORLD_SIZE": "0"}, "WORLD_SIZE='0'"),
        ({"SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "5"}, "SLURM_PROCID=5"),
    ],
)
def test_a_world_the_variables_cannot_describe_is_refused(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], named: str
) -> None:
    _env(monkeypatch, **values)
    with pytest.raises(DistillError, match=named) as info:
        world_from_env()
    assert info.value.code == 2 and "\n" not in str(info.value)


def test_the_launch_and_its_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    assert world_from_env() == World()  # by hand: no launch, nothing to restart
    _env(monkeypatch, WORLD_SIZE="1", TORCHELASTIC_RUN_ID="r1", TORCHELASTIC_RESTART_COUNT="0")
    world = world_from_env()
    assert (world.launch, world.restarted, world.size, world.launched) == (
        "torchrun:r1",
        False,
        1,
        True,
    )
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert world_from_env().restarted
    # under SLURM the job is the launch: a requeue keeps its id, and torchrun's restarts count
    _env(monkeypatch, SLURM_JOB_ID="77", SLURM_RESTART_COUNT="1")
    assert (world_from_env().launch, world_from_env().restarts) == ("slurm:77", 2)
    assert world_from_env().restarted


def _failing(code: int, own: bool | None) -> DistillError:
    error = DistillError("disk on fire", "/data", "put it out", code=code)
    error.own = own
    return error


@pytest.mark.parametrize(
    ("rank", "error", "expected"),
    [
        ("0", _failing(2, None), "error: disk on fire (/data) - put it out"),
        ("1", _failing(2, None), None),  # a refused input: rank 0 says it for all
        ("1", _failing(1, None), "error: rank 1 of 2: disk on fire (/data) - put it out"),
        ("1", _failing(2, True), "error: rank 1 of 2: disk on fire (/data) - put it out"),
        ("1", AgreedStop("the loss became NaN/Inf at step 3"), None),
        ("1", RunFailed("x"), "error: rank 1 of 2: x"),
    ],
)
def test_an_error_is_said_once_and_a_rank_names_its_own(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    rank: str,
    error: DistillError,
    expected: str | None,
) -> None:
    from distill_cli.cli import app as app_module

    def fail(*args: Any, **kwargs: Any) -> None:
        raise error

    _env(monkeypatch, RANK=rank, WORLD_SIZE="2")
    monkeypatch.setattr(app_module, "_execute", fail)
    code, err, _ = _exit(["run", "any.yaml"], capsys)
    assert code == error.code  # every rank fails with the code: the launcher sees it
    assert err == ([expected] if expected else [])


def test_a_lost_peer_is_one_line_not_gloos_traceback() -> None:
    from distill_cli.train.distributed import peer_lost

    world = World(rank=0, size=2, launched=True)
    gloo = RuntimeError(
        "[/__w/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:545] Read error "
        "[127.0.0.1]:53384: Connection reset by peer. This is typically caused by a remote "
        "worker hanging or bugs in the application."
    )
    lost = peer_lost(gloo, world)
    assert lost is not None and lost.code == 1 and not lost.own_failure
    assert str(lost).startswith(
        "lost contact with the other processes (Read error [127.0.0.1]:53384: Connection "
        "reset by peer) (rank 0 of 2) - another process of the run stopped"
    )
    assert peer_lost(RuntimeError("shape mismatch"), world) is None  # a bug stays loud
    assert peer_lost(gloo, World()) is None  # one process has no peers to lose


def test_a_process_beyond_the_machines_gpus_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from distill_cli.train.build import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    world = World(rank=2, size=4, local_rank=2, launched=True)  # srun: the count is not said
    with pytest.raises(DistillError, match="shows 2 GPUs") as info:
        resolve_device("cuda", world)
    assert info.value.own_failure  # only the processes beyond the GPUs meet it
    assert resolve_device("cuda", World(rank=1, size=4, local_rank=1, launched=True)).index == 1
    # torchrun says the machine's count: every process refuses alike, rank 0 says it once
    _env(monkeypatch, RANK="0", WORLD_SIZE="4", LOCAL_RANK="0", LOCAL_WORLD_SIZE="4")
    with pytest.raises(DistillError, match=r"^4 processes on a machine that shows 2") as info:
        resolve_device("cuda", world_from_env())
    assert not info.value.own_failure


def test_commands_that_do_not_train_run_once_under_a_launcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--dry-run` under torchrun joined the process group on every rank and printed the plan
    once per process (alone, rank 0 waited forever); `report`, `export`, ... ran N times."""
    recipe = write_recipe(tmp_path, "r", teacher_body(tmp_path / "runs", epochs=1))
    _env(monkeypatch, RANK="1", WORLD_SIZE="2", LOCAL_RANK="1")
    assert _exit(["run", str(recipe), "--dry-run"], capsys) == (0, [], "")
    assert _exit(["report", str(tmp_path / "nowhere")], capsys) == (0, [], "")
    assert _exit(["students", "--json"], capsys) == (0, [], "")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    started = time.monotonic()
    code, err, out = _exit(["run", str(recipe), "--dry-run", "--json"], capsys)
    plan = json.loads(out)
    assert code == 0 and (plan["total_steps"], plan["processes"]) == (4, 2), err
    assert time.monotonic() - started < 60  # planned alone: no process group to wait for
    assert not (tmp_path / "runs").exists()
    # rank 0 does it as one process: `bench train` (which times one process's steps) waited
    # for a process group the ranks that left would never join
    code, err, _ = _exit(["report", str(tmp_path / "nowhere")], capsys)
    assert code == 2 and len(err) == 1 and world_from_env() == World()


def test_a_restarted_launch_continues_its_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """torchrun --max-restarts (a SLURM requeue) runs the same command again: refused as a
    run already there, or with --overwrite started over. Only its own launch's run continues."""
    from distill_cli.train.evaluate import Evaluator

    body = teacher_body(tmp_path / "runs", epochs=2)
    body["data"]["synthetic"].update(train_size=32, val_size=16)
    body["schedule"]["batch_size"] = 16
    recipe = write_recipe(tmp_path, "r", body)
    run = tmp_path / "runs" / "r"
    real = Evaluator.student_metrics

    def interrupted(*args: Any, **kwargs: Any) -> Any:  # a preemption at the first evaluation
        monkeypatch.setattr(Evaluator, "student_metrics", real)
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(Evaluator, "student_metrics", interrupted)
    _env(monkeypatch, WORLD_SIZE="1", TORCHELASTIC_RUN_ID="job-a", TORCHELASTIC_RESTART_COUNT="0")
    argv = ["train", str(recipe), "--overwrite", "--quiet"]
    assert _exit(argv, capsys)[0] == 143
    assert json.loads((run / "checkpoints" / "last.json").read_text())["step"] == 3
    first = (run / "metrics.jsonl").read_text()
    # another launch restarted: not this run's, so the folder is as the command says
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-b")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    code, err, _ = _exit(["train", str(recipe), "--quiet"], capsys)
    assert code == 2 and "already holds a run" in err[0]
    # its own launch restarted: continues from step 3, even though the command says --overwrite
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-a")
    code, err, _ = _exit(argv, capsys)
    assert code == 0, err
    assert (run / "metrics.jsonl").read_text().startswith(first)  # kept, not started over
    assert json.loads((run / "summary.json").read_text())["steps"] == 4


@pytest.mark.slow
def test_torchrun_restarts_a_killed_process_and_the_run_continues(tmp_path: Path) -> None:
    """`torchrun --max-restarts 1`, one process SIGKILLed mid-run: the restarted processes
    waited forever in gloo's connect (they met under the dead ones' keys in torchrun's store);
    had they met, the run would have been refused as already there. Now it continues."""
    body = teacher_body(tmp_path / "runs", epochs=12)
    body["model"]["model"] = "test_vit"
    body["data"]["synthetic"]["train_size"] = 64
    body["schedule"]["batch_size"] = 16
    body["runtime"] = {"threads": 1}
    recipe = write_recipe(tmp_path, "r", body)
    run = tmp_path / "runs" / "r"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.Popen(
        [*cmd, "--max-restarts=1", "-m", "distill_cli", "run", str(recipe), "-q"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (run / "checkpoints" / "last.json").exists():
            time.sleep(0.05)
        victim = next(
            p
            for p in Path("/proc").iterdir()
            if p.name.isdigit()
            and (p / "environ").is_file()
            and _ppid(p) == proc.pid
            and b"\0LOCAL_RANK=1\0" in b"\0" + _read(p / "environ")
        )
        os.kill(int(victim.name), signal.SIGKILL)
        _, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["kind"], r["step"]) for r in lines]
    assert len(keys) == len(set(keys)) and keys[-1] == ("eval", 48)
    assert json.loads((run / "summary.json").read_text())["steps"] == 48


def _ppid(proc: Path) -> int:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


@pytest.mark.parametrize(
    ("exitcode", "code", "line"),
    [
        (2, 2, None),  # the process said its own line; torchrun's exit code was 1
        (143, 143, None),
        (-9, 137, "error: process 1 of 2 was killed by SIGKILL"),
    ],
)
def test_nproc_ends_with_the_failed_process_code(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    exitcode: int,
    code: int,
    line: str | None,
) -> None:
    import torch.distributed.run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    launched: list[list[str]] = []

    def failed(args: Any) -> None:
        launched.append([args.training_script, *args.training_script_args])
        failure = ProcessFailure(local_rank=1, pid=1, exitcode=exitcode, error_file="")
        raise ChildFailedError("distill_cli", {1: failure})

    monkeypatch.setattr(torchrun, "run", failed)
    monkeypatch.setattr(sys, "argv", ["distill", "run", "r.yaml", "--nproc", "2", "-q"])
    got, err, _ = _exit(["run", "r.yaml", "--nproc", "2", "-q"], capsys)
    assert launched == [["distill_cli", "run", "r.yaml", "-q"]]
    assert got == code and [x[: len(line)] for x in err] == ([line] if line else [])


def test_nproc_under_a_launcher_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """srun already started the processes: each one would have started two more."""
    _env(monkeypatch, SLURM_STEP_NUM_TASKS="2", SLURM_PROCID="0", MASTER_ADDR="n0")
    code, err, _ = _exit(["run", "r.yaml", "--nproc", "2"], capsys)
    assert code == 2 and err == [
        "error: --nproc 2 under a launcher that already started 2 processes (torchrun or srun) "
        "(--nproc) - drop --nproc: the launcher's processes are the run's (set their number "
        "there)"
    ]


def test_processes_agree_on_a_signal_within_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several processes agreed on a stop only when a metrics line was due (log_every: 50
    steps by default), which on a large model outlasts a preemption's grace (torchrun's and
    SLURM's 30 s before SIGKILL). Now every AGREE_EVERY_S seconds of training at most."""
    from distill_cli.train import stop

    class Alone(World):  # a world of 2 whose all-reduce is this process's own values
        def max(self, tensor: torch.Tensor) -> torch.Tensor:
            return tensor

    # the clock at each agreement (read twice): steps 0, 10 (0.5 s a step), 20 (3 s a step)
    times = iter([0.0, 0.0, 5.0, 5.0, 35.0, 35.0])
    monkeypatch.setattr(stop.time, "perf_counter", lambda: next(times))
    agreement = stop.StopAgreement(Alone(rank=0, size=2, launched=True), log_every=50)
    cpu = torch.device("cpu")
    assert agreement.due(1) and agreement.agree(0, None, cpu) is None
    assert agreement.agree(10, None, cpu) is None and agreement.every == 4  # 2 s / 0.5 s
    assert not agreement.due(6) and agreement.due(8)
    assert agreement.agree(20, signal.SIGTERM, cpu) == signal.SIGTERM and agreement.every == 1
    alone = stop.StopAgreement(World(), log_every=50)
    assert not alone.due(0) and alone.agree(3, signal.SIGINT, cpu) == signal.SIGINT


@pytest.mark.slow
def test_a_refusal_of_rank_0_alone_ends_the_other_processes_too(tmp_path: Path) -> None:
    """Rank 0 alone looks at the run folder; refused there (a live run holds it), it exited
    before the others could meet it, and they waited in torch's rendezvous for 30 minutes,
    deaf to SIGTERM (srun, unlike torchrun, stops nobody). Now all join first."""
    import fcntl
    import socket

    body = teacher_body(tmp_path / "runs", epochs=1)
    body["data"]["synthetic"]["train_size"] = 64
    recipe = write_recipe(tmp_path, "r", body)
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / ".distill-run").write_text("a distill run folder\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    holder = os.open(run / ".distill-lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)  # a live run holds the folder
    procs = []
    try:
        for rank in (0, 1):
            env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank)}
            env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
            cmd = [sys.executable, "-m", "distill_cli", "run", str(recipe), "-q"]
            procs.append(
                subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
            )
        errs = [p.communicate(timeout=90)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
        os.close(holder)
    assert procs[0].returncode == 2 and "in use by a live run" in errs[0]
    assert procs[1].returncode != 0 and "error:" not in errs[1]  # said once, by rank 0
