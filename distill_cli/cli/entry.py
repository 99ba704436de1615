"""The console-script entry point: runs the Typer app and turns expected errors into one line.

Expected failures (:class:`DistillError`) print ``error: ...`` and exit with their code; with
``--debug`` (or ``DISTILL_DEBUG=1``) the traceback is shown too. Anything else is a bug and keeps
its traceback.

Ctrl-C and SIGTERM (a scheduler's preemption, `kill`) unwind the command as an interrupt, so
what it cleans up on the way out runs (an export removes the files it had not checked yet, a run
refused before its first step removes its folder), and end in one line with exit 130 / 143.
Typer turns an interrupt into a silent exit code 130; the signal is remembered here to say so.
A signal that came while the command was still importing (noted by `distill_cli/__init__`,
only in the command's own process) is answered the same way as soon as the handler is in place.
A training loop takes the signals over while it runs (it saves its position first).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import distill_cli
from distill_cli.cli.environment import environment_warnings, open_closed_streams
from distill_cli.errors import EXIT_BROKEN_PIPE, EXIT_FAILURE, DistillError


def entry(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    open_closed_streams()  # first: before any file takes a free descriptor 0, 1 or 2
    _printable_streams()
    for line in environment_warnings():  # before torch's import, which reads the variables
        print(f"warning: {line}", file=sys.stderr)
    stdout_at_start = _stdout_file()
    debug = "--debug" in args or os.environ.get("DISTILL_DEBUG") == "1"
    if "--debug" in args[1:]:  # `distill export x --debug` was "No such option: --debug"
        args = ["--debug", *(a for a in args if a != "--debug")]
    received: list[int] = []
    try:
        with _interrupts(received):
            from distill_cli.cli.app import app  # seconds of imports: Ctrl-C there is one line too

            code = app(args=args, prog_name="distill", standalone_mode=False)
    except DistillError as exc:
        _fail(f"error: {exc}", exc.code, debug, own=exc.own_failure)
    except KeyboardInterrupt:
        code = 130
    except SystemExit:
        if _stdout_went_away(stdout_at_start):
            sys.exit(EXIT_BROKEN_PIPE)
        raise
    except OSError as exc:  # the file system said no (permissions, a full disk, a FIFO...)
        from distill_cli.files import fs_failed

        if exc.filename is None and _stdout_fails(exc):  # `> /dev/full`, a full disk under `> log`
            failed = fs_failed(exc, "standard output", "write the command's output")
        else:
            failed = fs_failed(exc, exc.filename or "a file", "work with a file")
        _fail(f"error: {failed}", failed.code, debug, own=True)
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        if _is_click_error(exc):
            line = usage_line(exc) + set_with_a_space(args) + dash_name(args)
            _fail(f"error: {line}", int(getattr(exc, "exit_code", 2)), debug)
        if type(exc).__name__ == "Abort":
            _fail("error: aborted", EXIT_FAILURE, debug)
        raise
    if code == 130:  # Typer's code for an interrupt
        _fail(_interrupted(received, args), 128 + (received[-1] if received else 2), False)
    _flush_stdout()
    sys.exit(code if isinstance(code, int) else 0)


def _stdout_file() -> tuple[int, int] | None:
    """The file behind stdout's descriptor (device, inode); None where there is none."""
    try:
        st = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # captured (tests), closed, or replaced
        return None
    return st.st_dev, st.st_ino


def _stdout_went_away(at_start: tuple[int, int] | None) -> bool:
    """Rich and click answer a closed stdout (EPIPE) by exiting 1 without a word, which a
    script cannot tell from a failed command (`EXIT_BROKEN_PIPE` instead). Rich points the
    descriptor at /dev/null first, click wraps the streams so their flush is quiet: what
    each leaves behind is how the cut is known here."""
    if type(sys.stdout).__name__.endswith("PacifyFlushWrapper"):
        return True
    return at_start is not None and _stdout_file() not in (at_start, None)


def _stdout_fails(exc: OSError) -> bool:
    """Whether writing to stdout is what failed (`> /dev/full`, a full disk under `> log`):
    the innermost frames are a write of rich's console or click's echo to `sys.stdout`. It
    is then pointed at /dev/null, so that the interpreter's exit does not try again."""
    import traceback

    frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)][-3:]
    for frame in frames:
        for key in ("self", "file"):
            held = frame.f_locals.get(key)
            if held is sys.stdout or getattr(held, "file", None) is sys.stdout:  # rich's too
                with contextlib.suppress(OSError, ValueError):
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, sys.stdout.fileno())
                return True
    return False


def _flush_stdout() -> None:
    """Output still buffered when the reader is gone raised BrokenPipeError at the
    interpreter's exit ("Exception ignored ..."): flushed here, a cut is `EXIT_BROKEN_PIPE`."""
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):  # ValueError: a stdout already closed
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        sys.exit(EXIT_BROKEN_PIPE)


