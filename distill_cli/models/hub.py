"""A timm model in the Hugging Face Hub layout on local disk: the folder a hub snapshot, a
`git clone` of a model repo or timm's `save_for_hf` leaves.

It holds the weights as ``model.safetensors`` (or the older ``pytorch_model.bin``) and a
``config.json`` whose ``pretrained_cfg`` says how the model was fed (input size, mean/std,
crop) and whose ``num_classes`` / ``label_names`` say what it predicts. A recipe's
`checkpoint:` may name the folder or the weights file in it: either way the weights are
loaded and the config is read as the checkpoint's side file, so a teacher normalised with its
own mean/std is fed with them (timm's defaults for the architecture would be silently wrong).
`models/weights.py` (the weights) and `models/checkpoint.py` (the side file) ask this module;
nothing else reads the layout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distill_cli.errors import DistillError

#: The weights file names, in the order timm's hub loader prefers them; then the indexes of
#: weights saved in shards (`save_pretrained(max_shard_size=...)`: model-00001-of-00002...).
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
CONFIG = "config.json"


def weights_file(path: Path) -> Path:
    """`path` itself, or for a Hub folder the weights file (or shard index) it holds; a folder
    without one is a one-line error naming what was looked for."""
    if not path.is_dir():
        return path
    for name in (*WEIGHTS, *INDEXES):
        if (path / name).is_file():
            return path / name
    raise DistillError(
        f"the checkpoint folder holds no {' or '.join(WEIGHTS)} (nor a shard index)",
        str(path),
        "pass a weights file, or a Hugging Face model folder (config.json + model.safetensors)",
    )


def shards(index: Path) -> list[Path] | None:
    """The files a shard index (`model.safetensors.index.json`) spreads the weights over, in
    order; None for any other file. A shard that is not there is a one-line error."""
    if not index.name.endswith(".index.json"):
        return None
    try:
        weight_map = json.loads(index.read_bytes()).get("weight_map")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as exc:
        raise DistillError(
            f"the shard index cannot be read ({exc})", str(index), "restore it from the repo"
        ) from exc
    if not isinstance(weight_map, dict) or not weight_map:
        raise DistillError(
            "the shard index has no weight_map", str(index), "restore it from the model's repo"
        )
    files = [index.parent / str(name) for name in dict.fromkeys(weight_map.values())]
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        raise DistillError(
            f"{len(absent)} of the {len(files)} weight shards are not there ({absent[0]})",
            str(index.parent),
            "download every file the index names (an interrupted download leaves some out)",
        )
    return files


def config_file(checkpoint: Path) -> Path:
    """The config.json of a Hub folder, or of the folder a weights file of one lies in."""
    return (checkpoint if checkpoint.is_dir() else checkpoint.parent) / CONFIG


def side_file(checkpoint: Path) -> dict[str, Any] | None:
    """The Hub config of `checkpoint` (a Hub folder, or its weights file) in the keys of
    distill's own side file (`num_classes`, `input_size`, `mean`, `std`, `crop_pct`,
    `class_names`, `model`); None when it is not in the Hub layout."""
    if not checkpoint.is_dir() and checkpoint.name not in (*WEIGHTS, *INDEXES):
        return None
    path = config_file(checkpoint)
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DistillError(
            f"the model's {CONFIG} cannot be read ({exc})",
            str(path),
            "restore the file from the model's repository",
        ) from exc
    if not isinstance(config, dict) or not isinstance(config.get("pretrained_cfg"), dict):
        return None  # not timm's layout (a transformers config): the weights alone
    return _as_side_file(config, config["pretrained_cfg"])


def _as_side_file(config: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if isinstance(config.get("architecture"), str):
        meta["model"] = config["architecture"]
    if _is_int(config.get("num_classes")) and config["num_classes"] > 0:
        meta["num_classes"] = config["num_classes"]
    size = cfg.get("input_size")
    if isinstance(size, list) and len(size) == 3 and all(_is_int(v) for v in size):
        meta["input_size"] = size[1:]
    mean, std = cfg.get("mean"), cfg.get("std")
    if _numbers(mean) and _numbers(std):
        meta["mean"], meta["std"] = mean, std
    if isinstance(cfg.get("crop_pct"), (int, float)) and not isinstance(cfg["crop_pct"], bool):
        meta["crop_pct"] = cfg["crop_pct"]
    names = config.get("label_names")
    if isinstance(names, list) and len(names) == meta.get("num_classes", len(names)):
        meta["class_names"] = [str(n) for n in names]
    return meta


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _numbers(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )
