"""The field types and the base every recipe section shares: what a valid number, size, path
and thread count is, and the checks run on every key of every section (unknown keys, floats
within float32, no true/false where a number is expected).

One owner for these rules, so the run's sections (sections.py), the loop's (loop_sections.py)
and each method's parameters (`MethodParams`) apply the same ones. Plain pydantic; no torch.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from distill_cli import host
from distill_cli.file_kinds import url_problem
from distill_cli.recipe.yaml_text import BOOL_WORDS

PositiveInt = Annotated[int, Field(gt=0)]


def _as_shell_reads_it(path: Path) -> Path:
    """`~` and `$VAR`/`${VAR}` expanded, as a shell would (cluster recipes write `$SCRATCH/data`,
    which was looked for as a folder literally named `$SCRATCH`); an unset variable is an error
    naming it, not a path that is silently not found."""
    text = str(path)
    if "\x00" in text:  # no file system takes it: os.stat raised ValueError deep in the run
        raise ValueError("a path cannot hold a NUL character (\\0)")
    if "$" in text:
        expanded = os.path.expandvars(text)
        unset = re.search(r"\$(\w+|\{[^}]*\})", expanded)
        if unset:
            name = unset.group(1).strip("{}")
            raise ValueError(f"the environment variable {name} is not set (in {text!r})")
        text = expanded
    return Path(text).expanduser()


def _not_a_url(value: Any) -> Any:
    """A URL where a path belongs (`data.root: s3://bucket/x`) is refused as the text written:
    as a Path, `s3:/bucket/x` was looked for as a folder named `s3:`."""
    problem = url_problem(value) if isinstance(value, str) else None
    if problem:
        raise ValueError(f"{value!r} {problem[0]}; {problem[1]}")
    return value


#: A path as a user writes it: `~/data` means their home and `$VAR` an environment variable,
#: as in a shell (`~` was only expanded when the recipe was saved, so the run itself looked for
#: a folder literally named `~`). Relative paths are relative to the cwd.
UserPath = Annotated[Path, BeforeValidator(_not_a_url), AfterValidator(_as_shell_reads_it)]
Fraction = Annotated[float, Field(gt=0, le=1)]


def _int_as_name(value: Any) -> Any:
    """A class folder named `0` is the name "0": YAML reads `[0, 1]` and `{0: cat}` as ints."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


#: A class name as a recipe writes it: text, or a whole number (a folder named `7`).
ClassName = Annotated[str, BeforeValidator(_int_as_name)]


def check_pixels(value: int) -> int:
    """An input side within host.MAX_INPUT_PX, with the reason in the message."""
    if value > host.MAX_INPUT_PX:
        raise ValueError(
            f"{value} px is above the limit of {host.MAX_INPUT_PX} px (its activations would "
            f"not fit in memory); use at most {host.MAX_INPUT_PX}"
        )
    return value


def machine_threads(value: int | None) -> int | None:
    """Threads or workers within host.max_threads() (a few per core of this machine)."""
    if value is not None and value > host.max_threads():
        raise ValueError(
            f"{value} is more than this machine can use (at most {host.max_threads()}: "
            f"{host.PER_CORE} per core, {host.cpu_count()} cores); more only thrashes or "
            "exhausts the OS"
        )
    return value


Pixels = Annotated[int, Field(gt=0), AfterValidator(check_pixels)]
#: The smallest side a model's `input_size` may have (`ModelSpec`).
MIN_MODEL_PX = 8


def within(low: float, high: float, why: str, *, below_high: bool = False) -> AfterValidator:
    """A number from `low` to `high` (both allowed; `high` itself not with `below_high`), for
    keys whose type alone admits values only a slip reaches (`lr: 1e30`, `temperature: 1e-30`):
    they passed `--dry-run` and the run stopped on NaN or learnt nothing. `why` says what a
    value outside does, in the message, beside the range; each bound's own reason is at the key
    that uses it."""

    def check(value: Any) -> Any:
        if isinstance(value, float) and host.float32_problem(value):
            return value  # `_float32` names it, as for every float of a recipe
        if value is not None and not (low <= value < high if below_high else low <= value <= high):
            if below_high:
                span = f"not from {low:g} up to, not including, {high:g}"
            else:
                span = f"below {low:g}" if math.isinf(high) else f"outside {low:g} to {high:g}"
            raise ValueError(f"{value:g} is {span}: {why}")
        return value

    return AfterValidator(check)


