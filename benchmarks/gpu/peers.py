"""Part 3: the peers in the same run, on the same GPU and the same data (issue 26, item 3).

timm's own `train.py --kd-model-name` (benchmarks/peers/timm_kd.py) and torchdistill's KD
(benchmarks/peers/torchdistill_kd.py) beside `distill` with KD and with function matching, one
after the other on the one GPU, each timed by the same window rule (warm-up, median of windows):

(a) a JPEG folder of mixed-size photos (part 4's folder, written here when missing):
    resnet50 -> resnet18 at 224 px, batch 256, bf16, eager for all four (compile is part 2's);
    images/s of the full training step, data loading included.
(b) Fashion-MNIST held in memory (32 px): a resnet18 teacher trained here by `distill train`,
    then each of the four trains mobilenetv3_small_050 from it for the same epochs at the same
    batch, each with its own usual fast settings; images/s and the training seconds to
    `TARGET_TOP1` (evaluations excluded), with every epoch's top-1.

A peer that is not installed is skipped with the reason recorded; one that fails is an error of
this part (the others still run). The peers' versions are pinned in `environment`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from distill_cli.host import thread_budget
from gpu.common import (
    BENCH,
    PEERS,
    ROOT,
    SMOKE_FMNIST,
    SMOKE_FMNIST_IMAGES,
    Record,
    cli,
    last_evals,
    sets,
    time_to_top1,
    tiny,
)
from gpu.photos import ensure_photos

#: the student top-1 (%) on Fashion-MNIST's test set that "time to accuracy" is read at
TARGET_TOP1 = 84.0
TEACHER_EPOCHS, STUDENT_EPOCHS = 3, 4
EVAL_KEYS = ("epoch", "train_time_s", "top1")


def run(rec: Record, *, smoke: bool, work: Path, fmnist: Path | None, **_: Any) -> None:
    peers = work / "peers"
    peers.mkdir(parents=True, exist_ok=True)
    missing = {} if importlib.util.find_spec("torchdistill") else {"torchdistill": NO_TORCHDISTILL}
    rec.set("skipped", missing)
    with rec.guard("photos"):
        rec.set("photos", ensure_photos(work, smoke))
    jpeg_folder(rec, smoke=smoke, out=peers, root=work / "photos", skip=missing)
    if fmnist is None or not fmnist.is_dir():
        rec.data["errors"].append(f"(b) small images: no Fashion-MNIST folder ({fmnist})")
        return
    small_images(rec, smoke=smoke, out=peers, fmnist=fmnist, skip=missing)


NO_TORCHDISTILL = (
    "torchdistill is not installed: carry its wheel (pip download torchdistill==1.1.5 --no-deps)"
)


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), str(PEERS), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def _peer(rec: Record, group: str, name: str, cmd: list[str], out: Path) -> None:
    """Runs one peer's script; its JSON result goes into `rec[group][name]`."""
    with rec.guard(f"{group}: {name}"):
        out.unlink(missing_ok=True)
        proc = subprocess.run(cmd, cwd=ROOT, env=_env())
        if out.is_file():
            rec.put(group, name, json.loads(out.read_text()))
        if proc.returncode:
            raise RuntimeError(f"exit code {proc.returncode}")


# --- (a) the JPEG folder ------------------------------------------------------------------------


