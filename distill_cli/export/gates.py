"""CI gates: the conditions an export must meet, and one line for each one it misses.

The fp32 parity gate always applies (an ONNX file that computes something else is not an
export). The others are asked for:

- ``--min-top1 P``: every ONNX file written (fp32 and each variant) has top-1 >= P.
- ``--max-top1-drop D``: ONNX fp32 loses <= D points against PyTorch, and each variant <= D
  against ONNX fp32.
- ``--min-variant-agreement A``: each variant (fp16, int8) agrees with ONNX fp32 on the top-1
  class of >= A% of the parity images (labels not needed: a lossy int8 file fails it).
- ``--max-latency-ms M``: the student's ONNX Runtime CPU entry for ``--latency-variant``
  (fp32 by default) has p50 (or ``--latency-stat p90``) <= M. With ``--require-protocol`` the
  figure must also meet the timing protocol (export/protocol.py): a measurement flagged noisy,
  contended, oversubscribed or short is a miss, not a pass (the export retimes it first, up to
  ``RETRIES`` times, see timing.py).

A gate that cannot be measured (accuracy without labels, latency not measured) is a miss: a CI
pipeline must not pass because a number was missing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from distill_cli.errors import DistillError, RunFailed
from distill_cli.export.protocol import MAX_SECONDS
from distill_cli.export.ranges import check_percent, check_range
from distill_cli.export.report import ExportReport, Figure

LATENCY_STATS = ("p50", "p90")
#: The largest `--max-latency-ms`: timing stops after `--max-time`, at most an hour
#: (`protocol.MAX_SECONDS`), so a larger budget is never the one a figure is judged by.
MAX_LATENCY_MS = MAX_SECONDS * 1000


@dataclass
class Gates:
    """The CI conditions asked for (`--min-top1`, `--max-top1-drop`, ...); None: not asked."""

    min_top1: float | None = None
    max_top1_drop: float | None = None
    min_variant_agreement: float | None = None
    max_latency_ms: float | None = None
    latency_stat: str = "p50"
    latency_variant: str = "fp32"
    require_protocol: bool = False

    def validate(self, variants: list[str], latency: bool) -> None:
        """Usage errors (exit 2) before any work: a threshold out of range (the CLI's flags
        check the same bounds; a Python caller does not go through them), or a gate that could
        never be evaluated."""
        check_percent(self.min_top1, "--min-top1")
        check_range(self.max_top1_drop, "--max-top1-drop", 0.0)
        check_range(self.max_latency_ms, "--max-latency-ms", 0.0)
        self._can_fail_and_pass()
        check_percent(self.min_variant_agreement, "--min-variant-agreement")
        if self.min_variant_agreement is not None and not variants:
            raise DistillError(
                "--min-variant-agreement needs a variant to gate",
                "--min-variant-agreement",
                "add --quantize int8 or --precision fp16",
            )
        if self.latency_stat not in LATENCY_STATS:
            raise DistillError(
                f"unknown latency statistic {self.latency_stat!r}", "--latency-stat", "p50 or p90"
            )
        from distill_cli.export.variants import PRECISIONS, QUANTIZATIONS

        if self.latency_variant not in ("fp32", *PRECISIONS, *QUANTIZATIONS):
            raise DistillError(
                f"unknown latency variant {self.latency_variant!r}",
                "--latency-variant",
                "fp32, " + ", ".join((*PRECISIONS, *QUANTIZATIONS)),
            )
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
                raise DistillError(
                    "--max-latency-ms needs the latency measurement",
                    "--no-latency",
                    "drop --no-latency, or drop --max-latency-ms",
                )
        elif self.require_protocol:
            raise DistillError(
                "--require-protocol applies to the latency gate",
                "--require-protocol",
                "add --max-latency-ms MS (the budget it gates), or drop --require-protocol",
            )

    def _can_fail_and_pass(self) -> None:
        """Bars no file can pass or none can fail, which the flags' plain ranges admitted: a
        drop of more than 100 points (top-1 cannot fall further), a budget of 0 ms, and one
        above `MAX_LATENCY_MS` (`1e30` passed every file)."""
        if self.max_top1_drop is not None and self.max_top1_drop > 100:
            raise DistillError(
                f"{self.max_top1_drop:g} points is more than top-1 can drop (100), a gate no "
                "file fails",
                "--max-top1-drop",
                "give points from 0 to 100, e.g. 1",
            )
        if self.max_latency_ms is not None and not 0 < self.max_latency_ms <= MAX_LATENCY_MS:
            raise DistillError(
                f"a budget of {self.max_latency_ms:g} ms "
                + (
                    "is one no file meets"
                    if self.max_latency_ms <= 0
                    else f"is above {MAX_LATENCY_MS:,.0f} ms (an hour a call, the longest "
                    "--max-time times), a gate no file fails"
                ),
                "--max-latency-ms",
                f"give a positive budget up to {MAX_LATENCY_MS:,.0f}, e.g. 20",
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GateFailed(RunFailed):
    """One or more gates missed; `misses` has one line each, `report` the whole report."""

    def __init__(self, misses: list[str], report: ExportReport | None = None) -> None:
        super().__init__("; ".join(misses), None, None)
        self.misses = misses
        self.report = report


def _files(report: ExportReport) -> list[tuple[str, Figure, Figure]]:
    """(name, top-1, drop) of every ONNX file written: fp32 first, then the variants."""
    parity = report.parity
    out = [("fp32", parity.top1_onnx, parity.top1_drop)]
    for name, variant in report.variants.items():
        out.append((name, variant.parity.top1, variant.parity.top1_drop))
    return out


def evaluate(report: ExportReport, gates: Gates) -> list[str]:
    """Every miss, one line each, parity first."""
    return [line for _, line in judge(report, gates)]


def verdicts(report: ExportReport, gates: Gates) -> dict[str, bool]:
    """Which files passed every gate that applies to them: "fp32", then each variant."""
    missed = {name for name, _ in judge(report, gates)}
    return {name: name not in missed for name, _, _ in _files(report)}


def judge(report: ExportReport, gates: Gates) -> list[tuple[str, str]]:
    """(file, line) for every miss: the file ("fp32", "int8", ...) is the one that missed."""
    misses = [("fp32", line) for line in report.parity.misses]
    files = _files(report)
    if gates.min_top1 is not None:
        for name, top1, _ in files:
            if top1 is None:
                line = f"min-top1: no labeled validation data to measure {name} top-1"
                misses.append((name, line))
            elif top1 < gates.min_top1:  # type: ignore[operator]
                line = f"min-top1: {name} ONNX top-1 {top1:.2f}% < {gates.min_top1:.2f}%"
                misses.append((name, line))
    if gates.max_top1_drop is not None:
        for name, _, drop in files:
            against = "PyTorch" if name == "fp32" else "ONNX fp32"
            if drop is None:
                line = f"max-top1-drop: no labeled validation data to measure {name} drop"
                misses.append((name, line))
            elif drop > gates.max_top1_drop:  # type: ignore[operator]
                line = (
                    f"max-top1-drop: {name} ONNX loses {drop:.2f} points against "
                    f"{against} > {gates.max_top1_drop:.2f}"
                )
                misses.append((name, line))
    if gates.min_variant_agreement is not None:
        for name, variant in report.variants.items():
            agree = variant.parity.top1_agreement_fp32
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


def _latency_miss(report: ExportReport, gates: Gates) -> list[str]:
    name = f"student/onnxruntime/{gates.latency_variant}"
    latency = report.latency
    entries = {e.name: e for e in (latency.entries if latency else [])}
    entry = entries.get(name)
    if entry is None:
        return [f"max-latency-ms: {name} was not measured"]
    assert gates.max_latency_ms is not None
    figure = entry.stat_ms(gates.latency_stat)
    if gates.require_protocol and not entry.meets_protocol:
        why = "; ".join(entry.protocol_issues) or "not measured by the protocol"
        return [
            f"max-latency-ms: {name} batch-1 {gates.latency_stat} {figure:.3f} ms does not meet "
            f"the timing protocol ({why}); --require-protocol refuses it - rerun on a quiet "
            "machine or with fewer --threads"
        ]
    if figure > gates.max_latency_ms:
        return [
            f"max-latency-ms: {name} batch-1 {gates.latency_stat} {figure:.3f} ms > "
            f"{gates.max_latency_ms:g} ms ({entry.threads} threads)"
        ]
    return []
