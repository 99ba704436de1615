"""The parts of `gpu_check.py`, each run in its own process (see that file for the why).

Every part writes what it measured to `WORK/partN.json` as soon as it has it, so a part stopped
at its time limit still reports its first numbers; an exception inside one measurement is
recorded in `errors` and the part goes on with the next.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing import Pool
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


class Record:
    """One part's results, rewritten to disk after every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"errors": []}
        self.save()

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.save()

    @contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Runs one measurement; its failure is written down and the part goes on."""
        started = time.perf_counter()
        try:
            yield
        except Exception as exc:
            traceback.print_exc()
            self.data["errors"].append(f"{what}: {type(exc).__name__}: {str(exc)[:400]}")
        finally:
            self.data.setdefault("seconds", {})[what] = round(time.perf_counter() - started, 1)
            self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        tmp.replace(self.path)


def environment() -> dict[str, Any]:
    import timm
    import torch

    env = {"torch": torch.__version__, "timm": timm.__version__, "python": sys.version.split()[0]}
    if torch.cuda.is_available():
        env.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda)
    else:
        env["gpu"] = None
    return env


def run_part(
    part: int,
    *,
    smoke: bool,
    work: Path,
    bare: Path | None,
    fmnist: Path | None,
    deadline: float,
) -> None:
    rec = Record(work / f"part{part}.json")
    rec.set("environment", environment())
    {
        1: part1_gpu_tests,
        2: part2_throughput,
        3: part3_small_images,
        4: part4_jpeg,
        5: part5_quality,
    }[part](rec, smoke=smoke, work=work, bare=bare, fmnist=fmnist, deadline=deadline)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "distill_cli", *args]


# --- 1: the GPU tests ---------------------------------------------------------------------------


def part1_gpu_tests(rec: Record, *, smoke: bool, work: Path, **_: Any) -> None:
    junit = work / "gpu-tests.xml"
    junit.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/", "-q", "-p", "no:cacheprovider"]
    cmd += ["--continue-on-collection-errors", f"--junitxml={junit}", "-o", "junit_family=xunit1"]
    rec.set("command", " ".join(cmd[1:]))
    env = {**os.environ, "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}  # for the determinism test
    with rec.guard("pytest"):
        # output straight into the part's log, test by test: a part stopped at its limit still
        # shows which tests passed (the junit file is only written at the end)
        proc = subprocess.run([*cmd, "-v", "--durations=0"], cwd=ROOT, env=env)
        rec.set("exit_code", proc.returncode)
        rec.set("tests", _junit_tests(junit))
        outcomes = [t["outcome"] for t in rec.data["tests"]]
        rec.set("summary", {o: outcomes.count(o) for o in sorted(set(outcomes))})
        failed = [t["name"] for t in rec.data["tests"] if t["outcome"] == "failed"]
        if proc.returncode not in (0, 5) or failed:  # 5: nothing collected (smoke, no gpu tests)
            rec.data["errors"].append(f"gpu tests failed: {failed or proc.returncode}")


def _junit_tests(path: Path) -> list[dict[str, Any]]:
    """Each test's outcome, time, failure message and recorded properties (from junit xml)."""
    if not path.is_file():
        return []
    tests = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", None
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = "failed" if tag != "skipped" else "skipped"
                message = (node.get("message") or "")[:600]
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        tests.append(
            {
                "name": case.get("name"),
                "outcome": outcome,
                "seconds": float(case.get("time") or 0),
                **({"message": message} if message else {}),
                **({"properties": props} if props else {}),
            }
        )
    return tests


# --- 2: distill's step vs the bare step ---------------------------------------------------------


def _tiny(recipe_overrides: list[str], *, teacher: bool = True) -> list[str]:
    """Smoke mode's stand-ins: timm's test models at 32 px on the CPU, no compile."""
    out = [*recipe_overrides, "student.model=test_efficientnet", "student.input_size=32"]
    out += ["runtime.device=cpu", "runtime.compile=false", "runtime.threads=2"]
    if teacher:
        out += ["teacher.model=test_resnet", "teacher.input_size=32"]
    return out


def part2_throughput(rec: Record, *, smoke: bool, bare: Path | None, **_: Any) -> None:
    from distill_cli.bench.train import bench_train, profile_step
    from distill_cli.recipe.document import load_recipe
    from distill_cli.train.build import build

    path = BENCH / "resnet50_resnet18_gpu.yaml"
    sets: list[str] = []
    if smoke:
        sets = _tiny(["data.synthetic.train_size=128", "data.synthetic.image_size=36"])
        sets += [
            "schedule.batch_size=16",
            "teacher.num_classes=10",
            "data.synthetic.num_classes=10",
        ]
    recipe = load_recipe(path, sets)
    steps, warmup, window = (6, 2, 2) if smoke else (40, 15, 5)
    rec.set("command", _bench_command(path, sets, bare))
    with rec.guard("bench_train"):
        result = bench_train(
            recipe, steps=steps, warmup=warmup, window=window, bare_script=bare, data_batches=6
        )
        rec.set("bench_train", result)
    with rec.guard("profile"):
        rec.set("profile_distill_step", profile_step(build(recipe), steps=3 if smoke else 5))


