"""What timm's train.py recorded about how it fed a model, read as the checkpoint's side file.

A team that trained its teacher with timm's train.py (`--img-size 64 --mean ... --std ...`)
holds a `model_best.pth.tar` whose `args` (the script's `argparse.Namespace`) say the size,
mean/std and crop the weights were trained and evaluated with, and the same arguments in the
`args.yaml` timm writes into that output folder. distill read only the weights: such a teacher
was fed timm's default size for the architecture (160 px for a 64 px teacher) and its default
mean/std, a silently worse teacher. These facts now count as its side file (a JSON side file
or a Hub config.json, when there is one, wins).

timm's train.py also numbers an image folder's classes its own way: `natural_key` order
(case-folded, digits as numbers: `cat2` before `cat10`, `ant` before `Zebra`), not the
sorted order distill (and torchvision) give a folder. `folder_class_order` says when a
checkpoint's outputs follow that order, so the run renumbers the data's labels to them.
"""

from __future__ import annotations

import argparse
import functools
import re
import warnings
from pathlib import Path
from typing import Any

import yaml

#: The file timm's train.py writes beside its checkpoints (`output/train/<experiment>/`).
ARGS_FILE = "args.yaml"
#: timm's CheckpointSaver names: `model_best.pth.tar`, `last.pth.tar`, `checkpoint-7.pth.tar`.
_SAVER_SUFFIX = ".pth.tar"


def train_args(checkpoint: Path) -> tuple[dict[str, Any], Path] | None:
    """timm's train.py arguments for `checkpoint` and the file they came from: the `args` the
    checkpoint holds, else `args.yaml` beside a file named as timm's saver names them; None
    for any other file, and for arguments whose `model` timm does not know (another script's,
    whose other words may mean other things)."""
    found = _found(checkpoint)
    if found is None:
        return None
    import timm

    name = str(found[0]["model"]).split(".")[0]
    return found if timm.is_model(name) or name in _deprecated() else None


def _deprecated() -> dict[str, str]:
    from timm.models import get_deprecated_models

    return get_deprecated_models()


def _found(checkpoint: Path) -> tuple[dict[str, Any], Path] | None:
    if not checkpoint.is_file():
        return None
    stat = checkpoint.stat()
    args = _embedded(str(checkpoint), stat.st_mtime_ns, stat.st_size)
    if args is not None:
        return args, checkpoint
    side = checkpoint.parent / ARGS_FILE
    if checkpoint.name.endswith(_SAVER_SUFFIX) and side.is_file():
        try:
            data = yaml.safe_load(side.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return None  # not timm's file: the weights alone, as before
        if isinstance(data, dict) and isinstance(data.get("model"), str):
            return data, side
    return None


@functools.lru_cache(maxsize=16)
def _embedded(path: str, mtime_ns: int, size: int) -> dict[str, Any] | None:
    """The `args` of a torch.save checkpoint (read memory-mapped: the tensors are not read),
    cached per file version: every command asks for the side file several times."""
    import torch

    from distill_cli.models.weight_files import _benign_globals

    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:2] != b"\x80\x02" and head != b"PK\x03\x04":  # safetensors holds no args
        return None
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(_benign_globals()):
            warnings.simplefilter("ignore")
            if head[:2] == b"\x80\x02":
                state = _legacy_objects(path)
            else:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # whatever it is, the weights' reader names it
        return None
    args = state.get("args") if isinstance(state, dict) else None
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    return dict(args) if isinstance(args, dict) and isinstance(args.get("model"), str) else None


