"""The training loop: one readable loop shared by every method.

It runs the optimisation for what `build.build` made from a recipe: precision, clipping, the
warmup + cosine schedule, evaluation, checkpoints, resumption, and the failure paths (a NaN loss,
SIGINT/SIGTERM). It never asks which method it runs; the method turns a batch into a loss and
the engine does the rest.

Determinism is by construction: the batch order of an epoch is seeded by (seed, epoch) and the
random state of step s is seeded by (seed, s), so a run resumed from `last` replays exactly the
steps the uninterrupted run would have taken.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import asdict
from functools import partial
from typing import Any, NoReturn

import torch

from distill_cli import STOP_SIGNALS
from distill_cli.data.loader import Batch
from distill_cli.errors import AgreedStop
from distill_cli.models.checkpoint import load_training, save_weights
from distill_cli.rundir.layout import RunDir
from distill_cli.rundir.summary import ModelResult, RunSummary
from distill_cli.train.evaluate import Evaluator
from distill_cli.train.final_test import evaluate_test
from distill_cli.train.memory import batch_size_error, peak_gib
from distill_cli.train.optim import build_optimizer, lr_factor, set_lr
from distill_cli.train.records import Window, checkpoint_meta, logged_epoch, selection_score
from distill_cli.train.reporter import NullReporter, Reporter
from distill_cli.train.setup import Setup
from distill_cli.train.stop import Interrupted, StopAgreement, StoppedAtOnce
from distill_cli.train.teacher_check import check_teacher

#: Seconds between two saves of `last` at epoch ends without an evaluation.
LAST_EVERY_S = 60.0


def _float_buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: b for k, b in module.named_buffers() if b.is_floating_point()}


class Trainer:
    """Runs one recipe to completion in its run directory."""

    def __init__(self, setup: Setup, run: RunDir, reporter: Reporter | None = None) -> None:
        self.s = setup
        self.run = run
        self.reporter = reporter or NullReporter()
        self.module = setup.method.trainable()
        self.optimizer = build_optimizer(
            self.module, device=setup.device, **setup.recipe.optim.optimizer_args()
        )
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
            "skipped_steps": 0,
        }
        self.teacher_metrics: dict[str, float] = {}
        self.last_eval: dict[str, float] = {}
        self._signal: int | None = None  # set by the signal handler
        self._stopping: int | None = None  # the signal every process has agreed to stop on
        self._agreement = StopAgreement(setup.world, setup.recipe.schedule.log_every)
        self._finishing = False  # the loop is over: a signal stops the run at once
        self._bad_merged = 0  # bad training files every process knew at the last merge
        self._last_saved = -math.inf  # when `last` was written (perf_counter), never yet
        self._saved_step: int | None = None  # the step `last` holds (None: none written)
        rt = setup.recipe.runtime
        self._graphs = rt.compile and rt.compile_mode == "reduce-overhead"

    def check_teacher(self) -> None:
        """Before the run folder is written: a teacher near chance stops the run."""
        if self.s.method.compares_teacher and self.s.world.is_main:
            check_teacher(self.s, self.evaluator)

    def resume(self) -> None:
        state, extra = load_training(self.run.last, self.s.student.module, self.optimizer)
        self.s.method.load_extra_state(extra)
        self.state.update(state)
        self._saved_step = int(self.state["step"])
        self.last_eval = state.get("last_eval", {})
        # the bad training files met before the stop: a file read only then still counts
        self.s.train_stream.bad_files.update(state.get("bad_files", []))
        self._bad_merged = len(self.s.train_stream.bad_files)  # every process's, when saved
        if self.s.world.is_main:
            self.run.truncate_metrics(self.state["step"])

    def fit(self) -> RunSummary:
        previous = self._catch_signals()
        alone = not self.s.world.distributed
        try:
            try:
                self._fit()
            except KeyboardInterrupt:
                if self._signal is None or not alone:
                    raise
                # a second signal: no position saved at this step, the last one is whole
                raise StoppedAtOnce(self._signal, self._saved_step, str(self.run.last)) from None
            if self._signal is not None and alone:
                # it came after the loop's last look (the final evaluation, the last save):
                # the position is saved, and the run stops as asked instead of finishing
                raise Interrupted(self._signal, self.state["step"], str(self.run.last))
            self._finishing = alone  # a signal now stops the test split and the summary
            try:
                return self._summary()
            except KeyboardInterrupt:
                if self._signal is None:
                    raise
                raise Interrupted(self._signal, self.state["step"], str(self.run.last)) from None
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _catch_signals(self) -> dict[int, Any]:
        """SIGINT/SIGTERM only set a flag; the loop saves its position at the next step."""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum: int, frame: Any) -> None:
            stop_now = self._signal is not None or self._finishing  # a second one, or the end
            self._signal = self._signal or signum
            if stop_now:
                raise KeyboardInterrupt

        return {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}

    def _fit(self) -> None:
        s, sched = self.s, self.s.recipe.schedule
        total, spe = s.total_steps, s.steps_per_epoch
        step = self.state["step"]
        started, wall_before = time.perf_counter(), self.state["wall_time"]
        self.module.train()
        if s.teacher is not None and s.method.compares_teacher and s.world.is_main:
            self.teacher_metrics = self.evaluator.teacher_metrics(s.teacher)
        self.reporter.start(total, step, s.epochs)
        while step < total:
            epoch = step // spe
            phase = s.method.on_epoch_start(epoch)
            if phase:
                self._log({"kind": "phase", "step": step, "epoch": epoch, **phase})
            window = Window(s.device)
            for batch in s.train_stream.epoch(epoch, step % spe):
                if not self._fits(batch, epoch, step, window):
                    # outside the `except`: its traceback would pin the failed step's memory
                    self._out_of_memory(batch, epoch, step)
                step += 1
                self.reporter.advance(step, epoch)
                epoch_done = step % spe == 0 or step >= total
                save_due = sched.checkpoint_every and step % sched.checkpoint_every == 0
                # one process stops as soon as it is signalled; several agree at log time
                stop_now = self._signal is not None and not s.world.distributed
                if step % sched.log_every == 0 or epoch_done or save_due or stop_now:
                    self._flush(step, epoch, window)
                    window = Window(s.device)
                elif self._agreement.due(step):  # a preemption's grace is short (`stop`)
                    self._stopping = self._agreement.agree(step, self._signal, s.device)
                self.state["step"] = step
                self.state["wall_time"] = wall_before + time.perf_counter() - started
                if epoch_done:
                    break
                if save_due or self._stopping:
                    self._save_last(step)
                if self._stopping:
                    raise Interrupted(self._stopping, step, str(self.run.last))
            self._end_of_epoch(step)
            if self._stopping:
                raise Interrupted(self._stopping, step, str(self.run.last))
        self.reporter.finish()
        s.world.barrier()

    def _fits(self, batch: Any, epoch: int, step: int, window: Window) -> bool:
        """One training step; False when it ran out of memory (nothing of it is kept)."""
        try:
            self.train_step(batch, epoch, step, window)
        except torch.OutOfMemoryError:
            return False
        return True

    def train_step(self, batch: Any, epoch: int, step: int, window: Window | None = None) -> None:
        """One optimisation step of `batch` (step `step` of the run); sums land in `window`."""
        s, rec = self.s, self.s.recipe
        if self._graphs:
            # CUDA graphs (compile_mode reduce-overhead): a new step may reuse the memory of the
            # last one's outputs, which the engine has consumed by now
            torch.compiler.cudagraph_mark_step_begin()
        # one seed per step: a resumed run replays exactly the crops, mixup and dropout of step
        torch.manual_seed(rec.runtime.seed * 1_000_003 + step)
        warmup = rec.schedule.warmup(s.total_steps)
        factor = lr_factor(step, s.total_steps, warmup, rec.schedule.min_lr_ratio)
        lr = set_lr(self.optimizer, rec.optim.lr, factor)
        self.state["lr"] = lr
        enabled = s.autocast is not None
        skip = rec.runtime.on_nonfinite == "skip"
        # a skipped step must leave no trace: its forward pass already moved BatchNorm's
        # running statistics (possibly to NaN/Inf), so they are put back as they were
        buffers = _float_buffers(self.module) if skip else {}
        saved = {k: v.clone() for k, v in buffers.items()}
        with torch.autocast(s.device.type, s.autocast or torch.float32, enabled=enabled):
            out = s.method.step(batch, epoch)
        self.optimizer.zero_grad(set_to_none=True)
        if skip and not bool(torch.isfinite(out.loss)):
            self.state["skipped_steps"] += 1  # this mode syncs every step: it must look
            with torch.no_grad():
                for key, value in buffers.items():
                    value.copy_(saved[key])
            return
        out.loss.backward()
        clip = rec.optim.clip_grad_norm
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), clip)
        self.optimizer.step()
        if window is not None:
            window.add(out.loss, out.logs, step + 1)

    def _out_of_memory(self, batch: Batch, epoch: int, step: int) -> NoReturn:
        """Stop on an OOM with the largest batch size that fits, searched with whole training
        steps of this very batch (`memory.batch_size_error`)."""
        s = self.s
        trial = partial(self.train_step, epoch=epoch, step=step)
        raise batch_size_error(trial, self.optimizer, batch, s.world.size, s.device)

    def _flush(self, step: int, epoch: int, window: Window) -> None:
        world = self.s.world
        if world.distributed:  # every process sees the same loss, NaN step and stop decision
            world.sum(window.loss).div_(world.size)
            world.max(window.first_bad)
            self._stopping = self._agreement.agree(step, self._signal, window.loss.device)
            self._merge_bad_files(window.loss.device)
        else:
            self._stopping = self._signal
        first_bad = int(window.first_bad.item())
        if first_bad >= 0:
            raise AgreedStop(
                f"the loss became NaN/Inf at step {first_bad}",
                "training",
                "lower optim.lr, or set runtime.on_nonfinite=skip; the last checkpoint is intact",
            )
        elapsed = time.perf_counter() - window.start
        images = window.steps * self.s.recipe.schedule.batch_size
        self.state["images"] += images
        self.state["train_time"] += elapsed
        n = max(1, window.steps)
        record = {
            "kind": "train",
            "step": step,
            "epoch": epoch,
            "loss": window.loss.item() / n if window.steps else None,
            "lr": self.state.get("lr"),
            "images_per_s": images / elapsed if elapsed > 0 else None,
        }
        record.update({k: v.item() / n for k, v in window.extra.items()})
        for key in ("skipped_steps",):
            if self.state[key]:
                record[key] = self.state[key]
        if self.s.train_stream.bad_images:
            record["bad_images"] = self.s.train_stream.bad_images
        self._log(record)

    def _merge_bad_files(self, device: torch.device) -> None:
        """Every process's bad training files, in each process's set, whenever one has met a
        new one: each decodes its share of a batch, and the main process alone logs the count
        and saves the set `--resume` starts from (its share alone lost the others' files)."""
        world, bad = self.s.world, self.s.train_stream.bad_files
        new = torch.tensor(len(bad) - self._bad_merged, device=device)
        if int(world.max(new).item()):
            bad.update(world.union(bad))
        self._bad_merged = len(bad)

    def _log(self, record: dict[str, Any]) -> None:
        if self.s.world.is_main:
            self.run.log(record)
            self.reporter.log(record)

    def _end_of_epoch(self, step: int) -> None:
        s, sched = self.s, self.s.recipe.schedule
        epoch = step / s.steps_per_epoch
        whole = step % s.steps_per_epoch == 0
        due = whole and sched.eval_due(int(epoch), s.epochs)
        if (due or step >= s.total_steps) and s.world.is_main:
            metrics = self.evaluator.student_metrics(
                s.student, s.teacher if s.method.compares_teacher else None
            )
            self.last_eval = metrics
            teacher = {f"teacher_{k}": v for k, v in self.teacher_metrics.items()}
            record = {"kind": "eval", "step": step, "epoch": logged_epoch(epoch)}
            # training seconds so far (evaluations excluded): "time to a given accuracy"
            record["train_time_s"] = round(self.state["train_time"], 3)
            if s.val_stream.bad_images:  # left out of the numbers (train.evaluate)
                record.update(images=self.evaluator.images, bad_images=s.val_stream.bad_images)
            self._log({**record, **metrics, **teacher})
            score = selection_score(metrics)
            best = self.state["best"]
            if score is not None and (best is None or score > best):
                self.state.update(best=score, best_epoch=logged_epoch(epoch))
                save_weights(
                    self.run.best, s.student.module, checkpoint_meta(s, epoch, step, metrics)
                )
        if whole and int(epoch) in sched.save_epochs and s.world.is_main:
            path = self.run.checkpoint(f"epoch_{int(epoch)}")
            save_weights(path, s.student.module, checkpoint_meta(s, epoch, step, self.last_eval))
        # `last` at every evaluation and the end, else at most once a minute: an epoch of a
        # small subset takes a second, and saving weights + optimizer (fsync) every epoch
        # would cost a long schedule a fifth of its time; resume is exact from any step
        stale = time.perf_counter() - self._last_saved >= LAST_EVERY_S
        if due or step >= s.total_steps or stale:
            self._save_last(step)

    def _save_last(self, step: int) -> None:
        s = self.s
        self._last_saved = time.perf_counter()
        if not s.world.is_main:
            return
        self.state["last_eval"] = self.last_eval
        self.state["bad_files"] = sorted(s.train_stream.bad_files)
        meta = checkpoint_meta(s, step / s.steps_per_epoch, step, self.last_eval)
        extra = s.method.extra_state()
        save_weights(self.run.last, s.student.module, meta, self.optimizer, self.state, extra)
        self._saved_step = step

    def _summary(self) -> RunSummary:
        s, st = self.s, self.state
        if self.evaluator.kept is None and s.world.is_main:
            # resumed at its end (a finished run, or one stopped while its summary was made):
            # no evaluation ran in this process, and val_images, eval.json went missing
            teacher_net = s.teacher if s.method.compares_teacher else None
            self.last_eval = self.evaluator.student_metrics(s.student, teacher_net)
        m = self.last_eval
        teacher = None
        if s.teacher is not None:
            top1 = self.teacher_metrics.get("top1")
            teacher = s.teacher_result(top1)
        test = evaluate_test(s, self.run.best) if s.world.is_main else None  # after training
        if test is not None:
            self._log({"kind": "test", "step": st["step"], **asdict(test)})
        summary = RunSummary(
            name=s.recipe.name,
            run_dir=self.run.path,
            method=s.recipe.method.name,
            student=ModelResult(
                s.student.info.name, s.student.params, m.get("top1"), m.get("top5")
            ),
            teacher=teacher,
            agreement_top1=m.get("agreement_top1"),
            kl=m.get("kl"),
            best_epoch=st["best_epoch"],
            best_score=st["best"],
            epochs=s.epochs,
            steps=st["step"],
            images_per_s=st["images"] / st["train_time"] if st["train_time"] else None,
            wall_time_s=st["wall_time"],
            device=str(s.device),
            precision=s.precision,
            processes=s.world.size,
            peak_gpu_memory_gib=peak_gib(s.device),
            # each process reads its share of every batch: the files any of them met
            bad_images=len(bad := s.world.union(s.train_stream.bad_files)),
            lost_classes=s.train_stream.classes_lost(set(bad)),
            skipped_steps=st["skipped_steps"],
            val_images=self.evaluator.images if self.evaluator.kept is not None else None,
            val_bad_images=s.val_stream.bad_images,
            test=test,
            duplicates=s.duplicates.warnings(),
        )
        if s.world.is_main:
            self.run.write_summary(summary)
            role = "student" if s.teacher is not None else "model"
            teacher_net = s.teacher if s.method.compares_teacher else None
            per_class = self.evaluator.class_eval(s.data.classes, st["step"], role, teacher_net)
            if per_class is not None:
                self.run.write_class_eval(per_class)
        return summary
