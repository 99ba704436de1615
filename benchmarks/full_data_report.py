"""The full-data benchmark's table and figure, from its results JSON (`benchmarks/full_data.py`).

Kept apart from the runner so the table and the figure can be redrawn from a committed JSON
without training. Prints the markdown table (per student: every method at its lengths, seeds,
gaps to labels and teacher, the tuning grid); writes the figure only where FIGURE names it.
Every number is a test-set top-1 read once at the end of its run; the settings were picked on
the holdout (the `tune` rows), never on these numbers.

    python benchmarks/full_data_report.py benchmarks/results/full_data_cpu.json
    python benchmarks/full_data_report.py RESULTS.json /tmp/figure.png
"""

from __future__ import annotations

import sys
from pathlib import Path
from statistics import mean

FM = "function matching"
#: What every row of a full_data.py results file carries (another script's JSON does not).
ROW_KEYS = ("student", "method", "epochs", "lr", "wd", "seed", "role", "test_top1", "error")


def _chosen(data: dict, student: str, method: str, epochs: int) -> list[dict]:
    """The finished rows of the picked setting at one length, one per seed."""
    cfg = (data.get("picked", {}).get(student) or {}).get(method)
    if cfg is None:
        return []
    rows = [
        r
        for r in data["rows"]
        if (r["student"], r["method"], r["epochs"]) == (student, method, epochs)
        and [r["lr"], r["wd"]] == list(cfg)
        and r["error"] is None
    ]
    return sorted(rows, key=lambda r: r["seed"])


def _mean(rows: list[dict]) -> float | None:
    return mean(r["test_top1"] for r in rows) if rows else None


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.2f}" if signed else f"{value:.2f}%"


def markdown(data: dict) -> str:
    """Per student: every method at its lengths (seeds, mean, spread, gaps), then the tuning."""
    teacher = data.get("teacher")
    lines = []
    if teacher:
        lines.append(
            f"Teacher {teacher['model']} ({teacher['params'] / 1e6:.1f} M params): "
            f"**{_pct(teacher['test_top1'])}** test top-1 "
            f"(holdout {_pct(teacher['holdout_top1'])})."
        )
    models = data.get("models") or {}
    if data.get("tag"):  # a variant: what it changed, so the table describes itself
        sets = " ".join(f"`--set {s}`" for s in models.get("sets", []))
        teacher_sets = " ".join(f"`--teacher-set {s}`" for s in models.get("teacher_sets", []))
        overrides = " ".join(x for x in (sets, teacher_sets) if x) or "none"
        lines.append(
            f"Variant `{data['tag']}`: teacher {models.get('teacher')}, students "
            f"{', '.join(models.get('students', []))}, lengths {models.get('lengths')}, seeds "
            f"{models.get('seeds')}"
            + (f", methods: {', '.join(models['methods'])}" if models.get("methods") else "")
            + f"; overrides: {overrides}."
        )
    lengths = sorted(data.get("lengths") or {r["epochs"] for r in data["rows"]})
    longest = max(lengths, default=0)
    test_images = f"{data['test_images']:,}" if data.get("test_images") else "?"
    students = list(dict.fromkeys(r["student"] for r in data["rows"]))
    for student in students:
        labels = _mean(_chosen(data, student, "labels", longest))
        lines += [
            "",
            f"**{student}** (top-1 on the {test_images} test images, read "
            "once at the end of each run; settings picked on the holdout):",
            "",
            "| method | epochs | lr / wd (on the holdout) | test top-1 by seed | mean (spread) "
            "| vs labels | vs teacher | agreement |",
            "|---|---|---|---|---|---|---|---|",
        ]
        methods = list(dict.fromkeys(r["method"] for r in data["rows"]))
        for method in methods:
            for n in lengths if method == FM else [longest]:
                rows = _chosen(data, student, method, n)
                if not rows:
                    continue
                top = [r["test_top1"] for r in rows]
                spread = f" ({max(top) - min(top):.2f})" if len(top) > 1 else ""
                avg = mean(top)
                agree = "–" if method == "labels" else _pct(mean(r["agreement"] or 0 for r in rows))
                lines.append(
                    f"| {method} | {n} | {rows[0]['lr']:g} / {rows[0]['wd']:g} | "
                    + ", ".join(f"{t:.2f}" for t in top)
                    + f" | {avg:.2f}%{spread} | "
                    + (_pct(avg - labels, True) if labels is not None and n == longest else "–")
                    + f" | {_pct(avg - teacher['test_top1'], True) if teacher else '–'} | "
                    + f"{agree} |"
                )
        tune = [r for r in data["rows"] if r["student"] == student and r["role"] == "tune"]
        if tune:
            parts = [
                f"{r['method']} lr {r['lr']:g} wd {r['wd']:g}: "
                + ("failed" if r["error"] else f"{r['holdout_top1']:.2f}")
                for r in tune
            ]
            lines += ["", f"Grid at {tune[0]['epochs']} epochs, holdout top-1: " + "; ".join(parts)]
    failed = [r for r in data["rows"] if r["error"]]
    if failed:
        lines += ["", "Not finished: " + "; ".join(f"{r['run']} ({r['error']})" for r in failed)]
    return "\n".join(lines)


