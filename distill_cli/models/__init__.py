"""Models: timm creation (`create`), each model's view of the pixels (`view`), and the checkpoint
file format (`checkpoint`).

A recipe's model names become networks here: `create_net` builds a timm model with its input
config resolved from timm (recipe values win), `create_teacher` the frozen teacher or ensemble,
both loading weights through `checkpoint`, the one reader and writer of weight files.
"""

from __future__ import annotations

from distill_cli.models.checkpoint import load_weights, read_sidecar, save_weights
from distill_cli.models.create import Net, create_net, create_teacher
from distill_cli.models.view import ModelInfo, model_view

__all__ = [
    "ModelInfo",
    "Net",
    "create_net",
    "create_teacher",
    "load_weights",
    "model_view",
    "read_sidecar",
    "save_weights",
]
