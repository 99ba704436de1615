"""Photo folders as users really have them: unzipped on a Mac, synced from a NAS, copied between
machines, full of phone photos, scans and cut-outs.

Each test is one class of problem that made distill train on something other than what the
user meant (a tool's folder as a class, thumbnails as photos, a transparent background as
black, a 16-bit scan as white, a class left out) or refuse with a message that did not say
what to change. Everything is in-process on tiny generated files.
"""

from __future__ import annotations

import importlib.util
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import read_file

from distill_cli.data import build_data
from distill_cli.data.classes import align_classes
from distill_cli.data.decode import FolderImages, decode_on_device
from distill_cli.data.folders import scan_image_folder, scan_unlabeled
from distill_cli.data.pixels import decode_bytes
from distill_cli.errors import DistillError
from distill_cli.students.recipe import train_images

ROOT = Path(__file__).resolve().parents[1]
RED, BLUE = (200, 40, 40), (40, 40, 200)


def _photos(folder: Path, colour: tuple[int, int, int], n: int = 3) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (20, 16), colour).save(folder / f"IMG_{i:04d}.jpg")


def _tool_litter(folder: Path) -> None:
    """What macOS, Windows, Jupyter and a Synology NAS leave in a photo folder."""
    (folder / "._IMG_0000.jpg").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (folder / "desktop.ini").write_text("[.ShellClassInfo]")
    (folder / "README.txt").write_text("photos from the 2019 trip")
    (folder / "labels.csv").write_text("file,label\n")
    thumbs = folder / "@eaDir" / "IMG_0000.jpg"  # Synology: real JPEG thumbnails
    thumbs.mkdir(parents=True)
    Image.new("RGB", (8, 8), (0, 255, 0)).save(thumbs / "SYNOPHOTO_THUMB_S.jpg")
    (folder / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (8, 8)).save(folder / ".ipynb_checkpoints" / "IMG-checkpoint.jpg")


def test_tool_files_and_folders_are_neither_classes_nor_photos(tmp_path: Path) -> None:
    """A zip made on a Mac and unzipped elsewhere: `__MACOSX/` beside the class folders (it
    was refused as an empty class) and inside them, AppleDouble forks, Windows and NAS files.
    Only the user's photos are trained on, the same ones everywhere the folder is read."""
    root = tmp_path / "data"
    for split in ("train", "val"):
        for cls, colour in (("cat", RED), ("dog", BLUE)):
            _photos(root / split / cls, colour)
            _tool_litter(root / split / cls)
            mac = root / split / "__MACOSX" / cls
            mac.mkdir(parents=True)
            (mac / "._IMG_0000.jpg").write_bytes(b"\x00\x05\x16\x07")
            (root / split / cls / "__MACOSX").mkdir()
            Image.new("RGB", (8, 8)).save(root / split / cls / "__MACOSX" / "IMG_0000.jpg")
        _tool_litter(root / split)
    data = build_data("image_folder", root)
    assert data.classes == ["cat", "dog"]
    for split in (data.train, data.val):
        names = sorted(f.relative_to(root).as_posix().split("/", 1)[1] for f in split.files)
        assert names == [f"{c}/IMG_{i:04d}.jpg" for c in ("cat", "dog") for i in range(3)]
    # the image count a written recipe's batch is sized by agrees with the scan
    assert train_images({"source": "image_folder", "root": str(root)}) == 6
    # an unlabeled distillation pool and the holdout read the folder by the same rule
    assert len(scan_unlabeled(root / "train", ["cat", "dog"])) == 6
    held = build_data("image_folder", root, holdout=2)
    assert len(held.train) + len(held.val) == 6 and held.classes == ["cat", "dog"]


def test_a_class_name_is_the_same_in_either_unicode_form(tmp_path: Path) -> None:
    """macOS writes `café` decomposed (NFD), Linux keeps what it is given: train/ copied from
    one machine and val/ from another named the same class differently and val was refused
    with a name that looked identical. A teacher's class names are compared the same way."""
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    assert nfc != nfd
    _photos(tmp_path / "train" / nfc, RED)
    _photos(tmp_path / "train" / "dog", BLUE)
    _photos(tmp_path / "val" / nfd, RED, 2)
    _photos(tmp_path / "val" / "dog", BLUE, 2)
    data = build_data("image_folder", tmp_path)
    assert data.classes == [nfc, "dog"] and data.val.labels.tolist() == [0, 0, 1, 1]
    assert {f.parent.name for f in data.val.files} == {nfd, "dog"}  # the folders on disk
    aligned = align_classes(data, ["dog", nfd], {}, "teacher")  # a teacher named on a Mac
    assert aligned.classes == ["dog", nfc] and aligned.val.labels.tolist() == [1, 1, 0, 0]
    # the same name twice in one split (both forms can exist on Linux) is one class, refused
    _photos(tmp_path / "train" / nfd, RED)
    with pytest.raises(DistillError, match="two class folders are both named 'café'") as info:
        scan_image_folder(tmp_path / "train")
    assert "\n" not in str(info.value) and "move the images of one into the other" in str(
        info.value
    )


