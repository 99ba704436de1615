"""Experiment trackers (TensorBoard, MLflow) fed from the same records as ``metrics.jsonl``.

``metrics.jsonl`` stays the source of truth; trackers are views of it for people who compare
runs in a dashboard. So they sit behind the engine's ``Reporter`` and never change what training
does: a tracker that breaks mid-run (an MLflow server going down) prints one warning and is
dropped rather than killing hours of training. Only the main process tracks, and a resumed run
continues the same TensorBoard curves and MLflow run instead of starting a second, overlapping one.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from numbers import Real
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from distill_cli.errors import DistillError
from distill_cli.files import atomic_write
from distill_cli.recipe.overrides import flatten
from distill_cli.rundir.layout import RunDir

if TYPE_CHECKING:
    from distill_cli.recipe.document import Recipe
    from distill_cli.train.reporter import Reporter

_NOT_SCALARS = ("step", "epoch")


class Tracker(Protocol):
    def log(self, record: dict[str, Any]) -> None: ...
    def close(self, failed: bool) -> None: ...


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """``<kind>/<key>`` for the numbers worth plotting; text, flags, None and NaN are not."""
    kind = record.get("kind", "train")
    return {
        f"{kind}/{key}": float(value)
        for key, value in record.items()
        if key not in _NOT_SCALARS
        and isinstance(value, Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
    }


class TensorBoardTracker:
    """Event files in ``<run_dir>/tensorboard``; tensorboardX needs no TensorFlow or TensorBoard."""

    name = "tensorboard"

    def __init__(
        self, folder: Path, purge_step: int | None, recipe_yaml: str | None = None
    ) -> None:
        from tensorboardX import SummaryWriter

        # purge_step makes TensorBoard drop what an interrupted run logged past its last
        # checkpoint, as metrics.jsonl is truncated. The suffix keeps two writers started in the
        # same second (event files are named by the second) apart and in order.
        self.writer = SummaryWriter(
            str(folder), purge_step=purge_step, flush_secs=30, filename_suffix=f".{time.time_ns()}"
        )
        if recipe_yaml is not None:
            self.writer.add_text("recipe", f"```yaml\n{recipe_yaml}```", 0)

    def log(self, record: dict[str, Any]) -> None:
        step = record.get("step")
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, step)

    def close(self, failed: bool) -> None:
        self.writer.flush()
        self.writer.close()


def _import_mlflow() -> Any:
    try:
        import mlflow
    except ImportError:  # also what a `sys.modules["mlflow"] = None` block raises
        raise DistillError(
            "runtime.log_to has mlflow but the mlflow package is not installed",
            "runtime.log_to",
            "pip install 'distill-cli[mlflow]' (or mlflow-skinny), or remove mlflow",
        ) from None
    return mlflow


class MLflowTracker:
    """One MLflow run per run folder; its id is kept in the folder so ``--resume`` continues it.

    MLflow cannot delete metrics, so steps an interrupted run logged past its last checkpoint
    appear twice after a resume (same step, two values); metrics.jsonl has the truth.
    """

    name = "mlflow"

    def __init__(self, mlflow: Any, recipe: Recipe, run_dir: Path, resumed: bool) -> None:
        self.mlflow = mlflow
        self.run_dir = run_dir
        id_file = RunDir(run_dir).mlflow_run_id
        run_id = id_file.read_text().strip() if resumed and id_file.is_file() else None
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or "distill")
        if run_id:
            mlflow.start_run(run_id=run_id)
            return
        run = mlflow.start_run(run_name=run_dir.name)
        try:
            atomic_write(id_file, run.info.run_id + "\n")
            self._log_params(flatten(recipe.model_dump(mode="json")))
        except BaseException:  # not yet in open_trackers' list, so nobody else would end it
            mlflow.end_run(status="FAILED")
            raise

    def _log_params(self, params: dict[str, Any]) -> None:
        try:
            from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH as limit
        except ImportError:
            limit = 250  # the smallest limit old MLflow servers enforce
        items = [(key, str(value)[:limit]) for key, value in params.items()]
        for start in range(0, len(items), 100):  # servers cap params per request at 100
            self.mlflow.log_params(dict(items[start : start + 100]))

    def log(self, record: dict[str, Any]) -> None:
        metrics = scalars(record)
        if metrics:
            self.mlflow.log_metrics(metrics, step=int(record.get("step") or 0))

    def close(self, failed: bool) -> None:
        try:
            folder = RunDir(self.run_dir)
            for path in (folder.summary, folder.recipe):
                if path.is_file():
                    self.mlflow.log_artifact(str(path))
        finally:
            self.mlflow.end_run(status="FAILED" if failed else "FINISHED")


def _start_mlflow(mlflow: Any, recipe: Recipe, run_dir: Path, resumed: bool) -> MLflowTracker:
    """A tracking server that is down or misconfigured at start is the user's to fix: one line,
    before any training, instead of MLflow's traceback."""
    try:
        return MLflowTracker(mlflow, recipe, run_dir, resumed)
    except Exception as exc:
        raise _start_error(exc) from exc


