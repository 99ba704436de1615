"""Image files that hold more than one picture, found from their headers before any decode.

A multi-page TIFF (a scanned document, a microscope's z-stack or time series, a fax) and an
animated GIF, WebP or PNG (APNG) are each read as their first frame (`pixels.decode_bytes`), as
a file browser's thumbnail shows them: the run has one image per file and one label per image.
That choice was silent: a folder of 40-page TIFFs trained on 1 page in 40, and nothing said so.
The run and its plan now say how many files of each split hold several frames and name one, so
a user who meant every page splits the files first.

Cheap: only files whose suffix allows several frames are opened (TIFF, GIF, WebP, PNG), and of
those only the headers are read (PNG: the chunk list up to the first image data; WebP: the
`VP8X` flags and chunk list; TIFF: the chain of image directories; GIF: the block list, whose
image data is skipped by its lengths). Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from distill_cli.data.fingerprint import relative_name

if TYPE_CHECKING:
    from distill_cli.data import DataBundle

#: The suffixes of formats that can hold several frames (`.apng`: an animated PNG).
SUFFIXES = frozenset({".tif", ".tiff", ".gif", ".webp", ".png", ".apng"})
#: Directories, chunks or blocks walked at most per file: a damaged header that loops or runs
#: on is a bad file for the decoder to name, not a scan that never ends.
_MOST = 100_000


def frame_count(path: Path) -> int:
    """How many frames `path` holds, from its header: 1 for a single picture (or a file that is
    not one of the formats, or is unreadable: the decoder decides about those); for a GIF, 2
    means "two or more" (counting them all would read every frame's data)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(32)
            if head.startswith(b"\x89PNG\r\n\x1a\n"):
                return _png(fh)
            if head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8X":
                return _webp(fh, head)
            if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
                return _tiff(fh, head)
            if head[:4] == b"GIF8":
                return _gif(fh, head)
    except (OSError, ValueError, IndexError):
        pass
    return 1


def _png(fh: BinaryIO) -> int:
    """An APNG's `acTL` chunk (frame count) comes before its first `IDAT`."""
    fh.seek(8)
    for _ in range(_MOST):
        header = fh.read(8)
        if len(header) < 8:
            return 1
        size, kind = int.from_bytes(header[:4], "big"), header[4:]
        if kind == b"acTL":
            return max(1, int.from_bytes(fh.read(4), "big"))
        if kind in (b"IDAT", b"IEND"):
            return 1
        fh.seek(size + 4, 1)  # the chunk's data and CRC
    return 1


def _webp(fh: BinaryIO, head: bytes) -> int:
    """An extended WebP's animation flag (bit 1 of `VP8X`'s flags), then its `ANMF` chunks."""
    if not head[20] & 0x02:
        return 1
    frames, pos = 0, 12 + 8 + int.from_bytes(head[16:20], "little")
    for _ in range(_MOST):
        fh.seek(pos)
        header = fh.read(8)
        if len(header) < 8:
            break
        size = int.from_bytes(header[4:], "little")
        frames += header[:4] == b"ANMF"
        pos += 8 + size + (size & 1)
    return max(1, frames)


def _tiff(fh: BinaryIO, head: bytes) -> int:
    """The chain of image file directories (pages), classic or BigTIFF."""
    order = "little" if head[:2] == b"II" else "big"
    big = head[2:4] in (b"+\x00", b"\x00+")
    count_size, entry_size, offset_size = (8, 20, 8) if big else (2, 12, 4)
    offset = int.from_bytes(head[8:16] if big else head[4:8], order)  # type: ignore[arg-type]
    pages, seen = 0, set()
    while offset and offset not in seen and pages < _MOST:
        seen.add(offset)
        fh.seek(offset)
        entries = int.from_bytes(fh.read(count_size), order)  # type: ignore[arg-type]
        fh.seek(offset + count_size + entries * entry_size)
        raw = fh.read(offset_size)
        if len(raw) < offset_size:
            return max(1, pages + 1)
        pages += 1
        offset = int.from_bytes(raw, order)  # type: ignore[arg-type]
    return max(1, pages)


def _gif(fh: BinaryIO, head: bytes) -> int:
    """Image descriptors (0x2C) in the block list, up to two: the data is skipped by length."""
    pos = 13 + (3 << ((head[10] & 7) + 1) if head[10] & 0x80 else 0)  # the global colour table
    images = 0
    for _ in range(_MOST):
        fh.seek(pos)
        kind = fh.read(1)
        if kind == b"\x2c":
            images += 1
            if images > 1:
                return 2
            desc = fh.read(9)
            if len(desc) < 9:
                return 1
            table = 3 << ((desc[8] & 7) + 1) if desc[8] & 0x80 else 0
            pos = _skip_blocks(fh, pos + 10 + table + 1)  # + the LZW code size byte
        elif kind == b"\x21":
            pos = _skip_blocks(fh, pos + 2)  # the extension's label, then its sub-blocks
        else:
            return 1  # the trailer (0x3B), or damage: the decoder decides
        if pos < 0:
            return 1
    return 1


def _skip_blocks(fh: BinaryIO, pos: int) -> int:
    """The position after a chain of GIF sub-blocks starting at `pos`; -1 when cut short."""
    for _ in range(1 << 24):
        fh.seek(pos)
        size = fh.read(1)
        if not size:
            return -1
        pos += 1 + size[0]
        if size[0] == 0:
            return pos
    return -1


@dataclass(frozen=True)
class MultiFrame:
    """The files of each split that hold several frames: (split role, name, frames)."""

    found: tuple[tuple[str, str, int], ...] = ()

    def warnings(self) -> list[str]:
        """One line per split with such files, saying what is read of them and what to do."""
        out = []
        for role in dict.fromkeys(role for role, _, _ in self.found):
            here = [(name, n) for r, name, n in self.found if r == role]
            name, frames = here[0]
            what = f"{frames} frames"
            if name.lower().endswith(".gif"):
                what = "animated"  # its frames are not all counted (`frame_count`)
            elif name.lower().endswith((".tif", ".tiff")):
                what = f"{frames} pages"
            out.append(
                f"{len(here)} {role} image file(s) hold several frames (a multi-page TIFF, an "
                f"animated GIF, WebP or PNG; e.g. {name}: {what}): each is read as its first "
                "frame only, as a thumbnail shows it; to train on every frame, save the frames "
                "as separate images"
            )
        return out


def multi_frame_files(bundle: DataBundle, root: Path | None) -> MultiFrame:
    """The files of the run's image-folder splits that hold several frames (`frame_count`);
    pixels in memory and streamed shards have one picture per sample by construction."""
    held = bundle.test is not None or bundle.val.name.endswith("(holdout)")  # data.holdout
    splits = [("train", bundle.train), ("holdout" if held else "val", bundle.val)]
    if bundle.test is not None:
        splits.append(("test", bundle.test))
    found: list[tuple[str, str, int]] = []
    for role, split in splits:
        for path in getattr(split, "files", None) or []:
            if path.suffix.lower() in SUFFIXES and (n := frame_count(path)) > 1:
                found.append((role, relative_name(path, root), n))
    return MultiFrame(tuple(found))