def test_a_class_spelt_in_another_case_in_val_names_the_rename(tmp_path: Path) -> None:
    """`Cat/` in train and `cat/` (or `dog `) in val: different folders on Linux, so an error,
    but one that says the difference is the case or a space, and which spelling to use."""
    _photos(tmp_path / "train" / "Cat", RED)
    _photos(tmp_path / "train" / "dog", BLUE)
    _photos(tmp_path / "val" / "cat", RED)
    _photos(tmp_path / "val" / "dog", BLUE)
    with pytest.raises(DistillError) as info:
        build_data("image_folder", tmp_path)
    msg = str(info.value)
    assert "only in case or spaces" in msg and "'cat' -> 'Cat'" in msg and "rename" in msg, msg
    (tmp_path / "val" / "dog").rename(tmp_path / "val" / "dog ")  # a space typed after it
    with pytest.raises(DistillError, match="'dog ' -> 'dog'"):
        build_data("image_folder", tmp_path)
    (tmp_path / "val" / "dog ").rename(tmp_path / "val" / "dog")
    _photos(tmp_path / "val" / "bird", BLUE)  # a class train lacks: still the plain error
    (tmp_path / "val" / "cat").rename(tmp_path / "val" / "Cat")
    with pytest.raises(DistillError, match=r"class folders not in the train split: \['bird'\]"):
        build_data("image_folder", tmp_path)


def test_a_class_or_photos_that_would_be_left_out_are_refused(tmp_path: Path) -> None:
    """A class folder linked from a drive that is not mounted was skipped (a model with one
    output fewer, every later label shifted); photos directly in the split folder have no
    label and were skipped too. Each is one line naming what to do."""
    for split in ("train", "val"):
        _photos(tmp_path / split / "cat", RED)
        _photos(tmp_path / split / "dog", BLUE)
    (tmp_path / "train" / "bird").symlink_to(tmp_path / "unmounted" / "bird")
    with pytest.raises(DistillError, match=r"bird is a link to .*which does not exist") as info:
        build_data("image_folder", tmp_path)
    assert "mount or restore" in str(info.value)
    (tmp_path / "train" / "bird").unlink()
    linked = tmp_path / "elsewhere" / "bird"  # a link that resolves is a class like any other
    _photos(linked, (40, 200, 40))
    (tmp_path / "train" / "bird").symlink_to(linked)
    assert build_data("image_folder", tmp_path).classes == ["bird", "cat", "dog"]
    Image.new("RGB", (8, 8)).save(tmp_path / "val" / "IMG_9999.jpg")
    with pytest.raises(DistillError, match=r"1 image\(s\) directly in the split folder") as info:
        build_data("image_folder", tmp_path)
    assert "IMG_9999.jpg" in str(info.value) and "into its class folder" in str(info.value)
    (tmp_path / "val" / "IMG_9999.jpg").unlink()
    (tmp_path / "val" / "IMG_8888.jpg").symlink_to(tmp_path / "gone.jpg")  # a photo, not a class
    with pytest.raises(DistillError, match=r"1 image\(s\) directly in the split folder"):
        build_data("image_folder", tmp_path)
    flat = tmp_path / "flat"
    _photos(flat, RED)
    with pytest.raises(DistillError, match=r"3 image\(s\) and no class folders") as info:
        scan_image_folder(flat)
    assert "data.distill_dir" in str(info.value)


def _save(path: Path, image: Image.Image, **kw: object) -> Path:
    image.save(path, **kw)
    return path


