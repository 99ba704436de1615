"""Decoding image files into fixed-size uint8 tensors: the three paths a batch can take.

- `FolderImages`: a loader worker reads and decodes one file on the CPU (libjpeg-turbo through
  torchvision), fitted as `Fit` says;
- `FileBytes` + `decode_on_device`: workers only read bytes (`packed`: one tensor per batch),
  and the batch is decoded on the training device (nvJPEG on CUDA, on a stream of its own);
- `fit_image` / `fit_images`: the resize both share, and that `stream.py` uses for shards;
- `pixels.decode_bytes`: the one CPU decode of a file's bytes (EXIF orientation applied,
  transparency on white, 16-bit scaled, Pillow for the formats torchvision cannot read), for
  workers, shards and the device fallback.

Split out of `loader.py`, which keeps the order of batches (`BatchStream`) and their type.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset

from distill_cli.data.pixels import decode_bytes, exif_rotated, read_bytes

#: How a decoded photo becomes a fixed-size tensor: `square` = shorter side to the load size and
#: a centre square (the evaluation view); `whole` = the whole photo, aspect kept, longer side to
#: the load size, in the top-left corner of a zero canvas (the training view: random crops are
#: then drawn from the entire image, as the paper's inception crop is).
Fit = Literal["square", "whole"]


class FolderImages(Dataset):
    """Decodes one image file to a uint8 (3, S, S) tensor as `fit` says, plus its valid extent.

    A file that cannot be decoded never raises inside a worker (that would surface as a wall of
    worker traceback): the item comes back flagged, and the main process either counts it and
    uses the next good file in its place, or stops with the file's name.
    """

    def __init__(
        self,
        files: list[Path],
        labels: torch.Tensor | None,
        size: int,
        skip_bad: bool,
        fit: Fit = "square",
    ) -> None:
        self.files = files
        self.labels = labels
        self.size = size
        self.skip_bad = skip_bad
        self.fit = fit

    def __len__(self) -> int:
        return len(self.files)

    def _decode(self, path: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
        raw = read_bytes(path)
        img = None if raw is None else decode_bytes(raw)
        return None if img is None else fit_image(img, self.size, self.fit)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, int, torch.Tensor]:
        """(image, label, index of the file used, index of a bad file met or -1, extent)."""
        bad = -1
        for offset in range(len(self.files) if self.skip_bad else 1):
            used = (index + offset) % len(self.files)
            decoded = self._decode(self.files[used])
            if decoded is not None:
                label = int(self.labels[used]) if self.labels is not None else -1
                return decoded[0], label, used, bad, decoded[1]
            bad = used if bad < 0 else bad
            if not self.skip_bad:
                break
        blank = torch.zeros(3, self.size, self.size, dtype=torch.uint8)
        return blank, -1, -1, bad, torch.tensor([self.size, self.size])


class FileBytes(Dataset):
    """Reads one file's bytes: workers only do I/O; decoding happens batched on the device."""

    def __init__(self, files: list[Path], labels: torch.Tensor | None) -> None:
        self.files = files
        self.labels = labels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        raw = read_bytes(self.files[index])
        if raw is None:
            # a link to nothing, a file deleted or locked since the scan: no bytes, which the
            # device decode treats as any bad image (skipped or named, data.on_bad_image), as
            # the workers' decode does; it was a traceback from the worker
            raw = torch.empty(0, dtype=torch.uint8)
        label = int(self.labels[index]) if self.labels is not None else -1
        return raw, label, index


