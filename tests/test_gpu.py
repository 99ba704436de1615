"""The CUDA path: uint8 batches on the GPU, bf16 autocast, channels_last, fused AdamW, nvJPEG,
torch.compile and CUDA graphs, resume on CUDA and the out-of-memory message.

Skipped without a GPU; `benchmarks/gpu_check.py` runs them (part 1) on a lent GPU. Tests record
what they measured with `record_property`, which the check copies into its results.
"""

from __future__ import annotations

import gc
import json
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from distill_cli import api
from distill_cli.data.folders import scan_image_folder
from distill_cli.data.loader import BatchStream
from distill_cli.errors import DistillError
from distill_cli.recipe.document import load_recipe
from distill_cli.rundir.layout import RunDir
from distill_cli.train.build import build
from distill_cli.train.trainer import Trainer
from tests.conftest import fm_body, write_recipe
from tests.test_engine import StopAt

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


def test_bf16_channels_last_fused_adamw_step(tmp_path: Path) -> None:
    setup = build(load_recipe(write_recipe(tmp_path, "fm", fm_body(tmp_path / "runs", None))))
    trainer = Trainer(setup, RunDir(tmp_path / "r"))
    assert all(group.get("fused") for group in trainer.optimizer.param_groups)
    student = setup.student.module
    conv = next(m for m in student.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    batch = next(iter(setup.train_stream.epoch(0)))
    trainer.train_step(batch, 0, 0)
    torch.cuda.synchronize()
    after = student.state_dict()
    moved = [k for k, v in after.items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert moved, "one step changed no weight"
    for param in student.parameters():  # autocast computes in bf16, the weights stay fp32
        assert param.dtype == torch.float32 and bool(torch.isfinite(param).all())
    assert trainer.optimizer.state, "the fused optimizer kept no state"


def _photos(root: Path, count: int = 12) -> None:
    for i in range(count):
        folder = root / "train" / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = torch.linspace(0, 255, 64 * 48 * 3).reshape(48, 64, 3).roll(i * 97)
        Image.fromarray(pixels.to(torch.uint8).numpy()).save(folder / f"{i}.jpg", quality=92)


def test_nvjpeg_decodes_a_jpeg_folder_like_the_cpu(tmp_path: Path, record_property: Any) -> None:
    _photos(tmp_path)
    data = scan_image_folder(tmp_path / "train")
    common: dict[str, Any] = {"shuffle": False, "drop_last": False, "load_size": 32, "fit": "whole"}
    gpu = BatchStream(data, 4, torch.device("cuda"), decode_on_device=True, workers=2, **common)
    cpu = BatchStream(data, 4, torch.device("cpu"), decode_on_device=False, **common)
    diffs = []
    for g, c in zip(gpu.epoch(0), cpu.epoch(0), strict=True):
        assert g.images.is_cuda and g.images.dtype == torch.uint8
        assert torch.equal(g.extent.cpu(), c.extent)
        diffs.append((g.images.cpu().float() - c.images.float()).abs())
    diff = torch.cat(diffs)
    record_property("nvjpeg_vs_cpu_mean_abs", round(float(diff.mean()), 3))
    record_property("nvjpeg_vs_cpu_max_abs", float(diff.max()))
    assert float(diff.mean()) < 2.0  # decoders differ by rounding only
    assert gpu.bad_images == 0


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / "last.safetensors"))


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def test_resume_on_cuda_reaches_the_same_weights(tmp_path: Path, record_property: Any) -> None:
    """Deterministic kernels: resumed == uninterrupted exactly. Default kernels: measured."""
    flags = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            full = write_recipe(tmp_path, "a", fm_body(tmp_path / "a", None, 3))
            api.run(full)
            part = write_recipe(tmp_path, "b", fm_body(tmp_path / "b", None, 3))
            with pytest.raises(KeyboardInterrupt):
                api.run(part, reporter=StopAt(6))
            api.run(part, resume=True)
        ops = sorted(
            {
                str(w.message).split(" does not have")[0]
                for w in caught
                if "determin" in str(w.message)
            }
        )
        record_property("nondeterministic_ops", json.dumps(ops))
        diff = _max_diff(_weights(tmp_path / "a" / "a"), _weights(tmp_path / "b" / "b"))
        record_property("resume_max_abs_diff_deterministic", diff)
        assert diff == 0.0 or ops, f"resume differs by {diff} with no nondeterministic op named"
        assert diff < 1e-3
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags
        torch.use_deterministic_algorithms(False)
    # default (fast) kernels: how far two identical runs drift, for the docs
    again = write_recipe(tmp_path, "c", fm_body(tmp_path / "c", None, 3))
    api.run(again)
    drift = _max_diff(_weights(tmp_path / "a" / "a"), _weights(tmp_path / "c" / "c"))
    record_property("rerun_max_abs_diff_default_kernels", drift)


