"""Streamed data sets as people make them (WebDataset tars by hand, `tar cf`, img2dataset; Hugging
Face splits from the Hub): what is read, and what is refused in one line saying what to write."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distill_cli.data.parquet import scan_hf_split
from distill_cli.data.shards import read_tar, scan_tar_split
from distill_cli.data.streamed import streamed_splits
from distill_cli.errors import DistillError
from tests.conftest import class_jpeg


def _tar(path: Path, members: list[tuple[str, bytes]], mode: str = "w") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as tar:
        for name, raw in members:
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def _samples(keys: list[str], ext: str = "jpg") -> list[tuple[str, bytes]]:
    out = []
    for n, key in enumerate(keys):
        out += [(f"{key}.{ext}", class_jpeg(n % 3, n)), (f"{key}.cls", b"%d\n" % (n % 3))]
    return out


def _refused(pattern: str) -> str:
    with pytest.raises(DistillError) as err:
        scan_tar_split(pattern, "data.train_dir")
    return str(err.value)


def test_a_brace_range_past_the_shards_written_is_refused(tmp_path: Path) -> None:
    for k in range(3):
        _tar(tmp_path / f"train-{k:06d}.tar", _samples([f"{k}-{n}" for n in range(2)]))
    data = scan_tar_split(str(tmp_path / "train-{000000..000002}.tar"), "data.train_dir")
    assert len(data) == 6 and sum(1 for u in data.units for _ in read_tar(data, u)) == 6
    # 10 named, 3 there: it read 6 samples of a data set the user counts as 20, without a word
    line = _refused(str(tmp_path / "train-{000000..000009}.tar"))
    assert line.startswith("7 of the 10 shards the pattern names do not exist (the first: ")
    assert "name only the 3 shards written" in line
    # a glob still takes what is there
    assert len(scan_tar_split(str(tmp_path / "train-*.tar"), "data.train_dir")) == 6


def test_compressed_tars_are_refused_saying_to_decompress(tmp_path: Path) -> None:
    _tar(tmp_path / "gz" / "s-0.tar.gz", _samples(["a", "b"]), mode="w:gz")
    for pattern in (tmp_path / "gz" / "s-0.tar.gz", tmp_path / "gz"):  # a file; a folder of them
        line = _refused(str(pattern))
        assert line.startswith("compressed tar shards are not read (s-0.tar.gz)"), line
        assert "decompress them" in line


def test_malformed_samples_are_named_before_training(tmp_path: Path) -> None:
    # an empty file, or not a tar: the line said what but not what to do
    (tmp_path / "zero.tar").write_bytes(b"")
    line = _refused(str(tmp_path / "zero.tar"))
    assert line.startswith("cannot read tar shard: empty file (") and "- write the shard" in line
    # keys with dots: WebDataset's key is `img`, its extension `0001.jpg`: no image at all
    dotted = _samples(["img.0001", "img.0002"])
    line = _refused(str(_tar(tmp_path / "dots.tar", dotted)))
    assert line.startswith("img.0001.jpg is not read as an image: WebDataset's key ends at")
    assert "img_0001.jpg" in line
    # a key met again after another one: webdataset reads two samples, the count said one
    again = [*_samples(["a", "b"]), ("a.jpg", class_jpeg(0, 9)), ("a.cls", b"0")]
    line = _refused(str(_tar(tmp_path / "again.tar", again)))
    assert line.startswith("sample key 'a' appears twice, apart (member a.jpg)")
    # a label whose image is missing: was "0 of 1 samples have no .cls label"
    orphan = [*_samples(["a", "b"]), ("c.cls", b"1")]
    line = _refused(str(_tar(tmp_path / "orphan.tar", orphan)))
    assert line.startswith("1 samples have a .cls label but no image (the first: c)")
    # images in subfolders of the tar, and .png/.webp members, are read
    png = [(f"sub/{name}".replace(".jpg", ".png"), raw) for name, raw in _samples(["x", "y"])]
    data = scan_tar_split(str(_tar(tmp_path / "ok.tar", png)), "data.train_dir")
    assert len(data) == 2 and data.classes == ["class_0", "class_1"]


def _split_root(tmp_path: Path, train: list[tuple[str, bytes]], val: list) -> Path:
    _tar(tmp_path / "train" / "s-0.tar", train)
    _tar(tmp_path / "val" / "s-0.tar", val)
    return tmp_path


def test_val_labels_in_json_or_txt_members_say_to_write_cls(tmp_path: Path) -> None:
    train = _samples(["a", "b", "c"])
    val = [(f"{k}.jpg", class_jpeg(0, n)) for n, k in enumerate("xyz")]
    val += [(f"{k}.json", b'{"label": 1}') for k in "xyz"]
    root = _split_root(tmp_path, train, sorted(val))
    with pytest.raises(DistillError) as err:
        streamed_splits("shards", root, "train", "val", ("image", "label"), {})
    assert "{key}.cls member holding its class number" in str(err.value)
    assert ".json and .txt members are not read as labels" in str(err.value)
    # `tar cf` of an image folder: the class folders are inside the tar, no .cls
    folders = [(f"val/{c}/{n}.jpg", class_jpeg(i, n)) for i, c in enumerate("ab") for n in (1, 2)]
    _tar(root / "val" / "s-0.tar", folders)
    with pytest.raises(DistillError) as err:
        streamed_splits("shards", root, "train", "val", ("image", "label"), {})
    assert str(err.value).startswith(
        "the validation split has no labels (its images are in folders inside the tar: a folder "
        "is not a label)"
    )


def _parquet(path: Path, labels: list[int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [class_jpeg(max(0, v) % 3, n) for n, v in enumerate(labels)]
    columns = {"image": pa.array(images, pa.binary()), "label": pa.array(labels, pa.int64())}
    pq.write_table(pa.table(columns), path)
    return path


def test_hf_rows_labelled_minus_one_or_splits_without_rows_are_refused(tmp_path: Path) -> None:
    # a Hub test split whose labels are all -1 (datasets' "no label"): was read, then every
    # evaluation step failed on "sample has no label" once training had run
    _parquet(tmp_path / "data" / "train-00000-of-00001.parquet", [0, 1, 2, 0])
    _parquet(tmp_path / "data" / "test-00000-of-00001.parquet", [-1, -1, 1])
    with pytest.raises(DistillError) as err:
        streamed_splits(
            "hf_dataset", tmp_path, "data/train-*", "data/test-*", ("image", "label"), {}
        )
    assert str(err.value).startswith("2 rows have a negative 'label' (-1 is `datasets`' no label)")
    # a split of no rows: an epoch of no steps
    _parquet(tmp_path / "empty" / "data.parquet", [])
    assert len(scan_hf_split(tmp_path / "empty", "data.val_dir", "image", "label")) == 0
    with pytest.raises(DistillError) as err:
        streamed_splits("hf_dataset", tmp_path, "data/train-*", "empty", ("image", "label"), {})
    assert str(err.value).startswith("the split has no samples (data.val_dir: ")


def test_hf_rows_without_image_bytes_or_past_the_class_labels_are_refused_at_once(
    tmp_path: Path,
) -> None:
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    rows = [{"bytes": class_jpeg(n % 3, n), "path": None} for n in range(4)]
    rows[2] = {"bytes": None, "path": "lost.jpg"}  # an Image feature that kept only the path
    features = {"label": {"_type": "ClassLabel", "names": ["a", "b"]}}
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    table = pa.table({"image": pa.array(rows, image), "label": [0, 1, 0, 1]})
    (tmp_path / "split").mkdir()
    arrow = tmp_path / "split" / "data-00000-of-00001.arrow"  # save_to_disk's layout
    with pa.OSFile(str(arrow), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    for path in (tmp_path / "split", tmp_path / "t.parquet"):
        if path.suffix:
            pq.write_table(table, path)
        with pytest.raises(DistillError) as err:
            scan_hf_split(path, "data.train_dir", "image", "label")
        assert str(err.value).startswith("1 rows have no image bytes in column 'image'")
    # a label past the ClassLabel names: was found by the batch that held it, mid-run
    rows[2] = rows[0]
    bad = pa.table({"image": pa.array(rows, image), "label": [0, 1, 5, 1]})
    pq.write_table(bad.replace_schema_metadata(meta), tmp_path / "t.parquet")
    with pytest.raises(DistillError) as err:
        scan_hf_split(tmp_path / "t.parquet", "data.train_dir", "image", "label")
    assert str(err.value).startswith("label 5 is beyond the 2 classes its ClassLabel names")


def test_a_tar_of_a_mac_folder_counts_the_samples_webdataset_reads(tmp_path: Path) -> None:
    # `tar cf` on macOS: AppleDouble `._*` files beside each image, `__MACOSX/`, `.DS_Store`;
    # webdataset skips them, the count took `._a.jpg` as an image (a step short per 2 samples)
    junk = [("._a.jpg", b"\x00\x05\x16\x07"), ("__MACOSX/._b.jpg", b"\x00"), (".DS_Store", b"")]
    tar = _tar(tmp_path / "mac.tar", [*junk, *_samples(["a", "b"])])
    data = scan_tar_split(str(tar), "data.train_dir")
    assert len(data) == 2 == sum(1 for u in data.units for _ in read_tar(data, u))
    # two members of one extension in one sample: webdataset stopped on it mid-run
    double = [*_samples(["a"]), ("a.jpg", class_jpeg(1, 1))]
    line = _refused(str(_tar(tmp_path / "double.tar", double)))
    assert line.startswith("sample 'a' has two 'jpg' members")


@pytest.mark.parametrize(
    ("files", "shown"),
    [
        (["train.parquet", "test.parquet"], "test: test.parquet, train: train.parquet"),
        (["default/train/0000.parquet", "default/test/0000.parquet"], "default/test/"),
    ],
)
def test_a_folder_of_two_splits_not_named_the_hub_way_is_refused(
    tmp_path: Path, files: list[str], shown: str
) -> None:
    # `to_parquet` per split, or the Hub's parquet export: read whole, test trained on
    for name in files:
        _parquet(tmp_path / name, [0, 1, 2])
    folder = tmp_path / Path(files[0]).parts[0] if "/" in files[0] else tmp_path
    with pytest.raises(DistillError) as err:
        scan_hf_split(folder, "data.train_dir", "image", "label", data_root=tmp_path)
    assert "holds the files of 2 splits" in str(err.value) and shown in str(err.value)
    one = tmp_path / files[0]  # one split's file or folder is read
    assert len(scan_hf_split(one.parent if "/" in files[0] else one, "x", "image", "label")) == 3


def test_a_save_to_disk_folder_reads_the_files_state_json_lists(tmp_path: Path) -> None:
    # `load_from_disk(p).map(...)` leaves cache-<hash>.arrow in p: its rows were read as more data
    table = pa.table({"image": pa.array([class_jpeg(0, n) for n in range(3)]), "label": [0, 1, 2]})
    for name in ("data-00000-of-00001.arrow", "cache-3f2a9c.arrow"):
        with (
            pa.OSFile(str(tmp_path / name), "wb") as sink,
            pa.ipc.new_stream(sink, table.schema) as writer,
        ):
            writer.write_table(table)
    state = {"_data_files": [{"filename": "data-00000-of-00001.arrow"}], "_split": "train"}
    (tmp_path / "state.json").write_text(json.dumps(state))
    assert len(scan_hf_split(tmp_path, "data.train_dir", "image", "label")) == 3
    state["_data_files"].append({"filename": "data-00001-of-00002.arrow"})
    (tmp_path / "state.json").write_text(json.dumps(state))
    with pytest.raises(DistillError) as err:
        scan_hf_split(tmp_path, "data.train_dir", "image", "label")
    assert str(err.value).startswith("data-00001-of-00002.arrow is listed in state.json but")


def test_a_supervised_run_on_an_unlabeled_shard_split_names_the_split(tmp_path: Path) -> None:
    from distill_cli import api
    from tests.conftest import write_recipe

    # img2dataset-style shards: .json metadata and .txt captions, no .cls: unlabeled images
    train = [(f"{k}.{ext}", raw) for k in "abc" for ext, raw in (("jpg", class_jpeg(0, 1)),)]
    train += [(f"{k}.json", b'{"label": 1}') for k in "abc"]
    root = _split_root(tmp_path, sorted(train), _samples(["x", "y", "z"]))
    data = {"source": "shards", "root": str(root), "train_dir": "train", "val_dir": "val"}
    body = {
        "model": {"model": "test_resnet", "input_size": 16},
        "data": {"workers": 0, "load_size": 16, **data},
        "method": {"name": "supervised"},
        "schedule": {"epochs": 1, "batch_size": 3},
        "output": {"dir": str(tmp_path / "runs")},
    }
    with pytest.raises(DistillError) as err:  # was "data.distill_dir has none": there is none
        api.plan(write_recipe(tmp_path, "sup", body))
    assert str(err.value) == (
        "method 'supervised' needs labels but the training split has none (shards) "
        "(data.train_dir) - label it ({key}.cls members), or use method.name: "
        "function_matching (it reads no labels)"
    )


def test_stated_split_sizes_must_be_what_the_data_read_holds(tmp_path: Path) -> None:
    from distill_cli.data import build_data

    # a copy missing shards: the plan said ImageNet's size, the run trained on what was there
    root = _split_root(tmp_path, _samples(["a", "b", "c", "d"]), _samples(["x", "y"]))
    args = {"train_dir": "train", "val_dir": "val", "holdout": 1}
    data = build_data("shards", root, sizes=(4, 2), **args)  # the sizes before the holdout
    assert (len(data.train), len(data.val), len(data.test or [])) == (3, 1, 2)
    with pytest.raises(DistillError) as err:
        build_data("shards", root, sizes=(1_281_167, None), **args)
    assert str(err.value).startswith(
        "data.train_images is 1,281,167 but the split holds 4 samples (data.train_dir: "
    )
    assert "set data.train_images: 4" in str(err.value)


def test_a_folder_of_train_and_validation_shards_is_refused_naming_each(tmp_path: Path) -> None:
    # data.train_dir: . (or *.tar) over imagenet1k-train-*.tar and imagenet1k-validation-*.tar
    _tar(tmp_path / "in1k-train-0000.tar", _samples(["a", "b"]))
    _tar(tmp_path / "in1k-validation-00.tar", _samples(["c", "d"]))
    for pattern in (tmp_path, tmp_path / "*.tar"):
        line = _refused(str(pattern))
        assert line.startswith("the shards are of 2 splits (train, validation): reading them")
        assert "train: in1k-train*.tar, validation: in1k-validation*.tar" in line
    assert len(scan_tar_split(str(tmp_path / "in1k-train*.tar"), "data.train_dir")) == 2


def test_a_streamed_template_is_sized_by_its_stated_training_images(tmp_path: Path) -> None:
    from distill_cli.students.recipe import train_images

    # a folder of shards holds no image files: it counted 0 (no size) whatever was stated
    _tar(tmp_path / "train" / "s-0.tar", _samples(["a", "b"]))
    section = {"source": "shards", "root": str(tmp_path), "train_dir": "train"}
    assert train_images({**section, "train_images": 50_000}) == 50_000
    assert train_images(section) is None


def test_a_missing_column_names_the_column_to_set(tmp_path: Path) -> None:
    # CIFAR-100 as the Hub serves it: `img` and `fine_label` (and `coarse_label`)
    image = pa.array([class_jpeg(0, n) for n in range(2)])
    table = pa.table({"img": image, "fine_label": [0, 1], "coarse_label": [1, 0]})
    pq.write_table(table, tmp_path / "t.parquet")
    with pytest.raises(DistillError) as err:
        scan_hf_split(tmp_path / "t.parquet", "data.train_dir", "image", "label")
    assert str(err.value).endswith("- set data.image_column: img")
    with pytest.raises(DistillError) as err:  # two integer columns: which one is not guessed
        scan_hf_split(tmp_path / "t.parquet", "data.train_dir", "img", "label")
    assert str(err.value).endswith("- set data.image_column / data.label_column to its columns")