def _odd_photos(folder: Path) -> dict[str, tuple[Path, np.ndarray]]:
    """Photos in every encoding a real folder holds, each with the (H, W, 3) pixels a viewer
    shows for it (transparent parts on white)."""
    folder.mkdir(parents=True, exist_ok=True)
    colour = np.zeros((16, 24, 3), np.uint8)
    colour[...] = (200, 100, 30)
    base = Image.fromarray(colour)
    white = np.full_like(colour, 255)
    half = colour.copy()
    half[8:] = 255  # the bottom half transparent -> white
    rgba = np.dstack([colour, np.full((16, 24), 255, np.uint8)])
    rgba[8:, :, :3], rgba[8:, :, 3] = 0, 0  # transparent black, as editors store it
    grey16 = np.full((16, 24), 40000, np.uint16)
    grey = np.full((16, 24, 3), 40000 >> 8, np.uint8)
    stripes = np.zeros((16, 24), np.uint8)
    stripes[:, ::2] = 255
    quarter = rgba.copy()
    quarter[:, :, 3] = np.where(np.arange(16)[:, None] < 8, 255, 0)
    la = np.dstack([np.full((16, 24), 90, np.uint8), quarter[:, :, 3]])
    la_seen = np.repeat(np.where(quarter[:, :, 3:] > 0, 90, 255), 3, axis=2).astype(np.uint8)
    pal_pixels = np.zeros((16, 24), np.uint8)
    pal_pixels[8:] = 1  # index 1, black, marked transparent
    pal = Image.frombytes("P", (24, 16), pal_pixels.tobytes())
    pal.putpalette([200, 100, 30, 0, 0, 0])
    sideways = np.zeros((24, 16, 3), np.uint8)  # stored rotated; upright: colour on top
    sideways[...] = 255
    out = {
        "cmyk.jpg": (_save(folder / "cmyk.jpg", base.convert("CMYK"), quality=95), colour),
        "progressive.jpg": (_save(folder / "p.jpg", base, progressive=True, quality=95), colour),
        "png named .jpg": (_save(folder / "png.jpg", base, format="PNG"), colour),
        "rgba.png": (_save(folder / "rgba.png", Image.fromarray(rgba)), half),
        "rgba.webp": (_save(folder / "rgba.webp", Image.fromarray(rgba), lossless=True), half),
        "rgba.tif": (_save(folder / "rgba.tif", Image.fromarray(rgba)), half),
        "la.png": (
            _save(folder / "la.png", Image.frombytes("LA", (24, 16), la.tobytes())),
            la_seen,
        ),
        "palette trns.png": (_save(folder / "pal.png", pal, transparency=1), half),
        "transparent.gif": (_save(folder / "t.gif", pal, transparency=1), half),
        "grey trns.png": (
            _save(folder / "gt.png", Image.fromarray(stripes), transparency=0),
            np.full_like(colour, 255),
        ),
        "16-bit.png": (_save(folder / "g16.png", Image.fromarray(grey16)), grey),
        "16-bit.tif": (_save(folder / "g16.tif", Image.fromarray(grey16)), grey),
        "32-bit int.tif": (
            _save(folder / "i32.tif", Image.fromarray(grey16.astype(np.int32))),
            grey,
        ),
        "float.tif": (
            _save(folder / "f.tif", Image.fromarray(np.full((16, 24), 0.5, np.float32))),
            np.full_like(colour, 128),
        ),
        "1-bit.png": (
            _save(folder / "bw.png", Image.fromarray(stripes).convert("1")),
            np.repeat(stripes[:, :, None], 3, axis=2),
        ),
        "2-bit.png": (
            _save(folder / "g2.png", Image.fromarray(stripes), bits=2),
            np.repeat(stripes[:, :, None], 3, axis=2),
        ),
        "1-bit.bmp": (_save(folder / "bw.bmp", Image.new("1", (24, 16), 1)), white),
    }
    for tag in (6, 8):  # phone photos stored sideways: colour on the stored left / right
        side = sideways.copy()
        side[:, :8] = (200, 100, 30) if tag == 6 else 255
        side[:, 8:] = (200, 100, 30) if tag == 8 else 255
        stored = Image.fromarray(side)
        exif = stored.getexif()
        exif[0x0112] = tag
        upright = np.full((16, 24, 3), 255, np.uint8)
        upright[:8] = (200, 100, 30)
        out[f"exif {tag}.jpg"] = (
            _save(folder / f"e{tag}.jpg", stored, exif=exif, quality=95),
            upright,
        )
        # torchvision does not apply a WebP's EXIF rotation (it was seen sideways)
        out[f"exif {tag}.webp"] = (
            _save(folder / f"e{tag}.webp", stored, exif=exif, lossless=True),
            upright,
        )
    return out


