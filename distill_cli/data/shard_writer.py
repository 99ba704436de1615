"""Tar shards in the WebDataset layout from an image folder: what `scripts/folder_to_shards.py`
runs, and the tests' shards. Kept apart from the reader (`shards.py`), which it shares only the
index's name with."""

from __future__ import annotations

import json
from pathlib import Path

from distill_cli.data.shards import INDEX


def write_shards(
    folder: Path, out: Path, *, prefix: str = "shard", per_shard: int = 1000
) -> tuple[list[Path], int]:
    """An image folder (`<class>/<image>`) as tar shards in the WebDataset layout, plus the
    `<prefix>.shards.json` index (counts and class names); returns the shards and the sample count.

    Images are stored as their files' bytes (no re-encoding); samples go in a seeded random
    order so that each shard mixes the classes, which the reader's shuffle buffer relies on.
    """
    import random

    import webdataset as wds

    from distill_cli.data.folders import scan_image_folder

    split = scan_image_folder(folder)
    files, labels = split.files or [], split.labels.tolist() if split.labels is not None else []
    order = list(range(len(files)))
    random.Random(0).shuffle(order)
    out.mkdir(parents=True, exist_ok=True)
    pattern = str(out / f"{prefix}-%06d.tar")
    counts: dict[str, int] = {}
    with wds.ShardWriter(pattern, maxcount=per_shard, maxsize=1e15, verbose=0) as sink:
        for n, i in enumerate(order):
            ext = files[i].suffix.lower().lstrip(".")
            ext = "jpg" if ext == "jpeg" else ext
            sink.write({"__key__": f"{n:09d}", ext: files[i].read_bytes(), "cls": labels[i]})
            name = Path(pattern % (n // per_shard)).name
            counts[name] = counts.get(name, 0) + 1
    sizes = {name: (out / name).stat().st_size for name in counts}
    index = {"classes": split.classes, "shards": counts, "bytes": sizes}
    (out / f"{prefix}{INDEX}").write_text(json.dumps(index, indent=1) + "\n")
    return [out / name for name in counts], len(order)