def test_out_of_memory_names_the_largest_batch_that_fits(
    tmp_path: Path, record_property: Any
) -> None:
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(min(1.0, 6 * 2**30 / total))  # a 6 GiB GPU
    body: dict[str, Any] = {
        "model": {"model": "resnet18", "input_size": 128},
        "data": {
            "source": "synthetic",
            "synthetic": {"num_classes": 10, "train_size": 4096, "val_size": 64, "image_size": 144},
        },
        "method": {"name": "supervised"},
        "schedule": {"steps": 1, "batch_size": 4096, "eval_batch_size": 64},
        "output": {"dir": str(tmp_path / "runs")},
    }
    try:
        with pytest.raises(DistillError) as info:
            api.train(write_recipe(tmp_path, "oom", body))
        message = str(info.value)
        del info  # its traceback holds the failed run (data, model, optimizer) in GPU memory
        gc.collect()
        torch.cuda.empty_cache()
        record_property("oom_message", message)
        assert "does not fit in GPU memory" in message
        largest = int(re.search(r"largest that fits is (\d+)", message).group(1))  # type: ignore[union-attr]
        assert 0 < largest < 4096
        body["schedule"]["batch_size"] = largest  # and it does fit
        summary = api.train(write_recipe(tmp_path, "fits", body))
        assert summary.steps == 1
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()


def _train_losses(run: Path) -> dict[int, float]:
    """Each logged training window's loss, by step (metrics.jsonl; a resumed run appends)."""
    out = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "train":
            out[int(record["step"])] = float(record["loss"])
    return out


def _rel_diffs(a: dict[int, float], b: dict[int, float], steps: list[int]) -> list[float]:
    return [abs(a[s] - b[s]) / max(abs(b[s]), 1e-12) for s in steps]


EARLY = 4  # the early losses compared (one per step: log_every 1)


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_runs_match_eager(tmp_path: Path, mode: str, record_property: Any) -> None:
    from torch._dynamo.utils import counters

    losses = {}
    for name, runtime in {"eager": {}, "compiled": {"compile": True, "compile_mode": mode}}.items():
        body = fm_body(tmp_path / name, None, epochs=2)
        body["runtime"] = runtime
        body["schedule"]["log_every"] = 1
        summary = api.run(write_recipe(tmp_path, name, body))
        assert summary.agreement_top1 is not None and summary.images_per_s
        losses[name] = _train_losses(tmp_path / name / name)
    steps = sorted(losses["eager"])[:EARLY]
    assert len(steps) == EARLY and steps == sorted(losses["compiled"])[:EARLY]
    rel = _rel_diffs(losses["compiled"], losses["eager"], steps)
    record_property(f"{mode}_early_loss_rel_diffs", json.dumps([round(r, 5) for r in rel]))
    record_property(f"{mode}_cudagraph_skips", json.dumps(dict(counters["inductor"])))
    # the same steps; kernels fused differently round differently, and the drift stays small
    assert max(rel) < 0.05, (losses, rel)


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_resume_under_compile_continues_the_uninterrupted_losses(
    tmp_path: Path, mode: str, record_property: Any
) -> None:
    """Stopped at step 5 and resumed, a compiled (or CUDA-graph) run logs the losses of the
    same run left alone: bit-identical where the kernels allow; the drift is recorded."""
    runtime = {"compile": True, "compile_mode": mode}
    runs = {}
    for name in ("whole", "resumed"):
        body = fm_body(tmp_path / name, None, epochs=3)
        body["runtime"] = runtime
        body["schedule"]["log_every"] = 1
        runs[name] = write_recipe(tmp_path, name, body)
    api.run(runs["whole"])
    with pytest.raises(KeyboardInterrupt):
        api.run(runs["resumed"], reporter=StopAt(5))
    api.run(runs["resumed"], resume=True)
    whole = _train_losses(tmp_path / "whole" / "whole")
    resumed = _train_losses(tmp_path / "resumed" / "resumed")
    after = [s for s in sorted(whole) if s > 5]
    assert after and all(s in resumed for s in after), (sorted(whole), sorted(resumed))
    rel = _rel_diffs(resumed, whole, after)
    diff = _max_diff(
        _weights(tmp_path / "whole" / "whole"), _weights(tmp_path / "resumed" / "resumed")
    )
    record_property(f"{mode}_resume_loss_rel_diffs", json.dumps([round(r, 7) for r in rel]))
    record_property(f"{mode}_resume_identical", all(r == 0.0 for r in rel))
    record_property(f"{mode}_resume_weights_max_abs_diff", diff)
    assert max(rel) < 1e-2, rel  # the tolerance; the figure itself goes to the docs


def _jpeg_bytes(count: int, size: tuple[int, int] = (500, 375)) -> list[torch.Tensor]:
    import io

    raws = []
    for i in range(count):
        pixels = torch.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3)
        buf = io.BytesIO()
        Image.fromarray(pixels.roll(i * 131).to(torch.uint8).numpy()).save(buf, "JPEG")
        raws.append(torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8))
    return raws


