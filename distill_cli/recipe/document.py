"""The recipe: one YAML document that fully describes a run.

Like big_vision's configs, a recipe is data. It is validated by pydantic (unknown keys are rejected
with their path, so a typo never silently falls back to a default), can be overridden from the
command line with ``--set a.b=c``, and is saved resolved into every run directory so that
re-running that file reproduces the run.

The sections are in `distill_cli.recipe.sections` (models, data, augment, output) and
`distill_cli.recipe.loop_sections` (optim, schedule, runtime); this module holds the whole
`Recipe`, its overrides and its loading (its validation errors as one line: `recipe.messages`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    model_validator,
)

from distill_cli.errors import DistillError
from distill_cli.host import MAX_NESTING, check_nesting, nesting_depth
from distill_cli.recipe.loop_sections import OptimSpec, RuntimeSpec, ScheduleSpec
from distill_cli.recipe.sections import (
    AugmentSpec,
    DataSpec,
    MethodParams,
    ModelSpec,
    OutputSpec,
    Strict,
    plain_name,
)
from distill_cli.recipe.yaml_text import parse_yaml, recipe_text

if TYPE_CHECKING:
    from pydantic_core import CoreSchema


class _RegisteredMethods:
    """Pydantic marker: validate `method` against the union of the registered methods' `Params`,
    discriminated by `name`.

    The union is looked up when `Recipe`'s schema is built, which `defer_build` puts off to the
    first validation: importing the recipe (for `--help`, for a schema, for reading a saved
    run's settings) does not import the methods, and so not torch.
    """

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        from distill_cli.methods import MethodParamsUnion

        return handler(MethodParamsUnion)


class Recipe(Strict):
    """A whole run. `student` is the model being trained (`model` is accepted as its alias)."""

    # the `method` union is only known once the methods are imported: see _RegisteredMethods
    model_config = ConfigDict(defer_build=True)

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    description: str = ""
    teacher: ModelSpec | Annotated[list[ModelSpec], Field(min_length=1)] | None = Field(
        None, description="one teacher, or a list whose logits are averaged (an ensemble)"
    )
    student: ModelSpec = Field(validation_alias=AliasChoices("student", "model"))
    data: DataSpec
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    method: Annotated[MethodParams, _RegisteredMethods]
    optim: OptimSpec = Field(default_factory=OptimSpec)
    schedule: ScheduleSpec
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)

    @model_validator(mode="after")
    def _name_is_plain(self) -> Recipe:
        plain_name(self.name)
        return self

    @model_validator(mode="after")
    def _teacher_when_needed(self) -> Recipe:
        from distill_cli.methods import method_class

        cls = method_class(self.method.name)
        if cls.needs_teacher and self.teacher is None:
            raise ValueError(f"method {self.method.name!r} needs a teacher section")
        return self

    @property
    def teachers(self) -> list[ModelSpec]:
        if self.teacher is None:
            return []
        return self.teacher if isinstance(self.teacher, list) else [self.teacher]

    @property
    def run_dir(self) -> Path:
        from distill_cli.rundir.layout import RunDir

        return RunDir.of(self.output.dir, self.output.name or self.name).path

    def to_yaml(self) -> str:
        """The recipe as saved into the run folder, with every path made absolute.

        A recipe's relative paths mean "from the directory `distill` ran in"; resolving them
        when the run is saved keeps the saved recipe meaning the same files from any directory,
        so the run can be exported, reported and resumed from elsewhere. Text is written as
        typed (`/data/photos été`, not `"/data/photos \xe9t\xe9"`), so a path can be found in it.
        """
        return recipe_text(_absolute_paths(self).model_dump(mode="json", exclude_none=False))


def _absolute_paths(node: Any) -> Any:
    """`node` with every Path inside it (models, lists) made absolute against the cwd."""
    return paths_mapped(node, lambda path: Path(os.path.abspath(path.expanduser())))


def paths_mapped(node: Any, change: Callable[[Path], Path]) -> Any:
    """`node` (a recipe, a section, a list of them) with `change` applied to every Path in it:
    made absolute when saved, relocated when a run folder moved with its project (export)."""
    if isinstance(node, Path):
        return change(node)
    if isinstance(node, list):
        return [paths_mapped(item, change) for item in node]
    if isinstance(node, BaseModel):
        fields = type(node).model_fields
        return node.model_copy(update={k: paths_mapped(getattr(node, k), change) for k in fields})
    return node


#: `--set` strings (`optim.lr=3e-3`, values parsed as YAML), or a mapping of dotted keys to
#: Python values (the API's `optim__lr=3e-3` keywords become `{"optim.lr": 3e-3}`).
Overrides = list[str] | Mapping[str, Any]


def _set(raw: dict[str, Any], key: str, value: Any) -> None:
    """Put `value` at the dotted `key`, making the sections on the way. A part of the key
    that is an existing value, not a section (`schedule.epochs.x=1`), is refused here:
    replacing it by a section was reported as "schedule.epochs: Input should be a valid
    integer", about a value the user had not changed."""
    node = raw
    parts = [part.strip() for part in key.strip().split(".")]
    if "" in parts:
        raise DistillError(
            f"the key {key.strip()!r} has an empty part",
            f"--set {key.strip()[:60]}",
            "write the key's dotted path, e.g. schedule.epochs=3",
        )
    if parts[0] == "model" and "model" not in raw:  # `student`'s alias (see `validated`)
        parts[0] = "student"
    for depth, part in enumerate(parts[:-1]):
        inner = node.get(part)
        if inner is not None and not isinstance(inner, dict):
            above = ".".join(parts[: depth + 1])
            raise DistillError(
                f"{above} is a value ({str(inner)[:40]}), not a section: it has no key "
                f"{parts[depth + 1]!r}",
                f"--set {key.strip()[:60]}",
                f"set it as {above}=VALUE",
            )
        if inner is None:
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def set_value(text: str) -> Any:
    """A `--set` value as typed on a command line: YAML for numbers, true/false, null, lists
    (`[32, 32]`) and mappings (`{a: 1}`), and anything else as the text typed.

    Read as YAML alone, `data.root=/data/set #2` was the folder "/data/set" (`#` starts a YAML
    comment), `data.root=/mnt/a: b` a mapping and `data.root=@home/x` a syntax error; a shell
    has no such rules, so plain text is kept whole (surrounding spaces aside). Quoting
    (`'"my dir"'`) still works as in YAML."""
    stripped = text.strip()
    written_as_yaml = stripped[:1] in ("[", "{", '"', "'", "!")
    try:
        parsed = parse_yaml(text)
    except yaml.YAMLError:
        if written_as_yaml:
            raise
        return stripped
    if not written_as_yaml and isinstance(parsed, (str, dict, list)):
        return stripped
    return parsed


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested recipe data as dotted keys (`optim.lr`), the form `--set` and compare use."""
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def _shallow(key: str, value: Any, where: str) -> Any:
    """`value` when it and its key (whose dots nest too: `a.a.a...`) stay within MAX_NESTING
    levels; deeper data would exhaust the stack while it is validated."""
    if key.count(".") + 1 + nesting_depth(value) > MAX_NESTING:
        raise DistillError(
            f"the value nests more than {MAX_NESTING} levels deep", where, "flatten it"
        )
    return value


def apply_overrides(raw: dict[str, Any], overrides: Overrides) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides; values are parsed as YAML so numbers and lists keep their type."""
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            value = value.as_posix() if isinstance(value, Path) else value
            _set(raw, key, _shallow(key, value, key))
        return raw
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DistillError(
                f"override {item[:80]!r} is not KEY=VALUE", "--set", _key_value_advice(item)
            )
        where = f"--set {key[:60]}"
        try:
            parsed = set_value(value)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None)
            raise DistillError(
                f"override {item[:80]!r} has an unparsable value"
                + (f": {problem}" if problem else ""),
                "--set",
            ) from exc
        except RecursionError:
            raise DistillError(
                f"the value nests more than {MAX_NESTING} levels deep", where, "flatten it"
            ) from None
        _set(raw, key, _shallow(key, parsed, where))
    return raw


