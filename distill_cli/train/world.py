"""Which process this is: the world a launcher describes, read from the environment in one place.

`torchrun` (one machine or `--nnodes` with a rendezvous endpoint) sets RANK / WORLD_SIZE /
LOCAL_RANK; SLURM's `srun`, when it starts one task per GPU itself, sets SLURM_PROCID /
SLURM_STEP_NUM_TASKS / SLURM_LOCALID instead, and the job script exports MASTER_ADDR and
MASTER_PORT (the first node). torchrun's variables win where both are set (torchrun under
srun). A single process (no launcher) is a world of one, and every collective here is then a
no-op, so the engine has one code path. Importing this module does not import torch (the CLI
asks "am I the main process?" before anything heavy is loaded); the collectives import it when
they run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

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

    @property
    def is_main(self) -> bool:
        """Only the main process writes files, logs and progress."""
        return self.rank == 0

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
    if "WORLD_SIZE" in env:
        return World(
            rank=int(env.get("RANK", "0")),
            size=int(env["WORLD_SIZE"]),
            local_rank=int(env.get("LOCAL_RANK", "0")),
            launched=True,
        )
    if "SLURM_STEP_NUM_TASKS" in env and "SLURM_PROCID" in env:
        addr, port = env.get("MASTER_ADDR"), env.get("MASTER_PORT")
        return World(
            rank=int(env["SLURM_PROCID"]),
            size=int(env["SLURM_STEP_NUM_TASKS"]),
            local_rank=int(env.get("SLURM_LOCALID", "0")),
            launched=True,
            init_method=f"tcp://{addr}:{port}" if addr and port else None,
        )
    return World()
