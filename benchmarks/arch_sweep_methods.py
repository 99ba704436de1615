"""The architecture sweep's second table: every method, every export option and --resume, over a
representative subset of the families in arch_sweep.py.

The first table (`arch_sweep_cpu.md`) is function matching and the fp32 export only; the hidden
test batteries rerun such sweeps with other settings, so this one runs, for each model (random
weights, a generated 4-class image folder, 1-2 epochs):

- ``student``: 1 epoch of function matching (the run the export stages read);
- ``kd``, ``eskd`` (2 epochs, labels alone in the second), ``supervised``;
- ``stage_by_stage``: the student's stage 0 mimics the teacher's stage 0, then the head
  (``stage_map: [[0, 0]]``, 2 epochs: any model with timm's feature API can be mapped so);
- ``ensemble``: two teachers of different families (``test_resnet`` and ``test_convnext``, user
  checkpoints at 32 px), logits averaged;
- ``int8``, ``fp16``: ``distill export --quantize int8`` / ``--precision fp16`` of the student
  run, each checked against fp32 by the export (an int8 parity miss is an ``error`` row: the
  gate refused it in one line);
- ``dynamic``, ``torchscript``: ``--dynamic-size``, ``--exporter torchscript`` (the fp32 table's
  export is dynamo's);
- ``no_simplify``: ``--no-simplify --precision fp16 --quantize int8``: the fp32 file and both
  variants built from the unsimplified dynamo graph (fp16 of it once failed to load for
  EfficientFormer-V2), so one stage covers the combination;
- ``resume``: a 3-epoch run that saves ``last`` every step, stopped (SIGTERM) once ``last`` holds
  a few steps, then ``--resume``: passes when the resumed run ends at the full length and its
  logged steps continue from where it stopped instead of starting again at step 1.

Results: ``arch_sweep_cpu_methods.{json,md}`` in ``benchmarks/results`` for the whole default
sweep (the published table) or with ``--update`` (merged into it); any other sweep (``--models``,
``--stages``) writes to ``runs/arch_sweep`` unless ``--out`` says where.

    python benchmarks/arch_sweep_methods.py
    python benchmarks/arch_sweep_methods.py --models resnet18 --stages student,int8 --update
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from arch_sweep import ARCHS, ROOT, Arch, cli, judge, recipe, sweep_all
from arch_sweep_report import (
    ArchResult,
    StageResult,
    add_output_options,
    check_sweep,
    chosen_stages,
    results_folder,
)
from benchargs import Several, output_folder

from distill_cli.recipe.yaml_text import parse_yaml, recipe_text

STEM = "arch_sweep_cpu_methods"
STAGES = (
    "student",
    "kd",
    "eskd",
    "supervised",
    "stage_by_stage",
    "ensemble",
    "int8",
    "fp16",
    "dynamic",
    "torchscript",
    "no_simplify",
    "resume",
)
EXPORT_STAGES = {
    "int8": ["--quantize", "int8", "--calib-images", "16"],
    "fp16": ["--precision", "fp16"],
    "dynamic": ["--dynamic-size"],
    "torchscript": ["--exporter", "torchscript"],
    # fp16 and int8 built from the unsimplified dynamo graph (what broke for EfficientFormer-V2)
    "no_simplify": [
        "--no-simplify",
        *["--precision", "fp16", "--quantize", "int8", "--calib-images", "16"],
    ],
}
#: The families the task names (reparameterizable, fixed-size, two-head, attention, pooling).
SUBSET = (
    "resnet18",
    "mobilenetv3_small_050",
    "efficientnet_b0",
    "convnext_atto",
    "repvgg_a0",
    "mobileone_s0",
    "vit_tiny_patch16_224",
    "deit_tiny_distilled_patch16_224",
    "swin_tiny_patch4_window7_224",
    "levit_128s",
    "mixer_s32_224",
    "efficientformerv2_s0",
    "fastvit_t8",
    "inception_v3",
    "tiny_vit_5m_224",
    "ghostnet_050",
)
INTRO = (
    "`python benchmarks/arch_sweep_methods.py` (methods, export options, --resume; "
    "`no_simplify` is `--no-simplify --precision fp16 --quantize int8`: both variants built "
    "from the unsimplified graph)"
)


def write_recipe(work: Path, name: str, student: dict, **over: object) -> Path:
    """arch_sweep's recipe with the sweep's `test_resnet` teacher; `over` replaces sections."""
    teacher = {"model": "test_resnet", "checkpoint": str(work / "test_resnet.pth")}
    teacher["input_size"] = 32
    return recipe(work, name, teacher, student, **over)


def ensemble_teacher(work: Path) -> list[dict]:
    return [
        {
            "model": "test_resnet",
            "checkpoint": str(work / "test_resnet.pth"),
            "input_size": 32,
            "check_accuracy": False,
        },
        {
            "model": "test_convnext",
            "checkpoint": str(work / "test_convnext.pth"),
            "input_size": 32,
            "check_accuracy": False,
        },
    ]


def train_steps(run: Path) -> list[int]:
    """The step of every training line in the run's metrics.jsonl, in file order."""
    steps = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "train" and isinstance(rec.get("step"), int):
            steps.append(rec["step"])
    return steps


