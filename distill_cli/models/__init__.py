"""Models: timm creation (`create`, checked by `probe`; `sizes`: which sizes a model is built
for and runs at, searched on the meta device when one fails), each model's view of the pixels
(`view`), the checkpoint file format distill writes (`checkpoint`), and weights files read into
a model (`weights`; a Hugging Face Hub folder through `hub`).

A recipe's model names become networks here: `create_net` builds a timm model with its input
config resolved from timm (recipe values win), `create_teacher` the frozen teacher or ensemble,
both loading weights through `weights.load_weights`, the one reader of weight files.
"""

from __future__ import annotations

from distill_cli.models.checkpoint import read_sidecar, save_weights
from distill_cli.models.create import Net, create_net, create_teacher
from distill_cli.models.view import ModelInfo, model_view
from distill_cli.models.weights import load_weights

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
