"""Multi-process training through torch.distributed, launched by torchrun.

`torchrun --nproc_per_node N -m distill_cli run RECIPE` sets RANK / WORLD_SIZE / LOCAL_RANK; this
module turns them into a process group (NCCL on GPUs, gloo on CPUs) and a few collectives the
engine needs at log time. A single process (no torchrun) is a world of one, and every helper
here is then a no-op, so the engine has one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Only the main process writes files, logs and progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def max(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def world_from_env() -> World:
    """The world torchrun describes in the environment; a world of one without it."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    return World(
        rank=int(os.environ.get("RANK", "0")),
        size=size,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def init(world: World, device: torch.device) -> None:
    """Join the process group (once per process)."""
    if not world.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)


def joined() -> bool:
    return dist.is_available() and dist.is_initialized()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