def _assert_seen(pixels: np.ndarray, seen: np.ndarray, name: str) -> None:
    """Pixels as a viewer shows them, to JPEG's rounding (its edges ring by a few tens); a
    wrong rule (black for white, sideways, clipped) is off by 60 or more on average."""
    diff = np.abs(pixels.astype(int) - seen.astype(int))
    jpeg = name.endswith(".jpg")
    assert diff.mean() <= (5 if jpeg else 1) and diff.max() <= (40 if jpeg else 3), (name, diff)


def test_every_photo_encoding_decodes_to_what_a_viewer_shows(tmp_path: Path) -> None:
    """CMYK and progressive JPEGs, phone photos with an EXIF rotation, cut-outs with alpha
    (composited on white: dropping alpha showed the black under it), 16-bit and 32-bit scans
    (clipped to white by Pillow's convert), 1- and 2-bit scans (torchvision's alpha mode made
    them white), a PNG named .jpg: the same pixels on the workers' path and the device path."""
    photos = _odd_photos(tmp_path)
    files = [path for path, _ in photos.values()]
    worker = FolderImages(files, None, 16, skip_bad=False, fit="whole")
    raws = [read_file(str(f)) for f in files]
    device = decode_on_device(raws, torch.device("cpu"), 16, "whole")
    for i, (name, (_, seen)) in enumerate(photos.items()):
        img = decode_bytes(raws[i])
        assert img is not None and img.dtype == torch.uint8 and img.shape[0] == 3, name
        _assert_seen(img.permute(1, 2, 0).numpy(), seen, name)
        item = worker[i]
        assert item[3] == -1, name  # decoded, not a bad file
        assert torch.equal(item[0], device[i][0]) and item[4].tolist() == [11, 16], name


