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
    assert api.plan(recipe).sync_bn is False  # one process: nothing to synchronise


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


# --- the hand-written synced BatchNorm against one BatchNorm over the whole batch (issue 25) ---


def _bn_layers() -> list[torch.nn.Module]:
    from timm.layers import BatchNormAct2d

    torch.manual_seed(0)
    layers = [torch.nn.BatchNorm2d(3), BatchNormAct2d(3, act_layer="relu")]
    for layer in layers:
        with torch.no_grad():
            layer.weight.uniform_(0.5, 1.5)
            layer.bias.uniform_(-0.5, 0.5)
    return layers


def _whole_batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, 5, 5, generator=gen) * 2 + 1
    return x, torch.randn(8, 3, 5, 5, generator=gen)  # input, and the upstream gradient


def _outcome(layer: torch.nn.Module, x: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    y = layer(x)
    (y * g).sum().backward()
    return {
        "y": y.detach(),
        "dx": x.grad,
        "dw": layer.weight.grad,
        "db": layer.bias.grad,
        "mean": layer.running_mean.clone(),
        "var": layer.running_var.clone(),
    }


def _synced_worker(rank: int, init: str, out: str) -> None:
    import torch.distributed as dist

    from distill_cli.train.distributed import sync_batchnorm

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    x, g = _whole_batch()
    part = slice(4 * rank, 4 * rank + 4)
    results = []
    for layer in _bn_layers():
        layer = sync_batchnorm(layer, torch.device("cpu"))
        got = _outcome(layer, x[part], g[part])
        for key in ("dw", "db"):  # what DDP does with parameter gradients: their sum
            dist.all_reduce(got[key])
        results.append(got)
    torch.save(results, f"{out}.{rank}")
    dist.destroy_process_group()


def test_synced_batchnorm_by_hand_equals_one_batchnorm_over_the_whole_batch(
    tmp_path: Path,
) -> None:
    """Two gloo processes with half a batch each: outputs, input and parameter gradients and
    running statistics equal one BatchNorm (and timm's fused BatchNormAct2d) on all of it."""
    import torch.multiprocessing as mp

    out = str(tmp_path / "bn")
    rdzv = f"file://{tmp_path / 'rdzv'}"
    # spawned, not forked: a worker forked from a pytest process whose earlier tests started
    # autograd's threads fails in its first backward ("Unable to handle autograd's threading
    # in combination with fork-based multiprocessing"), depending on which tests ran before
    mp.start_processes(_synced_worker, args=(rdzv, out), nprocs=2, start_method="spawn")
    x, g = _whole_batch()
    parts = [torch.load(f"{out}.{r}") for r in (0, 1)]
    for i, layer in enumerate(_bn_layers()):
        want = _outcome(layer, x, g)
        for key in ("y", "dx"):
            got = torch.cat([parts[0][i][key], parts[1][i][key]])
            torch.testing.assert_close(got, want[key], atol=1e-5, rtol=1e-4, msg=key)
        for rank in (0, 1):
            for key in ("dw", "db", "mean", "var"):
                torch.testing.assert_close(
                    parts[rank][i][key], want[key], atol=1e-5, rtol=1e-4, msg=key
                )


def _torch_sync_worker(rank: int, init: str, out: str) -> None:
    import torch.distributed as dist

    from distill_cli.train.distributed import sync_batchnorm, sync_batchnorm_by_hand

    dist.init_process_group("nccl", init_method=init, rank=rank, world_size=2)
    torch.cuda.set_device(rank)
    x, g = _whole_batch()
    part = slice(4 * rank, 4 * rank + 4)
    results = []
    for layers in zip(_bn_layers(), _bn_layers(), strict=True):
        ours = sync_batchnorm(layers[0].cuda(), torch.device("cuda", rank))  # torch's, via timm
        assert isinstance(ours, torch.nn.SyncBatchNorm)
        by_hand = layers[1].cuda()
        sync_batchnorm_by_hand(by_hand)
        pair = [_outcome(m, x[part].cuda(), g[part].cuda()) for m in (ours, by_hand)]
        results.append([{k: v.cpu() for k, v in r.items()} for r in pair])
    torch.save(results, f"{out}.{rank}")
    dist.destroy_process_group()


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_torch_sync_batchnorm_equals_the_hand_written_one(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    out = str(tmp_path / "bn")
    mp.spawn(_torch_sync_worker, args=(f"file://{tmp_path / 'rdzv'}", out), nprocs=2)
    for rank in (0, 1):
        for torch_bn, by_hand in torch.load(f"{out}.{rank}"):
            for key in torch_bn:
                torch.testing.assert_close(
                    torch_bn[key], by_hand[key], atol=1e-5, rtol=1e-4, msg=key
                )
