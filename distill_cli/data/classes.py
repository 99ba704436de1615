"""Class names on both sides of a run, matched before anything trains or evaluates.

A teacher's checkpoint names its classes (in the order of its outputs; the recipe's
`class_names` when its side file cannot say); a data source names
its classes too (Fashion-MNIST's IDX files in the dataset's order, an image folder's sorted
alphabetically). Label i of the data must mean output i of the teacher, or a good teacher
scores like a bad one and the student learns a permutation without a word. So:

- same names, same order: nothing to do;
- same names, another order: the data's labels are renumbered to the model's order, and the
  run's class names become that order (so evaluation, the student's checkpoint and its ONNX
  metadata all name output i correctly);
- different names: a one-line error, unless `data.class_map` maps data names to model names.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from distill_cli.data import DataBundle
from distill_cli.data.entries import class_name
from distill_cli.errors import DistillError
from distill_cli.models import timm_args
from distill_cli.models.checkpoint import read_sidecar, weights_path

if TYPE_CHECKING:
    from distill_cli.recipe.sections import ModelSpec


def spec_class_names(spec: ModelSpec) -> tuple[list[str] | None, str]:
    """A model's class names and where they came from: the recipe's `class_names`, else its
    checkpoint's side file; (None, "data") when neither says (the data's order is assumed)."""
    names = spec.names()
    if names is not None:
        return names, "recipe"
    if spec.checkpoint is not None:
        side = read_sidecar(spec.checkpoint)
        if side.class_names is not None:
            return list(side.class_names), side.origin
        if _timm_numbered(spec):
            return None, TIMM_ORDER
    return None, "data"


#: Where a teacher's class order came from when timm's train.py numbered an image folder.
TIMM_ORDER = "data, in timm's train.py order"


def _timm_numbered(spec: ModelSpec) -> bool:
    """Whether the checkpoint is timm's train.py's on an image folder it numbered itself."""
    assert spec.checkpoint is not None
    trained = timm_args.train_args(weights_path(spec.checkpoint))
    return trained is not None and timm_args.folder_class_order(trained[0])


def timm_folder_names(
    specs: list[ModelSpec], data_classes: list[str], class_map: dict[str, str]
) -> list[str] | None:
    """The teachers' class names when timm's train.py numbered them (`timm_numbered`) and
    neither the recipe nor a side file names them; None otherwise."""
    for spec in specs:
        if spec.checkpoint is not None and spec_class_names(spec)[1] == TIMM_ORDER:
            names = timm_numbered(spec.checkpoint, data_classes, class_map)
            if names is not None:
                return names
    return None


def timm_numbered(
    checkpoint: Path, data_classes: list[str], class_map: dict[str, str]
) -> list[str] | None:
    """A checkpoint's class names when timm's train.py trained it on an image folder without
    `--class-map`: the data's classes (as `class_map` names them) in timm's natural order,
    which is not the sorted order an image folder's labels follow here (`Zebra` after `ant`,
    `cat2` before `cat10`); None for any other checkpoint, or one of another class count
    (another label space, left alone). The run and `distill export` both ask here."""
    trained = timm_args.train_args(weights_path(checkpoint))
    if trained is None or not timm_args.folder_class_order(trained[0]):
        return None
    if read_sidecar(checkpoint).classes not in (None, len(data_classes)):
        return None
    nfc = {class_name(k): class_name(v) for k, v in class_map.items()}
    return timm_args.natural_order([nfc.get(class_name(c), class_name(c)) for c in data_classes])


def model_class_names(specs: list[ModelSpec], role: str) -> list[str] | None:
    """The class names the models name (one order for an ensemble), or None."""
    named = []
    for spec in specs:
        names, _ = spec_class_names(spec)
        if names is not None:
            named.append((spec, names))
    if not named:
        return None
    first = named[0][1]
    for spec, names in named[1:]:
        if names != first:
            raise DistillError(
                f"the {role}s name their classes differently; averaging their outputs would "
                "mix classes",
                str(spec.checkpoint or spec.model),
                "use teachers trained on the same classes in the same order",
            )
    return first


def _renamed(data_classes: list[str], class_map: dict[str, str]) -> list[str]:
    unknown = sorted(set(class_map) - set(data_classes))
    if unknown:
        raise DistillError(
            f"data.class_map names classes the data does not have: {unknown[:5]}",
            "data.class_map",
            f"the data's classes are {data_classes[:10]}",
        )
    names = [class_map.get(c, c) for c in data_classes]
    if len(set(names)) != len(names):
        raise DistillError(
            "data.class_map maps two data classes to one name",
            "data.class_map",
            "map each data class to its own teacher class",
        )
    return names


def align_classes(
    data: DataBundle, model_names: list[str] | None, class_map: dict[str, str], role: str
) -> DataBundle:
    """The data with its labels numbered in `model_names`' order (see the module docstring).

    With no model names (a foreign checkpoint, random or pretrained weights) only `class_map`
    renames the data's classes; a model with another class count is another label space
    (agreement-only distillation) and is left alone. Names are compared in Unicode NFC
    (`entries.class_name`): a teacher whose names were written on a Mac names `café` as the
    data does.
    """
    nfc = {class_name(k): class_name(v) for k, v in class_map.items()}
    names = _renamed([class_name(c) for c in data.classes], nfc)  # NFC in, NFC out
    model_names = None if model_names is None else [class_name(n) for n in model_names]
    if model_names is None or len(model_names) != len(names):
        if names == data.classes:
            return data
        model_names = names
    if set(names) != set(model_names):
        only_model = sorted(set(model_names) - set(names))
        only_data = sorted(set(names) - set(model_names))
        raise DistillError(
            f"the {role}'s classes and the data's differ: {role} only {only_model[:5]}, "
            f"data only {only_data[:5]}",
            "data.class_map",
            "map data class names to the model's with data.class_map, or use a model trained "
            "on these classes",
        )
    order = torch.tensor([model_names.index(n) for n in names], dtype=torch.long)
    return replace(
        data,
        train=data.train.renumbered(order, model_names),
        val=data.val.renumbered(order, model_names),
        test=None if data.test is None else data.test.renumbered(order, model_names),
    )
