"""What makes an export trustworthy without reading it: the parity rule, variant gates, seeded
random weights, dynamic sizes, class names, believable latency and runs that export from any
directory (issue 13)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import save_file

from distill_cli import api
from distill_cli.errors import DistillError
from distill_cli.export import latency as lat
from distill_cli.export import protocol
from distill_cli.export.options import ExportOptions
from distill_cli.export.parity import Outputs, compare, fp32_parity
from distill_cli.export.source import resolve_source
from distill_cli.export.timing import speedups_meet_protocol
from tests.conftest import CLI, fm_body, write_recipe
from tests.test_export import error_lines

QUICK: dict[str, Any] = {"exporter": "torchscript", "latency": False, "simplify": False}


def _outputs(logits: np.ndarray) -> Outputs:
    return Outputs(logits.astype(np.float32), None, logits[:1].astype(np.float32))


class _Inputs:
    count, kind = 4, "random"

    def describe(self) -> dict[str, Any]:
        return {"kind": "random", "images": 4}


def test_parity_is_relative_for_large_logits_and_strict_for_tiny_ones() -> None:
    rng = np.random.default_rng(0)
    big = rng.normal(0, 100, (4, 10))
    # fp32 rounding on logits ~100: 1e-6 relative passes, though |diff| is above 1e-4.
    near = big * (1 + 1e-6)
    parity = fp32_parity(_outputs(big), _outputs(near), _Inputs(), 1e-5, 1e-4)  # type: ignore[arg-type]
    assert parity["passed"] and parity["max_abs_diff"] > 1e-4
    # A wrong graph whose logits are tiny (a random-weight model): caught by atol.
    tiny = rng.normal(0, 1e-3, (4, 10))
    wrong = -tiny
    parity = fp32_parity(_outputs(tiny), _outputs(wrong), _Inputs(), 1e-5, 1e-4)  # type: ignore[arg-type]
    assert not parity["passed"] and parity["logits_outside"] > 0
    line = parity["misses"][0]
    for words in ("max abs diff", "max rel diff", "top-1 agreement", "+ 0.0001*max(|b|"):
        assert words in line, line
    # NaN is never within tolerance.
    nan = tiny.copy()
    nan[0, 0] = np.nan
    assert compare(_outputs(tiny), _outputs(nan))["logits_outside"] >= 1


def test_a_near_zero_logit_is_held_to_its_rows_scale_not_its_own() -> None:
    """Random-weight MobileOne: logits of 1e15 beside ones near 0, which float32 rounds on the
    row's scale (off by ~1e8, 1e-7 of the row). That is rounding, not a wrong graph; a near-zero
    logit off by 1e-2 of the row is wrong; and a trained model's bound is the plain one."""
    ref = np.array([[1e15, -3e14, 5.0, -2.0], [4e14, 1e15, 1.0, 0.5]])
    rounded = ref + np.array([[6e7, -3e7, 1e8, -2e8], [2e7, 6e7, -1e8, 3e8]])
    assert compare(_outputs(ref), _outputs(rounded), 1e-4, 1e-3)["logits_outside"] == 0
    wrong = rounded.copy()
    wrong[1, 2] = 1e13  # a near-zero logit now 1e-2 of its row: no rounding does that
    assert compare(_outputs(ref), _outputs(wrong), 1e-4, 1e-3)["logits_outside"] == 1
    trained = np.array([[9.0, -1.0, 0.2, 0.1], [12.0, -3.0, 0.01, 0.0]])
    off = trained + np.array([[0.0] * 4, [0.0, 0.0, 3e-4, 0.0]])  # 0.03 relative, small logit
    assert compare(_outputs(trained), _outputs(off), 1e-4, 1e-3)["logits_outside"] == 1


def test_tolerance_is_an_alias_of_atol() -> None:
    assert ExportOptions("x", tolerance=1e-3).parity_atol == 1e-3
    assert ExportOptions("x", atol=2e-3).parity_atol == 2e-3
    with pytest.raises(DistillError, match="old name of --atol"):
        ExportOptions("x", atol=1e-3, tolerance=1e-2).validate()
    with pytest.raises(DistillError, match="relative tolerance"):
        ExportOptions("x", rtol=-1).validate()


