"""A recipe's files: reading the recipe file (its encodings, standard input, the advice for
a path that is not there) and the checks on the paths it names that a run's start makes (a
path written from the recipe's folder, a run folder inside the data).
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from distill_cli.errors import DistillError
from distill_cli.file_kinds import TEXT, kind_of, not_a_file

if TYPE_CHECKING:
    from distill_cli.recipe.document import Recipe

#: The recipe argument that means "read the recipe from standard input" (a script's output).
STDIN = "-"


def refuse_stdin_for_processes(recipe: Path | str, processes: int) -> None:
    """A recipe piped in (`-`) is read once: each of several processes (`--nproc`, torchrun)
    would read the one pipe, and all but one would find it empty."""
    if str(recipe) == STDIN and processes > 1:
        raise DistillError(
            f"a recipe on standard input cannot be read by {processes} processes",
            "<stdin>",
            "write it to a file (make_recipe > recipe.yaml) and pass that",
        )


def stdin_text() -> str:
    from distill_cli.train.world import world_from_env  # torchrun's or srun's processes

    refuse_stdin_for_processes(STDIN, world_from_env().size)
    if sys.stdin is None or sys.stdin.isatty():
        raise DistillError(
            "the recipe is '-' (standard input), but nothing is piped in",
            "<stdin>",
            "pipe a recipe in (generate_recipe | distill run -), or pass a recipe file",
        )
    return sys.stdin.read()


def missing_recipe_advice(path: Path) -> str:
    """What to write for a recipe path that is not there: the file with its suffix
    (`distill run configs/r`), a shipped recipe by its name (`distill run methods/kd`, as
    `distill recipes` lists it), or a close file name in its folder."""
    from distill_cli.recipe import catalog

    for suffix in (".yaml", ".yml", ".json"):
        if path.with_name(path.name + suffix).is_file():
            return f"write {path}{suffix}"
    shipped = {entry.name: entry.path for entry in catalog.entries()}
    name = path.as_posix().removesuffix(".yaml")
    if name in shipped:
        return f"{name} is a shipped recipe: distill run {shipped[name]}"
    folder = path.parent
    if not folder.is_dir():
        return f"check the path: there is no folder {folder} (from {Path.cwd()})"
    files = {p.stem: p for p in folder.iterdir() if p.suffix in (".yaml", ".yml", ".json")}
    near = difflib.get_close_matches(path.stem, list(files), n=1, cutoff=0.6)
    return f"did you mean {files[near[0]]}?" if near else "check the path"


def recipe_file_text(path: Path) -> str:
    """A recipe file's text. UTF-8, with or without a BOM, or UTF-16 with its BOM (what
    Windows PowerShell's `>` writes), as the YAML spec allows; anything else (a Latin-1 file
    from an old editor) is refused with the line of its first undecodable byte."""
    if path.is_dir():
        from distill_cli.rundir.layout import RunDir

        run = RunDir(path)
        if run.is_run:  # its data.json, eval.json were offered as recipes
            raise DistillError(
                "the recipe is a run folder",
                str(path),
                f"its recipe is {run.recipe} (`distill run {run.recipe} --resume` continues "
                "the run); or pass the recipe file you ran",
            )
        inside = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        inside = inside or sorted(p for p in path.iterdir() if p.suffix == ".json")
        raise DistillError(
            "the recipe is a folder"
            + (
                " (an empty argument, such as an unset $RECIPE, is this folder)"
                if path == Path()
                else ""
            ),
            str(path),
            "pass a recipe file"
            + (": " + ", ".join(str(p) for p in inside[:3]) if inside else ", e.g. recipe.yaml"),
        )
    if path.exists() and not path.is_file():
        raise DistillError("the recipe is not a regular file", str(path), "pass a YAML file")
    refuse_odd_text_file(path, "recipe", "pass the recipe's YAML file")  # a link loop too
    if not path.is_file():
        raise DistillError("recipe file not found", str(path), missing_recipe_advice(path))
    return read_recipe_bytes(path)


#: The largest text file a recipe reads whole (the recipe itself, a class names file): a
#: million class names of 60 characters are 60 MB; a larger file is another file.
MAX_TEXT_BYTES = 64 << 20


def refuse_odd_text_file(path: Path, what: str, hint: str) -> None:
    """A one-line error, before any read, for a text file the recipe names that is a device, a
    pipe or a folder (`class_names: /dev/zero` was read until the OOM killer ended the run; a
    FIFO waits for a writer forever), or larger than :data:`MAX_TEXT_BYTES`."""
    there = not_a_file(path)
    if there:
        raise DistillError(f"the {what} is {there}, not a file", str(path), hint)
    try:
        size = path.stat().st_size
    except OSError:
        return  # not there, or not readable: the read says which
    if size > MAX_TEXT_BYTES:
        raise DistillError(
            f"the {what} is {size / 2**20:,.0f} MiB, more than such a file can be "
            f"({MAX_TEXT_BYTES >> 20} MiB)",
            str(path),
            hint,
        )


def read_recipe_bytes(path: Path) -> str:
    """A recipe file's text in the encodings editors write (UTF-8, with or without a BOM;
    UTF-16 with its BOM, what PowerShell's `>` writes), else one line naming the byte and
    how to convert. Every reader of a recipe file (`distill run`, `distill recipes`) uses it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DistillError(
            f"cannot read the recipe: {exc.strerror or exc}",
            str(path),
            "check that the file is readable by this user",
        ) from exc
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass  # refused below as what it is
    binary = b"\x00" in data[:512]  # no text holds NUL (a safetensors header does)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        _not_a_recipe(path)
        line = data[: exc.start].count(b"\n") + 1
        raise DistillError(
            f"the recipe is not UTF-8 text (byte {exc.start}, line {line})",
            f"{path}:{line}",
            f"save it as UTF-8 (iconv -f latin1 -t utf-8 {path.name} > utf8.yaml, or your "
            "editor's 'save with encoding')",
        ) from exc
    if binary:
        _not_a_recipe(path)
    return text


