"""Decoding image files into fixed-size uint8 tensors: the three paths a batch can take.

- `FolderImages`: a loader worker reads and decodes one file on the CPU (libjpeg-turbo through
  torchvision), fitted as `Fit` says;
- `FileBytes` + `decode_on_device`: workers only read bytes (`packed`: one tensor per batch),
  and the batch is decoded on the training device (nvJPEG on CUDA, on a stream of its own);
- `fit_image` / `fit_images`: the resize both share, and that `stream.py` uses for shards;
- `decode_bytes`: the one CPU decode of a file's bytes (EXIF orientation applied, Pillow
  for the formats torchvision cannot read), for workers, shards and the device fallback.

Split out of `loader.py`, which keeps the order of batches (`BatchStream`) and their type.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

#: How a decoded photo becomes a fixed-size tensor: `square` = shorter side to the load size and
#: a centre square (the evaluation view); `whole` = the whole photo, aspect kept, longer side to
#: the load size, in the top-left corner of a zero canvas (the training view: random crops are
#: then drawn from the entire image, as the paper's inception crop is).
Fit = Literal["square", "whole"]


def read_bytes(path: Path) -> torch.Tensor | None:
    """A file's bytes as a uint8 tensor; None when it cannot be read (gone, a link to nothing,
    locked). Read by Python, not torchvision's `read_file`, which takes the path as UTF-8: a
    name that is not (a zip from an old Windows tool unpacked on Linux: `f\\xf6to.jpg`) made
    every such photo a "bad file", a whole class of them skipped."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return (
        torch.frombuffer(bytearray(data), dtype=torch.uint8)
        if data
        else torch.empty(0, dtype=torch.uint8)
    )


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


#: What transparent pixels are shown on: white, as a browser or viewer on a white page shows a
#: cut-out photo. Dropping the alpha instead (PIL's `convert("RGB")`, torchvision's RGB mode)
#: shows whatever colour the editor left under it: usually black, sometimes noise.
BACKGROUND = 255

#: Pillow modes holding more than 8 bits of one channel, whose `convert("RGB")` clips every
#: value above 255 to white (a 16-bit scan or depth map became a white image): read as 16-bit
#: and scaled down as torchvision's 16-bit PNGs are. "I" is how Pillow opens 16-bit data too.
_WIDE_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


def decode_bytes(raw: torch.Tensor) -> torch.Tensor | None:
    """One encoded image (uint8 bytes) as (3, H, W) uint8 RGB pixels as a viewer shows them, on
    the CPU; None when it cannot be decoded. The one decode of a file on the CPU, for every path
    (workers, shards, the device fallback), so training, evaluation and export see alike.

    EXIF orientation is applied (a phone photo stored sideways is seen upright, as the user
    sees it), and the formats torchvision cannot decode (BMP, TIFF, ...) go through Pillow, so a
    file with an accepted suffix is never skipped as "bad" for its format alone. An animated
    GIF or WebP is its first frame, as Pillow and a thumbnail show it (torchvision gave all
    frames, (N, 3, H, W), which crashed the resize of the batch). `flattened` makes every
    other kind of pixel RGB: transparency on white, 16-bit scaled, grey repeated.
    """
    from torchvision.io import ImageReadMode, decode_image

    alpha = _transparency(raw)
    if alpha == "colour":
        return _decode_with_pillow(raw)
    mode = ImageReadMode.RGB_ALPHA if alpha == "channel" else ImageReadMode.RGB
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            img = decode_image(raw, mode=mode, apply_exif_orientation=True)
    except (RuntimeError, OSError, ValueError):
        return _decode_with_pillow(raw)
    return flattened(img[0] if img.ndim == 4 else img)


def _transparency(raw: torch.Tensor) -> Literal["none", "channel", "colour"]:
    """How an encoded image says which pixels are transparent, read from its header.

    "channel": a PNG of colour type 4 or 6 (grey or RGB plus alpha, 8 or 16 bits) or a WebP,
    which torchvision decodes with their alpha correctly. "colour": a PNG with a `tRNS` chunk
    (a palette or a colour marked transparent), left to Pillow: torchvision ignores it for
    grey, and its alpha mode garbles PNGs of 1, 2 or 4 bits (an alpha of 1 for a 1-bit scan
    made it white). Anything else ("none") is decoded as RGB: a JPEG has no alpha.
    """
    buf = raw.numpy()
    if buf[:4].tobytes() == b"RIFF" and buf[8:12].tobytes() == b"WEBP":
        return "channel"
    if buf[:8].tobytes() != b"\x89PNG\r\n\x1a\n" or len(buf) < 26:
        return "none"
    if buf[25] in (4, 6):
        return "channel"
    pos = 8
    while pos + 8 <= len(buf):  # the chunks before the image data
        kind = buf[pos + 4 : pos + 8].tobytes()
        if kind == b"tRNS":
            return "colour"
        if kind == b"IDAT":
            break
        pos += 12 + int.from_bytes(buf[pos : pos + 4].tobytes(), "big")
    return "none"


