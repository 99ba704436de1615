"""BatchNorm over the global batch under several processes (issue 12, item 3)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from distill_cli import api
from distill_cli.train.distributed import has_batchnorm
from tests.conftest import write_recipe
from tests.test_distributed import ROOT, _body, _torchrun, _weights


def _bn_body(out: Path, sync_bn: bool | None) -> dict:
    body = _body(out, epochs=2)
    body["model"] = {"model": "test_resnet", "input_size": 32}
    if sync_bn is not None:
        body["runtime"]["sync_bn"] = sync_bn
    return body


def _run(tmp_path: Path, nproc: int, sync_bn: bool | None) -> dict[str, torch.Tensor]:
    folder = tmp_path / f"n{nproc}-{sync_bn}"
    folder.mkdir()
    recipe = write_recipe(folder, "bn", _bn_body(folder / "runs", sync_bn))
    result = subprocess.run(
        _torchrun(nproc, "run", str(recipe), "-q", "--json"),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return _weights(folder / "runs" / "bn")


def test_sync_bn_defaults(tmp_path: Path) -> None:
    import timm

    assert has_batchnorm(timm.create_model("test_resnet"))
    assert not has_batchnorm(timm.create_model("test_vit"))
    recipe = write_recipe(tmp_path, "bn", _bn_body(tmp_path / "runs", None))
    assert api.plan(recipe)["sync_bn"] is False  # one process: nothing to synchronise


@pytest.mark.slow
def test_two_processes_with_batchnorm_match_one(tmp_path: Path) -> None:
    one = _run(tmp_path, 1, None)
    two = _run(tmp_path, 2, None)  # default: on, the model has BatchNorm
    for key in one:  # weights and running statistics alike
        torch.testing.assert_close(one[key], two[key], atol=2e-4, rtol=2e-3, msg=key)
    unsynced = _run(tmp_path, 2, False)
    differs = [
        k
        for k in one
        if one[k].is_floating_point() and not torch.allclose(one[k], unsynced[k], atol=2e-4)
    ]
    assert differs, "per-process BatchNorm should give another model: the test would not see it"
