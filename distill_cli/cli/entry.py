"""The console-script entry point: runs the Typer app and turns expected errors into one line.

Expected failures (:class:`DistillError`) print ``error: ...`` and exit with their code; with
``--debug`` (or ``DISTILL_DEBUG=1``) the traceback is shown too. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import os
import sys

from distill_cli.errors import EXIT_FAILURE, DistillError


def entry(argv: list[str] | None = None) -> None:
    from distill_cli.cli.app import app

    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("DISTILL_DEBUG") == "1"
    try:
        code = app(args=args, prog_name="distill", standalone_mode=False)
    except DistillError as exc:
        _fail(f"error: {exc}", exc.code, debug)
    except KeyboardInterrupt:
        _fail("error: interrupted", 130, debug)
    except SystemExit:
        raise
    except OSError as exc:  # the file system said no (permissions, a full disk, a FIFO...)
        from distill_cli.host import fs_failed

        failed = fs_failed(exc, exc.filename or "a file", "work with a file")
        _fail(f"error: {failed}", EXIT_FAILURE, debug)
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        if _is_click_error(exc):
            _fail(f"error: {usage_line(exc)}", int(getattr(exc, "exit_code", 2)), debug)
        if type(exc).__name__ == "Abort":
            _fail("error: aborted", EXIT_FAILURE, debug)
        raise
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int, debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exc()
    print(message, file=sys.stderr)
    sys.exit(code)


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


def usage_line(exc: Exception) -> str:
    """Click's usage error (a mistyped option or command, a bad value) as one line that says
    where to look, instead of its usage block."""
    text = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and getattr(ctx, "command_path", None):
        text += f" - see `{ctx.command_path} --help`"
    return text
