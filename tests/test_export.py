"""`distill export` and `distill bench latency` as CI drives them: files, report, exit codes.

One tiny function-matching run is exported once per module (fp16 + int8, shortened latency
protocol) and most tests read what that export left behind; the failure paths re-use its ONNX
file through `--onnx` so they cost no second export.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from rich.console import Console

from distill_cli import api
from distill_cli.cli.console_export import bench_view
from distill_cli.errors import DistillError
from distill_cli.export import ExportReport, GateFailed, Gates
from distill_cli.export import onnx_export as ox
from distill_cli.export.gates import evaluate
from distill_cli.export.latency import TimingPlan, time_fn
from tests.conftest import CLI, fm_body, write_recipe
from tests.test_cli import distill

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--warmup", "2", "--runs", "5", "--min-time", "0", "--batch", "4", "--threads", "1"]
FAST_API: dict[str, Any] = {"warmup": 2, "runs": 5, "min_time_s": 0, "batch": 4, "threads": 1}


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def student_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A function-matching run (test_resnet teacher -> test_efficientnet student)."""
    folder = tmp_path_factory.mktemp("export-run")
    body = fm_body(folder / "runs", None, epochs=1)  # a random teacher is enough to time one
    body["data"]["synthetic"]["val_size"] = 96  # 64 + a remainder batch of 32
    summary = api.run(write_recipe(folder, "fm", body))
    return Path(summary.run_dir)


