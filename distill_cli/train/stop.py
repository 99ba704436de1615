"""How a run stops on a signal: the errors it ends with, and when several processes agree.

A scheduler's preemption (SLURM's SIGTERM, torchrun's own SIGTERM when it stops its processes)
gives a run a grace period before SIGKILL: 30 s for torchrun, SLURM's KillWait (30 s by
default). Under several processes the stop must be agreed (each process must save, or not,
at the same step), and agreeing only when a metrics line is due (`schedule.log_every`, 50
steps by default) could take longer than the grace on a large model, so the run was killed
after all and lost everything since its last checkpoint. Between log lines the processes also
agree every few seconds of training: the interval in steps is worked out from the slowest
process's step time at each agreement (one small all-reduce, so every process counts the same
interval), and never longer than the log interval.
"""

from __future__ import annotations

import signal
import time

import torch

from distill_cli.errors import RunFailed
from distill_cli.train.world import World

#: Longest time between two agreements, in seconds of training.
AGREE_EVERY_S = 2.0


class Interrupted(RunFailed):
    """SIGINT/SIGTERM: the run saved its position and stopped; `--resume` continues it."""

    def __init__(self, signum: int, step: int, path: str) -> None:
        name = signal.Signals(signum).name
        super().__init__(
            f"interrupted by {name} at step {step}; position saved", path, "continue with --resume"
        )
        self.code = 128 + signum


class StoppedAtOnce(RunFailed):
    """A second SIGINT/SIGTERM before the position was saved: the run stopped at once, and the
    last checkpoint written (atomically, so whole) is where `--resume` continues."""

    def __init__(self, signum: int, saved: int | None, path: str) -> None:
        name = signal.Signals(signum).name
        where = f"the last saved position (step {saved}) is intact" if saved is not None else ""
        super().__init__(
            f"stopped at once by a second {name}" + (f"; {where}" if where else ""),
            path,
            "continue with --resume" if saved is not None else "run it again to start over",
        )
        self.code = 128 + signum


class StopAgreement:
    """The signal every process has seen, agreed at steps all of them choose alike."""

    def __init__(self, world: World, log_every: int) -> None:
        self.world = world
        self.log_every = log_every
        self.every = 1  # until a step's time is known
        self._at: tuple[int, float] | None = None  # (step, time) of the last agreement

    def due(self, step: int) -> bool:
        """Whether `step` is one the processes agree at (besides the log steps)."""
        return self.world.distributed and step % self.every == 0

    def agree(self, step: int, signum: int | None, device: torch.device) -> int | None:
        """The signal to stop on (None: go on); a collective, so every process calls it."""
        if not self.world.distributed:
            return signum
        now = time.perf_counter()
        per_step = 0.0
        if self._at is not None and step > self._at[0]:
            per_step = (now - self._at[1]) / (step - self._at[0])
        both = self.world.max(torch.tensor([float(signum or 0), per_step], device=device))
        signal, slowest = int(both[0].item()), float(both[1].item())
        self._at = (step, time.perf_counter())
        if slowest > 0:
            self.every = max(1, min(self.log_every, int(AGREE_EVERY_S / slowest)))
        return signal or None
