"""Image folders in formats beyond JPEG/PNG: read when this Pillow can, refused when it cannot.

A folder of iPhone photos (HEIC) was searched by suffix and trained on nothing, or on the JPEGs
beside them, without a word. AVIF is read by recent Pillow wheels and must be trained on like
any other photo; a format we cannot decode is one `error:` line (count, one example, what to do).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, features

from distill_cli.data.decode import FolderImages
from distill_cli.data.formats import decodable_suffixes
from distill_cli.data.sources import scan_image_folder, scan_unlabeled
from distill_cli.errors import DistillError

HEIF_PLUGIN = importlib.util.find_spec("pillow_heif") is not None


def _photo(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((12, 20, 3), dtype=np.uint8)
    pixels[...] = colour
    Image.fromarray(pixels).save(path)


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow reads no AVIF")
def test_avif_photos_are_found_and_decoded_like_jpegs(tmp_path: Path) -> None:
    assert ".avif" in decodable_suffixes()
    for cls, colour in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
        for i in range(2):
            _photo(tmp_path / "train" / cls / f"{i}.AVIF", colour)  # upper case, as cameras write
        _photo(tmp_path / "train" / cls / "x.jpg", colour)
    split = scan_image_folder(tmp_path / "train")
    assert (
        len(split) == 6
        and sorted(p.suffix for p in split.files or []) == [".AVIF"] * 4 + [".jpg"] * 2
    )
    images = FolderImages(split.files or [], split.labels, size=16, skip_bad=False)
    for i, path in enumerate(split.files or []):
        img, label, used, bad, _ = images[i]
        assert used == i and bad == -1, path  # decoded, not replaced by another file
        red = path.parent.name == "red"
        assert label == (1 if red else 0)  # sorted classes: blue, red
        colour = img[:, :6, :16].float().mean(dim=(1, 2))  # the photo's rows (aspect kept)
        assert (colour[0] > colour[2]) == red, (path, colour)
    assert isinstance(img, torch.Tensor) and img.dtype == torch.uint8


@pytest.mark.skipif(HEIF_PLUGIN, reason="pillow-heif is installed: HEIC is decoded")
def test_photos_we_cannot_decode_are_one_error_with_count_example_and_what_to_do(
    tmp_path: Path,
) -> None:
    for i in range(3):
        _photo(tmp_path / "train" / "cat" / f"{i}.jpg", (200, 0, 0))
        _photo(tmp_path / "train" / "dog" / f"{i}.jpg", (0, 200, 0))
    # a stray pair among good JPEGs is refused too: never a silent subset
    (tmp_path / "train" / "dog" / "IMG_0007.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    (tmp_path / "train" / "dog" / "IMG_0008.heic").write_bytes(b"\0\0\0\x18ftypheic")
    with pytest.raises(DistillError) as info:
        scan_image_folder(tmp_path / "train")
    msg = str(info.value)
    assert msg.startswith("2 image file(s) in a format distill cannot decode (.heic)")
    assert "IMG_0007.HEIC" in msg and "convert them to JPEG or PNG" in msg
    assert "pip install pillow-heif" in msg and info.value.code == 2
    assert "\n" not in msg
    # the same for an unlabeled distillation folder, and for JPEG XL (no plugin: convert)
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / "a.jxl").write_bytes(b"\xff\x0a")
    _photo(tmp_path / "pool" / "b.png", (1, 2, 3))
    with pytest.raises(DistillError, match=r"1 image file\(s\) .*\(\.jxl\), e\.g\. .*a\.jxl"):
        scan_unlabeled(tmp_path / "pool", ["cat", "dog"])
    # files that are no images at all (notes, labels) are still not the scan's business
    (tmp_path / "pool" / "a.jxl").unlink()
    (tmp_path / "pool" / "notes.txt").write_text("mine")
    assert [p.name for p in scan_unlabeled(tmp_path / "pool", ["c"]).files or []] == ["b.png"]
