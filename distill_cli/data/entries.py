"""Which entries of a photo folder are the user's: the one owner of what a folder scan skips.

Folders of photos are copied, unzipped and synced by tools that leave their own files beside the
photos: macOS writes `.DS_Store`, `._IMG_0001.jpg` (AppleDouble forks, not images, with an
image's suffix) and, in a zip, a `__MACOSX/` folder mirroring the tree; Jupyter a
`.ipynb_checkpoints/` folder; a Synology NAS an `@eaDir/` folder of real JPEG thumbnails in
every photo folder; Windows `$RECYCLE.BIN/` and `System Volume Information/` at a drive's top.
Taken as the user's, a tool's folder became a class (`__MACOSX` refused as an empty class, or a
class of a single thumbnail) and thumbnails became training images twice over. Files with
other suffixes (`Thumbs.db`, `desktop.ini`, `README.txt`, `labels.csv`) are skipped by suffix
(`formats.py`), not here.

Every scan of a folder (class folders, images inside them, split detection, the image count
a written recipe is sized by) asks `user_entry`, so they all agree on what the folder holds.
"""

from __future__ import annotations

import unicodedata

#: Folders written by tools, never by a user sorting photos (compared exactly: a class may be
#: called `recycle`). Hidden names (a leading dot) are skipped as well.
TOOL_FOLDERS = frozenset(
    {
        "__MACOSX",  # macOS Finder's zip: AppleDouble copies of every file
        "@eaDir",  # Synology: thumbnails (SYNOPHOTO_THUMB_*.jpg) of every photo
        "#recycle",  # Synology's recycle bin
        "#snapshot",  # Synology's snapshots
        "$RECYCLE.BIN",  # Windows' recycle bin
        "System Volume Information",  # Windows
        "lost+found",  # ext4 fsck
    }
)


def user_entry(name: str) -> bool:
    """Whether a file or folder named `name` is the user's: not hidden, not a tool's folder.

    Hidden names cover `.DS_Store`, `._x.jpg`, `.ipynb_checkpoints`, `.thumbnails` and QNAP's
    `.@__thumb`: a file browser does not show them, and users never meant them as photos.
    """
    return not name.startswith(".") and name not in TOOL_FOLDERS


def class_name(folder_name: str) -> str:
    """A class folder's name as a class name: Unicode NFC.

    macOS writes file names decomposed (NFD: `e` + a combining accent) and Linux and Windows
    keep what they are given, so `café/` copied from a Mac and `café/` typed on Linux differ
    byte for byte while looking the same: the same class in train and val, or in the data and
    a teacher's class names, must compare equal.
    """
    return unicodedata.normalize("NFC", folder_name)
