"""The run-name rule: what a valid `name` / `output.name` is.

The name becomes a folder under `output.dir` that `--overwrite` empties, so the recipe owns the
rule (it is what a valid name is) and the run folder (rundir/layout.py) applies it to every
folder it is asked to make; nothing else decides it.
"""

from __future__ import annotations

from distill_cli import files
from distill_cli.errors import DistillError

#: The longest folder name of the usual file systems (ext4, xfs, btrfs, APFS, NTFS: 255).
MAX_NAME_BYTES = 255


def check_run_name(name: str, where: str = "output.name") -> str:
    """A run name is one plain path component: no separators, not `.`/`..`, not absolute.

    The name becomes a folder that `--overwrite` empties; anything that could point elsewhere
    (a parent, the working directory, an absolute path) would let it delete the wrong files.
    The recipe owns this rule (it is what a valid `name`/`output.name` is); the run folder
    (rundir/layout.py) applies it to the folders it is asked to make.
    """
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise DistillError(
            f"run name {name!r} is not a plain folder name",
            where,
            "use letters, digits, '.', '_' or '-' (no path separators, not '.' or '..')",
        )
    if files.path_text_problem(name):  # a newline, a tab, or blanks alone: `ls` splits it
        raise DistillError(f"run name {name!r} {files.path_text_problem(name)}", where, "rename it")
    if name[0] in "-~":
        # `runs/-rf` is an option to `rm`, `ls`, `cp` given the folder's name (`rm -r *` in
        # runs/), and a folder named `~` is what `rm -r ~` deletes instead: the user's home
        raise DistillError(
            f"run name {name!r} starts with {name[0]!r}, which shell commands read as "
            + ("an option" if name[0] == "-" else "the home folder"),
            where,
            f"start it with a letter or digit, e.g. {'run' + name if name[0] == '-' else 'home'}",
        )
    size = len(name.encode(errors="surrogateescape"))
    if size > MAX_NAME_BYTES:
        # the file system refused it only when the folder was made: "File name too long ...
        # check the path, free space and permissions", after the data and models were built
        raise DistillError(
            f"run name {name[:40]!r}... is {size} bytes, "
            f"more than a folder name may have ({MAX_NAME_BYTES})",
            where,
            "use a shorter name",
        )
    return name


def plain_name(name: str) -> None:
    """`check_run_name` as a pydantic validator error (the recipe loader adds where)."""
    try:
        check_run_name(name)
    except DistillError as exc:
        raise ValueError(f"{exc.what}; {exc.hint}") from None
