"""Part 2: distill's step against the bare step, alternated and timed alike (issue 26, item 2).

Two settings, each `bench_train` with `rounds` alternations (distill, bare, distill, bare...),
both sides timed by the same rule (warm-up, then the median of windows) and reported with
their rounds' spread:

- 224 px: resnet50 -> resnet18, batch 256, bf16 + channels_last + compile, uint8 images in GPU
  memory; the reference script `bare_kd_step.py` also runs once, hashed, as a cross-check of the
  built-in bare step; a profile of distill's step.
- small images: resnet50 -> mobilenetv3_small_050 at 32 px on Fashion-MNIST held on the GPU:
  the plain eager step at batch 512, then the large batch eager (the eager-loop ratio at equal
  batch) and the large batch as CUDA graphs (distill vs bare at equal settings), and the large
  CUDA-graph batch against the plain one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpu.common import BENCH, Record, bench_command, fmnist_sets, sha256, tiny

ROUNDS = 3
SMOKE_ROUNDS = 2  # still alternating; a third round of tiny models proves nothing more


def run(rec: Record, *, smoke: bool, bare: Path | None, fmnist: Path | None, **_: Any) -> None:
    rounds = SMOKE_ROUNDS if smoke else ROUNDS
    large_images(rec, smoke=smoke, bare=bare, rounds=rounds)
    # smoke: one round each (the alternation is exercised above), so the suite stays short
    small_images(rec, smoke=smoke, fmnist=fmnist, rounds=1 if smoke else rounds)


def large_images(rec: Record, *, smoke: bool, bare: Path | None, rounds: int) -> None:
    from distill_cli.bench.train import bare_step, bench_train, profile_step
    from distill_cli.recipe.document import load_recipe
    from distill_cli.train.build import build

    path = BENCH / "resnet50_resnet18_gpu.yaml"
    items: list[str] = []
    if smoke:
        items = tiny(["data.synthetic.train_size=128", "data.synthetic.image_size=36"])
        items += ["data.synthetic.val_size=32"]  # the yaml's 256 would be evaluated each round
        items += ["schedule.batch_size=16", "teacher.num_classes=10"]
        items += ["data.synthetic.num_classes=10"]
    recipe = load_recipe(path, items)
    steps, warmup, window = (4, 2, 2) if smoke else (20, 10, 5)
    rec.put("large", "command", bench_command(path, items, None, rounds))
    with rec.guard("large: bench_train"):
        result = bench_train(
            recipe,
            steps=steps,
            warmup=warmup,
            window=window,
            data_batches=2 if smoke else 6,
            rounds=rounds,
        )
        rec.put("large", "bench_train", result.to_dict())
    with rec.guard("large: bare_kd_step.py"):
        if bare is None:  # needed on the GPU; a CPU smoke run (CI) has no copy of it
            missing = "bare_kd_step.py not found (pass --bare; see DEFAULT_BARE)"
            if not smoke:
                raise FileNotFoundError(missing)
            reference: dict[str, Any] = {"skipped": missing}
        else:
            reference = {"path": str(bare), "sha256": sha256(bare)}
            setup = build(recipe)
            if setup.device.type == "cuda":
                reference.update(bare_step(setup, steps, bare).to_dict())
            else:
                reference["skipped"] = "the script runs on CUDA only"
        rec.put("large", "bare_script", reference)
    with rec.guard("large: profile"):
        profile = {"steps": 2, "warmup": 1} if smoke else {"steps": 3}
        rec.put("large", "profile_distill_step", profile_step(build(recipe), **profile))


def small_images(rec: Record, *, smoke: bool, fmnist: Path | None, rounds: int) -> None:
    from distill_cli.bench.train import bench_train
    from distill_cli.recipe.document import load_recipe

    path = BENCH / "small_images_gpu.yaml"
    base = fmnist_sets(fmnist, smoke)
    if smoke:
        base = tiny(base)
    plain_batch, big = (16, 64) if smoke else (512, 4096)
    steps, warmup, window = (4, 2, 2) if smoke else (12, 6, 3)
    rec.put("small", "data", "fashion_mnist" if fmnist else "synthetic (Fashion-MNIST's shape)")
    configs = {
        f"batch {plain_batch}, eager": [
            f"schedule.batch_size={plain_batch}",
            "runtime.compile=false",
        ],
        f"batch {big}, eager": [f"schedule.batch_size={big}", "runtime.compile=false"],
        f"batch {big}, CUDA graphs": [f"schedule.batch_size={big}"],
    }
    if smoke:  # compiling on 2 CPU cores takes minutes: the smoke run keeps to the eager path
        configs[f"batch {big}, CUDA graphs"] = [
            f"schedule.batch_size={big}",
            "runtime.compile=false",
        ]
    for name, extra in configs.items():
        items = [*base, *extra]
        with rec.guard(f"small: {name}"):
            result = bench_train(
                load_recipe(path, items),
                steps=steps,
                warmup=warmup,
                window=window,
                data_batches=2 if smoke else 4,
                rounds=rounds,
            )
            command = bench_command(path, items, None, rounds)
            rec.put("small", name, {**result.to_dict(), "command": command})
    done = rec.data.get("small", {})
    plain, graphs = done.get(f"batch {plain_batch}, eager"), done.get(f"batch {big}, CUDA graphs")
    if plain and graphs:
        ratio = graphs["distill"]["images_per_s"] / plain["distill"]["images_per_s"]
        rec.put("small", "graphs_to_plain", {"ratio": ratio, "target": 3.0})
