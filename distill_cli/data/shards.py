"""Tar shards in the WebDataset layout: `{key}.jpg` (or any image format distill decodes: .png,
.webp, .bmp, .tif, ...) + `{key}.cls` per sample.

The format is WebDataset's, read with the `webdataset` package; nothing here invents one. A split
is given as a brace pattern (`/data/in1k/train-{000000..001023}.tar`), a glob, or a folder of
`.tar` files. The sample count of each shard (needed for the steps of an epoch) and the class
names come from an index next to the shards when there is one (`<prefix>.shards.json`, which
`scripts/folder_to_shards.py` writes; counting is then free), otherwise from one pass over
the tar headers and `.cls` members, which also finds a sample without a label before any
training starts.
"""

from __future__ import annotations

import functools
import glob
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

from distill_cli.data.formats import decodable_suffixes
from distill_cli.data.shardset import Sample, SampleFault, ShardSet, Unit
from distill_cli.errors import DistillError
from distill_cli.file_kinds import not_a_file
from distill_cli.host import LABEL_HINT, check_classes


@functools.cache
def image_exts() -> tuple[str, ...]:
    """The member extensions that are a sample's image: every format distill decodes
    (`formats.decodable_suffixes`, the one owner), jpg first. The list was jpg, jpeg, png and
    webp: a sample stored as .bmp, .tif, .gif or .jfif (and every such photo of a folder
    written to shards) was not a sample, dropped without a word."""
    exts = sorted(s.lstrip(".") for s in decodable_suffixes())
    return tuple(sorted(exts, key=lambda e: e != "jpg"))


INDEX = ".shards.json"


#: compressed tar files: the stream seeks past image bytes and checks a shard's end marker,
#: which a gzip stream has neither of
COMPRESSED = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar.zst")


def resolve_shards(pattern: str, where: str) -> list[Path]:
    """The shard files a brace pattern, glob or folder names, in order; an error when none.

    Every file a brace range names without a glob must exist: a range that runs past the
    shards written (`train-{000000..000009}.tar` over 5 files) read the ones there, a fraction
    of the data, without a word. Compressed tars are refused naming what to do.
    """
    from braceexpand import braceexpand

    path = Path(pattern)
    if path.is_dir():
        files = sorted(path.glob("*.tar"))
        packed = [] if files else sorted(f for f in path.iterdir() if _compressed(f))
    else:
        parts = list(braceexpand(pattern))
        missing = [p for p in parts if not glob.has_magic(p) and not Path(p).is_file()]
        if missing and len(missing) < len(parts):
            raise DistillError(
                f"{len(missing)} of the {len(parts)} shards the pattern names do not exist "
                f"(the first: {Path(missing[0]).name})",
                f"{where}: {pattern}",
                f"make the brace range name only the {len(parts) - len(missing)} shards written, "
                "or copy the missing ones",
            )
        found = {Path(f) for part in parts for f in glob.glob(part)}
        packed = sorted(f for f in found if _compressed(f))
        files = sorted(found - set(packed), key=lambda p: str(p))
    if packed:
        raise DistillError(
            f"compressed tar shards are not read ({packed[0].name})",
            f"{where}: {pattern}",
            "decompress them (gunzip, or `tar` them again without compression) and name the "
            ".tar files",
        )
    splits = _tar_splits(files)
    if len(splits) > 1:  # a folder (or `*.tar`) of train-*.tar and val-*.tar: read whole
        raise DistillError(
            f"the shards are of {len(splits)} splits ({', '.join(splits)}): reading them whole "
            "would mix them",
            f"{where}: {pattern}",
            "point data.train_dir and data.val_dir at one split each ("
            + ", ".join(f"{split}: {shown}" for split, shown in splits.items())
            + ")",
        )
    if not files and "::" in pattern:  # webdataset's list of urls, `a-{0..4}.tar::b-{0..9}.tar`
        raise DistillError(
            "several patterns joined by '::' (webdataset's url list) are not read",
            f"{where}: {pattern}",
            "write one brace pattern or glob that covers them (train-{000..009}.tar), or put "
            "the shards in one folder and name it",
        )
    if not files:
        raise DistillError(
            "no tar shards match",
            f"{where}: {pattern}",
            "give a folder of .tar files or a pattern such as train-{000000..000099}.tar",
        )
    odd = [(f, there) for f in files if (there := not_a_file(f))]
    if odd:  # a FIFO named .tar: opened, it waited for a writer forever
        raise DistillError(
            f"the shard {odd[0][0].name} is {odd[0][1]}, not a tar file",
            f"{where}: {pattern}",
            "remove it, or name only the .tar files",
        )
    return files


