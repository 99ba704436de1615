"""The Python API's argument checks: a caller's wrong type becomes one `WrongType` line.

The CLI's flags are typed by click before a command runs; a Python caller passes anything
(a number for a path, "no" for a switch, a misspelt keyword), which used to surface as a bare
TypeError or AttributeError from deep inside (pathlib, a comparison, `str.split`). Each check
here names the argument and what it must be, so `api` raises only `DistillError`s. Torch-free.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from distill_cli.errors import DistillError, WrongType, did_you_mean
from distill_cli.file_kinds import url_problem
from distill_cli.host import whole_problem

PATH = "a path (str or pathlib.Path)"

P = ParamSpec("P")
R = TypeVar("R")


def plain(value: Any, name: str, depth: int = 0) -> Any:
    """`value` with the numbers a notebook computes as Python's: a numpy or torch scalar
    (`np.int64(3)` from a grid, `arr.max()`) as int/float/bool and an array as a list, in
    dicts, lists and tuples too (a copy: the caller's are not changed). `np.int64(800)` was
    refused as "not a number", `np.int64(1)` became a JSON traceback when report.json was
    written, a `np.float32` NaN passed the finite checks (it is no Python float), and an array
    was "The truth value of an array ... is ambiguous". A whole number beyond int64 (outside
    a recipe mapping, whose keys say it themselves) is refused naming `name`: its bound was
    shown with `:g`, an OverflowError traceback."""
    if type(value).__module__.split(".")[0] in ("numpy", "torch") and hasattr(value, "tolist"):
        value = value.tolist()  # a scalar's Python value, or an array's nested lists
    problem = whole_problem(value)
    if problem:
        raise DistillError(f"{name} is {problem}", name, "pass the value meant")
    if depth > 32:  # deeper data is refused as too deep by the checks that read it
        return value
    if isinstance(value, dict):
        return {key: _plain_item(item, name, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(item, name, depth + 1) for item in value)
    return value


def _plain_item(value: Any, name: str, depth: int) -> Any:
    """A mapping's value made plain; a huge whole number is left for the recipe's own check,
    which names its key."""
    try:
        return plain(value, name, depth)
    except DistillError:
        return value


def plain_arguments(fn: Callable[P, R]) -> Callable[P, R]:
    """An API function whose arguments are made `plain` before it runs (one place for every
    function, so each check after it sees Python numbers)."""
    names = list(inspect.signature(fn).parameters)

    @functools.wraps(fn)
    def wrapper(*given: P.args, **keywords: P.kwargs) -> R:
        positional = [
            plain(value, names[i] if i < len(names) else "argument", 0)
            for i, value in enumerate(given)
        ]
        named = {key: plain(value, key, 0) for key, value in keywords.items()}
        return fn(*positional, **named)  # type: ignore[arg-type]

    return wrapper


def path(value: Any, name: str, what: str = PATH) -> Path:
    """An argument that names a file or folder; anything else is a one-line WrongType (it was
    a TypeError from deep inside pathlib, or a number taken for a timm model's name)."""
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes):
        return Path(value)
    raise WrongType(f"{name} must be {what}, not {type(value).__name__}", name)


def optional_path(value: Any, name: str) -> Path | None:
    return None if value is None else path(value, name)


def source(value: Any) -> str:
    """A run folder, checkpoint, ONNX file or timm name (a number was taken for a model name)."""
    what = "a run folder, checkpoint or file path, or a timm model name (str or pathlib.Path)"
    return str(path(not_empty(value), "source", what))


def not_empty(source: Any) -> Any:
    """SOURCE as given, unless it is empty text: Path("") is the working directory, so an
    unset variable (`distill export "$RUN"`) was "not a run directory (.)"."""
    if isinstance(source, str) and not source.strip():
        raise DistillError(
            "SOURCE is empty (an unset variable?)",
            "SOURCE",
            "pass a run folder (runs/<name>), a checkpoint or a timm model name",
        )
    problem = url_problem(source) if isinstance(source, str) else None
    if problem:
        raise DistillError(f"SOURCE {problem[0]}", source, problem[1])
    return source


def text(value: Any, name: str, optional: bool = False) -> str | None:
    """A name (a timm model, a shipped recipe): a str."""
    if isinstance(value, str) or (optional and value is None):
        return value
    raise WrongType(f"{name} must be a str, not {type(value).__name__}", name)


def switch(value: Any, name: str) -> bool:
    """`resume="no"` was true: a switch is True or False."""
    if not isinstance(value, bool):
        raise WrongType(f"{name} must be True or False, not {type(value).__name__}", name)
    return value


def number(value: Any, name: str) -> float | None:
    """An optional number: `throughput="800"` or True failed deep inside the projection."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise WrongType(f"{name} must be a number, not {type(value).__name__}", name)
    return value


def function(value: Any, name: str) -> None:
    """A callback (`log`, `progress`): callable or None."""
    if value is not None and not callable(value):
        raise WrongType(f"{name} must be a function or None, not {type(value).__name__}", name)


def reporter(value: Any) -> None:
    """A reporter without the methods failed at the first step."""
    methods = ("start", "advance", "log", "finish")
    if value is not None and not all(callable(getattr(value, m, None)) for m in methods):
        raise WrongType(
            "reporter must have the methods start, advance, log and finish "
            "(distill_cli.train.reporter.Reporter)",
            "reporter",
        )


def known_keywords(given: Iterable[str], known: Iterable[str], what: str) -> None:
    """Keywords the function does not take: named, with the nearest valid one."""
    known = sorted(known)
    unknown = sorted(set(given) - set(known))
    if not unknown:
        return
    hint = did_you_mean(unknown[0], known) or "valid: " + ", ".join(known)
    raise WrongType(f"unknown {what}: {', '.join(unknown)}", unknown[0], hint)


def one_of(object_name: str, keywords: str) -> WrongType:
    """The options came both as an object and as keywords."""
    return WrongType(f"pass the {keywords} as {object_name} or as keywords, not both", object_name)


#: How `--input-size` is written (the recipe's `input_size: 224` or `[224, 192]`, as text).
INPUT_SIZE_FORMS = "a side (224) or HxW (224x192)"


def input_size(value: Any, flag: str = "--input-size", least: int = 1) -> tuple[int, int] | None:
    """An input size as a user writes it, as (height, width): a side (`224`, a square) or
    `HxW` (`224x192`, the recipe's `input_size: [224, 192]`), from a flag's text or a Python
    caller's int, str or pair. Each side is within [least, host.MAX_INPUT_PX]. `3x224x224`
    (timm's [C, H, W]) is refused, as the recipe refuses it: channels are the model's
    `in_chans`, not a size. One owner for every command's `--input-size`."""
    from distill_cli.host import check_input_px

    if value is None:
        return None
    if isinstance(value, bool):
        raise WrongType(f"{flag} must be {INPUT_SIZE_FORMS}, not a bool", flag)
    if isinstance(value, str):
        text = value.strip().lower().replace("×", "x")
        parts = [p.strip() for p in text.split("x")] if text else []
    elif isinstance(value, int):
        parts = [str(value)]
    elif isinstance(value, (tuple, list)) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        parts = [str(v) for v in value]
    else:
        raise WrongType(f"{flag} must be {INPUT_SIZE_FORMS}, not {type(value).__name__}", flag)
    if not parts or not all(p.isdigit() and p.isascii() for p in parts) or len(parts) > 3:
        raise DistillError(
            f"{value!r} is not an input size", flag, f"give {INPUT_SIZE_FORMS}, in pixels"
        )
    if len(parts) == 3:
        raise DistillError(
            f"{value!r} has three numbers: channels are the model's in_chans, not a size",
            flag,
            f"give {'x'.join(parts[1:])} ({INPUT_SIZE_FORMS})",
        )
    sides = [int(p) for p in parts]
    for side in sides:
        if side < least:
            raise DistillError(
                f"input size {side} px is below {least} px", flag, f"give {least} or more per side"
            )
        check_input_px(side, flag)
    return (sides[0], sides[-1])


def square_side(value: Any, flag: str = "--input-size", least: int = 1) -> int:
    """`input_size` for a command that times one square side (`distill students`): `224` or
    `224x224`; a non-square `HxW` is refused in one line rather than timed as something else."""
    size = input_size(value, flag, least)
    if size is None:
        raise WrongType(f"{flag} must be {INPUT_SIZE_FORMS}, not None", flag)
    if size[0] != size[1]:
        raise DistillError(
            f"{size[0]}x{size[1]} is not square: candidates are timed at one square side",
            flag,
            f"give one side, e.g. {flag} {max(size)}",
        )
    return size[0]
