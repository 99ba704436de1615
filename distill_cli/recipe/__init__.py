"""The recipe: a run described as data (YAML), validated, overridable, saved with the run.

``document`` holds the whole `Recipe`, its ``--set`` overrides, loading and error messages;
``sections`` the sections it is made of (models, data, augment, output), their shared base and
the base of every method's section; ``loop_sections`` the training loop's (optim, schedule,
runtime); ``catalog`` the shipped recipes. Nothing here imports torch, so reading or checking a
recipe is fast.
"""

from __future__ import annotations

from distill_cli.recipe.document import Overrides, Recipe, load_recipe, override_recipe

__all__ = ["Overrides", "Recipe", "load_recipe", "override_recipe"]
