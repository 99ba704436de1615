"""The report's figures, drawn from a run's history with matplotlib.

Figures are built as `matplotlib.figure.Figure` objects, never through pyplot: no global state,
no display backend, so reports render the same on a laptop, a headless CI runner or a GPU box.
Each function returns its Figure (tests read the plotted data back from it) and `save` writes
it as a PNG. The data a figure shows is exactly the history's records; nothing is smoothed.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from distill_cli.files import atomic_write
from distill_cli.reports.history import RunHistory
from distill_cli.rundir.class_eval import ClassEval

STUDENT, AGREEMENT, TEACHER = "#1f77b4", "#2ca02c", "#d62728"
_VARIANT_COLOURS = {"fp32": "#1f77b4", "fp16": "#9467bd", "int8": "#ff7f0e"}


def _num(value: Any) -> float | None:
    """A plottable number, or None: export reports write NaN and infinities as strings."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


#: The PNG text tag distill's figures carry: `compare --plot` replaces only a file that has it.
SOFTWARE_TAG = b"Software\x00distill"


@contextlib.contextmanager
def _no_glyph_warnings() -> Iterator[None]:
    """Class names in a script the font lacks (狗) are boxes in a PNG and the names themselves
    in report.html/.md: not a matplotlib warning, with its source line, on the console."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Glyph .* missing from font", UserWarning)
        yield


def save(fig: Figure, path: Path) -> Path:
    """The figure as a PNG, written atomically and never through a symlink (host's rule)."""
    buffer = io.BytesIO()
    tag = {"Software": "distill"}
    with _no_glyph_warnings():
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata=tag)
    atomic_write(path, buffer.getvalue())
    return path


def made_by_distill(path: Path) -> bool:
    """A regular PNG file carrying distill's tag (a figure an earlier command wrote)."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return head.startswith(b"\x89PNG") and SOFTWARE_TAG in head


def _percent_axis(ax: Any, values: list[float]) -> None:
    """Zoom on the data (accuracy curves hug the top) but never past 0-100."""
    if values:
        low, high = min(values), max(values)
        pad = max(1.0, (high - low) * 0.08)
        ax.set_ylim(max(0.0, low - pad), min(100.5, high + pad))
    ax.set_ylabel("%")
    ax.grid(alpha=0.3)


def accuracy_figure(history: RunHistory) -> Figure:
    """Student top-1 and teacher agreement per epoch, the teacher as a line (paper, Figure 4)."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    top1 = history.series("eval", "top1", x="epoch")
    agreement = history.series("eval", "agreement_top1", x="epoch")
    values: list[float] = []
    role = history.trained_role
    if top1.y:
        ax.plot(top1.x, top1.y, "o-", color=STUDENT, label=f"{role} top-1", gid="student_top1")
        values += top1.y
    if agreement.y:
        ax.plot(
            agreement.x,
            agreement.y,
            "s--",
            color=AGREEMENT,
            label="agreement with teacher",
            gid="agreement_top1",
        )
        values += agreement.y
    teacher = history.teacher_top1
    if teacher is not None:
        ax.axhline(teacher, color=TEACHER, lw=1.5, label=f"teacher top-1 ({teacher:.2f}%)")
        values.append(teacher)
    for phase in _phase_changes(history):
        if phase.get("epoch"):
            ax.axvline(phase["epoch"], color="grey", ls=":", lw=1)
            ax.annotate(
                str(phase.get("phase", "")),
                (phase["epoch"], 1),
                xycoords=("data", "axes fraction"),
                xytext=(3, -12),
                textcoords="offset points",
                color="grey",
                fontsize=8,
            )
    _percent_axis(ax, values)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"{history.name}: student vs teacher" if teacher is not None else history.name)
    if values:
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no evaluation yet", ha="center", va="center", transform=ax.transAxes)
    return fig


def _phase_changes(history: RunHistory) -> list[dict[str, Any]]:
    """Records where a method switched phase (ESKD to labels, the next stage), once each: a
    method may repeat its phase every epoch or after a resume."""
    changes, current = [], None
    for record in history.kind("phase"):
        if "phase" in record and record["phase"] != current:
            current = record["phase"]
            changes.append(record)
    return changes


def training_figure(history: RunHistory) -> Figure:
    """Loss, learning rate and throughput over steps: is it learning, on schedule, at speed."""
    fig = Figure(figsize=(11, 3.4))
    panels = (
        ("loss", "training loss", "#333333"),
        ("lr", "learning rate", "#8c564b"),
        ("images_per_s", "images / s", "#17becf"),
    )
    for index, (key, title, colour) in enumerate(panels, 1):
        ax = fig.add_subplot(1, 3, index)
        series = history.series("train", key)
        ax.plot(series.x, series.y, color=colour, lw=1.4, gid=key)
        if key == "loss" and series.y and min(series.y) > 0 and max(series.y) / min(series.y) > 20:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    with _no_glyph_warnings():
        fig.tight_layout()
    return fig


def _latency_rows(export: dict[str, Any]) -> list[tuple[str, float, float, str]]:
    """(label, p50, p90, variant) per timed runtime, teacher first, then the student's files."""
    entries = (export.get("latency") or {}).get("entries") or []
    rows = [
        (e["name"].replace("/onnxruntime", " ORT").replace("/pytorch", " PyTorch"), e, e["variant"])
        for e in entries
        if _num(e.get("p50_ms")) is not None
    ]
    rows.sort(key=lambda r: (not r[1]["model"].startswith("teacher"), r[1]["runtime"], r[2]))
    return [
        (label, float(e["p50_ms"]), _num(e.get("p90_ms")) or float(e["p50_ms"]), variant)
        for label, e, variant in rows
    ]