def at_most(high: int, why: str) -> AfterValidator:
    """A whole number up to `high`, for counts whose type alone admits what only a slip reaches
    (`shuffle_buffer: 1e12`): each becomes memory, or a loop, later in the run, where it was a
    traceback from the allocator or a worker that filled its buffer until the machine ran out.
    The message gives the value and the bound in full digits, and `why` the bound's reason."""

    def check(value: Any) -> Any:
        if isinstance(value, int) and value > high:
            raise ValueError(f"{value:,} is above {high:,}: {why}")
        return value

    return AfterValidator(check)


#: Why a class count is at least 2 (as `models.feed` says of a data set of one class).
ONE_CLASS_WHY = (
    "a classifier needs two or more: the softmax of one output is always 1, so every loss is "
    "0, nothing trains, and top-1 is 100%"
)


def _two_or_more(value: Any) -> Any:
    """`num_classes: 1` trained without a word: a loss of 0 at every step, top-1 100%."""
    if isinstance(value, int) and value == 1:
        raise ValueError(f"1 class: {ONE_CLASS_WHY}")
    return value


#: A class count (a model's, the synthetic data's): 2 or more, within host.MAX_CLASSES.
ClassCount = Annotated[
    int,
    Field(gt=0),
    AfterValidator(_two_or_more),
    at_most(host.MAX_CLASSES, host.CLASSES_WHY),
]
#: The most input channels: hyperspectral cameras give a few hundred bands; the first layer's
#: weights and every input grow with them (`in_chans: 1e12` was the allocator's error, blamed
#: on the input size).
MAX_CHANNELS = 1024
Channels = Annotated[
    int,
    Field(gt=0),
    at_most(MAX_CHANNELS, "images have 1-4 channels, hyperspectral ones a few hundred bands"),
]
#: The largest batch (2**20): the largest trained with (LARS, LAMB) are 32k-64k, and 2**20
#: images of 224 px are 150 GiB of pixels before the model's activations.
MAX_BATCH = 1 << 20
BatchSize = Annotated[
    int,
    Field(gt=0),
    at_most(MAX_BATCH, "one batch of that many images does not fit in any machine's memory"),
]
#: The largest shuffle buffer of a streamed source, in samples per data worker: the buffer is
#: filled before the first sample leaves it, so a larger one holds the whole split in each
#: worker's memory (100,000 ImageNet JPEGs are about 11 GB); webdataset's examples use 1,000.
MAX_SHUFFLE_BUFFER = 100_000
ShuffleBuffer = Annotated[
    int,
    Field(gt=0),
    at_most(
        MAX_SHUFFLE_BUFFER,
        "each data worker holds that many samples in memory before the first batch (100,000 "
        "ImageNet JPEGs are about 11 GB per worker)",
    ),
]
#: The most images a split may be declared to have (`data.train_images`): LAION-5B, the largest
#: public image set, has 5.8e9; a plan counts its steps and time from the figure.
MAX_IMAGES = 10**10
ImageCount = Annotated[
    int, Field(gt=0), at_most(MAX_IMAGES, "the largest image sets have a few billion images")
]


def pixel_scale_problem(
    mean: tuple[float, ...] | None, std: tuple[float, ...] | None
) -> str | None:
    """What is wrong with a mean/std written for 0-255 pixels, or None.

    Pixels reach the models as 0-1 (`models.view.normalize`), so a mean can only lie in 0-1
    and a std above 1 only shrinks them further. mmcv/detectron configs write ImageNet's as
    `[123.675, 116.28, 103.53]` / `[58.395, 57.12, 57.375]`: copied, every input became about
    -2 and the run trained on nothing without a word."""
    if any(not 0 <= m <= 1 for m in mean or ()) or any(s > 1 for s in std or ()):
        scaled = ", ".join(f"{v / 255:.4g}" for v in (mean or ()))
        hint = f" (/255: mean [{scaled}])" if any(m > 1 for m in mean or ()) else ""
        return (
            "mean and std are for pixels from 0 to 1, so mean lies in 0-1 and std is at most "
            f"1; values for 0-255 pixels are divided by 255{hint}"
        )
    if any(s < MIN_STD for s in std or ()):  # `std: [1e-30]` passed: inputs of 1e30, NaN at once
        return (
            f"a std below {MIN_STD:g} multiplies the pixels by more than {1 / MIN_STD:,.0f}; "
            "images' std is about 0.2-0.3 of the 0-1 range (ImageNet's: 0.229, 0.224, 0.225)"
        )
    return None