@pytest.fixture(scope="module")
def exported(student_run: Path) -> dict[str, Any]:
    """The run exported through the CLI with both variants and passing gates."""
    result = distill(
        "export",
        str(student_run),
        "--precision",
        "fp16",
        "--quantize",
        "int8",
        "--calib-images",
        "64",
        "--min-top1",
        "0",
        "--max-top1-drop",
        "100",
        "--max-latency-ms",
        "10000",
        "--json",
        *FAST,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def key_shape(value: Any, path: str = "") -> dict[str, Any]:
    """The key structure of a JSON value: every dict's keys in order, by path ("." joins keys,
    "[]" stands for every element of a list of dicts, whose distinct key lists are kept)."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        out[path] = list(value)
        for key, item in value.items():
            out.update(key_shape(item, f"{path}.{key}"))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        shapes: list[Any] = []
        for item in value:
            for sub, keys in key_shape(item, f"{path}[]").items():
                if [sub, keys] not in shapes:
                    shapes.append([sub, keys])
        out[f"{path}[]"] = shapes
    return out


def test_report_json_keeps_its_keys(exported: dict[str, Any], student_run: Path) -> None:
    """report.json is a contract with pipelines: its keys (and their order) are those of
    tests/data/export_report_keys.json, recorded from an export of this same run before the
    report became a typed `ExportReport`. A new key is a deliberate change to that file."""
    golden = json.loads((ROOT / "tests" / "data" / "export_report_keys.json").read_text())
    written = json.loads((student_run / "export" / "report.json").read_text())
    assert written == exported
    assert key_shape(exported) == golden


def test_export_of_a_trained_student_passes_the_parity_gate(
    exported: dict[str, Any], student_run: Path
) -> None:
    parity = exported["parity"]
    assert parity["passed"] and parity["misses"] == []
    assert parity["max_abs_diff"] <= 1e-4 and parity["batch1_max_abs_diff"] <= 1e-4
    assert parity["top1_agreement"] == 100.0
    assert parity["inputs"] == {
        "kind": "validation",
        "images": 96,
        "source": "synthetic/val",
        "labeled": True,
    }
    assert parity["top1_onnx"] == parity["top1_pytorch"] and parity["top1_drop"] == 0.0
    export_dir = student_run / "export"  # the default --out
    assert Path(exported["files"]["onnx"]) == export_dir / "model.onnx"
    assert json.loads((export_dir / "report.json").read_text())["parity"] == parity
    assert exported["gates"] == {
        "requested": {
            "min_top1": 0.0,
            "max_top1_drop": 100.0,
            "min_variant_agreement": None,
            "max_latency_ms": 10000.0,
            "latency_stat": "p50",
            "latency_variant": "fp32",
            "require_protocol": False,
        },
        "passed": True,
        "files": {"fp32": True, "fp16": True, "int8": True},
        "misses": [],
    }


def test_report_has_the_documented_keys(exported: dict[str, Any]) -> None:
    for key in ("model", "parity", "variants", "latency", "gates", "source", "teachers", "files"):
        assert key in exported
    model = exported["model"]
    assert model["name"] == "test_efficientnet" and model["input_size"] == [24, 24]
    assert model["params"] > 0 and model["gflops"] > 0
    assert model["onnx"]["exporter"]["used"] in ("dynamo", "torchscript")
    assert model["onnx"]["exporter"]["requested"] == "dynamo"
    assert model["onnx"]["opset"] == 18
    latency = exported["latency"]
    assert latency["environment"]["threads"] == 1
    assert latency["environment"]["versions"]["onnxruntime"]
    assert latency["environment"]["cpu"]
    names = {e["name"] for e in latency["entries"]}
    assert names == {
        "student/pytorch",
        "student/onnxruntime/fp32",
        "student/onnxruntime/fp16",
        "student/onnxruntime/int8",
        "teacher/pytorch",
        "teacher/onnxruntime/fp32",
    }
    for entry in latency["entries"]:
        for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput_ips"):
            assert entry[key] > 0, (entry["name"], key)
        assert entry["p50_ms"] <= entry["p90_ms"] <= entry["p99_ms"]
        assert entry["runs"] >= 5 and entry["warmup"] == 2 and entry["threads"] == 1
        assert entry["meets_protocol"] is False  # the shortened protocol says so
        assert entry["protocol_issues"][0].startswith("short: 2 warm-up")
        if entry["runtime"] == "onnxruntime":
            assert entry["session_create_ms"] > 0 and entry["provider"] == "CPUExecutionProvider"
    assert "onnx_fp32_vs_pytorch" in latency["speedup"]
    assert "student_onnx_fp32_vs_teacher_pytorch" in latency["speedup"]
    (teacher,) = exported["teachers"]
    assert teacher["name"] == "test_resnet" and teacher["params"] > exported["model"]["params"]


def test_onnx_file_carries_its_metadata_and_a_dynamic_batch(
    exported: dict[str, Any], student_run: Path
) -> None:
    model = onnx.load(exported["files"]["onnx"])
    meta = {p.key: p.value for p in model.metadata_props}
    ckpt = student_run / "checkpoints" / "best.safetensors"
    sidecar = json.loads(ckpt.with_suffix(".json").read_text())
    assert meta["distill.model"] == "test_efficientnet"
    assert json.loads(meta["distill.input_size"]) == [24, 24]
    assert json.loads(meta["distill.mean"]) == pytest.approx(sidecar["mean"])
    assert json.loads(meta["distill.std"]) == pytest.approx(sidecar["std"])
    assert json.loads(meta["distill.class_names"]) == sidecar["class_names"]
    assert meta["distill.checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert meta["distill.exporter"] == exported["model"]["onnx"]["exporter"]["used"]
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value
    onnx.checker.check_model(model, full_check=True)


def test_int8_and_fp16_variants_are_produced_and_checked(exported: dict[str, Any]) -> None:
    fp32_bytes = exported["model"]["onnx"]["bytes"]
    fp16, int8 = exported["variants"]["fp16"], exported["variants"]["int8"]

    model16 = onnx.load(fp16["path"])
    io_types = [v.type.tensor_type.elem_type for v in [*model16.graph.input, *model16.graph.output]]
    assert io_types == [onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT]  # fp32 in, fp32 out
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model16.graph.initializer)
    assert fp16["bytes"] < fp32_bytes

    model8 = onnx.load(int8["path"])
    ops = {n.op_type for n in model8.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    per_channel = [
        t
        for t in model8.graph.initializer
        if t.name.endswith("_scale") and len(t.dims) == 1 and t.dims[0] > 1
    ]
    assert per_channel, "weights should have one scale per output channel"
    assert int8["bytes"] < fp32_bytes
    assert int8["preprocess"]["applied"] is True
    assert int8["calibration"]["images"] == 64 and "training" in int8["calibration"]["source"]

    for variant in (fp16, int8):
        parity = variant["parity"]
        assert 0 <= parity["top1_agreement_fp32"] <= 100
        assert parity["top1"] is not None and parity["top1_fp32"] is not None
        assert parity["top1_drop"] == pytest.approx(parity["top1_fp32"] - parity["top1"])
    assert fp16["parity"]["max_abs_diff"] < 1e-2  # fp16 rounding, not a different model
    assert fp16["parity"]["max_abs_diff"] > 0  # ... but really fp16


class _Upsample(torch.nn.Module):
    """A resize by a scale factor: its Resize reads a float32 `scales` weight."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.up = torch.nn.Upsample(scale_factor=2, mode="bilinear")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.conv(x)).mean((2, 3))


def test_fp16_of_an_unsimplified_graph_with_a_resize_loads_and_matches(tmp_path: Path) -> None:
    """`--no-simplify --precision fp16` on a model that upsamples (EfficientFormer-V2): the
    dynamo graph types its weights in value_info, the converter turned the Resize scales' entry
    to float16 and kept the weight float32, and the file failed to load."""
    import onnxruntime as ort

    from distill_cli.export.variants import make_fp16

    ox.export_onnx(_Upsample().eval(), (3, 16, 16), tmp_path / "model.onnx")
    make_fp16(tmp_path / "model.onnx", tmp_path / "model.fp16.onnx")
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    outs = [
        ort.InferenceSession(str(tmp_path / name), providers=["CPUExecutionProvider"]).run(
            None, {ox.INPUT_NAME: x}
        )[0]
        for name in ("model.onnx", "model.fp16.onnx")
    ]
    assert np.abs(outs[0] - outs[1]).max() < 1e-2


def test_a_converter_making_a_file_that_fails_to_load_is_work_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our converter's broken output is not the user's bad input: exit 1, the converter named,
    not "is the file complete? re-export it"."""
    from distill_cli.errors import RunFailed
    from distill_cli.export import variants

    ox.export_onnx(_Upsample().eval(), (3, 16, 16), tmp_path / "model.onnx")
    monkeypatch.setattr(variants, "_drop_initializer_value_info", lambda model: None)
    with pytest.raises(RunFailed) as info:
        variants.make_fp16(tmp_path / "model.onnx", tmp_path / "model.fp16.onnx")
    assert info.value.code == 1
    assert "the fp16 converter" in str(info.value) and "re-export" not in str(info.value)
    assert not (tmp_path / "model.fp16.onnx").exists()  # not left where a shipped model goes


def test_an_int8_file_that_fails_to_load_never_replaces_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quantizer's file is checked before it is written over model.int8.onnx: a failing
    one (exit 1) leaves the previous export's file, not one that does not load."""
    from distill_cli.errors import RunFailed
    from distill_cli.export import variants

    ox.export_onnx(_Upsample().eval(), (3, 16, 16), tmp_path / "model.onnx")
    (tmp_path / "model.int8.onnx").write_bytes(b"the previous export's int8 model")
    real = variants.check_onnx

    def refuse(path: Path, **kw: Any) -> None:
        real(path, **kw)  # it loads; the test makes it fail as a broken quantizer's would
        raise RunFailed("the int8 quantizer made a file that fails to load", str(path))

    monkeypatch.setattr(variants, "check_onnx", refuse)
    batches = iter([np.zeros((2, 3, 16, 16), np.float32)])
    with pytest.raises(RunFailed):
        variants.make_int8(tmp_path / "model.onnx", tmp_path / "model.int8.onnx", batches)
    assert (tmp_path / "model.int8.onnx").read_bytes() == b"the previous export's int8 model"


def _corrupt(src: Path, dst: Path) -> None:
    """Flip the sign of the classifier's weights: a file that loads and runs, but is wrong.

    The classifier, because with random weights most of a timm ResNet is dead code (the last
    norm of each residual block starts at zero), and corrupting a dead weight changes nothing.
    """
    model = onnx.load(str(src))
    inits = {t.name: t for t in model.graph.initializer}
    (last,) = [n for n in model.graph.node if model.graph.output[0].name in n.output]
    init = max((inits[i] for i in last.input if i in inits), key=lambda t: int(np.prod(t.dims)))
    values = -numpy_helper.to_array(init)
    init.CopyFrom(numpy_helper.from_array(values, init.name))
    onnx.save(model, str(dst))


def test_a_broken_export_fails_the_parity_gate(
    exported: dict[str, Any], student_run: Path, tmp_path: Path, cli: CLI
) -> None:
    broken = tmp_path / "broken.onnx"
    _corrupt(Path(exported["files"]["onnx"]), broken)
    result = cli(
        "export", str(student_run), "--onnx", str(broken), "--out", str(tmp_path / "out"),
        "--no-latency",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    lines = [line for line in error_lines(result) if line.startswith("error: ")]
    assert lines[0].startswith("error: parity: ") and "logits outside" in lines[0], lines
    assert "max abs diff" in lines[0] and "max rel diff" in lines[0], lines
    assert all(line.startswith("error: parity: ") for line in lines)  # maybe agreement too
    for word in ("ONNX vs PyTorch", "max |diff|", "FAIL", "gates missed", "report.json"):
        assert word in result.stdout, word  # the table still shows what was measured
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["parity"]["passed"] is False and report["parity"]["max_abs_diff"] > 1e-4
    assert report["parity"]["checkpoint_sha256_matches"] is True  # same weights, broken file


def test_gates_trip_with_one_line_per_miss(
    exported: dict[str, Any], student_run: Path, tmp_path: Path, cli: CLI
) -> None:
    result = cli(
        "export", str(student_run), "--onnx", exported["files"]["onnx"],
        "--out", str(tmp_path / "out"), "--quantize", "int8", "--calib-images", "32",
        "--min-top1", "100", "--max-latency-ms", "0.000001", "--latency-stat", "p90",
        "--latency-variant", "int8", "--no-teacher", "--json", *FAST,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    lines = error_lines(result)
    assert len(lines) == 3, lines
    assert all(line.startswith("error: ") for line in lines)
    assert "min-top1: fp32 ONNX top-1" in lines[0] and "< 100.00%" in lines[0]  # 1 epoch: far
    assert "min-top1: int8 ONNX top-1" in lines[1]
    assert "max-latency-ms: student/onnxruntime/int8 batch-1 p90" in lines[2]
    report = json.loads(result.stdout)  # --json still prints the report for the pipeline
    assert report["gates"]["passed"] is False and len(report["gates"]["misses"]) == 3


def test_gates_that_cannot_be_measured_are_misses(tmp_path: Path, cli: CLI) -> None:
    result = cli(
        "export", "test_resnet", "--input-size", "32", "--num-classes", "5",
        "--out", str(tmp_path), "--exporter", "torchscript", "--no-latency", "-q",
        "--min-top1", "50", "--max-top1-drop", "1",
    )  # fmt: skip
    assert result.returncode == 1
    lines = error_lines(result)
    assert lines == [
        "error: min-top1: no labeled validation data to measure fp32 top-1",
        "error: max-top1-drop: no labeled validation data to measure fp32 drop",
    ]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["parity"]["passed"] and report["parity"]["inputs"]["kind"] == "random"
    assert report["model"]["onnx"]["exporter"]["used"] == "torchscript"


def test_usage_errors_are_one_line_with_exit_code_2(tmp_path: Path, cli: CLI) -> None:
    result = cli(
        "export", "test_resnet", "--max-latency-ms", "5", "--latency-variant", "int8", cwd=tmp_path
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "add --quantize int8" in lines[0]
    assert not list(tmp_path.iterdir())  # refused before any work


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"max_latency_ms": 5, "latency": False}, "needs the latency measurement"),
        ({"max_latency_ms": 5, "latency_stat": "p95"}, "unknown latency statistic"),
        ({"exporter": "onnxmagic"}, "unknown exporter"),
        ({"quantize": "int4"}, "unknown quantization"),
        ({"precision": "bf16"}, "unknown precision"),
        ({"tolerance": 0}, "must be positive"),
        ({"atol": -1.0}, "must be positive"),
        ({"rtol": float("nan")}, "relative tolerance"),
    ],
    ids=["latency-off", "stat", "exporter", "quantize", "precision", "tolerance", "atol", "rtol"],
)
def test_bad_options_are_refused_before_any_work(
    options: dict[str, Any], needle: str, tmp_path: Path
) -> None:
    with pytest.raises(DistillError, match=needle) as info:
        api.export("test_resnet", out=tmp_path / "out", **options)
    assert info.value.code == 2 and not (tmp_path / "out").exists()


