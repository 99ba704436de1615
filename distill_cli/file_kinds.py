"""What a file is, told by its first bytes, for the refusal of a file of the wrong type.

A PNG given as the recipe was "not UTF-8 text (byte 0) - save it as UTF-8 (iconv ...)", an ONNX
model given as a checkpoint "neither a torch.save file nor safetensors", a recipe given as the
ONNX file "fails to load: ValidationError: Unable to parse proto - is the file complete?": each
true, none saying the user handed over the wrong file. Every reader that refuses a file for
its format names what the file is instead (`kind_of`). Torch-free.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

#: The two formats of torch.save, as a message names them.
ZIP = "a zip archive (as torch.save writes)"
PICKLE = "a pickle (as torch.save wrote before PyTorch 1.6)"
#: Leading bytes of the formats users hand over by mistake, and how a message names each.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"PK\x03\x04", ZIP),
    (b"\x80", PICKLE),
)
#: What an ONNX model's first field is: ir_version (field 1, a varint), then another field.
_ONNX_FIELDS = (0x12, 0x1A, 0x22, 0x2A, 0x32, 0x3A, 0x42, 0x52, 0x72, 0x7A)
ONNX = "an ONNX model"
SAFETENSORS = "a safetensors weights file"
TEXT = "a text file"
#: The kinds a weights file may be (torch.save's zip and legacy pickle, safetensors); any other
#: kind told is the wrong file handed over.
WEIGHTS = (ZIP, PICKLE, SAFETENSORS)


def not_a_file(path: Path) -> str | None:
    """What `path` is when it exists and is not a regular file (`a folder`, `a device`, `a pipe
    (FIFO)`, `a socket`, `a symlink loop`), or None: a regular file, or nothing there. "ONNX
    file not found (/dev/zero)" was said of what is there; a FIFO opened for reading waits for
    a writer forever, so it is never opened."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:  # ELOOP: links pointing at each other
        return "a symlink loop" if exc.errno == errno.ELOOP else None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None


def kind_of(path: Path) -> str | None:
    """`a PNG image`, `an ONNX model`, `a safetensors weights file`, `a text file`, `an empty
    file`...; None when the first bytes say nothing (or the file cannot be read)."""
    try:
        with Path(path).open("rb") as fh:
            head = fh.read(512)
    except OSError:
        return None
    if not head:
        return "an empty file"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    if len(head) >= 9 and head[8:9] == b"{":  # an 8-byte header length, then the JSON header
        return SAFETENSORS
    if len(head) >= 3 and head[0] == 0x08 and head[1] < 0x80 and head[2] in _ONNX_FIELDS:
        return ONNX
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = head[: exc.start].decode("utf-8") if exc.start > len(head) - 4 else ""
    if text and _mostly_text(text):
        return TEXT
    return None


def _mostly_text(text: str) -> bool:
    """Printable characters and line breaks only (YAML, JSON, a side file, a script): no NUL
    and no control bytes, which binary formats are full of."""
    return all(c.isprintable() or c in "\r\n\t" for c in text)


#: A URL's scheme (two letters or more, so a Windows drive `C://` is not one).
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
#: How to bring a file of each storage to this machine, for the refusal's hint.
_FETCH = {
    "s3": "aws s3 cp {url} .",
    "gs": "gcloud storage cp {url} .",
    "az": "azcopy copy {url} .",
    "hf": "huggingface-cli download (or pass the timm name: hf-hub:ORG/NAME)",
    "http": "curl -LO {url}",
    "https": "curl -LO {url}",
}


def url_problem(text: str) -> tuple[str, str] | None:
    """(what is wrong, what to do) for a URL given where distill reads a local path; None for
    a path. `s3://bucket/r.yaml` was "not found (s3:/bucket/r.yaml)" (pathlib folds the
    slashes), and `file:///data/x` "no folder file:" though /data/x was there."""
    found = _URL.match(text.strip())
    if found is None:
        return None
    scheme = found.group(1).lower()
    if scheme == "file":
        return "is a file:// URL", f"pass the path itself: {text.strip()[7:] or '/'}"
    fetch = _FETCH.get(scheme, "your storage's copy tool").format(url=text.strip())
    return (
        f"is a URL ({scheme}://), and distill reads local files and folders",
        f"copy it to this machine first ({fetch}) and pass the local path",
    )
