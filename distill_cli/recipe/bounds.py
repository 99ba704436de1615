"""The bounds of a recipe's numbers: each limit with the reason a value beyond it is a slip.

A recipe's types alone admit values only a typo reaches (`lr: 1e30`, `shuffle_buffer: 1e12`,
`num_classes: 1`, a mean written for 0-255 pixels): they passed `--dry-run` and the run stopped
on NaN, ran out of memory or learnt nothing without a word. Each bound here is an annotated type
or a check that refuses such a value at load, with the bound and its reason in the message.
The machine's own bounds (threads, input sides, class counts) are `host`'s; these read them.
Plain pydantic; no torch.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from distill_cli import host


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