def test_bench_latency_of_an_onnx_file_and_a_checkpoint(
    exported: dict[str, Any], student_run: Path, cli: CLI
) -> None:
    onnx_result = cli("bench", "latency", exported["files"]["onnx"], "--json", *FAST)
    assert onnx_result.returncode == 0, onnx_result.stderr
    bench = json.loads(onnx_result.stdout)
    (entry,) = bench["latency"]["entries"]
    assert entry["name"] == "onnxruntime" and entry["session_create_ms"] > 0
    assert 0 < entry["p50_ms"] <= entry["p90_ms"] <= entry["p99_ms"]
    assert bench["model"]["name"] == "test_efficientnet"
    assert bench["model"]["input_size"] == [24, 24]  # from the file's metadata
    assert bench["model"]["params"] == exported["model"]["params"]
    assert bench["model"]["gflops"] == pytest.approx(exported["model"]["gflops"])

    ckpt = student_run / "checkpoints" / "best.safetensors"
    result = api.bench_latency(ckpt, exporter="torchscript", **FAST_API)
    assert [e.name for e in result.latency.entries] == ["pytorch", "onnxruntime"]
    assert result.latency.speedup["onnx_vs_pytorch"] > 0
    assert result.latency_of("onnxruntime").p50_ms > 0 and result.model.params
    # the same latency block as an export's report.json: same keys, spelled by one producer
    assert set(result.to_dict()["latency"]) == set(exported["latency"])
    assert "onnx_vs_pytorch" in result.latency.speedup_meets_protocol
    console = Console(record=True, width=140)
    console.print(bench_view(result))
    text = console.export_text()
    for word in ("pytorch", "onnxruntime", "p50", "p99", "img/s", "onnx vs pytorch"):
        assert word in text


