"""The recipe: one YAML document that fully describes a run.

Like big_vision's configs, a recipe is data. It is validated by pydantic (unknown keys are rejected
with their path, so a typo never silently falls back to a default), can be overridden from the
command line with ``--set a.b=c``, and is saved resolved into every run directory so that
re-running that file reproduces the run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    model_validator,
)

from distill_cli.errors import DistillError, did_you_mean

if TYPE_CHECKING:
    from pydantic_core import CoreSchema

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
        """The arguments of `distill_cli.optim.build_optimizer` (all but the module and device):
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
            _plain(self.name)
        return self


class MethodParams(BaseModel):
    """Base of every method's recipe section; `name` selects the method.

    Each method declares its own subclass (`Params`) in its file under `distill_cli.methods`,
    next to the code that uses it; only this base lives here, so the recipe can name the
    section's type without importing the methods (and torch with them).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
    name: str


class _RegisteredMethods:
    """Pydantic marker: validate `method` against the union of the registered methods' `Params`,
    discriminated by `name`.

    The union is looked up when `Recipe`'s schema is built, which `defer_build` puts off to the
    first validation: importing the recipe (for `--help`, for a schema, for reading a saved
    run's settings) does not import the methods, and so not torch.
    """

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        from distill_cli.methods import MethodParamsUnion

        return handler(MethodParamsUnion)


def _plain(name: str) -> None:
    """A run name is one folder: `..`, `/x` or `a/b` could make `--overwrite` delete elsewhere."""
    from distill_cli.rundir import check_run_name

    try:
        check_run_name(name)
    except DistillError as exc:
        raise ValueError(f"{exc.what}; {exc.hint}") from None


class Recipe(Strict):
    """A whole run. `student` is the model being trained (`model` is accepted as its alias)."""

    # the `method` union is only known once the methods are imported: see _RegisteredMethods
    model_config = ConfigDict(defer_build=True)

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    description: str = ""
    teacher: ModelSpec | list[ModelSpec] | None = Field(
        None, description="one teacher, or a list whose logits are averaged (an ensemble)"
    )
    student: ModelSpec = Field(validation_alias=AliasChoices("student", "model"))
    data: DataSpec
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    method: Annotated[MethodParams, _RegisteredMethods]
    optim: OptimSpec = Field(default_factory=OptimSpec)
    schedule: ScheduleSpec
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)

    @model_validator(mode="after")
    def _name_is_plain(self) -> Recipe:
        _plain(self.name)
        return self

    @model_validator(mode="after")
    def _teacher_when_needed(self) -> Recipe:
        from distill_cli.methods import method_class

        cls = method_class(self.method.name)
        if cls.needs_teacher and self.teacher is None:
            raise ValueError(f"method {self.method.name!r} needs a teacher section")
        return self

    @property
    def teachers(self) -> list[ModelSpec]:
        if self.teacher is None:
            return []
        return self.teacher if isinstance(self.teacher, list) else [self.teacher]

    @property
    def run_dir(self) -> Path:
        from distill_cli.rundir import RunDir

        return RunDir.of(self.output.dir, self.output.name or self.name).path

    def to_yaml(self) -> str:
        """The recipe as saved into the run folder, with every path made absolute.

        A recipe's relative paths mean "from the directory `distill` ran in"; resolving them
        when the run is saved keeps the saved recipe meaning the same files from any directory,
        so the run can be exported, reported and resumed from elsewhere.
        """
        data = _absolute_paths(self).model_dump(mode="json", exclude_none=False)
        return yaml.safe_dump(data, sort_keys=False)


def _absolute_paths(node: Any) -> Any:
    """`node` with every Path inside it (models, lists) made absolute against the cwd."""
    if isinstance(node, Path):
        return Path(os.path.abspath(node.expanduser()))
    if isinstance(node, list):
        return [_absolute_paths(item) for item in node]
    if isinstance(node, BaseModel):
        fields = type(node).model_fields
        return node.model_copy(update={k: _absolute_paths(getattr(node, k)) for k in fields})
    return node


#: `--set` strings (`optim.lr=3e-3`, values parsed as YAML), or a mapping of dotted keys to
#: Python values (the API's `optim__lr=3e-3` keywords become `{"optim.lr": 3e-3}`).
Overrides = list[str] | Mapping[str, Any]


def _set(raw: dict[str, Any], key: str, value: Any) -> None:
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested recipe data as dotted keys (`optim.lr`), the form `--set` and compare use."""
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def apply_overrides(raw: dict[str, Any], overrides: Overrides) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides; values are parsed as YAML so numbers and lists keep their type."""
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            _set(raw, key, value.as_posix() if isinstance(value, Path) else value)
        return raw
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DistillError(f"override {item!r} is not KEY=VALUE", "--set", "e.g. optim.lr=3e-3")
        try:
            _set(raw, key, yaml.safe_load(value))
        except yaml.YAMLError as exc:
            raise DistillError(f"override {item!r} has an unparsable value", "--set") from exc
    return raw


def override_recipe(recipe: Recipe, overrides: Overrides) -> Recipe:
    """A validated copy of `recipe` with overrides applied (the object itself is left alone)."""
    if not overrides:
        return recipe
    # what the recipe's author set, not the defaults: then switching `method.name` does not drag
    # the old method's default parameters along (the same as `--set` on the recipe's file)
    raw = apply_overrides(recipe.model_dump(mode="json", exclude_unset=True), overrides)
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        raise format_validation_error(exc, f"recipe {recipe.name!r}") from exc


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The valid keys at the parent of `loc`, for a 'did you mean' hint."""
    current: Any = model
    for part in loc[:-1]:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            from distill_cli.methods import method_params_by_name

            current = method_params_by_name().get(str(part))
            continue
        current = field.annotation
        args = getattr(current, "__args__", ())
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        current = models[0] if models else current
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def format_validation_error(exc: ValidationError, source: str) -> DistillError:
    """One readable line per problem, each naming the key's full path."""
    lines = []
    for err in exc.errors():
        # drop pydantic's union-member tags ("ModelSpec", "list[ModelSpec]") from the path
        loc = tuple(
            p for p in err["loc"] if not (isinstance(p, str) and (p[:1].isupper() or "[" in p))
        )
        path = ".".join(str(p) for p in loc) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
            hint = did_you_mean(str(loc[-1]), _field_names(Recipe, loc))
            if hint:
                msg += f"; {hint}"
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"{path}: {msg}")
    what = "invalid recipe: " + "; ".join(lines)
    return DistillError(what, source, "fix the recipe or the --set value and run again")


def load_recipe(
    path: Path | str, overrides: Overrides | None = None, fields: Overrides | None = None
) -> Recipe:
    """Read, override and validate a recipe file; every problem becomes a DistillError.

    `overrides` and then `fields` (the API's keywords) are applied to the file's data before
    validation, exactly as `--set` is: `method.name=kd` switches the method.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        raise DistillError("the recipe is not a regular file", str(path), "pass a YAML file")
    if not path.is_file():
        raise DistillError("recipe file not found", str(path), "check the path")
    try:
        raw = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DistillError(
            f"the recipe is not UTF-8 text (byte {exc.start})", str(path), "pass a YAML file"
        ) from exc
    except OSError as exc:
        raise DistillError(f"cannot read the recipe: {exc.strerror or exc}", str(path)) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise DistillError(f"YAML syntax error: {problem}", where, "fix the YAML") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise DistillError("a recipe must be a YAML mapping", str(path))
    raw = apply_overrides(apply_overrides(raw, overrides or []), fields or [])
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        raise format_validation_error(exc, str(path)) from exc
