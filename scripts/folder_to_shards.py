"""Convert an image folder (`<class>/<image>.jpg`) to tar shards in the WebDataset layout.

    python scripts/folder_to_shards.py /data/imagenet/train /data/imagenet-wds --prefix train
    python scripts/folder_to_shards.py /data/imagenet/val /data/imagenet-wds --prefix val

Writes `<prefix>-000000.tar`, ... (`{key}.jpg` + `{key}.cls` per image, the files' own bytes, in
a seeded random order so that every shard mixes the classes) and `<prefix>.shards.json` (each
shard's image count and the class names), which `data.source: shards` reads instead of counting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distill_cli.data.shard_writer import write_shards
from distill_cli.errors import DistillError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="image folder: one sub-folder per class")
    parser.add_argument("out", type=Path, help="output folder for the shards")
    parser.add_argument("--prefix", default="shard", help="shard file name prefix")
    parser.add_argument("--per-shard", type=int, default=1000, help="images per shard")
    args = parser.parse_args(argv)
    try:
        shards, count = write_shards(
            args.folder, args.out, prefix=args.prefix, per_shard=args.per_shard
        )
    except DistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    print(f"{count} images in {len(shards)} shards: {shards[0]} ... {shards[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