def _tar_splits(files: list[Path]) -> dict[str, str]:
    """The splits shard names say (`imagenet1k-validation-00.tar`: validation): split -> a glob
    of its shards; names saying none (or two) count for none."""
    import re

    from distill_cli.data.folder_layout import SPLIT_NAMES

    out: dict[str, str] = {}
    for path in files:
        words = [w for w in re.split(r"[-_.]", path.name) if w.lower() in SPLIT_NAMES]
        if len(words) == 1:
            stem = path.name[: path.name.index(words[0]) + len(words[0])]
            out.setdefault(words[0], f"{stem}*.tar")
    return out


def foldered(path: Path, look: int = 64) -> bool:
    """Whether the shard's first images are in folders inside the tar (`tar cf` of an image
    folder, `cat/0001.jpg`): said when such a split has no labels, since the folder is not one."""
    try:
        with tarfile.open(path, "r:") as tar:
            for n, member in enumerate(tar):
                split = _key_ext(member.name) if member.isfile() else None
                if split and split[1] in image_exts():
                    return "/" in split[0]
                if n >= look:
                    break
    except (tarfile.TarError, OSError):
        pass
    return False


def _compressed(path: Path) -> bool:
    return path.name.lower().endswith(COMPRESSED)


def _key_ext(name: str) -> tuple[str, str] | None:
    """WebDataset's split of a member name into (key, extension), by webdataset's own rules,
    so the count is of the samples its reader yields: the key is up to the first dot of the
    base name, and members it skips are None (`__MACOSX/...`, `__meta__`, and names whose base
    starts with a dot: macOS's `._0001.jpg` beside `0001.jpg`, which were counted as images)."""
    import re

    from webdataset.tariterators import base_plus_ext

    if ("/" not in name and name.startswith("__") and name.endswith("__")) or re.match(
        r"__[^/]*__($|/)", name
    ):
        return None
    key, ext = base_plus_ext(name)
    return None if key is None else (key, ext.lower())


def _hidden(name: str) -> bool:
    """A dot file (`._0001.jpg`, macOS's resource fork beside `0001.jpg`): not a sample."""
    return name.rpartition("/")[2].startswith(".")


#: tar's end-of-archive marker: two zero blocks after the last member (every writer puts it)
END_MARKER = bytes(2 * tarfile.BLOCKSIZE)
TRUNCATED_HINT = "copy the shard again (its copy was cut short), or remove it from the split"
#: an empty file, or not a tar (a zip, a download's HTML error page): no hint was given
_NOT_A_TAR = "write the shard again as a tar file (tar cf, webdataset's ShardWriter), or remove it"