def _bench_command(path: Path, sets: list[str], bare: Path | None) -> str:
    args = ["distill", "bench", "train", str(path.relative_to(ROOT))]
    args += _sets(sets)
    return " ".join(args + (["--bare", str(bare)] if bare else []))


# --- 3: small images ------------------------------------------------------------------------------


def _fmnist_sets(fmnist: Path | None, smoke: bool) -> list[str]:
    if fmnist is None:  # the shape of Fashion-MNIST without its files (the yaml's default)
        return ["data.synthetic.train_size=512"] if smoke else []
    sets = ["data.source=fashion_mnist", f"data.root={fmnist}"]
    return sets + (["data.subset=512", "data.val_limit=256"] if smoke else [])


def part3_small_images(rec: Record, *, smoke: bool, fmnist: Path | None, **_: Any) -> None:
    from distill_cli.bench.train import bench_train, distill_step
    from distill_cli.recipe.document import load_recipe

    path = BENCH / "small_images_gpu.yaml"
    base = _fmnist_sets(fmnist, smoke)
    if smoke:
        base = _tiny(base)
    plain_batch, big = (16, 64) if smoke else (512, 4096)
    steps, warmup, window = (4, 2, 2) if smoke else (40, 20, 5)
    plain = [*base, f"schedule.batch_size={plain_batch}", "runtime.compile=false"]
    rec.set("data", "fashion_mnist" if fmnist else "synthetic (Fashion-MNIST's shape)")
    rec.set("plain_command", _bench_command(path, plain, None))
    with rec.guard("plain"):  # distill's eager bf16 step at 512, and the bare step beside it
        result = bench_train(load_recipe(path, plain), steps=steps, warmup=warmup, window=window)
        rec.set("plain", result)
    configs = {
        f"batch {big}, eager": [*base, f"schedule.batch_size={big}", "runtime.compile=false"],
        f"batch {big}, CUDA graphs (compile reduce-overhead)": [
            *base,
            f"schedule.batch_size={big}",
        ],
    }
    if smoke:  # compiling on 2 CPU cores takes minutes: the smoke run keeps to the eager path
        configs.pop(f"batch {big}, CUDA graphs (compile reduce-overhead)")
    best: dict[str, Any] = {}
    for name, sets in configs.items():
        with rec.guard(name):
            best[name] = {
                **distill_step(load_recipe(path, sets), warmup, steps, window),
                "command": _bench_command(path, sets, None),
            }
            rec.set("configs", best)
    plain_ips = rec.data.get("plain", {}).get("distill", {}).get("images_per_s")
    if plain_ips and best:
        top = max(best, key=lambda k: best[k]["images_per_s"])
        rec.set("best", {"config": top, "ratio_to_plain": best[top]["images_per_s"] / plain_ips})


# --- 5: quality at GPU speed --------------------------------------------------------------------


def _last_eval(run: Path) -> dict[str, Any] | None:
    """The run's last evaluation from metrics.jsonl (there even when the run was stopped)."""
    metrics = run / "metrics.jsonl"
    if not metrics.is_file():
        return None
    evals = [json.loads(x) for x in metrics.read_text().splitlines() if '"eval"' in x]
    return evals[-1] if evals else None


def part5_quality(
    rec: Record, *, smoke: bool, work: Path, fmnist: Path | None, deadline: float, **_: Any
) -> None:
    runs = work / "quality"
    data = _fmnist_sets(fmnist, smoke)
    if fmnist is None:
        data = [
            "data.source=synthetic",
            "data.synthetic.num_classes=10",
            "data.synthetic.channels=1",
        ]
        data += ["data.synthetic.image_size=28", "data.synthetic.train_size=512" if smoke else ""]
        data = [x for x in data if x]
    common = [*data, f"output.dir={runs}"]
    if smoke:
        common += ["runtime.device=cpu", "runtime.threads=1", "schedule.batch_size=64"]
        common += ["schedule.eval_batch_size=256"]
    t_sets = [*common, "schedule.epochs=1" if smoke else "schedule.epochs=12"]
    t_sets += ["schedule.evals=1"] if smoke else []
    if smoke:
        t_sets += ["model.model=test_resnet"]
    teacher_cmd = _cli("train", str(BENCH / "gpu_quality_teacher.yaml"), "--overwrite")
    teacher_cmd += _sets(t_sets)
    rec.set("teacher_command", " ".join(teacher_cmd[2:]))
    ckpt = runs / "gpu-quality-teacher" / "checkpoints" / "best.safetensors"
    with rec.guard("teacher"):
        subprocess.run(teacher_cmd, cwd=ROOT, check=True)
        rec.set("teacher", _summary(runs / "gpu-quality-teacher"))
    s_sets = [*common, f"teacher.checkpoint={ckpt}"]
    if smoke:  # the yaml's 80 epochs as CUDA graphs are the GPU's; compiling on a CPU is slow
        s_sets += ["schedule.epochs=1", "schedule.evals=1", "runtime.compile=false"]
        s_sets += ["teacher.check_accuracy=false"]  # a 1-epoch smoke teacher is near chance
        s_sets += ["teacher.model=test_resnet", "student.model=test_efficientnet"]
    students = {
        "function matching": ["run", *_sets(s_sets)],
        "scratch (labels)": ["train", *_sets([*s_sets, "teacher=null", *SCRATCH])],
    }
    names = {"function matching": "gpu-quality-fm", "scratch (labels)": "gpu-quality-scratch"}
    procs = {}
    for label, args in students.items():  # side by side: both are bound by launches, not FLOPs
        cmd = _cli(args[0], str(BENCH / "gpu_quality_fm.yaml"), "--overwrite", *args[1:])
        cmd += ["--set", f"output.name={names[label]}"]
        rec.data.setdefault("student_commands", {})[label] = " ".join(cmd[2:])
        procs[label] = subprocess.Popen(cmd, cwd=ROOT)
    rec.save()
    for label, proc in procs.items():
        with rec.guard(label):
            try:
                code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.terminate()  # SIGTERM: the run saves its position; its evaluations stay
                proc.wait()
                rec.data["errors"].append(f"{label}: stopped at the part's limit")
                code = 0
            run = runs / names[label]
            rec.data.setdefault("students", {})[label] = _summary(run) or {
                "last_eval": _last_eval(run)
            }
            if code:
                raise RuntimeError(f"exit code {code}")


