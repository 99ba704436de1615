"""What the peers of the GPU check (timm's train.py, torchdistill) share: the same data as distill
and the same timing rule, so their figures sit beside distill's without a conversion.

- data: a JPEG folder (`train/<class>/*.jpg`, `val/...`) read by torchvision's ImageFolder in
  DataLoader workers, or Fashion-MNIST held in memory as uint8 tensors (the small-image case);
  the Fashion-MNIST files are read by distill's own IDX reader, and the grey images go to
  3-channel models as RGB normalized with the model's own timm statistics, as distill does.
- timing: images/s per window of `window` steps, synchronised, after `warmup` steps; the median
  of the windows and their spread, the rule `distill bench train` uses.
- accuracy: top-1 on the validation split after every epoch, with the seconds since training
  started, so "time to a given accuracy" is read off the curve.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset


def fmnist_tensors(root: Path, split: str, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 1, 28, 28) and int64 labels, read by distill's IDX reader."""
    from distill_cli.data.sources import load_fashion_mnist

    data = load_fashion_mnist(root, split)
    assert data.images is not None and data.labels is not None
    n = len(data) if limit is None else min(limit, len(data))
    return data.images[:n], data.labels[:n]


class FMNISTPIL(Dataset):
    """Fashion-MNIST in memory as RGB PIL images, for loaders that take PIL transforms (timm)."""

    def __init__(self, root: Path, split: str, limit: int | None, transform: Any = None) -> None:
        self.images, self.labels = fmnist_tensors(root, split, limit)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image

        img = Image.fromarray(self.images[i, 0].numpy(), mode="L").convert("RGB")
        return (self.transform(img) if self.transform else img), int(self.labels[i])


def jpeg_loaders(
    root: Path, size: int, batch: int, workers: int, mean: Any, std: Any
) -> tuple[DataLoader, DataLoader]:
    """torchvision's ImageFolder with the usual inception crop + flip; centre crop for val."""
    from torchvision import datasets, transforms

    norm = transforms.Normalize(mean, std)
    train_tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            norm,
        ]
    )
    val_tf = transforms.Compose(
        [transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor(), norm]
    )
    kw: dict[str, Any] = {"num_workers": workers, "pin_memory": torch.cuda.is_available()}
    if workers:
        kw["persistent_workers"] = True
    train = DataLoader(
        datasets.ImageFolder(str(root / "train"), train_tf),
        batch,
        shuffle=True,
        drop_last=True,
        **kw,
    )
    val = DataLoader(datasets.ImageFolder(str(root / "val"), val_tf), batch, **kw)
    return train, val


def fmnist_loaders(
    root: Path,
    size: int,
    batch: int,
    limit: int | None,
    device: torch.device,
    mean: Any,
    std: Any,
) -> tuple[Any, Any]:
    """Fashion-MNIST held on the device; each batch is cropped/flipped/resized there, made RGB
    and normalized with `mean`/`std` (the student's)."""
    train = TensorDataset(*(t.to(device) for t in fmnist_tensors(root, "train", limit)))
    val_limit = None if limit is None else max(256, limit // 4)
    val = TensorDataset(*(t.to(device) for t in fmnist_tensors(root, "test", val_limit)))
    mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)

    def prepare(x: torch.Tensor, train_mode: bool) -> torch.Tensor:
        x = x.float().div_(255)
        if train_mode:  # a random shift-crop and flip per batch, the cheap GPU augmentation
            pad = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
            i, j = torch.randint(0, 5, (2,)).tolist()
            x = pad[:, :, i : i + 28, j : j + 28]
            if torch.rand(()) < 0.5:
                x = x.flip(3)
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear")
        return (x.expand(-1, 3, -1, -1) - mean_t) / std_t

    class Loader:
        def __init__(self, ds: TensorDataset, train_mode: bool) -> None:
            self.ds, self.train_mode = ds, train_mode

        def __len__(self) -> int:
            n = len(self.ds)
            return n // batch if self.train_mode else -(-n // batch)

        def __iter__(self) -> Any:
            images, labels = self.ds.tensors
            order = (
                torch.randperm(len(labels), device=device)
                if self.train_mode
                else torch.arange(len(labels), device=device)
            )
            for k in range(len(self)):
                idx = order[k * batch : (k + 1) * batch]
                yield prepare(images[idx], self.train_mode), labels[idx]

    return Loader(train, True), Loader(val, False)


@dataclass
class PeerResult:
    """One peer run: what ran, its throughput and its accuracy curve (written as JSON)."""

    peer: str
    version: str
    command: str
    data: str
    device: str
    batch: int
    windows_images_per_s: list[float] = field(default_factory=list)
    images_per_s: float | None = None
    spread: list[float] | None = None
    evals: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float | None = None
    notes: list[str] = field(default_factory=list)

    def finish(self) -> None:
        if self.windows_images_per_s:
            self.images_per_s = statistics.median(self.windows_images_per_s)
            self.spread = [min(self.windows_images_per_s), max(self.windows_images_per_s)]

    def write(self, path: Path) -> None:
        self.finish()
        path.write_text(json.dumps(asdict(self), indent=2))


class Windows:
    """Images/s per window of `window` steps after `warmup` steps (distill bench train's rule)."""

    def __init__(self, device: torch.device, warmup: int, window: int) -> None:
        self.device, self.warmup, self.window = device, warmup, window
        self.step, self.images, self.start = 0, 0, 0.0
        self.values: list[float] = []

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def tick(self, batch: int) -> None:
        self.step += 1
        if self.step == self.warmup:
            self._sync()
            self.start, self.images = time.perf_counter(), 0
        elif self.step > self.warmup:
            self.images += batch
            if (self.step - self.warmup) % self.window == 0:
                self._sync()
                now = time.perf_counter()
                self.values.append(self.images / (now - self.start))
                self.start, self.images = now, 0


def top1(model: torch.nn.Module, loader: Any, device: torch.device) -> float:
    """Top-1 (%) of `model` over `loader`, eval mode, no grad."""
    model.eval()
    right = total = 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            right += int((model(x).argmax(1) == y).sum())
            total += len(y)
    model.train()
    return 100.0 * right / max(1, total)