def _reads_corrupted(decode: Any, numel: int, rounds: int = 30) -> int:
    """Queued reads of freed tensors that came back wrong because `decode` wrote over them.

    Each round queues a long kernel, then one sum per tensor, frees the tensors while the sums
    are still queued, and decodes: a decoder that is handed those blocks and writes before the
    queue has run changes the sums (pytorch/vision#9606's reproduction).
    """
    bad = 0
    for _ in range(rounds):
        victims = [torch.full((numel,), float(i + 1), device="cuda") for i in range(6)]
        torch.cuda.synchronize()
        torch.cuda._sleep(50_000_000)  # tens of ms of GPU work queued ahead of the sums
        sums = [v.sum() for v in victims]
        del victims
        decode()
        torch.cuda.synchronize()
        bad += sum(float(s) != numel * (i + 1) for i, s in enumerate(sums))
    return bad


def test_device_decode_never_writes_over_memory_queued_work_still_reads(
    record_property: Any,
) -> None:
    """The cause of the first GPU check's NaN loss on a JPEG folder: nvJPEG wrote decoded
    pixels into blocks the training step had freed but not yet finished reading."""
    from torchvision.io import ImageReadMode, decode_jpeg

    from distill_cli.data.decode import decode_on_device

    raws = _jpeg_bytes(8)
    numel = 3 * 375 * 500 // 4  # float32 tensors the size of one decoded photo
    cuda = torch.device("cuda")
    unprotected = _reads_corrupted(
        lambda: decode_jpeg(raws, mode=ImageReadMode.RGB, device=cuda), numel
    )
    record_property("torchvision_decode_corrupted_reads", unprotected)  # the bug, where present
    ours = _reads_corrupted(lambda: decode_on_device(raws, cuda, 224, "whole"), numel)
    assert ours == 0
    # and the pixels are the ones the CPU decoder gives, up to decoder rounding
    gpu = decode_on_device(raws[:2], cuda, 224, "whole")
    cpu = decode_on_device(raws[:2], torch.device("cpu"), 224, "whole")
    for (g, g_ext), (c, c_ext) in zip(gpu, cpu, strict=True):
        assert torch.equal(g_ext, c_ext)
        assert float((g.cpu().float() - c.float()).abs().mean()) < 2.0


@pytest.mark.parametrize("method", ["function_matching", "kd", "supervised"])
def test_a_training_step_never_makes_the_host_wait_for_the_gpu(tmp_path: Path, method: str) -> None:
    """A host sync inside the step (a `.item()`, a tensor built from Python numbers on the
    device) drains the GPU's queue every step; at 224 px that was a tenth of the step time."""
    body = fm_body(tmp_path / "runs", None)
    if method != "function_matching":
        body["method"] = {
            "name": method,
            **({"mixup_alpha": 0.2} if method == "supervised" else {}),
        }
        body["method"].update({"views": "independent", "mixup": True} if method == "kd" else {})
    if method == "supervised":
        body.pop("teacher")
    body["optim"]["clip_grad_norm"] = 1.0
    setup = build(load_recipe(write_recipe(tmp_path, "fm", body)))
    trainer = Trainer(setup, RunDir(tmp_path / "r"))
    batches = iter(setup.train_stream.epoch(0))
    for step in range(2):  # first steps: optimizer state, cached constants
        trainer.train_step(next(batches), 0, step)
    torch.cuda.synchronize()
    from distill_cli.train.records import Window

    window = Window(setup.device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(2, 4):
            trainer.train_step(next(batches), 0, step, window)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert window.steps == 2 and bool(torch.isfinite(window.loss))


def test_compiled_views_draw_the_same_crops_as_eager_on_cuda() -> None:
    """runtime.compile compiles the views with the run; on CUDA too they must crop where the
    eager views crop, or a compiled run and its eager rerun would train on other pictures.
    (Compiling the box sampling too, even with inductor's fallback_random, failed this on an
    H200: the draws stay eager.)"""
    from distill_cli.data.augment import BatchAugment
    from distill_cli.models.view import ModelInfo

    images = torch.randint(0, 256, (64, 3, 72, 72), dtype=torch.uint8, device="cuda")
    extent = torch.tensor([[72, 50]] * 64, device="cuda")
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    infos = [ModelInfo("a", 10, 3, (64, 64), *imagenet, 1.0)] * 2
    infos.append(ModelInfo("b", 10, 3, (48, 48), (0.5,) * 3, (0.5,) * 3, 1.0))
    lam = torch.full((), 0.3, device="cuda")
    outs = []
    for compiled in (False, True):
        aug = BatchAugment((64, 64), crop_scale=(0.2, 1.0), compile=compiled)
        torch.manual_seed(11)
        outs.append(aug.model_inputs(images, extent, infos, lam, channels_last=True))
        outs[-1].append(torch.rand((), device="cuda"))
    for eager, fused in zip(*outs, strict=True):
        torch.testing.assert_close(fused, eager, atol=1e-3, rtol=1e-3)