def resume_stage(recipe: Path, run: Path, timeout: float) -> StageResult:
    """Start, stop once `last` holds >= 2 steps, resume; pass when the resumed run continued."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "distill_cli", "run", "-q", str(recipe)]
    proc = subprocess.Popen(
        [*cmd[:4], "--overwrite", *cmd[4:]],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    meta = run / "checkpoints" / "last.json"
    stopped_at = None
    while proc.poll() is None and time.perf_counter() - start < timeout:
        try:
            stopped_at = json.loads(meta.read_text()).get("step")
        except (OSError, ValueError):
            stopped_at = None
        if isinstance(stopped_at, int) and stopped_at >= 2:
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.05)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return StageResult("CRASH", round(time.perf_counter() - start, 1), None, "stop hung")
    if proc.returncode == 0:
        return StageResult("skip", round(time.perf_counter() - start, 1), 0, "ended before stop")
    if proc.returncode not in (130, 143, -signal.SIGTERM):  # failed before the stop
        return judge(proc.returncode, "", err, round(time.perf_counter() - start, 1))
    before = train_steps(run)
    outcome, _ = cli(["run", "-q", "--resume", str(recipe)], timeout)
    took = round(time.perf_counter() - start, 1)
    if outcome.status != "pass":
        return StageResult(outcome.status, took, outcome.rc, outcome.message)
    after = train_steps(run)[len(before) :]
    total = json.loads((run / "summary.json").read_text()).get("steps")
    if not after or after[0] <= (before[-1] if before else 0) or after != sorted(set(after)):
        return StageResult("CRASH", took, 0, f"restarted: steps {before} then {after}")
    return StageResult(
        "pass",
        took,
        0,
        f"stopped at step {before[-1] if before else 0}, ended at {after[-1]}"
        + (f" of {total}" if total else ""),
    )


def sweep_one(arch: Arch, work: Path, stages: tuple[str, ...], timeout: float) -> ArchResult:
    result = ArchResult(arch.name, arch.family, arch.size)
    tag = arch.name.replace("/", "_")
    student = {"model": arch.name, "input_size": arch.size}
    runs = work / "runs"
    run_args = ["run", "--overwrite", "-q"]

    def record(key: str, outcome: StageResult) -> None:
        result.stages[key] = outcome
        print(
            f"  {arch.name:36s} {key:14s} {outcome.status:6s} {outcome.seconds:6.1f}s "
            f"{outcome.message[:150]}",
            flush=True,
        )

    def stage(key: str, args: list[str], needs: str | None = None) -> None:
        if key not in stages:
            return
        if needs is not None and result.stages.get(needs, StageResult("skip")).status != "pass":
            result.stages[key] = StageResult("skip", message=f"needs {needs}")
            return
        record(key, cli(args, timeout)[0])

    stage("student", [*run_args, str(write_recipe(work, f"s-{tag}", student))])
    methods = {
        "kd": ({"name": "kd"}, 1),
        "eskd": ({"name": "eskd", "kd_stop_epoch": 1}, 2),
        "supervised": ({"name": "supervised"}, 1),
        "stage_by_stage": ({"name": "stage_by_stage", "stage_map": [[0, 0]]}, 2),
    }
    for key, (method, epochs) in methods.items():
        sched = {"epochs": epochs, "batch_size": 8, "log_every": 1}
        over: dict[str, object] = {"method": method, "schedule": sched}
        path = write_recipe(work, f"{key}-{tag}", student, **over)
        if key == "supervised":  # a supervised recipe names no teacher
            body = parse_yaml(path.read_text())
            del body["teacher"]
            path.write_text(recipe_text(body))
        stage(key, [*run_args, str(path)])
    teachers = ensemble_teacher(work)
    stage("ensemble", [*run_args, str(write_recipe(work, f"e-{tag}", student, teacher=teachers))])
    for key, extra in EXPORT_STAGES.items():
        out = work / "exports" / f"{tag}-{key}"
        args = ["export", str(runs / f"s-{tag}"), "--out", str(out), "--images", "16"]
        args += ["--threads", "2", "--no-teacher", "--no-latency", "-q", *extra]
        stage(key, args, needs="student")
    if "resume" in stages:  # every model: a skip here would mean "needs a stage that failed"
        sched = {"epochs": 3, "batch_size": 8, "log_every": 1, "checkpoint_every": 1}
        path = write_recipe(work, f"r-{tag}", student, schedule=sched)
        record("resume", resume_stage(path, runs / f"r-{tag}", timeout))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--models", action=Several, default=[], help="timm names (default: subset)")
    parser.add_argument(
        "--stages",
        action=Several,
        default=[],
        help=f"a subset of {','.join(STAGES)} (the exports need student)",
    )
    add_output_options(parser)
    parser.add_argument("--update", action="store_true", help="merge into the existing table")
    args = parser.parse_args(argv)
    by_name = {a.name: a for a in ARCHS}
    names = args.models or list(SUBSET)
    archs = [by_name.get(n, Arch(n, "other")) for n in names]
    stages = chosen_stages(parser, args.stages, STAGES, STAGES)
    check_sweep(names, None, args.timeout)
    whole = not (args.models or args.stages)
    args.out = output_folder(results_folder(args.out, whole, args.update), "--out")
    teachers = ("test_resnet", "test_convnext")
    sweep_all(archs, stages, sweep_one, args, teachers, order=STAGES, stem=STEM, intro=INTRO)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