def test_tiny_thin_huge_and_broken_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1x1 and a 3x500 image fit either way; a file larger than Pillow's warning size is
    decoded without a warning from every worker, one above its hard limit is a bad file (never
    a traceback), as are a truncated JPEG, an empty file, a text file named .jpg and a PNG with
    a flipped bit (never a crash of the process)."""
    import PIL.Image

    tiny = _save(tmp_path / "tiny.png", Image.new("RGB", (1, 1), (10, 200, 10)))
    thin = _save(tmp_path / "thin.png", Image.new("RGB", (3, 500), (10, 200, 10)))
    for fit in ("square", "whole"):
        items = FolderImages([tiny, thin], None, 16, skip_bad=False, fit=fit)
        for i in range(2):
            img, _, used, bad, extent = items[i]
            assert (used, bad) == (i, -1) and img.shape == (3, 16, 16)
            assert img[1, 0, 0] == 200 and min(extent.tolist()) >= 1
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 400)  # 20x20: warns above, refuses 2x
    big = _save(tmp_path / "pano.bmp", Image.new("RGB", (25, 20), (1, 2, 3)))
    bomb = _save(tmp_path / "bomb.bmp", Image.new("RGB", (45, 20), (1, 2, 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
        img = decode_bytes(read_file(str(big)))
    assert img is not None and img.shape == (3, 20, 25)
    jpeg = tmp_path / "e.jpg"
    Image.new("RGB", (64, 64), (9, 9, 9)).save(jpeg, quality=95)
    (tmp_path / "cut.jpg").write_bytes(jpeg.read_bytes()[:300])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "note.jpg").write_text("not a photo")
    # one flipped bit in a PNG's image data: torchvision's decoder killed the process
    png = bytearray((tmp_path / "thin.png").read_bytes())
    png[png.index(b"IDAT") + 10] ^= 0x10
    (tmp_path / "bitrot.png").write_bytes(png)
    bad = [bomb, tmp_path / "cut.jpg", tmp_path / "empty.jpg", tmp_path / "note.jpg"]
    bad.append(tmp_path / "bitrot.png")
    items = FolderImages(bad, None, 16, skip_bad=False)
    assert [items[i][3] for i in range(len(bad))] == list(range(len(bad)))


def test_a_png_above_pillows_pixel_limit_is_a_bad_file_not_a_huge_allocation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PNGs are decoded by Pillow (libpng in torchvision crashed on damaged ones), within its
    pixel limit like every format it reads: a damaged IHDR claiming a huge image is a bad file
    (the fuzz found Pillow raising OverflowError when the limit was lifted), and so is a real
    PNG above the limit (about 179 megapixels), as docs/data.md says."""
    import PIL.Image

    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 400)  # 45x20 = 900: above twice it
    big = _save(tmp_path / "pano.png", Image.new("RGB", (25, 20), (1, 2, 3)))
    huge = _save(tmp_path / "scan.png", Image.new("RGB", (45, 20), (1, 2, 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
        img = decode_bytes(read_file(str(big)))
    assert img is not None and img.shape == (3, 20, 25) and img[2, 0, 0] == 3
    assert decode_bytes(read_file(str(huge))) is None


def test_the_onnx_consumer_example_decodes_photos_as_distill_does(tmp_path: Path) -> None:
    """A deployer's preprocessing must see the photo distill evaluated: upright, on white,
    16-bit scaled. examples/onnx_consumer.py (PIL only) against distill's decode."""
    spec = importlib.util.spec_from_file_location("consumer", ROOT / "examples/onnx_consumer.py")
    assert spec is not None and spec.loader is not None
    consumer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(consumer)
    for name, (path, seen) in _odd_photos(tmp_path).items():
        with Image.open(path) as image:
            _assert_seen(np.asarray(consumer.as_viewed(image).convert("RGB")), seen, name)


def test_file_names_that_are_not_utf8(tmp_path: Path) -> None:
    """A zip from an old Windows tool unpacked on Linux: names in cp1252 bytes. Its photos were
    every one a "bad file" (torchvision reads paths as UTF-8) and the run's data fingerprint
    was a traceback; now they are read. A class folder so named is refused, naming the fix."""
    import os

    from distill_cli.data.fingerprint import of_bundle

    root = os.fsencode(tmp_path)
    for split in (b"train", b"val"):
        for cls, colour in ((b"cat", RED), (b"dog", BLUE)):
            folder = os.path.join(root, split, cls)
            os.makedirs(folder)
            for i in range(2):
                name = os.fsdecode(os.path.join(folder, b"f\xf6to%d.jpg" % i))
                Image.new("RGB", (12, 12), colour).save(name)
    data = build_data("image_folder", tmp_path)
    files = data.train.files
    assert len(files) == 4 and all("\udcf6" in f.name for f in files)
    items = FolderImages(files, data.train.labels, 8, skip_bad=False)
    assert [items[i][3] for i in range(4)] == [-1] * 4  # every photo decoded
    assert [int(items[i][0][0].float().mean() > 120) for i in range(4)] == [1, 1, 0, 0]
    assert len(of_bundle(data, tmp_path).splits) == 2
    os.makedirs(os.path.join(root, b"train", b"caf\xe9"))
    Image.new("RGB", (12, 12)).save(os.fsdecode(os.path.join(root, b"train", b"caf\xe9", b"a.jpg")))
    with pytest.raises(DistillError, match="is not UTF-8 text") as info:
        build_data("image_folder", tmp_path)
    assert "convmv" in str(info.value)


def test_every_decodable_format_is_a_sample_of_a_shard_and_a_photo(tmp_path: Path) -> None:
    """A folder of BMP, TIFF, GIF and `.jfif` photos (a browser on Windows saves JPEGs so)
    written to shards by scripts/folder_to_shards.py: the reader knew only jpg/jpeg/png/webp
    members, so those samples were not samples; `.jfif` files were not even photos."""
    from distill_cli.data.shard_writer import write_shards
    from distill_cli.data.shards import scan_tar_split

    for cls, colour in (("cat", RED), ("dog", BLUE)):
        folder = tmp_path / "train" / cls
        folder.mkdir(parents=True)
        for suffix in (".bmp", ".tif", ".gif", ".jfif", ".JPE"):
            Image.new("RGB", (12, 12), colour).save(folder / f"a{suffix}")
    split = scan_image_folder(tmp_path / "train")
    assert len(split) == 10
    write_shards(tmp_path / "train", tmp_path / "wds", prefix="train", per_shard=4)
    (tmp_path / "wds" / "train.shards.json").unlink()  # counted from the tar headers
    shards = scan_tar_split(str(tmp_path / "wds"), "data.train_dir")
    assert len(shards) == 10
    samples = [s for unit in shards.units for s in shards.samples(unit)]
    assert len(samples) == 10 and sorted(s.label for s in samples) == [0] * 5 + [1] * 5
    for sample in samples:
        img = decode_bytes(torch.frombuffer(bytearray(sample.raw), dtype=torch.uint8))
        assert img is not None and (img[0, 0, 0] > img[2, 0, 0]) == (sample.label == 0)
