"""The sections of a recipe that say what a run is made of (models, data, augmentation, output)
and the base of every method's section. The field types and the base every section shares are
in fields.py, the numbers' bounds in bounds.py; the training loop's sections (optim, schedule,
runtime) are in loop_sections.py; the run-name rule is in run_name.py.

They are plain data with validation and nothing else, so they import neither torch nor the code
they configure; the factories they feed (`distill_cli.data.build_data`, `BatchAugment`) take
plain arguments in turn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from distill_cli import files, host
from distill_cli.errors import DistillError
from distill_cli.recipe.bounds import (
    MIN_MODEL_PX,
    Channels,
    ClassCount,
    ImageCount,
    Pixels,
    ShuffleBuffer,
    check_model_kwargs,
    check_pixels,
    machine_threads,
    pixel_scale_problem,
    within,
)
from distill_cli.recipe.fields import (
    ClassName,
    Fraction,
    PositiveInt,
    Strict,
    UserPath,
    bool_words_as_bools,
)
from distill_cli.recipe.files import refuse_odd_text_file
from distill_cli.recipe.run_name import plain_name

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
#: Synthetic images are generated into memory: more bytes than this is a typo, not a test.
MAX_SYNTHETIC_BYTES = 8 << 30


class ModelSpec(Strict):
    """A timm model and where its weights come from."""

    alternatives = ((("pretrained",), ("checkpoint", "checkpoint_key")),)

    # surrounding blanks are no part of a timm name: a `model: |` block ends in a newline, a
    # copied name in a space, and either was looked up as an unknown model
    model: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)] = Field(
        description="timm model name, e.g. resnet50 or mobilenetv3_small_100"
    )
    pretrained: bool = Field(False, description="load timm's pretrained weights (needs the hub)")
    checkpoint: UserPath | None = Field(None, description=".safetensors, .pt or .pth weights")
    checkpoint_key: str | None = Field(
        None,
        description="the entry of a checkpoint dict holding the weights to load (timm's "
        "train.py --model-ema: state_dict_ema), or a wrapper's attribute holding them (teacher: "
        "the teacher. keys of a Lightning module with two models); default: the first of "
        "state_dict, model_state_dict, model, state_dict_ema, model_ema, net",
    )
    num_classes: ClassCount | None = Field(None, description="default: checkpoint/data classes")
    in_chans: Channels = 3
    input_size: PositiveInt | tuple[PositiveInt, PositiveInt] | None = Field(
        None, description="H (square) or [H, W]; default: the model's pretrained cfg"
    )
    mean: tuple[float, ...] | None = None
    std: tuple[Annotated[float, Field(gt=0)], ...] | None = None
    crop_pct: Fraction | None = Field(None, description="eval centre-crop fraction")
    kwargs: Annotated[
        dict[str, Any],
        BeforeValidator(bool_words_as_bools),
        AfterValidator(check_model_kwargs),
    ] = Field(default_factory=dict, description="extra create_model kwargs")
    strict: bool = Field(
        True,
        description="checkpoint keys must match the model exactly (names and shapes); false "
        "loads the matching keys and leaves the rest as initialised",
    )
    class_names: list[ClassName] | UserPath | None = Field(
        None,
        description="the names of the model's outputs, in order (a list, or a text file with "
        "one name per line); default: the checkpoint's side file",
    )
    check_accuracy: bool = Field(
        True,
        description="teacher: score it on validation images before training and stop when "
        "its top-1 is near chance (wrong class order, input size or normalization)",
    )

    @model_validator(mode="after")
    def _names_fit(self) -> ModelSpec:
        if isinstance(self.class_names, list):
            if not self.class_names or len(set(self.class_names)) != len(self.class_names):
                raise ValueError("class_names must be distinct names, one per output")
            if self.num_classes is not None and len(self.class_names) != self.num_classes:
                raise ValueError(
                    f"class_names has {len(self.class_names)} names for num_classes "
                    f"{self.num_classes}"
                )
        return self

    def names(self) -> list[str] | None:
        """`class_names` as a list: the recipe's list, or the lines of the file it names."""
        if not isinstance(self.class_names, Path):
            return self.class_names
        hint = "class_names: a list, or a UTF-8 text file with one name per line"
        refuse_odd_text_file(self.class_names, "class names file", hint)
        try:
            lines = self.class_names.read_text(encoding="utf-8-sig").splitlines()  # Notepad BOM
        except (OSError, UnicodeDecodeError) as exc:
            raise DistillError(
                f"cannot read the class names file: {type(exc).__name__}",
                str(self.class_names),
                "class_names: a list, or a UTF-8 text file with one name per line",
            ) from exc
        names = [line.strip() for line in lines if line.strip()]
        if not names or len(set(names)) != len(names):
            raise DistillError(
                "the class names file must hold distinct names, one per line",
                str(self.class_names),
                "write one class name per line, each once, in the model's output order",
            )
        if self.num_classes is not None and len(names) != self.num_classes:
            raise DistillError(
                f"the class names file has {len(names)} names for num_classes {self.num_classes}",
                str(self.class_names),
            )
        return names

    @field_validator("input_size", mode="after")
    @classmethod
    def _input_bounded(cls, value: Any) -> Any:
        for side in value if isinstance(value, tuple) else [value]:
            if side is not None:
                check_pixels(side)
                if side < MIN_MODEL_PX:
                    # a CNN pads a 1x1 input through every stage and runs: the student learnt
                    # from one colour per image, without a word
                    raise ValueError(
                        f"{side} px is below {MIN_MODEL_PX} px: an image that small is a few "
                        "colours (1 px: one), nothing a class is told by; the smallest in use "
                        "are 28 (MNIST) and 32 (CIFAR); e.g. input_size: 32"
                    )
        return value

    @model_validator(mode="after")
    def _one_weight_source(self) -> ModelSpec:
        if self.pretrained and self.checkpoint is not None:
            raise ValueError("set either pretrained or checkpoint, not both")
        if self.checkpoint_key is not None and self.checkpoint is None:
            raise ValueError("checkpoint_key names an entry of checkpoint: set checkpoint")
        if (self.mean is None) != (self.std is None):
            raise ValueError("set mean and std together")
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise ValueError("mean and std must have the same length")
        problem = pixel_scale_problem(self.mean, self.std)
        if problem:
            raise ValueError(problem)
        return self