# --- the Python API and the pieces, in-process -------------------------------------------------


def test_the_typed_report_is_what_callers_read_without_a_copy(tmp_path: Path) -> None:
    """`api.export` returns report.json's own typed view: its conveniences read the file's
    data (no second result type copying fields), so they cannot drift from it."""
    data = {
        "files": {"onnx": str(tmp_path / "model.onnx")},
        "parity": {"passed": True, "misses": []},
        "variants": {"int8": {"path": str(tmp_path / "model.int8.onnx"), "bytes": 10}},
        "latency": None,
        "gates": {"passed": False, "misses": ["max-latency-ms: 3 > 2"], "files": {}},
    }
    report = ExportReport(data)
    assert report.onnx == tmp_path / "model.onnx" and report.report_path is None
    assert report.variants["int8"].file == tmp_path / "model.int8.onnx"
    assert report.parity_passed and not report.gates_passed
    assert report.misses == ["max-latency-ms: 3 > 2"]
    with pytest.raises(KeyError, match="--no-latency"):
        report.latency_of("student/onnxruntime/fp32")
    data["gates"]["passed"] = True  # the view reads the data, it holds no copy
    assert report.gates_passed and report.to_dict() is data
    path = report.write(tmp_path)
    assert report.report_path == path and json.loads(path.read_text())["files"]["report"]