SCRATCH = ["method={name: supervised, label_smoothing: 0.1}"]


def _sets(items: list[str]) -> list[str]:
    return [x for s in items for x in ("--set", s)]


def _summary(run: Path) -> dict[str, Any] | None:
    path = run / "summary.json"
    if not path.is_file():
        return None
    s = json.loads(path.read_text())
    keep = ("method", "student", "teacher", "agreement", "kl", "best", "epochs", "steps")
    return {
        **{k: s.get(k) for k in keep},
        "images_per_s": s.get("images_per_s"),
        "wall_time_s": s.get("wall_time_s"),
        "device": s.get("device"),
    }


# --- 4: JPEG folder, decoded on the GPU ---------------------------------------------------------


def _write_jpeg(job: tuple[str, int, int, int]) -> int:
    """One photo-like JPEG (smooth colour fields, edges and grain), so it decodes like a photo."""
    import numpy as np
    from PIL import Image

    path, seed, width, height = job
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (height // 25 + 2, width // 25 + 2, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(low).resize((width, height), Image.BICUBIC), dtype=np.int16)
    img = img + rng.integers(-12, 13, img.shape, dtype=np.int16)
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path, quality=90)
    return os.path.getsize(path)


def write_jpegs(root: Path, count: int, size: tuple[int, int], classes: int = 10) -> dict[str, Any]:
    jobs = []
    for split, n in (("train", count), ("val", max(classes, count // 20))):
        for i in range(n):
            folder = root / split / f"class_{i % classes}"
            folder.mkdir(parents=True, exist_ok=True)
            jobs.append((str(folder / f"{i:06d}.jpg"), i, *size))
    started = time.perf_counter()
    with Pool(os.cpu_count()) as pool:
        sizes = pool.map(_write_jpeg, jobs, chunksize=64)
    return {
        "files": len(jobs),
        "mean_kib": round(sum(sizes) / len(sizes) / 1024, 1),
        "write_s": round(time.perf_counter() - started, 1),
    }


def part4_jpeg(rec: Record, *, smoke: bool, work: Path, **_: Any) -> None:
    from distill_cli.bench.train import data_path, distill_step
    from distill_cli.recipe.document import load_recipe
    from distill_cli.train.build import build

    root = work / "jpeg"
    count, size = (64, (120, 90)) if smoke else (10_000, (500, 375))
    with rec.guard("write"):
        if not (root / "train").is_dir():
            rec.set("jpegs", write_jpegs(root, count, size))
    path = BENCH / "resnet50_resnet18_gpu.yaml"
    workers = 2 if smoke else min(16, os.cpu_count() or 1)
    base = ["data.source=image_folder", f"data.root={root}", f"data.workers={workers}"]
    if smoke:
        base = _tiny([*base, "schedule.batch_size=16", "teacher.num_classes=10"])
    batches = 4 if smoke else 30
    steps, warmup, window = (4, 2, 2) if smoke else (24, 8, 4)
    # nvJPEG in the training process against libjpeg-turbo in the loader's worker processes
    for decode in ("device", "workers"):
        sets = [*base, f"data.decode={decode}"]
        recipe = load_recipe(path, sets)
        rec.data.setdefault("commands", {})[decode] = _bench_command(path, sets, None)
        with rec.guard(f"data_path_{decode}"):
            rec.data.setdefault("data_path", {})[decode] = data_path(build(recipe), batches)
        if decode == "device":  # where the host time of a decoded batch goes
            with rec.guard("data_path_profile"):
                profiled = data_path(build(recipe), 2 if smoke else 5, profile=True)
                rec.set("data_path_device_profile", profiled.get("profile"))
        with rec.guard(f"full_step_{decode}"):
            step = distill_step(recipe, warmup, steps, window)
            rec.data.setdefault("full_step", {})[decode] = step
            rec.save()