class SyntheticSpec(Strict):
    """Generated, learnable images for tests and smoke runs (no files needed)."""

    num_classes: ClassCount = 4
    train_size: PositiveInt = 256
    val_size: PositiveInt = 64
    image_size: Pixels = 32
    channels: Literal[1, 3] = 3

    @model_validator(mode="after")
    def _fits_in_memory(self) -> SyntheticSpec:
        size = (self.train_size + self.val_size) * self.channels * self.image_size**2
        if size > MAX_SYNTHETIC_BYTES:
            raise ValueError(
                f"the synthetic images take {size / 2**30:.1f} GiB of memory, above the limit "
                f"of {MAX_SYNTHETIC_BYTES >> 30} GiB; lower train_size, val_size or image_size"
            )
        return self


class DataSpec(Strict):
    """Where training and validation images come from."""

    source: Literal["fashion_mnist", "image_folder", "synthetic", "shards", "hf_dataset"]
    root: UserPath | None = Field(None, description="dataset root; fashion_mnist has a default")
    train_dir: str = Field(
        "train",
        description="under root: the training class folders; shards: a folder of .tar files "
        "or a brace pattern (train-{000000..000099}.tar); hf_dataset: a parquet file, a folder "
        "of them, or a save_to_disk folder",
    )
    val_dir: str = Field("val", description="the validation split, as train_dir")
    image_column: str = Field("image", description="hf_dataset: the column holding the images")
    label_column: str = Field(
        "label",
        description="hf_dataset: the integer label column (a training split without it is "
        "unlabeled distillation data; the validation split needs it)",
    )
    shuffle_buffer: ShuffleBuffer = Field(
        1000, description="shards, hf_dataset: samples in each worker's seeded shuffle buffer"
    )
    train_images: ImageCount | None = Field(
        None,
        description="shards, hf_dataset: the training split's size, used by --dry-run when the "
        "data is not at hand (a laptop planning a cluster run), checked against the data read "
        "when it is",
    )
    val_images: ImageCount | None = Field(None, description="as train_images, for val_dir")
    distill_dir: UserPath | None = Field(
        None, description="unlabeled image folder to distill on instead of the labeled train split"
    )
    train_limit: ImageCount | None = Field(
        None,
        description="use a fixed random subset (seeded by runtime.seed) that keeps every "
        "class at least one image",
    )
    subset: ImageCount | None = Field(
        None,
        description="train on a fixed, class-balanced subset of this many training images "
        "(seeded by runtime.seed; small-data distillation, quick runs)",
    )
    val_limit: ImageCount | None = None
    holdout: ImageCount | None = Field(
        None,
        description="take this many training images out (class-balanced, seeded by "
        "runtime.seed) as the split evaluated during training and for `best`; the val split "
        "becomes the test set, evaluated once at the end (summary.json `test`)",
    )
    load_size: Pixels | None = Field(
        None,
        description="image_folder: training images keep their aspect ratio with the longer side "
        "decoded to this (crops see the whole photo); validation images get a centre square "
        "of this side",
    )
    workers: Annotated[int, Field(ge=0), AfterValidator(machine_threads)] | None = Field(
        None,
        description="decode workers for image folders; at most 4 per core; default: 4, never "
        "more than the cores",
    )
    decode: Literal["auto", "workers", "device"] = Field(
        "auto",
        description="image folders: decode in workers (CPU) or batched on the device "
        "(nvJPEG); auto = device on CUDA",
    )
    on_bad_image: Literal["skip", "error"] = Field(
        "skip",
        description="an undecodable file: skip it (training: replaced by a good one; "
        "evaluations: left out; counted once per file and split in the summary) or stop",
    )
    on_duplicates: Literal["warn", "error", "off"] = Field(
        "warn",
        description="the same image (byte for byte) in train and in a split evaluated, or in "
        "two classes: warn (printed before training, kept in summary.json), stop, or off (not "
        "looked for: no file is read for it)",
    )
    synthetic: SyntheticSpec = Field(default_factory=SyntheticSpec)
    class_map: dict[ClassName, ClassName] = Field(
        default_factory=dict,
        description="data class name -> teacher class name, where the two name classes "
        "differently (e.g. a folder `T-shirt_top` for Fashion-MNIST's `T-shirt/top`)",
    )

    @model_validator(mode="after")
    def _root_needed(self) -> DataSpec:
        if self.source == "image_folder" and self.root is None and self.distill_dir is None:
            raise ValueError("image_folder needs root (with train/ and val/ class folders)")
        if self.source in ("shards", "hf_dataset") and self.root is None:
            raise ValueError(f"{self.source} needs root (train_dir and val_dir are under it)")
        return self

    @property
    def resolved_workers(self) -> int:
        """The decode workers: as set, else 4 but never more than this machine's cores."""
        return host.default_workers() if self.workers is None else self.workers

    @property
    def resolved_root(self) -> Path | None:
        if self.root is None and self.source == "fashion_mnist":
            return FASHION_MNIST_ROOT
        return self.root

    def scanned_folders(self) -> list[tuple[str, Path]]:
        """The folders read file by file for images, with the keys naming them: the image
        folder splits (`root/train_dir`, `root/val_dir`) and `distill_dir`. Whatever lands
        inside one of them is read as data (a class folder, unlabeled images)."""
        found = [("data.distill_dir", self.distill_dir)] if self.distill_dir else []
        if self.source == "image_folder" and self.root is not None:
            found += [
                ("data.root/train_dir", self.root / self.train_dir),
                ("data.root/val_dir", self.root / self.val_dir),
            ]
        return [(key, folder) for key, folder in found if folder is not None]

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
            "columns": (self.image_column, self.label_column),
            "sizes": (self.train_images, self.val_images),
        }


