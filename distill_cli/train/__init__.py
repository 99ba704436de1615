"""A run, from a recipe made ready to its summary.

``engine`` tells a run (lock, prepare, resume, trackers, train); ``build`` makes a recipe ready
(device, data, nets, placement, streams, method) into a ``setup`` (`Setup`, its plan, the run's
length); ``trainer`` is the loop (precision, clipping, evaluation, checkpoints, resume);
``evaluate``, ``optim``, ``memory``, ``records``, ``reporter`` and ``tracking`` are its parts;
``world`` and ``distributed`` say which process this is and join the processes. Names are
imported lazily: `world` stays torch-free.
"""

from __future__ import annotations

from distill_cli import lazy_face

_FACE = {
    "run": "engine",
    "build": "build",
    "Setup": "setup",
    "Trainer": "trainer",
    "World": "world",
    "world_from_env": "world",
}

__getattr__ = lazy_face(__name__, _FACE)


__all__ = sorted(_FACE)
