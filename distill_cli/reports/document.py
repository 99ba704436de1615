"""`distill report RUN`: one page that says how a run went, as report.html and report.md.

The page is assembled once as a list of blocks (headings, tables, figures, code) and rendered
twice (render.py): to Markdown (PNG files beside it: it reads well in a repository or a CI
artifact) and to self-contained HTML (the same PNGs embedded as data URIs: one file to mail or
attach).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill_cli.errors import DistillError
from distill_cli.files import atomic_write, refuse_link
from distill_cli.models.checkpoint import read_sidecar
from distill_cli.models.create import infer_num_classes, model_cost
from distill_cli.recipe.document import recipe_text
from distill_cli.reports import plots
from distill_cli.reports.history import RunHistory, load_run
from distill_cli.reports.render import Block, to_html, to_markdown
from distill_cli.rundir.layout import RunDir


@dataclass(frozen=True)
class ReportResult:
    """The files a report wrote, and the final numbers it shows."""

    html: Path
    markdown: Path
    images: list[Path]
    student_top1: float | None
    agreement_top1: float | None
    teacher_top1: float | None
    notes: list[str] = field(default_factory=list)


def _fmt(value: Any, spec: str = "{:.2f}", unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, (int, float)):
        return spec.format(value) + unit
    return str(value)


def _millions(params: int | None) -> str:
    return "–" if params is None else f"{params / 1e6:.2f} M"


def _costs(history: RunHistory) -> dict[str, dict[str, Any]]:
    """Params / GFLOPs / input per role: from the export report when there is one (measured on
    the exported model), else from the recipe's models built on the meta device."""
    export = history.export or {}
    costs: dict[str, dict[str, Any]] = {}
    if export.get("model"):
        model = export["model"]
        costs["student"] = {
            "gflops": model.get("gflops"),
            "input": model.get("input_size"),
            "params": model.get("params"),
        }
    if export.get("teachers"):
        members = export["teachers"]
        gflops = [t.get("gflops") for t in members]
        costs["teacher"] = {
            "gflops": None if None in gflops else sum(gflops),
            "input": members[0].get("input_size"),
        }
    if len(costs) == 2 or history.recipe.get("student") is None:
        return costs
    from distill_cli.recipe.document import Recipe

    try:
        recipe = Recipe.model_validate(history.recipe)
        best = RunDir(history.path).best
        classes = read_sidecar(best).num_classes if best.is_file() else None
        classes = int(classes or recipe.student.num_classes or 0) or None
        if "student" not in costs and classes:
            cost = model_cost(recipe.student, classes)
            costs["student"] = {
                "gflops": cost.gflops,
                "input": list(cost.input_size),
                "params": cost.params,
            }
        if "teacher" not in costs and recipe.teachers and classes:
            parts = [model_cost(s, infer_num_classes(s, classes)) for s in recipe.teachers]
            gflops = [p.gflops for p in parts]
            costs["teacher"] = {
                "gflops": None if None in gflops else sum(g for g in gflops if g is not None),
                "input": list(parts[0].input_size),
                "params": sum(p.params for p in parts),
            }
    except (DistillError, ValueError) as exc:
        history.notes.append(f"GFLOPs not computed: {str(exc).splitlines()[0]}")
    return costs


def _final_table(history: RunHistory) -> Block:
    """One row per role; the summary's figures first, the recipe's and costs' where it has none
    (a run that has not finished)."""
    summary, final, costs = history.summary, history.final_eval(), _costs(history)
    done_models = {"student": summary.student, "teacher": summary.teacher} if summary else {}

    def row(role: str, top1: Any, agreement: Any) -> list[str]:
        done, cost = done_models.get(role), costs.get(role, {})
        return [
            role,
            (done and done.model) or _recipe_model(history.recipe.get(role)),
            _millions((done and done.params) or cost.get("params")),
            _fmt(cost.get("gflops"), "{:.3f}"),
            _size(cost.get("input")),
            _fmt(top1, unit="%"),
            _fmt(agreement, unit="%"),
        ]

    # top-5 only where the run measured it: more than 5 classes (else it is 100% by definition)
    top5 = final.get("top5")
    rows = []
    if done_models.get("teacher") or history.recipe.get("teacher"):
        rows.append(row("teacher", history.teacher_top1, None))
        if top5 is not None:
            rows[-1].insert(6, "–")
    trained = row("student", final.get("top1"), final.get("agreement_top1"))
    trained[0] = history.trained_role
    if top5 is not None:
        trained.insert(6, _fmt(top5, unit="%"))
    rows.append(trained)
    head = ["", "model", "params", "GFLOPs", "input", "top-1", "agreement"]
    if top5 is not None:
        head.insert(6, "top-5")
    test = summary.test if summary else None
    if test is not None:  # data.holdout: top-1 is the holdout's; the test set read once, at the end
        head[5] = "holdout top-1"
        head.append(f"test top-1 ({test.images:,} images)")
        if len(rows) == 2:
            rows[0].append(_fmt(test.teacher_top1, unit="%"))
        best = _fmt(test.best_top1, unit="%")
        rows[-1].append(f"{_fmt(test.top1, unit='%')} (best checkpoint {best})")
    return ("table", head, rows)