def truncation(path: Path, end: int | None = None) -> str | None:
    """Why the tar file at `path` is cut short, or None when it ends as a whole tar does.

    Python's tar reader takes a file that ends at a member boundary or inside a header for the
    end of the archive, so a copy that failed part-way read as a smaller shard and trained on
    what it held, without a word. A whole tar ends with `END_MARKER` (and is padded to whole
    blocks): at `end`, where the headers say the members stop (a scan of them), or else in its
    last bytes (one read per shard, for shards counted by their index and after a stream).
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            fh.seek(end if end is not None else max(0, size - len(END_MARKER)))
            tail = fh.read(len(END_MARKER))
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    if size % tarfile.BLOCKSIZE or tail != END_MARKER:
        where = f"its members stop at byte {end}" if end is not None else "its last bytes"
        return f"the tar shard is truncated ({size} bytes, no end-of-archive marker at {where})"
    return None


def scan_shard(path: Path) -> tuple[int, list[int], bool]:
    """(samples, labels, whether every sample has a label) of one shard, from its headers.

    Raises the one-line error for a sample with a label but no image, or an unreadable file.
    """
    images: dict[str, bool] = {}
    labels: dict[str, int] = {}
    dotted: dict[str, str] = {}  # key -> a member whose "extension" ends in an image format
    ended: set[str] = set()  # the keys of the samples before the current one
    last, exts = "", set[str]()
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                split = _key_ext(member.name)
                if split is None:
                    continue
                key, ext = split
                if key == last and ext in exts:  # webdataset stops on it, mid-run
                    raise DistillError(
                        f"sample {key!r} has two {ext!r} members",
                        str(path),
                        "keep one member per extension in each sample",
                    )
                exts = {ext} if key != last else exts | {ext}
                if key != last:
                    if key in ended:  # webdataset groups members by consecutive keys
                        raise DistillError(
                            f"sample key {key!r} appears twice, apart (member {member.name})",
                            str(path),
                            "give every sample its own key (WebDataset reads a key's members "
                            "as one sample only when they are next to each other)",
                        )
                    ended.add(last)
                    last = key
                if ext in image_exts():
                    images[key] = True
                elif ext.rpartition(".")[2] in image_exts() and not _hidden(member.name):
                    dotted.setdefault(key, member.name)
                elif ext == "cls":
                    fh = tar.extractfile(member)
                    text = fh.read().decode().strip() if fh else ""
                    if not (text.isascii() and text.isdigit()):  # int("³") fails
                        raise DistillError(
                            f"label {text!r} is not a class number (0, 1, 2, ...)",
                            f"{path}:{key}",
                            "write each .cls member as the class index, e.g. 3",
                        )
                    labels[key] = int(text)
            end = tar.offset
    except (tarfile.TarError, OSError, UnicodeDecodeError) as exc:
        hint = TRUNCATED_HINT if "unexpected end" in str(exc) else _NOT_A_TAR
        raise DistillError(f"cannot read tar shard: {exc}", str(path), hint) from exc
    cut = truncation(path, end)
    if cut:
        raise DistillError(cut, str(path), TRUNCATED_HINT)
    lost = [name for key, name in dotted.items() if key not in images]
    if lost:  # `img.0001.jpg`: key `img`, extension `0001.jpg`, not an image to WebDataset
        raise DistillError(
            f"{lost[0]} is not read as an image: WebDataset's key ends at the first dot of a "
            f"member's name ({len(lost)} samples have no image member so)",
            str(path),
            "name the members without dots before the extension, e.g. img_0001.jpg and "
            "img_0001.cls",
        )
    if not images:
        raise DistillError("shard holds no images", str(path), "expected {key}.jpg members")
    orphans = [key for key in labels if key not in images]
    if orphans:
        raise DistillError(
            f"{len(orphans)} samples have a .cls label but no image (the first: {orphans[0]})",
            str(path),
            "give each its image member ({key}.jpg, .png, ...), or remove its .cls",
        )
    return len(images), [labels[k] for k in images if k in labels], len(labels) == len(images)


def _read_index(
    files: list[Path],
) -> tuple[dict[str, int], list[str] | None, dict[str, int], str] | None:
    """Counts, class names and byte sizes from the index that lists every one of `files`, if
    any, and the index's name.

    The headers are not read then, so a shard written again after its index (more or fewer
    samples) would be streamed by the old count: the index keeps each shard's size in bytes
    (`bytes`, written since; an index without it is taken as it is), and a shard of another
    size is refused, naming it (`_check_size`)."""
    for index in sorted(files[0].parent.glob(f"*{INDEX}")):
        try:
            raw = json.loads(index.read_text())
            counts = {str(k): int(v) for k, v in raw["shards"].items()}
            sizes = {str(k): int(v) for k, v in (raw.get("bytes") or {}).items()}
            classes = raw.get("classes")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DistillError(f"unreadable shard index: {exc}", str(index), "delete it") from exc
        if all(f.name in counts for f in files):
            names = [str(c) for c in classes] if isinstance(classes, list) else None
            return counts, names, sizes, index.name
    return None  # no index for these shards: count them by reading their headers


def _check_size(path: Path, sizes: dict[str, int], index: str) -> None:
    """A whole shard (not cut short: `truncation`) of another size than its index recorded."""
    size = path.stat().st_size
    if path.name in sizes and sizes[path.name] != size:
        raise DistillError(
            f"the shard index is stale: {path.name} is {size:,} bytes, the index ({index}) "
            f"counted it at {sizes[path.name]:,}",
            str(path),
            f"delete {index} (the shards are then counted from their headers) or write the "
            "shards and their index again",
        )


def scan_tar_split(pattern: str, where: str, classes: list[str] | None = None) -> ShardSet:
    """A split of tar shards, counted (from `shards.json` or the headers) and checked."""
    files = resolve_shards(pattern, where)
    indexed = _read_index(files)
    labeled, top = True, -1
    if indexed is not None:
        counts = [indexed[0][f.name] for f in files]
        names = indexed[1]
        for path in files:  # the headers are not read: a cut copy is found by its last bytes
            cut = truncation(path)
            if cut:
                raise DistillError(cut, str(path), TRUNCATED_HINT)
            _check_size(path, indexed[2], indexed[3])
    else:
        counts = []
        for path in files:
            count, labels, complete = scan_shard(path)
            if labels and not complete:
                raise DistillError(
                    f"{count - len(labels)} of {count} samples have no .cls label",
                    str(path),
                    "give every sample its {key}.cls, or none (unlabeled distillation data)",
                )
            labeled = labeled and complete
            counts.append(count)
            top = max([top, *labels])
        check_classes(top + 1, pattern, LABEL_HINT)
        names = [f"class_{i}" for i in range(top + 1)]
    if classes is not None:
        if indexed is None and top >= len(classes):  # found before training, not at step 1
            raise DistillError(
                f"label {top} is beyond the train split's {len(classes)} classes",
                pattern,
                f"labels are 0..{len(classes) - 1} in every split",
            )
        names = classes
    units, start = [], 0
    for path, count in zip(files, counts, strict=True):
        if count:
            units.append(Unit(path, count, start))
        start += count
    return ShardSet(pattern, names or [], units, read_tar, labeled=labeled, label_reader=tar_labels)


def tar_labels(data: ShardSet, unit: Unit) -> list[int]:
    """The `.cls` labels of one shard's samples, in order, from its headers alone: the tar
    reader seeks past every image's bytes (the index, `shards.json`, holds no labels)."""
    count, labels, complete = scan_shard(unit.path)
    if not complete:
        raise DistillError(
            f"{count - len(labels)} of {count} samples have no .cls label",
            str(unit.path),
            "give every sample its {key}.cls, or none (unlabeled distillation data)",
        )
    return labels


def read_tar(data: ShardSet, unit: Unit) -> Iterator[Sample]:
    """The samples of one tar shard, in order, through webdataset's tar reader."""
    from webdataset.tariterators import tarfile_samples

    position = 0
    try:
        for sample in tarfile_samples(iter([{"url": str(unit.path)}])):
            key = f"{unit.path}:{sample['__key__']}"
            raw = next((sample[e] for e in image_exts() if e in sample), None)
            if raw is None:
                continue  # a label or other file without an image: not a sample
            label = int(sample["cls"].decode().strip()) if "cls" in sample else -1
            yield Sample(unit.start + position, raw, label, key)
            position += 1
    except (OSError, ValueError, tarfile.TarError) as exc:
        raise SampleFault(
            f"cannot read tar shard: {exc}", str(unit.path), TRUNCATED_HINT, failed=True
        ) from exc
    cut = truncation(unit.path)  # cut short since the scan: the stream ends without an error
    if cut:
        raise SampleFault(cut, str(unit.path), TRUNCATED_HINT, failed=True)