def _start_error(exc: Exception) -> DistillError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    uri = os.environ.get("MLFLOW_TRACKING_URI", "MLflow's default ./mlruns")
    return DistillError(
        f"cannot start MLflow tracking: {first}",
        f"runtime.log_to, MLFLOW_TRACKING_URI={uri}",
        "check the tracking server and MLFLOW_TRACKING_URI, or remove mlflow from log_to",
    )


def _warn(tracker: Tracker, what: str, exc: BaseException) -> None:
    name = getattr(tracker, "name", type(tracker).__name__)
    print(f"warning: {name} {what}: {exc}", file=sys.stderr)


def _close_all(trackers: Sequence[Tracker], failed: bool) -> None:
    """Close every tracker; one failing to close warns instead of hiding the run's outcome."""
    for tracker in trackers:
        try:
            tracker.close(failed)
        except Exception as exc:
            _warn(tracker, "failed to close", exc)


def check_packages(recipe: Recipe) -> None:
    """The trackers' packages are installed: what `--dry-run` checks of them (the run's
    `preflight` also reaches the server, whose `set_experiment` may create the experiment: a
    write a plan does not make)."""
    if "mlflow" in recipe.runtime.log_to:
        _import_mlflow()


def preflight(recipe: Recipe, *, main: bool) -> None:
    """Fail on a tracker that cannot work before the run folder is touched, so a missing
    package or a down server never leaves a half-made run (or deletes one under --overwrite).

    `main` is the run's answer to "am I the main process" (`World.is_main`): only the main
    process opens trackers, so only it checks them."""
    if "mlflow" not in recipe.runtime.log_to or not main:
        return
    mlflow = _import_mlflow()
    try:
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or "distill")
    except Exception as exc:
        raise _start_error(exc) from exc


@contextmanager
def open_trackers(
    recipe: Recipe, run_dir: Path, *, start_step: int = 0, resumed: bool = False
) -> Iterator[list[Tracker]]:
    """The trackers in ``runtime.log_to``, closed as FINISHED or, on an exception, FAILED.

    Opened by the main process only (the engine's `_lead`); the others log nothing."""
    wanted = list(dict.fromkeys(recipe.runtime.log_to))
    if not wanted:
        yield []
        return
    mlflow = _import_mlflow() if "mlflow" in wanted else None  # fail before creating anything
    trackers: list[Tracker] = []
    try:
        for name in wanted:
            if name == "tensorboard":
                trackers.append(
                    TensorBoardTracker(
                        RunDir(run_dir).tensorboard,
                        # the resumed run keeps steps <= start_step (as metrics.jsonl does)
                        purge_step=start_step + 1 if resumed else None,
                        recipe_yaml=None if resumed else recipe.to_yaml(),
                    )
                )
            else:
                trackers.append(_start_mlflow(mlflow, recipe, run_dir, resumed))
        yield trackers
    except BaseException:
        _close_all(trackers, failed=True)
        raise
    _close_all(trackers, failed=False)


class TrackingReporter:
    """The engine's Reporter, passing ``log`` records on to the trackers as well."""

    def __init__(self, inner: Reporter, trackers: Sequence[Tracker]) -> None:
        self.inner = inner
        self.live = list(trackers)

    def start(self, total_steps: int, done_steps: int, epochs: int) -> None:
        self.inner.start(total_steps, done_steps, epochs)

    def advance(self, step: int, epoch: int) -> None:
        self.inner.advance(step, epoch)

    def log(self, record: dict[str, Any]) -> None:
        self.inner.log(record)
        for tracker in list(self.live):
            try:
                tracker.log(record)
            except Exception as exc:
                self.live.remove(tracker)
                _warn(tracker, "stopped logging", exc)

    def finish(self) -> None:
        self.inner.finish()
