"""What `distill export` takes: one dataclass the CLI and the Python API both fill in, with the
checks that refuse a bad value or combination before any work is done (exit code 2).

The CLI builds an `ExportOptions` straight from its flags; `api.export` takes one too, or flat
keywords that `ExportOptions.from_flat` (the only conversion) turns into one. The checks run
when the object is made, so a Python caller is refused the same values the CLI's flags are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill_cli.arguments import input_size, known_keywords, path
from distill_cli.errors import DistillError
from distill_cli.export import latency as lat
from distill_cli.export.gates import Gates
from distill_cli.export.onnx_export import EXPORTERS, Exporter
from distill_cli.export.parity import DEFAULT_ATOL, DEFAULT_RTOL, MAX_ATOL, MAX_RTOL, MEASURED
from distill_cli.export.ranges import DEFAULT_OPSET, check_opset, check_range
from distill_cli.export.variants import PRECISIONS, QUANTIZATIONS, Int8Spec
from distill_cli.file_kinds import not_a_file
from distill_cli.files import refuse_odd_path
from distill_cli.host import MAX_SEED, check_classes
from distill_cli.recipe.bounds import rate_problem


def expand_home(target: str) -> str:
    """SOURCE or FILE with a leading `~` expanded, as a shell would; a timm name as it is."""
    return os.path.expanduser(target) if target.startswith("~") else target


@dataclass
class ExportOptions:
    """Everything `distill export` takes; the CLI and the Python API both fill one in."""

    source: str
    out: Path | None = None
    checkpoint: Path | None = None
    #: the entry of a checkpoint dict whose weights to load (`state_dict_ema`); None: the first
    #: of the usual ones (`models.weights`)
    checkpoint_key: str | None = None
    recipe: Path | None = None
    num_classes: int | None = None
    #: (height, width); given as a side (224), `HxW` text ("224x192") or a pair
    input_size: tuple[int, int] | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    onnx: Path | None = None
    exporter: Exporter = "dynamo"
    opset: int = DEFAULT_OPSET
    simplify: bool = True
    precision: str | None = None
    quantize: str | None = None
    calib_images: int = 256
    int8: Int8Spec = field(default_factory=Int8Spec)
    images: int = 2000
    atol: float | None = None
    rtol: float = DEFAULT_RTOL
    #: the old name of `atol` (before rtol existed); kept as its alias
    tolerance: float | None = None
    seed: int = 0
    reparam: bool | None = None
    dynamic_size: bool = False
    latency: bool = True
    teacher: bool = True
    timing: lat.TimingPlan = field(default_factory=lat.TimingPlan)
    gates: Gates = field(default_factory=Gates)
    #: write into an existing folder that holds files distill did not write (`--force`)
    force: bool = False

    def __post_init__(self) -> None:
        # a "~" the shell did not expand (quoted in a CI file, a Python string) made `--out`
        # a folder named "~" in the working directory and SOURCE/--onnx "not found"; recipes
        # expand it (recipe.fields), so the export's paths do too
        self.source = expand_home(self.source)
        for name in ("out", "checkpoint", "recipe", "onnx"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, Path(value).expanduser())
        self.input_size = input_size(self.input_size)  # 224, "224x192" or (224, 192)
        self.validate()

    @classmethod
    def from_flat(cls, source: str | Path, **options: Any) -> ExportOptions:
        """Options as one flat set of keywords (`api.export`'s keyword convenience).

        Gate keys (`min_top1`, `max_top1_drop`, `max_latency_ms`, `latency_stat`,
        `latency_variant`, `require_protocol`), timing keys (`threads`, `warmup`, `runs`,
        `min_time_s`, `max_time_s`, `batch`) and int8 keys (`calib_method`, `per_channel`,
        `act_symmetric`, `weight_symmetric`, `keep_fp32`) are routed to their own blocks; an
        unknown key is an error.
        """
        gate_keys = set(Gates.__dataclass_fields__)
        timing_keys = set(lat.TimingPlan.__dataclass_fields__)
        int8_keys = set(Int8Spec.__dataclass_fields__)
        own = set(cls.__dataclass_fields__) - {"source", "gates", "timing", "int8"}
        known_keywords(options, gate_keys | timing_keys | int8_keys | own, "export options")

        def pick(keys: set[str]) -> dict[str, Any]:
            return {k: v for k, v in options.items() if k in keys and v is not None}

        fields = pick(own)
        for key in ("out", "checkpoint", "recipe", "onnx"):
            if key in fields:
                fields[key] = path(fields[key], key)
        return cls(
            source=str(source),
            gates=Gates(**pick(gate_keys)),
            timing=lat.TimingPlan(**pick(timing_keys)),
            int8=Int8Spec(**pick(int8_keys)),
            **fields,
        )

    @property
    def parity_atol(self) -> float:
        if self.atol is not None:
            return self.atol
        return self.tolerance if self.tolerance is not None else DEFAULT_ATOL

    def _parity_can_fail(self) -> None:
        """Refuse a tolerance above `MAX_ATOL`/`MAX_RTOL`: the fp32 parity check would pass a
        file whose logits are off by 10%, the size of a wrong graph's error."""
        atol_flag = "--atol" if self.atol is not None or self.tolerance is None else "--tolerance"
        for flag, value, ceiling, default in (
            (atol_flag, self.parity_atol, MAX_ATOL, DEFAULT_ATOL),
            ("--rtol", self.rtol, MAX_RTOL, DEFAULT_RTOL),
        ):
            if value > ceiling:
                raise DistillError(
                    f"{flag} {value:g} is above {ceiling:g}, a bound that passes a wrong graph "
                    f"(off by 10% of its logits); {MEASURED} (docs/benchmarks.md, Parity "
                    "tolerances)",
                    flag,
                    f"give at most {ceiling:g} (default {default:g})",
                )

    @property
    def variants(self) -> list[str]:
        return [v for v in (self.precision, self.quantize) if v]

    def validate(self) -> None:
        """Refuse what could never work, before any work; run again by `run_export` since the
        fields can be changed after the object is made."""
        if self.exporter not in EXPORTERS:
            raise DistillError(
                f"unknown exporter {self.exporter!r}", "--exporter", "dynamo or torchscript"
            )
        check_opset(self.opset, self.exporter)
        if self.precision not in (None, *PRECISIONS):
            raise DistillError(f"unknown precision {self.precision!r}", "--precision", "fp16")
        if self.quantize not in (None, *QUANTIZATIONS):
            raise DistillError(f"unknown quantization {self.quantize!r}", "--quantize", "int8")
        if self.atol is not None and self.tolerance is not None and self.atol != self.tolerance:
            raise DistillError(
                "--tolerance is the old name of --atol; give one of them",
                "--tolerance",
                "drop --tolerance",
            )
        if not self.parity_atol > 0:
            raise DistillError(
                "the tolerance must be positive", "--atol / --tolerance", "e.g. --atol 1e-4"
            )
        if not self.rtol >= 0:
            raise DistillError("the relative tolerance must be >= 0", "--rtol", "e.g. --rtol 1e-3")
        check_range(self.images, "--images", whole=True)
        check_range(self.calib_images, "--calib-images", whole=True)
        if self.images < 0 or self.calib_images < 1:
            raise DistillError(
                "image counts must be positive",
                "--images / --calib-images",
                "--images 0 (all) or more, --calib-images 1 or more",
            )
        # what the messages above leave: infinite tolerances, sizes and counts below 1
        check_range(self.tolerance, "--tolerance", 0.0)
        check_range(self.atol, "--atol", 0.0)
        check_range(self.rtol, "--rtol", 0.0)
        self._parity_can_fail()
        check_range(self.num_classes, "--num-classes", 1, whole=True)
        check_classes(self.num_classes, "--num-classes")
        # `--seed 1e23`: numpy's OverflowError
        check_range(self.seed, "--seed", 0, MAX_SEED, whole=True)
        self.input_size = input_size(self.input_size)  # the fields can change after __init__
        problem = rate_problem(self.model_kwargs)  # the recipe's rule for the same kwargs
        if problem is not None:
            key, what = problem
            raise DistillError(f"{key}: {what}", "--model-arg", f"e.g. --model-arg {key}=0.1")
        if self.int8.keep_fp32 and "int8" not in self.variants:  # it was ignored without a word
            raise DistillError(
                "--keep-fp32 names nodes of the int8 file, and no int8 file is made",
                "--keep-fp32",
                "add --quantize int8, or drop --keep-fp32",
            )
        if self.out is not None:  # before the work: `--out " "` made a folder named " "
            refuse_odd_path(self.out, "--out")
        lat.check_device(self.timing.device)
        if self.onnx is not None and not self.onnx.is_file():
            there = not_a_file(self.onnx)
            raise DistillError(
                f"the ONNX file is {there}" if there else "ONNX file not found",
                str(self.onnx),
                "pass the model.onnx file (--onnx)" if there else "check the --onnx path",
            )
        self.gates.validate(self.variants, self.latency)
