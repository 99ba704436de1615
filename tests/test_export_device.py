"""`distill export --device`: where the student is timed and its parity checked.

On a machine without onnxruntime's CUDA build, `--device cuda` must be one line naming the
package to install, before any work; on a GPU (marked `gpu`) the export times ONNX Runtime's
CUDA provider beside PyTorch eager and compiled there, and checks parity on it.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest
import torch

from distill_cli import api
from distill_cli.errors import DistillError
from distill_cli.export.latency import providers
from tests.conftest import CLI
from tests.test_cli import distill
from tests.test_export import FAST, FAST_API, error_lines

HAS_CUDA_ORT = "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.skipif(HAS_CUDA_ORT, reason="onnxruntime-gpu is installed here")
def test_device_cuda_without_onnxruntime_gpu_is_one_line_naming_the_package(
    tmp_path: Path, cli: CLI
) -> None:
    result = cli("export", "test_resnet", "--device", "cuda", *FAST, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    (line,) = error_lines(result)
    assert line.startswith("error: ") and "(--device cuda)" in line
    assert "pip install onnxruntime-gpu" in line
    assert not list(tmp_path.iterdir())  # refused before any work
    with pytest.raises(DistillError, match="onnxruntime-gpu"):
        api.bench_latency("test_resnet", device="cuda", **FAST_API)


def test_an_unknown_device_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match="unknown device 'tpu'") as info:
        api.export("test_resnet", out=tmp_path / "out", device="tpu")
    assert info.value.code == 2 and not (tmp_path / "out").exists()


def test_device_cpu_times_the_cpu_provider_alone() -> None:
    assert providers("cpu") == ["CPUExecutionProvider"]
    result = api.bench_latency("test_resnet", device="cpu", exporter="torchscript", **FAST_API)
    assert [e.name for e in result.latency.entries] == ["pytorch", "onnxruntime"]


@pytest.mark.gpu
def test_export_on_cuda_times_the_gpu_and_checks_parity_there(tmp_path: Path) -> None:
    if not (HAS_CUDA_ORT and torch.cuda.is_available()):
        pytest.skip("needs onnxruntime-gpu and a CUDA GPU")
    report = api.export(
        "test_resnet", out=tmp_path / "out", device="cuda", teacher=False, **FAST_API
    )
    names = [e["name"] for e in report.to_dict()["latency"]["entries"]]
    for name in ("student/pytorch-cuda", "student/pytorch-cuda-compiled"):
        assert name in names
    assert "student/onnxruntime-cuda/fp32" in names
    cuda = report.to_dict()["parity"]["providers"]["CUDAExecutionProvider"]
    assert cuda["passed"] and cuda["top1_agreement"] == 100.0
    assert report.parity_passed


def test_export_and_bench_latency_take_the_device_flag() -> None:
    for command in (["export"], ["bench", "latency"]):
        result = distill(*command, "--help")
        assert result.returncode == 0 and "--device" in result.stdout, result.stdout