def test_api_export_raises_gate_failed_with_the_report(tmp_path: Path) -> None:
    with pytest.raises(GateFailed) as info:
        api.export(
            "test_resnet", out=tmp_path, input_size=32, num_classes=3, exporter="torchscript",
            simplify=False, max_latency_ms=1e-9, **FAST_API,
        )  # fmt: skip
    assert len(info.value.misses) == 1 and info.value.misses[0].startswith("max-latency-ms")
    assert info.value.code == 1
    report = info.value.report  # the typed report.json, as api.export returns it
    assert report is not None and report.parity_passed and not report.gates_passed
    assert report.misses == info.value.misses and report.to_dict() == json.loads(
        (tmp_path / "report.json").read_text()
    )
    onnx_block = report.to_dict()["model"]["onnx"]
    assert onnx_block["simplify"] == {"applied": False, "reason": "--no-simplify"}
    result = api.export(
        "test_resnet", out=tmp_path, input_size=32, num_classes=3, exporter="torchscript",
        max_latency_ms=1e-9, check=False, **FAST_API,
    )  # fmt: skip
    assert not result.gates_passed and len(result.misses) == 1
    assert result.misses[0].startswith("max-latency-ms") and result.parity_passed
    assert result.onnx is not None and result.onnx.is_file() and result.report_path is not None
    entry = result.latency_of("student/onnxruntime/fp32")
    assert entry.runtime == "onnxruntime" and 0 < entry.p50_ms <= entry.p99_ms
    with pytest.raises(KeyError, match="student/pytorch"):  # the message names what was timed
        result.latency_of("student/onnxruntime/int8")


