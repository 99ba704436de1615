"""Which process this is: the world a launcher describes, read from the environment in one place.

`torchrun` (one machine or `--nnodes` with a rendezvous endpoint) sets RANK / WORLD_SIZE /
LOCAL_RANK; SLURM's `srun`, when it starts one task per GPU itself, sets SLURM_PROCID /
SLURM_STEP_NUM_TASKS / SLURM_LOCALID instead, and the job script exports MASTER_ADDR and
MASTER_PORT (the first node). torchrun's variables win where both are set (torchrun under
srun). A single process (no launcher) is a world of one, and every collective here is then a
no-op, so the engine has one code path. Importing this module does not import torch (the CLI
asks "am I the main process?" before anything heavy is loaded); the collectives import it when
they run.

A world the variables cannot describe is refused in one line naming the variable, since each
guess goes wrong silently: RANK without WORLD_SIZE (or the reverse, under more than one
process) read as a world of one made every process train alone into the same folder, or made
each one rank 0. A launch that restarts its processes (torchrun's `--max-restarts`, a SLURM
requeue) is recognised here too (`World.launch`, `World.restarted`), so the run it started
continues instead of being refused or replaced (`engine.run`), and its processes meet under
keys of their own (`distributed.init`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from distill_cli.errors import DistillError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    #: started by torchrun (or another launcher that sets WORLD_SIZE), even as a world of one
    launched: bool = False
    #: how the processes find each other: torchrun's environment, or tcp://MASTER_ADDR:PORT
    #: under srun; None when srun started the processes but the job script did not say where
    init_method: str | None = "env://"
    #: the processes on this machine (torchrun's LOCAL_WORLD_SIZE); None when not said (srun)
    local_size: int | None = None
    #: the launch this process belongs to, the same across its restarts: the SLURM job, else
    #: torchrun's rendezvous id; None for a process started by hand
    launch: str | None = None
    #: how often its launcher started the processes again after a failure
    #: (TORCHELASTIC_RESTART_COUNT, a SLURM requeue's SLURM_RESTART_COUNT)
    restarts: int = 0

    @property
    def is_main(self) -> bool:
        """Only the main process writes files, logs and progress."""
        return self.rank == 0

    @property
    def restarted(self) -> bool:
        """Started again by the launch that ran this command before (it may continue its run)."""
        return self.restarts > 0 and self.launch is not None

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def max(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor

    def union(self, items: set[int]) -> set[int]:
        """Every process's `items` together (the sample indices each met, e.g. bad files)."""
        if not self.distributed:
            return items
        import torch.distributed as dist

        gathered: list[set[int] | None] = [None] * self.size
        dist.all_gather_object(gathered, items)
        return set().union(*(g or set() for g in gathered))

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()


def world_from_env() -> World:
    """The world torchrun (or srun) describes in the environment; a world of one without it.

    SLURM counts only inside a job step (`srun`): SLURM_STEP_NUM_TASKS is srun's, whereas the
    batch script itself also carries SLURM_NTASKS, the job's total, and a plain `distill run` in
    the script must stay a world of one.
    """
    env = os.environ
    launch, restarts = _launch(env)
    if "WORLD_SIZE" in env or "RANK" in env:
        size = _number(env, "WORLD_SIZE", "1" if "WORLD_SIZE" not in env else None, minimum=1)
        if "RANK" in env and "WORLD_SIZE" not in env:
            raise DistillError(
                f"RANK={env['RANK']} is set but WORLD_SIZE is not: how many processes run is "
                "unknown",
                "environment",
                "start the processes with torchrun, or export WORLD_SIZE beside RANK (unset "
                "RANK for one process)",
            )
        if "RANK" not in env and size > 1:
            raise DistillError(
                f"WORLD_SIZE={size} is set but RANK is not: every process would be rank 0",
                "environment",
                "start the processes with torchrun, or export each one's RANK (0 to "
                f"{size - 1}); unset WORLD_SIZE for one process",
            )
        rank = _number(env, "RANK", "0")
        local_rank = _number(env, "LOCAL_RANK", "0")
        _check_rank(rank, size, "RANK", "WORLD_SIZE")
        local_size = (
            _number(env, "LOCAL_WORLD_SIZE", None, 1) if "LOCAL_WORLD_SIZE" in env else None
        )
        return World(rank, size, local_rank, True, "env://", local_size, launch, restarts)
    _check_slurm_pair(env)
    if "SLURM_STEP_NUM_TASKS" in env and "SLURM_PROCID" in env:
        size = _number(env, "SLURM_STEP_NUM_TASKS", None, minimum=1)
        rank = _number(env, "SLURM_PROCID", None)
        _check_rank(rank, size, "SLURM_PROCID", "SLURM_STEP_NUM_TASKS")
        addr, port = env.get("MASTER_ADDR"), env.get("MASTER_PORT")
        return World(
            rank=rank,
            size=size,
            local_rank=_number(env, "SLURM_LOCALID", "0"),
            launched=True,
            init_method=f"tcp://{addr}:{port}" if addr and port else None,
            launch=launch,
            restarts=restarts,
        )
    return World(launch=launch, restarts=restarts)