#: The smallest std a recipe or side file may give: a channel that varies by less than 0.1% of
#: the pixel range carries nothing, and dividing by less blows the inputs up past any model's
#: trained range (1e-30 made them 1e30).
MIN_STD = 1e-3


#: A softmax temperature (`kd`, `function_matching`). Up to 100: logits of a trained model
#: (~10-50) divided by more are within 0.5 of each other, so the targets are uniform and carry
#: nothing (and the loss's T^2 factor overflows float32 from about T=1e19: `1e30` stopped the run
#: on NaN). From 0.01: the sharpest temperature in use (DINO's teacher, 0.04) is above it, and
#: below it the targets are one-hot, the hard labels the method is meant to soften.
Temperature = Annotated[
    float,
    Field(gt=0),
    within(
        0.01,
        100,
        "T divides the logits (papers use 1-20); above 100 the targets are uniform, "
        "below 0.01 one-hot",
    ),
]


def _float32(value: Any) -> Any:
    """Every float of a recipe reaches a float32 tensor: |x| beyond float32's range would
    become inf there (`lr: 1e39` passed `gt=0` and crashed inside AdamW)."""
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if isinstance(item, float):
            problem = host.float32_problem(item)
            if problem:
                raise ValueError(f"{item!r} {problem}")
    return value


#: The pydantic error type of `refuse_huge_whole` (its context names the key, as BOOL_REFUSED's).
WHOLE_REFUSED = "whole_too_large"


def refuse_huge_whole(data: Any) -> Any:
    """A whole number beyond int64 (a 400-digit `epochs:` or `--set`) is refused as itself,
    for every key of every section before the key's own checks: their bounds are shown with
    `:g`, which cannot format an int beyond a float (an OverflowError traceback), and others
    printed all 400 digits."""
    if not isinstance(data, dict):
        return data
    for key, value in data.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        problem = next(filter(None, map(host.whole_problem, items)), None)
        if problem:
            raise PydanticCustomError(
                WHOLE_REFUSED, problem + "; write the value meant", {"key": str(key)}
            )
    return data


def _admits_bool(annotation: Any) -> bool:
    """Whether a field's type takes true/false anywhere in it: `bool`, `Any`, or a nested
    section (which checks its own fields)."""
    if annotation is bool or annotation is Any:
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_admits_bool(arg) for arg in get_args(annotation))


def _admits_text(annotation: Any) -> bool:
    """Whether a field's type takes text anywhere in it (a name, a path, a free-form value, a
    choice of words: `on_duplicates: off` is the word "off")."""
    if annotation in (str, Any) or (isinstance(annotation, type) and issubclass(annotation, Path)):
        return True
    if get_origin(annotation) is Literal:
        return any(isinstance(choice, str) for choice in get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_admits_text(arg) for arg in get_args(annotation))


def _has_bool(value: Any, words: bool) -> bool:
    """`value` holds true/false, or (`words`) a YAML 1.1 yes/no word, which the recipe's
    YAML 1.2 reading leaves as text (`yaml_text`)."""
    if isinstance(value, bool):
        return True
    if words and isinstance(value, str) and value.strip() in BOOL_WORDS:
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_bool(item, words) for item in value)
    if isinstance(value, dict):
        return any(_has_bool(item, words) for item in value.values())
    return False


def bool_words_as_bools(value: Any) -> Any:
    """`yes`/`no`/`on`/`off` (read as text, `yaml_text`) as true/false, where a free-form
    mapping passes values on untyped (a model's `kwargs`: "no" would be a true string)."""
    if isinstance(value, dict):
        return {key: bool_words_as_bools(item) for key, item in value.items()}
    if isinstance(value, list):
        return [bool_words_as_bools(item) for item in value]
    if isinstance(value, str) and value in BOOL_WORDS:
        return value.lower() in ("yes", "on", "y")
    return value


#: timm's regularisation rates (`drop_rate`, `drop_path_rate`, `attn_drop_rate`, ...): the
#: kwargs a recipe sets most, and the ones a wrong value breaks silently (`drop_rate: yes` was
#: dropout with p=1.0, a student whose features are all zeros) or late (2.0 failed in the probe,
#: blamed on the input size).
_RATE_KEY = re.compile(r"^\w*_rate$")


