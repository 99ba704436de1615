"""A recipe as a Python caller gives it: a file's path, a dict, or a `Recipe` object.

`api.run(recipe, overrides, **fields)` and its siblings take all three; each becomes a validated
`Recipe` here, with the same one-line `DistillError`s a recipe file gets (a dict's unknown key
is "invalid recipe: optim.lrr: unknown key; did you mean 'lr'?", not pydantic's multi-line
ValidationError), and an argument of the wrong type is a `WrongType`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distill_cli import arguments as args
from distill_cli.errors import WrongType
from distill_cli.host import check_nesting
from distill_cli.recipe.document import (
    Overrides,
    Recipe,
    load_recipe,
    override_recipe,
    validated,
)
from distill_cli.recipe.files import STDIN, refuse_a_run_inside_the_data

#: What a recipe argument may be, for the WrongType line.
RECIPE_ARG = "a Recipe, a dict or a recipe file's path (str or pathlib.Path)"


def given_recipe(
    recipe: Recipe | Mapping[str, Any] | str | Path,
    overrides: Overrides | str | None,
    keywords: dict[str, Any],
) -> Recipe:
    """The recipe with `overrides` and then the API's `a__b=value` keywords applied, as a
    command that starts a run (or plans one) takes it."""
    dotted = {key.replace("__", "."): value for key, value in keywords.items()}
    sets = _overrides(overrides)
    if isinstance(recipe, Recipe):
        rec = override_recipe(override_recipe(revalidated(recipe), sets or []), dotted)
    elif isinstance(recipe, Mapping):
        check_nesting(recipe, "recipe")
        # the caller's dict is left alone: overrides are applied to a copy
        rec = validated(copy.deepcopy(dict(recipe)), "recipe (a dict)", sets, dotted)
    else:
        path = args.path(recipe, "recipe", RECIPE_ARG)
        rec = load_recipe(path, sets, dotted)
        if str(path) != STDIN:
            from distill_cli.rundir.checks import refuse_a_renamed_run_folder  # above recipe/

            refuse_a_renamed_run_folder(rec, Path(path))
    refuse_a_run_inside_the_data(rec)
    return rec


def revalidated(recipe: Recipe) -> Recipe:
    """A Recipe object validated again as it is now. Assignments are checked when made, but a
    list or dict edited in place (`runtime.log_to.append(...)`) or `model_copy(update=...)`
    are not: the bad value failed deep inside the run (a model's constructor, a tracker)
    instead of as the recipe key it is.

    What is validated is what the author set plus whatever now differs from its default (an
    in-place edit of a default list): not every default, so that `method__name="kd"` still
    switches the method without dragging the old method's default parameters along."""
    raw = _merged(
        recipe.model_dump(mode="json", exclude_unset=True),
        recipe.model_dump(mode="json", exclude_defaults=True),
    )
    return validated(raw, f"recipe {recipe.name!r}", None, None)


def _merged(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """`first` with `second`'s keys added, sections merged key by key."""
    out = dict(first)
    for key, value in second.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _overrides(overrides: Any) -> Overrides | None:
    """A list (or tuple) of 'KEY=VALUE' strings, a mapping, one such string, or None."""
    if isinstance(overrides, str):  # one `--set` string, not its characters one by one
        return [overrides]
    if isinstance(overrides, (list, tuple)):
        for item in overrides:
            if not isinstance(item, str):
                raise WrongType(
                    f"overrides must be 'KEY=VALUE' strings, not {type(item).__name__} "
                    f"({item!r:.40})",
                    "overrides",
                    "e.g. ['optim.lr=3e-3'], or a mapping {'optim.lr': 3e-3}",
                )
        return list(overrides)
    if overrides is not None and not isinstance(overrides, Mapping):
        raise WrongType(
            f"overrides must be a list of 'KEY=VALUE' strings or a mapping, not "
            f"{type(overrides).__name__}",
            "overrides",
        )
    for key in overrides or {}:  # `{1: 2}` was an AttributeError from the key's `.count`
        if not isinstance(key, str):
            raise WrongType(
                f"an overrides key must be a dotted key such as 'optim.lr', not "
                f"{type(key).__name__} ({key!r:.40})",
                "overrides",
                "e.g. {'optim.lr': 3e-3}",
            )
    return overrides
