"""The training engine: one readable loop shared by every method.

It builds what the recipe describes (device, data, nets, method), then runs the optimisation:
precision, channels_last, optional compile, clipping, the warmup + cosine schedule, evaluation,
checkpoints and resumption. It never asks which method it runs; the method turns a batch into a
loss and the engine does the rest.

Determinism is by construction: the batch order of an epoch is seeded by (seed, epoch) and the
random state of step s is seeded by (seed, s), so a run resumed from `last` replays exactly the
steps the uninterrupted run would have taken.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from distill_cli.checkpoint import load_training, save_weights
from distill_cli.data import DataBundle, build_data
from distill_cli.data.augment import BatchAugment
from distill_cli.data.loader import BatchStream
from distill_cli.errors import DistillError, RunFailed
from distill_cli.evaluate import Evaluator
from distill_cli.methods import Method, MethodContext, create_method, method_class
from distill_cli.models import Net, create_net, create_teacher, infer_num_classes
from distill_cli.optim import build_optimizer, lr_factor, set_lr
from distill_cli.recipe import Recipe
from distill_cli.rundir import RunDir


class Reporter(Protocol):
    """How the engine tells the outside world what it is doing (the CLI renders it with rich)."""

    def start(self, total_steps: int, done_steps: int, epochs: int) -> None: ...
    def advance(self, step: int, epoch: int) -> None: ...
    def log(self, record: dict[str, Any]) -> None: ...
    def finish(self) -> None: ...


class NullReporter:
    def start(self, total_steps: int, done_steps: int, epochs: int) -> None:
        pass

    def advance(self, step: int, epoch: int) -> None:
        pass

    def log(self, record: dict[str, Any]) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass
class Setup:
    """Everything a run is made of, built from a recipe, before any training."""

    recipe: Recipe
    device: torch.device
    autocast: torch.dtype | None
    channels_last: bool
    data: DataBundle
    student: Net
    teacher: Net | None
    method: Method
    train_stream: BatchStream
    val_stream: BatchStream
    total_steps: int = field(init=False)

    def __post_init__(self) -> None:
        sched = self.recipe.schedule
        spe = self.train_stream.steps_per_epoch
        self.total_steps = sched.steps or (sched.epochs or 0) * spe

    @property
    def steps_per_epoch(self) -> int:
        return self.train_stream.steps_per_epoch

    @property
    def epochs(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_epoch)

    @property
    def precision(self) -> str:
        return "bf16-autocast" if self.autocast is torch.bfloat16 else "fp32"

    def plan(self) -> dict[str, Any]:
        """What a run would do, for ``--dry-run``: models, data, steps, precision, device."""
        nets = {"student": self.student, "teacher": self.teacher}
        return {
            "method": self.recipe.method.name,
            "models": {
                role: {**net.info.to_dict(), "params": net.params}
                for role, net in nets.items()
                if net is not None
            },
            "data": {
                "train": {"name": self.data.train.name, "images": len(self.data.train)},
                "val": {"name": self.data.val.name, "images": len(self.data.val)},
                "classes": len(self.data.classes),
                "labeled_train": self.data.labeled_train,
            },
            "batch_size": self.recipe.schedule.batch_size,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            "epochs": self.epochs,
            "precision": self.precision,
            "channels_last": self.channels_last,
            "compile": self.recipe.runtime.compile,
            "device": str(self.device),
            "run_dir": str(self.recipe.run_dir),
        }


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise DistillError(
            "the recipe asks for CUDA but none is available",
            "runtime.device",
            "set runtime.device=auto or cpu",
        )
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def build(recipe: Recipe) -> Setup:
    """Build device, data, nets, method and streams from a recipe (no training)."""
    rt = recipe.runtime
    if rt.threads:
        torch.set_num_threads(rt.threads)
    device = resolve_device(rt.device)
    cuda = device.type == "cuda"
    precision = rt.precision if rt.precision != "auto" else ("bf16" if cuda else "fp32")
    channels_last = rt.channels_last if rt.channels_last is not None else cuda
    cls = method_class(recipe.method.name)

    data = build_data(recipe.data, rt.seed)
    if cls.needs_labels and not data.labeled_train:
        raise DistillError(
            f"method {cls.name!r} needs labels but data.distill_dir has none", "data.distill_dir"
        )

    torch.manual_seed(rt.seed)
    teacher = None
    if cls.needs_teacher:
        teacher = create_teacher(recipe.teachers, len(data.classes))
        t_classes = teacher.info.num_classes
        s_classes = recipe.student.num_classes or t_classes
        if s_classes != t_classes:
            raise DistillError(
                f"student has {s_classes} classes but the teacher predicts {t_classes}",
                "student.num_classes",
                "distillation matches the teacher's outputs: use the teacher's class count",
            )
    else:
        s_classes = infer_num_classes(recipe.student, len(data.classes))
        if cls.needs_labels and s_classes != len(data.classes):
            raise DistillError(
                f"model has {s_classes} classes but the data has {len(data.classes)}",
                "student.num_classes",
            )
    student = create_net(recipe.student, s_classes)

    for net in (student, teacher):
        if net is not None:
            net.module.to(device)
            if channels_last:
                net.module.to(memory_format=torch.channels_last)
    if rt.compile:
        for net in (student, teacher):
            if net is not None:
                net.runner = torch.compile(net.module)

    sizes = [net.info.input_size for net in (student, teacher) if net is not None]
    view_size = (max(s[0] for s in sizes), max(s[1] for s in sizes))
    sched, dspec = recipe.schedule, recipe.data
    load_size = dspec.load_size or round(max(view_size) * 1.15)
    common = {"device": device, "seed": rt.seed, "load_size": load_size, "workers": dspec.workers}
    train_stream = BatchStream(data.train, sched.batch_size, **common)
    eval_batch = sched.eval_batch_size or sched.batch_size
    val_stream = BatchStream(data.val, eval_batch, shuffle=False, drop_last=False, **common)

    epochs = sched.epochs or math.ceil((sched.steps or 0) / train_stream.steps_per_epoch)
    ctx = MethodContext(
        student,
        teacher,
        BatchAugment(recipe.augment, view_size),
        channels_last,
        train_stream=train_stream,
        cache_dir=recipe.output.dir / ".cache",
        epochs=epochs,
    )
    method = create_method(recipe.method, ctx)
    autocast = torch.bfloat16 if precision == "bf16" else None
    return Setup(
        recipe,
        device,
        autocast,
        channels_last,
        data,
        student,
        teacher,
        method,
        train_stream,
        val_stream,
    )


def _meta(setup: Setup, epoch: int, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
    info = setup.student.info
    return {
        "model": info.name,
        "num_classes": info.num_classes,
        "in_chans": info.in_chans,
        "input_size": list(info.input_size),
        "mean": list(info.mean),
        "std": list(info.std),
        "crop_pct": info.crop_pct,
        "interpolation": info.interpolation,
        "class_names": setup.data.classes if info.num_classes == len(setup.data.classes) else None,
        "epoch": epoch,
        "step": step,
        "metrics": metrics,
        "recipe": setup.recipe.name,
        "method": setup.recipe.method.name,
    }


def _selection(metrics: dict[str, float]) -> float | None:
    """Which number makes a checkpoint 'best': accuracy when there are labels, else agreement."""
    return metrics.get("top1", metrics.get("agreement_top1"))


class Trainer:
    """Runs one recipe to completion in its run directory."""

    def __init__(self, setup: Setup, run: RunDir, reporter: Reporter | None = None) -> None:
        self.s = setup
        self.run = run
        self.reporter = reporter or NullReporter()
        self.module = setup.method.trainable()
        self.optimizer = build_optimizer(self.module, setup.recipe.optim, setup.device)
        self.evaluator = Evaluator(
            setup.val_stream, len(setup.data.classes), setup.channels_last, setup.autocast
        )
        self.state: dict[str, Any] = {
            "step": 0,
            "best": None,
            "best_epoch": None,
            "images": 0,
            "train_time": 0.0,
            "wall_time": 0.0,
        }
        self.teacher_metrics: dict[str, float] = {}
        self.last_eval: dict[str, float] = {}

    def resume(self) -> None:
        state, extra = load_training(self.run.last, self.s.student.module, self.optimizer)
        self.s.method.load_extra_state(extra)
        self.state.update(state)
        self.last_eval = state.get("last_eval", {})
        self.run.truncate_metrics(self.state["step"])

    def fit(self) -> dict[str, Any]:
        s, rec = self.s, self.s.recipe
        total, spe, seed = s.total_steps, s.steps_per_epoch, rec.runtime.seed
        clip = rec.optim.clip_grad_norm
        params = [p for p in self.module.parameters() if p.requires_grad]
        step = self.state["step"]
        started = time.perf_counter()
        wall_before = self.state["wall_time"]
        self.module.train()
        if s.teacher is not None and s.method.compares_teacher:
            self.teacher_metrics = self.evaluator.teacher_metrics(s.teacher)
        self.reporter.start(total, step, s.epochs)
        loss_sum = torch.zeros((), device=s.device)
        extra: dict[str, torch.Tensor] = {}
        window_steps, window_start = 0, time.perf_counter()
        while step < total:
            epoch = step // spe
            phase = s.method.on_epoch_start(epoch)
            if phase:
                self._log({"kind": "phase", "step": step, "epoch": epoch, **phase})
            for batch in s.train_stream.epoch(epoch, step % spe):
                torch.manual_seed(seed * 1_000_003 + step)
                lr = set_lr(self.optimizer, rec.optim.lr, lr_factor(step, total, rec.schedule))
                with torch.autocast(
                    s.device.type, s.autocast or torch.float32, enabled=s.autocast is not None
                ):
                    out = s.method.step(batch, epoch)
                self.optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                if clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, clip)
                self.optimizer.step()
                loss_sum += out.loss.detach()
                for key, value in out.logs.items():
                    extra[key] = extra.get(key, 0) + value.detach().float()
                step += 1
                window_steps += 1
                self.reporter.advance(step, epoch)
                epoch_done = step % spe == 0 or step >= total
                if step % rec.schedule.log_every == 0 or epoch_done:
                    elapsed = time.perf_counter() - window_start
                    self._flush(step, epoch, lr, loss_sum, extra, window_steps, elapsed)
                    self.state["train_time"] += elapsed
                    loss_sum.zero_()
                    extra, window_steps = {}, 0
                    window_start = time.perf_counter()
                if step >= total:
                    break
                if epoch_done:
                    break
            self.state["step"] = step
            self.state["wall_time"] = wall_before + time.perf_counter() - started
            self._end_of_epoch(epoch + 1 if step % spe == 0 else epoch + step % spe / spe, step)
            window_start = time.perf_counter()
        self.reporter.finish()
        return self._summary()

    def _flush(
        self,
        step: int,
        epoch: int,
        lr: float,
        loss_sum: torch.Tensor,
        extra: dict[str, torch.Tensor],
        steps: int,
        elapsed: float,
    ) -> None:
        loss = loss_sum.item() / max(1, steps)
        if not math.isfinite(loss):
            raise RunFailed(
                f"loss became {loss} before step {step}",
                "training",
                "lower optim.lr or check the data; the last checkpoint is intact",
            )
        images = steps * self.s.recipe.schedule.batch_size
        self.state["images"] += images
        record = {
            "kind": "train",
            "step": step,
            "epoch": epoch,
            "loss": loss,
            "lr": lr,
            "images_per_s": images / elapsed if elapsed > 0 else None,
        }
        record.update({k: v.item() / max(1, steps) for k, v in extra.items()})
        self._log(record)

    def _log(self, record: dict[str, Any]) -> None:
        self.run.log(record)
        self.reporter.log(record)

    def _end_of_epoch(self, epoch: float, step: int) -> None:
        s, sched = self.s, self.s.recipe.schedule
        final = step >= s.total_steps
        whole = float(epoch).is_integer()
        due = whole and sched.eval_every and int(epoch) % sched.eval_every == 0
        if due or final:
            metrics = self.evaluator.student_metrics(
                s.student, s.teacher if s.method.compares_teacher else None
            )
            self.last_eval = metrics
            self._log(
                {
                    "kind": "eval",
                    "step": step,
                    "epoch": epoch,
                    **metrics,
                    **{f"teacher_{k}": v for k, v in self.teacher_metrics.items()},
                }
            )
            score = _selection(metrics)
            best = self.state["best"]
            if score is not None and (best is None or score > best):
                self.state.update(best=score, best_epoch=epoch)
                save_weights(self.run.best, s.student.module, _meta(s, int(epoch), step, metrics))
        if whole and int(epoch) in sched.save_epochs:
            path = self.run.checkpoint(f"epoch_{int(epoch)}")
            save_weights(path, s.student.module, _meta(s, int(epoch), step, self.last_eval))
        self.state["last_eval"] = self.last_eval
        meta = _meta(s, int(epoch), step, self.last_eval)
        extra = s.method.extra_state()
        save_weights(self.run.last, s.student.module, meta, self.optimizer, self.state, extra)

    def _summary(self) -> dict[str, Any]:
        s, st = self.s, self.state
        m = self.last_eval
        summary = {
            "name": s.recipe.name,
            "run_dir": str(self.run.path),
            "method": s.recipe.method.name,
            "student": {
                "model": s.student.info.name,
                "params": s.student.params,
                "top1": m.get("top1"),
                "top5": m.get("top5"),
            },
            "teacher": None
            if s.teacher is None
            else {
                "model": s.teacher.info.name,
                "params": s.teacher.params,
                "top1": self.teacher_metrics.get("top1"),
            },
            "agreement": {"top1": m.get("agreement_top1")},
            "kl": m.get("kl"),
            "best": {"epoch": st["best_epoch"], "score": st["best"]},
            "epochs": s.epochs,
            "steps": st["step"],
            "images_per_s": st["images"] / st["train_time"] if st["train_time"] else None,
            "wall_time_s": st["wall_time"],
            "device": str(s.device),
            "precision": s.precision,
        }
        self.run.write_summary(summary)
        return summary
