"""The shipped recipes: where they are, what each is for, and one in full.

Recipes are data files in the repository's `recipes/` folder (and a `recipes/` folder in the
current directory, for a team's own). A recipe's name is its path there without `.yaml`, e.g.
`methods/kd`; its one-line description is its `description` key or else its first comment line.

The package reaches the shipped ones as `distill_cli/shipped_recipes`: in a clone (an editable
install) a link to `recipes/`, in a built wheel its copy (pyproject's package data), so
`distill recipes` and `students --write-recipe` work however distill was installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from distill_cli.errors import DistillError, did_you_mean
from distill_cli.recipe.yaml_text import parse_yaml


@dataclass(frozen=True)
class Entry:
    name: str
    path: Path
    summary: str

    def text(self) -> str:
        """The recipe file in full, comments included (`distill recipes show`)."""
        return read_text(self.path)


#: The recipes distill ships (see the module's docstring).
SHIPPED = (Path(__file__).resolve().parents[1] / "shipped_recipes").resolve()  # the clone: recipes/


def roots() -> list[Path]:
    found = []
    for root in (Path.cwd() / "recipes", SHIPPED):
        if root.is_dir() and root.resolve() not in [r.resolve() for r in found]:
            found.append(root)
    return found


def _summary(path: Path) -> str:
    """The recipe's description; a team folder's unreadable file is listed, not fatal."""
    try:
        text = read_text(path)
    except DistillError as exc:
        return f"({exc.what})"
    try:
        data = parse_yaml(text)
    except yaml.YAMLError:
        data = None
    if isinstance(data, dict) and data.get("description"):
        return str(data["description"])
    for line in text.splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def read_text(path: Path) -> str:
    """A recipe file's text, or a one-line error saying why it cannot be read."""
    from distill_cli.recipe.files import read_recipe_bytes

    return read_recipe_bytes(path)


def entries() -> list[Entry]:
    out: dict[str, Entry] = {}
    for root in roots():
        for path in sorted(p for p in root.rglob("*.yaml") if p.is_file()):
            name = path.relative_to(root).with_suffix("").as_posix()
            out.setdefault(name, Entry(name, path, _summary(path)))
    return sorted(out.values(), key=lambda e: e.name)


def shipped(name: str) -> Path:
    """A shipped recipe's file, never a same-named one of the working directory's `recipes/`
    (a template whose settings distill vouches for: `students --write-recipe`)."""
    path = SHIPPED / f"{name}.yaml"
    if not path.is_file():
        raise DistillError(
            f"the shipped recipe {name!r} is missing", str(path), "reinstall distill"
        )
    return path


def find(name: str) -> Entry:
    known = {e.name: e for e in entries()}
    key = name.removesuffix(".yaml")
    if key in known:
        return known[key]
    hint = did_you_mean(key, known) or "see `distill recipes`"
    raise DistillError(f"no shipped recipe {name!r}", "recipes", hint)
