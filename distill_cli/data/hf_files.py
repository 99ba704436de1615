"""Which files make one split of a Hugging Face data set: a parquet file, a folder of them, a
`save_to_disk` folder (the files its `state.json` lists), and the refusal of a folder that
holds several splits' files (read whole, it would train on the test split). Apart from
`parquet.py`, which reads the files found here.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from distill_cli.data.folder_layout import SPLIT_NAMES
from distill_cli.errors import DistillError

#: What to do about a parquet or arrow file that cannot be read: it is damaged or not one.
COPY_AGAIN = "copy the file again (it is damaged, or not parquet/arrow)"

#: How `datasets` names a split's files on the Hub and in save_to_disk folders:
#: `train-00000-of-00004.parquet` (older pushes add `-<hash>`), `data-00000-of-00001.arrow`.
_SPLIT_FILE = re.compile(r"^(?P<split>.+?)-\d{5}-of-\d{5}(-[0-9a-f]+)?\.(parquet|arrow)$")


def _splits(files: list[Path], root: Path) -> dict[str, str]:
    """The splits `files` belong to (split -> its files as a pattern relative to `root`): by the
    Hub's file names, else a file (`test.parquet`, from to_parquet) or folder (the Hub's parquet
    export, `default/train/0000.parquet`) named as a split; files of no split are none."""
    out: dict[str, str] = {}
    for path in files:
        rel = os.path.relpath(path.parent, root)
        folder = "" if rel == "." else rel + "/"
        match = _SPLIT_FILE.match(path.name)
        if match:
            out.setdefault(match["split"], f"{folder}{match['split']}-*{path.suffix}")
        elif path.stem.lower() in SPLIT_NAMES:
            out.setdefault(path.stem, f"{folder}{path.name}")
        elif path.parent.name.lower() in SPLIT_NAMES and path.parent != root:
            out.setdefault(path.parent.name, folder)
    return out


def _patterns(splits: dict[str, str]) -> str:
    """`train: plain_text/train-*.parquet, test: ...`, relative to the data root."""
    return ", ".join(f"{split}: {shown}" for split, shown in splits.items())


def split_files(path: Path, where: str, root: Path | None = None) -> list[Path]:
    """The parquet or arrow files of one split. A folder holding the files of several splits
    (a Hub download's `data/` with `train-*.parquet` and `test-*.parquet`) is refused: reading
    it whole would train on the test split too."""
    root = root or path.parent
    if path.is_file():
        return [path]
    if path.is_dir():
        found = (
            _saved_files(path) or sorted(path.rglob("*.parquet")) or sorted(path.glob("*.arrow"))
        )
        splits = _splits(found, root)
        if len(splits) > 1:
            raise DistillError(
                f"{path} holds the files of {len(splits)} splits ({', '.join(splits)}): "
                "reading it whole would mix them",
                where,
                f"point data.train_dir and data.val_dir at one split each ({_patterns(splits)})",
            )
        if found:
            return found
    elif path.parent.is_dir():
        found = sorted(path.parent.glob(path.name))
        if found:
            return found
    raise DistillError(
        "no parquet or arrow files found",
        f"{where}: {path}",
        _where_the_splits_are(root)
        or "give a parquet file, a folder of them, or a folder written by save_to_disk",
    )


def _saved_files(folder: Path) -> list[Path]:
    """The arrow files a `save_to_disk` folder's `state.json` lists, in its order; [] without
    one. Not every `*.arrow` there: `datasets` writes `cache-<hash>.arrow` beside them when a
    data set loaded from the folder is mapped or filtered, which read as more rows."""
    state = folder / "state.json"
    if not state.is_file():
        return []
    try:
        listed = json.loads(state.read_bytes()).get("_data_files")
        names = [str(entry["filename"]) for entry in listed]
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return []  # not datasets' state file: the folder's arrow files, as without one
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise DistillError(
            f"{missing[0]} is listed in state.json but missing",
            str(folder),
            "copy the save_to_disk folder again, whole",
        )
    return [folder / name for name in names]


def _where_the_splits_are(root: Path) -> str | None:
    """What to set when a split is not found: the splits a DatasetDict folder lists
    (`dataset_dict.json`: `train`, `test`), or the split files a Hub download holds."""
    listed = root / "dataset_dict.json"
    if listed.is_file():
        try:
            splits = json.loads(listed.read_bytes()).get("splits")
        except (OSError, ValueError, AttributeError):
            splits = None
        if isinstance(splits, list) and splits:
            return (
                f"the data set's splits are {', '.join(map(str, splits))} (dataset_dict.json): "
                "set data.train_dir and data.val_dir to two of them"
            )
    if root.is_dir():
        splits = _splits(sorted(root.rglob("*.parquet"))[:1000], root)
        if splits:
            return f"set data.train_dir and data.val_dir to its splits ({_patterns(splits)})"
    return None
