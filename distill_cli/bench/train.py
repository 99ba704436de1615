"""Training throughput (`distill bench train`): distill's full step, the bare step it is measured
against, the data path.

`distill bench train RECIPE` answers "does distill run at the speed of the hardware?": it runs
the recipe's own engine (data path, augmentation, method, optimizer, logging) for a few dozen
steps and, in the same process and run, the bare distillation step of
``shared/bench/bare_kd_step.py`` (teacher forward under no_grad + student forward/backward + fused
AdamW on random tensors already on the device) with the same teacher, student, batch, resolution
and precision, and reports both and their ratio; plus the data path alone (images/s read,
decoded and augmented, no model).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from distill_cli.bench.train_result import DataPathTiming, StepRounds, StepTiming, TrainBench
from distill_cli.errors import DistillError, RunFailed
from distill_cli.file_kinds import TEXT, kind_of, not_a_file
from distill_cli.host import sha256_file
from distill_cli.recipe.document import Recipe
from distill_cli.rundir.layout import RunDir
from distill_cli.train import engine
from distill_cli.train.build import build
from distill_cli.train.cost import pair_key, remember_throughput
from distill_cli.train.setup import Setup
from distill_cli.train.stop import Interrupted, StoppedAtOnce


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timing_recipe(recipe: Recipe, setup: Setup) -> Recipe:
    """The recipe `distill_step` runs: the same step, without the work a run does around its
    steps that the timing windows leave out anyway, yet which took minutes a round on a CPU
    (the teacher's accuracy check and evaluations of every validation and test image).

    The teacher check is off; a holdout keeps one image per class; the validation (or, with a
    holdout, test) split is cut to one batch. The training images and the step are the run's.
    """
    rec = recipe.model_copy(deep=True)
    if isinstance(rec.teacher, list):
        rec.teacher = [t.model_copy(update={"check_accuracy": False}) for t in rec.teacher]
    elif rec.teacher is not None:
        rec.teacher = rec.teacher.model_copy(update={"check_accuracy": False})
    data: dict[str, Any] = {}
    if rec.data.holdout is not None:
        data["holdout"] = min(rec.data.holdout, len(setup.data.classes))
    if rec.data.holdout is None or setup.data.test is not None:  # the split val_limit cuts
        data["val_limit"] = min(
            rec.data.val_limit or rec.schedule.batch_size, rec.schedule.batch_size
        )
    rec.data = rec.data.model_copy(update=data)
    return rec


def distill_step(recipe: Recipe, warmup: int, steps: int, window: int) -> StepTiming:
    """Images/s of the recipe's own training loop: median over timing windows after warm-up.
    `recipe` is `timing_recipe`'s (no evaluations worth timing around the steps)."""
    with tempfile.TemporaryDirectory() as tmp:
        rec = recipe.model_copy(deep=True)
        rec.schedule = rec.schedule.model_copy(
            update={
                "epochs": None,
                "steps": warmup + steps,
                "log_every": window,
                "eval_every": 0,
                "evals": None,
                "checkpoint_every": None,
                "save_epochs": [],
            }
        )
        rec.output = rec.output.model_copy(update={"dir": Path(tmp), "name": "bench"})
        try:
            result = engine.run(rec)
        except (Interrupted, StoppedAtOnce) as exc:
            # the run's "position saved (a temp folder) - continue with --resume": bench train
            # has no --resume, and the folder is deleted on the way out
            failure = RunFailed(
                exc.what.split(";")[0] + " (distill bench train)",
                None,
                "nothing was kept; run it again for the figures",
            )
            failure.code = exc.code
            raise failure from None
        records = [r for _, r in RunDir(rec.run_dir).metric_lines() if r is not None]
    windows = [r["images_per_s"] for r in records if r["kind"] == "train" and r["step"] > warmup]
    return StepTiming(
        images_per_s=statistics.median(windows),
        timing=f"{warmup} warm-up steps, median of {len(windows)} windows of {window} steps",
        windows=len(windows),
        peak_gpu_memory_gib=result.peak_gpu_memory_gib,
    )


def bare_step(
    setup: Setup,
    steps: int,
    script: Path | None = None,
    *,
    warmup: int = 5,
    window: int | None = None,
) -> StepTiming:
    """The reference step for the setup's teacher, student, batch, resolution and precision.

    With `script` (on CUDA) the reference script itself runs in a subprocess, on the same GPU,
    timed its own way (5 warm-up steps, one span), and its SHA-256 is recorded. Without it the
    same step runs here, timed like distill's (`distill_step`): `warmup` steps, then the median
    of `window`-step windows (one span when `window` is None), with each window's figure.
    """
    rec = setup.recipe
    assert setup.teacher is not None, "the bare step is a distillation step: it needs a teacher"
    batch = rec.schedule.batch_size // setup.world.size
    height, width = setup.student.info.input_size
    res = height  # the reference script takes one side
    mode = (
        "fp32" if setup.autocast is None else ("bf16_compile" if rec.runtime.compile else "bf16_cl")
    )
    if script is not None and script.is_file() and setup.device.type == "cuda":
        return _bare_script(setup, script, batch, res, mode, steps)
    teacher, student = setup.teacher.module.eval(), setup.student.module.train()
    x = torch.randn(batch, setup.student.info.in_chans, height, width, device=setup.device)
    if setup.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3, fused=setup.device.type == "cuda")
    compile_mode = rec.runtime.compile_mode if rec.runtime.compile else None
    t_run = torch.compile(teacher, mode=compile_mode) if rec.runtime.compile else teacher
    s_run = torch.compile(student, mode=compile_mode) if rec.runtime.compile else student
    graphs = compile_mode == "reduce-overhead" and setup.device.type == "cuda"

    def step() -> None:
        if graphs:  # a new step may reuse the CUDA graphs' output memory
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(
            setup.device.type, setup.autocast or torch.float32, enabled=setup.autocast is not None
        ):
            with torch.no_grad():
                t_logits = t_run(x)
            s_logits = s_run(x)
        loss = F.kl_div(
            F.log_softmax(s_logits.float(), -1),
            F.log_softmax(t_logits.float(), -1),
            log_target=True,
            reduction="batchmean",
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    size = window or steps
    windows = []
    for _ in range(max(1, steps // size)):
        _sync(setup.device)
        started = time.perf_counter()
        for _ in range(size):
            step()
        _sync(setup.device)
        windows.append(batch * size / (time.perf_counter() - started))
    return StepTiming(
        images_per_s=statistics.median(windows),
        timing=f"{warmup} warm-up steps, median of {len(windows)} windows of {size} steps",
        windows=len(windows),
        per_window=windows,
        mode=mode + (" (CUDA graphs)" if graphs else ""),
        source="built-in (same step as bare_kd_step.py)",
    )


def _bare_script(
    setup: Setup, script: Path, batch: int, res: int, mode: str, steps: int
) -> StepTiming:
    """bare_kd_step.py itself, in a subprocess; its last line is its JSON record."""
    assert setup.teacher is not None
    cmd = [sys.executable, str(script), "--teacher", setup.teacher.info.name]
    cmd += ["--student", setup.student.info.name, "--batch", str(batch), "--res", str(res)]
    cmd += ["--classes", str(setup.teacher.info.num_classes), "--mode", mode]
    cmd += ["--steps", str(steps)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    try:
        if done.returncode != 0:
            raise ValueError(f"exit code {done.returncode}")
        record = json.loads(done.stdout.strip().splitlines()[-1])
        images_per_s = float(record["images_per_s"])
    except (ValueError, IndexError, KeyError, TypeError) as exc:  # was a CalledProcessError
        said = (done.stderr.strip().splitlines() or [str(exc)])[-1][:200]
        raise RunFailed(
            f"the bare-step script failed ({exc}): {said}",
            str(script),
            f"run it alone to see why: python {script} --help",
        ) from exc
    return StepTiming(
        images_per_s=images_per_s,
        timing="the script's own: 5 warm-up steps, one span",
        mode=record.get("mode", mode),
        source=str(script),
        sha256=sha256_file(script),
    )


def data_path(setup: Setup, batches: int, profile: bool = False) -> DataPathTiming:
    """Images/s read, decoded and augmented (crop, flip, mixup, both models' views): no model.

    With `profile`, also torch.profiler's top operators of the timed batches, by host time
    (the data path of a JPEG folder is bound by the host thread that decodes and launches).
    """
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    stream, augment = setup.train_stream, setup.method.ctx.augment
    infos = [net.info for net in (setup.student, setup.teacher) if net is not None]
    cuda = setup.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    prof = profiler(activities=activities) if profile else None
    count, started, seen = 0, None, 0
    for i, batch in enumerate(stream.epoch(0)):
        seen = i + 1
        if i == 2:  # workers started and warm (and the views compiled, where they are)
            _sync(setup.device)
            started, count = time.perf_counter(), 0
            if prof is not None:
                prof.start()
        lam = torch.rand((), device=batch.images.device)
        augment.model_inputs(
            batch.images, batch.extent, infos, lam, channels_last=setup.channels_last
        )
        count += batch.images.shape[0]
        if i >= batches + 2:
            break
    _sync(setup.device)
    if started is None:
        return DataPathTiming(
            None, note=f"an epoch has {seen} batches; timing needs 3 (2 warm up the workers)"
        )
    rate = count / (time.perf_counter() - started)
    if prof is None:
        return DataPathTiming(rate)
    prof.stop()
    return DataPathTiming(rate, profile=_table(prof, ("cpu_time_total",), 15))


def profile_step(setup: Setup, steps: int = 5, warmup: int = 3, top: int = 12) -> str:
    """Where distill's full training step spends its time: torch.profiler's top operators.

    Runs the engine's own step (`Trainer.train_step`) on the setup's batches, so a missed
    throughput target comes with its measured reason: device time per op on CUDA, CPU time on
    the CPU. The setup's student is trained by these steps; use a setup built for benchmarking.
    """
    from torch.profiler import ProfilerActivity, profile

    from distill_cli.train.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(setup, RunDir(Path(tmp) / "profile"))
        batches = setup.train_stream.epoch(0)
        cuda = setup.device.type == "cuda"
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        step = 0
        for step, batch in zip(range(warmup), batches, strict=False):
            trainer.train_step(batch, 0, step)
        _sync(setup.device)
        with profile(activities=activities) as prof:
            for step, batch in zip(range(warmup, warmup + steps), batches, strict=False):
                trainer.train_step(batch, 0, step)
            _sync(setup.device)
    sorts = ("device_time_total", "cuda_time_total") if cuda else ("cpu_time_total",)
    return _table(prof, sorts, top)


def _table(prof: Any, sorts: tuple[str, ...], top: int) -> str:
    averages = prof.key_averages()
    for sort in sorts:
        try:  # torch renamed the CUDA column to "device" (2.4); older names stay as a fallback
            return averages.table(sort_by=sort, row_limit=top, max_name_column_width=60)
        except (AttributeError, KeyError, ValueError):
            continue
    return averages.table(row_limit=top)


#: What "the speed of the hardware" means per device (docs: shared targets): distill's full
#: step against the bare step measured in the same run.
TARGET_RATIO = {"cuda": 0.95, "cpu": 0.9}


def bench_train(
    recipe: Recipe,
    *,
    steps: int = 40,
    warmup: int = 10,
    window: int = 10,
    bare_script: Path | None = None,
    data_batches: int = 20,
    rounds: int = 1,
) -> TrainBench:
    """distill's step vs the bare step (and their ratio), and the data path, in one run.

    With `rounds` > 1 the two are measured in alternation (distill, bare, distill, bare...) and
    the medians are compared: on a machine whose load changes while the benchmark runs, a
    drift then hits both sides alike instead of whichever ran second. Both are timed alike
    (warm-up, then the median of windows); each side reports its rounds and their spread.
    With `bare_script` on CUDA the script itself also runs each round (`bare_script`, with its
    SHA-256 and `ratio_to_script`).
    """
    if bare_script is not None and not bare_script.is_file():  # never a silent fallback
        there = not_a_file(bare_script)
        raise DistillError(
            f"the bare-step script is {there}" if there else "the bare-step script was not found",
            str(bare_script),
            "pass bare_kd_step.py",
        )
    kind = None if bare_script is None else kind_of(bare_script)
    if bare_script is not None and kind != TEXT:  # a PNG or a checkpoint was run by Python
        raise DistillError(
            f"the bare-step script is not a Python file: the file is {kind or 'not text'}",
            str(bare_script),
            "pass a copy of bare_kd_step.py (--bare)",
        )
    setup = build(recipe)
    distill_runs: list[StepTiming] = []
    bare_runs: list[StepTiming] = []
    script_runs: list[StepTiming] = []
    script = bare_script if setup.device.type == "cuda" else None
    height, width = setup.student.info.input_size
    if script is not None and height != width:  # it would time a square step, named as this one
        raise DistillError(
            f"the bare-step script takes one side, the student's input_size is {height}x{width}",
            str(bare_script),
            "give a square input_size, or drop --bare (the built-in bare step runs any size)",
        )
    timed = timing_recipe(recipe, setup)
    for _ in range(rounds):
        distill_runs.append(distill_step(timed, warmup, steps, window))
        if setup.teacher is not None:  # the same warm-up and window rule as distill's step
            bare_runs.append(bare_step(setup, steps, warmup=warmup, window=window))
            if script is not None:  # the reference script itself, hashed: a cross-check
                script_runs.append(bare_step(setup, steps, script))
    result = TrainBench(
        recipe=recipe.name,
        rounds=rounds,
        device=str(setup.device),
        precision=setup.precision,
        compile=recipe.runtime.compile,
        batch_size=recipe.schedule.batch_size,
        student=setup.student.info.name,
        teacher=None if setup.teacher is None else setup.teacher.info.name,
        target_ratio=TARGET_RATIO.get(setup.device.type),
        distill=StepRounds.of(distill_runs),
        data_path=data_path(setup, data_batches),
        gpu=torch.cuda.get_device_name(setup.device) if setup.device.type == "cuda" else None,
        bare=StepRounds.of(bare_runs) if bare_runs else None,
        bare_script=StepRounds.of(script_runs) if script_runs else None,
        input_size=(setup.student.info.input_size[0], setup.student.info.input_size[1]),
    )
    # kept for `distill run --dry-run`'s cost projection on this device (train/cost.py)
    key = pair_key(setup.plan().models, setup.precision, setup.device_name)
    remember_throughput(key, result.distill.images_per_s, result.batch_size)
    return result
