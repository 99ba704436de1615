"""What every benchmark script's command line shares: value checks, output paths, one-line errors.

The benchmarks are rerun with other models and settings by users and reviewers, not only by
their authors. Whatever they pass, a script either does the work or stops at once with one line
`error: <what> (<where>) - <what to do>` and a non-zero exit (2: bad input), never a traceback
or a table built from the wrong file. These helpers keep that the same in every script, and
keep the committed results (benchmarks/results, docs/img) from being written by a rerun that
did not name them. Only the standard library is imported here, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")


class Raw(argparse.RawDescriptionHelpFormatter):
    """`--help` shows the script's docstring as written (its commands and what it writes)."""


def parser(doc: str | None, **kwargs: Any) -> argparse.ArgumentParser:
    """An argument parser whose `--help` is the module docstring, line breaks kept."""
    return argparse.ArgumentParser(description=doc, formatter_class=Raw, **kwargs)


def fail(what: str, where: str, hint: str = "", code: int = 2) -> NoReturn:
    """Print the project's one-line error and exit (2: bad input)."""
    print(f"error: {what} ({where})" + (f" - {hint}" if hint else ""), file=sys.stderr)
    sys.exit(code)


def command(script: str | None = None) -> str:
    """The command that is running, as a results file records it: quoted as a shell reads it,
    so it can be pasted back (a `--json "my runs/x.json"` used to be recorded unquoted, which
    runs another command); `script` names the script as the docs do (default: as typed)."""
    argv = sys.argv[1:] if script else sys.argv
    return shlex.join(["python", *([script] if script else []), *argv])


def one_line_errors(step: Callable[[], T]) -> T:
    """Runs `step`; an expected error (`DistillError`) is one `error:` line and its exit code
    (2: bad input, 1: work that failed), no traceback."""
    from distill_cli.errors import DistillError

    try:
        return step()
    except DistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.code)


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `low` (argparse turns the ValueError into a usage error)."""

    def check(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    check.__name__ = f"integer >= {low}"
    return check


class Several(argparse.Action):
    """A list option written any of the usual ways: `--x a b`, `--x a,b` or `--x a --x b`.

    The scripts grew three habits (arch_sweep's commas, full_data's spaces, export_latency's
    repeats), and a rerun written with another script's habit was refused, or read `a,b` as one
    timm name. Every list option takes all three; `item` checks and converts each value
    (`at_least(1)`), as `type` does for one, and a bad one is argparse's usage error. A value
    given twice is one too: `--seeds 1,1` ran two runs of one name into one folder at once, and
    `--models a,a` measured a model twice into one table."""

    def __init__(
        self, option_strings: Sequence[str], dest: str, item: Callable[[str], Any] = str, **kw: Any
    ) -> None:
        kw.setdefault("nargs", "+")
        super().__init__(option_strings, dest, **kw)
        self.item = item

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        seen = getattr(namespace, self.dest, None)
        items = list(seen) if isinstance(seen, list) and seen is not self.default else []
        for value in values if isinstance(values, list) else [values]:
            for part in (x.strip() for x in str(value).split(",")):
                if not part:
                    continue
                try:
                    item = self.item(part)
                except (ValueError, argparse.ArgumentTypeError) as exc:
                    parser.error(f"argument {option_string}: invalid value {part!r}: {exc}")
                if item in items:  # the same run twice: one folder written by two processes
                    parser.error(f"argument {option_string}: {part!r} is given twice")
                items.append(item)
        if not items:
            parser.error(f"argument {option_string}: expected at least one value")
        setattr(namespace, self.dest, items)


def place(text: str) -> Path:
    """An argparse type for every path option: the path made absolute against the folder the
    script was started in. The scripts run `distill` (and their own parts) in child processes
    whose working folder is the checkout, where the recipes' relative paths hold; a relative
    `--out runs/x` given from another folder used to be read there by the child and here by
    the script (the runs written into the checkout, then a traceback or wrong figures)."""
    return Path(text).expanduser().absolute()


def positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def add_overwrite(p: argparse.ArgumentParser, what: str = "") -> None:
    """`--overwrite`: the one way to let a script replace a results file that is already there
    (`output_file(..., overwrite=...)`), e.g. a published one under benchmarks/results; `what`
    says what it replaces where a script merges into its file instead."""
    p.add_argument(
        "--overwrite",
        action="store_true",
        help=what
        or "replace the results file if it exists (default: refuse, so that a rerun never "
        "writes over earlier or published results without being asked)",
    )


def output_file(path: Path, option: str, overwrite: bool | None = None) -> Path:
    """A file the script will write: its folder is made now (a rerun may name a new folder or
    one with spaces); a folder of that name is refused before any work is done, and so is a
    file that exists when `overwrite` is False (None: the caller merges or redraws it)."""
    path = Path(path)
    if path.is_dir():
        fail(f"{path} is a folder", option, "name a file")
    if overwrite is False and path.exists():
        fail(
            f"{path} exists",
            option,
            "name another file, or pass --overwrite to replace it (results under "
            "benchmarks/results are the published ones)",
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot make {path.parent}: {exc.strerror}", option, "name a writable folder")
    return path


def output_folder(path: Path, option: str) -> Path:
    """A folder the script will write into, made now: a file of that name, or a place it may
    not write, is one error line before any work (not a traceback after an hour of runs)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        fail(f"{path} is a file", option, "name a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot make {path}: {exc.strerror}", option, "name a writable folder")
    return path