def _printable_streams() -> None:
    """Output a stream cannot encode is written escaped (`\\xe9`), not raised.

    Under `PYTHONIOENCODING=ascii` or a Windows code page, a report line naming a folder
    `dossier é` was a UnicodeEncodeError traceback after the work was done. UTF-8 streams (the
    usual case, and Python's own under LC_ALL=C) are left as they are."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        reconfigure = getattr(stream, "reconfigure", None)
        if encoding != "utf8" and reconfigure is not None:
            with contextlib.suppress(Exception):  # a stream that cannot change keeps its way
                reconfigure(errors="backslashreplace")


@contextmanager
def _interrupts(received: list[int]) -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt while the command runs (SIGTERM would end
    the process without a line or any cleanup); each signal is noted in `received`. A signal
    the process was started ignoring (a background job of a script) stays ignored. Called
    in-process (tests, a script), the caller's handlers are back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    previous = {
        sig: signal.signal(sig, interrupt)
        for sig in distill_cli.STOP_SIGNALS
        if signal.getsignal(sig) is not signal.SIG_IGN
    }
    for sig, handler in previous.items():
        if handler is distill_cli.note_early_signal:
            # the command's own process: once its exit code is decided, a signal is ignored.
            # Put back, Python's handler would raise in the middle of the exit, and the
            # interpreter's finalization resets it to the default action, which kills the
            # process by the signal (exit -2, no line) while torch's teardown still runs.
            previous[sig] = signal.SIG_IGN
    try:
        early = distill_cli.early_signals  # arrived while the command was importing
        if early:
            received.extend(early)
            early.clear()
            raise KeyboardInterrupt
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _interrupted(received: list[int], args: list[str]) -> str:
    name = f" by {signal.Signals(received[-1]).name}" if received else ""
    command = " ".join(["distill", *[a for a in args if not a.startswith("-")][:1]])
    return (
        f"error: interrupted{name} ({command}) - nothing half-written was left; run it again "
        "to finish"
    )


def _fail(message: str, code: int, debug: bool, own: bool = False) -> None:
    """Print the error line and exit with `code`. Under several processes each one fails, and
    the line is said once: by rank 0, and by another rank only for a failure of its own
    (`DistillError.own`), naming it (`error: rank 3 of 8: ...`): the input's refusal, an agreed
    stop or a lost peer, met by every process alike, is not repeated by each."""
    other = _other_rank()
    if other is not None:
        if not own:
            sys.exit(code)
        message = f"error: rank {other}: {message.removeprefix('error: ')}"
    if debug:
        import traceback

        traceback.print_exc()
    # one line whatever it quotes: a path or value holding a line break (`--checkpoint $'a\nb'`)
    # split it, and the tail read as another message
    message = "".join(c if c >= " " and c != "\x7f" else repr(c)[1:-1] for c in message)
    print(message, file=sys.stderr)
    sys.exit(code)


def _other_rank() -> str | None:
    """`3 of 8` for a process of several that is not rank 0; None for rank 0, or one process."""
    from distill_cli.train.world import world_from_env

    try:
        world = world_from_env()
    except DistillError:  # the variables themselves are wrong: each process says so
        return None
    return f"{world.rank} of {world.size}" if world.distributed and not world.is_main else None


def _click_modules() -> list[type[Exception]]:
    """ClickException from click and from the copy Typer vendors (`typer._click`, Typer >= 0.29
    raises its own): a usage error from either is the user's, not a bug."""
    types: list[type[Exception]] = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            module = __import__(name, fromlist=["ClickException"])
        except ImportError:
            continue
        types.append(module.ClickException)
    return types


def _is_click_error(exc: Exception) -> bool:
    return isinstance(exc, tuple(_click_modules()))


def set_with_a_space(args: list[str]) -> str:
    """`--set schedule.epochs 3` (a space, as other tools take it) left `3` as an extra
    argument, and click said only that: the `--set` to write instead, where one is like that."""
    for flag, key, value in zip(args, args[1:], args[2:], strict=False):
        if flag in ("--set", "-s") and "=" not in key and not value.startswith("-"):
            return f"; write --set {key}={value}"
    return ""


def dash_name(args: list[str]) -> str:
    """A file or folder whose name starts with `-` (`distill export -run`) is read as options
    (`No such option: -r`): the way to pass it, where one such name exists here."""
    for arg in args:
        if arg.startswith("-") and arg not in ("-", "--") and os.path.lexists(arg):
            return f"; {arg!r} is a file or folder here, read as an option: pass it as ./{arg}"
    return ""


def usage_line(exc: Exception) -> str:
    """Click's usage error (a mistyped option or command, a bad value) as one line that says
    where to look, instead of its usage block."""
    text = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and getattr(ctx, "command_path", None):
        text += f" - see `{ctx.command_path} --help`"
    return text
