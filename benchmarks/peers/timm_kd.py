"""timm's own `train.py --kd-model-name` as the GPU check's peer, with three hooks and no edit.

timm's train.py (copied unchanged as third_party/timm_train.py) builds its KD teacher with
`pretrained=True` from the Hugging Face hub, which the GPU machine cannot reach, and it logs the
rate of single steps, not of windows. This launcher imports it as a module and, before calling
its `main()`:

- hands `LogitDistillationTask` the teacher built here (random weights, or `--teacher-checkpoint`
  loaded by distill's loader), so every peer distils from the same teacher;
- serves `--dataset fmnist-memory` as Fashion-MNIST held in memory as RGB (benchmarks/peers/
  common.py), through timm's own transforms and loader;
- counts the training loader's batches with the windowed rule of `distill bench train` and wraps
  `validate` to stamp each epoch's top-1 with the seconds since training started.

    python benchmarks/peers/timm_kd.py --teacher resnet50 --out result.json -- \
        --data-dir DIR --train-split train --val-split val --model resnet18 --num-classes 10 \
        --kd-model-name resnet50 -b 256 --epochs 1 --img-size 224 --amp --amp-dtype bfloat16
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import timm
import torch

HERE = Path(__file__).resolve().parent
TRAIN_PY = HERE / "third_party" / "timm_train.py"  # third-party code, kept apart from ours
sys.path.insert(0, str(HERE))
from common import FMNISTPIL, PeerResult, Windows  # noqa: E402


def load_train_module() -> Any:
    spec = importlib.util.spec_from_file_location("timm_train", TRAIN_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class CountedLoader:
    """The training loader, its batches counted by `Windows` (a sync at each window's end)."""

    def __init__(self, loader: Any, timer: Windows, clock: dict[str, float]) -> None:
        self.loader, self.timer, self.clock = loader, timer, clock

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def __iter__(self) -> Any:
        self.clock.setdefault("start", time.perf_counter())
        for batch in self.loader:
            yield batch
            self.timer.tick(len(batch[1]))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--teacher", required=True, help="the timm name of the teacher")
    p.add_argument(
        "--teacher-checkpoint", type=Path, default=None, help="its weights (default: random)"
    )
    p.add_argument("--fmnist", type=Path, default=None, help="IDX folder for fmnist-memory")
    p.add_argument("--limit", type=int, default=None, help="fmnist-memory: first N images")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps (10)")
    p.add_argument("--window", type=int, default=5, help="steps per timing window (5)")
    p.add_argument(
        "--out", type=Path, required=True, help="result JSON: images/s per window, top-1 per epoch"
    )
    p.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then train.py's arguments")
    a = p.parse_args()
    train_args = a.train_args[1:] if a.train_args[:1] == ["--"] else a.train_args
    tm = load_train_module()
    if "--kd-model-name" not in TRAIN_PY.read_text():
        raise SystemExit("this timm train.py has no --kd-model-name")

    classes = int(train_args[train_args.index("--num-classes") + 1])
    teacher = timm.create_model(a.teacher, num_classes=classes)
    if a.teacher_checkpoint:
        from distill_cli.models.weights import load_weights

        load_weights(teacher, a.teacher_checkpoint)
    original_task = tm.LogitDistillationTask

    def task(*args: Any, teacher_model: Any = None, **kwargs: Any) -> Any:
        return original_task(*args, teacher_model=teacher, **kwargs)

    tm.LogitDistillationTask = task

    original_dataset = tm.create_dataset

    def dataset(name: str, root: str, split: str, is_training: bool = False, **kw: Any) -> Any:
        if name != "fmnist-memory":
            return original_dataset(name, root=root, split=split, is_training=is_training, **kw)
        assert a.fmnist is not None, "--dataset fmnist-memory needs --fmnist"
        limit = a.limit if is_training else (None if a.limit is None else max(256, a.limit // 4))
        return FMNISTPIL(a.fmnist, "train" if is_training else "test", limit)

    tm.create_dataset = dataset

    device = torch.device("cpu" if "--device" in train_args and "cpu" in train_args else "cuda")
    timer = Windows(device, a.warmup, a.window)
    clock: dict[str, float] = {}
    batch = int(train_args[train_args.index("-b") + 1]) if "-b" in train_args else 128
    result = PeerResult(
        peer="timm train.py --kd-model-name (LogitDistillationTask)",
        version=timm.__version__,
        command=shlex.join([sys.executable, *sys.argv]),
        data=str(a.fmnist or "image folder (see command)"),
        device=torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        batch=batch,
        notes=[
            "train.py from timm commit aa4b5850 (1.0.29.dev0) run against the installed timm",
            "teacher built by the launcher (the script loads it from the hub otherwise)",
        ],
    )
    original_loader = tm.create_loader

    def loader(dataset: Any, *args: Any, is_training: bool = False, **kw: Any) -> Any:
        made = original_loader(dataset, *args, is_training=is_training, **kw)
        return CountedLoader(made, timer, clock) if is_training else made

    tm.create_loader = loader

    original_validate = tm.validate

    def validate(*args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        seconds = t0 - clock.get("start", t0) - clock.get("evaluating", 0.0)  # training only
        metrics = original_validate(*args, **kw)
        clock["evaluating"] = clock.get("evaluating", 0.0) + time.perf_counter() - t0
        epoch = len(result.evals) + 1
        result.evals.append({"epoch": epoch, "seconds": seconds, "top1": float(metrics["top1"])})
        result.windows_images_per_s = timer.values
        result.write(a.out)
        return metrics

    tm.validate = validate
    sys.argv = [str(TRAIN_PY), *train_args]
    started = time.perf_counter()
    tm.main()
    end = time.perf_counter()
    result.train_seconds = end - clock.get("start", started) - clock.get("evaluating", 0.0)
    result.windows_images_per_s = timer.values
    result.write(a.out)


if __name__ == "__main__":
    main()
