"""report.json: what an export produced and measured, for people and pipelines.

Top-level blocks: ``model`` (what was exported: timm name, input config, classes, parameters,
GFLOPs, the ONNX file, its exporter, reparameterization, dynamic axes and metadata),
``preprocess`` (every step from an image file to the input tensor), ``parity`` (the fp32
gate), ``variants`` (fp16 / int8 files, each with its own parity block against fp32 and whether
it passed its gates), ``latency`` (environment,
protocol and one entry per runtime, each with ``p50_ms``, ``p90_ms``, ``p99_ms``, ``mean_ms``),
``gates`` (what was asked and every miss), plus ``source``, ``teachers`` and ``files``.

The same keys go into the ONNX file's metadata_props (``distill.*``) where they describe the
model, so a file found on a server says what it is, how to feed it and which weights it holds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

from distill_cli import __version__
from distill_cli.errors import DistillError
from distill_cli.export.preprocess import Preprocess
from distill_cli.files import atomic_write
from distill_cli.host import absolute
from distill_cli.models.view import ModelInfo

SCHEMA = "distill.export/1"

#: What to do about an export report that cannot be read back.
_EXPORT_AGAIN = "run distill export again to write it anew"
REPORT_NAME = "report.json"


def metadata_props(
    info: ModelInfo,
    class_names: list[str] | None,
    class_names_source: str,
    checkpoint_sha256: str | None,
    checkpoint: Path | None,
    exporter: str,
    preprocess: Preprocess,
    dynamic_axes: dict[int, str],
    reparameterized: bool,
) -> dict[str, str]:
    """The ONNX metadata_props: enough to feed the model with onnxruntime + numpy + PIL alone
    (every preprocessing step, see preprocess.py), to name its outputs, and to trace it back to
    its weights. `distill.class_names` is written only when the names are known (never "null")."""
    props = {
        "distill.model": info.name,
        "distill.num_classes": str(info.num_classes),
        "distill.in_chans": str(info.in_chans),
        "distill.input_size": json.dumps(list(info.input_size)),
        "distill.mean": json.dumps(list(info.mean)),
        "distill.std": json.dumps(list(info.std)),
        **preprocess.metadata(),
        "distill.dynamic_axes": json.dumps({str(k): v for k, v in dynamic_axes.items()}),
        "distill.output": "float32 logits (batch, num_classes); softmax for probabilities",
        "distill.class_names_source": class_names_source,
        "distill.reparameterized": str(reparameterized).lower(),
        "distill.checkpoint": checkpoint.name if checkpoint is not None else "",
        "distill.checkpoint_sha256": checkpoint_sha256 or "",
        "distill.exporter": exporter,
        "distill.version": __version__,
    }
    if class_names is not None:
        props["distill.class_names"] = json.dumps(class_names)
    return props


def model_block(
    info: ModelInfo,
    class_names: list[str] | None,
    params: int,
    flops: float | None,
    onnx_block: dict[str, Any],
) -> dict[str, Any]:
    # The resize is described once, by the `preprocess` block (what distill evaluates with).
    described = {k: v for k, v in info.to_dict().items() if k != "interpolation"}
    return {
        **described,
        "input_size": list(info.input_size),
        "class_names": class_names,
        "params": params,
        "gflops": None if flops is None else flops / 1e9,
        "onnx": onnx_block,
    }


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities (a broken export produces them) become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


T = TypeVar("T")


class Key(Generic[T]):
    """One report.json key read as a typed attribute: `top1_onnx = Key[float | None]()` reads
    `data["top1_onnx"]`. Keys that older reports or `bench latency` lack are `optional` (read
    with a default), so a reader never guesses at a string key of its own."""

    def __init__(self, *, optional: bool = False, default: Any = None) -> None:
        self.optional, self.default, self.key = optional, default, ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name

    @overload
    def __get__(self, obj: None, owner: type) -> Key[T]: ...
    @overload
    def __get__(self, obj: Block, owner: type) -> T: ...
    def __get__(self, obj: Block | None, owner: type) -> Key[T] | T:
        if obj is None:
            return self
        if self.optional:
            value = obj.data.get(self.key)
            return self.default if value is None else value
        return obj.data[self.key]


@dataclass(frozen=True)
class Block:
    """A typed view of one block of report.json. The JSON dict stays the storage, so the file
    keeps exactly the keys, order and values it always had; the view names what code reads."""

    data: dict[str, Any] = field(repr=False)


#: A figure a broken export turns into a string ("nan", "inf"), or None when not measured.
Figure = float | str | None


class ParityInputs(Block):
    kind = Key[str]()
    images = Key[int]()


class ParityReport(Block):
    """The fp32 gate: ONNX fp32 against PyTorch (parity.py)."""

    passed = Key[bool]()
    misses = Key[list[str]]()
    atol = Key[float]()
    rtol = Key[float]()
    max_abs_diff = Key[Figure]()
    mean_abs_diff = Key[Figure]()
    top1_agreement = Key[Figure]()
    top1_pytorch = Key[Figure]()
    top1_onnx = Key[Figure]()
    top1_drop = Key[Figure]()

    @property
    def inputs(self) -> ParityInputs:
        return ParityInputs(self.data["inputs"])


class VariantParity(Block):
    """An fp16/int8 file against ONNX fp32 (parity.variant_parity)."""

    top1 = Key[Figure]()
    top1_drop = Key[Figure]()
    #: per class (in the model's output order), fp32's top-1 minus this file's; None unlabeled
    per_class_top1_drop = Key[list[float | None] | None](optional=True)
    top1_agreement_fp32 = Key[Figure]()
    max_abs_diff = Key[Figure]()
    mean_abs_diff = Key[Figure]()


class VariantReport(Block):
    """One fp16/int8 file: where, how big, its parity and whether it passed its gates."""

    path = Key[str]()
    bytes = Key[int]()
    gates_passed = Key[bool | None](optional=True)

    @property
    def file(self) -> Path:
        return Path(self.path)

    @property
    def parity(self) -> VariantParity:
        return VariantParity(self.data["parity"])


class LatencyEntry(Block):
    """One timed runtime (latency.py's protocol): batch-1 statistics and batch-N throughput."""

    name = Key[str]()
    model = Key[str]()
    variant = Key[str]()
    runtime = Key[str]()
    provider = Key[str]()
    threads = Key[int]()
    runs = Key[int]()
    p50_ms = Key[float]()
    p90_ms = Key[float]()
    p99_ms = Key[float]()
    mean_ms = Key[float]()
    session_create_ms = Key[float | None](optional=True)
    throughput_ips = Key[float | None](optional=True)
    meets_protocol = Key[bool](optional=True, default=False)
    protocol_issues = Key[list[str]](optional=True, default=[])

    def stat_ms(self, stat: str) -> float:
        """`p50` or `p90` (a latency gate's statistic), in ms."""
        return float(self.data[f"{stat}_ms"])


class LatencyReport(Block):
    """The latency block of report.json, also the `latency` of `distill bench latency`."""

    speedup = Key[dict[str, float]](optional=True, default={})
    speedup_meets_protocol = Key[dict[str, bool]](optional=True, default={})

    @property
    def entries(self) -> list[LatencyEntry]:
        return [LatencyEntry(e) for e in self.data.get("entries") or []]

    @property
    def threads(self) -> int:
        return int(self.data["protocol"]["threads"])

    @property
    def batch(self) -> int:
        return int(self.data["protocol"]["batch"])

    @property
    def cpu(self) -> str:
        return str(self.data["environment"]["cpu"])

    def entry(self, name: str) -> LatencyEntry:
        """One timed entry by name, e.g. `student/onnxruntime/fp32`; KeyError names the rest."""
        entries = self.entries
        for entry in entries:
            if entry.name == name:
                return entry
        known = ", ".join(e.name for e in entries) or "none"
        raise KeyError(f"no latency entry {name!r}; measured: {known}")


class OnnxFileReport(Block):
    """The fp32 ONNX file (model.onnx block)."""

    bytes = Key[int | None](optional=True)
    opset = Key[int | None](optional=True)

    @property
    def exporter_used(self) -> str | None:
        return (self.data.get("exporter") or {}).get("used")


class ModelReport(Block):
    """What was exported: the timm model, its size and the ONNX file."""

    name = Key[str]()
    params = Key[int]()
    gflops = Key[Figure]()

    @property
    def onnx(self) -> OnnxFileReport:
        return OnnxFileReport(self.data["onnx"])


class GatesReport(Block):
    """What the gates asked for and how the files fared (gates.py)."""

    passed = Key[bool]()
    misses = Key[list[str]]()
    files = Key[dict[str, bool]]()


class ExportReport(Block):
    """report.json as one typed object: built by the export pipeline, judged by the gates,
    rendered by the console and returned by `api.export`. `to_dict()` is the file's content;
    the few figures a caller usually wants (`onnx`, `parity_passed`, `latency_of`,
    `gates_passed`, `misses`, `report_path`) are read from it, never copied."""

    schema = Key[str]()
    created = Key[str]()
    files = Key[dict[str, str]]()

    @classmethod
    def build(cls, **blocks: Any) -> ExportReport:
        """A new report (schema, version, time first), JSON-safe (NaN and inf as strings)."""
        report = {
            "schema": SCHEMA,
            "distill_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **blocks,
        }
        return cls(_clean(report))

    @classmethod
    def read(cls, path: Path) -> ExportReport:
        try:
            data = json.loads(Path(path).read_bytes())
        except (OSError, ValueError) as exc:
            raise DistillError("export report is unreadable", str(path), _EXPORT_AGAIN) from exc
        if not isinstance(data, dict):
            raise DistillError("export report is not a JSON object", str(path), _EXPORT_AGAIN)
        return cls(data)

    @property
    def model(self) -> ModelReport:
        return ModelReport(self.data["model"])

    @property
    def parity(self) -> ParityReport:
        return ParityReport(self.data["parity"])

    @property
    def variants(self) -> dict[str, VariantReport]:
        return {k: VariantReport(v) for k, v in (self.data.get("variants") or {}).items()}

    @property
    def latency(self) -> LatencyReport | None:
        block = self.data.get("latency")
        return LatencyReport(block) if block else None

    @property
    def notes(self) -> list[str]:
        return list((self.data.get("source") or {}).get("notes") or [])

    @property
    def gates(self) -> GatesReport:
        return GatesReport(self.data["gates"])

    # --- what callers of `api.export` read most ---------------------------------------------

    @property
    def onnx(self) -> Path | None:
        """The fp32 ONNX file (None when the export did not get that far)."""
        path = self.files.get("onnx")
        return Path(path) if path else None

    @property
    def report_path(self) -> Path | None:
        """Where this report was written (OUT/report.json), once written."""
        path = self.files.get("report")
        return Path(path) if path else None

    @property
    def parity_passed(self) -> bool:
        return bool(self.parity.passed)

    @property
    def gates_passed(self) -> bool:
        return bool(self.gates.passed)

    @property
    def misses(self) -> list[str]:
        """One line per missed gate (also the `error:` lines of `distill export`)."""
        return list(self.gates.misses)

    def latency_of(self, name: str) -> LatencyEntry:
        """One timed entry by name, e.g. `student/onnxruntime/int8`."""
        if self.latency is None:
            raise KeyError(f"no latency entry {name!r}: the export was not timed (--no-latency)")
        return self.latency.entry(name)

    def record_gates(
        self, requested: dict[str, Any], misses: list[str], files: dict[str, bool]
    ) -> None:
        """The gates' verdict: each variant's `gates_passed`, then the `gates` block."""
        for name, variant in self.data["variants"].items():
            variant["gates_passed"] = files[name]
        self.data["gates"] = {
            "requested": requested,
            "passed": not misses,
            "files": files,
            "misses": misses,
        }

    def write(self, out_dir: Path) -> Path:
        """OUT/report.json, with its own path recorded under `files.report` first."""
        path = out_dir / REPORT_NAME
        self.data["files"]["report"] = absolute(path)
        atomic_write(path, json.dumps(self.data, indent=2) + "\n")
        return path

    def to_dict(self) -> dict[str, Any]:
        return self.data
