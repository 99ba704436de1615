"""What an expert expects in the report (issue 23, item 7).

Per-class top-1 and confusion matrices of the teacher and the trained model (stored typed in
the run folder as eval.json), the int8 file's per-class drop, top-5 only above 5 classes, a
latency axis that keeps a fast student readable beside a slow teacher, and the trained model
named for what it is ("model" in a supervised run).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from distill_cli import api
from distill_cli.cli.console import summary_table
from distill_cli.export.parity import Outputs, variant_parity
from distill_cli.reports import plots
from distill_cli.rundir.class_eval import ClassEval, Confusion
from distill_cli.rundir.layout import RunDir
from distill_cli.train.evaluate import confusion
from tests.conftest import fm_body, teacher_body, write_recipe


def test_confusion_counts_and_per_class_top1() -> None:
    logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [5.0, 0, 0], [0, 0, 5.0], [0, 5.0, 0]])
    labels = torch.tensor([0, 1, 1, 2, 2])
    counts = confusion(logits, labels, 3)
    assert counts == [[1, 0, 0], [1, 1, 0], [0, 1, 1]]
    cm = Confusion(["a", "b", "c"], counts)
    assert cm.images == 5 and cm.top1 == 60.0
    assert cm.per_class() == [100.0, 50.0, 50.0]
    again = ClassEval.from_dict(json.loads(json.dumps(ClassEval(7, "model", cm).to_dict())))
    assert again == ClassEval(7, "model", cm)


def _table_text(summary: Any) -> str:
    console = Console(width=200, record=True)
    console.print(summary_table(summary))
    return console.export_text()


def test_a_supervised_run_reports_its_model_per_class(tmp_path: Path) -> None:
    body = teacher_body(tmp_path / "runs", epochs=1)
    summary = api.run(write_recipe(tmp_path, "sup", body))
    per_class = RunDir(summary.run_dir).read_class_eval()
    assert per_class is not None and per_class.role == "model" and per_class.teacher is None
    cm = per_class.model
    assert cm is not None and cm.classes == [f"class_{i}" for i in range(4)]
    assert cm.images == 64  # every validation image, once
    again = RunDir(str(summary.run_dir)).read_class_eval()  # api.md: RunDir("runs/x") too
    assert again is not None and again.model is not None and again.model.counts == cm.counts
    assert cm.top1 is not None and summary.student.top1 is not None
    assert abs(cm.top1 - summary.student.top1) < 1e-3  # the final evaluation's own figure
    assert summary.student.top5 is None  # 4 classes: no top-5
    text = _table_text(summary)
    assert "model " in text and "student" not in text and "top-5" not in text

    report = api.report(summary.run_dir)
    md = report.markdown.read_text()
    assert "## Per class" in md and "| class | model top-1 |" in md
    assert "| model | test_resnet |" in md and "top-5" not in md
    assert "report_confusion.png" in md
    assert any(p.name == "report_confusion.png" for p in report.images)


def test_a_distillation_with_six_classes_shows_top5_and_both_matrices(tmp_path: Path) -> None:
    body = fm_body(tmp_path / "runs", None, epochs=1)
    body["teacher"]["num_classes"] = 6
    body["data"]["synthetic"] = {"num_classes": 6, "train_size": 96, "val_size": 48}
    summary = api.run(write_recipe(tmp_path, "six", body))
    assert summary.student.top5 is not None
    text = _table_text(summary)
    assert "top-5" in text and "student" in text
    per_class = RunDir(summary.run_dir).read_class_eval()
    assert per_class is not None and per_class.role == "student"
    assert per_class.teacher is not None and per_class.teacher.images == 48
    assert summary.teacher is not None and summary.teacher.top1 is not None
    assert per_class.teacher.top1 is not None
    assert abs(per_class.teacher.top1 - summary.teacher.top1) < 1e-3

    # an export with an int8 file: its per-class drop joins the table
    export = RunDir(summary.run_dir).export_report
    export.parent.mkdir(parents=True)
    drops = [0.0, -2.5, 10.0, 0.0, 0.0, 5.0]
    export.write_text(
        json.dumps({"variants": {"int8": {"parity": {"per_class_top1_drop": drops}}}})
    )
    md = api.report(summary.run_dir).markdown.read_text()
    assert "| class | teacher top-1 | student top-1 | int8 drop (points) |" in md
    assert "+10.00" in md and "-2.50" in md
    assert "top-5" in md


def test_variant_parity_gives_the_per_class_drop() -> None:
    labels = np.array([0, 0, 1, 1])
    fp32 = np.array([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]], dtype=np.float32)
    int8 = np.array([[1.0, 0], [1.0, 0], [1.0, 0], [0, 1.0]], dtype=np.float32)
    parity = variant_parity(Outputs(fp32, labels, fp32[:1]), Outputs(int8, labels, int8[:1]))
    assert parity["per_class_top1_drop"] == [0.0, 50.0]
    unlabeled = variant_parity(Outputs(fp32, None, fp32[:1]), Outputs(int8, None, int8[:1]))
    assert unlabeled["per_class_top1_drop"] is None


def _entry(model: str, variant: str, p50: float) -> dict[str, Any]:
    return {
        "name": f"{model}/onnxruntime",
        "model": model,
        "runtime": "onnxruntime",
        "variant": variant,
        "p50_ms": p50,
        "p90_ms": p50 * 1.1,
    }


def test_latency_axis_is_logarithmic_when_the_teacher_dwarfs_the_student() -> None:
    far = {
        "latency": {"entries": [_entry("teacher", "fp32", 40.0), _entry("student", "fp32", 1.0)]}
    }
    near = {
        "latency": {"entries": [_entry("teacher", "fp32", 3.0), _entry("student", "fp32", 1.0)]}
    }
    far_fig, near_fig = plots.latency_figure(far), plots.latency_figure(near)
    assert far_fig is not None and near_fig is not None
    assert far_fig.axes[0].get_xscale() == "log"
    assert near_fig.axes[0].get_xscale() == "linear"
