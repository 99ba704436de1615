"""Choosing a student: `distill students` and `distill models`.

``model_search`` sizes timm's models on the meta device (`distill models`); ``search`` finds the
teacher's students that fit a latency budget: candidates from ``model_search``, timed by
``measure`` (the export's protocol), remembered by ``cache``, ranked by ``rank``; ``recipe``
writes the recipe for the best; ``types`` holds the query and the typed results. Names are
imported lazily (the search pulls in torch, timm and ONNX Runtime).
"""

from __future__ import annotations

from distill_cli import lazy_face

_FACE = {
    "search_students": "search",
    "find_students": "search",
    "StudentQuery": "types",
    "StudentSearch": "types",
    "find_models": "model_search",
    "ModelSearch": "model_search",
}

__getattr__ = lazy_face(__name__, _FACE)


__all__ = sorted(_FACE)
