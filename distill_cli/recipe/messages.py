"""A recipe's validation errors as one line: each problem named by its key's full path, with
the key to write instead where one is near (a typo in the section, the same key in another
section, a method's name).

Pydantic's own message is several lines per problem, with union-member tags in the path
(`method.function_matching.temperature`) that are not keys a user wrote.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from distill_cli.errors import DistillError, did_you_mean
from distill_cli.recipe.document import Recipe
from distill_cli.recipe.fields import BOOL_REFUSED


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


def format_validation_error(exc: ValidationError, source: str) -> DistillError:
    """One readable line per problem, each naming the key's full path."""
    lines = []
    for err in exc.errors():
        # drop pydantic's union-member tags ("ModelSpec", "list[ModelSpec]") from the path
        loc = tuple(
            p for p in err["loc"] if not (isinstance(p, str) and (p[:1].isupper() or "[" in p))
        )
        if err["type"] == BOOL_REFUSED:  # raised for its section: the key is in its context
            loc = (*loc, (err.get("ctx") or {}).get("key", "?"))
        # the method section's tag (method.function_matching.temperature) is not a key the
        # user wrote: the path shown is method.temperature
        shown = loc[:1] + loc[2:] if loc[:1] == ("method",) and len(loc) > 2 else loc
        path = ".".join(str(p) for p in shown) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
            key = str(loc[-1])
            hint = did_you_mean(key, _field_names(Recipe, loc)) or _elsewhere(key, path)
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
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"{path}: {msg}")
    what = "invalid recipe: " + "; ".join(lines)
    return DistillError(what, source, "fix the recipe or the --set value and run again")


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