def latency_figure(export: dict[str, Any]) -> Figure | None:
    """Batch-1 latency (p50 bar, p90 whisker) of teacher / student / fp16 / int8, with parity."""
    rows = _latency_rows(export)
    if not rows:
        return None
    fig = Figure(figsize=(7.5, 0.55 * len(rows) + 1.4))
    ax = fig.add_subplot()
    labels = [r[0] for r in rows]
    p50 = [r[1] for r in rows]
    whisker = [max(0.0, r[2] - r[1]) for r in rows]
    colours = [_VARIANT_COLOURS.get(r[3], "#7f7f7f") for r in rows]
    ax.barh(labels, p50, xerr=[[0] * len(rows), whisker], color=colours, capsize=3, gid="p50")
    parity = _parity_labels(export)
    for index, (label, value, p90, variant) in enumerate(rows):
        note = f"{value:.3g} ms"
        if label.startswith("student") and "ORT" in label and variant in parity:
            note += f"  ({parity[variant]})"
        end = max(value, p90)  # right of the whisker, so the figure never sits on it
        ax.annotate(note, (end, index), xytext=(5, -3), textcoords="offset points", fontsize=8)
    ax.invert_yaxis()
    threads = ((export.get("latency") or {}).get("protocol") or {}).get("threads")
    ax.set_title(f"latency, {threads} thread(s)" if threads else "latency", fontsize=10)
    longest = max(max(r[1], r[2]) for r in rows)
    shortest = min(r[1] for r in rows)
    if shortest > 0 and longest / shortest > LOG_LATENCY_SPREAD:
        # a teacher 20x slower than its student would squash the student's bars to slivers
        ax.set_xscale("log")
        ax.set_xlim(shortest / 2, longest * 6)
        ax.set_xlabel("batch-1 latency, ms, log scale (bar: p50, whisker: p90)")
    else:
        ax.set_xlim(0, longest * 1.6)
        ax.set_xlabel("batch-1 latency, ms (bar: p50, whisker: p90)")
    ax.grid(axis="x", alpha=0.3)
    return fig


#: Above this ratio of the slowest to the fastest p50 the latency axis is logarithmic.
LOG_LATENCY_SPREAD = 8.0
#: Confusion matrices are drawn for at most this many classes (beyond, cells are unreadable;
#: the per-class table still lists the worst classes).
MAX_MATRIX_CLASSES = 30


def confusion_figure(class_eval: ClassEval) -> Figure | None:
    """Row-normalized confusion matrices (true class down, predicted across) of the teacher
    and the trained model, side by side, each cell the share of the row's images in percent."""
    panels = [
        (name, cm)
        for name, cm in (("teacher", class_eval.teacher), (class_eval.role, class_eval.model))
        if cm is not None
    ]
    if not panels or len(panels[0][1].classes) > MAX_MATRIX_CLASSES:
        return None
    n = len(panels[0][1].classes)
    side = max(3.2, 0.42 * n + 1.6)
    fig = Figure(figsize=(side * len(panels), side))
    for index, (name, cm) in enumerate(panels, 1):
        ax = fig.add_subplot(1, len(panels), index)
        shares = [[100.0 * v / max(1, sum(row)) for v in row] for row in cm.counts]
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=100, gid=f"confusion_{name}")
        if n <= 12:
            for i, row in enumerate(shares):
                for j, value in enumerate(row):
                    colour = "white" if value > 60 else "black"
                    ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                            color=colour)  # fmt: skip
        ax.set_xticks(range(n), cm.classes, rotation=90, fontsize=7)
        ax.set_yticks(range(n), cm.classes, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true class")
        ax.set_title(f"{name}: top-1 {cm.top1:.2f}%", fontsize=10)
    with _no_glyph_warnings():
        fig.tight_layout()
    return fig


def _parity_labels(export: dict[str, Any]) -> dict[str, str]:
    """Per ONNX variant, how closely it computes what PyTorch (fp32) or fp32 ONNX computes."""
    out = {}
    parity = export.get("parity") or {}
    agreement = _num(parity.get("top1_agreement"))
    if agreement is not None:
        out["fp32"] = f"agrees {agreement:.2f}%"
    for name, variant in (export.get("variants") or {}).items():
        agreement = _num((variant.get("parity") or {}).get("top1_agreement_fp32"))
        if agreement is not None:
            out[name] = f"agrees {agreement:.2f}% with fp32"
    return out


def compare_figure(histories: list[RunHistory], key: str = "top1") -> Figure:
    """Several runs' accuracy curves on one axis (agreement where a run has no labels)."""
    fig = Figure(figsize=(7.5, 4.4))
    ax = fig.add_subplot()
    values: list[float] = []
    teachers: dict[float, str] = {}
    for history in histories:
        series = history.series("eval", key, x="epoch")
        label = history.name
        if not series.y and key == "top1":
            series = history.series("eval", "agreement_top1", x="epoch")
            label += " (agreement)"
        ax.plot(series.x, series.y, "o-", ms=3, label=label, gid=history.name)
        values += series.y
        if history.teacher_top1 is not None:
            teachers.setdefault(round(history.teacher_top1, 2), history.name)
    for value in teachers:
        ax.axhline(value, color=TEACHER, lw=1, ls="--")
        values.append(value)
    if teachers:
        ax.plot([], [], color=TEACHER, lw=1, ls="--", label="teacher top-1")
    _percent_axis(ax, values)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("student top-1 by run" if key == "top1" else f"{key} by run")
    ax.legend(fontsize=8, loc="lower right")
    return fig
