"""The sections of a recipe that say how the training loop runs: the optimizer (`optim`), the
schedule (`schedule`: length, warmup, evaluations, checkpoints) and the runtime (`runtime`:
device, precision, compile, seed, threads, trackers).

Plain data with validation, like every section (`fields.Strict`); the optimizer factory they
feed (`distill_cli.train.optim.build_optimizer`) takes plain arguments in turn.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from distill_cli.recipe.bounds import BatchSize, at_most, machine_threads, within
from distill_cli.recipe.fields import Strict

#: The learning rates each optimizer trains with, by name: (lowest, highest).
#: - From 1e-9: an AdamW step moves a weight by about lr, and float32's spacing at a weight of
#:   0.01 is 9e-10, so below it most weights never move (`lr: 1e-30` trained nothing).
#: - AdamW up to 1: its step is about lr in every weight, whose initial values are ~0.01-0.1;
#:   at lr 1 each step replaces the weights (published AdamW lrs are 1e-5 to 1e-2).
#: - SGD up to 100: the linear scaling rule (0.1 per 256 images) gives 12.8 at batch 32k, and
#:   LARS-style schedules ~30; `1e30` diverged on the first step (NaN stop, exit 1).
LR_RANGE = {"adamw": (1e-9, 1.0), "sgd": (1e-9, 100.0)}

#: Adam's moment decays: 0 (no averaging) up to, not including, 1 (a beta of 1 never forgets
#: the first gradient; above 1 the averages grow without bound; torch refused them only when
#: the run built its optimizer).
Beta = Annotated[
    float, within(0, 1, "Adam's moment decay (0.9, 0.999: 1 never forgets)", below_high=True)
]


class OptimSpec(Strict):
    name: Literal["adamw", "sgd"] = "adamw"
    lr: Annotated[float, Field(gt=0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    #: From 1e-3: the clipped gradient's norm spread over a model's weights (1e5-1e8 of them)
    #: must stay far above AdamW's eps (1e-8), else no step moves anything (`1e-30` trained
    #: nothing without a word); published clips are 0.1-10. No ceiling: null disables it.
    clip_grad_norm: (
        Annotated[
            float,
            Field(gt=0),
            within(1e-3, math.inf, "a smaller norm leaves every step under AdamW's eps (1e-8)"),
        ]
        | None
    ) = Field(1.0, description="global-norm clipping; null disables")
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

    @model_validator(mode="after")
    def _trainable(self) -> OptimSpec:
        """A learning rate in the optimizer's range (`LR_RANGE`), and a weight decay that
        shrinks each weight by less than all of it per step: the shrink is lr * weight_decay
        (weight_decay alone with `weight_decay_scale: schedule`), and at 1 or more every step
        zeroes or flips every weight (`weight_decay: 1e9` trained to chance without a word)."""
        low, high = LR_RANGE[self.name]
        if not low <= self.lr <= high:
            raise ValueError(
                f"lr {self.lr:g} is outside {low:g} to {high:g}, the range {self.name} trains "
                "with ("
                + (
                    "above it the first steps diverge"
                    if self.lr > high
                    else "below it float32 weights do not move"
                )
                + "); e.g. lr: "
                + ("1e-3" if self.name == "adamw" else "0.1")
            )
        shrink = self.weight_decay * (1 if self.weight_decay_scale == "schedule" else self.lr)
        if shrink >= 1:
            ceiling = 1 if self.weight_decay_scale == "schedule" else 1 / self.lr
            raise ValueError(
                f"weight_decay {self.weight_decay:g} shrinks every weight by {shrink:g} of itself "
                "per step ("
                + (
                    "weight_decay_scale: schedule"
                    if self.weight_decay_scale == "schedule"
                    else f"times lr {self.lr:g}"
                )
                + "), so each step zeroes or flips "
                f"the weights; use less than {ceiling:g} (papers use 1e-5 to 0.1)"
            )
        return self

    def optimizer_args(self) -> dict[str, Any]:
        """The arguments of `train.optim.build_optimizer` (all but the module and device):
        everything here but `clip_grad_norm`, which the engine applies to the gradients."""
        return self.model_dump(exclude={"clip_grad_norm"})


#: The longest run, in epochs or steps: at 1,000 steps a second it takes 30 years. Past 2**53
#: (9e15) the schedule's float arithmetic is no longer exact: `steps: 1e23` passed `--dry-run`
#: as "24,999,999,999,999,997,902,848 epochs" and started training.
MAX_LENGTH = 10**12
RunLength = Annotated[
    int, Field(gt=0), within(1, MAX_LENGTH, "at 1,000 steps a second that is 30 years")
]
#: The longest warmup, in steps: published ones are 500 to 10,000 steps (ViT's 10k, the
#: function-matching paper's 1,500 to 10,000); ten million is more than a day at 100 steps a
#: second with the learning rate still rising. `warmup_steps: 1e12` passed as a warning only.
MAX_WARMUP = 10**7
WarmupSteps = Annotated[
    int,
    Field(ge=0),
    at_most(MAX_WARMUP, "published warmups are 500 to 10,000 steps; the rate would never rise"),
]
#: The most steps between two metrics lines or two mid-epoch checkpoints: a year of training at
#: 30 steps a second. Each is also written at every epoch's end, so a larger value only hides a
#: slip (`log_every: 1e12` for 1e2).
MAX_EVERY_STEPS = 10**9
EverySteps = Annotated[
    int,
    Field(gt=0),
    at_most(MAX_EVERY_STEPS, "a year of steps at 30 a second; every epoch's end writes one anyway"),
]
#: The most epochs a setting that counts epochs names (`eval_every`, `evals`, `save_epochs`):
#: the longest published schedules are 10,000 epochs (function matching on Flowers-102).
MAX_EPOCH_SETTING = 10**6
EpochSetting = Annotated[
    int,
    Field(ge=0),
    at_most(MAX_EPOCH_SETTING, "the longest published schedules are 10,000 epochs"),
]


class ScheduleSpec(Strict):
    alternatives = (("epochs",), ("steps",)), (("warmup_steps",), ("warmup_fraction",))

    epochs: RunLength | None = None
    steps: RunLength | None = Field(None, description="train for exactly this many steps")
    batch_size: BatchSize = Field(512, description="global batch size")
    warmup_steps: WarmupSteps = 0
    warmup_fraction: Annotated[float, Field(ge=0, lt=1)] | None = Field(
        None, description="linear warmup over this fraction of the run (instead of warmup_steps)"
    )
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.0
    eval_every: EpochSetting = Field(1, description="epochs; 0 = only at the end")
    evals: Annotated[EpochSetting, Field(gt=0)] | None = Field(
        None,
        description="evaluate this many times, evenly spread over the run's epochs (replaces "
        "eval_every): long schedules on small data stay cheap to validate",
    )
    eval_batch_size: BatchSize | None = None
    log_every: EverySteps = Field(50, description="steps between metrics.jsonl lines")
    checkpoint_every: EverySteps | None = Field(
        None, description="also save `last` every N steps (besides every epoch end)"
    )
    save_epochs: list[Annotated[EpochSetting, Field(gt=0)]] = Field(
        default_factory=list, description="extra checkpoints (e.g. early-stopped teachers)"
    )

    @model_validator(mode="after")
    def _length(self) -> ScheduleSpec:
        # each message says how to drop the recipe file's key from the command line, where
        # `--set schedule.steps=N` on an epochs recipe sets both
        if self.epochs is not None and self.steps is not None:
            raise ValueError(
                f"epochs ({self.epochs}) and steps ({self.steps}) are both set; keep one "
                "(on the command line: --set schedule.epochs=null or schedule.steps=null)"
            )
        if self.epochs is None and self.steps is None:
            raise ValueError("set the run's length: epochs or steps")
        if self.warmup_fraction is not None and self.warmup_steps:
            raise ValueError(
                "set either warmup_steps or warmup_fraction, not both (on the command line: "
                "--set schedule.warmup_steps=0 or schedule.warmup_fraction=null)"
            )
        if self.epochs is not None:
            self.check_epochs(self.epochs)
        return self

    def check_epochs(self, epochs: int) -> None:
        """Settings that name epochs must fall inside the run (a checkpoint at epoch 50 of a
        20-epoch run, or 10 evaluations of 3 epochs, would silently not happen)."""
        late = [e for e in self.save_epochs if e > epochs]
        if late:
            raise ValueError(
                f"save_epochs {late} are past the run's last epoch ({epochs}); drop them or "
                "train longer"
            )
        if self.evals is not None and self.evals > epochs:
            raise ValueError(
                f"evals ({self.evals}) is more than the run's epochs ({epochs}): at most one "
                "evaluation per epoch; lower evals"
            )

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
            n = min(self.evals, epochs)  # equal under validation; a steps run is checked at build
            return any(-(-k * epochs // n) == epoch for k in range(1, n + 1))
        return bool(self.eval_every) and epoch % self.eval_every == 0


class RuntimeSpec(Strict):
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @field_validator("device", mode="before")
    @classmethod
    def _device_as_torch_names_it(cls, value: Any) -> Any:
        """`cuda:3` and `mps` are how torch names devices, so users write them: say what to
        write instead rather than only listing the three values."""
        text = str(value).strip().lower() if isinstance(value, str) else ""
        if text.startswith("cuda:"):
            raise ValueError(
                f"{value!r}: one GPU is chosen with CUDA_VISIBLE_DEVICES={text[5:]} and "
                "device cuda (under torchrun each process takes its local rank's GPU)"
            )
        if text in ("mps", "xpu", "xla", "tpu") or text.startswith(("mps:", "xpu:")):
            raise ValueError(f"{value!r} is not supported: auto, cpu or cuda")
        return value

    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA, fp32 on CPU"
    )
    channels_last: bool | None = Field(None, description="default: on for CUDA")
    compile: bool = False
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = Field(
        "default", description="torch.compile mode; reduce-overhead = CUDA graphs (small images)"
    )
    seed: int = Field(
        0, ge=0, le=2**32 - 1, description="0 to 2**32-1: what every random generator accepts"
    )
    threads: Annotated[int, Field(gt=0), AfterValidator(machine_threads)] | None = Field(
        None, description="CPU threads for torch; at most 4 per core of this machine"
    )
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