def rate_problem(kwargs: dict[str, Any]) -> tuple[str, str] | None:
    """The first `*_rate` kwarg that is not a probability, as (key, what is wrong with it)."""
    for key, value in kwargs.items():
        if not _RATE_KEY.match(str(key)) or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            shown = "true/false" if isinstance(value, bool) else repr(value)
            return key, f"{shown} is not a rate (a number from 0 up to, not including, 1)"
        if not 0 <= value < 1:
            return key, f"{value} is outside [0, 1): it is a probability (1 drops everything)"
    return None


def check_model_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The `*_rate` kwargs of a recipe's model are probabilities (`rate_problem`)."""
    problem = rate_problem(kwargs)
    if problem is not None:
        key, what = problem
        raise ValueError(f"{key}: {what}; write e.g. {key}: 0.1")
    return kwargs


def _choices(annotation: Any) -> str:
    """A word-choice key's words (`on_duplicates`: 'warn', 'error', 'off'), or ""."""
    if get_origin(annotation) is Literal:
        return ", ".join(repr(choice) for choice in get_args(annotation))
    return next(filter(None, (_choices(arg) for arg in get_args(annotation))), "")


#: The pydantic error type of `refuse_bool`; its context names the key (the loader adds it to
#: the path, as pydantic does for field errors).
BOOL_REFUSED = "bool_refused"


def _fields_by_key(model: type[BaseModel]) -> dict[str, Any]:
    """Each key a section accepts (field names and aliases) with its field's type."""
    keys: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        keys[name] = info.annotation
        alias = info.validation_alias
        for key in getattr(alias, "choices", [alias] if isinstance(alias, str) else []):
            if isinstance(key, str):
                keys[key] = info.annotation
    return keys


def refuse_bool(model: type[BaseModel], data: Any) -> Any:
    """A yes/no value given to a key that takes none (`epochs: true`) is refused.

    pydantic's lax mode reads true as 1 (and 1.0) where a number is expected, so a slip such
    as `epochs: yes` ran one epoch without a word. One check for every key of every section
    (the bases' validator, before pydantic converts anything), against the key's declared
    type; the numbers and numeric strings YAML and `--set` give (`lr: 1e-3` is the string
    "1e-3" in YAML 1.1, converted as before) are untouched.
    """
    if not isinstance(data, dict):
        return data
    types = _fields_by_key(model)
    for key, value in data.items():
        kind = types.get(key)
        if key in types and not _admits_bool(kind) and _has_bool(value, not _admits_text(kind)):
            choices = _choices(kind)
            raise PydanticCustomError(
                BOOL_REFUSED,
                "true/false is not a value this key takes ("
                + (
                    f"it takes one of {choices}); write one of them"
                    if choices
                    else "it expects a number, text or a list of them); write the value itself"
                ),
                {"key": str(key)},
            )
    return data


class Strict(BaseModel):
    """Base of every recipe section: unknown keys are errors; assignments are validated too."""

    #: Groups of keys that are alternatives to each other (`epochs` or `steps`): the section's
    #: validator refuses two set together, and a `--set` of one group drops the recipe file's
    #: other groups (`document.validated`), as a flag overrides what a file says.
    alternatives: ClassVar[tuple[tuple[tuple[str, ...], ...], ...]] = ()

    # NaN/Inf are never a setting: `lr: 1e400` (YAML reads inf) would pass `gt=0` and crash in
    # the optimizer, so every float of every section must be finite
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, populate_by_name=True, allow_inf_nan=False
    )

    @field_validator("*", mode="after")
    @classmethod
    def _in_float32(cls, value: Any) -> Any:
        return _float32(value)

    @model_validator(mode="before")
    @classmethod
    def _no_bool(cls, data: Any) -> Any:
        return empty_sections_default(cls, refuse_bool(cls, refuse_huge_whole(data)))


def empty_sections_default(model: type[BaseModel], data: Any) -> Any:
    """A section, mapping or list written with nothing under it (`augment:` or `kwargs:` with
    every line commented out) takes its default, as if it were left out: YAML reads it as
    null, which was refused as "Input should be a valid dictionary or instance of
    AugmentSpec". A required section (`schedule:`) or value (`lr:`) stays an error, saying it
    is empty (`recipe.messages`)."""
    if not isinstance(data, dict) or None not in data.values():
        return data
    fields = model.model_fields
    return {
        key: value
        for key, value in data.items()
        if not (value is None and key in fields and fields[key].default_factory is not None)
    }
