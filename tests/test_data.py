"""Data sources and the batch stream: IDX files, image folders, order and resumption."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from distill_cli import api
from distill_cli.data import build_data
from distill_cli.data.loader import BatchStream
from distill_cli.data.sources import load_fashion_mnist, read_idx
from distill_cli.errors import DistillError
from distill_cli.recipe.sections import DataSpec
from tests.conftest import fm_body, write_recipe

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def _write_idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(
        ">" + "I" * array.ndim, *array.shape
    )
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def _fake_fashion_mnist(root: Path, n_train: int = 64, n_val: int = 32) -> None:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_val)):
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(root / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, (n,)), gz=False)


def test_idx_reader_and_fashion_mnist_loader(tmp_path: Path) -> None:
    _fake_fashion_mnist(tmp_path)
    train = load_fashion_mnist(tmp_path, "train")
    assert train.images.shape == (64, 1, 28, 28) and train.images.dtype == torch.uint8
    assert train.labels.shape == (64,) and train.num_classes == 10
    assert train.classes[9] == "Ankle boot"
    raw = read_idx(tmp_path / "train-images-idx3-ubyte.gz")
    assert np.array_equal(raw, train.images[:, 0].numpy())


def test_truncated_idx_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    _fake_fashion_mnist(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DistillError, match="truncated"):
        read_idx(path)
    with pytest.raises(DistillError, match="dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "empty", "train")


def test_subset_limit_is_fixed_for_a_seed(tmp_path: Path) -> None:
    _fake_fashion_mnist(tmp_path)
    spec = DataSpec(source="fashion_mnist", root=tmp_path, train_limit=10)
    a, b = build_data(**spec.data_args(), seed=1), build_data(**spec.data_args(), seed=1)
    assert len(a.train) == 10 and torch.equal(a.train.images, b.train.images)
    assert not torch.equal(a.train.images, build_data(**spec.data_args(), seed=2).train.images)


def test_stream_order_is_deterministic_and_resumable() -> None:
    from distill_cli.data.sources import make_synthetic

    data = make_synthetic(4, 50, 8, 1, 0, "train")
    stream = BatchStream(data, 8, torch.device("cpu"), seed=3)
    assert stream.steps_per_epoch == 6  # last partial batch dropped
    epoch1 = [b.labels for b in stream.epoch(1)]
    tail = [b.labels for b in stream.epoch(1, start_step=4)]
    assert len(tail) == 2 and all(torch.equal(a, b) for a, b in zip(epoch1[4:], tail, strict=True))
    epoch2 = [b.labels for b in stream.epoch(2)]
    assert not all(torch.equal(a, b) for a, b in zip(epoch1, epoch2, strict=True))
    # each of two ranks gets half of every global batch, together exactly the global batch
    ranks = [BatchStream(data, 8, torch.device("cpu"), seed=3, rank=r, world=2) for r in (0, 1)]
    full = next(iter(stream.epoch(0))).images
    halves = [next(iter(r.epoch(0))).images for r in ranks]
    assert torch.equal(torch.cat(halves), full)


def _image_folder(root: Path) -> None:
    """Two classes of JPEG, grayscale PNG, RGBA PNG and 16-bit PNG files of varied sizes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 6)):
        for cls, colour in (("cat", 40), ("dog", 200)):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                rgb = (rng.random((30 + i, 40, 3)) * 40 + colour).astype(np.uint8)
                kind = i % 4
                if kind == 0:
                    Image.fromarray(rgb[..., 0]).save(folder / f"{i}.png")
                elif kind == 1:
                    alpha = np.full((*rgb.shape[:2], 1), 255, np.uint8)
                    Image.fromarray(np.concatenate([rgb, alpha], -1)).save(folder / f"{i}.png")
                elif kind == 2:
                    wide = rgb[..., 0].astype(np.uint16) * 257
                    Image.fromarray(wide).save(folder / f"{i}.png")
                else:
                    Image.fromarray(rgb).save(folder / f"{i}.JPG", quality=90)


def test_image_folder_decodes_mixed_formats_to_square_uint8(tmp_path: Path) -> None:
    _image_folder(tmp_path)
    data = build_data("image_folder", tmp_path)
    assert data.classes == ["cat", "dog"] and len(data.train) == 24 and len(data.val) == 12
    stream = BatchStream(data.train, 8, torch.device("cpu"), load_size=20, workers=0)
    batch = next(iter(stream.epoch(0)))
    assert batch.images.shape == (8, 3, 20, 20) and batch.images.dtype == torch.uint8
    assert set(batch.labels.tolist()) <= {0, 1}
    assert sorted(batch.index.tolist()) == sorted(set(batch.index.tolist()))