#: The per-class table lists every class up to this many, else the worst ones of the model.
MAX_CLASS_ROWS = 30
WORST_SHOWN = 20


def _int8_drops(history: RunHistory, classes: int) -> list[float | None] | None:
    """The int8 file's per-class top-1 drop against fp32 ONNX, when an export made one."""
    variant = ((history.export or {}).get("variants") or {}).get("int8") or {}
    drops = (variant.get("parity") or {}).get("per_class_top1_drop")
    if isinstance(drops, list) and len(drops) == classes:
        return drops
    return None


def _class_blocks(history: RunHistory, images: dict[str, Path]) -> list[Block]:
    """Per-class top-1 of the teacher and the trained model (and the int8 file's drop), and
    their confusion matrices, from the final evaluation (eval.json)."""
    result = history.class_eval
    if result is None or result.model is None:
        return []
    role, model = result.role, result.model
    teacher = result.teacher.per_class() if result.teacher is not None else None
    mine = model.per_class()
    drops = _int8_drops(history, len(model.classes))
    order = list(range(len(model.classes)))
    note = f"final evaluation, {model.images} validation images"
    if len(order) > MAX_CLASS_ROWS:
        order = sorted(order, key=lambda i: (mine[i] is None, mine[i] or 0.0))[:WORST_SHOWN]
        note += f"; the {WORST_SHOWN} classes the {role} gets most wrong"
    head = ["class", *(["teacher top-1"] if teacher else []), f"{role} top-1"]
    if drops is not None:
        head.append("int8 drop (points)")
    rows = []
    for i in order:
        cells = [model.classes[i]]
        if teacher is not None:
            cells.append(_fmt(teacher[i], unit="%"))
        cells.append(_fmt(mine[i], unit="%"))
        if drops is not None:
            cells.append(_fmt(drops[i], "{:+.2f}"))
        rows.append(cells)
    blocks: list[Block] = [("h2", "Per class"), ("p", note), ("table", head, rows)]
    if "confusion" in images:
        blocks.append(("img", images["confusion"], "confusion matrices, rows normalized"))
    return blocks


def _recipe_model(spec: Any) -> str:
    """The model name(s) a recipe section names: one spec, or an ensemble's list of them."""
    specs = spec if isinstance(spec, list) else [spec]
    names = [s.get("model") for s in specs if isinstance(s, dict) and s.get("model")]
    return "+".join(names) or "–"


def _size(size: Any) -> str:
    return "–" if not size else "x".join(str(v) for v in size)


def _status(history: RunHistory) -> str:
    summary = history.summary
    recipe = history.recipe
    method = (recipe.get("method") or {}).get("name", "?")
    if summary is None:
        steps = [r.get("step", 0) for r in history.records]
        return f"method {method}; not finished (last logged step {max(steps, default=0)})"
    minutes = (summary.wall_time_s or 0) / 60
    return (
        f"method {method}; {summary.epochs} epochs, {summary.steps} steps in "
        f"{minutes:.1f} min on {summary.device} ({summary.precision}); "
        f"best {_fmt(summary.best_score, unit='%')} at epoch {_fmt(summary.best_epoch, '{}')}"
    )


def requested_gates(gates: dict[str, Any]) -> list[str]:
    """The gates an export was asked for (report.json's `gates.requested`), as its flags."""
    asked = gates.get("requested") or {}
    out = ["fp32 parity (always)"]
    for key, flag in (
        ("min_top1", "--min-top1 {:g}%"),
        ("max_top1_drop", "--max-top1-drop {:g}"),
        ("min_variant_agreement", "--min-variant-agreement {:g}%"),
    ):
        if asked.get(key) is not None:
            out.append(flag.format(asked[key]))
    if asked.get("max_latency_ms") is not None:
        out.append(
            f"--max-latency-ms {asked['max_latency_ms']:g} ({asked.get('latency_stat', 'p50')}, "
            f"{asked.get('latency_variant', 'fp32')}"
            + (", --require-protocol)" if asked.get("require_protocol") else ")")
        )
    return out