def jpeg_folder(rec: Record, *, smoke: bool, out: Path, root: Path, skip: dict) -> None:
    from distill_cli.bench.train import distill_step
    from distill_cli.recipe.document import load_recipe

    teacher, student, size, batch = ("resnet50", "resnet18", 224, 256)
    steps, warmup, window, workers = (20, 8, 4, min(16, os.cpu_count() or 1))
    device = ["--device", "cuda"]
    if smoke:
        teacher, student, size, batch = ("test_resnet", "test_efficientnet", 32, 16)
        steps, warmup, window, workers, device = (4, 2, 2, 2, ["--device", "cpu"])
    rec.put("jpeg", "settings", {"teacher": teacher, "student": student, "size": size})
    rec.put("jpeg", "batch", batch)
    path = BENCH / "resnet50_resnet18_gpu.yaml"
    base = ["data.source=image_folder", f"data.root={root}", f"data.workers={workers}"]
    base += ["teacher.num_classes=10", "runtime.compile=false", f"schedule.batch_size={batch}"]
    if smoke:
        base = tiny(base)
    for method in ("kd", "function_matching"):
        items = [*base, f"method.name={method}"]
        with rec.guard(f"jpeg: distill {method}"):
            result = distill_step(load_recipe(path, items), warmup, steps, window)
            argv = ["distill", "bench", "train", str(path.relative_to(ROOT)), *sets(items)]
            rec.put("jpeg", f"distill {method}", {**result.to_dict(), "command": " ".join(argv)})
    train = ["--data-dir", str(root), "--train-split", "train", "--val-split", "val"]
    train += ["--model", student, "--num-classes", "10", "--kd-model-name", teacher]
    train += ["-b", str(batch), "--epochs", "1", "--img-size", str(size), "--workers", str(workers)]
    train += ["--opt", "adamw", "--lr", "1e-3", "--warmup-epochs", "0", "--log-interval", "50"]
    train += ["--output", str(out / "timm"), "--checkpoint-hist", "1", *device]
    train += [] if smoke else ["--amp", "--amp-dtype", "bfloat16", "--channels-last"]
    result = out / "timm_jpeg.json"
    cmd = [sys.executable, str(PEERS / "timm_kd.py"), "--teacher", teacher, "--out", str(result)]
    cmd += ["--warmup", str(warmup), "--window", str(window), "--", *train]
    _peer(rec, "jpeg", "timm", cmd, result)
    if "torchdistill" in skip:
        return
    result = out / "torchdistill_jpeg.json"
    cmd = [sys.executable, str(PEERS / "torchdistill_kd.py"), "--data", f"jpeg:{root}"]
    cmd += ["--teacher", teacher, "--student", student, "--size", str(size)]
    cmd += ["--batch", str(batch), "--steps", str(warmup + steps), "--workers", str(workers)]
    cmd += ["--warmup", str(warmup), "--window", str(window), "--out", str(result), *device]
    cmd += [] if smoke else ["--bf16"]
    _peer(rec, "jpeg", "torchdistill", cmd, result)


# --- (b) small images in memory -------------------------------------------------------------------