def test_more_decode_workers_than_cores_read_without_torchs_warning(tmp_path: Path) -> None:
    """A shipped image-folder recipe's `data.workers: 8` on a 2-core machine (within distill's
    bound) printed torch's "might get DataLoader running slow or even freeze" twice a run."""
    import os
    import warnings

    _image_folder(tmp_path)
    data = build_data("image_folder", tmp_path)
    workers = len(os.sched_getaffinity(0)) + 1
    stream = BatchStream(data.train, 12, torch.device("cpu"), load_size=20, workers=workers)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(stream.epoch(0))
    assert sum(len(b.images) for b in batches) == 24
    assert [str(w.message) for w in caught if "DataLoader" in str(w.message)] == []


def test_function_matching_on_an_unlabeled_folder(tmp_path: Path) -> None:
    _image_folder(tmp_path / "data")
    body = fm_body(tmp_path / "runs", None, epochs=1)
    body["data"] = {
        "source": "image_folder",
        "root": str(tmp_path / "data"),
        "distill_dir": str(tmp_path / "data" / "train"),
        "workers": 0,
    }
    body["teacher"]["num_classes"] = 2
    body["schedule"]["batch_size"] = 8
    summary = api.run(write_recipe(tmp_path, "fm", body))
    assert summary.student.top1 is not None  # validation still has labels
    sup = dict(body, method={"name": "supervised"})
    sup.pop("teacher")
    with pytest.raises(DistillError, match="needs labels"):
        api.run(write_recipe(tmp_path, "sup", sup))


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "val" / "a").mkdir(parents=True)
    with pytest.raises(DistillError, match="no images"):
        build_data("image_folder", tmp_path)
    with pytest.raises(DistillError, match="not found"):
        build_data("image_folder", tmp_path / "nope")


@pytest.mark.parametrize("path", ["workers", "device"])
def test_photos_are_decoded_as_a_viewer_shows_them(tmp_path: Path, path: str) -> None:
    """A phone photo stored sideways with an EXIF rotation is seen upright, and BMP/TIFF files
    (accepted suffixes) are decoded, not skipped as bad images, on both decode paths."""
    from PIL import Image
    from torchvision.io import read_file

    from distill_cli.data.decode import FolderImages, decode_on_device

    top = np.zeros((60, 40, 3), np.uint8)  # stored landscape 40x60 below, shown portrait
    top[:30] = 255  # upright: the top half white
    stored = Image.fromarray(top).transpose(Image.Transpose.ROTATE_90)  # 60 wide, 40 high
    exif = stored.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    Image.fromarray(top).save(tmp_path / "scan.bmp")
    Image.fromarray(top).save(tmp_path / "scan.tiff")
    files = [tmp_path / n for n in ("phone.jpg", "scan.bmp", "scan.tiff")]
    if path == "workers":
        data = FolderImages(files, None, 20, skip_bad=False, fit="whole")
        items = [data[i] for i in range(3)]
        assert [item[3] for item in items] == [-1, -1, -1]  # no bad file
        decoded = [(item[0], item[4]) for item in items]
    else:
        decoded = decode_on_device(
            [read_file(str(f)) for f in files], torch.device("cpu"), 20, "whole"
        )
    for img, extent in decoded:
        assert extent.tolist() == [20, 13]  # portrait: 60 high, 40 wide -> 20 x 13
        upper, lower = img[:, :10, :13].float().mean(), img[:, 10:20, :13].float().mean()
        assert upper > 200 and lower < 50, (upper, lower)


def test_the_exif_orientation_is_read_in_both_byte_orders() -> None:
    """Cameras write EXIF big-endian (Motorola) or little-endian (Intel); the device path reads
    the tag from the bytes to keep rotated photos out of the batched decoder."""
    from distill_cli.data.pixels import _orientation

    big = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00"
    little = b"II\x2a\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00\x03\x00\x00\x00"
    assert (_orientation(big), _orientation(little)) == (6, 3)
    assert _orientation(b"MM\x00\x2a\xff\xff\xff\xff") == 0 and _orientation(b"junk") == 0


