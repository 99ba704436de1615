"""Part 4: a folder of real-looking photos of mixed sizes, read cold (issue 26, item 4).

The JPEGs are photo-like (smooth colour fields, edges, grain, so they decode like photos) at
random sizes between 200 and 800 px on a side, so every batch mixes sizes and aspect ratios.
Before each measurement the page cache is dropped (`/proc/sys/vm/drop_caches`, root only); where
that is not permitted the record says the reads were warm. Measured: nvJPEG in the training
process (`data.decode=device`) against libjpeg-turbo in the loader's worker processes
(`data.decode=workers`), the data path alone and the full distillation step.
"""

from __future__ import annotations

import os
import subprocess
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

from gpu.common import BENCH, Record, bench_command, tiny

SIDES = (200, 800)


def _write_jpeg(job: tuple[str, int]) -> tuple[int, int, int]:
    """One photo-like JPEG of a random size; returns its bytes, width and height."""
    import numpy as np
    from PIL import Image

    path, seed = job
    rng = np.random.default_rng(seed)
    width, height = (int(x) for x in rng.integers(SIDES[0], SIDES[1] + 1, 2))
    low = rng.integers(0, 256, (height // 25 + 2, width // 25 + 2, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(low).resize((width, height), Image.BICUBIC), dtype=np.int16)
    img = img + rng.integers(-12, 13, img.shape, dtype=np.int16)
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path, quality=90)
    return os.path.getsize(path), width, height


def write_photos(root: Path, count: int, classes: int = 10) -> dict[str, Any]:
    jobs = []
    for split, n in (("train", count), ("val", max(classes, count // 20))):
        for i in range(n):
            folder = root / split / f"class_{i % classes}"
            folder.mkdir(parents=True, exist_ok=True)
            jobs.append((str(folder / f"{i:06d}.jpg"), i + (0 if split == "train" else 10**6)))
    started = time.perf_counter()
    with Pool(os.cpu_count()) as pool:
        made = pool.map(_write_jpeg, jobs, chunksize=32)
    sides = [s for _, w, h in made for s in (w, h)]
    ratios = [w / h for _, w, h in made]
    return {
        "files": len(jobs),
        "mean_kib": round(sum(b for b, _, _ in made) / len(made) / 1024, 1),
        "sides_px": [min(sides), max(sides)],
        "aspect_ratios": [round(min(ratios), 2), round(max(ratios), 2)],
        "write_s": round(time.perf_counter() - started, 1),
    }


def ensure_photos(work: Path, smoke: bool) -> dict[str, Any]:
    """The folder `WORK/photos` (parts 3 and 4 share it), written once."""
    root = work / "photos"
    if (root / "train").is_dir():
        return {"reused": str(root)}
    return write_photos(root, 64 if smoke else 5_000)


def drop_page_cache() -> str:
    """'cold' when the kernel dropped its page cache, else why the reads are warm."""
    try:
        subprocess.run(["sync"], check=False)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return "cold"
    except OSError as exc:
        return f"warm (page cache not dropped: {exc.strerror or exc})"


def run(rec: Record, *, smoke: bool, work: Path, **_: Any) -> None:
    from distill_cli.bench.train import data_path, distill_step
    from distill_cli.recipe.document import load_recipe
    from distill_cli.train.build import build

    with rec.guard("write"):
        rec.set("photos", ensure_photos(work, smoke))
    root = work / "photos"
    path = BENCH / "resnet50_resnet18_gpu.yaml"
    workers = 2 if smoke else min(16, os.cpu_count() or 1)
    base = ["data.source=image_folder", f"data.root={root}", f"data.workers={workers}"]
    base += ["teacher.num_classes=10"]
    if smoke:
        base = tiny([*base, "schedule.batch_size=16"])
    batches = 4 if smoke else 16
    steps, warmup, window = (4, 2, 2) if smoke else (16, 6, 4)
    for decode in ("device", "workers"):
        items = [*base, f"data.decode={decode}"]
        recipe = load_recipe(path, items)
        rec.put("commands", decode, bench_command(path, items, None))
        with rec.guard(f"data_path_{decode}"):
            cache = drop_page_cache()
            timed = data_path(build(recipe), batches).to_dict()
            rec.put("data_path", decode, {**timed, "cache": cache})
        if decode == "device":  # where the host time of a decoded batch goes
            with rec.guard("data_path_profile"):
                profiled = data_path(build(recipe), 2 if smoke else 5, profile=True)
                rec.set("data_path_device_profile", profiled.profile)
        with rec.guard(f"full_step_{decode}"):
            cache = drop_page_cache()
            step = distill_step(recipe, warmup, steps, window)
            rec.put("full_step", decode, {**step.to_dict(), "cache": cache})
