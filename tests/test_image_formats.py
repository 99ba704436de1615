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
from distill_cli.data.folders import scan_image_folder, scan_unlabeled
from distill_cli.data.formats import decodable_suffixes
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


def _folder_with_odd_files(root: Path) -> Path:
    """Two classes of plain photos, plus an animated GIF (red first frame) and a link to a
    file that is gone, in class `a`."""
    for name, colour in (("a", (0, 0, 200)), ("b", (0, 200, 0))):
        for n in range(3):
            _photo(root / name / f"{n}.png", colour)
    frames = [Image.new("RGB", (20, 12), c) for c in ((250, 0, 0), (0, 0, 250), (0, 250, 0))]
    frames[0].save(root / "a" / "anim.gif", save_all=True, append_images=frames[1:], loop=0)
    (root / "a" / "gone.png").symlink_to(root / "deleted.png")
    return root


@pytest.mark.parametrize("on_device", [False, True], ids=["workers", "device"])
def test_animated_gifs_and_dangling_links_in_a_photo_folder(
    tmp_path: Path, on_device: bool
) -> None:
    """An animated GIF decoded to all its frames, (N, 3, H, W), and crashed the batch's resize
    with a traceback; a link to a deleted file was a worker's traceback on the device-decode
    path. The GIF is its first frame; the link is a bad image like any other (skipped and
    counted, or named with data.on_bad_image=error)."""
    from distill_cli.data.loader import BatchStream

    data = scan_image_folder(_folder_with_odd_files(tmp_path / "photos"))
    assert len(data) == 8  # the link is found by its name, as a user's file browser lists it
    stream = BatchStream(
        data, 8, torch.device("cpu"), shuffle=False, load_size=8, decode_on_device=on_device
    )
    (batch,) = list(stream.epoch(0))
    gif = [p.name for p in data.files].index("anim.gif")
    first = batch.images[list(batch.index).index(gif)].float().mean(dim=(1, 2))
    assert first.argmax() == 0 and first[0] > 200  # the red first frame, not a stack of three
    assert stream.bad_images == 1 and batch.images.shape == (8, 3, 8, 8)
    strict = BatchStream(
        data, 8, torch.device("cpu"), load_size=8, decode_on_device=on_device, skip_bad=False
    )
    with pytest.raises(DistillError, match=r"cannot decode image.*gone\.png"):
        list(strict.epoch(0))
