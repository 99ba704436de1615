"""distill: distill any timm teacher into a small, fast student, validate it, ship it as ONNX."""

from __future__ import annotations

import os
import signal
import sys

__version__ = "0.1.0"

#: ONNX Runtime (1.2x) keeps a telemetry store in the user's cache folder, a device id and an
#: SQLite event database under `Microsoft/DeveloperTools/.onnxruntime/`, from the first session
#: a process creates, unless this variable is set before it is imported. distill writes only
#: the files it names (docs/runs.md), so the store stays off unless the user set the variable.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

#: The signals that stop a command, a run saving its position first: Ctrl-C, a scheduler's
#: preemption (SIGTERM), and SIGUSR1, the warning SLURM sends ahead of the end with
#: `--signal=USR1@<seconds>` (its default action killed a run on the spot, unsaved). The one
#: list: the package's import, `cli.entry`, the training loop and `process_state` read it.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)

#: Signals (STOP_SIGNALS) that reached the `distill` command while it was still importing,
#: before `cli.entry` put its handler in place; the command answers them as it answers one
#: arriving later (its one line, exit 130 / 143) instead of dying with a traceback or by
#: the signal. Only the command defers them: a program that imports distill keeps its own.
early_signals: list[int] = []


def _is_the_command() -> bool:
    """This process is the `distill` console script or `python -m distill_cli`."""
    if sys.argv and os.path.basename(sys.argv[0]) in ("distill", "distill.exe"):
        return True
    args = list(getattr(sys, "orig_argv", []))
    return "-m" in args[:-1] and args[args.index("-m") + 1] == "distill_cli"


def note_early_signal(signum: int, frame: object) -> None:
    early_signals.append(signum)


def _defer_signals_while_importing() -> None:
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) in (signal.default_int_handler, signal.SIG_DFL):
            try:
                signal.signal(sig, note_early_signal)
            except ValueError:  # imported from a thread: not the command's start
                return
        # a signal the process was started ignoring (a background job) stays ignored


if _is_the_command():  # first, before this package's other imports (each ms counts)
    _defer_signals_while_importing()

import importlib  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402


def lazy_face(package: str, face: dict[str, str]) -> Callable[[str], Any]:
    """A package's `__getattr__` that imports each public name from its module on first use
    (PEP 562), so a package's face can name torch-heavy classes while importing one torch-free
    module of the package stays torch-free (`face`: name -> module within `package`)."""

    def getattr_(name: str) -> Any:
        if name in face:
            return getattr(importlib.import_module(f"{package}.{face[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return getattr_
