"""An image-folder root's layout told apart before it is scanned: which folders are splits and
which are classes.

A user's root is rarely exactly `train/<class>/` and `val/<class>/`: class folders directly
under it, a `train/` folder alone, an ImageNet-style root read with `train_dir: .` (its
"classes" would be `train`, `val`, `test`), splits spelt `Train/`, class folders one level
deeper (`train/images/<class>/`). Each is named with the recipe keys that read it, instead of a
bare "not found" or, worse, a model trained to tell the splits apart.
"""

from __future__ import annotations

import os
from pathlib import Path

from distill_cli.data.entries import user_entry
from distill_cli.data.formats import decodable_suffixes
from distill_cli.errors import DistillError

#: Folder names that say "a split", not "a class" (compared in lower case): an ImageNet-style
#: root holds train/, val/ and test/, each of them class folders.
SPLIT_NAMES = frozenset({"train", "training", "val", "valid", "validation", "test", "testing"})


def _split_folders(folder: Path) -> list[str]:
    """The sub-folders of `folder` that are splits rather than classes: named like a split and
    holding class folders (sub-folders) but no image of their own. A class really named
    `train` (CIFAR-100 has one) holds its images directly and is not one of them."""
    found = []
    for child in sorted(folder.iterdir()) if folder.is_dir() else []:
        if child.name.lower() not in SPLIT_NAMES or not child.is_dir():
            continue
        entries = [e for e in child.iterdir() if user_entry(e.name)]
        suffixes = decodable_suffixes()
        holds_images = any(e.is_file() and e.suffix.lower() in suffixes for e in entries)
        if not holds_images and any(e.is_dir() for e in entries):
            found.append(child.name)
    return found


def _split_advice(splits: list[str], base: str) -> str:
    """`data.train_dir: <the training split> and data.val_dir: <the validation split>`."""
    train = next((s for s in splits if s.lower().startswith("train")), splits[0])
    rest = [s for s in splits if s != train]
    val = next((s for s in rest if s.lower().startswith("val")), rest[0] if rest else "val")
    return f"set data.train_dir: {base}{train} and data.val_dir: {base}{val}"


def _refuse_a_wrapper_folder(train: Path, train_dir: str, val_dir: str) -> None:
    """Class folders one level deeper than the split (`train/images/cat/`): the split's one
    folder would be its one class, all its images one label (a teacher given num_classes
    trains on it without a word). A lone folder holding folders and no image is refused,
    naming the split folders to set."""
    if not train.is_dir():
        return
    folders = [d for d in train.iterdir() if d.is_dir() and user_entry(d.name)]
    if len(folders) != 1:
        return
    inner = [e for e in folders[0].iterdir() if user_entry(e.name)]
    suffixes = decodable_suffixes()
    if any(e.is_file() and e.suffix.lower() in suffixes for e in inner):
        return
    classes = sorted(e.name for e in inner if e.is_dir())
    if len(classes) < 2:
        return
    wrapper = folders[0].name
    raise DistillError(
        f"the training folder's one folder {wrapper}/ holds class folders "
        f"({', '.join(classes[:3])}{', ...' if len(classes) > 3 else ''}), not images: it would "
        "be one class",
        str(train),
        f"set data.train_dir: {Path(train_dir, wrapper).as_posix()} and data.val_dir: "
        f"{Path(val_dir, wrapper).as_posix()} (if val has the same layout)",
    )


def check_layout(root: Path, train_dir: str, val_dir: str, holdout: int | None) -> None:
    """A missing split named with the layout the user has, not just the path we looked for.

    Users bring a folder of class folders (no train/), or a train/ folder alone; each has a
    recipe that reads it (`data.train_dir: .`, `data.holdout`), which the error names. A
    training folder whose "classes" are split folders (`train_dir: .` over an ImageNet-style
    root, or `Train/` and `Val/`) would train a model to tell the splits apart: refused, naming
    the splits to set.
    """
    train, val = root / train_dir, root / val_dir
    _refuse_a_wrapper_folder(train, train_dir, val_dir)
    splits = _split_folders(train)
    if splits:
        base = "" if os.path.normpath(train_dir) == "." else f"{Path(train_dir).as_posix()}/"
        raise DistillError(
            f"the training folder holds split folders ({', '.join(splits)}), not class folders: "
            "the model would learn to tell the splits apart",
            str(train),
            _split_advice(splits, base),
        )
    if not train.is_dir() and root.is_dir():
        folders = [d for d in root.iterdir() if d.is_dir() and user_entry(d.name)]
        splits = _split_folders(root)
        if splits and val_dir not in {d.name for d in folders}:
            raise DistillError(
                f"no {train_dir}/ folder; {root} holds the split folders {', '.join(splits)}",
                "data.root",
                _split_advice(splits, ""),
            )
        if folders and val_dir not in {d.name for d in folders}:
            raise DistillError(
                f"no {train_dir}/ folder; {root} holds {len(folders)} folder(s) "
                f"({', '.join(sorted(d.name for d in folders)[:3])}"
                f"{', ...' if len(folders) > 3 else ''}): class folders?",
                "data.root",
                "for class folders directly under data.root set data.train_dir: . and "
                "data.holdout: N (N images held out for validation), or make train/ and val/",
            )
    if train.is_dir() and not val.is_dir() and holdout is None:
        raise DistillError(
            f"no validation folder {val_dir}/ next to {train_dir}/",
            str(val),
            "add it (<class>/<image> as in train), set data.val_dir, or set data.holdout: N "
            "to validate on N images held out of the training folder",
        )
