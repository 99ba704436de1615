"""The field types and the base every recipe section shares: what a valid path, fraction and
class name is, and the checks run on every key of every section (unknown keys, floats within
float32, whole numbers within int64, no true/false where a number is expected). The bounds of
single numbers (sizes, counts, rates, temperatures) and their reasons are bounds.py.

One owner for these rules, so the run's sections (sections.py), the loop's (loop_sections.py)
and each method's parameters (`MethodParams`) apply the same ones. Plain pydantic; no torch.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from distill_cli import host
from distill_cli.file_kinds import url_problem
from distill_cli.recipe.yaml_text import BOOL_WORDS

PositiveInt = Annotated[int, Field(gt=0)]


def _as_shell_reads_it(path: Path) -> Path:
    """`~` and `$VAR`/`${VAR}` expanded, as a shell would (cluster recipes write `$SCRATCH/data`,
    which was looked for as a folder literally named `$SCRATCH`); an unset variable is an error
    naming it, not a path that is silently not found."""
    text = str(path)
    if "\x00" in text:  # no file system takes it: os.stat raised ValueError deep in the run
        raise ValueError("a path cannot hold a NUL character (\\0)")
    if "$" in text:
        expanded = os.path.expandvars(text)
        unset = re.search(r"\$(\w+|\{[^}]*\})", expanded)
        if unset:
            name = unset.group(1).strip("{}")
            raise ValueError(f"the environment variable {name} is not set (in {text!r})")
        text = expanded
    return Path(text).expanduser()


def _not_a_url(value: Any) -> Any:
    """A URL where a path belongs (`data.root: s3://bucket/x`) is refused as the text written:
    as a Path, `s3:/bucket/x` was looked for as a folder named `s3:`."""
    problem = url_problem(value) if isinstance(value, str) else None
    if problem:
        raise ValueError(f"{value!r} {problem[0]}; {problem[1]}")
    return value


#: A path as a user writes it: `~/data` means their home and `$VAR` an environment variable,
#: as in a shell (`~` was only expanded when the recipe was saved, so the run itself looked for
#: a folder literally named `~`). Relative paths are relative to the cwd.
UserPath = Annotated[Path, BeforeValidator(_not_a_url), AfterValidator(_as_shell_reads_it)]
Fraction = Annotated[float, Field(gt=0, le=1)]


def _int_as_name(value: Any) -> Any:
    """A class folder named `0` is the name "0": YAML reads `[0, 1]` and `{0: cat}` as ints."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


#: A class name as a recipe writes it: text, or a whole number (a folder named `7`).
ClassName = Annotated[str, BeforeValidator(_int_as_name)]


def _float32(value: Any) -> Any:
    """Every float of a recipe reaches a float32 tensor: |x| beyond float32's range would
    become inf there (`lr: 1e39` passed `gt=0` and crashed inside AdamW)."""
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if isinstance(item, float):
            problem = host.float32_problem(item)
            if problem:
                raise ValueError(f"{item!r} {problem}")
    return value


#: The pydantic error type of `refuse_huge_whole` (its context names the key, as BOOL_REFUSED's).
WHOLE_REFUSED = "whole_too_large"


def refuse_huge_whole(data: Any) -> Any:
    """A whole number beyond int64 (a 400-digit `epochs:` or `--set`) is refused as itself,
    for every key of every section before the key's own checks: their bounds are shown with
    `:g`, which cannot format an int beyond a float (an OverflowError traceback), and others
    printed all 400 digits."""
    if not isinstance(data, dict):
        return data
    for key, value in data.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        problem = next(filter(None, map(host.whole_problem, items)), None)
        if problem:
            raise PydanticCustomError(
                WHOLE_REFUSED, problem + "; write the value meant", {"key": str(key)}
            )
    return data


def _admits_bool(annotation: Any) -> bool:
    """Whether a field's type takes true/false anywhere in it: `bool`, `Any`, or a nested
    section (which checks its own fields)."""
    if annotation is bool or annotation is Any:
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_admits_bool(arg) for arg in get_args(annotation))


def _admits_text(annotation: Any) -> bool:
    """Whether a field's type takes text anywhere in it (a name, a path, a free-form value, a
    choice of words: `on_duplicates: off` is the word "off")."""
    if annotation in (str, Any) or (isinstance(annotation, type) and issubclass(annotation, Path)):
        return True
    if get_origin(annotation) is Literal:
        return any(isinstance(choice, str) for choice in get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_admits_text(arg) for arg in get_args(annotation))


def _has_bool(value: Any, words: bool) -> bool:
    """`value` holds true/false, or (`words`) a YAML 1.1 yes/no word, which the recipe's
    YAML 1.2 reading leaves as text (`yaml_text`)."""
    if isinstance(value, bool):
        return True
    if words and isinstance(value, str) and value.strip() in BOOL_WORDS:
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_bool(item, words) for item in value)
    if isinstance(value, dict):
        return any(_has_bool(item, words) for item in value.values())
    return False


def bool_words_as_bools(value: Any) -> Any:
    """`yes`/`no`/`on`/`off` (read as text, `yaml_text`) as true/false, where a free-form
    mapping passes values on untyped (a model's `kwargs`: "no" would be a true string)."""
    if isinstance(value, dict):
        return {key: bool_words_as_bools(item) for key, item in value.items()}
    if isinstance(value, list):
        return [bool_words_as_bools(item) for item in value]
    if isinstance(value, str) and value in BOOL_WORDS:
        return value.lower() in ("yes", "on", "y")
    return value


def _choices(annotation: Any) -> str:
    """A word-choice key's words (`on_duplicates`: 'warn', 'error', 'off'), or ""."""
    if get_origin(annotation) is Literal:
        return ", ".join(repr(choice) for choice in get_args(annotation))
    return next(filter(None, (_choices(arg) for arg in get_args(annotation))), "")


#: The pydantic error type of `refuse_bool`; its context names the key (the loader adds it to
#: the path, as pydantic does for field errors).
BOOL_REFUSED = "bool_refused"


def _fields_by_key(model: type[BaseModel]) -> dict[str, Any]:
    """Each key a section accepts (field names and aliases) with its field's type."""
    keys: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        keys[name] = info.annotation
        alias = info.validation_alias
        for key in getattr(alias, "choices", [alias] if isinstance(alias, str) else []):
            if isinstance(key, str):
                keys[key] = info.annotation
    return keys


def refuse_bool(model: type[BaseModel], data: Any) -> Any:
    """A yes/no value given to a key that takes none (`epochs: true`) is refused.

    pydantic's lax mode reads true as 1 (and 1.0) where a number is expected, so a slip such
    as `epochs: yes` ran one epoch without a word. One check for every key of every section
    (the bases' validator, before pydantic converts anything), against the key's declared
    type; the numbers and numeric strings YAML and `--set` give (`lr: 1e-3` is the string
    "1e-3" in YAML 1.1, converted as before) are untouched.
    """
    if not isinstance(data, dict):
        return data
    types = _fields_by_key(model)
    for key, value in data.items():
        kind = types.get(key)
        if key in types and not _admits_bool(kind) and _has_bool(value, not _admits_text(kind)):
            choices = _choices(kind)
            raise PydanticCustomError(
                BOOL_REFUSED,
                "true/false is not a value this key takes ("
                + (
                    f"it takes one of {choices}); write one of them"
                    if choices
                    else "it expects a number, text or a list of them); write the value itself"
                ),
                {"key": str(key)},
            )
    return data


class Strict(BaseModel):
    """Base of every recipe section: unknown keys are errors; assignments are validated too."""

    #: Groups of keys that are alternatives to each other (`epochs` or `steps`): the section's
    #: validator refuses two set together, and a `--set` of one group drops the recipe file's
    #: other groups (`document.validated`), as a flag overrides what a file says.
    alternatives: ClassVar[tuple[tuple[tuple[str, ...], ...], ...]] = ()

    # NaN/Inf are never a setting: `lr: 1e400` (YAML reads inf) would pass `gt=0` and crash in
    # the optimizer, so every float of every section must be finite
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, populate_by_name=True, allow_inf_nan=False
    )

    @field_validator("*", mode="after")
    @classmethod
    def _in_float32(cls, value: Any) -> Any:
        return _float32(value)

    @model_validator(mode="before")
    @classmethod
    def _no_bool(cls, data: Any) -> Any:
        return empty_sections_default(cls, refuse_bool(cls, refuse_huge_whole(data)))


def empty_sections_default(model: type[BaseModel], data: Any) -> Any:
    """A section, mapping or list written with nothing under it (`augment:` or `kwargs:` with
    every line commented out) takes its default, as if it were left out: YAML reads it as
    null, which was refused as "Input should be a valid dictionary or instance of
    AugmentSpec". A required section (`schedule:`) or value (`lr:`) stays an error, saying it
    is empty (`recipe.messages`)."""
    if not isinstance(data, dict) or None not in data.values():
        return data
    fields = model.model_fields
    return {
        key: value
        for key, value in data.items()
        if not (value is None and key in fields and fields[key].default_factory is not None)
    }