def small_images(rec: Record, *, smoke: bool, out: Path, fmnist: Path, skip: dict) -> None:
    runs = out / "runs"
    target = 0.0 if smoke else TARGET_TOP1  # smoke: any accuracy, so the reading is exercised
    t_epochs, s_epochs = (1, 1) if smoke else (TEACHER_EPOCHS, STUDENT_EPOCHS)
    batch = 64 if smoke else 512
    rec.put("small", "settings", {"target_top1": target, "epochs": s_epochs, "batch": batch})
    data, cpu = fmnist_data(fmnist, runs, smoke), smoke_cpu(smoke)
    ckpt = ensure_teacher(rec, smoke=smoke, runs=runs, fmnist=fmnist, epochs=t_epochs)
    if ckpt is None:
        return
    t_name, s_name = ("test_resnet", "test_efficientnet") if smoke else ("resnet18", None)
    s_sets = [*data, *cpu, f"teacher.checkpoint={ckpt}", f"schedule.epochs={s_epochs}"]
    s_sets += [f"schedule.evals={s_epochs}", f"schedule.batch_size={batch}"]
    if smoke:
        s_sets += ["teacher.check_accuracy=false", f"teacher.model={t_name}"]
        s_sets += [f"student.model={s_name}"]
    s_name = s_name or "mobilenetv3_small_050"
    for method in ("kd", "function_matching"):
        name = f"peers-distill-{method}"
        cmd = cli("run", str(BENCH / "gpu_quality_fm.yaml"), "--overwrite")
        cmd += [*sets([*s_sets, f"method.name={method}", f"output.name={name}"])]
        with rec.guard(f"small: distill {method}"):
            subprocess.run(cmd, cwd=ROOT, check=True, env=_env())
            evals = last_evals(runs / name)
            summary = json.loads((runs / name / "summary.json").read_text())
            rec.put(
                "small",
                f"distill {method}",
                {
                    "command": " ".join(cmd[2:]),
                    "images_per_s": summary.get("images_per_s"),
                    "evals": [
                        {k: e.get(k) for k in ("epoch", "train_time_s", "top1")} for e in evals
                    ],
                    "seconds_to_target": time_to_top1(evals, target, "train_time_s"),
                },
            )
    common = ["--teacher", t_name, "--teacher-checkpoint", str(ckpt)]
    warmup, window = ("2", "2") if smoke else ("5", "5")  # smoke: 4 batches of 64
    common += ["--warmup", warmup, "--window", window]
    train = ["--dataset", "fmnist-memory", "--data-dir", str(fmnist), "--model", s_name]
    train += ["--num-classes", "10", "--kd-model-name", t_name, "-b", str(batch)]
    train += ["--epochs", str(s_epochs), "--img-size", "32", "--opt", "adamw", "--lr", "1e-2"]
    train += ["--warmup-epochs", "0", "--workers", "1" if smoke else "16", "--log-interval", "50"]
    train += ["--output", str(out / "timm"), "--checkpoint-hist", "1"]
    train += ["--device", "cpu"] if smoke else ["--amp", "--amp-dtype", "bfloat16"]
    limit = ["--limit", str(SMOKE_FMNIST_IMAGES)] if smoke else []
    result = out / "timm_small.json"
    cmd = [sys.executable, str(PEERS / "timm_kd.py"), *common, "--fmnist", str(fmnist), *limit]
    cmd += ["--out", str(result), "--", *train]
    _peer(rec, "small", "timm", cmd, result)
    _with_target(rec, "timm", target)
    if "torchdistill" in skip:
        return
    result = out / "torchdistill_small.json"
    cmd = [sys.executable, str(PEERS / "torchdistill_kd.py"), "--data", f"fmnist:{fmnist}"]
    cmd += [*common, "--student", s_name, "--size", "32", "--batch", str(batch), *limit]
    cmd += ["--epochs", str(s_epochs), "--lr", "1e-2", "--out", str(result)]
    cmd += ["--device", "cpu"] if smoke else ["--bf16"]
    _peer(rec, "small", "torchdistill", cmd, result)
    _with_target(rec, "torchdistill", target)


def fmnist_data(fmnist: Path, runs: Path, smoke: bool) -> list[str]:
    data = ["data.source=fashion_mnist", f"data.root={fmnist}", f"output.dir={runs}"]
    return data + (SMOKE_FMNIST if smoke else [])


def smoke_cpu(smoke: bool) -> list[str]:
    threads = f"runtime.threads={thread_budget()}"  # the caller's budget (see tiny)
    return ["runtime.device=cpu", threads, "runtime.compile=false"] if smoke else []


def ensure_teacher(
    rec: Record, *, smoke: bool, runs: Path, fmnist: Path, epochs: int = TEACHER_EPOCHS
) -> Path | None:
    """The resnet18 Fashion-MNIST teacher (`WORK/peers/runs/peers-teacher`), trained by
    `distill train` unless there already; parts 3 and 6 share it. None when it failed."""
    ckpt = runs / "peers-teacher" / "checkpoints" / "best.safetensors"
    if ckpt.is_file():
        rec.put("teacher", "reused", str(ckpt))
        return ckpt
    items = [*fmnist_data(fmnist, runs, smoke), *smoke_cpu(smoke)]
    items += [f"schedule.epochs={epochs}", "schedule.evals=1"]
    items += ["model.model=test_resnet", "schedule.batch_size=64"] if smoke else []
    cmd = cli("train", str(BENCH / "gpu_quality_teacher.yaml"), "--overwrite")
    cmd += [*sets(items), "--set", "output.name=peers-teacher"]
    rec.put("teacher", "command", " ".join(cmd[2:]))
    with rec.guard("teacher"):
        subprocess.run(cmd, cwd=ROOT, check=True)
        rec.put("teacher", "last_eval", (last_evals(runs / "peers-teacher") or [{}])[-1])
    return ckpt if ckpt.is_file() else None


def _with_target(rec: Record, name: str, target: float) -> None:
    entry = rec.data.get("small", {}).get(name)
    if entry:
        entry["seconds_to_target"] = time_to_top1(entry["evals"], target, "seconds")
        rec.save()
