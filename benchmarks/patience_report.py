"""The patience benchmark's tables and figure, from its results JSON (`benchmarks/patience.py`).

Kept apart from the runner so they can be redrawn from a committed JSON without training.
Prints the markdown tables (every run; the tuning grid and the picks); writes the figure (top-1
against schedule length, the paper's Figure 3) only where FIGURE names it:

    python benchmarks/patience_report.py benchmarks/results/patience.json /tmp/patience.png

Every top-1 in the tables is read on the test set once, at the end of its run; the settings
(the tuning table) and `best` were chosen on the holdout.
"""

from __future__ import annotations

import sys
from pathlib import Path

FM_LABEL = "function matching"
#: What every row of a patience.py results file carries (another script's JSON does not).
ROW_KEYS = ("label", "epochs", "run", "top1", "error")
#: And the file: the table's header and the figure's axis read these.
KEYS = ("teacher", "student", "rows", "subset", "holdout", "test_images", "lengths")


def markdown(result: dict) -> str:
    """The table for docs/benchmarks.md."""
    teacher, student = result["teacher"], result["student"]
    size = "no run of it finished"  # its size is read from a finished run
    if student["params"]:
        ratio = teacher["params"] / student["params"]  # another pair may have a bigger student
        than = f"{ratio:.0f}x smaller" if ratio >= 1 else f"{1 / ratio:.1f}x larger"
        size = f"{student['params'] / 1e6:.2f} M params, {than}"
    lines = [
        f"Teacher {teacher['model']} ({teacher['params'] / 1e6:.2f} M params), "
        f"trained on {teacher['train_images']:,} images: **{teacher['top1']:.2f}%** top-1. "
        f"Student {student['model']} ({size}) on "
        f"{result['subset']:,} images; top-1 on the {result['test_images']:,} test images, read "
        f"once at the end; `best` chosen on the {result['holdout']:,}-image holdout.",
        *_overrides(result.get("models") or {}),
        "",
        "| method | epochs of the subset | lr, wd | test top-1 (final) | test top-1 of best "
        "(holdout epoch) | agreement | KL | time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        cfg = "recipe" if r.get("lr") is None else f"{r['lr']:g}, {r['wd']:g}"
        if r["error"]:
            lines.append(f"| {r['label']} | {r['epochs']} | {cfg} | failed: {r['error']} | | | | |")
            continue
        best = f"{r['best_top1']:.2f}% ({r['best_epoch']})" if r["best_top1"] is not None else "-"
        agree = "-" if r["agreement"] is None else f"{r['agreement']:.2f}%"
        kl = "-" if r["kl"] is None else f"{r['kl']:.3f}"
        lines.append(
            f"| {r['label']} | {r['epochs']} | {cfg} | {r['top1']:.2f}% | {best} | {agree} | "
            f"{kl} | {r['wall_s'] / 60:.1f} min |"
        )
    return "\n".join(lines)


def _overrides(models: dict) -> list[str]:
    """A line naming a rerun's overrides (the models are in the header already)."""
    sets = [f"`--set {s}`" for s in models.get("sets", [])]
    sets += [f"`--teacher-set {s}`" for s in models.get("teacher_sets", [])]
    return ["", "Overrides: " + " ".join(sets) + "."] if sets else []


def figure(result: dict, path: Path) -> None:
    """Top-1 against schedule length (log x), one line per method; the teacher as a line."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    fig = Figure(figsize=(9.5, 4.8), dpi=120)
    ax = fig.add_subplot()
    rows = [r for r in result["rows"] if not r["error"]]
    fm = sorted((r for r in rows if r["label"] == FM_LABEL), key=lambda r: r["epochs"])
    ax.plot(
        [r["epochs"] for r in fm],
        [r["top1"] for r in fm],
        "o-",
        lw=2.2,
        color="C3",
        label=FM_LABEL,
        zorder=5,
    )
    others = [r for r in rows if r["label"] != FM_LABEL]
    colours = ["C0", "C1", "C2", "C4", "C5", "C6", "C7", "C8"]
    for i, r in enumerate(others):
        # side by side at the longest length, so markers with close accuracies stay visible
        x = r["epochs"] * 1.045 ** (i - (len(others) - 1) / 2)
        ax.plot(
            [x],
            [r["top1"]],
            "sD^v<>Xp"[i % 8],
            ms=8,
            color=colours[i % 8],
            ls="none",
            label=r["label"],
        )
    ax.axhline(
        result["teacher"]["top1"],
        color="k",
        ls="--",
        lw=1.2,
        label=f"teacher {result['teacher']['model']} ({result['teacher']['top1']:.2f}%)",
    )
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sorted(result["lengths"])))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(f"schedule length (epochs of the {result['subset']:,}-image subset)")
    ax.set_ylabel("student top-1 on the test set (%)")
    ax.set_title(
        f"Patience on Fashion-MNIST: {result['student']['model']} distilled from "
        f"{result['teacher']['model']}",
        fontsize=11,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path)


def tuning_markdown(result: dict) -> str:
    """The grid every tuned method was tried with, and the pick (the best holdout top-1)."""
    tune = [r for r in result.get("tune", []) if not r["error"]]
    if not tune:
        return ""
    picks = result["picks"]
    lines = [
        f"Tuning at {result['tune_at']} epochs: every tuned method with every grid setting "
        "(weight decay counted as the paper does, x schedule); picked on the holdout's final "
        "top-1. The test column is shown for the record, never used to choose.",
        "",
        "| method | lr | weight decay | holdout top-1 (final) | test top-1 (final) | picked |",
        "|---|---|---|---|---|---|",
    ]
    for r in tune:
        chosen = [r["lr"], r["wd"]] == list(picks.get(r["label"], []))
        lines.append(
            f"| {r['label']} | {r['lr']:g} | {r['wd']:g} | {r['holdout_top1']:.2f}% | "
            f"{r['top1']:.2f}% | {'**yes**' if chosen else ''} |"
        )
    shared = result.get("shares", {})
    if shared:
        lines += ["", "Not tuned, with the settings of the method they change one thing of: "]
        lines[-1] += "; ".join(f"{a} -> {b}'s" for a, b in shared.items()) + "."
    return "\n".join(lines)


def main() -> None:
    """Redraw the tables (stdout) and, when asked, the figure from a results JSON."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchargs import redraw

    def tables(result: dict) -> str:
        return f"{markdown(result)}\n\n{tuning_markdown(result)}"

    redraw(__doc__, "benchmarks/patience.py", ROW_KEYS, tables, figure, KEYS)


if __name__ == "__main__":
    main()
