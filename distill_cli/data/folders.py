"""Image folders scanned into file lists: which files are a split's photos, and their classes.

The scan is where a user's real folder meets distill's idea of one: tools' litter skipped
(`entries.py`), class names compared as text (`entries.class_name`), and everything that would
otherwise leave photos or a class out without a word (a link to nothing, photos outside every
class folder, formats we cannot decode) refused with what to do. The rules, for users, are in
docs/data.md. Files are decoded later, by the loader's workers (`decode.py`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from distill_cli.data.entries import class_name, user_entry
from distill_cli.data.formats import decodable_suffixes, refuse_undecodable, undecodable
from distill_cli.data.sources import ImageSet
from distill_cli.errors import DistillError
from distill_cli.file_kinds import not_a_file


def image_files(folder: Path, unreadable: list[Path]) -> list[Path]:
    """The image files under `folder`, sorted, searched as a user's file browser shows them.

    What is not the user's (`entries.user_entry`: hidden files and folders such as `.DS_Store`,
    macOS's `._photo.jpg` forks and `.ipynb_checkpoints`; tools' folders such as `__MACOSX` and
    Synology's `@eaDir` thumbnails) is skipped; linked folders are followed (each real folder
    once, so a link loop ends), as torchvision's ImageFolder does, rather than silently dropped.
    Photos in a format we cannot decode (HEIC without its plugin, JPEG XL, camera raw) are added
    to `unreadable`, for the caller to refuse (`formats.refuse_undecodable`) instead of
    training on the rest without a word.
    """
    found: list[Path] = []
    seen: set[str] = set()
    suffixes = decodable_suffixes()
    for top, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if user_entry(d)]
        visible = [Path(top, n) for n in names if user_entry(n)]
        found += [p for p in visible if p.suffix.lower() in suffixes]
        unreadable += [p for p in visible if undecodable(p)]
    _refuse_non_files(found)
    return sorted(found)


def _refuse_non_files(found: list[Path]) -> None:
    """An image name on a FIFO, a device or a folder (`x.jpg` made by `mkfifo`, a link to
    /dev/zero): the duplicate scan or a loader worker opened it and waited for a writer
    forever, deaf to SIGTERM, or read zeros until memory ran out. One `stat` per file, which
    the walk has just warmed (the fingerprint and the duplicate scan take the same)."""
    odd = [(p, there) for p in found if (there := not_a_file(p))]
    if odd:
        path, there = odd[0]
        raise DistillError(
            f"{len(odd)} image name{'s are' if len(odd) > 1 else ' is'} not a file: {path.name} "
            f"is {there}",
            str(path),
            "remove it from the data folder (or replace the link by the image it meant)",
        )


def utf8(name: str) -> bool:
    """Whether a file name read from disk is UTF-8 text (Python keeps other bytes as
    surrogates, which no JSON, ONNX metadata or terminal takes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def class_folders(root: Path) -> dict[str, Path]:
    """A split's class folders by class name (`entries.class_name`: Unicode NFC).

    In the folders' own sorted order (torchvision's `ImageFolder` order on the same disk). A
    link among them that leads nowhere is refused rather than left out: it is a class the
    user meant (a folder moved or a drive not mounted), and without it the model would have
    one output fewer and its images' labels would shift. Two folders whose names differ only
    in their Unicode form are one class written twice, refused by name; a name that is not
    UTF-8 cannot be a class's name in results, refused with the command that renames it.
    """
    found: dict[str, Path] = {}
    for entry in sorted(root.iterdir()):
        if not user_entry(entry.name):
            continue
        photo = entry.suffix.lower() in decodable_suffixes()  # a loose photo, refused below
        if entry.is_symlink() and not entry.exists() and not photo:
            raise DistillError(
                f"{entry.name} is a link to {os.readlink(entry)}, which does not exist: a "
                "class folder that is gone would be a class left out",
                str(entry),
                "mount or restore the folder it points to, or remove the link",
            )
        if not entry.is_dir():
            continue
        name = class_name(entry.name)
        if not utf8(name):
            raise DistillError(
                f"class folder name {entry.name!a} is not UTF-8 text (unpacked from a zip made "
                "with another encoding?): it would be the class's name in every result",
                str(root),
                "rename it, e.g. convmv -f cp1252 -t utf-8 -r --notest <folder> (cp437 for "
                "old Windows zips)",
            )
        if name in found:
            raise DistillError(
                f"two class folders are both named {name!r}, written in different Unicode "
                "forms (macOS writes accents decomposed)",
                str(root),
                f"move the images of one into the other and remove it: {found[name].name!a} "
                f"and {entry.name!a}",
            )
        found[name] = entry
    return found


def _refuse_other_classes(extra: list[str], classes: list[str], root: Path) -> None:
    """Class folders of a split that train does not have; one differing only in case or in
    spaces around the name (`Cat` or `cat ` for train's `cat`: two folders on Linux, and two
    classes) is named with the spelling to use, which the names alone do not show."""
    if not extra:
        return

    def key(name: str) -> str:
        return " ".join(name.split()).casefold()

    near = {key(c): c for c in classes}
    renames = [f"{e!r} -> {near[key(e)]!r}" for e in extra if key(e) in near]
    if renames:
        raise DistillError(
            "class folders that differ from the train split's only in case or spaces: "
            + ", ".join(renames[:5]),
            str(root),
            "class names must match exactly: rename them to the train split's spelling",
        )
    raise DistillError(
        f"class folders not in the train split: {extra[:5]}",
        str(root),
        "the model's classes are the train split's folders: add these to train, or move "
        "them out of this split",
    )


def _refuse_loose_images(root: Path, has_classes: bool) -> None:
    """Images directly in a split folder have no class folder, so no label: left out without
    a word, they were photos the user meant to train on (a class folder's images dragged one
    level up, or a flat folder of photos that was never sorted)."""
    suffixes = decodable_suffixes()
    loose = sorted(
        e
        for e in root.iterdir()
        if user_entry(e.name) and e.suffix.lower() in suffixes and not e.is_dir()
    )
    if not loose:
        return
    if has_classes:
        raise DistillError(
            f"{len(loose)} image(s) directly in the split folder, outside every class folder "
            f"(e.g. {loose[0].name}): they have no label",
            str(root),
            "move each into its class folder (<split>/<class>/<image>), or out of the split",
        )
    raise DistillError(
        f"{len(loose)} image(s) and no class folders: labels come from one folder per class",
        str(root),
        "sort them into <split>/<class>/<image>, or, to distill on them without labels, set "
        "data.distill_dir to this folder",
    )


def scan_image_folder(root: Path, classes: list[str] | None = None) -> ImageSet:
    """An ImageFolder split: one sub-folder per class. `classes` pins the order to train's.

    The split that defines the classes (train) must hold images in every class folder: an
    empty one would be a class the model has an output for and never sees. What is not the
    user's (`entries.user_entry`: `.ipynb_checkpoints`, `__MACOSX`) is not a class.
    """
    if not root.is_dir():
        raise DistillError(
            "data folder not found",
            str(root),
            "check data.root, data.train_dir and data.val_dir (image_folder reads "
            "<root>/<train_dir>/<class>/ and <root>/<val_dir>/<class>/)",
        )
    folders = class_folders(root)
    _refuse_loose_images(root, bool(folders))
    defining = classes is None
    if classes is None:
        classes = list(folders)
    _refuse_other_classes(sorted(set(folders) - set(classes)), classes, root)
    files: list[Path] = []
    labels: list[int] = []
    empty: list[str] = []
    unreadable: list[Path] = []
    for index, name in enumerate(classes):
        found_here = image_files(folders[name], unreadable) if name in folders else []
        if not found_here:
            empty.append(name)
        files += found_here
        labels += [index] * len(found_here)
    refuse_undecodable(sorted(unreadable), str(root))
    if not files:
        raise DistillError("no images found", str(root), "expected <class>/<image>.jpg|png")
    if defining and empty:
        raise DistillError(
            f"{len(empty)} class folder(s) hold no images: {empty[:5]}",
            str(root),
            "add images to them, or remove them (each class folder is one output of the model)",
        )
    return ImageSet(
        name=str(root), classes=classes, files=files, labels=torch.tensor(labels, dtype=torch.long)
    )


def scan_unlabeled(root: Path, classes: list[str]) -> ImageSet:
    """Any folder of images, searched recursively; function matching needs no labels."""
    if not root.is_dir():
        raise DistillError(
            "distillation image folder not found",
            str(root),
            "check data.distill_dir (relative to the folder distill runs in)",
        )
    unreadable: list[Path] = []
    files = image_files(root, unreadable)
    refuse_undecodable(sorted(unreadable), str(root))
    if not files:
        raise DistillError("no images found", str(root), "expected .jpg/.png files")
    return ImageSet(name=str(root), classes=classes, files=files)