def _not_a_recipe(path: Path) -> None:
    """A PNG, a checkpoint or an ONNX file given as the recipe is named as what it is, not
    refused for its encoding (`iconv` advice) or its YAML syntax."""
    what = kind_of(path)
    if what not in (None, TEXT):
        raise DistillError(
            f"the recipe is not UTF-8 text: the file is {what}",
            str(path),
            "pass the recipe's YAML file (`distill recipes` lists the shipped ones)",
        )


def refuse_a_run_inside_the_data(recipe: Recipe) -> None:
    """The run folder inside a folder read for images (`output.dir: data/train`): the run
    made its folder, then the scan took it for an empty class ("add images to them, or remove
    them", about distill's own folder), and a run that went through would have left files
    that the next run reads as data. `--dry-run` said nothing. Checked for the commands that
    start a run (`recipe.given`), not on every load: a run made before can still be exported."""
    run = Path(os.path.realpath(recipe.run_dir))
    for key, folder in recipe.data.scanned_folders():
        split = Path(os.path.realpath(folder))
        if run == split or split in run.parents:
            raise DistillError(
                f"the run folder {recipe.run_dir} is inside {key} ({folder}), which is read "
                "for images: its files would be read as data",
                "output.dir",
                "set output.dir to a folder outside the data (e.g. runs)",
            )


def refuse_paths_meant_from_the_recipe(recipe: Recipe, folder: Path) -> None:
    """Relative input paths that are missing from the cwd but exist beside the recipe file
    (`data.root: ../data` in `configs/x.yaml`, run from the project root): the user meant the
    recipe's folder, and would get "not found" for a path that is right there. Relative paths
    are the cwd's (one rule, as `--set` and the shell have it); the error says so and gives
    the paths to write, all of them at once (one fixed, the next was refused). `output.dir` is
    created, not read, and is left alone."""
    if folder.resolve() == Path.cwd().resolve():
        return
    found = _beside(recipe, folder)
    if not found:
        return
    keys = ", ".join(key for key, _, _ in found)
    shown = "; ".join(f"{key}: {path}" for key, path, _ in found)
    write = ", ".join(f"{key}: {there}" for key, _, there in found)
    raise DistillError(
        f"{shown} {'is' if len(found) == 1 else 'are'} not found from the directory distill "
        f"runs in ({Path.cwd()}): relative paths are relative to it, not to the recipe's folder",
        keys,
        f"write {write} (found beside the recipe), or run distill from {folder}",
    )


def _beside(node: Any, folder: Path, key: str = "") -> list[tuple[str, Path, Path]]:
    """(key, path, the path from the cwd) of each relative path under `node` that is missing
    from the cwd and found beside the recipe."""
    if isinstance(node, Path):
        if key != "output.dir" and not node.is_absolute() and not _exists(node):
            there = Path(os.path.normpath(folder / node))  # configs/../data is data
            if _exists(there):
                return [(key, node, there)]
        return []
    if isinstance(node, list):
        return [found for item in node for found in _beside(item, folder, key)]
    if isinstance(node, BaseModel):
        return [
            found
            for name in type(node).model_fields
            for found in _beside(getattr(node, name), folder, f"{key}.{name}" if key else name)
        ]
    return []


def _exists(path: Path) -> bool:
    """Whether `path` exists; a name the file system refuses (too long) is not there, and the
    run's own reading of it says so with its path."""
    try:
        return path.exists()
    except OSError:
        return False