def _key_value_advice(item: str) -> str:
    """What to write for a `--set` without its `=`: `schedule.epochs 3` (a space, as other
    tools take it) is `schedule.epochs=3`."""
    key, _, value = item.strip().partition(" ")
    if key and value.strip() and "=" not in item:
        return f"write --set {key}={value.strip()} (no space)"
    return "e.g. --set optim.lr=3e-3"


def override_recipe(recipe: Recipe, overrides: Overrides) -> Recipe:
    """A validated copy of `recipe` with overrides applied (the object itself is left alone)."""
    if not overrides:
        return recipe
    # what the recipe's author set, not the defaults: then switching `method.name` does not drag
    # the old method's default parameters along (the same as `--set` on the recipe's file)
    raw = apply_overrides(recipe.model_dump(mode="json", exclude_unset=True), overrides)
    return validated(raw, f"recipe {recipe.name!r}", None, None)


def load_recipe(
    path: Path | str, overrides: Overrides | None = None, fields: Overrides | None = None
) -> Recipe:
    """Read, override and validate a recipe file; every problem becomes a DistillError.

    `overrides` and then `fields` (the API's keywords) are applied to the file's data before
    validation, exactly as `--set` is: `method.name=kd` switches the method.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        raise DistillError("the recipe is not a regular file", str(path), "pass a YAML file")
    if not path.is_file():
        raise DistillError("recipe file not found", str(path), "check the path")
    try:
        raw = parse_yaml(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DistillError(
            f"the recipe is not UTF-8 text (byte {exc.start})", str(path), "pass a YAML file"
        ) from exc
    except OSError as exc:
        raise DistillError(f"cannot read the recipe: {exc.strerror or exc}", str(path)) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise DistillError(f"YAML syntax error: {problem}", where, "fix the YAML") from exc
    except RecursionError:  # the YAML parser recurses per level: thousands exhaust the stack
        raise DistillError(
            f"the recipe nests more than {MAX_NESTING} levels deep", str(path), "flatten it"
        ) from None
    check_nesting(raw, str(path))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise DistillError("a recipe must be a YAML mapping", str(path))
    raw = {key: value for key, value in raw.items() if not _extension(key)}
    recipe = validated(raw, str(path), overrides, fields)
    _refuse_paths_meant_from_the_recipe(recipe, path.parent)
    return recipe


def _extension(key: Any) -> bool:
    """A top-level `x-...` key: YAML scaffolding (an anchor's home, `x-common: &c {...}` merged
    by `<<: *c`), as Docker Compose names its extension fields; it is no recipe key and is
    dropped once the file is read (its values are where the aliases put them)."""
    return isinstance(key, str) and key.startswith("x-")


def validated(
    raw: dict[str, Any], source: str, overrides: Overrides | None, fields: Overrides | None
) -> Recipe:
    """A recipe's data (a file's, a caller's dict) with `overrides` and then `fields` applied,
    validated; every problem is one DistillError naming `source`.

    A recipe that names its student `model:` (the alias) has it renamed first, so `--set
    student.model=...` and `--set model.num_classes=...` both reach the one section (the first
    added a second section beside the alias, refused as "model: unknown key")."""
    from distill_cli.recipe.messages import format_validation_error

    if "model" in raw and "student" not in raw:
        raw = {("student" if k == "model" else k): v for k, v in raw.items()}
    raw = apply_overrides(apply_overrides(raw, overrides or []), fields or [])
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        raise format_validation_error(exc, source) from exc


def _refuse_paths_meant_from_the_recipe(node: Any, folder: Path, key: str = "") -> None:
    """A relative input path that is missing from the cwd but exists beside the recipe file
    (`data.root: ../data` in `configs/x.yaml`, run from the project root): the user meant the
    recipe's folder, and would get "not found" for a path that is right there. Relative paths
    are the cwd's (one rule, as `--set` and the shell have it); the error says so and gives
    the path to write. `output.dir` is created, not read, and is left alone."""
    if isinstance(node, Path):
        if key != "output.dir" and not node.is_absolute() and not node.exists():
            there = folder / node
            if there.exists() and folder.resolve() != Path.cwd().resolve():
                raise DistillError(
                    f"{key}: {node} is not found from the directory distill runs in "
                    f"({Path.cwd()}): relative paths are relative to it, not to the recipe's "
                    "folder",
                    key,
                    f"write {there} (found beside the recipe), or run distill from {folder}",
                )
    elif isinstance(node, list):
        for item in node:
            _refuse_paths_meant_from_the_recipe(item, folder, key)
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            inner = f"{key}.{name}" if key else name
            _refuse_paths_meant_from_the_recipe(getattr(node, name), folder, inner)
