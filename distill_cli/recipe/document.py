"""The recipe: one YAML document that fully describes a run.

Like big_vision's configs, a recipe is data. It is validated by pydantic (unknown keys are rejected
with their path, so a typo never silently falls back to a default), can be overridden from the
command line with ``--set a.b=c``, and is saved resolved into every run directory so that
re-running that file reproduces the run.

The sections are in `distill_cli.recipe.sections` (models, data, augment, output) and
`distill_cli.recipe.loop_sections` (optim, schedule, runtime); this module holds the whole
`Recipe` and its loading (its YAML: `recipe.yaml_text`; `--set`: `recipe.overrides`; its
validation errors as one line: `recipe.messages`).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args

import yaml
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    model_validator,
)

from distill_cli.errors import DistillError
from distill_cli.host import MAX_NESTING, check_nesting
from distill_cli.recipe.files import (
    STDIN,
    recipe_file_text,
    refuse_paths_meant_from_the_recipe,
    stdin_text,
)
from distill_cli.recipe.loop_sections import OptimSpec, RuntimeSpec, ScheduleSpec
from distill_cli.recipe.overrides import Overrides, apply_overrides, set_value
from distill_cli.recipe.run_name import plain_name
from distill_cli.recipe.sections import (
    AugmentSpec,
    DataSpec,
    MethodParams,
    ModelSpec,
    OutputSpec,
    Strict,
)
from distill_cli.recipe.yaml_text import parse_yaml, recipe_text, syntax_advice

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


def _ascii_name(name: str) -> str:
    """A recipe's `name` is letters, digits, `.`, `_` and `-` (ASCII: it names the run in
    trackers, reports and file names on every system). A name with an accent or a blank was
    refused as "String should match pattern '^[A-Za-z0-9._-]+$'", which said neither which
    character nor what to write; `output.name` takes any plain folder name."""
    odd = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "._-"))})
    if name and odd:
        plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
        plain = re.sub(r"[^A-Za-z0-9._-]+", "-", plain).strip("-") or "run"
        raise ValueError(
            f"{name!r} holds {', '.join(map(repr, odd))}: a recipe name is letters A-Z, digits, "
            f"'.', '_' and '-'; e.g. name: {plain} (output.name may hold any folder name)"
        )
    return name


class Recipe(Strict):
    """A whole run. `student` is the model being trained (`model` is accepted as its alias)."""

    # the `method` union is only known once the methods are imported: see _RegisteredMethods
    model_config = ConfigDict(defer_build=True)

    name: Annotated[str, AfterValidator(_ascii_name)]
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
        saved = _absolute_paths(_side_file_chans(self))  # (a copy sets every field)
        return recipe_text(saved.model_dump(mode="json", exclude_none=False))


def _side_file_chans(recipe: Recipe) -> Recipe:
    """`recipe` with each model's `in_chans` as the run builds it: a model whose recipe leaves
    it unset takes its checkpoint side file's (a grayscale teacher's says 1). Saved as the
    default 3 instead, the run's own `recipe.yaml` built a 3-channel teacher from it: re-running
    it was "checkpoint does not fit", and its export could not time the teacher."""
    from distill_cli.models.feed import side_file_chans  # above recipe/ (reads the file)

    def resolved(spec: ModelSpec) -> ModelSpec:
        unreadable = spec.checkpoint is None or not spec.checkpoint.exists()
        return spec if unreadable else side_file_chans(spec)  # a missing file: the build says

    teacher = recipe.teacher
    if isinstance(teacher, list):
        teacher = [resolved(t) for t in teacher]
    elif teacher is not None:
        teacher = resolved(teacher)
    return recipe.model_copy(update={"teacher": teacher, "student": resolved(recipe.student)})


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


def override_recipe(recipe: Recipe, overrides: Overrides) -> Recipe:
    """A validated copy of `recipe` with overrides applied (the object itself is left alone)."""
    if not overrides:
        return recipe
    # what the recipe's author set, not the defaults: then switching `method.name` does not drag
    # the old method's default parameters along (the same as `--set` on the recipe's file)
    raw = recipe.model_dump(mode="json", exclude_unset=True)
    return validated(raw, f"recipe {recipe.name!r}", overrides, None)


def load_recipe(
    path: Path | str, overrides: Overrides | None = None, fields: Overrides | None = None
) -> Recipe:
    """Read, override and validate a recipe file; every problem becomes a DistillError.

    `overrides` and then `fields` (the API's keywords) are applied to the file's data before
    validation, exactly as `--set` is: `method.name=kd` switches the method.
    """
    stdin = str(path) == STDIN
    path = Path(path)
    source = "<stdin>" if stdin else str(path)
    try:
        raw = parse_yaml(stdin_text() if stdin else recipe_file_text(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise DistillError(f"YAML syntax error: {problem}", where, syntax_advice(problem)) from exc
    except RecursionError:  # the YAML parser recurses per level: thousands exhaust the stack
        raise DistillError(
            f"the recipe nests more than {MAX_NESTING} levels deep", source, "flatten it"
        ) from None
    check_nesting(raw, source)
    start = "start from a shipped one: distill recipes show function_matching > recipe.yaml"
    if raw is None or raw == {}:  # an empty file, or one of comments: five "missing" keys
        raise DistillError("the recipe is empty (no keys, comments aside)", source, start)
    if not isinstance(raw, dict):
        kind = "a list" if isinstance(raw, list) else f"the value {str(raw)[:40]!r}"
        raise DistillError(
            f"a recipe must be a YAML mapping of keys (name:, student:, data:, ...), not {kind}",
            source,
            start,
        )
    raw = {key: value for key, value in raw.items() if not _extension(key)}
    recipe = validated(raw, source, overrides, fields)
    if not stdin:  # a recipe piped in has no folder: its relative paths are the cwd's anyway
        refuse_paths_meant_from_the_recipe(recipe, path.parent)
        from distill_cli.rundir.checks import in_its_run_folder

        recipe = in_its_run_folder(recipe, path)
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

    if "model" in raw and "student" in raw:  # one section written twice, as its two names
        raise DistillError(
            "the recipe has both `student:` and `model:`, two names of the one student section",
            source,
            "keep one of them",
        )
    if "model" in raw:
        raw = {("student" if k == "model" else k): v for k, v in raw.items()}
    raw = _alternatives_chosen(_method_switched(raw, overrides, fields), overrides, fields)
    raw = apply_overrides(apply_overrides(raw, overrides or []), fields or [])
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        raise format_validation_error(exc, source) from exc


def _method_switched(
    raw: dict[str, Any], overrides: Overrides | None, fields: Overrides | None
) -> dict[str, Any]:
    """`raw` without the recipe's method parameters that the method the overrides switch to
    does not take. `--set method.name=supervised` on a function-matching recipe was refused
    for the file's `method.temperature` ("unknown key"), which no `--set` can remove; the
    parameters both methods take (kd's `temperature`) are kept, and any the overrides give
    themselves are still checked."""
    from distill_cli.methods import method_params_by_name

    section = raw.get("method")
    if not isinstance(section, dict) or not (overrides or fields):
        return raw
    switched = apply_overrides(
        apply_overrides({"method": dict(section)}, overrides or []), fields or []
    )["method"]
    name = switched.get("name") if isinstance(switched, dict) else None
    params = method_params_by_name().get(name) if isinstance(name, str) else None
    if params is None or name == section.get("name"):
        return raw
    kept = {key: value for key, value in section.items() if key in params.model_fields}
    return {**raw, "method": kept}


def _given(overrides: Overrides | None) -> dict[str, Any]:
    """The overrides as dotted keys and values (a value that cannot be read: None, its error
    comes when they are applied)."""
    if isinstance(overrides, Mapping):
        return {key.strip(): value for key, value in overrides.items()}
    out: dict[str, Any] = {}
    for item in overrides or []:
        key, _, value = item.partition("=")
        try:
            out[key.strip()] = set_value(value)
        except DistillError:
            out[key.strip()] = None
    return out


def _alternatives_chosen(
    raw: dict[str, Any], overrides: Overrides | None, fields: Overrides | None
) -> dict[str, Any]:
    """`raw` without the recipe file's keys that an override's alternative replaces
    (`--set schedule.steps=100` on a recipe with `epochs`, `--set teacher.pretrained=true`
    on one with a `checkpoint`): refused as "set exactly one of epochs or steps", though the
    command line said which. Alternatives are each section's `alternatives`; an override of
    null or false chooses nothing, and two alternatives both given are still refused."""
    given = {**_given(overrides), **_given(fields)}
    for dotted, value in given.items():
        parts = dotted.split(".")
        if len(parts) != 2 or value is None or value is False:
            continue
        name = "student" if parts[0] == "model" else parts[0]
        section = raw.get(name)
        spec = _section_class(name)
        if not isinstance(section, dict) or spec is None:
            continue
        for groups in spec.alternatives:
            chosen = next((g for g in groups if parts[1] in g), None)
            if chosen is None:
                continue
            others = {k for g in groups if g is not chosen for k in g}
            if not any(f"{name}.{k}" in given or f"model.{k}" in given for k in others):
                raw = {**raw, name: {k: v for k, v in section.items() if k not in others}}
    return raw


def _section_class(name: str) -> type[BaseModel] | None:
    """The section class of a top-level recipe key (`teacher`: ModelSpec), or None."""
    field = Recipe.model_fields.get(name)
    if field is None:
        return None
    for kind in (field.annotation, *get_args(field.annotation)):
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            return kind
    return None
