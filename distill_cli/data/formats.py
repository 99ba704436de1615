"""Which image files distill can decode, by suffix: the one owner of that fact.

An image folder is searched by suffix, and a photo in a format no decoder here can open would
otherwise be skipped as "not an image" without a word: a folder of iPhone photos (HEIC) trained
on nothing, or on the JPEGs beside them. So there are two lists: the suffixes we decode
(torchvision's JPEG/PNG/WebP/GIF, and what this Pillow build reads: BMP, TIFF, and AVIF since
Pillow 11.3), and the photo formats we know by name but cannot decode here, which the scan
counts and refuses (`refuse_undecodable`) with what to do.

Pillow plugins: `pillow-heif`, when installed, is registered so HEIC/HEIF photos decode like any
other (`register_plugins`, also called by the decoder in each worker). Torch-free.
"""

from __future__ import annotations

import functools
from pathlib import Path

from distill_cli.errors import DistillError

#: Decoded everywhere: torchvision's own formats and Pillow's core ones. `.jfif` and `.jpe` are
#: JPEGs (a browser on Windows saves a downloaded photo as `.jfif`): they were skipped as "not
#: an image" without a word, as `.apng` (an animated PNG, read as its first frame) was.
BASE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".apng", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
)
#: Photo formats that need more than Pillow's core: suffix -> how to make them readable.
#: Decoded when this Pillow reads them (AVIF) or a plugin we register is installed (HEIC/HEIF).
PHOTO_FORMATS: dict[str, str] = {
    ".avif": "or upgrade Pillow (11.3 or later reads AVIF)",
    ".heic": "or pip install pillow-heif (distill uses it when installed)",
    ".heif": "or pip install pillow-heif (distill uses it when installed)",
    ".hif": "or pip install pillow-heif (distill uses it when installed)",
    ".jxl": "",
    ".dng": "",
    ".cr2": "",
    ".cr3": "",
    ".nef": "",
    ".arw": "",
    ".orf": "",
    ".rw2": "",
    ".raf": "",
}


@functools.cache
def register_plugins() -> None:
    """Let Pillow open HEIC/HEIF when `pillow-heif` is installed (once per process)."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return
    register_heif_opener()


@functools.cache
def decodable_suffixes() -> frozenset[str]:
    """The suffixes (lower case, with the dot) of the image files distill decodes here."""
    register_plugins()
    from PIL import Image, features

    known = Image.registered_extensions()
    extra = {
        s
        for s in PHOTO_FORMATS
        if s in known and (s != ".avif" or features.check("avif"))  # the codec, not only the name
    }
    return BASE_SUFFIXES | extra


def undecodable(path: Path) -> bool:
    """A photo in a format we know but cannot decode here (HEIC without its plugin, JPEG XL,
    camera raw)."""
    suffix = path.suffix.lower()
    return suffix in PHOTO_FORMATS and suffix not in decodable_suffixes()


def refuse_undecodable(files: list[Path], where: str) -> None:
    """Image files we cannot decode are an error, however few: never a silent subset.

    A stray HEIC among many JPEGs is refused too (rather than a warning): which photos to
    leave out is the user's choice, and converting or moving them is one command.
    """
    if not files:
        return
    suffixes = sorted({f.suffix.lower() for f in files})
    hints = sorted({PHOTO_FORMATS[s] for s in suffixes if PHOTO_FORMATS[s]})
    raise DistillError(
        f"{len(files)} image file(s) in a format distill cannot decode "
        f"({', '.join(suffixes)}), e.g. {files[0]}",
        where,
        "convert them to JPEG or PNG (e.g. ImageMagick: mogrify -format jpg *.heic), or move "
        "them out of the folder" + ("; " + "; ".join(hints) if hints else ""),
    )
