"""Architecture sweep: every command a user runs, with one small member of each timm family as
the student and as the teacher.

The hidden test batteries run the same commands with many timm models, input sizes and channel
counts; this script is that sweep, kept in the repository: ARCHS, one family of timm 1.0.31 a
row of the published table (which says the stages each row went through: families added later
ran some with `--stages ... --update`), and SCREENED_ONLY, families built and run in-process but
not yet through the CLI (both in arch_sweep_models.py). For each architecture (random weights,
nothing downloaded, a small input):

- ``student``: ``distill run`` 1 epoch of function matching from a tiny ``test_resnet`` teacher
  (a user's ``torch.save(state_dict)`` checkpoint) on a generated image folder (4 classes);
- ``export``: ``distill export`` of that run (ONNX, the fp32 parity gate, a short latency);
  ``parity`` is the max |ONNX - PyTorch| logit difference it measured;
- ``report``: ``distill report`` of the run;
- ``teacher``: a checkpoint of the architecture saved the usual way
  (``torch.save(model.state_dict())``, built as a user builds it: ``img_size`` for the models
  that take it) distilled into ``test_resnet``;
- ``students``: ``distill students resnet50 --candidates NAME``: built, exported and timed;
- ``gray``: the student run again with ``in_chans: 1`` (grayscale), then its export.

Every stage is the CLI in its own process. A stage passes with exit code 0; it is ``error`` when
distill refused it the way it refuses bad input (exit 1 or 2, one ``error:`` line, no traceback)
and ``CRASH`` otherwise (a traceback, another exit code, a timeout); an ``error`` row is a limit
of the model at that setting (its message, in the table, says which and what runs). Results:
``arch_sweep_cpu.{json,md}`` in ``benchmarks/results`` for the whole default sweep (the
published table) or with ``--update`` (merged into it); any other sweep (``--models``,
``--size``, ``--stages``, ``--quick``) writes to ``runs/arch_sweep`` unless ``--out`` says where.

    python benchmarks/arch_sweep.py                    # every family, every stage (published)
    python benchmarks/arch_sweep.py --quick            # student + export only (runs/arch_sweep)
    python benchmarks/arch_sweep.py --models swin_tiny_patch4_window7_224,levit_128s
    python benchmarks/arch_sweep.py --models resnet18 --stages student,export --update
    python benchmarks/arch_sweep.py --size 80 --stages student,export    # another size
    python benchmarks/arch_sweep.py --models resnet18 --size 64x96 --quick  # non-square
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arch_sweep_models import ARCHS, SCREENED_ONLY, Arch
from arch_sweep_report import (
    ROOT,
    STAGES,
    ArchResult,
    Size,
    StageResult,
    add_output_options,
    check_sweep,
    chosen_stages,
    load_results,
    merge,
    parse_size,
    results_folder,
    write_results,
)
from benchargs import Several, output_folder

from distill_cli.recipe.yaml_text import recipe_text

CLASSES = 4


QUICK_STAGES = ("student", "export")


# --- inputs -------------------------------------------------------------------------------------


def make_data(root: Path) -> Path:
    """A tiny image folder: 4 classes, 8 train and 4 val PNGs each, 48 px, a colour per class."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 4)):
        for c in range(CLASSES):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                img = rng.integers(0, 80, (48, 48, 3), dtype=np.uint8)
                img[..., c % 3] += np.uint8(120 + 40 * (c // 3))
                Image.fromarray(img).save(folder / f"{i}.png")
    return root


def save_checkpoint(name: str, size: Size, path: Path, **extra: object) -> None:
    """A user's checkpoint: the model built as timm builds it, `torch.save(state_dict)`."""
    import timm
    import torch

    from distill_cli.models.sizes import accepts_img_size

    kwargs = dict(extra)
    if accepts_img_size(name):
        kwargs["img_size"] = size
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=CLASSES, **kwargs)
    torch.save(model.state_dict(), path)


def recipe(work: Path, name: str, teacher_spec: dict, student: dict, **over: object) -> Path:
    """The sweep's 1-epoch function-matching recipe, with `over` replacing whole sections."""
    body: dict[str, object] = {
        "name": name,
        "teacher": {**teacher_spec, "check_accuracy": False},
        "student": student,
        "data": {"source": "image_folder", "root": str(work / "data"), "workers": 1},
        "method": {"name": "function_matching"},
        "schedule": {"epochs": 1, "batch_size": 8, "log_every": 1},
        "runtime": {"device": "cpu", "threads": 2},
        "output": {"dir": str(work / "runs")},
    }
    body |= over
    path = work / f"{name}.yaml"
    path.write_text(recipe_text(body))
    return path


# --- running ------------------------------------------------------------------------------------

SHORT_TIMING = ["--warmup", "1", "--runs", "3", "--min-time", "0", "--max-time", "5"]


def cli(args: list[str], timeout: float) -> tuple[StageResult, str]:
    """One `distill` command in its own process, judged as a user sees it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "distill_cli", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        took = time.perf_counter() - start
        return StageResult("CRASH", round(took, 1), None, f"timeout after {timeout:.0f} s"), ""
    took = round(time.perf_counter() - start, 1)
    return judge(proc.returncode, proc.stdout, proc.stderr, took), proc.stdout


def judge(rc: int, stdout: str, stderr: str, took: float) -> StageResult:
    """A finished command as a user sees it: exit 0 passes, one `error:` line with exit 1/2 and
    no traceback is a refusal, anything else a crash (the last line of stderr says what)."""
    err = stderr.strip()
    if rc == 0:
        return StageResult("pass", took, 0)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    if rc in (1, 2) and errors and "Traceback" not in err:
        return StageResult("error", took, rc, errors[0][:400])
    tail = err.splitlines()[-1] if err else stdout.strip()[-300:]
    return StageResult("CRASH", took, rc, tail[:400])


def parity_of(stdout: str) -> float | None:
    try:
        report = json.loads(stdout)
    except json.JSONDecodeError:
        return None
    parity = report.get("parity") or {}
    value = parity.get("max_abs_diff")
    return float(value) if isinstance(value, int | float) else None


def sweep_one(arch: Arch, work: Path, stages: tuple[str, ...], timeout: float) -> ArchResult:
    result = ArchResult(arch.name, arch.family, arch.size)
    tag = re.sub(r"[^A-Za-z0-9_.-]", "_", arch.name)
    teacher = {
        "model": "test_resnet",
        "checkpoint": str(work / "test_resnet.pth"),
        "input_size": 32,
    }
    size = arch.size if isinstance(arch.size, int) else list(arch.size)  # YAML: [H, W]
    student = {"model": arch.name, "input_size": size}
    runs = work / "runs"

    def stage(key: str, args: list[str], needs: str | None = None) -> str:
        if key not in stages:
            return ""
        if needs is not None and result.stages.get(needs, StageResult("skip")).status != "pass":
            result.stages[key] = StageResult("skip", message=f"needs {needs}")
            return ""
        outcome, stdout = cli(args, timeout)
        result.stages[key] = outcome
        print(
            f"  {arch.name:36s} {key:12s} {outcome.status:6s} {outcome.seconds:6.1f}s "
            f"{outcome.message[:150]}",
            flush=True,
        )
        return stdout

    run_args = ["run", "--overwrite", "-q"]
    stage("student", [*run_args, str(recipe(work, f"s-{tag}", teacher, student))])
    out = stage(
        "export",
        [
            "export",
            str(runs / f"s-{tag}"),
            "--images",
            "16",
            "--threads",
            "2",
            "--no-teacher",
            "--json",
            "-q",
            *SHORT_TIMING,
        ],
        needs="student",
    )
    result.parity_max_abs = parity_of(out) if out else None
    stage("report", ["report", str(runs / f"s-{tag}")], needs="student")
    if "teacher" in stages:
        ckpt = work / f"{tag}.pth"
        try:
            save_checkpoint(arch.name, arch.size, ckpt)
        except Exception as exc:  # the user could not build it either: not distill's
            result.stages["teacher"] = StageResult("skip", message=f"timm: {exc}"[:300])
        else:
            t_spec = {"model": arch.name, "checkpoint": str(ckpt), "input_size": size}
            tiny = {"model": "test_resnet", "input_size": 32}
            stage("teacher", [*run_args, str(recipe(work, f"t-{tag}", t_spec, tiny))])
    if isinstance(arch.size, int):
        stage(
            "students",
            [
                "students",
                "resnet50",
                "--candidates",
                arch.name,
                "--input-size",
                str(arch.size),
                "--max-latency-ms",
                "10000",
                "--max-ratio",
                "100",
                "--threads",
                "2",
                "--no-dedup",
                "--cache-dir",
                str(work / "cache"),
                "--json",
                "-q",
                *SHORT_TIMING,
            ],
        )
    elif "students" in stages:  # it deploys at one side (--input-size N), not HxW
        result.stages["students"] = StageResult("skip", message="--input-size takes one side")
    gray = {**student, "in_chans": 1}
    stage("gray", [*run_args, str(recipe(work, f"g-{tag}", teacher, gray))])
    stage(
        "gray_export",
        [
            "export",
            str(runs / f"g-{tag}"),
            "--images",
            "16",
            "--threads",
            "2",
            "--no-teacher",
            "--no-latency",
            "-q",
        ],
        needs="gray",
    )
    return result


def sweep_all(
    archs: list[Arch],
    stages: tuple[str, ...],
    sweep_one: Callable[[Arch, Path, tuple[str, ...], float], ArchResult],
    args: argparse.Namespace,
    teachers: tuple[str, ...] = ("test_resnet",),
    **table: Any,
) -> None:
    """Every model through `sweep_one` in one temporary folder (the image folder and the
    teachers' 32 px checkpoints made once); the table (`write_results`, `table` its stem, order
    and intro) is rewritten after each model, so a cut sweep keeps the rows it finished, and
    with `--update` merged into the earlier rows."""
    stem = table.get("stem", "arch_sweep_cpu")
    start = time.perf_counter()
    earlier = load_results(args.out / f"{stem}.json") if args.update else []
    results: list[ArchResult] = []
    with tempfile.TemporaryDirectory(prefix=f"{stem}_") as tmp:
        work = Path(tmp)
        make_data(work / "data")
        for name in teachers:
            save_checkpoint(name, 32, work / f"{name}.pth")
        for arch in archs:
            results.append(sweep_one(arch, work, stages, args.timeout))
            took = time.perf_counter() - start
            write_results(merge(earlier, results), stages, args.out, took, **table)
    bad = sum(s.status == "CRASH" for r in results for s in r.stages.values())
    print(f"{len(results)} models, {bad} crashes -> {args.out}/{stem}.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--models", action=Several, default=[], help="timm names (default: all families)"
    )
    parser.add_argument(
        "--size",
        type=parse_size,
        default=None,
        help="input side for every model, or HxW (64x96: the recipes' input_size [64, 96]; "
        "`distill students` is skipped, it takes one side); default: each model's",
    )
    parser.add_argument("--quick", action="store_true", help="only the student run and its export")
    parser.add_argument(
        "--stages",
        action=Several,
        default=[],
        help=f"a subset of {','.join(STAGES)} (export and report need student, "
        "gray_export needs gray, in the same call: runs live in a temporary folder)",
    )
    add_output_options(parser)
    parser.add_argument(
        "--update",
        action="store_true",
        help="merge the stages run into these models' rows of the existing JSON + md (after a fix)",
    )
    args = parser.parse_args(argv)
    by_name = {a.name: a for a in [*ARCHS, *SCREENED_ONLY]}  # their family and px for --models
    names = args.models or [a.name for a in ARCHS]
    archs = [by_name.get(n, Arch(n, "other")) for n in names]
    if args.size is not None:
        archs = [Arch(a.name, a.family, args.size) for a in archs]
    if args.quick and args.stages:  # --quick is a set of stages: one of them would be ignored
        parser.error(f"--quick runs the stages {','.join(QUICK_STAGES)}; give it or --stages")
    stages = chosen_stages(parser, args.stages, QUICK_STAGES if args.quick else STAGES, STAGES)
    check_sweep(names, args.size, args.timeout)
    whole = not (args.models or args.size is not None or args.stages or args.quick)
    args.out = output_folder(results_folder(args.out, whole, args.update), "--out")
    # the published table (whole, or merged into by --update) is the default sweep's; any other
    # table says the command that made it (a table of 20 models at 80 px is no default sweep)
    given = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "benchmarks/arch_sweep.py", *given])
    intro = "" if whole or args.update else f"`{command}`"
    sweep_all(archs, stages, sweep_one, args, intro=intro)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
