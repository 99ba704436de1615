"""Precomputed teacher predictions, for the paper's "fixed teacher" ablation.

Function matching runs the teacher online on every batch; the ablation it beats computes the
teacher's predictions once, on a fixed centre crop of every training image, and reuses them.
The predictions are cached on disk under a key made of the teacher (name, input config, a hash
of its weights) and the data (a hash of its pixels or file list), so a second run with the same
teacher and data loads them instead of recomputing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from safetensors.torch import save as st_save

from distill_cli.data.loader import BatchStream
from distill_cli.errors import DistillError
from distill_cli.files import atomic_write
from distill_cli.models.create import Net
from distill_cli.models.view import eval_pixels, normalize


def _fingerprint_tensors(tensors: list[torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(
            t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    return digest.hexdigest()


def cache_key(teacher: Net, stream: BatchStream) -> str:
    """Identifies (teacher weights + input config, training images) for the cache file name."""
    data = stream.data
    if data.images is not None:
        data_id = _fingerprint_tensors([data.images])
    else:
        files = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in data.files or []]
        data_id = hashlib.sha256(json.dumps(files).encode()).hexdigest()
    weights = _fingerprint_tensors(list(teacher.module.state_dict().values()))
    spec = json.dumps({"teacher": teacher.info.to_dict(), "weights": weights, "data": data_id})
    return hashlib.sha256(spec.encode()).hexdigest()[:24]


@torch.no_grad()
def compute_targets(teacher: Net, stream: BatchStream) -> torch.Tensor:
    """Teacher logits for every training image, on its centre-crop eval view, in dataset order."""
    out = torch.empty(len(stream.data), teacher.info.num_classes, device=stream.device)
    ordered = stream.ordered()
    teacher.module.eval()
    for batch in ordered.epoch(0):
        x = normalize(eval_pixels(batch.images, teacher.info), teacher.info)
        out[batch.index] = teacher(x).float()
    return out


def streamed_refused() -> DistillError:
    """Fixed targets are looked up by an image's position: a stream has no fixed order. Known
    from the recipe (`data.source`), so `FunctionMatching.check_recipe` raises it first."""
    return DistillError(
        "precomputed teacher targets need the images in a fixed order: not for streamed data",
        "method.teacher_targets",
        "use an image folder, or teacher_targets: online",
    )


def load_or_build(teacher: Net, stream: BatchStream, cache_dir: Path) -> tuple[torch.Tensor, str]:
    """The cached targets (on the stream's device) and whether they were 'loaded' or 'built'."""
    if not isinstance(stream, BatchStream):
        raise streamed_refused()
    path = cache_dir / "teacher_targets" / f"{cache_key(teacher, stream)}.safetensors"
    if path.is_file():
        return load_file(str(path))["logits"].to(stream.device), "loaded"
    logits = compute_targets(teacher, stream)
    atomic_write(path, st_save({"logits": logits.to("cpu").contiguous()}))
    return logits, "built"
