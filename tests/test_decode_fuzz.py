"""Damaged image files never kill the process that decodes them: they are bad files.

A PNG whose chunk CRCs are right but whose compressed data is broken (or whose rows carry a
bad filter byte, or whose IHDR is out of range) made libpng fail inside torchvision's decoder
with a segmentation fault: a run, or a loader worker, gone without a message. The long fuzz is
`benchmarks/fuzz_decode.py` (every format, hundreds of files); this is its short version, in one
child process, so that a crash fails the test instead of the suite.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _fuzz() -> ModuleType:
    """benchmarks/fuzz_decode.py, loaded as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("fuzz_decode", ROOT / "benchmarks/fuzz_decode.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_damaged_pngs_and_other_formats_are_bad_files_never_a_crash(tmp_path: Path) -> None:
    fuzz = _fuzz()
    png = fuzz.base_images()["rgb.png"]
    rng = random.Random(0)
    crafted = {  # each killed the process (signal 11) before PNGs went through Pillow
        "zlib.png": fuzz.broken_idat(png, rng),
        "filter.png": fuzz.bad_filters(png, rng),
        "ihdr.png": fuzz.png_file(
            [(b"IHDR", bytes(8) + b"\x08\x02\x00\x00\x00"), *fuzz.png_chunks(png)[1:]]
        ),  # width and height 0
    }
    files = []
    for name, data in [*crafted.items(), *fuzz.damaged(36, seed=5)]:
        (tmp_path / name).write_bytes(data)
        files.append(tmp_path / name)
    outcomes = fuzz.decode_all(files)
    assert outcomes[:3] == ["bad", "bad", "bad"], outcomes[:3]  # checksums right, data not
    failed = [(f.name, o) for f, o in zip(files, outcomes, strict=True) if o not in ("ok", "bad")]
    assert not failed
    assert {"ok", "bad"} <= set(outcomes)  # both kinds of damage met: the test can tell them
