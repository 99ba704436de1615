"""A run, from recipe to summary: the one place that tells the whole story.

    summary = engine.run(recipe, resume=False, overwrite=False, reporter=None)

The order is the order of events: join the other processes (under a launcher), check the
trackers can start, lock the run folder (before anything slow is built, so a second run on the
same folder is refused at once), refuse what the folder alone refuses (a run there without
--resume or --overwrite, a changed recipe), build the run (`build.build`), say what the run is
(`Setup.opening`: data, models, the teacher's weights file, the data's warnings), score the
teacher (one near chance stops here, leaving nothing behind), prepare the folder (new, resumed
or replaced), record the data's fingerprint (or, resuming, refuse data that changed since), note
the launch it runs under (a restart of that launch continues it), restore `last` when resuming,
train (`trainer.Trainer`) with the trackers listening, and return the `RunSummary` the trainer
wrote to `summary.json`. Under torchrun the main process owns the folder and the others follow
its decision. The API and the CLI call this; neither knows the steps.
"""

from __future__ import annotations

import torch

from distill_cli.errors import DistillError
from distill_cli.recipe.document import Recipe
from distill_cli.rundir.layout import RunDir
from distill_cli.rundir.summary import RunSummary
from distill_cli.train import distributed
from distill_cli.train.build import build, resolve_device
from distill_cli.train.final_test import read_ahead
from distill_cli.train.reporter import Reporter
from distill_cli.train.setup import Setup
from distill_cli.train.tracking import TrackingReporter, open_trackers, preflight
from distill_cli.train.trainer import Trainer
from distill_cli.train.world import world_from_env


def run(
    recipe: Recipe,
    *,
    resume: bool = False,
    overwrite: bool = False,
    reporter: Reporter | None = None,
) -> RunSummary:
    """Train the recipe's student to the end in its run folder; returns the run's summary."""
    RunDir.check_intent(resume=resume, overwrite=overwrite)
    world = world_from_env()
    joined_before = distributed.joined()
    threads = torch.get_num_threads()  # runtime.threads is this run's, not the caller's after
    rundir = RunDir(recipe.run_dir)
    if world.restarted and world.launch is not None and rundir.launched_by() == world.launch:
        # the launcher restarted the processes that started or resumed this run (torchrun's
        # --max-restarts, a SLURM requeue): they continue it, as the launch's command cannot
        # say --resume, and an --overwrite in it would throw the progress away
        resume, overwrite = True, False
    try:
        if world.distributed:
            # every process joins before rank 0 alone checks the trackers and the folder: a
            # refusal there (a live run holds it, a run there without --resume) ends rank 0,
            # and the others, joined, notice at their first collective, where they waited for
            # it in the rendezvous for torch's 30 minutes (srun, unlike torchrun, stops nobody)
            distributed.init(world, resolve_device(recipe.runtime.device, world))
        preflight(recipe, main=world.is_main)
        if not world.is_main:
            return _follow(build(recipe), rundir, resume)
        with rundir.lock():
            # what the folder alone refuses (a run there without --resume, another recipe) is
            # said before the data is scanned and the teacher loaded
            rundir.check(recipe.to_yaml(), resume=resume, overwrite=overwrite)
            return _lead(build(recipe), rundir, resume, overwrite, reporter)
    except DistillError as exc:
        if not exc.own_failure:  # said by rank 0 alone, which may not meet it: left for it
            distributed.tell_main(exc, world)
        raise
    except RuntimeError as exc:  # a collective failed: a peer is gone (or a bug: re-raised)
        lost = distributed.peer_lost(exc, world)
        if lost is None:
            raise
        raise lost from exc
    finally:
        # Leave the process group we joined: a process that exits with gloo's threads still
        # running can die in std::terminate (SIGABRT) after a run that succeeded. A group the
        # caller made (a script under torchrun) is the caller's to end.
        if not joined_before:
            distributed.shutdown()
        torch.set_num_threads(threads)


def _lead(
    setup: Setup, rundir: RunDir, resume: bool, overwrite: bool, reporter: Reporter | None
) -> RunSummary:
    """The main process: owns the folder (inside its lock), the trackers and the summary."""
    rec = setup.recipe
    trainer = Trainer(setup, rundir, reporter)
    trainer.reporter.log(setup.opening().record())  # data, models, teacher weights, warnings
    try:
        read_ahead(setup)  # data.on_bad_image=error: a bad file to evaluate refuses the run now
        trainer.check_teacher()  # a teacher near chance is refused before the folder is written
        resuming = rundir.prepare(rec.to_yaml(), resume=resume, overwrite=overwrite)
        _same_data(setup, rundir, resuming)
        rundir.record_launch(setup.world.launch)
    finally:
        setup.world.barrier()
    if resuming:
        trainer.resume()
    start = trainer.state["step"]
    with open_trackers(rec, rundir.path, start_step=start, resumed=resuming) as trackers:
        trainer.reporter = TrackingReporter(trainer.reporter, trackers)
        return trainer.fit()


def _same_data(setup: Setup, rundir: RunDir, resuming: bool) -> None:
    """Record the data a run starts on; refuse to resume it on data that has changed since
    (files added or removed, classes renamed): the checkpoint's position in the epoch and its
    labels would point at other images. A run from before the record resumes, and gets one."""
    from distill_cli.data.fingerprint import of_bundle

    now = of_bundle(setup.data, setup.recipe.data.resolved_root)
    saved = rundir.read_fingerprint() if resuming else None
    changes = saved.changes(now) if saved is not None else []
    if changes:
        raise DistillError(
            f"the data changed since this run started ({'; '.join(changes)})",
            str(rundir.data_print),
            "start a new run on it (set output.name, or --overwrite); to resume, restore the "
            "data as it was",
        )
    if saved is None:
        rundir.write_fingerprint(now)


def _follow(setup: Setup, rundir: RunDir, resume: bool) -> RunSummary:
    """Another process under torchrun: waits for the main one to prepare the folder."""
    setup.world.barrier()
    trainer = Trainer(setup, rundir, None)
    if resume and rundir.last.is_file():
        trainer.resume()
    return trainer.fit()