def test_the_other_exporter_is_tried_when_the_first_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ox._export_once

    def dynamo_breaks(module, example, path, exporter, opset, *rest):  # type: ignore[no-untyped-def]
        if exporter == "dynamo":
            raise RuntimeError("unsupported operator aten::imaginary")
        real(module, example, path, exporter, opset, *rest)

    monkeypatch.setattr(ox, "_export_once", dynamo_breaks)
    report = api.export(
        "test_resnet", out=tmp_path, input_size=32, num_classes=3, latency=False
    ).to_dict()  # fmt: skip
    exporter = report["model"]["onnx"]["exporter"]
    assert exporter["requested"] == "dynamo" and exporter["used"] == "torchscript"
    assert [a["ok"] for a in exporter["attempts"]] == [False, True]
    assert "aten::imaginary" in exporter["attempts"][0]["error"]
    assert report["parity"]["passed"]


def test_simplification_is_dropped_when_it_breaks_parity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnxsim")
    import distill_cli.export.produce as produce

    def bad_simplify(path: Path, out: Path) -> dict[str, Any]:
        _corrupt(path, out)
        return {"applied": True, "nodes_before": 1, "nodes_after": 1}

    monkeypatch.setattr(produce, "simplify", bad_simplify)
    report = api.export(
        "test_resnet", out=tmp_path, input_size=32, num_classes=3, exporter="torchscript",
        latency=False,
    ).to_dict()  # fmt: skip
    simplified = report["model"]["onnx"]["simplify"]
    assert simplified["applied"] is False and "breaks parity" in simplified["reason"]
    assert report["parity"]["passed"]  # the unsimplified file was kept
    assert not list(tmp_path.glob("*.simplified.onnx"))


def test_both_exporters_failing_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def always(*_: Any) -> None:
        raise RuntimeError("no")

    monkeypatch.setattr(ox, "_export_once", always)
    with pytest.raises(DistillError, match="failed with both exporters"):
        api.export("test_resnet", out=tmp_path, input_size=32, latency=False)


def test_timing_follows_the_protocol() -> None:
    calls = []
    times, elapsed = time_fn(
        lambda: calls.append(1), warmup=3, runs=7, min_time_s=0.05, max_time_s=5
    )
    assert len(times) >= 7 and elapsed >= 0.05 and len(calls) == len(times) + 3
    slow, elapsed = time_fn(
        lambda: time.sleep(0.02), warmup=0, runs=1000, min_time_s=0, max_time_s=0.1
    )
    assert 2 <= len(slow) < 1000 and elapsed >= 0.1  # max_time ends a slow model
    assert TimingPlan(threads=0).threads >= 1


