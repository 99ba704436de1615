"""int8 users can rely on, and latency gates that refuse disturbed figures.

Every calibration method offered quantizes; the options that decide a MobileNet's int8 accuracy
(per-channel, symmetric ranges, nodes kept in float) reach ONNX Runtime and show in the file;
calibration images are class-balanced; fp16 on the CPU provider says it is for GPUs;
`--require-protocol` turns a contended latency figure into a miss (after retiming it); the HTML
report shows each file's gate verdict and the gates asked for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
import pytest
import torch

from distill_cli import api
from distill_cli.errors import DistillError
from distill_cli.export import timing
from distill_cli.export.gates import Gates, evaluate
from distill_cli.export.options import ExportOptions
from distill_cli.export.report import ExportReport
from distill_cli.export.variants import FP16_CPU_HINT, Int8Spec

TINY: dict[str, Any] = {
    "input_size": 32,
    "num_classes": 10,
    "latency": False,
    "teacher": False,
    "images": 16,
    "calib_images": 16,
    "simplify": False,
}


def _export(out: Path, **options: Any) -> dict[str, Any]:
    api.export("test_resnet", out=out, quantize="int8", **TINY, **options)
    return json.loads((out / "report.json").read_text())


def _float_fed(model: onnx.ModelProto, node_name: str) -> bool:
    """True when no input of `node_name` comes out of a DequantizeLinear (left in float)."""
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    node = next(n for n in model.graph.node if n.name == node_name)
    return all(producers.get(i) != "DequantizeLinear" for i in node.input)


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_every_calibration_method_quantizes(tmp_path: Path, method: str) -> None:
    report = _export(tmp_path, calib_method=method)
    int8 = report["variants"]["int8"]
    assert int8["calibration"]["method"] == method and int8["calibration"]["images"] == 16
    assert int8["options"]["calib_method"] == method
    model = onnx.load(int8["path"])
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model.graph.node}
    assert 0 <= int8["parity"]["top1_agreement_fp32"] <= 100


def test_int8_options_reach_the_quantizer(tmp_path: Path) -> None:
    report = _export(
        tmp_path,
        calib_method="percentile",
        per_channel=False,
        act_symmetric=True,
        keep_fp32=("first", "last"),
        precision="fp16",
    )
    int8 = report["variants"]["int8"]
    assert int8["options"] == {
        "calib_method": "percentile",
        "per_channel": False,
        "act_symmetric": True,
        "weight_symmetric": True,
        "keep_fp32": ["first", "last"],
    }
    model = onnx.load(int8["path"])
    first, last = int8["nodes_kept_fp32"]
    ops = {n.name: n.op_type for n in model.graph.node}
    assert ops[first] == "Conv" and ops[last] in ("Gemm", "MatMul")
    assert _float_fed(model, first) and _float_fed(model, last)
    others = [n.name for n in model.graph.node if n.op_type == "Conv" and n.name != first]
    assert others and not _float_fed(model, others[0])  # the rest is quantized
    scales = [t for t in model.graph.initializer if t.name.endswith("_scale") and t.dims]
    assert not any(d > 1 for t in scales for d in t.dims)  # per-tensor: one scale per weight
    # fp16 on a machine without CUDA: the file is made, with the hint that it is for GPUs
    assert FP16_CPU_HINT in report["source"]["notes"]


def test_bad_int8_options_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match="--calib-method"):
        ExportOptions.from_flat("test_resnet", calib_method="kl")
    with pytest.raises(TypeError, match="calib_methd"):
        ExportOptions.from_flat("test_resnet", calib_methd="minmax")
    assert Int8Spec(keep_fp32=("first,last", "first")).keep_fp32 == ("first", "last")
    with pytest.raises(DistillError, match="--per-tensor"):  # ORT would silently ignore it
        Int8Spec(weight_symmetric=False)
    assert not Int8Spec(per_channel=False, weight_symmetric=False).weight_symmetric
    with pytest.raises(DistillError, match="no node named 'conv99'") as info:
        _export(tmp_path, keep_fp32=("conv99",))
    assert "--keep-fp32" in str(info.value)


def test_calibration_images_are_class_balanced() -> None:
    from distill_cli.data.sources import ImageSet
    from distill_cli.export.inputs import InputSet
    from distill_cli.models.view import ModelInfo

    labels = torch.tensor([0] * 90 + [1] * 6 + [2] * 4)  # a skewed training split
    pixels = torch.zeros(100, 3, 8, 8, dtype=torch.uint8)
    images = ImageSet("skewed", ["a", "b", "c"], labels, pixels)
    info = ModelInfo("m", 3, 3, (8, 8), (0.5,) * 3, (0.5,) * 3, 1.0)
    balanced = InputSet(info, images, 12, seed=2, balanced=True, purpose="training")
    assert balanced.images is not None and balanced.images.labels is not None
    assert torch.bincount(balanced.images.labels).tolist() == [4, 4, 4]
    plain = InputSet(info, images, 12, seed=2)
    assert plain.images is not None and plain.images.labels is not None
    assert torch.bincount(plain.images.labels, minlength=3)[0] > 4  # what balancing avoids
    # a small photo folder has fewer training images than the calibration asks for: all of
    # them calibrate (it was refused as "data.subset (256) is larger than the training data")
    whole = InputSet(info, images, 256, seed=2, balanced=True, purpose="training")
    assert whole.count == 100 and whole.images is not None and len(whole.images) == 100


def _latency_report(meets: bool) -> ExportReport:
    entry = {
        "name": "student/onnxruntime/fp32",
        "p50_ms": 2.0,
        "p90_ms": 2.1,
        "threads": 2,
        "meets_protocol": meets,
        "protocol_issues": [] if meets else ["contended: other processes used 1.9 of 2 cores"],
    }
    return ExportReport(
        {
            "parity": {"misses": [], "top1_onnx": 90.0, "top1_drop": 0.0},
            "variants": {},
            "latency": {"entries": [entry]},
        }
    )


def test_require_protocol_refuses_a_contended_latency_figure() -> None:
    gate = Gates(max_latency_ms=5)
    strict = Gates(max_latency_ms=5, require_protocol=True)
    assert evaluate(_latency_report(False), gate) == []  # fast enough, but disturbed: passes
    (miss,) = evaluate(_latency_report(False), strict)
    assert miss.startswith("max-latency-ms: student/onnxruntime/fp32") and "contended" in miss
    assert evaluate(_latency_report(True), strict) == []
    with pytest.raises(DistillError, match="--require-protocol"):
        Gates(require_protocol=True).validate([], True)


def test_require_protocol_retimes_the_gated_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    disturbed = {
        "name": "student/onnxruntime/fp32",
        "meets_protocol": False,
        "protocol_issues": ["contended: load average 9.0 on 2 cores"],
    }
    quiet = {"name": "student/onnxruntime/fp32", "meets_protocol": True, "protocol_issues": []}
    calls: list[str] = []

    def again(name: str, *args: Any) -> dict[str, Any]:
        calls.append(name)
        return dict(quiet)

    monkeypatch.setattr(timing.lat, "ort_entry", again)

    class Info:
        in_chans, input_size = 3, (32, 32)

    class Student:
        info = Info()

    entries = [dict(disturbed)]
    files = {"fp32": Path("model.onnx")}
    plan = timing.lat.TimingPlan(threads=1)
    student: Any = Student()
    retries = timing._retime(entries, "fp32", student, files, plan, lambda _: None)
    assert calls == ["student/onnxruntime/fp32"]  # once: the second attempt met the protocol
    assert entries[0]["meets_protocol"] is True and entries[0]["variant"] == "fp32"
    assert retries == [
        {"attempt": 1, "entry": "student/onnxruntime/fp32", "issues": disturbed["protocol_issues"]}
    ]


def test_the_report_shows_each_files_gate_verdict_and_the_gates_asked_for() -> None:
    from distill_cli.reports.document import _export_blocks

    export = {
        "parity": {"passed": True, "top1_onnx": 90.0, "inputs": {"images": 16}},
        "variants": {"int8": {"parity": {"top1": 80.0, "top1_agreement_fp32": 85.0}}},
        "gates": {
            "requested": {
                "min_top1": 85.0,
                "max_top1_drop": None,
                "min_variant_agreement": None,
                "max_latency_ms": 5.0,
                "latency_stat": "p50",
                "latency_variant": "fp32",
                "require_protocol": True,
            },
            "passed": False,
            "files": {"fp32": True, "int8": False},
            "misses": ["min-top1: int8 ONNX top-1 80.00% < 85.00%"],
        },
    }
    blocks = _export_blocks(export, {})
    (table,) = [b for b in blocks if b[0] == "table"]
    head, rows = table[1], table[2]
    verdicts = {row[0]: row[head.index("gates")] for row in rows}
    assert verdicts == {"fp32": "pass", "int8": "FAIL"}  # not "-" for the file that failed
    text = " ".join(str(b[1]) for b in blocks if b[0] == "p")
    assert "--min-top1 85%" in text and "--max-latency-ms 5 (p50, fp32, --require-protocol)" in text
    assert "FAILED: min-top1: int8" in text


def test_export_cli_has_the_int8_and_protocol_flags() -> None:
    from typer.main import get_command

    from distill_cli.cli.app import app

    params = get_command(app).commands["export"].params  # type: ignore[attr-defined]
    known = {opt for p in params for opt in (*p.opts, *p.secondary_opts)}
    assert {
        "--calib-method",
        "--per-channel",
        "--per-tensor",
        "--act-symmetric",
        "--weight-asymmetric",
        "--keep-fp32",
        "--require-protocol",
    } <= known


def test_entropy_calibration_is_not_minmax_in_disguise(tmp_path: Path) -> None:
    """quantize_static's own entropy settings (128 bins, 128 levels) leave one threshold, the
    min/max; distill's entropy searches a 2048-bin histogram, so its ranges differ."""
    from onnx import numpy_helper

    def scales(report: dict[str, Any]) -> dict[str, Any]:
        model = onnx.load(report["variants"]["int8"]["path"])
        return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}

    minmax = scales(_export(tmp_path / "minmax", calib_method="minmax"))
    entropy = scales(_export(tmp_path / "entropy", calib_method="entropy"))
    activation = [k for k in minmax if k.endswith("_scale") and minmax[k].ndim == 0]
    assert activation and any(
        k in entropy and float(entropy[k]) != float(minmax[k]) for k in activation
    )


