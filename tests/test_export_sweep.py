"""The 30+-architecture export sweep: every family exports at the default tolerances, and the
reparameterizable ones ship fewer nodes with --reparam while keeping parity with the unfused
model.

Random weights seeded through `--seed` (the default 0), 64 px, 64 seeded random inputs, no
latency: the same `api.export` as the CLI. The list (tests/export_sweep_archs.py) is also what
benchmarks/export_parity.py measured to choose the default atol/rtol. The suite runs its `CORE`
(one architecture of each kind of graph, about a minute on two CPU cores, hence `slow`); the
whole list, a few minutes more, with `DISTILL_FULL_SWEEP=1` or `python
benchmarks/export_parity.py`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import onnx
import pytest

from distill_cli import api
from distill_cli.export.parity import DEFAULT_ATOL, DEFAULT_RTOL
from tests.export_sweep_archs import CORE, SIZE, SWEEP

pytestmark = pytest.mark.slow


def _export(arch: str, kwargs: dict[str, Any], exporter: str, out: Path, **extra: Any) -> dict:
    return api.export(
        arch, out=out, input_size=SIZE, num_classes=10, model_kwargs=kwargs, exporter=exporter,
        latency=False, simplify=False, check=False, **extra,
    ).to_dict()  # fmt: skip


def test_the_sweep_covers_thirty_architectures() -> None:
    assert len({name for name, *_ in SWEEP}) >= 30
    assert sum(rep for *_, rep in SWEEP) >= 4


RUN = SWEEP if os.environ.get("DISTILL_FULL_SWEEP") == "1" else [a for a in SWEEP if a[0] in CORE]


def test_the_core_is_part_of_the_sweep_and_reparameterizes() -> None:
    assert {name for name, *_ in SWEEP} >= CORE and len(RUN) >= len(CORE)
    assert any(rep for name, *_, rep in SWEEP if name in CORE)


@pytest.mark.parametrize(
    ("arch", "kwargs", "exporter", "reparameterizable"), RUN, ids=[a[0] for a in RUN]
)
def test_architecture_exports_at_the_default_tolerances(
    arch: str, kwargs: dict[str, Any], exporter: str, reparameterizable: bool, tmp_path: Path
) -> None:
    report = _export(arch, kwargs, exporter, tmp_path / "auto")
    parity = report["parity"]
    assert parity["passed"], parity["misses"]
    assert (parity["atol"], parity["rtol"]) == (DEFAULT_ATOL, DEFAULT_RTOL)
    assert parity["logits_outside"] == 0 and parity["worst_ratio"] <= 1.0
    assert parity["top1_agreement"] == 100.0 and parity["inputs"]["images"] == 64
    onnx_block = report["model"]["onnx"]
    assert onnx_block["exporter"]["used"] == exporter, onnx_block["exporter"]["attempts"]
    model = onnx.load(str(tmp_path / "auto" / "model.onnx"), load_external_data=False)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    if not reparameterizable:
        return
    assert onnx_block["reparam"]["applied"] is True and onnx_block["reparam"]["blocks"] > 0
    assert parity["reference"] == "PyTorch, before reparameterization"
    unfused = _export(arch, kwargs, exporter, tmp_path / "unfused", reparam=False)
    assert unfused["parity"]["passed"], unfused["parity"]["misses"]
    assert unfused["model"]["onnx"]["reparam"]["applied"] is False
    assert onnx_block["nodes"] < unfused["model"]["onnx"]["nodes"], (
        onnx_block["nodes"],
        unfused["model"]["onnx"]["nodes"],
    )
