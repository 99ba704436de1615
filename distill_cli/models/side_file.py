"""The side file of a checkpoint (`teacher.pth` -> `teacher.json`), typed and checked once.

distill writes it beside its own checkpoints and users write it by hand for theirs (a Hugging
Face model folder's config.json is read into the same keys, `hub.py`). Every command reads the
facts through `SideFile`, so a key is understood, or refused, the same way by the run, its
plan, the export and the benchmarks. A hand-written file is where mistakes hide: a key spelt as
timm or another tool spells it (`img_size`, `labels`) was ignored without a word, and a value
of the wrong type (`"input_size": "224"`) was read as (2, 2) by one command and crashed another
with a traceback. Both are now one line naming the file, the key and what to write.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
)

from distill_cli import host
from distill_cli.errors import DistillError
from distill_cli.recipe.bounds import at_most, check_pixels, pixel_scale_problem
from distill_cli.recipe.fields import ClassName

_Positive = Annotated[StrictInt, Field(gt=0)]
_Number = Annotated[float, Field(strict=True)]  # 0.5 or 1, not "0.5"

#: Keys other tools write for a fact distill reads under its own name.
_SPELT_ELSEWHERE = {
    "img_size": "input_size",
    "image_size": "input_size",
    "resolution": "input_size",
    "labels": "class_names",
    "label_names": "class_names",
    "classes": "class_names",
    "id2label": "class_names",
    "arch": "model",
    "architecture": "model",
    "model_name": "model",
    "n_classes": "num_classes",
    "num_labels": "num_classes",
    "channels": "in_chans",
    "in_channels": "in_chans",
}


class SideFile(BaseModel):
    """What a checkpoint's side file says: the model, its outputs and how it is fed (what the
    recipe's teacher section may also say, and wins on), and, in distill's own files, the
    record of the training that wrote it (`epoch`, `step`, `metrics`, `recipe`, `method`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)] | None = None
    num_classes: Annotated[_Positive, at_most(host.MAX_CLASSES, host.CLASSES_WHY)] | None = None
    in_chans: _Positive | None = None
    #: [H, W]; a side `N` is [N, N] and timm's [C, H, W] is [H, W]
    input_size: tuple[_Positive, _Positive] | None = None
    mean: tuple[_Number, ...] | None = None
    std: tuple[Annotated[float, Field(gt=0, strict=True)], ...] | None = None
    crop_pct: Annotated[float, Field(gt=0, le=1, strict=True)] | None = None
    interpolation: Annotated[str, Field(strict=True)] | None = None
    class_names: list[ClassName] | None = None  # a whole number is a name, as in a recipe
    #: the square image files were decoded to before the crop, when the run read files
    load_size: _Positive | None = None
    epoch: StrictInt | float | None = None  # whole epochs stay ints (`epoch 1`, not `1.0`)
    step: StrictInt | None = None
    metrics: dict[str, Any] | None = None
    recipe: str | None = None
    method: str | None = None
    #: which file said these facts, as the plan names their source: distill's JSON side file,
    #: a Hub folder's config.json, or the arguments timm's train.py recorded (`read_sidecar`)
    _origin: str = PrivateAttr(default="side file")

    @field_validator("input_size", mode="before")
    @classmethod
    def _as_height_width(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return (value, value)
        if isinstance(value, (list, tuple)) and len(value) == 3:
            return tuple(value[1:])  # timm's pretrained_cfg: [C, H, W]
        return value

    @field_validator("input_size", mode="after")
    @classmethod
    def _bounded(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        for side in value or ():
            check_pixels(side)  # as a recipe's input_size: within host.MAX_INPUT_PX
        return value

    @field_validator("class_names", mode="after")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError("must be distinct names, one per output")
        return value

    @property
    def classes(self) -> int | None:
        """The class count the file says: `num_classes`, else the length of `class_names`."""
        if self.num_classes is not None:
            return self.num_classes
        return len(self.class_names) if self.class_names is not None else None

    @property
    def origin(self) -> str:
        return self._origin

    def said_by(self, origin: str) -> SideFile:
        """This SideFile, marked as read from `origin` (not one of its keys: never written)."""
        self._origin = origin
        return self

    def written(self) -> dict[str, Any]:
        """The keys the file holds, as JSON values (what `save_weights` wrote)."""
        return self.model_dump(mode="json", exclude_none=True)


def parse_side_file(data: Any, path: Path) -> SideFile:
    """`data` (the file's JSON) as a SideFile, or a one-line error naming the key to fix."""
    if not isinstance(data, dict):  # hand-edited: a list or a number is not a side file
        raise DistillError(
            "checkpoint sidecar is not a JSON object", str(path), "restore or delete the file"
        )
    unknown = [k for k in data if k not in SideFile.model_fields]
    if unknown and {"recipe", "step", "method"} <= data.keys():
        # distill's own record of a training (`save_weights`) with a key a later version added:
        # "remove it" read as a typo of the user's
        from distill_cli import __version__

        raise DistillError(
            f"the checkpoint's side file was written by a distill newer than this one "
            f"({__version__}): it has the key {unknown[0]!r}, which this version does not read",
            str(path),
            "read the run with the distill that wrote it (pip install -U distill-cli)",
        )
    if unknown:
        key = unknown[0]
        ours = _SPELT_ELSEWHERE.get(str(key).lower())
        ours = ours or next(iter(difflib.get_close_matches(str(key), SideFile.model_fields)), None)
        raise DistillError(
            f"the checkpoint's side file has a key distill does not read: {key!r}",
            str(path),
            (f"write it as {ours!r}" if ours else "remove it")
            + "; the keys are "
            + ", ".join(_FACTS),
        )
    try:
        side = SideFile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"][:1])
        raise DistillError(
            f"the checkpoint's side file has a bad {key}: {data.get(key)!r} "
            f"({error['msg'].lower()})",
            str(path),
            _WRITE.get(key, "fix or remove it"),
        ) from None
    if side.class_names is not None and side.num_classes not in (None, len(side.class_names)):
        raise DistillError(
            f"the checkpoint's side file names {len(side.class_names)} classes for num_classes "
            f"{side.num_classes}",
            str(path),
            "class_names holds one name per output, in order: fix one of the two",
        )
    if (side.mean is None) != (side.std is None):
        raise DistillError(
            "the checkpoint's side file gives " + ("mean" if side.std is None else "std")
            + " without " + ("std" if side.std is None else "mean"),
            str(path),
            "give both (one value per channel), or neither (timm's defaults for the model)",
        )  # fmt: skip
    problem = pixel_scale_problem(side.mean, side.std)
    if problem:
        raise DistillError(f"the checkpoint's side file: {problem}", str(path), "fix mean/std")
    return side


#: The keys a user writes (the rest are distill's record of the training).
_FACTS = ("model", "num_classes", "class_names", "in_chans", "input_size", "mean", "std",
          "crop_pct")  # fmt: skip
_WRITE = {
    "model": 'a timm model name, e.g. "resnet50"',
    "num_classes": "a whole number of outputs, e.g. 10",
    "in_chans": "1 (grayscale) or 3 (RGB)",
    "input_size": "[H, W] in pixels, e.g. [224, 224], or one number for a square",
    "mean": "one number per channel, e.g. [0.485, 0.456, 0.406]",
    "std": "one positive number per channel, e.g. [0.229, 0.224, 0.225]",
    "crop_pct": "a fraction in (0, 1], e.g. 0.875",
    "class_names": 'a list of distinct names in output order, e.g. ["cat", "dog"]',
}
