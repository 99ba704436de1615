"""The sections of a recipe: one pydantic model per part of a run (models, data, augmentation,
optimizer, schedule, runtime, output) and the base of every method's section.

They are plain data with validation and nothing else, so they import neither torch nor the code
they configure; the factories they feed (`distill_cli.data.build_data`,
`distill_cli.train.optim.build_optimizer`, `BatchAugment`) take plain arguments in turn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from distill_cli.errors import DistillError

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")

PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]


class Strict(BaseModel):
    """Base of every recipe section: unknown keys are errors; assignments are validated too."""

    # NaN/Inf are never a setting: `lr: 1e400` (YAML reads inf) would pass `gt=0` and crash in
    # the optimizer, so every float of every section must be finite
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, populate_by_name=True, allow_inf_nan=False
    )


class ModelSpec(Strict):
    """A timm model and where its weights come from."""

    model: str = Field(description="timm model name, e.g. resnet50 or mobilenetv3_small_100")
    pretrained: bool = Field(False, description="load timm's pretrained weights (needs the hub)")
    checkpoint: Path | None = Field(None, description=".safetensors, .pt or .pth weights")
    num_classes: PositiveInt | None = Field(None, description="default: checkpoint/data classes")
    in_chans: PositiveInt = 3
    input_size: PositiveInt | tuple[PositiveInt, PositiveInt] | None = Field(
        None, description="H (square) or [H, W]; default: the model's pretrained cfg"
    )
    mean: tuple[float, ...] | None = None
    std: tuple[Annotated[float, Field(gt=0)], ...] | None = None
    crop_pct: Fraction | None = Field(None, description="eval centre-crop fraction")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="extra create_model kwargs")

    @model_validator(mode="after")
    def _one_weight_source(self) -> ModelSpec:
        if self.pretrained and self.checkpoint is not None:
            raise ValueError("set either pretrained or checkpoint, not both")
        if (self.mean is None) != (self.std is None):
            raise ValueError("set mean and std together")
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise ValueError("mean and std must have the same length")
        return self


class SyntheticSpec(Strict):
    """Generated, learnable images for tests and smoke runs (no files needed)."""

    num_classes: PositiveInt = 4
    train_size: PositiveInt = 256
    val_size: PositiveInt = 64
    image_size: PositiveInt = 32
    channels: Literal[1, 3] = 3


class DataSpec(Strict):
    """Where training and validation images come from."""

    source: Literal["fashion_mnist", "image_folder", "synthetic"]
    root: Path | None = Field(None, description="dataset root; fashion_mnist has a default")
    train_dir: str = "train"
    val_dir: str = "val"
    distill_dir: Path | None = Field(
        None, description="unlabeled image folder to distill on instead of the labeled train split"
    )
    train_limit: PositiveInt | None = Field(None, description="use a fixed random subset")
    subset: PositiveInt | None = Field(
        None,
        description="train on a fixed, class-balanced subset of this many training images "
        "(seeded by runtime.seed; small-data distillation, quick runs)",
    )
    val_limit: PositiveInt | None = None
    holdout: PositiveInt | None = Field(
        None,
        description="take this many training images out (class-balanced, seeded by "
        "runtime.seed) as the split evaluated during training and for `best`; the val split "
        "becomes the test set, evaluated once at the end (summary.json `test`)",
    )
    load_size: PositiveInt | None = Field(
        None,
        description="image_folder: training images keep their aspect ratio with the longer side "
        "decoded to this (crops see the whole photo); validation images get a centre square "
        "of this side",
    )
    workers: int = Field(4, ge=0, description="decode workers for image folders")
    decode: Literal["auto", "workers", "device"] = Field(
        "auto",
        description="image folders: decode in workers (CPU) or batched on the device "
        "(nvJPEG); auto = device on CUDA",
    )
    on_bad_image: Literal["skip", "error"] = Field(
        "skip", description="an undecodable file: skip it (counted in the summary) or stop"
    )
    synthetic: SyntheticSpec = Field(default_factory=SyntheticSpec)
    class_map: dict[str, str] = Field(
        default_factory=dict,
        description="data class name -> teacher class name, where the two name classes "
        "differently (e.g. a folder `T-shirt_top` for Fashion-MNIST's `T-shirt/top`)",
    )

    @model_validator(mode="after")
    def _root_needed(self) -> DataSpec:
        if self.source == "image_folder" and self.root is None and self.distill_dir is None:
            raise ValueError("image_folder needs root (with train/ and val/ class folders)")
        return self

    @property
    def resolved_root(self) -> Path | None:
        if self.root is None and self.source == "fashion_mnist":
            return FASHION_MNIST_ROOT
        return self.root

    def data_args(self) -> dict[str, Any]:
        """The arguments of `distill_cli.data.build_data` (all but the seed), which takes plain
        values so that the data package knows no recipe."""
        return {
            "source": self.source,
            "root": self.resolved_root,
            "train_dir": self.train_dir,
            "val_dir": self.val_dir,
            "distill_dir": self.distill_dir,
            "train_limit": self.train_limit,
            "subset": self.subset,
            "val_limit": self.val_limit,
            "holdout": self.holdout,
            "synthetic": self.synthetic.model_dump(),
        }


class AugmentSpec(Strict):
    """The training view: one inception-style random resized crop and flip per image."""

    crop_scale: tuple[Fraction, Fraction] = (0.08, 1.0)
    crop_ratio: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] = (
        3 / 4,
        4 / 3,
    )
    flip: bool = True
    random_erasing: float = Field(
        0.0,
        ge=0,
        le=1,
        description="probability of erasing a random box (2-33% of the view, filled with "
        "noise) in each training view, batched on the device and seeded like the crops; "
        "0 disables",
    )

    @model_validator(mode="after")
    def _ordered(self) -> AugmentSpec:
        if self.crop_scale[0] > self.crop_scale[1] or self.crop_ratio[0] > self.crop_ratio[1]:
            raise ValueError("crop_scale and crop_ratio are [min, max]")
        return self


class OptimSpec(Strict):
    name: Literal["adamw", "sgd"] = "adamw"
    lr: Annotated[float, Field(gt=0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    clip_grad_norm: Annotated[float, Field(gt=0)] | None = Field(
        1.0, description="global-norm clipping; null disables"
    )
    weight_decay_scale: Literal["lr", "schedule"] = Field(
        "lr",
        description="adamw: what weight_decay is multiplied by at each step. lr: the learning "
        "rate (PyTorch's AdamW). schedule: only the warmup/cosine factor, not the base lr, as "
        "in big_vision and so in the function-matching paper, whose wd values then apply as "
        "published",
    )

    @model_validator(mode="after")
    def _scale_needs_adamw(self) -> OptimSpec:
        if self.weight_decay_scale == "schedule" and self.name != "adamw":
            raise ValueError("weight_decay_scale: schedule is for adamw (decoupled decay)")
        return self

    def optimizer_args(self) -> dict[str, Any]:
        """The arguments of `train.optim.build_optimizer` (all but the module and device):
        everything here but `clip_grad_norm`, which the engine applies to the gradients."""
        return self.model_dump(exclude={"clip_grad_norm"})


class ScheduleSpec(Strict):
    epochs: PositiveInt | None = None
    steps: PositiveInt | None = Field(None, description="train for exactly this many steps")
    batch_size: PositiveInt = Field(512, description="global batch size")
    warmup_steps: Annotated[int, Field(ge=0)] = 0
    warmup_fraction: Annotated[float, Field(ge=0, lt=1)] | None = Field(
        None, description="linear warmup over this fraction of the run (instead of warmup_steps)"
    )
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.0
    eval_every: Annotated[int, Field(ge=0)] = Field(1, description="epochs; 0 = only at the end")
    evals: PositiveInt | None = Field(
        None,
        description="evaluate this many times, evenly spread over the run's epochs (replaces "
        "eval_every): long schedules on small data stay cheap to validate",
    )
    eval_batch_size: PositiveInt | None = None
    log_every: PositiveInt = Field(50, description="steps between metrics.jsonl lines")
    checkpoint_every: PositiveInt | None = Field(
        None, description="also save `last` every N steps (besides every epoch end)"
    )
    save_epochs: list[PositiveInt] = Field(
        default_factory=list, description="extra checkpoints (e.g. early-stopped teachers)"
    )

    @model_validator(mode="after")
    def _length(self) -> ScheduleSpec:
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("set exactly one of epochs or steps")
        if self.warmup_fraction is not None and self.warmup_steps:
            raise ValueError("set either warmup_steps or warmup_fraction, not both")
        return self

    def warmup(self, total_steps: int) -> int:
        """Warmup length in steps: fixed, or a fraction of the run's length."""
        if self.warmup_fraction is not None:
            return round(self.warmup_fraction * total_steps)
        return self.warmup_steps

    def eval_due(self, epoch: int, epochs: int) -> bool:
        """Whether the end of (1-based) `epoch` of an `epochs`-long run is an evaluation point.

        `evals: N` puts the N evaluations at the epochs ceil(k * epochs / N), k = 1..N, so the
        last epoch is always evaluated and the count does not grow with the schedule.
        """
        if self.evals is not None:
            n = min(self.evals, epochs)
            return any(-(-k * epochs // n) == epoch for k in range(1, n + 1))
        return bool(self.eval_every) and epoch % self.eval_every == 0


class RuntimeSpec(Strict):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA, fp32 on CPU"
    )
    channels_last: bool | None = Field(None, description="default: on for CUDA")
    compile: bool = False
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = Field(
        "default", description="torch.compile mode; reduce-overhead = CUDA graphs (small images)"
    )
    seed: int = 0
    threads: PositiveInt | None = Field(None, description="CPU threads for torch")
    on_nonfinite: Literal["stop", "skip"] = Field(
        "stop", description="a NaN/Inf loss stops the run, or its step is skipped (counted)"
    )
    sync_bn: bool | None = Field(
        None,
        description="BatchNorm statistics over the global batch under several processes; "
        "default: on when the student has BatchNorm and there are several processes",
    )
    log_to: list[Literal["tensorboard", "mlflow"]] = Field(
        default_factory=list,
        description="trackers besides metrics.jsonl: tensorboard (built in), mlflow (extra)",
    )


class OutputSpec(Strict):
    dir: Path = Path("runs")
    name: str | None = Field(None, description="run folder name; default: the recipe name")

    @model_validator(mode="after")
    def _plain_name(self) -> OutputSpec:
        if self.name is not None:
            plain_name(self.name)
        return self


class MethodParams(BaseModel):
    """Base of every method's recipe section; `name` selects the method.

    Each method declares its own subclass (`Params`) in its file under `distill_cli.methods`,
    next to the code that uses it; only this base lives here, so the recipe can name the
    section's type without importing the methods (and torch with them).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
    name: str


def plain_name(name: str) -> None:
    """A run name is one folder: `..`, `/x` or `a/b` could make `--overwrite` delete elsewhere."""
    from distill_cli.rundir import check_run_name

    try:
        check_run_name(name)
    except DistillError as exc:
        raise ValueError(f"{exc.what}; {exc.hint}") from None
