"""Which process this is: the world torchrun describes, read from the environment in one place.

`torchrun --nproc_per_node N -m distill_cli run RECIPE` sets RANK / WORLD_SIZE / LOCAL_RANK. A
single process (no torchrun) is a world of one, and every collective here is then a no-op, so the
engine has one code path. Importing this module does not import torch (the CLI asks "am I the
main process?" before anything heavy is loaded); the collectives import it when they run.
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

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()


def world_from_env() -> World:
    """The world torchrun describes in the environment; a world of one without it."""
    env = os.environ
    return World(
        rank=int(env.get("RANK", "0")),
        size=int(env.get("WORLD_SIZE", "1")),
        local_rank=int(env.get("LOCAL_RANK", "0")),
        launched="WORLD_SIZE" in env,
    )
