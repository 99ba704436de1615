"""Multi-process training through torch.distributed, launched by torchrun.

`world.World` says which process this is; this module joins the process group (NCCL on GPUs,
gloo on CPUs), leaves it, and synchronises BatchNorm statistics across processes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from distill_cli.train.world import World


def init(world: World, device: torch.device) -> None:
    """Join the process group (once per process)."""
    if not world.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)


def joined() -> bool:
    return dist.is_available() and dist.is_initialized()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def has_batchnorm(module: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())


def sync_batchnorm(module: torch.nn.Module) -> int:
    """Make every BatchNorm layer of `module` normalize over the global batch; returns how many.

    Under several processes each one sees 1/N of every batch, so plain BatchNorm would
    normalize with per-process statistics and train a different model than one process does.
    Here each training-mode BatchNorm sums its per-channel count, sum and sum of squares over
    all processes (an autograd-aware all-reduce: gradients flow through the shared statistics
    exactly as in one process) and updates its running statistics from the global ones.
    Unlike torch's SyncBatchNorm it runs on gloo (CPU) as on NCCL, keeps timm's fused
    BatchNormAct layers (activation and drop-path after the norm) and changes no state-dict
    key, so checkpoints are interchangeable with single-process runs.
    """
    layers = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for layer in layers:
        layer.forward = _synced_forward.__get__(layer)  # type: ignore[method-assign]
    return len(layers)


def _synced_forward(bn: torch.nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    if not bn.training or not dist.is_initialized() or dist.get_world_size() == 1:
        return type(bn).forward(bn, x)
    from torch.distributed.nn.functional import all_reduce

    channels = x.shape[1]
    dims = [0, *range(2, x.dim())]
    xf = x.float()
    count = torch.full((1,), x.numel() / channels, device=x.device, dtype=torch.float32)
    stats = all_reduce(torch.cat([xf.sum(dims), (xf * xf).sum(dims), count]))
    n = stats[-1]
    mean = stats[:channels] / n
    var = (stats[channels : 2 * channels] / n - mean * mean).clamp_min(0)
    if bn.track_running_stats and bn.running_mean is not None and bn.running_var is not None:
        with torch.no_grad():
            assert bn.num_batches_tracked is not None
            bn.num_batches_tracked.add_(1)
            momentum = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
            unbiased = var.detach() * n / (n - 1).clamp_min(1)
            bn.running_mean.lerp_(mean.detach().to(bn.running_mean.dtype), momentum)
            bn.running_var.lerp_(unbiased.to(bn.running_var.dtype), momentum)
    shape = [1, channels] + [1] * (x.dim() - 2)
    y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + bn.eps)
    if bn.affine:
        y = y * bn.weight.view(shape) + bn.bias.view(shape)
    y = y.to(x.dtype)
    # timm's BatchNormAct2d: the norm, then drop and activation, in one module
    if hasattr(bn, "drop") and hasattr(bn, "act"):
        y = bn.act(bn.drop(y))
    return y