def test_a_device_batch_mixing_16_and_8_bit_images_of_one_size_decodes(tmp_path: Path) -> None:
    """Scanner output beside camera photos: a 16-bit PNG and an 8-bit one of the same size in
    one batch decode to the same pixels (they were stacked together and crashed)."""
    from PIL import Image
    from torchvision.io import read_file

    from distill_cli.data.decode import decode_on_device

    grey = np.full((24, 24), 128, np.uint8)
    Image.fromarray(grey).save(tmp_path / "a.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "b.png")
    raws = [read_file(str(tmp_path / n)) for n in ("a.png", "b.png")]
    out = decode_on_device(raws, torch.device("cpu"), 16, "square")
    assert all(item is not None for item in out)
    assert torch.equal(out[0][0], out[1][0]) and out[0][0].dtype == torch.uint8


def test_hidden_entries_are_skipped_and_linked_folders_followed(tmp_path: Path) -> None:
    """What a synced or browsed folder really holds: Jupyter's checkpoints folder is no class,
    macOS's `._x.jpg` forks and hidden thumbnails are no images, and a linked folder of photos
    inside a class is read (once, even when a link loops back)."""
    from PIL import Image

    _image_folder(tmp_path / "data")
    train = tmp_path / "data" / "train"
    (train / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (8, 8)).save(train / ".ipynb_checkpoints" / "x-checkpoint.jpg")
    (train / "cat" / "._0.jpg").write_bytes(b"\x00\x05\x16\x07 Mac OS X")
    (train / "cat" / ".thumbs").mkdir()
    Image.new("RGB", (8, 8)).save(train / "cat" / ".thumbs" / "t.jpg")
    (train / "cat" / ".DS_Store").write_bytes(b"Bud1")
    more = tmp_path / "more cats"
    more.mkdir()
    Image.new("RGB", (8, 8), (40, 40, 40)).save(more / "extra.jpg")
    (train / "cat" / "linked").symlink_to(more)
    (more / "loop").symlink_to(train / "cat")
    data = build_data("image_folder", tmp_path / "data")
    assert data.classes == ["cat", "dog"]
    assert len(data.train) == 25  # 24 + the linked photo, nothing hidden
    assert not any(part.startswith(".") for f in data.train.files for part in f.parts[-2:])


def test_an_empty_class_folder_or_a_single_class_is_refused(tmp_path: Path) -> None:
    _image_folder(tmp_path / "data")
    (tmp_path / "data" / "train" / "bird").mkdir()
    with pytest.raises(DistillError, match=r"hold no images: \['bird'\]"):
        build_data("image_folder", tmp_path / "data")
    (tmp_path / "data" / "train" / "bird").rmdir()
    (tmp_path / "data" / "val" / "bird").mkdir()  # fewer classes in val is fine
    with pytest.raises(DistillError, match="not in the train split"):
        build_data("image_folder", tmp_path / "data")
    (tmp_path / "data" / "val" / "bird").rmdir()
    for split in ("train", "val"):
        for f in (tmp_path / "data" / split / "dog").iterdir():
            f.unlink()
        (tmp_path / "data" / split / "dog").rmdir()
    body = fm_body(tmp_path / "runs", None, epochs=1)
    body.pop("teacher")
    body["method"] = {"name": "supervised"}
    body["data"] = {"source": "image_folder", "root": str(tmp_path / "data"), "workers": 0}
    with pytest.raises(DistillError, match="a classifier needs two or more"):
        api.plan(write_recipe(tmp_path, "one", body))


def _tiny_pngs(folder: Path, count: int = 2) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")


def test_split_folders_are_never_taken_for_classes(tmp_path: Path) -> None:
    """An ImageNet-style root (train/, val/, test/ of class folders) read with `train_dir: .`,
    or splits spelt `Train/` and `Val/`, would train a model to tell the splits apart: refused
    naming the split keys to set. A class really called `train` (CIFAR-100) is still a class."""
    inet = tmp_path / "inet"
    for split in ("train", "val", "test"):
        for cls in ("cat", "dog"):
            _tiny_pngs(inet / split / cls)
    with pytest.raises(DistillError, match=r"split folders \(test, train, val\)") as info:
        build_data("image_folder", inet, train_dir=".", holdout=2)
    assert "data.train_dir: train and data.val_dir: val" in str(info.value)
    caps = tmp_path / "caps"
    for split in ("Train", "Val"):
        for cls in ("cat", "dog"):
            _tiny_pngs(caps / split / cls)
    with pytest.raises(DistillError, match=r"data\.train_dir: Train and data\.val_dir: Val"):
        build_data("image_folder", caps)  # no train/: the splits named, not "class folders?"
    with pytest.raises(DistillError, match=r"split folders \(Train, Val\)"):
        build_data("image_folder", caps, train_dir=".", holdout=2)
    deep = tmp_path / "deep"  # class folders one level deeper: `images` would be one class
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            _tiny_pngs(deep / split / "images" / cls)
    with pytest.raises(DistillError, match=r"one folder images/ holds class folders") as info:
        build_data("image_folder", deep)
    assert "data.train_dir: train/images and data.val_dir: val/images" in str(info.value)
    assert build_data("image_folder", deep, train_dir="train/images", val_dir="val/images")
    vehicles = tmp_path / "vehicles"  # CIFAR-100's `train` class beside `bus`
    for split in ("train", "val"):
        for cls in ("bus", "train"):
            _tiny_pngs(vehicles / split / cls)
    assert build_data("image_folder", vehicles).train.classes == ["bus", "train"]


@pytest.mark.slow
@pytest.mark.skipif(not FMNIST.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_subset_distills(tmp_path: Path) -> None:
    """A few hundred real images: the teacher learns, and the student learns from the teacher."""
    teacher = {
        "model": {"model": "test_resnet", "input_size": 28, "crop_pct": 1.0},
        "data": {"source": "fashion_mnist", "train_limit": 2048, "val_limit": 512},
        "augment": {"crop_scale": [0.5, 1.0]},
        "method": {"name": "supervised"},
        "optim": {"lr": 3e-3},
        "schedule": {"epochs": 3, "batch_size": 64},
        "output": {"dir": str(tmp_path / "runs")},
    }
    t = api.run(write_recipe(tmp_path, "teacher", teacher))
    assert t.student.top1 > 60
    fm = dict(
        teacher,
        teacher=dict(
            teacher["model"], checkpoint=str(tmp_path / "runs/teacher/checkpoints/best.safetensors")
        ),
        student={"model": "test_efficientnet", "input_size": 28, "crop_pct": 1.0},
        method={"name": "function_matching"},
    )
    fm.pop("model")
    s = api.run(write_recipe(tmp_path, "fm", fm))
    assert s.teacher.top1 == pytest.approx(t.best_score, abs=1e-6)  # best.safetensors
    assert s.agreement_top1 > 50 and s.student.top1 > 45


@pytest.mark.parametrize("workers", [0, 2])
def test_device_decode_matches_worker_decode(tmp_path: Path, workers: int) -> None:
    """The batched decode path (nvJPEG on CUDA) gives the workers' pixels, bad files handled.

    With reader processes (workers > 0) a batch's file bytes must cross the process boundary
    as one tensor: one per file once hung the loader ("Bad file descriptor").
    """
    _image_folder(tmp_path)
    (tmp_path / "train" / "cat" / "zz_broken.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    (tmp_path / "train" / "dog" / "0_empty.jpg").write_bytes(b"")  # next to the broken one
    data = build_data("image_folder", tmp_path)
    common = {"load_size": 16, "workers": workers, "shuffle": False, "drop_last": False}
    workers = BatchStream(data.train, 5, torch.device("cpu"), **common)
    device = BatchStream(data.train, 5, torch.device("cpu"), decode_on_device=True, **common)
    for a, b in zip(workers.epoch(0), device.epoch(0), strict=True):
        assert a.images.shape == b.images.shape and a.images.dtype == b.images.dtype
        # a bad file's stand-in is the next good file in both paths: the same images trained
        assert torch.equal(a.index, b.index) and torch.equal(a.labels, b.labels)
        diff = (a.images.int() - b.images.int()).abs()
        assert diff.float().mean() < 1.0  # same decoder and resize; JPEG may differ by rounding
    assert workers.bad_images == device.bad_images == 2
    for stream in (workers, device):  # a bad photo counts once, however many epochs read it
        list(stream.epoch(1))
        assert stream.bad_images == 2
    strict = BatchStream(
        data.train, 5, torch.device("cpu"), decode_on_device=True, skip_bad=False, **common
    )
    with pytest.raises(DistillError, match="cannot decode image"):
        list(strict.epoch(0))


@pytest.mark.parametrize("fit", ["square", "whole"])
def test_a_batch_decoded_on_the_device_is_fitted_per_size_like_one_image_at_a_time(
    fit: str,
) -> None:
    from distill_cli.data.decode import _fit_by_size, fit_image

    torch.manual_seed(0)
    shapes = [(3, 37, 50), (3, 50, 37), (3, 37, 50), (3, 20, 20), (3, 37, 50)]
    images = [torch.randint(0, 256, s, dtype=torch.uint8) for s in shapes]
    images.insert(2, None)  # an undecodable file keeps its slot
    fitted = _fit_by_size(images, 24, fit)
    assert fitted[2] is None
    for img, got in zip(images, fitted, strict=True):
        if img is None:
            continue
        want = fit_image(img, 24, fit)
        assert got is not None and got[0].shape == (3, 24, 24)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