#: A crop's width over its height: timm's 3/4 to 4/3, and wider ranges (1/2 to 2) are in use.
#: At 10 a crop fits a square image only at a tenth of its area or less; beyond 0.1-10 no crop
#: fits, every try falls back to the whole image, and the run trains without crops
#: (`[1e-30, 1e30]` did, without a word).
CropRatio = Annotated[
    float,
    Field(gt=0),
    within(0.1, 10, "a crop's width over its height; beyond it no crop fits the image"),
]


class AugmentSpec(Strict):
    """The training view: one inception-style random resized crop and flip per image."""

    crop_scale: tuple[Fraction, Fraction] = (0.08, 1.0)
    crop_ratio: tuple[CropRatio, CropRatio] = (3 / 4, 4 / 3)
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


class OutputSpec(Strict):
    dir: UserPath = Path("runs")
    name: str | None = Field(None, description="run folder name; default: the recipe name")

    @model_validator(mode="after")
    def _plain_name(self) -> OutputSpec:
        if self.name is not None:
            plain_name(self.name)
        if files.path_text_problem(str(self.dir)):  # `dir: " "` made a folder named " "
            raise ValueError(
                f"dir: the path {str(self.dir)!r} {files.path_text_problem(str(self.dir))}"
            )
        return self


class MethodParams(Strict):
    """Base of every method's recipe section; `name` selects the method.

    Each method declares its own subclass (`Params`) in its file under `distill_cli.methods`,
    next to the code that uses it; only this base lives here, so the recipe can name the
    section's type without importing the methods (and torch with them). It checks its keys as
    every section does (unknown keys, float32 range, no true/false for numbers).
    """

    name: str