def test_random_weights_are_seeded() -> None:
    one = resolve_source("test_resnet", input_size=32, num_classes=3)
    two = resolve_source("test_resnet", input_size=32, num_classes=3)
    other = resolve_source("test_resnet", input_size=32, num_classes=3, seed=1)
    a, b, c = (s.student.module.state_dict() for s in (one, two, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_a_lossy_int8_file_fails_the_variant_gate(tmp_path: Path, cli: CLI) -> None:
    """CI asks int8 to agree with fp32 on every image; a random-calibrated int8 file doesn't."""
    args = [
        "export", "test_resnet", "--input-size", "32", "--num-classes", "10",
        "--exporter", "torchscript", "--no-latency", "--no-simplify", "--quantize", "int8",
    ]  # fmt: skip
    result = cli(*args, "--out", str(tmp_path / "a"), "--min-variant-agreement", "100")
    assert result.returncode == 1, result.stderr
    lines = [line for line in error_lines(result) if line.startswith("error: ")]
    assert len(lines) == 1 and lines[0].startswith("error: min-variant-agreement: int8 ONNX"), lines
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["gates"]["files"] == {"fp32": True, "int8": False}
    assert report["variants"]["int8"]["gates_passed"] is False
    assert report["variants"]["int8"]["parity"]["top1_agreement_fp32"] < 100
    calib = report["variants"]["int8"]["calibration"]
    assert calib["random_inputs"] is True
    assert any("seeded random inputs, not images" in n for n in report["source"]["notes"])
    assert "FAIL" in result.stdout and "gates missed" in result.stdout
    # The same export at a gate it meets: passes, and the report says int8 passed.
    ok = api.export(
        "test_resnet", out=tmp_path / "b", input_size=32, num_classes=10, quantize="int8",
        min_variant_agreement=10, **QUICK,
    )  # fmt: skip
    assert ok.gates_passed and ok.to_dict()["gates"]["files"] == {"fp32": True, "int8": True}


def test_variant_gate_without_a_variant_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match="needs a variant") as info:
        api.export("test_resnet", out=tmp_path / "o", min_variant_agreement=99)
    assert info.value.code == 2 and not (tmp_path / "o").exists()
    with pytest.raises(DistillError, match="percentage"):
        api.export("test_resnet", out=tmp_path / "o", quantize="int8", min_variant_agreement=101)


def test_dynamic_height_and_width_where_the_model_allows_it(tmp_path: Path) -> None:
    report = api.export(
        "test_resnet", out=tmp_path / "cnn", input_size=32, num_classes=3, dynamic_size=True,
        **QUICK,
    ).to_dict()  # fmt: skip
    block = report["model"]["onnx"]
    assert block["dynamic_size"]["applied"] is True and block["dynamic_axes"] == {
        "0": "batch", "2": "height", "3": "width"
    }  # fmt: skip
    session = ort.InferenceSession(str(tmp_path / "cnn" / "model.onnx"))
    out = session.run(None, {"input": np.zeros((3, 3, 48, 40), np.float32)})[0]
    assert out.shape == (3, 3)
    # A ViT with a fixed position embedding cannot: the file keeps a fixed size, and says why.
    report = api.export(
        "test_vit", out=tmp_path / "vit", input_size=32, num_classes=3, dynamic_size=True,
        model_kwargs={"img_size": 32}, **QUICK,
    ).to_dict()  # fmt: skip
    block = report["model"]["onnx"]
    assert block["dynamic_size"]["applied"] is False and block["dynamic_axes"] == {"0": "batch"}
    assert any(n.startswith("fixed input size") for n in report["source"]["notes"])
    assert report["parity"]["passed"]
    dims = onnx.load(str(tmp_path / "vit" / "model.onnx")).graph.input[0].type.tensor_type.shape
    assert [d.dim_value for d in dims.dim[2:]] == [32, 32]


def test_a_bare_timm_name_carries_the_models_own_class_names(tmp_path: Path) -> None:
    report = api.export("test_resnet", out=tmp_path / "in1k", input_size=32, **QUICK).to_dict()
    meta = report["model"]["onnx"]["metadata"]
    names = json.loads(meta["distill.class_names"])
    assert len(names) == 1000 and names[0].startswith("tench")
    assert meta["distill.class_names_source"] == "timm"
    report = api.export(
        "test_resnet", out=tmp_path / "ten", input_size=32, num_classes=10, **QUICK
    ).to_dict()  # fmt: skip
    meta = report["model"]["onnx"]["metadata"]
    assert "distill.class_names" not in meta and meta["distill.class_names_source"] == "unknown"
    assert "null" not in meta.values()
    for key in ("distill.input_layout", "distill.source_channels", "distill.interpolation",
                "distill.antialias", "distill.crop_pct", "distill.preprocess"):  # fmt: skip
        assert meta[key], key


def test_noisy_or_contended_latency_does_not_meet_the_protocol(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    quiet = {"p50_ms": 1.0, "p90_ms": 1.1}
    monkeypatch.setattr(protocol, "usable_cores", lambda: 4)
    assert lat.protocol_issues(quiet, 2, 0.3, 0.5) == []
    (noisy,) = lat.protocol_issues({"p50_ms": 1.0, "p90_ms": 2.5}, 2, 0.0, None)
    assert noisy.startswith("noisy: p90/p50 = 2.50")
    (over,) = lat.protocol_issues(quiet, 8, 0.0, None)
    assert over.startswith("oversubscribed: 8 threads on 4 usable cores")
    (busy,) = lat.protocol_issues(quiet, 2, 3.0, None)
    assert busy.startswith("contended: other processes used 3.0 of 4 cores")
    (load,) = lat.protocol_issues(quiet, 2, None, 6.0)  # no /proc/stat: the load average
    assert load.startswith("contended: load average 6.0")
    # A measurement whose calls vary wildly is flagged, whatever its counts.
    delays = iter([0.001, 0.001, 0.001, 0.001, 0.02] * 40)
    plan = lat.TimingPlan(warmup=10, runs=20, min_time_s=0, max_time_s=5, batch=1, threads=1)
    entry = lat._measure(lambda: __import__("time").sleep(next(delays)), lambda: None, plan)
    assert entry["meets_protocol"] is False
    assert any(i.startswith("noisy") for i in entry["protocol_issues"])
    ok = {"student/pytorch": True, "student/onnxruntime/fp32": False}
    entries = [{"name": k, "meets_protocol": v, "p50_ms": 1.0} for k, v in ok.items()]
    assert speedups_meet_protocol(entries) == {"onnx_fp32_vs_pytorch": False}


def test_other_processes_cpu_is_measured_apart_from_our_own() -> None:
    watch = lat.CpuWatch.begin()
    end = __import__("time").perf_counter() + 0.3
    while __import__("time").perf_counter() < end:  # our own busy loop is not contention
        pass
    other = watch.other_cores()
    assert other is None or 0 <= other < lat.usable_cores()


def test_a_run_exports_from_another_directory_with_its_teacher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative paths in the recipe are resolved when the run is saved."""
    import timm

    work = tmp_path / "work"
    (work / "weights").mkdir(parents=True)
    teacher = timm.create_model("test_resnet", num_classes=4)
    save_file(teacher.state_dict(), str(work / "weights" / "teacher.safetensors"))
    body = fm_body(Path("runs"), Path("weights/teacher.safetensors"), epochs=1)
    body["teacher"]["num_classes"] = 4
    body["teacher"]["check_accuracy"] = False  # random weights: near chance, refused at times
    monkeypatch.chdir(work)
    run = Path(api.run(write_recipe(work, "rel", body)).run_dir).resolve()
    saved = (run / "recipe.yaml").read_text()
    assert str(work / "weights" / "teacher.safetensors") in saved
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    report = api.export(run, out=elsewhere / "export", **QUICK).to_dict()
    assert [t["name"] for t in report["teachers"]] == ["test_resnet"]
    assert not any("teacher" in n for n in report["source"]["notes"])
