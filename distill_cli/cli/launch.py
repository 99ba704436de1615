"""`distill run/train --nproc N`: the same command in N processes on this machine, via torchrun.

torchrun's launcher runs in this process (not `exec`ed), so its end is distill's: a process
that failed has said its one line already (`cli.entry`), and the launcher's report of it (a
60-line traceback of its own, then exit 1 whatever the code) is replaced by the failed
process's own exit code; one killed by a signal, which could say nothing, gets one line naming
it. `--nproc` under a launcher that already started the processes (an outer torchrun or srun)
is refused: the processes would each start N more, or the flag would be ignored; one srun task
(`srun -n 1 distill run --nproc 8`) starts them as torchrun would.
"""

from __future__ import annotations

import logging
import signal
import sys

from distill_cli import STOP_SIGNALS
from distill_cli.errors import DistillError
from distill_cli.train.world import World, world_from_env


def processes(nproc: int, argv: list[str]) -> None:
    """Start `argv` (this command) in `nproc` processes and exit with their result; returns
    only when this process is to run the command itself (one process, or already launched)."""
    from distill_cli.host import check_threads

    check_threads(nproc, "--nproc")  # `--nproc 1e12`: torchrun started processes until killed
    world = world_from_env()
    if world.launched and nproc > 1 and not _one_srun_task(world):
        raise nested(nproc, world)
    if nproc <= 1:
        return
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    # torchrun passes SIGTERM/SIGINT/SIGHUP/SIGQUIT on to its processes; SIGUSR1 (SLURM's
    # `--signal=USR1@90` warning) it left to distill's own handler, which stopped the launcher
    # and so sent the processes SIGTERM: two lines that disagreed (`interrupted by SIGTERM at
    # step N; position saved`, then `interrupted by SIGUSR1 ... run it again to finish`).
    stops = ",".join(["SIGHUP", "SIGQUIT", *(sig.name for sig in STOP_SIGNALS)])
    args = get_args_parser().parse_args(
        [
            "--standalone",
            f"--nproc_per_node={nproc}",
            f"--signals-to-handle={stops}",
            "-m",
            "distill_cli",
            *without_nproc(argv),
        ]
    )
    # the launcher's notes (OMP_NUM_THREADS, each process it stops, each failure) repeat
    # what the processes say in their own lines (torch sets each module's logger's level)
    for name in [*logging.root.manager.loggerDict, "torch.distributed.run"]:
        if name.startswith(("torch.distributed.elastic", "torch.distributed.run")):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        run(args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        code = failure.exitcode
        if code < 0:  # killed by a signal: the process could not say why
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else ""
            print(
                f"error: process {rank} of {nproc} was killed by {name or f'signal {-code}'} "
                "(the out-of-memory killer, or a kill from outside) - the others were stopped; "
                "--resume continues from the last checkpoint",
                file=sys.stderr,
            )
            code = 128 - code
        sys.exit(code)
    except SignalException as exc:  # the launcher was stopped: it stopped the processes
        sys.exit(128 + int(exc.sigval))
    sys.exit(0)


def _one_srun_task(world: World) -> bool:
    """`srun -n 1 distill run --nproc 8`: one task, whose processes are --nproc's (torchrun's
    variables win in them); srun starting several tasks, each starting N more, is refused."""
    return world.size == 1 and world.init_method != "env://"


def nested(nproc: int, world: World) -> DistillError:
    return DistillError(
        f"--nproc {nproc} under a launcher that already started {world.size} process"
        f"{'es' if world.size != 1 else ''} (torchrun or srun)",
        "--nproc",
        "drop --nproc: the launcher's processes are the run's (set their number there)",
    )


def without_nproc(argv: list[str]) -> list[str]:
    """The command line without `--nproc N` / `--nproc=N`."""
    args, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            args.append(arg)
    return args