def _export_blocks(export: dict[str, Any], images: dict[str, Path]) -> list[Block]:
    blocks: list[Block] = [("h2", "Export")]
    parity = export.get("parity") or {}
    inputs = parity.get("inputs") or {}
    blocks.append(
        (
            "p",
            f"parity on {inputs.get('images', '?')} {inputs.get('kind', '')} images "
            f"({inputs.get('source', 'unknown source')}); fp32 tolerance "
            f"{_fmt(parity.get('tolerance'), '{:g}')}; variants are compared with ONNX fp32",
        )
    )
    gates = export.get("gates") or {}
    verdict = gates.get("files") or {}

    def judged(name: str) -> str:  # each file's verdict on every gate that applies to it
        return "-" if name not in verdict else ("pass" if verdict[name] else "FAIL")

    rows = [
        [
            "fp32",
            _fmt(parity.get("top1_onnx"), unit="%"),
            _fmt(parity.get("top1_agreement"), unit="%"),
            _fmt(parity.get("max_abs_diff"), "{:.2e}"),
            "pass" if parity.get("passed") else "FAIL",
            judged("fp32"),
        ]
    ]
    for name, variant in (export.get("variants") or {}).items():
        vp = variant.get("parity") or {}
        rows.append(
            [
                name,
                _fmt(vp.get("top1"), unit="%"),
                _fmt(vp.get("top1_agreement_fp32"), unit="% vs fp32"),
                _fmt(vp.get("max_abs_diff"), "{:.2e}"),
                "n/a (compared with fp32)",
                judged(name),
            ]
        )
    head = ["ONNX file", "top-1", "agreement", "max |diff|", "fp32 parity", "gates"]
    blocks.append(("table", head, rows))
    if gates:
        blocks.append(("p", "gates asked for: " + ", ".join(requested_gates(gates))))
        misses = gates.get("misses") or []
        outcome = "passed" if not misses else "FAILED: " + "; ".join(misses)
        blocks.append(("p", f"gates: {outcome}"))
    entries = (export.get("latency") or {}).get("entries") or []
    if entries:
        lat_rows = [
            [
                e["name"],
                _fmt(e.get("p50_ms"), "{:.3f}"),
                _fmt(e.get("p90_ms"), "{:.3f}"),
                _fmt(e.get("p99_ms"), "{:.3f}"),
                _fmt(e.get("throughput_ips"), "{:.0f}"),
            ]
            for e in entries
        ]
        head = ["runtime", "p50 ms", "p90 ms", "p99 ms", "batch img/s"]
        blocks.append(("table", head, lat_rows))
    if "latency" in images:
        blocks.append(("img", images["latency"], "latency of teacher, student and its variants"))
    return blocks


def build_blocks(history: RunHistory, images: dict[str, Path]) -> list[Block]:
    blocks: list[Block] = [("h1", f"distill report: {history.name}"), ("p", _status(history))]
    role = history.trained_role
    title = "Teacher and student" if role == "student" else "Model"
    blocks += [("h2", title), _final_table(history)]
    if "accuracy" in images:
        blocks.append(("img", images["accuracy"], f"{role} top-1 and agreement per epoch"))
    blocks += _class_blocks(history, images)
    blocks.append(("h2", "Training"))
    speed = history.images_per_s
    if speed is not None:
        blocks.append(("p", f"throughput {speed:,.0f} images/s (mean over the run)"))
    if "training" in images:
        blocks.append(("img", images["training"], "loss, learning rate and throughput"))
    if history.export:
        blocks += _export_blocks(history.export, images)
    blocks += [("h2", "Recipe (resolved)"), ("pre", recipe_text(history.recipe), "yaml")]
    if history.notes:
        blocks += [("h2", "Notes"), *[("p", note) for note in history.notes]]
    return blocks


def write_report(run: str | Path) -> ReportResult:
    """Write report.html, report.md and report_*.png into the run folder."""
    history = load_run(run)
    folder = RunDir(history.path)
    if not folder.is_run:  # a recipe.yaml alone is many projects' folder: not ours to write
        raise DistillError(
            "not a distill run folder (no .distill-run marker or distill checkpoint); distill "
            "writes reports only into its own runs",
            str(folder.path),
            "pass runs/<name>",
        )
    names = ("accuracy", "training", "latency")
    for target in (folder.report_md, folder.report_html, *map(folder.report_image, names)):
        refuse_link(target)  # all checked before anything is written: no half-made report
    images = {
        "accuracy": plots.save(plots.accuracy_figure(history), folder.report_image("accuracy")),
        "training": plots.save(plots.training_figure(history), folder.report_image("training")),
    }
    matrices = plots.confusion_figure(history.class_eval) if history.class_eval else None
    if matrices is not None:
        images["confusion"] = plots.save(matrices, folder.report_image("confusion"))
    latency = plots.latency_figure(history.export) if history.export else None
    if latency is not None:
        images["latency"] = plots.save(latency, folder.report_image("latency"))
    blocks = build_blocks(history, images)
    md_path, html_path = folder.report_md, folder.report_html
    atomic_write(md_path, to_markdown(blocks, folder.path))
    atomic_write(html_path, to_html(blocks, f"distill report: {history.name}"))
    final = history.final_eval()
    return ReportResult(
        html=html_path,
        markdown=md_path,
        images=list(images.values()),
        student_top1=final.get("top1"),
        agreement_top1=final.get("agreement_top1"),
        teacher_top1=history.teacher_top1,
        notes=list(history.notes),
    )