def test_entropy_threshold_search_is_onnxruntimes_own() -> None:
    """distill's vectorized threshold search (export/entropy.py) picks the very window ORT's
    Python loops pick: on a signed and a ReLU-like histogram, each merged from two batches of
    different ranges (the histogram grows, as it does over a calibration set)."""
    import numpy as np
    from onnxruntime.quantization.calibrate import HistogramCollector

    from distill_cli.export.entropy import entropy_threshold, has_entropy_search
    from distill_cli.export.variants import ENTROPY_BINS, ENTROPY_LEVELS

    rng = np.random.default_rng(0)
    for shift, relu in ((0.5, False), (0.0, True)):
        data = (rng.standard_normal(4000) * 3 + shift).astype(np.float32)
        data = np.maximum(data, 0) if relu else data
        collector = HistogramCollector("entropy", True, ENTROPY_BINS, ENTROPY_LEVELS, 0.99, "same")
        collector.collect({"t": [data]})
        collector.collect({"t": [data * 1.7]})
        histogram = collector.histogram_dict["t"]
        assert has_entropy_search(collector)  # this onnxruntime's search is the one replaced
        ours = entropy_threshold(histogram, ENTROPY_LEVELS)
        theirs = collector.get_entropy_threshold(histogram, ENTROPY_LEVELS)
        assert ours == theirs and ours[0].dtype == theirs[0].dtype
        assert theirs != (histogram[2], histogram[3])  # a window inside, not the min/max
    assert not has_entropy_search(object())  # another version's collector keeps its own


def test_int8_flags_without_an_int8_file_are_named_not_ignored() -> None:
    """`--calib-method entropy` without `--quantize int8` was ignored without a word; it is a
    note (scripts pass `--calib-images` on every export), and a flag left at its default or an
    int8 file asked for says nothing."""
    from typer.main import get_command

    from distill_cli.cli.app import app
    from distill_cli.cli.export import unused_int8_flags

    command = get_command(app).commands["export"]  # type: ignore[attr-defined]

    def unused(*argv: str, variants: tuple[str, ...] = ()) -> list[str]:
        ctx = command.make_context("export", ["runs/x", *argv])
        return unused_int8_flags(ctx, list(variants))

    assert unused("--calib-method", "entropy", "--per-tensor") == [
        "--calib-method",
        "--per-channel/--per-tensor",
    ]
    assert unused("--calib-images", "32", variants=("int8",)) == []
    assert unused("--precision", "fp16") == []
