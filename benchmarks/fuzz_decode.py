"""Damaged image files through distill's decode, each in a child process: none may kill it.

A PNG whose chunk checksums are right but whose compressed data is broken made libpng fail
inside torchvision's decoder in a way that killed the process (a segmentation fault: a run, or
a loader worker, gone without a message). Any decoder can have such a path, so this script
makes damaged files of every format distill reads (PNG in five kinds, JPEG baseline and
progressive, WebP lossy and lossless, GIF, BMP, TIFF) and feeds each to the decode a loader
worker runs (`decode.FolderImages`: read, `pixels.decode_bytes`, fit). Damage: random byte
flips, truncations, and edits a checksum does not catch (PNG chunks rewritten with their CRCs
recomputed: broken zlib data, bad filter bytes, bad IHDR fields, a chunk dropped or repeated;
JPEG markers and dimensions changed). A file is `ok` (decoded), `bad` (refused as a bad file:
what docs/data.md promises) or a failure: `crash` (the child died by a signal) or `raised`
(an exception escaped the decode, a traceback in a worker).

The files are decoded in batches by one child process that names each file before it decodes
it; when the child dies, the file it was on is the culprit and a new child goes on after it.

    python benchmarks/fuzz_decode.py                  # 400 files, seed 0
    python benchmarks/fuzz_decode.py --count 2000 --seed 3 --keep /tmp/fuzz

The suite runs a few of these files (`tests/test_decode_fuzz.py`); this is the long version.
Exit 0 when every file was `ok` or `bad`, 1 otherwise (the failing files are listed).
"""

from __future__ import annotations

import io
import random
import subprocess
import sys
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchargs import at_least, output_folder, parser, place  # noqa: E402

#: The child: decodes each file named on stdin as a loader worker does, printing `<i> ok|bad`
#: after `<i> start` (so a crash points at the file), `<i> raised <what>` for an exception.
CHILD = """
import sys
from pathlib import Path
from distill_cli.data.decode import FolderImages
for line in sys.stdin:
    i, path = line.rstrip("\\n").split("\\t", 1)
    print(i, "start", flush=True)
    try:
        item = FolderImages([Path(path)], None, 32, skip_bad=False)[0]
        print(i, "bad" if item[3] >= 0 else "ok", flush=True)
    except BaseException as exc:
        print(i, "raised", type(exc).__name__, str(exc)[:80].replace("\\n", " "), flush=True)
"""


def _encoded(fmt: str, image: Image.Image, **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def base_images() -> dict[str, bytes]:
    """Good files of every format and the PNG kinds libpng decodes differently."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:40, 0:48]
    smooth = np.stack([x * 5, y * 6, (x + y) * 3], -1) + rng.integers(0, 20, (40, 48, 3))
    rgb = Image.fromarray(smooth.clip(0, 255).astype(np.uint8))
    grey16 = Image.fromarray((smooth[..., 0] * 250).astype(np.uint16))
    return {
        "rgb.png": _encoded("PNG", rgb),
        "rgba.png": _encoded("PNG", rgb.convert("RGBA")),
        "palette.png": _encoded("PNG", rgb.convert("P"), transparency=3),
        "grey16.png": _encoded("PNG", grey16),
        "interlaced.png": _encoded("PNG", rgb, interlace=1),  # PIL ignores it; libpng does not
        "base.jpg": _encoded("JPEG", rgb, quality=90),
        "progressive.jpg": _encoded("JPEG", rgb, quality=90, progressive=True),
        "lossy.webp": _encoded("WEBP", rgb, quality=80),
        "lossless.webp": _encoded("WEBP", rgb.convert("RGBA"), lossless=True),
        "anim.gif": _encoded("GIF", rgb.convert("P"), save_all=True, append_images=[rgb.rotate(9)]),
        "plain.bmp": _encoded("BMP", rgb),
        "plain.tif": _encoded("TIFF", rgb, compression="tiff_deflate"),
    }


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(kind, body) of each chunk of a PNG, in order."""
    out, pos = [], 8
    while pos + 12 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        out.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + size]))
        pos += 12 + size
    return out


def png_file(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A PNG of these chunks, each with its right CRC: damage no checksum can show."""
    out = bytearray(b"\x89PNG\r\n\x1a\n")
    for kind, body in chunks:
        crc = zlib.crc32(kind + body).to_bytes(4, "big")
        out += len(body).to_bytes(4, "big") + kind + body + crc
    return bytes(out)


def broken_idat(data: bytes, rng: random.Random) -> bytes:
    """The compressed image data damaged (bytes flipped past the zlib header), CRCs right."""
    chunks = []
    for kind, body in png_chunks(data):
        if kind == b"IDAT" and len(body) > 8:
            b = bytearray(body)
            for _ in range(rng.randint(1, 6)):
                b[rng.randrange(2, len(b))] ^= rng.randrange(1, 256)
            body = bytes(b)
        chunks.append((kind, body))
    return png_file(chunks)


def bad_filters(data: bytes, rng: random.Random) -> bytes:
    """Valid zlib data in which rows start with a filter byte above 4 ("bad adaptive filter"):
    a row's first byte is its filter (rows of `1 + width * bytes per pixel` for the 8-bit,
    non-interlaced files this is given; anywhere else the byte is pixel data)."""
    chunks = png_chunks(data)
    raw = bytearray(zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT")))
    ihdr = chunks[0][1]
    width, depth, colour = int.from_bytes(ihdr[:4], "big"), ihdr[8], ihdr[9]
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 3)
    row = 1 + width * channels * max(1, depth // 8)
    for _ in range(rng.randint(1, 4)):
        raw[row * rng.randrange(max(1, len(raw) // row))] = rng.randrange(5, 256)
    body = zlib.compress(bytes(raw))
    head = [c for c in chunks if c[0] not in (b"IDAT", b"IEND")]
    return png_file([*head, (b"IDAT", body), (b"IEND", b"")])


def bad_ihdr(data: bytes, rng: random.Random) -> bytes:
    """IHDR's width, height, bit depth, colour type or methods changed, CRC right."""
    chunks = png_chunks(data)
    ihdr = bytearray(chunks[0][1])
    at = rng.choice([0, 3, 4, 7, 8, 9, 10, 11, 12])
    ihdr[at] = rng.randrange(256)
    return png_file([(b"IHDR", bytes(ihdr)), *chunks[1:]])