def _legacy_objects(path: str) -> Any:
    """What a legacy (non-zip: `_use_new_zipfile_serialization=False`, torch before 1.6)
    checkpoint holds, its tensors on the meta device: only the pickle at the file's start is
    read, not the tensor data after it (a zip file is memory-mapped for the same reason).

    The file is torch's magic number, its protocol and system records, then the objects, whose
    storages are persistent ids (`('storage', type, key, location, numel, ...)`): each becomes
    an empty meta storage, through torch's weights-only unpickler, so nothing but plain data
    and tensors is built, as `torch.load(weights_only=True)` would. timm's train.py wrote its
    `args` into such files under older torch (and with `--no-zip` style savers); they were not
    read, and the teacher was fed timm's defaults for its architecture."""
    import torch
    from torch import _weights_only_unpickler as safe

    with open(path, "rb") as fh:
        if safe.load(fh) != torch.serialization.MAGIC_NUMBER:
            return None  # a plain pickle, not torch.save's
        safe.load(fh)  # protocol version
        safe.load(fh)  # system info (byte order, type sizes)
        unpickler = safe.Unpickler(fh)
        unpickler.persistent_load = _meta_storage  # type: ignore[attr-defined]
        return unpickler.load()


def _meta_storage(saved_id: Any) -> Any:
    """An empty storage on the meta device for a legacy checkpoint's persistent id."""
    import torch

    numel = int(saved_id[4]) if isinstance(saved_id, tuple) and len(saved_id) > 4 else 0
    dtype = getattr(saved_id[1], "dtype", torch.float32) if isinstance(saved_id, tuple) else None
    return torch.storage.TypedStorage(numel, dtype=dtype or torch.float32, device="meta")


def side_facts(args: dict[str, Any]) -> dict[str, Any]:
    """timm's arguments in the keys of distill's side file; an argument left at None (timm
    then used the model's default, as distill does) is left out."""
    meta: dict[str, Any] = {"model": _deprecated().get(args["model"], args["model"])}
    for key in ("num_classes", "in_chans"):
        if _is_int(args.get(key)):
            meta[key] = args[key]
    size = args.get("input_size")
    if isinstance(size, (list, tuple)) and len(size) == 3 and all(_is_int(v) for v in size):
        meta["input_size"] = list(size[1:])
    elif _is_int(args.get("img_size")):
        meta["input_size"] = [args["img_size"]] * 2
    mean, std = _numbers(args.get("mean")), _numbers(args.get("std"))
    if mean is not None or std is not None:  # timm fills the one not given from the model
        import timm

        name = str(args["model"]).split(".")[0]
        mean = mean or _numbers(list(timm.get_pretrained_cfg_value(name, "mean") or ()))
        std = std or _numbers(list(timm.get_pretrained_cfg_value(name, "std") or ()))
        if mean is not None and std is not None and min(std) > 0:
            meta["mean"], meta["std"] = mean, std
    crop = args.get("crop_pct")
    if isinstance(crop, (int, float)) and not isinstance(crop, bool) and 0 < crop <= 1:
        meta["crop_pct"] = float(crop)  # timm takes a crop_pct above 1 (a border); distill not
    names = _class_map_names(args)
    if names is not None:
        meta["class_names"] = names
    return meta


def folder_class_order(args: dict[str, Any] | None) -> bool:
    """Whether timm's train.py numbered the classes of an image folder itself (natural order):
    a folder dataset (`--dataset` left empty or `folder`/`imagefolder`) without `--class-map`."""
    if args is None or args.get("class_map"):
        return False
    dataset = str(args.get("dataset") or "").lower()
    return dataset in ("", "folder", "imagefolder", "image_folder")


def natural_order(names: list[str]) -> list[str]:
    """`names` in timm's `natural_key` order (its image folders' class numbering)."""
    return sorted(names, key=_natural_key)


def _natural_key(text: str) -> list[Any]:
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", text.lower())]


def _class_map_names(args: dict[str, Any]) -> list[str] | None:
    """The class names of a `--class-map` text file (one per line, in output order), when the
    file is still where the arguments say (as given, or under `--data-dir`)."""
    given = args.get("class_map")
    if not isinstance(given, str) or not given.endswith(".txt"):
        return None
    for path in (Path(given), Path(str(args.get("data_dir") or "")) / given):
        if path.is_file():
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError):
                return None
            names = [line.strip() for line in lines if line.strip()]
            return names or None
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _numbers(value: Any) -> list[float] | None:
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        return [float(v) for v in value]
    return None
