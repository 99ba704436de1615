"""A recipe's validation errors as one line: each problem named by its key's full path, with
the key to write instead where one is near (a typo in the section, the same key in another
section, a method's name).

Pydantic's own message is several lines per problem, with union-member tags in the path
(`method.function_matching.temperature`) that are not keys a user wrote.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from distill_cli.errors import DistillError, did_you_mean
from distill_cli.recipe.document import Recipe
from distill_cli.recipe.fields import BOOL_REFUSED, WHOLE_REFUSED

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

#: pydantic's errors for a value given where a section (a mapping) goes.
_SECTION_TYPES = ("model_type", "model_attributes_type", "dict_type")
#: The key to show in the advice for a section given a single value (`--set method=kd`).
_MAIN_KEY = {"method": "name", "teacher": "model", "student": "model", "model": "model"}


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The valid keys at the parent of `loc`, for a 'did you mean' hint."""
    current: Any = model
    for part in loc[:-1]:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            from distill_cli.methods import method_params_by_name

            current = method_params_by_name().get(str(part))
            continue
        current = field.annotation
        args = getattr(current, "__args__", ())
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        current = models[0] if models else current
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


#: Sections whose keys are the user's own (class names, timm keywords): never a pydantic tag.
_FREE_KEYS = ("class_map", "kwargs")


def _is_tag(part: Any) -> bool:
    """A pydantic union member's tag in an error's path ("ModelSpec", "list[ModelSpec]",
    "constrained-int"), not a key the user wrote."""
    return isinstance(part, str) and (
        part[:1].isupper() or "[" in part or re.fullmatch(r"[a-z]+(?:-[a-z]+)+", part) is not None
    )


def _user_loc(err: ErrorDetails) -> tuple[Any, ...]:
    """The error's path without union tags. The unknown key of an `extra_forbidden` error and
    the keys of free-form mappings are the user's words whatever they look like: `Schedule:`
    was dropped as a tag, which left an empty path (an IndexError instead of the line)."""
    raw = err["loc"]
    kept: list[Any] = []
    for i, part in enumerate(raw):
        unknown = err["type"] == "extra_forbidden" and i == len(raw) - 1
        free = i > 0 and raw[i - 1] in _FREE_KEYS
        if unknown or free or not _is_tag(part):
            kept.append(part)
    return tuple(kept)


def _union_noise(err: ErrorDetails) -> bool:
    """The "should be a valid list" of `teacher`'s list member when a single teacher (a
    mapping) was written: the mapping's own errors say what is wrong."""
    return (
        err["type"] == "list_type"
        and isinstance(err.get("input"), dict)
        and any(isinstance(p, str) and p.startswith("list[") for p in err["loc"])
    )


def format_validation_error(exc: ValidationError, source: str) -> DistillError:
    """One readable line per problem, each naming the key's full path; the messages of one
    key (the members of a union: `input_size` is a number or a pair) are joined."""
    problems: dict[str, list[str]] = {}
    for err in exc.errors():
        if _union_noise(err):
            continue
        path, msg = _problem(err)
        if msg not in problems.setdefault(path, []):
            problems[path].append(msg)
    lines = [
        (f"{path}: " if path != "(top level)" else "") + " or ".join(_listed(msgs))
        for path, msgs in problems.items()
    ]
    what = "invalid recipe: " + "; ".join(lines)
    return DistillError(what, source, "fix the recipe or the --set value and run again")


def _listed(msgs: list[str]) -> list[str]:
    """A list's advice stands alone: `32,32` for `input_size` was "a valid integer or a valid
    tuple"; what to write is `[32,32]`."""
    written = [m for m in msgs if m.startswith("write ")]
    return written[:1] or msgs


def _problem(err: ErrorDetails) -> tuple[str, str]:
    """One problem's key path and message."""
    loc = _user_loc(err)
    # raised for its section: the key is in its context
    if err["type"] in (BOOL_REFUSED, WHOLE_REFUSED):
        loc = (*loc, (err.get("ctx") or {}).get("key", "?"))
    # the method section's tag (method.function_matching.temperature) is not a key the
    # user wrote: the path shown is method.temperature
    shown = loc[:1] + loc[2:] if loc[:1] == ("method",) and len(loc) > 2 else loc
    path = ".".join(str(p) for p in shown) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")  # pydantic's prefix to our own messages
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
        key = str(loc[-1])
        hint = did_you_mean(key, _field_names(Recipe, loc)) or _elsewhere(key, path)
        if hint is None and loc[:1] == ("method",) and len(loc) == 3:
            # a key of another method: the ones this method takes, to keep or to set
            keys = [k for k in _field_names(Recipe, loc) if k != "name"]
            hint = f"method {loc[1]!r} takes " + (", ".join(keys) or "no other key")
        if hint:
            msg += f"; {hint}"
    elif err["type"] == "union_tag_invalid" and loc == ("method",):
        from distill_cli.methods import method_params_by_name

        tag = str((err.get("ctx") or {}).get("tag", ""))
        names = list(method_params_by_name())
        path = "method.name"
        msg = f"unknown method {tag!r}; " + (
            did_you_mean(tag, names) or "one of " + ", ".join(repr(n) for n in names)
        )
    elif err["type"] == "union_tag_not_found" and loc == ("method",):
        from distill_cli.methods import method_params_by_name

        path = "method.name"
        msg = "required key is missing; one of " + ", ".join(map(repr, method_params_by_name()))
    elif err["type"] == "missing":
        msg = "required key is missing"
    elif err["type"] == "int_parsing_size":  # pydantic's "exceeded maximum size" (1e20)
        big = str(err.get("input"))
        shown = big if len(big) <= 40 else f"a {len(big):,}-digit number"  # one line
        msg = f"{shown} is too large for a count (at most 2**63 - 1); write the value meant"
    else:
        msg = _shape_advice(err, loc, path) or msg
    return path, msg