def read_results(
    path: Path, script: str, row_keys: Sequence[str], keys: Sequence[str] = ()
) -> dict[str, Any]:
    """A results JSON written by `script`: its rows must carry `row_keys` and the file `keys`.

    A missing file, a file that is not JSON, or another script's results (another benchmark's
    JSON passed by mistake) is one error line, not a KeyError in the middle of a table."""
    where = str(path)
    if not Path(path).is_file():
        fail("no such results file", where, f"pass the JSON that {script} wrote")
    try:
        data = json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(f"not a JSON file ({exc})", where, f"pass the JSON that {script} wrote")
    rows = data.get("rows") if isinstance(data, dict) else None
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    bad_rows = not isinstance(rows, list) or any(
        not isinstance(r, dict) or any(k not in r for k in row_keys) for r in rows
    )
    if missing or bad_rows:
        fail(
            f"not a results file of {script}",
            where,
            f"pass the JSON that {script} wrote (its rows have {', '.join(row_keys)})",
        )
    return data


def replaceable(
    path: Path,
    script: str,
    row_keys: Sequence[str],
    keys: Sequence[str],
    settings: dict[str, Any],
    overwrite: bool,
) -> None:
    """A results file already at `path` may be rewritten by a run of the same `settings` (a cut
    run completed, the same run again) or with `--overwrite`; one that holds another run's
    results (other models, lengths, budget) or another script's is refused, not replaced."""
    if overwrite or not Path(path).is_file():
        return
    data = read_results(path, script, row_keys, keys)
    mine = json.loads(json.dumps(settings))  # as the JSON holds them: tuples are lists
    differ = [key for key, value in mine.items() if data.get(key) != value]
    if differ:
        fail(
            f"holds the results of another run (its {', '.join(differ)} differ)",
            str(path),
            "name another --json, give that run's settings, or pass --overwrite to replace it",
        )


def redraw(
    doc: str | None,
    script: str,
    row_keys: Sequence[str],
    tables: Callable[[dict[str, Any]], str],
    figure: Callable[[dict[str, Any], Path], None],
    keys: Sequence[str] = (),
) -> None:
    """A report script's command line: RESULTS.json (what `script` wrote, checked by
    `read_results`) and an optional FIGURE.png; prints `tables` of the results and draws
    `figure` where FIGURE.png is named (its folder made, or refused, before anything is shown)."""
    p = parser(doc)
    name = Path(script).name
    p.add_argument("results", type=place, metavar="RESULTS.json", help=f"what {name} wrote")
    p.add_argument("figure", type=place, nargs="?", metavar="FIGURE.png", help="write the figure")
    a = p.parse_args()
    data = read_results(a.results, script, row_keys, keys)
    path = output_file(a.figure, "FIGURE.png") if a.figure is not None else None
    print(tables(data))
    if path is not None:
        figure(data, path)