def _report(top1: float | None, drop8: float | None) -> ExportReport:
    return ExportReport(
        {
            "parity": {"misses": [], "top1_onnx": top1, "top1_drop": 0.0 if top1 else None},
            "variants": {
                "int8": {"parity": {"top1": top1 and top1 - (drop8 or 0), "top1_drop": drop8}}
            },
            "latency": {
                "entries": [
                    {"name": "student/onnxruntime/fp32", "p50_ms": 2.0, "p90_ms": 9.0, "threads": 2}
                ]
            },
        }
    )


def test_gate_rules() -> None:
    assert evaluate(_report(90.0, 0.5), Gates(min_top1=85, max_top1_drop=1)) == []
    misses = evaluate(_report(90.0, 1.5), Gates(min_top1=89, max_top1_drop=1))
    assert misses == [
        "min-top1: int8 ONNX top-1 88.50% < 89.00%",
        "max-top1-drop: int8 ONNX loses 1.50 points against ONNX fp32 > 1.00",
    ]
    assert evaluate(_report(90.0, 0.0), Gates(max_latency_ms=5)) == []  # p50 = 2 ms
    (miss,) = evaluate(_report(90.0, 0.0), Gates(max_latency_ms=5, latency_stat="p90"))
    assert "p90 9.000 ms > 5 ms" in miss


@pytest.mark.parametrize(
    ("workflow", "expected"),
    [
        ("quickstart-demo.yml", ["train", "run", "export"]),
        ("distill-your-model.yml", ["students", "run", "export"]),
    ],
)
def test_the_ci_examples_use_only_real_commands_and_flags(
    workflow: str, expected: list[str]
) -> None:
    """examples/ci/ stays in step with the CLI: every flag a distill step passes exists (flags
    kept in a shell variable of the same step count too), PyTorch comes from the CPU index."""
    import re

    import yaml
    from typer.main import get_command

    from distill_cli.cli.app import app

    text = (ROOT / "examples" / "ci" / workflow).read_text()
    assert "download.pytorch.org/whl/cpu" in text and "[dev]" not in text
    (job,) = yaml.safe_load(text)["jobs"].values()
    cli = get_command(app).commands  # type: ignore[attr-defined]
    used = []
    for step in job["steps"]:
        run = step.get("run", "")
        found = re.findall(r"\.venv/bin/distill (\w+)", run)
        if not found:
            continue
        assert len(found) == 1, run
        used.append(found[0])
        params = cli[found[0]].params
        known = {opt for p in params for opt in (*p.opts, *p.secondary_opts)}
        flags = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", run))
        assert flags and flags <= known, (found[0], flags - known)
        for path in re.findall(r"(?:recipes|runs)/[\w./-]+", run):
            assert path.startswith("runs/") or (ROOT / path).is_file(), path
    assert used == expected


def test_speedups_sum_an_ensembles_teachers() -> None:
    from distill_cli.export.timing import speedups

    entries = [
        {"name": "student/pytorch", "p50_ms": 4.0},
        {"name": "student/onnxruntime/fp32", "p50_ms": 2.0},
        {"name": "student/onnxruntime/int8", "p50_ms": 1.0},
        {"name": "teacher0/pytorch", "p50_ms": 10.0},
        {"name": "teacher1/pytorch", "p50_ms": 30.0},
    ]
    assert speedups(entries) == {
        "onnx_fp32_vs_pytorch": 2.0,
        "int8_vs_onnx_fp32": 2.0,
        "student_pytorch_vs_teacher_pytorch": 10.0,
        "student_onnx_fp32_vs_teacher_pytorch": 20.0,
        "student_int8_vs_teacher_pytorch": 40.0,
    }


