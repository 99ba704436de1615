"""distill: distill any timm teacher into a small, fast student, validate it, ship it as ONNX."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__version__ = "0.1.0"


def lazy_face(package: str, face: dict[str, str]) -> Callable[[str], Any]:
    """A package's `__getattr__` that imports each public name from its module on first use
    (PEP 562), so a package's face can name torch-heavy classes while importing one torch-free
    module of the package stays torch-free (`face`: name -> module within `package`)."""

    def getattr_(name: str) -> Any:
        if name in face:
            return getattr(importlib.import_module(f"{package}.{face[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return getattr_