def chunk_order(data: bytes, rng: random.Random) -> bytes:
    """A chunk dropped, repeated or moved (PLTE gone, IDAT before IHDR, two IHDRs)."""
    chunks = png_chunks(data)
    at = rng.randrange(len(chunks))
    how = rng.choice(["drop", "repeat", "move"])
    if how == "drop":
        del chunks[at]
    elif how == "repeat":
        chunks.insert(at, chunks[at])
    else:
        chunks.insert(rng.randrange(len(chunks)), chunks.pop(at))
    return png_file(chunks)


def jpeg_edit(data: bytes, rng: random.Random) -> bytes:
    """A JPEG marker's length or a frame's dimensions changed, or a table dropped."""
    b = bytearray(data)
    markers = [i for i in range(2, len(b) - 4) if b[i] == 0xFF and 0xC0 <= b[i + 1] <= 0xFE]
    at = rng.choice(markers)
    how = rng.choice(["length", "dims", "marker"])
    if how == "length":
        b[at + 2 + rng.randrange(2)] = rng.randrange(256)
    elif how == "dims" and b[at + 1] in (0xC0, 0xC2):
        b[at + 5 + rng.randrange(4)] = rng.randrange(256)
    else:
        b[at + 1] = rng.choice([0xC4, 0xDB, 0xDA, 0xD9, 0xC0, 0xC2, 0xDD])
    return bytes(b)


def flips(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 12)):
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    return bytes(b)


def truncated(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(1, len(data))]


PNG_EDITS: list[Callable[[bytes, random.Random], bytes]] = [
    broken_idat,
    bad_filters,
    bad_ihdr,
    chunk_order,
]


def damaged(count: int, seed: int) -> list[tuple[str, bytes]]:
    """`count` damaged files, (name, bytes), the same for the same seed."""
    rng = random.Random(seed)
    bases = list(base_images().items())
    out = []
    for n in range(count):
        name, data = bases[n % len(bases)]
        edits: list[Callable[[bytes, random.Random], bytes]] = [flips, truncated]
        if name.endswith(".png"):
            edits += PNG_EDITS * 2
        elif name.endswith(".jpg"):
            edits += [jpeg_edit] * 2
        edit = rng.choice(edits)
        out.append((f"{n:05d}-{edit.__name__}-{name}", edit(data, rng)))
    return out


def decode_all(files: list[Path]) -> list[str]:
    """Each file's outcome (`ok`, `bad`, `crash <signal>`, `raised <what>`), decoded by child
    processes as a loader worker decodes it; a child that dies is replaced after its file."""
    outcomes: list[str | None] = [None] * len(files)
    start = 0
    while start < len(files):
        lines = "".join(f"{i}\t{files[i]}\n" for i in range(start, len(files)))
        proc = subprocess.run(
            [sys.executable, "-c", CHILD],
            input=lines,
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
        current = start
        for line in proc.stdout.splitlines():
            index, _, what = line.partition(" ")
            current = int(index)
            if what != "start":
                outcomes[current] = what
        if proc.returncode == 0:
            break
        outcomes[current] = f"crash {-proc.returncode if proc.returncode < 0 else proc.returncode}"
        start = current + 1
    return [o or "not reached" for o in outcomes]


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--count", type=at_least(1), default=400, help="damaged files (400)")
    p.add_argument("--seed", type=int, default=0, help="the damage drawn (0)")
    p.add_argument("--keep", type=place, default=None, help="write the files here and keep them")
    args = p.parse_args(argv)
    folder = (
        output_folder(args.keep, "--keep")
        if args.keep
        else Path(tempfile.mkdtemp(prefix="fuzz-decode-"))
    )
    files = []
    for name, data in damaged(args.count, args.seed):
        (folder / name).write_bytes(data)
        files.append(folder / name)
    outcomes = decode_all(files)
    kinds = Counter(o.split()[0] for o in outcomes)
    print(
        f"{len(files)} damaged files (seed {args.seed}): "
        + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    )
    failed = [
        (f, o) for f, o in zip(files, outcomes, strict=True) if o.split()[0] not in ("ok", "bad")
    ]
    for path, outcome in failed:
        print(f"FAIL {outcome}: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