def flattened(img: torch.Tensor) -> torch.Tensor:
    """(C, H, W) pixels of 1 to 4 channels, 8 or 16 bits, as (3, H, W) uint8 RGB.

    16-bit values are scaled (the top 8 bits, torchvision's `to_dtype`), never clipped; grey
    (1 channel, or 2 with alpha) is repeated; alpha is composited on `BACKGROUND`.
    """
    from torchvision.transforms.v2 import functional as TF

    if img.dtype != torch.uint8:
        img = TF.to_dtype(img, torch.uint8, scale=True)
    colour, alpha = (img[:-1], img[-1:]) if img.shape[0] in (2, 4) else (img, None)
    colour = colour.expand(3, -1, -1) if colour.shape[0] == 1 else colour
    if alpha is None:
        return colour.contiguous()
    a = alpha.float() / 255
    return (colour.float() * a + BACKGROUND * (1 - a)).round_().to(torch.uint8)


def _decode_with_pillow(raw: torch.Tensor) -> torch.Tensor | None:
    import io

    from PIL import Image, ImageOps, UnidentifiedImageError

    from distill_cli.data.formats import register_plugins

    register_plugins()  # HEIC/HEIF when pillow-heif is installed (a spawned worker, too)

    try:
        with warnings.catch_warnings():
            # the user's own photos: a 100 MP panorama is no attack (above Pillow's hard limit,
            # about 179 MP, it is still refused and counted as a bad file)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw.numpy().tobytes())) as img:
                return flattened(_pillow_pixels(ImageOps.exif_transpose(img)))
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError):
        return None


def _pillow_pixels(img: PILImage) -> torch.Tensor:
    """A Pillow image's pixels as (C, H, W) for `flattened`: RGB, RGBA, or one 16-bit channel.

    Wide integer modes are read as 16-bit (`_WIDE_MODES`); a float image ("F") as values in
    [0, 1]; anything with transparency (RGBA, LA, a palette with a transparent colour) keeps
    its alpha; every other mode (CMYK, 1-bit, palette, YCbCr) converts to RGB.
    """
    import numpy as np

    if img.mode in _WIDE_MODES:
        wide = np.asarray(img).astype(np.int64).clip(0, 65535).astype(np.uint16)
        return torch.from_numpy(wide)[None]
    if img.mode == "F":
        grey = (np.asarray(img).clip(0, 1) * 255).round().astype(np.uint8)
        return torch.from_numpy(grey)[None]
    alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    pixels = np.array(img.convert("RGBA" if alpha else "RGB"))
    return torch.from_numpy(pixels).permute(2, 0, 1)


def exif_rotated(raw: torch.Tensor) -> bool:
    """Whether a JPEG's EXIF orientation asks for a rotation or flip (the batched device
    decoder cannot apply it). Read from the bytes where the tag lives (the APP1 segment's
    first directory), a few element reads per file: no decoder, no copy of the file."""
    buf = raw.numpy()
    pos, end = 2, len(buf)
    while pos + 10 <= end and buf[pos] == 0xFF and 0xE0 <= buf[pos + 1] <= 0xEF:  # APPn
        length = int(buf[pos + 2]) << 8 | int(buf[pos + 3])
        if buf[pos + 1] == 0xE1 and buf[pos + 4 : pos + 10].tobytes() == b"Exif\x00\x00":
            return _orientation(buf[pos + 10 : pos + 2 + length].tobytes()) not in (0, 1)
        pos += 2 + length
    return False


def _orientation(tiff: bytes) -> int:
    """The Orientation tag (0x0112) of EXIF's first directory; 0 when absent or unreadable."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 0

    def num(at: int, size: int) -> int:
        return int.from_bytes(tiff[at : at + size], order)  # type: ignore[arg-type]

    ifd = num(4, 4)
    for k in range(num(ifd, 2) if ifd + 2 <= len(tiff) else 0):
        entry = ifd + 2 + 12 * k
        if entry + 12 > len(tiff):
            break
        if num(entry, 2) == 0x0112:
            return num(entry + 8, 2)
    return 0


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
