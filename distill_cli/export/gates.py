"""CI gates: the conditions an export must meet, and one line for each one it misses.

The fp32 parity gate always applies (an ONNX file that computes something else is not an
export). The others are asked for:

- ``--min-top1 P``: every ONNX file written (fp32 and each variant) has top-1 >= P.
- ``--max-top1-drop D``: ONNX fp32 loses <= D points against PyTorch, and each variant <= D
  against ONNX fp32.
- ``--min-variant-agreement A``: each variant (fp16, int8) agrees with ONNX fp32 on the top-1
  class of >= A% of the parity images (labels not needed: a lossy int8 file fails it).
- ``--max-latency-ms M``: the student's ONNX Runtime CPU entry for ``--latency-variant``
  (fp32 by default) has p50 (or ``--latency-stat p90``) <= M.

A gate that cannot be measured (accuracy without labels, latency not measured) is a miss: a CI
pipeline must not pass because a number was missing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from distill_cli.errors import DistillError, RunFailed

LATENCY_STATS = ("p50", "p90")


@dataclass
class Gates:
    min_top1: float | None = None
    max_top1_drop: float | None = None
    min_variant_agreement: float | None = None
    max_latency_ms: float | None = None
    latency_stat: str = "p50"
    latency_variant: str = "fp32"

    def validate(self, variants: list[str], latency: bool) -> None:
        """Usage errors (exit 2) before any work: a gate that could never be evaluated."""
        if self.min_variant_agreement is not None:
            if not 0 <= self.min_variant_agreement <= 100:
                raise DistillError(
                    "the agreement is a percentage (0 to 100)", "--min-variant-agreement"
                )
            if not variants:
                raise DistillError(
                    "--min-variant-agreement needs a variant to gate",
                    "--min-variant-agreement",
                    "add --quantize int8 or --precision fp16",
                )
        if self.latency_stat not in LATENCY_STATS:
            raise DistillError(f"unknown latency statistic {self.latency_stat!r}", "--latency-stat")
        if self.max_latency_ms is not None:
            if self.latency_variant not in ("fp32", *variants):
                raise DistillError(
                    f"--latency-variant {self.latency_variant} is not being produced",
                    "--latency-variant",
                    f"add --precision {self.latency_variant}"
                    if self.latency_variant == "fp16"
                    else f"add --quantize {self.latency_variant}",
                )
            if not latency:
                raise DistillError("--max-latency-ms needs the latency measurement", "--no-latency")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GateFailed(RunFailed):
    """One or more gates missed; `misses` has one line each, `report` the whole report."""

    def __init__(self, misses: list[str], report: dict[str, Any] | None = None) -> None:
        super().__init__("; ".join(misses), None, None)
        self.misses = misses
        self.report = report


def _files(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name, accuracy block) of every ONNX file written: fp32 first, then the variants."""
    parity = report["parity"]
    out = [("fp32", {"top1": parity["top1_onnx"], "drop": parity["top1_drop"]})]
    for name, variant in report["variants"].items():
        vp = variant["parity"]
        out.append((name, {"top1": vp["top1"], "drop": vp["top1_drop"]}))
    return out


def evaluate(report: dict[str, Any], gates: Gates) -> list[str]:
    """Every miss, one line each, parity first."""
    return [line for _, line in judge(report, gates)]


def verdicts(report: dict[str, Any], gates: Gates) -> dict[str, bool]:
    """Which files passed every gate that applies to them: "fp32", then each variant."""
    missed = {name for name, _ in judge(report, gates)}
    return {name: name not in missed for name, _ in _files(report)}


def judge(report: dict[str, Any], gates: Gates) -> list[tuple[str, str]]:
    """(file, line) for every miss: the file ("fp32", "int8", ...) is the one that missed."""
    misses = [("fp32", line) for line in report["parity"]["misses"]]
    files = _files(report)
    if gates.min_top1 is not None:
        for name, acc in files:
            if acc["top1"] is None:
                line = f"min-top1: no labeled validation data to measure {name} top-1"
                misses.append((name, line))
            elif acc["top1"] < gates.min_top1:
                line = f"min-top1: {name} ONNX top-1 {acc['top1']:.2f}% < {gates.min_top1:.2f}%"
                misses.append((name, line))
    if gates.max_top1_drop is not None:
        for name, acc in files:
            against = "PyTorch" if name == "fp32" else "ONNX fp32"
            if acc["drop"] is None:
                line = f"max-top1-drop: no labeled validation data to measure {name} drop"
                misses.append((name, line))
            elif acc["drop"] > gates.max_top1_drop:
                line = (
                    f"max-top1-drop: {name} ONNX loses {acc['drop']:.2f} points against "
                    f"{against} > {gates.max_top1_drop:.2f}"
                )
                misses.append((name, line))
    if gates.min_variant_agreement is not None:
        for name, variant in report["variants"].items():
            agree = variant["parity"]["top1_agreement_fp32"]
            if not (isinstance(agree, (int, float)) and agree >= gates.min_variant_agreement):
                shown = f"{agree:.2f}%" if isinstance(agree, (int, float)) else str(agree)
                line = (
                    f"min-variant-agreement: {name} ONNX agrees with ONNX fp32 on {shown} "
                    f"of top-1 predictions < {gates.min_variant_agreement:.2f}%"
                )
                misses.append((name, line))
    if gates.max_latency_ms is not None:
        misses.extend((gates.latency_variant, line) for line in _latency_miss(report, gates))
    return misses


def _latency_miss(report: dict[str, Any], gates: Gates) -> list[str]:
    name = f"student/onnxruntime/{gates.latency_variant}"
    entries = {e["name"]: e for e in (report.get("latency") or {}).get("entries", [])}
    entry = entries.get(name)
    stat = f"{gates.latency_stat}_ms"
    if entry is None:
        return [f"max-latency-ms: {name} was not measured"]
    assert gates.max_latency_ms is not None
    if entry[stat] > gates.max_latency_ms:
        return [
            f"max-latency-ms: {name} batch-1 {gates.latency_stat} {entry[stat]:.3f} ms > "
            f"{gates.max_latency_ms:g} ms ({entry['threads']} threads)"
        ]
    return []