def test_export_of_a_run_still_training_says_so(student_run: Path, tmp_path: Path) -> None:
    """`distill export` of a run whose training still holds its lock exported the best
    checkpoint so far as if it were the run's result; it now says so in a note (pid, epoch),
    and a run with no checkpoint yet is refused saying it is training, not "finish the run"."""
    import shutil
    import sys

    run = tmp_path / "run"
    shutil.copytree(student_run, run, ignore=shutil.ignore_patterns("export"))
    holder = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); os.ftruncate(fd, 0); os.pwrite(fd, b'4242', 0)\n"
        "print('held', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder, str(run / ".distill-lock")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        report = api.export(run, latency=False, teacher=False, images=16, out=tmp_path / "out")
        (note,) = [n for n in report.notes if "still training" in n]
        assert "pid 4242" in note and "(epoch 1)" in note and "export again" in note
        (run / "checkpoints" / "best.safetensors").unlink()
        with pytest.raises(DistillError, match=r"no best checkpoint yet; it is training \(pid"):
            api.export(run, latency=False, teacher=False, out=tmp_path / "out2")
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(DistillError, match=r"no best checkpoint yet \(.*finish \(or --resume\)"):
        api.export(run, latency=False, teacher=False, out=tmp_path / "out3")


def test_bench_latency_refuses_an_input_size_a_fixed_size_onnx_file_cannot_take(
    tmp_path: Path,
) -> None:
    """`distill bench latency model.onnx --input-size 40` on a file made for 24x24, or any file
    with a fixed batch, printed an empty table and exit code 0 (ONNX Runtime refused every call,
    unsaid). A size the file cannot take is one usage error; a fixed batch of 1 is timed at
    batch 1; another fixed batch is refused."""
    path = tmp_path / "fixed.onnx"
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
    torch.onnx.export(net, (torch.zeros(1, 3, 24, 24),), str(path), dynamo=False)
    with pytest.raises(DistillError, match=r"takes 24x24 inputs only; --input-size 40") as info:
        api.bench_latency(path, input_size=40, **FAST_API)
    assert info.value.code == 2
    # its batch is fixed at 1 too: timed at batch 1 throughout (the plan's 4 could not run)
    result = api.bench_latency(path, input_size=24, **FAST_API)
    assert result.latency_of("onnxruntime").p50_ms > 0
    assert result.to_dict()["latency"]["protocol"]["batch"] == 1
    torch.onnx.export(net, (torch.zeros(2, 3, 24, 24),), str(path), dynamo=False)
    with pytest.raises(DistillError, match=r"takes a fixed batch of 2"):
        api.bench_latency(path, **FAST_API)


def test_bench_latency_counts_an_onnx_files_external_data_in_its_size(tmp_path: Path) -> None:
    """A model saved with its weights in an external data file was reported as the few-kB
    graph alone ("file 18.2 kB" for a 0.41 MB model): the size counts the data file too."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3), torch.nn.AdaptiveAvgPool2d(1))
    inline = tmp_path / "inline.onnx"
    torch.onnx.export(
        net, (torch.zeros(1, 3, 24, 24),), str(inline), dynamo=False,
        dynamic_axes={"input": {0: "batch"}}, input_names=["input"],
    )  # fmt: skip
    path = tmp_path / "ext" / "model.onnx"
    path.parent.mkdir()
    onnx.save_model(onnx.load(str(inline)), str(path), save_as_external_data=True, location="w.bin")
    data = path.parent / "w.bin"
    assert data.stat().st_size > 6000 > path.stat().st_size  # the weights are outside
    result = api.bench_latency(path, **FAST_API)
    assert result.model.bytes == path.stat().st_size + data.stat().st_size
    assert result.latency_of("onnxruntime").p50_ms > 0


def test_export_into_the_run_folder_itself_is_refused_even_with_force(
    student_run: Path, tmp_path: Path
) -> None:
    """`--out runs/x` (or its checkpoints/) was refused as "holds files distill did not write"
    (they are distill's) and `--force` then wrote model.onnx among the run's files; it is
    refused naming the run's export folder, and nothing is written."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(student_run, run, ignore=shutil.ignore_patterns("export"))
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    for out in (run, run / "checkpoints"):
        with pytest.raises(DistillError, match="is a run folder or one of its own") as info:
            api.export(run, out=out, force=True, latency=False, teacher=False, images=16)
        assert info.value.code == 2 and str(run / "export") in str(info.value)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
