"""Training methods, one file each, found by name through a registry.

Every method module in this package is imported here so its ``@register`` runs; the recipe's
`method` section is then validated against the union of the registered `Params` models,
discriminated by `name` (the recipe looks the union up only when it first validates, so
importing the recipe does not import torch). Adding a method is adding a file: neither the engine
nor the recipe names methods.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Annotated, Any, Union

from pydantic import Field

from distill_cli.errors import DistillError, did_you_mean
from distill_cli.methods.base import (
    Method,
    MethodContext,
    StepOutput,
    kd_loss,
    register,
    registry,
)
from distill_cli.recipe.sections import MethodParams

#: Modules of this package that define no method (the interface, a method's helper).
_NOT_METHODS = {"base", "teacher_cache"}

for _info in pkgutil.iter_modules(__path__):
    if _info.name not in _NOT_METHODS:
        importlib.import_module(f"{__name__}.{_info.name}")

_params = tuple(cls.Params for cls in registry().values())
MethodParamsUnion: Any = Annotated[Union[_params], Field(discriminator="name")]  # noqa: UP007


def method_params_by_name() -> dict[str, type[MethodParams]]:
    return {name: cls.Params for name, cls in registry().items()}


def method_class(name: str) -> type[Method]:
    methods = registry()
    if name not in methods:
        raise DistillError(f"unknown method {name!r}", "method.name", did_you_mean(name, methods))
    return methods[name]


def create_method(params: MethodParams, ctx: MethodContext) -> Method:
    return method_class(params.name)(params, ctx)


__all__ = [
    "Method",
    "MethodContext",
    "MethodParamsUnion",
    "StepOutput",
    "create_method",
    "kd_loss",
    "method_class",
    "register",
]
