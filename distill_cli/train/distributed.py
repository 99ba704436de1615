"""Multi-process training through torch.distributed, launched by torchrun.

`world.World` says which process this is; this module joins the process group (NCCL on GPUs,
gloo on CPUs), leaves it, and synchronises BatchNorm statistics across processes: torch's
SyncBatchNorm (through timm's converter) on CUDA, a hand-written equivalent where torch's
refuses to run (CPU tensors, gloo).
"""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta

import torch
import torch.distributed as dist

from distill_cli.errors import EXIT_USAGE, DistillError, RunFailed
from distill_cli.train.world import World


def init(world: World, device: torch.device) -> None:
    """Join the process group (once per process)."""
    if not world.distributed or dist.is_initialized():
        return
    if world.init_method is None:
        raise DistillError(
            "srun started several processes but not where they meet",
            "MASTER_ADDR/MASTER_PORT",
            "export MASTER_ADDR=$(scontrol show hostnames $SLURM_JOB_NODELIST | head -n1) and "
            "MASTER_PORT=29500 in the job script",
        )
    global _store
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # torchrun's processes share its agent's store, which keeps the keys of the processes it
    # ran before a restart (--max-restarts): meeting under the same keys, the new ones read
    # the dead ones' addresses and wait forever in gloo's connect. Keys of their own per restart.
    # srun's tasks meet at MASTER_ADDR:MASTER_PORT (tcp://), in a store rank 0 holds.
    store, _, _ = next(dist.rendezvous(world.init_method, world.rank, world.size))
    _store = dist.PrefixStore(f"distill/restart{world.restarts}", store)
    dist.init_process_group(backend=backend, store=_store, rank=world.rank, world_size=world.size)


#: The store the process group met in: where a process that stops on an error rank 0 may not
#: meet (its node's copy of the data is missing) leaves that error for rank 0 to say.
_store: dist.Store | None = None
_ERROR_KEY = "distill/error/{rank}"


class PeerFailed(DistillError):
    """Another process's error, said by rank 0: that process stopped on an input only it met
    (a node whose data folder is missing) and, being a rank other than 0, said nothing."""

    own = False


def tell_main(exc: DistillError, world: World) -> None:
    """Leave this process's error (a rank other than 0, about to exit without a word) in the
    group's store, so that rank 0, which notices only that a peer is gone, says why. Without
    it the run ended on `lost contact with the other processes` and no process said the cause.
    """
    if _store is None or world.is_main or isinstance(exc, PeerLost):  # rank 0 is the lost one
        return
    record = {"what": exc.what, "where": exc.where, "hint": exc.hint, "code": exc.code}
    with contextlib.suppress(Exception):  # rank 0 gone too: nobody is left to tell
        _store.set_timeout(timedelta(seconds=10))  # a node cut off must not wait 30 minutes
        _store.set(_ERROR_KEY.format(rank=world.rank), json.dumps(record))


def _peer_error(world: World) -> PeerFailed | None:
    """The error another process left in the store before it exited (`tell_main`), if any."""
    if _store is None:
        return None
    for rank in range(world.size):
        key = _ERROR_KEY.format(rank=rank)
        try:
            if rank == world.rank or not _store.check([key]):
                continue
            record = json.loads(_store.get(key))
        except Exception:  # the store's host is gone: nothing to read
            return None
        return PeerFailed(
            f"rank {rank} of {world.size}: {record['what']}",
            record.get("where"),
            record.get("hint"),
            code=int(record.get("code", EXIT_USAGE)),
        )
    return None


class PeerLost(RunFailed):
    """A collective failed because another process of the run is gone (killed, crashed, its
    node lost): a consequence met by every survivor, so rank 0 alone says it (`errors`)."""

    own = False


def peer_lost(exc: BaseException, world: World) -> PeerLost | PeerFailed | None:
    """`exc` as one line when it is the process group's failure (a peer's socket closed, a
    collective timed out) rather than a bug; None otherwise.

    gloo reports a dead peer as a plain RuntimeError (`Read error [...]: Connection reset by
    peer`) from whichever collective this process was in; NCCL and the store raise torch's
    DistError types. Without this the survivors each printed a 60-line traceback.
    """
    if not world.distributed or not isinstance(exc, RuntimeError):
        return None
    text = str(exc)
    if not (isinstance(exc, dist.DistError) or "gloo" in text or "NCCL" in text):
        return None
    told = _peer_error(world)  # the peer said why before it went: that is the line
    if told is not None:
        return told
    detail = text.split("] ", 1)[-1].split(". This is typically")[0].strip().splitlines()
    return PeerLost(
        f"lost contact with the other processes ({detail[0] if detail else type(exc).__name__})",
        f"rank {world.rank} of {world.size}",
        "another process of the run stopped: its error line, or the launcher's report of its "
        "exit code, says why; --resume continues from the last checkpoint",
    )


def joined() -> bool:
    return dist.is_available() and dist.is_initialized()


def shutdown() -> None:
    global _store
    _store = None
    if dist.is_initialized():
        dist.destroy_process_group()


def has_batchnorm(module: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())


def sync_batchnorm(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`module` with every BatchNorm layer normalizing over the global batch.

    Under several processes each one sees 1/N of every batch, so plain BatchNorm would
    normalize with per-process statistics and train a different model than one process does.
    On CUDA this is torch's SyncBatchNorm, swapped in by timm's converter (which turns timm's
    fused BatchNormAct2d into SyncBatchNormAct, keeping the activation and drop-path after the
    norm); the state-dict keys stay the same, so checkpoints are interchangeable with
    single-process runs. torch's layer refuses CPU tensors, so on CPU (gloo) the layers are
    patched with `sync_batchnorm_by_hand`, which computes the same statistics and gradients.
    """
    if device.type == "cuda":
        from timm.layers import convert_sync_batchnorm

        return convert_sync_batchnorm(module)
    sync_batchnorm_by_hand(module)
    return module


def sync_batchnorm_by_hand(module: torch.nn.Module) -> int:
    """Patch every BatchNorm layer of `module` in place to use global statistics; how many.

    Each training-mode BatchNorm sums its per-channel count, sum and sum of squares over all
    processes (an autograd-aware all-reduce: gradients flow through the shared statistics
    exactly as in one process, as in torch's SyncBatchNorm) and updates its running statistics
    from the global ones (unbiased variance, as torch does). Only for backends where torch's
    SyncBatchNorm does not run (CPU tensors under gloo).
    """
    layers = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for layer in layers:
        layer.forward = _synced_forward.__get__(layer)  # type: ignore[method-assign]
    return len(layers)


def _synced_forward(bn: torch.nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    if not bn.training or not dist.is_initialized() or dist.get_world_size() == 1:
        return type(bn).forward(bn, x)
    channels = x.shape[1]
    dims = [0, *range(2, x.dim())]
    xf = x.float()
    count = torch.full((1,), x.numel() / channels, device=x.device, dtype=torch.float32)
    stats = _SumOverProcesses.apply(torch.cat([xf.sum(dims), (xf * xf).sum(dims), count]))
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


class _SumOverProcesses(torch.autograd.Function):
    """The sum of a tensor over all processes, with the gradient summed likewise (each
    process's statistics feed every process's loss). torch's own,
    `torch.distributed.nn.functional.all_reduce`, warned as deprecated once per process on
    every run of several CPU processes."""

    @staticmethod
    def forward(ctx: object, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        out = grad.contiguous().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out
