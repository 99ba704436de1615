"""torchdistill's KD as the GPU check's peer: its DistillationBox with its `KDLoss`, timm models.

torchdistill is driven by a YAML config plus an example script that is not in its wheel; this
is the smallest driver over its public API: `get_distillation_box(teacher, student, ...)` with
a train config naming the frozen teacher, the optimizer and the criterion (`KDLoss` inside
`WeightedSumLoss`, as in its shipped KD configs), then `box.forward_process` and
`box.post_forward_process` per batch. The data is the same as distill's (benchmarks/peers/
common.py), loaded here, not by torchdistill's dataset registry.

    python benchmarks/peers/torchdistill_kd.py --data jpeg:DIR --teacher resnet50 \
        --student resnet18 --size 224 --batch 256 --steps 60 --out result.json
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PeerResult, Windows, fmnist_loaders, jpeg_loaders, top1


def kd_config(lr: float, temperature: float, alpha: float) -> dict:
    logits = {"student_module_path": ".", "student_module_io": "output"}
    logits |= {"teacher_module_path": ".", "teacher_module_io": "output"}
    kd = {"key": "KDLoss", "kwargs": {**logits, "temperature": temperature, "alpha": alpha}}
    return {
        "num_epochs": 1,
        "teacher": {"forward_proc": "forward_batch_only", "requires_grad": False},
        "student": {"forward_proc": "forward_batch_only", "requires_grad": True},
        "optimizer": {"key": "AdamW", "kwargs": {"lr": lr, "weight_decay": 1e-4}},
        "criterion": {
            "key": "WeightedSumLoss",
            "kwargs": {"sub_terms": {"kd": {"criterion": kd, "weight": 1.0}}},
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", required=True, help="jpeg:DIR or fmnist:DIR")
    p.add_argument("--teacher", required=True, help="timm model of the teacher")
    p.add_argument(
        "--teacher-checkpoint", type=Path, default=None, help="its weights (default: random)"
    )
    p.add_argument("--student", required=True, help="timm model of the student")
    p.add_argument("--classes", type=int, default=10, help="classes (10)")
    p.add_argument("--size", type=int, required=True, help="input side, px")
    p.add_argument("--batch", type=int, required=True, help="images per step")
    p.add_argument("--epochs", type=int, default=1, help="epochs (1)")
    p.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--limit", type=int, default=None, help="Fashion-MNIST: first N images")
    p.add_argument("--workers", type=int, default=4, help="data loader workers (4)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (1e-3)")
    p.add_argument("--bf16", action="store_true", help="autocast bf16 (CUDA)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps (10)")
    p.add_argument("--window", type=int, default=5, help="steps per timing window (5)")
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cuda or cpu (default: cuda where available)",
    )
    p.add_argument(
        "--out", type=Path, required=True, help="result JSON: images/s per window, top-1 per epoch"
    )
    a = p.parse_args()

    from importlib.metadata import version

    import torchdistill  # noqa: F401  (registers its losses and forward functions)
    from torchdistill.core.distillation import get_distillation_box

    device = torch.device(a.device)
    kind, _, root = a.data.partition(":")
    teacher = timm.create_model(a.teacher, num_classes=a.classes)
    if a.teacher_checkpoint:
        from distill_cli.models.weights import load_weights

        load_weights(teacher, a.teacher_checkpoint)
    student = timm.create_model(a.student, num_classes=a.classes)
    teacher, student = teacher.to(device).eval(), student.to(device)
    cfg = timm.data.resolve_data_config({}, model=student)  # one input for both models
    if kind == "fmnist":
        train, val = fmnist_loaders(
            Path(root), a.size, a.batch, a.limit, device, cfg["mean"], cfg["std"]
        )
    else:
        train, val = jpeg_loaders(Path(root), a.size, a.batch, a.workers, cfg["mean"], cfg["std"])
    box = get_distillation_box(
        teacher, student, {}, kd_config(a.lr, 4.0, 0.5), device, None, False, 1.0
    )
    result = PeerResult(
        peer="torchdistill KD (KDLoss, alpha 0.5, T 4)",
        version=version("torchdistill"),
        command=shlex.join([sys.executable, *sys.argv]),
        data=a.data,
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        batch=a.batch,
    )
    if kind != "fmnist":
        result.notes.append("JPEGs decoded by PIL in DataLoader workers (torchvision ImageFolder)")
    timer = Windows(device, a.warmup, a.window)
    started, steps, evaluating = time.perf_counter(), 0, 0.0
    box.student_model.train()
    for epoch in range(a.epochs):
        for x, y in train:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, torch.bfloat16, enabled=a.bf16):
                loss = box.forward_process(x, y)
            box.post_forward_process(loss)
            steps += 1
            timer.tick(len(y))
            if a.steps and steps >= a.steps:
                break
        elapsed = time.perf_counter() - started - evaluating  # training seconds only
        t0 = time.perf_counter()
        acc = top1(box.student_model, val, device)
        evaluating += time.perf_counter() - t0
        result.evals.append({"epoch": epoch + 1, "seconds": elapsed, "top1": acc})
        result.windows_images_per_s = timer.values
        result.write(a.out)
        print(f"epoch {epoch + 1}: top-1 {acc:.2f}% at {elapsed:.1f} s", flush=True)
        if a.steps and steps >= a.steps:
            break
    result.train_seconds = time.perf_counter() - started - evaluating
    result.write(a.out)


if __name__ == "__main__":
    main()