def figure(data: dict, path: Path) -> None:
    """Figure 4 of the paper, per student: test top-1 against schedule length (log x) for
    function matching, with the teacher and the label-trained student as lines."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    students = list(dict.fromkeys(r["student"] for r in data["rows"]))
    fig = Figure(figsize=(5.5 * max(1, len(students)), 4.2), dpi=120)
    lengths = sorted(data.get("lengths") or {r["epochs"] for r in data["rows"]})
    longest = max(lengths, default=1)
    for i, student in enumerate(students):
        ax = fig.add_subplot(1, max(1, len(students)), i + 1)
        points = [(n, _chosen(data, student, FM, n)) for n in lengths]
        points = [(n, [r["test_top1"] for r in rows]) for n, rows in points if rows]
        if points:
            xs, tops = [n for n, _ in points], [t for _, t in points]
            ys = [mean(t) for t in tops]
            err = [
                [y - min(t) for y, t in zip(ys, tops, strict=True)],
                [max(t) - y for y, t in zip(ys, tops, strict=True)],
            ]
            ax.errorbar(xs, ys, yerr=err, fmt="o-", lw=2.2, color="C3", label=FM, capsize=3)
        labels = _mean(_chosen(data, student, "labels", longest))
        if labels is not None:
            ax.axhline(
                labels, color="C0", ls=":", lw=1.5, label=f"labels, {longest} ep ({labels:.2f}%)"
            )
        for j, method in enumerate(m for m in ("classic KD", "FM, fixed teacher")):
            value = _mean(_chosen(data, student, method, longest))
            if value is not None:
                ax.plot(
                    [longest * 1.06 ** (j + 1)], [value], "sD"[j], color=f"C{j + 1}", label=method
                )
        teacher = data.get("teacher")
        if teacher and teacher.get("test_top1") is not None:
            ax.axhline(
                teacher["test_top1"],
                color="k",
                ls="--",
                lw=1.2,
                label=f"teacher {teacher['model']} ({teacher['test_top1']:.2f}%)",
            )
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(lengths))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("schedule length (epochs of all training images)")
        ax.set_ylabel("student top-1 on the test set (%)")
        ax.set_title(student, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    variant = f"\nvariant {data['tag']}" if data.get("tag") else ""  # its own line: it is long
    fig.suptitle(f"Full data, Fashion-MNIST ({data.get('scale', '?')} scale){variant}", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> None:
    """Redraw the table (stdout) and, when asked, the figure from a results JSON."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchargs import redraw

    redraw(__doc__, "benchmarks/full_data.py", ROW_KEYS, markdown, figure)


if __name__ == "__main__":
    main()