def packed(
    items: list[tuple[torch.Tensor, int, int]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A worker's batch of file bytes as one flat tensor plus lengths.

    A list of one tensor per file would cross the process boundary as one shared-memory file
    descriptor per file: hundreds per batch, which runs into descriptor limits and races
    ("Bad file descriptor", then a hung loader). One tensor per batch is one descriptor.
    """
    raws, labels, index = zip(*items, strict=True)
    lengths = torch.tensor([len(r) for r in raws])
    return torch.cat(raws), lengths, torch.tensor(labels), torch.tensor(index)


def fit_image(
    img: torch.Tensor, size: int, fit: Fit = "square"
) -> tuple[torch.Tensor, torch.Tensor]:
    """A decoded image as a uint8 (C, size, size) tensor and its valid (height, width).

    `square`: shorter side to `size`, centre crop (all of it valid). `whole`: longer side to
    `size`, aspect kept, in the top-left corner of a zero canvas. 16-bit images are scaled to
    uint8 first.
    """
    out, extent = fit_images(img[None], size, fit)
    return out[0], extent


def fit_images(
    imgs: torch.Tensor, size: int, fit: Fit = "square"
) -> tuple[torch.Tensor, torch.Tensor]:
    """`fit_image` for a stack of images of one size (N, C, H, W): one resize for all of them.

    Per image, a batch decoded on the GPU would cost a handful of kernel launches each (resize,
    canvas, copy): hundreds per batch, paid by the host thread that also drives training.
    Returns (N, C, size, size) and the one valid (height, width) they share.
    """
    from torchvision.transforms.v2 import functional as TF

    if imgs.dtype != torch.uint8:
        imgs = TF.to_dtype(imgs, torch.uint8, scale=True)
    if fit == "square":
        out = TF.center_crop(TF.resize(imgs, size, antialias=True), [size, size])
        return out, torch.tensor([size, size])
    height, width = imgs.shape[-2:]
    scale = size / max(height, width)
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    canvas = imgs.new_zeros(*imgs.shape[:2], size, size)
    canvas[..., :h, :w] = TF.resize(imgs, [h, w], antialias=True)
    return canvas, torch.tensor([h, w])


def decode_on_device(
    raws: list[torch.Tensor], device: torch.device, size: int, fit: Fit = "square"
) -> list:
    """Decode a batch of encoded images on `device` (nvJPEG on CUDA), fitted as `fit` says.

    JPEGs are decoded in one batched call; other formats, photos with an EXIF rotation, and a
    batch where the batched call fails, fall back to one file at a time (`decode_bytes`). An
    image that cannot be decoded comes back as None.

    On CUDA the decode runs on a stream of its own. torchvision's nvJPEG decoder writes its
    output before the work already queued on the caller's stream has run (pytorch/vision#9606),
    and PyTorch's allocator hands out a freed block as soon as it is freed on that stream: the
    decoder then overwrites tensors the training step is still about to read (the NaN loss of
    the first GPU check). On a private stream, with its own queue drained first, the decoder
    can only be handed blocks no queued kernel reads; the training stream waits for the
    result, and the result's memory is kept until that stream is done with it.
    """
    if device.type != "cuda":
        return _decode(raws, device, size, fit)
    side, main = _decode_stream(device), torch.cuda.current_stream(device)
    with torch.cuda.stream(side):
        side.synchronize()
        out = _decode(raws, device, size, fit)
    main.wait_stream(side)
    for item in out:
        if item is not None:
            item[0].record_stream(main)
    return out


_DECODE_STREAMS: dict[torch.device, torch.cuda.Stream] = {}


def _decode_stream(device: torch.device) -> torch.cuda.Stream:
    if device not in _DECODE_STREAMS:
        _DECODE_STREAMS[device] = torch.cuda.Stream(device)
    return _DECODE_STREAMS[device]


def _decode(raws: list[torch.Tensor], device: torch.device, size: int, fit: Fit) -> list:
    from torchvision.io import ImageReadMode, decode_jpeg

    out: list[torch.Tensor | None] = [None] * len(raws)
    jpeg = [i for i, r in enumerate(raws) if _is_jpeg(r) and not exif_rotated(r)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:  # (torchvision refuses an empty list: a batch of PNGs has no JPEG to batch)
            batch = [raws[i] for i in jpeg]
            decoded = decode_jpeg(batch, mode=ImageReadMode.RGB, device=device) if batch else []
            for i, img in zip(jpeg, decoded, strict=True):
                out[i] = img
        except RuntimeError:
            pass  # a corrupt file in the batch: decode the files one by one below
        for i, raw in enumerate(raws):
            if out[i] is None:  # undecodable: its slot stays None
                img = decode_bytes(raw)
                out[i] = None if img is None else img.to(device)
    return _fit_by_size(out, size, fit)


def _is_jpeg(raw: torch.Tensor) -> bool:
    """The JPEG start-of-image marker, read through numpy. As tensor ops (`raw[0] == 0xFF`,
    then `bool()`) the test was the second largest host cost in the GPU check's profile of
    the decoding thread (2,560 `aten::eq` + `item` calls for 5 batches); this is 5x cheaper."""
    head = raw.numpy()[:2]
    return len(raw) > 2 and head[0] == 0xFF and head[1] == 0xD8


def _fit_by_size(images: list[torch.Tensor | None], size: int, fit: Fit) -> list:
    """`fit_image` of each image, computed once per group of images of the same shape and
    dtype (a 16-bit PNG cannot be stacked with 8-bit images)."""
    groups: dict[tuple[tuple[int, ...], torch.dtype], list[int]] = {}
    for i, img in enumerate(images):
        if img is not None:
            groups.setdefault((tuple(img.shape), img.dtype), []).append(i)  # 16-bit PNGs
    fitted: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(images)
    for members in groups.values():
        stack = torch.stack([images[i] for i in members])  # type: ignore[misc]
        out, extent = fit_images(stack, size, fit)
        for j, i in enumerate(members):
            fitted[i] = (out[j], extent)
    return fitted
