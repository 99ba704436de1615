"""The CUDA path: the same code with uint8 batches on the GPU, bf16 autocast and channels_last."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from distill_cli import api
from distill_cli.engine import build
from distill_cli.recipe import load_recipe
from tests.conftest import fm_body, write_recipe

pytestmark = pytest.mark.gpu


def test_function_matching_runs_on_the_gpu_in_bf16(tmp_path: Path) -> None:
    body = fm_body(tmp_path / "runs", None, epochs=2)
    setup = build(load_recipe(write_recipe(tmp_path, "fm", body)))
    assert setup.device.type == "cuda" and setup.autocast is torch.bfloat16 and setup.channels_last
    images = next(iter(setup.train_stream.epoch(0))).images
    assert images.is_cuda and images.dtype == torch.uint8  # held on the GPU, still uint8
    pixels = setup.method.ctx.augment(images)
    assert pixels.is_cuda
    summary = api.run(write_recipe(tmp_path, "fm", body))
    assert summary.device.startswith("cuda") and summary.precision == "bf16-autocast"
    assert summary.agreement_top1 is not None


def test_gpu_and_cpu_augmentation_agree() -> None:
    from distill_cli.data.augment import crop_resize

    images = torch.rand(8, 3, 40, 40)
    boxes = torch.tensor([[3.0, 5.0, 20.0, 30.0]] * 8)
    flips = torch.arange(8) % 2 == 0
    cpu = crop_resize(images, boxes, flips, (16, 16))
    gpu = crop_resize(images.cuda(), boxes.cuda(), flips.cuda(), (16, 16)).cpu()
    torch.testing.assert_close(cpu, gpu, atol=1e-5, rtol=0)