def _check_slurm_pair(env: os._Environ[str]) -> None:
    """srun sets SLURM_PROCID and SLURM_STEP_NUM_TASKS together; one without the other cannot
    describe a world, and each guess goes wrong silently. A task numbered above 0 without the
    step's count (a launcher or container that passed SLURM_PROCID on but not the count) would
    train alone into the run folder rank 0 writes too; a count above 1 without the task's
    number made every task rank 0. SLURM_PROCID 0 alone is the batch script (or `salloc`'s
    shell), whose SLURM_NTASKS is the job's total, not this process's world: a world of one."""
    procid, count = env.get("SLURM_PROCID"), env.get("SLURM_STEP_NUM_TASKS")
    if procid is not None and count is None and _number(env, "SLURM_PROCID", None) > 0:
        raise DistillError(
            f"SLURM_PROCID={procid} is set but SLURM_STEP_NUM_TASKS is not: how many processes "
            "run is unknown, and this one would train alone beside rank 0",
            "environment",
            "start the tasks with srun (it sets both), export SLURM_STEP_NUM_TASKS=$SLURM_NTASKS "
            "beside SLURM_PROCID, or use torchrun",
        )
    if count is not None and procid is None and _number(env, "SLURM_STEP_NUM_TASKS", None, 1) > 1:
        raise DistillError(
            f"SLURM_STEP_NUM_TASKS={count} is set but SLURM_PROCID is not: every process would "
            "be rank 0",
            "environment",
            "start the tasks with srun (it sets both), or export each one's SLURM_PROCID "
            f"(0 to {int(count) - 1})",
        )


#: The variables a launcher describes the world with (what `world_from_env` reads for it).
WORLD_VARIABLES = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "SLURM_STEP_NUM_TASKS",
    "SLURM_PROCID",
)


def leave_launcher() -> None:
    """Make this process a world of one: a command that does not train (`bench train` times
    one process) done by rank 0 alone, while the launcher's other processes exit at once.
    Left in place, the variables made it wait for a process group they would never join."""
    for name in WORLD_VARIABLES:
        os.environ.pop(name, None)


def _number(env: os._Environ[str], name: str, default: str | None, minimum: int = 0) -> int:
    """A launcher's variable as a whole number; one that is not (`RANK=a`) is refused."""
    text = env.get(name, default)
    try:
        value = int(text or "")
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise DistillError(
            f"{name}={text!r} is not a whole number of at least {minimum}",
            "environment",
            f"export {name} as a launcher sets it (torchrun and srun do), or unset it",
        )
    return value


def _check_rank(rank: int, size: int, rank_name: str, size_name: str) -> None:
    if rank >= size:
        raise DistillError(
            f"{rank_name}={rank} is not a process of {size_name}={size} (0 to {size - 1})",
            "environment",
            f"export {rank_name} below {size_name}, or start the processes with torchrun",
        )


def _launch(env: os._Environ[str]) -> tuple[str | None, int]:
    """Which launch this process is part of (stable across its restarts), and whether the
    launcher restarted it. A SLURM job keeps its id when it is requeued; torchrun keeps its
    rendezvous id (`--rdzv-id`, a fresh one per `--standalone` launch) across `--max-restarts`."""
    restarts = 0
    for name in ("TORCHELASTIC_RESTART_COUNT", "SLURM_RESTART_COUNT"):
        try:
            restarts += max(0, int(env.get(name, "0")))
        except ValueError:
            continue
    if env.get("SLURM_JOB_ID"):
        launch: str | None = f"slurm:{env['SLURM_JOB_ID']}"
    elif env.get("TORCHELASTIC_RUN_ID"):
        launch = f"torchrun:{env['TORCHELASTIC_RUN_ID']}"
    else:
        launch = None
    return launch, restarts
