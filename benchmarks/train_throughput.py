r"""distill's full function-matching step vs the bare distillation step, in one run.

The reference is ``shared/bench/bare_kd_step.py`` (teacher forward + student forward/backward +
fused AdamW on random tensors already on the GPU). distill's step is the real engine: uint8
images held in GPU memory, batched crop + flip + mixup + per-model normalization on the GPU,
online teacher, KL loss, clipping, schedule and logging. Both run here, one after the other,
with the same teacher, student, batch, resolution and precision; the ratio is printed. This is
`distill bench train` on a generated in-memory dataset, so it needs no files.

    python benchmarks/train_throughput.py --teacher resnet50 --student resnet18 --res 224

Without a GPU, ``--device cpu`` runs both steps on the CPU (the script is CUDA-only, so the
built-in copy of its step runs instead), which is how the test suite keeps this working.

Prints the images/s of both steps, their ratio and the data path's images/s (``--json``: the
whole result as one JSON line); writes no files.

    python benchmarks/train_throughput.py --device cpu --teacher test_vit --student test_resnet \
        --res 32 --batch 8 --steps 4 --warmup 1 --window 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchargs import at_least, fail, one_line_errors, parser, place

if TYPE_CHECKING:
    from distill_cli.bench.train_result import TrainBench

DEFAULT_BARE = Path(__file__).resolve().parents[2] / "shared" / "bench" / "bare_kd_step.py"


#: The recipe keys `measure` sets from this script's options (an error names the option).
OPTION_OF = {
    "student.input_size": "--res",
    "teacher.input_size": "--res",
    "student.model": "--student",
    "teacher.model": "--teacher",
    "schedule.batch_size": "--batch",
    "runtime.device": "--device",
}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--teacher", default="resnet50", metavar="NAME", help="timm model (resnet50)")
    p.add_argument("--student", default="resnet18", metavar="NAME", help="timm model (resnet18)")
    p.add_argument("--batch", type=at_least(1), default=256, help="images per step (256)")
    p.add_argument("--res", type=at_least(1), default=224, help="input side, px (224)")
    p.add_argument("--classes", type=at_least(2), default=1000, help="teacher's classes (1000)")
    p.add_argument(
        "--mode",
        choices=["fp32", "bf16_cl", "bf16_compile"],
        default="bf16_compile",
        help="precision and compilation of both steps (bf16_compile)",
    )
    p.add_argument("--steps", type=at_least(1), default=60, help="timed steps (60)")
    p.add_argument(
        "--warmup", type=at_least(0), default=20, help="untimed steps: compile, autotune (20)"
    )
    p.add_argument(
        "--window", type=at_least(1), default=10, help="steps per timing window, <= --steps (10)"
    )
    p.add_argument(
        "--images-batches", type=at_least(1), default=8, help="dataset size in batches (8)"
    )
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="(cuda)")
    p.add_argument(
        "--bare",
        type=place,
        default=None,
        help="path to bare_kd_step.py (default: ../shared/bench/, else the built-in bare step)",
    )
    p.add_argument("--json", action="store_true", help="print the whole result as one JSON line")
    a = p.parse_args()
    if a.bare is not None and a.device == "cpu":  # bench_train runs the script on CUDA only
        fail("--bare runs on CUDA only", "--bare", "drop it with --device cpu")
    # the shared reference beside the checkout when it is there, else distill's own copy
    a.bare = a.bare or (DEFAULT_BARE if DEFAULT_BARE.is_file() else None)
    if a.window > a.steps:  # the bare step would time a whole window, distill's only --steps
        fail(
            f"--window {a.window} is more than --steps {a.steps}",
            "--window",
            "give at most --steps",
        )
    from tuning import check_models

    one_line_errors(lambda: check_models([a.teacher], "--teacher"))
    one_line_errors(lambda: check_models([a.student], "--student"))
    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda, but this machine has no CUDA device", "--device", "pass --device cpu")
    result = one_line_errors(lambda: measure(a))
    if a.json:
        from tuning import environment

        print(json.dumps({**result.to_dict(), "environment": environment()}))
        return
    print(
        # what ran: --mode bf16_* is fp32 on a CPU (precision auto), compiled or not
        f"{a.teacher} -> {a.student}, batch {a.batch}, {a.res} px, {result.precision}"
        f"{', compiled' if result.compile else ''} on {result.device} (--mode {a.mode})"
    )
    print(f"  distill full step: {result.distill.images_per_s:>10,.1f} images/s")
    assert result.bare is not None and result.ratio is not None  # the recipe has a teacher
    print(f"  bare step        : {result.bare.images_per_s:>10,.1f} images/s")
    print(f"  ratio            : {result.ratio:.3f} (target >= {result.target_ratio})")
    data = result.data_path.images_per_s
    print(f"  data path alone  : {'-' if data is None else f'{data:>10,.1f}'} images/s")


def measure(a: argparse.Namespace) -> TrainBench:
    """`distill bench train` on the recipe the options describe (a bad value: one error line)."""
    from pydantic import ValidationError

    from distill_cli.bench.train import bench_train
    from distill_cli.errors import DistillError
    from distill_cli.recipe.document import Recipe
    from distill_cli.recipe.messages import format_validation_error

    size = {"input_size": a.res}
    body = {
        "name": "bench",
        "teacher": {"model": a.teacher, "num_classes": a.classes, **size},
        "student": {"model": a.student, **size},
        "data": {
            "source": "synthetic",
            "synthetic": {
                "num_classes": a.classes,
                "train_size": a.batch * a.images_batches,
                "val_size": a.batch,
                "image_size": round(a.res * 1.15),
            },
        },
        "method": {"name": "function_matching"},
        "schedule": {"steps": a.warmup + a.steps, "batch_size": a.batch},
        "runtime": {
            "device": a.device,
            "precision": "fp32" if a.mode == "fp32" else "auto",
            "channels_last": a.mode != "fp32" and a.device == "cuda",
            "compile": a.mode == "bf16_compile",
        },
    }
    try:
        recipe = Recipe.model_validate(body)
    except ValidationError as exc:
        raise format_validation_error(exc, "train_throughput.py options") from None
    try:
        return bench_train(
            recipe,
            steps=a.steps,
            warmup=a.warmup,
            window=a.window,
            bare_script=a.bare,
            data_batches=a.images_batches,
        )
    except DistillError as exc:  # a recipe key this script sets from an option: name the option
        option = OPTION_OF.get(exc.where or "")
        if option is None:
            raise
        raise DistillError(exc.what, option, f"{exc.hint} (here: {option})", exc.code) from None


if __name__ == "__main__":
    main()