def _elsewhere(key: str, path: str) -> str | None:
    """The same key in another section (`epochs` written at the top level, or in `optim`,
    is `schedule.epochs`): the full paths to write, when the recipe has a few."""
    found = [p for p in _key_paths(Recipe) if p.rsplit(".", 1)[-1] == key and p != path]
    if not found or len(found) > 3:
        return None
    return "did you mean " + " or ".join(repr(p) for p in found) + "?"


def _key_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key of the recipe's fixed sections as a dotted path (methods' own keys aside:
    they differ by method)."""
    paths = []
    for name, field in model.model_fields.items():
        args = getattr(field.annotation, "__args__", ())
        inner = [a for a in (field.annotation, *args) if isinstance(a, type)]
        section = next((a for a in inner if issubclass(a, BaseModel)), None)
        if section is not None and name != "method":
            paths += _key_paths(section, f"{prefix}{name}.")
        else:
            paths.append(f"{prefix}{name}")
    return paths


def _shape_advice(err: ErrorDetails, loc: tuple[Any, ...], path: str) -> str | None:
    """What to write for a value of the wrong shape: nothing (null), a single value where a
    section or a list goes. pydantic's words ("Input should be a valid dictionary or instance
    of ScheduleSpec", "Input is not a valid path for <class 'pathlib.Path'>") named a class,
    not what to write."""
    value = err.get("input")
    if value is None and err["type"] != "invalid_key":
        what = "its keys" if err["type"] in _SECTION_TYPES else "a value"
        return f"is empty (null, `~` or nothing after the colon); write {what}" + (
            ", or leave the key out for its default" if _has_default(loc) else ""
        )
    if err["type"] in _SECTION_TYPES and not isinstance(value, dict):
        if err["type"] == "dict_type":
            return f"is a mapping of keys to values, not {value!r:.40}; write {{key: value}}"
        fields = _field_names(Recipe, (*loc, "?"))
        key = _MAIN_KEY.get(str(loc[-1])) or next(iter(fields), "key")
        return (
            f"is a section, not a value; set one of its keys: {path}.{key}={value!s:.40}"
            if key in fields or str(loc[-1]) == "method"
            else f"is a section, not a value; set one of its keys ({', '.join(fields[:6])})"
        )
    if isinstance(value, str) and value.strip().lower() in ("none", "nil", "nothing"):
        return f"write null (or ~), YAML's word for none, not {value.strip()!r}"
    if err["type"] == "string_type" and isinstance(value, (int, float)):
        return f"{value} is a number, and this key takes text; write '{value}' (in quotes)"
    if err["type"] == "string_type" and isinstance(value, (list, tuple)):
        shards = str(loc[-1]) in ("train_dir", "val_dir")
        return "takes one value, not a list" + (
            "; a brace pattern (train-{000..009}.tar) or a glob names several shards"
            if shards
            else ""
        )
    if err["type"] in ("list_type", "tuple_type") and isinstance(value, (str, int, float)):
        return f"write [{value}] (a list, in brackets)"
    if err["type"] in ("list_type", "tuple_type") and isinstance(value, dict):
        # `--set optim.betas.1=0.98` where the recipe has no list to index: a mapping
        return f"is a list; set it whole: {path}=[...]"
    return None


def _has_default(loc: tuple[Any, ...]) -> bool:
    """Whether the key at `loc` has a default (leaving it out is valid)."""
    current: Any = Recipe
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return False
        field = current.model_fields.get(str(part))
        if field is None:
            return False
        if part == loc[-1]:
            return not field.is_required()
        args = getattr(field.annotation, "__args__", ())
        models = [a for a in (field.annotation, *args) if isinstance(a, type)]
        current = next((a for a in models if issubclass(a, BaseModel)), None)
    return False
