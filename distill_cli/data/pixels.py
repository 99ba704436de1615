"""One encoded image as RGB pixels as a viewer shows it: the one CPU decode of a photo's bytes.

Every path that decodes on the CPU comes here (the loader's workers, shards and parquet, the
device path's fallback for what nvJPEG cannot take), so training, evaluation and export's
images agree. The rules, for users, are in docs/data.md: EXIF orientation applied,
transparency composited on `BACKGROUND`, 16-bit values scaled, grey repeated. Split out of
`decode.py`, which fits decoded pixels to a size and batches them.
"""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage


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
    sees it). Every PNG goes through Pillow (`_png_intact`: libpng in torchvision killed the
    process on damaged ones; a PNG with a wrong CRC is None at once), and so do the formats
    torchvision cannot decode (BMP, TIFF, ...), so a
    file with an accepted suffix is never skipped as "bad" for its format alone. An animated
    GIF or WebP is its first frame, as Pillow and a thumbnail show it (torchvision gave all
    frames, (N, 3, H, W), which crashed the resize of the batch). `flattened` makes every
    other kind of pixel RGB: transparency on white, 16-bit scaled, grey repeated.
    """
    from torchvision.io import ImageReadMode, decode_image

    how = _route(raw)
    if how == "damaged":
        return None
    if how == "pillow":
        return _decode_with_pillow(raw)
    mode = ImageReadMode.RGB_ALPHA if how == "rgba" else ImageReadMode.RGB
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            img = decode_image(raw, mode=mode, apply_exif_orientation=True)
    except (RuntimeError, OSError, ValueError):
        return _decode_with_pillow(raw)
    return flattened(img[0] if img.ndim == 4 else img)


def _route(raw: torch.Tensor) -> Literal["rgb", "rgba", "pillow", "damaged"]:
    """How to decode an encoded image, read from its header: torchvision in RGB or RGBA mode,
    Pillow where torchvision would show it wrong or crash, or not at all ("damaged").

    "rgba": a WebP, whose alpha torchvision decodes correctly. "pillow": every PNG (`_png`);
    a WebP with an EXIF rotation (torchvision does not apply it: a phone photo saved as WebP
    was sideways); a GIF whose first frame has a transparent colour (torchvision shows the
    colour stored under it). "damaged": a PNG whose chunk checksums are wrong. Anything else
    is RGB: a JPEG has no alpha.
    """
    buf = raw.numpy()
    if buf[:4].tobytes() == b"RIFF" and buf[8:12].tobytes() == b"WEBP":
        return "pillow" if _webp_rotated(buf) else "rgba"
    if buf[:4].tobytes() == b"GIF8":  # the first graphic control extension's transparency flag
        head = buf[:65536].tobytes()
        at = head.find(b"\x21\xf9\x04")
        return "pillow" if at >= 0 and at + 3 < len(head) and head[at + 3] & 1 else "rgb"
    if buf[:8].tobytes() == b"\x89PNG\r\n\x1a\n":
        return "pillow" if _png_intact(buf) else "damaged"
    return "rgb"


def _png_intact(buf: np.ndarray) -> bool:
    """Whether every chunk of a PNG has its right CRC (and none is cut short).

    Every PNG is decoded by Pillow: libpng inside torchvision's decoder handles its own
    errors in a way that kills the process (a segmentation fault: the run, or a loader worker,
    gone without a message) on any damage it meets: a flipped bit in the compressed data,
    bytes rewritten with their CRCs made right (a repair tool, a bad converter), an IHDR out of
    range, a chunk missing. `benchmarks/fuzz_decode.py` found each; Pillow raises an error for
    all of them, which makes the file a bad file like any other. Pillow's own decode costs
    about what torchvision's did (docs/data.md gives the figures), and it also shows a palette,
    a `tRNS` colour and 1-, 2- and 4-bit grey as a viewer does, which torchvision did not.

    Pillow does not check the CRC of the image data, so a PNG whose chunks fail their CRC is a
    bad file before any decode: the bytes are not what was written, even where they inflate.
    One CRC per chunk is about 1% of the decode's time.
    """
    pos, end = 8, len(buf)
    while pos + 12 <= end:
        size = int.from_bytes(buf[pos : pos + 4].tobytes(), "big")
        if pos + 12 + size > end:
            return False  # cut short
        crc = int.from_bytes(buf[pos + 8 + size : pos + 12 + size].tobytes(), "big")
        if zlib.crc32(buf[pos + 4 : pos + 8 + size]) != crc:
            return False
        if buf[pos + 4 : pos + 8].tobytes() == b"IEND":
            break
        pos += 12 + size
    return True


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
    [0, 1] (NaN or infinite pixels: a bad file, ValueError); anything with transparency (RGBA,
    LA, a palette with a transparent colour) keeps its alpha; every other mode (CMYK, 1-bit,
    palette, YCbCr) converts to RGB.
    """
    if img.mode in _WIDE_MODES:
        wide = np.asarray(img).astype(np.int64).clip(0, 65535).astype(np.uint16)
        return torch.from_numpy(wide)[None]
    if img.mode == "F":
        values = np.asarray(img)
        if not np.isfinite(values).all():  # NaN became 0 (black) in the cast, without a word
            raise ValueError("the float image holds NaN or infinite pixels")
        grey = (values.clip(0, 1) * 255).round().astype(np.uint8)
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


def _webp_rotated(buf: np.ndarray) -> bool:
    """Whether a WebP's EXIF chunk asks for a rotation or flip, which torchvision's WebP decoder
    does not apply (a phone photo saved as WebP was seen sideways): Pillow decodes those."""
    pos = 12
    while pos + 8 <= len(buf):
        size = int.from_bytes(buf[pos + 4 : pos + 8].tobytes(), "little")
        if buf[pos : pos + 4].tobytes() == b"EXIF":
            tiff = buf[pos + 8 : pos + 8 + size].tobytes()
            return _orientation(tiff.removeprefix(b"Exif\x00\x00")) not in (0, 1)
        pos += 8 + size + (size & 1)
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
