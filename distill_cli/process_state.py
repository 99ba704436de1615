"""The caller's process, left as it was found: what an API call may change and puts back.

`distill_cli.api` runs inside the user's own Python process (a notebook, a script calling it in
a loop), so whatever a call changes process-wide stays changed for the user's code after it:
the torch RNG a run seeds at every step (a user's `torch.manual_seed(0); torch.rand(3)` then
gave other numbers), the numpy and `random` states third-party imports draw from, torch's
thread count and backend flags, `warnings` filters and `logging` levels and handlers (torch's
exporter swaps its trace logger's handlers), SIGINT/SIGTERM handlers, environment variables
(torch's inductor sets TORCHINDUCTOR_CACHE_DIR), the working directory, `sys.path`
(onnxruntime.transformers appends its own folder when imported) and helper threads (tqdm's
monitor, started by torch.fx and never stopped). `ProcessState.capture()` records all of it
and `restore()` puts it back; `leaves_process_as_found` wraps every API function in the pair,
whether the call returns or raises, so this module is the one owner of "what a call leaves".

Not restorable, so checked by the tests instead: torch's inter-op thread count (fixed once
used), and what importing a library does to its own module state (new loggers, caches).
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import random
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from distill_cli import STOP_SIGNALS

P = ParamSpec("P")
R = TypeVar("R")

#: The signals a run catches (trainer) or the command defers (package import).
SIGNALS = STOP_SIGNALS


@dataclass
class TorchState:
    """torch's process-wide settings: threads, backend flags, default dtype, RNGs."""

    threads: int
    flags: dict[str, Any]
    default_dtype: Any
    deterministic: tuple[bool, bool]
    rng: Any
    seed: int
    cuda_rng: list[Any] | None  # only when CUDA was initialised before the call

    @classmethod
    def capture(cls) -> TorchState:
        import torch

        cuda = torch.cuda.is_initialized()
        return cls(
            threads=torch.get_num_threads(),
            flags={name: _flag(name) for name in _TORCH_FLAGS if _flag(name) is not None},
            default_dtype=torch.get_default_dtype(),
            deterministic=(
                torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(),
            ),
            rng=torch.get_rng_state(),
            seed=torch.initial_seed(),
            cuda_rng=torch.cuda.get_rng_state_all() if cuda else None,
        )

    def restore(self) -> None:
        import torch

        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        for name, value in self.flags.items():
            if _flag(name) != value:
                _set_flag(name, value)
        if torch.get_default_dtype() != self.default_dtype:
            torch.set_default_dtype(self.default_dtype)
        if (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        ) != self.deterministic:
            torch.use_deterministic_algorithms(
                self.deterministic[0], warn_only=self.deterministic[1]
            )
        torch.set_rng_state(self.rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        elif torch.cuda.is_initialized():
            # CUDA started during the call: its generators get the seed the caller's last
            # `torch.manual_seed` queued for them (torch's default when none), as if distill's
            # seeding had never happened
            torch.cuda.manual_seed_all(self.seed)

    @staticmethod
    def fresh() -> None:
        """torch was first imported by the call: its RNG as a fresh import leaves it."""
        import torch

        torch.set_rng_state(torch.Generator().get_state())


#: torch's process-wide backend switches, by attribute path under `torch`. The TF32 choices
#: are read through torch's newer `fp32_precision` attributes only: the legacy getters
#: (`allow_tf32`, `get_float32_matmul_precision`) raise once a program has used the new ones.
_TORCH_FLAGS = (
    "backends.cudnn.benchmark",
    "backends.cudnn.deterministic",
    "backends.cudnn.enabled",
    "backends.fp32_precision",
    "backends.cuda.matmul.fp32_precision",
    "backends.cudnn.fp32_precision",
    "backends.cudnn.conv.fp32_precision",
    "backends.cudnn.rnn.fp32_precision",
    "backends.mkldnn.fp32_precision",
    "backends.mkldnn.matmul.fp32_precision",
    "backends.mkldnn.conv.fp32_precision",
    "backends.mkldnn.rnn.fp32_precision",
)


def _flag(name: str) -> Any:
    import torch

    obj: Any = torch
    for part in name.split("."):
        obj = getattr(obj, part, None)
    return obj


def _set_flag(name: str, value: Any) -> None:
    import torch

    *path, last = name.split(".")
    obj: Any = torch
    for part in path:
        obj = getattr(obj, part)
    setattr(obj, last, value)


@dataclass
class LoggerState:
    level: int
    handlers: list[logging.Handler]
    propagate: bool
    disabled: bool


@dataclass
class ProcessState:
    """Everything process-wide an API call may change, as it was when the call began."""

    torch: TorchState | None
    numpy_rng: Any
    python_rng: Any
    warning_filters: list[Any]
    showwarning: Any
    loggers: dict[str, LoggerState]
    logging_disable: int
    signals: dict[int, Any]
    environ: dict[str, str]
    cwd: str | None
    path: list[str]
    modules: set[str]
    threads: set[int]

    @classmethod
    def capture(cls) -> ProcessState:
        np = sys.modules.get("numpy")
        main = threading.current_thread() is threading.main_thread()
        try:
            cwd: str | None = os.getcwd()
        except OSError:  # a deleted working directory: nothing to go back to
            cwd = None
        return cls(
            torch=TorchState.capture() if "torch" in sys.modules else None,
            numpy_rng=np.random.get_state() if np is not None else None,
            python_rng=random.getstate(),
            warning_filters=list(warnings.filters),
            showwarning=warnings.showwarning,
            loggers={name: _logger_state(log) for name, log in _loggers().items()},
            logging_disable=logging.root.manager.disable,
            signals={sig: signal.getsignal(sig) for sig in SIGNALS} if main else {},
            environ=dict(os.environ),
            cwd=cwd,
            path=list(sys.path),
            modules=set(sys.modules),
            threads={t.ident for t in threading.enumerate() if t.ident is not None},
        )

    def restore(self) -> None:
        """Put everything back; a failure to restore one thing does not stop the others."""
        if self.torch is not None:
            self.torch.restore()
        elif "torch" in sys.modules:
            TorchState.fresh()
        np = sys.modules.get("numpy")
        if np is not None and self.numpy_rng is not None:
            np.random.set_state(self.numpy_rng)
        random.setstate(self.python_rng)
        if list(warnings.filters) != self.warning_filters:
            warnings.filters[:] = self.warning_filters
            warnings._filters_mutated()  # type: ignore[attr-defined]  # the cache of filters
        warnings.showwarning = self.showwarning
        self._restore_logging()
        for sig, handler in self.signals.items():
            if handler is not None and signal.getsignal(sig) is not handler:
                signal.signal(sig, handler)
        self._restore_environ()
        if self.cwd is not None and _cwd() != self.cwd:
            os.chdir(self.cwd)
        self._restore_path()
        _stop_helper_threads(self.threads)

    def _restore_logging(self) -> None:
        logging.disable(self.logging_disable)
        current = _loggers()
        for name, saved in self.loggers.items():
            log = current.get(name)
            if log is None:
                continue
            log.setLevel(saved.level)
            log.handlers[:] = saved.handlers
            log.propagate = saved.propagate
            log.disabled = saved.disabled

    def _restore_environ(self) -> None:
        for key in set(os.environ) - set(self.environ):
            del os.environ[key]
        for key, value in self.environ.items():
            if os.environ.get(key) != value:
                os.environ[key] = value

    def _restore_path(self) -> None:
        """The caller's `sys.path`. A package that appended its own folder when the call first
        imported it (onnxruntime.transformers, whose modules import each other by bare name)
        is unloaded with the modules found through that folder: the caller's next import of
        it, or distill's, runs it afresh and puts the folder back for that import's needs."""
        added = [p for p in sys.path if p not in self.path]
        sys.path[:] = self.path
        if not added:
            return
        for name in [m for m in sys.modules if m not in self.modules]:
            origin = getattr(sys.modules[name], "__file__", None) or ""
            if any(origin.startswith(os.path.join(folder, "")) for folder in added):
                del sys.modules[name]


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return None


def _loggers() -> dict[str, logging.Logger]:
    found: dict[str, logging.Logger] = {"": logging.root}
    for name, log in list(logging.root.manager.loggerDict.items()):
        if isinstance(log, logging.Logger):
            found[name] = log
    return found


def _logger_state(log: logging.Logger) -> LoggerState:
    return LoggerState(log.level, list(log.handlers), log.propagate, log.disabled)


def _stop_helper_threads(before: set[int]) -> None:
    """Stop the helper threads the call started and left running. tqdm's monitor is the one
    known: torch.fx's interpreter opens a (disabled) progress bar it never closes, so tqdm's
    monitor thread, which stops when the last bar closes, kept waking every 10 s for the
    process's life, one `atexit` entry more each time."""
    monitor_module = sys.modules.get("tqdm._monitor")
    if monitor_module is None:
        return
    for thread in threading.enumerate():
        if thread.ident in before or not isinstance(thread, monitor_module.TMonitor):
            continue
        atexit.unregister(thread._atexit_signal)
        thread.exit()
        if getattr(thread.tqdm_cls, "monitor", None) is thread:
            thread.tqdm_cls.monitor = None  # the next bar starts its own


def leaves_process_as_found(fn: Callable[P, R]) -> Callable[P, R]:
    """Run the API function with the caller's process state restored after it, returned or
    raised (see the module docstring for what that covers)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        state = ProcessState.capture()
        try:
            return fn(*args, **kwargs)
        finally:
            state.restore()

    return wrapper
