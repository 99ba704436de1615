"""Trackers: TensorBoard event files read back byte for byte, MLflow through a fake module."""

from __future__ import annotations

import json
import math
import struct
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.record_writer import masked_crc32c

from distill_cli.errors import DistillError
from distill_cli.recipe.document import Recipe, load_recipe
from distill_cli.train.tracking import (
    MLflowTracker,
    TensorBoardTracker,
    TrackingReporter,
    open_trackers,
    preflight,
)
from tests.conftest import fm_body, write_recipe

TRAIN = {"kind": "train", "step": 2, "epoch": 0, "loss": 0.75, "lr": 0.0025, "images_per_s": 700.0}
EVAL = {"kind": "eval", "step": 4, "epoch": 1, "top1": 83.25, "top5": 99.5, "kl": 0.125}


def read_events(folder: Path) -> list[list[Event]]:
    """The events of each event file in `folder`, files in name order (TensorBoard's order)."""
    files = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, pos, events = path.read_bytes(), 0, []
        while pos < len(data):
            header = data[pos : pos + 8]
            (length,) = struct.unpack("<Q", header)
            (header_crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
            payload = data[pos + 12 : pos + 12 + length]
            (payload_crc,) = struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])
            assert header_crc == masked_crc32c(header) and payload_crc == masked_crc32c(payload)
            events.append(Event.FromString(payload))
            pos += 16 + length
        files.append(events)
    return files


def read_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files under `folder`: tag -> [(step, value), ...] in file order.

    Parses the TFRecord framing (uint64 length, uint32 crc, payload, uint32 crc) itself, so the
    tests need tensorboardX only, not the tensorboard package.
    """
    out: dict[str, list[tuple[int, float]]] = {}
    for events in read_events(folder):
        for event in events:
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


def _recipe(tmp_path: Path, log_to: list[str]) -> Recipe:
    body = fm_body(tmp_path / "runs", None)
    body["runtime"] = {"log_to": log_to}
    return load_recipe(write_recipe(tmp_path, "fm", body))


def test_tensorboard_tracker_writes_numeric_values_as_kind_slash_key(tmp_path: Path) -> None:
    tracker = TensorBoardTracker(tmp_path, purge_step=None, recipe_yaml="optim:\n  lr: 0.003\n")
    tracker.log({**TRAIN, "mix": None, "flag": True, "bad": math.nan, "name": "x"})
    tracker.log({**TRAIN, "step": 4, "loss": 0.5})
    tracker.log(EVAL)
    tracker.log({"kind": "phase", "step": 4, "epoch": 1, "phase": "ce", "kd_weight": 0.0})
    tracker.close(failed=False)

    got = read_scalars(tmp_path)
    assert set(got) == {
        "train/loss",
        "train/lr",
        "train/images_per_s",
        "eval/top1",
        "eval/top5",
        "eval/kl",
        "phase/kd_weight",
    }
    assert got["train/loss"] == [(2, 0.75), (4, 0.5)]
    assert got["eval/top1"] == [(4, 83.25)]
    assert got["phase/kd_weight"] == [(4, 0.0)]
    texts = [
        v.tensor.string_val[0].decode()
        for events in read_events(tmp_path)
        for e in events
        for v in e.summary.value
        if v.tag.startswith("recipe")
    ]
    assert texts == ["```yaml\noptim:\n  lr: 0.003\n```"]


def test_resumed_writer_purges_from_the_resume_step(tmp_path: Path) -> None:
    first = TensorBoardTracker(tmp_path, purge_step=None)
    for step in (2, 4, 6):
        first.log({**TRAIN, "step": step})
    first.close(failed=True)
    second = TensorBoardTracker(tmp_path, purge_step=4)
    second.log({**TRAIN, "step": 6, "loss": 0.25})
    second.close(failed=False)

    files = read_events(tmp_path)
    assert len(files) == 2  # the second writer did not overwrite the first's file
    opening = next(e for e in files[1] if not e.HasField("file_version"))
    assert opening.session_log.status == SessionLog.START and opening.step == 4
    assert read_scalars(tmp_path)["train/loss"][-1] == (6, 0.25)


def test_no_trackers_when_none_asked_and_the_main_process_comes_from_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_trackers(_recipe(tmp_path, []), tmp_path / "run") as trackers:
        assert trackers == []
    assert not (tmp_path / "run").exists()
    # "am I the main process" is the run's (World's) answer, passed in; RANK is not re-read here
    monkeypatch.setitem(sys.modules, "mlflow", None)  # not installed
    recipe = _recipe(tmp_path, ["mlflow"])
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(DistillError, match="mlflow"):
        preflight(recipe, main=True)
    monkeypatch.setenv("RANK", "0")
    preflight(recipe, main=False)  # another process opens no tracker, so checks none


def test_open_trackers_tensorboard_closes_on_error_and_skips_recipe_on_resume(
    tmp_path: Path,
) -> None:
    recipe, run = _recipe(tmp_path, ["tensorboard"]), tmp_path / "run"
    with pytest.raises(RuntimeError, match="boom"), open_trackers(recipe, run) as trackers:
        assert [type(t) for t in trackers] == [TensorBoardTracker]
        trackers[0].log(TRAIN)
        raise RuntimeError("boom")
    with open_trackers(recipe, run, start_step=2, resumed=True) as trackers:
        trackers[0].log({**TRAIN, "step": 4})
    files = read_events(run / "tensorboard")
    tags = [[v.tag for e in events for v in e.summary.value] for events in files]
    assert tags == [["recipe/text_summary", *scalar_tags()], scalar_tags()]
    assert read_scalars(run / "tensorboard")["train/loss"] == [(2, 0.75), (4, 0.75)]
    opening = next(e for e in files[1] if not e.HasField("file_version"))
    assert opening.session_log.status == SessionLog.START
    assert opening.step == 3  # TensorBoard drops steps >= 3: step 2, kept by the resume, stays


def scalar_tags() -> list[str]:
    return ["train/loss", "train/lr", "train/images_per_s"]


class FakeMlflow(types.ModuleType):
    """Records the fluent-API calls MLflowTracker makes."""

    def __init__(self) -> None:
        super().__init__("mlflow")
        self.calls: list[tuple[str, Any]] = []
        self.params: dict[str, str] = {}

    def set_experiment(self, name: str) -> None:
        self.calls.append(("set_experiment", name))

    def start_run(self, run_id: str | None = None, run_name: str | None = None) -> Any:
        self.calls.append(("start_run", run_id or run_name))
        return types.SimpleNamespace(info=types.SimpleNamespace(run_id=run_id or "abc123"))

    def log_params(self, params: dict[str, str]) -> None:
        assert len(params) <= 100
        self.params.update(params)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.calls.append(("log_metrics", (metrics, step)))

    def log_artifact(self, path: str) -> None:
        self.calls.append(("log_artifact", Path(path).name))

    def end_run(self, status: str) -> None:
        self.calls.append(("end_run", status))


def test_mlflow_new_run_then_resume_then_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeMlflow()
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    recipe, run = _recipe(tmp_path, ["mlflow"]), tmp_path / "my-run"
    run.mkdir()
    with open_trackers(recipe, run) as trackers:
        assert [type(t) for t in trackers] == [MLflowTracker]
        TrackingReporter(_Recorder(), trackers).log(TRAIN)
        (run / "summary.json").write_text(json.dumps({"student": {"top1": 1.0}}))
    assert fake.calls == [
        ("set_experiment", "distill"),
        ("start_run", "my-run"),
        ("log_metrics", ({"train/loss": 0.75, "train/lr": 0.0025, "train/images_per_s": 700.0}, 2)),
        ("log_artifact", "summary.json"),
        ("end_run", "FINISHED"),
    ]
    assert fake.params["optim.lr"] == "0.003"
    assert fake.params["student.model"] == "test_efficientnet"
    assert (run / "mlflow_run_id").read_text().strip() == "abc123"

    fake.calls.clear()
    fake.params.clear()
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "mine")
    with (
        pytest.raises(KeyboardInterrupt),
        open_trackers(recipe, run, start_step=2, resumed=True) as trackers,
    ):
        trackers[0].log(EVAL)
        raise KeyboardInterrupt
    assert fake.calls[:2] == [("set_experiment", "mine"), ("start_run", "abc123")]
    assert fake.calls[-1] == ("end_run", "FAILED")
    assert fake.params == {}  # a continued run keeps the params it was started with


def test_missing_mlflow_is_a_recipe_error_before_anything_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)
    recipe, run = _recipe(tmp_path, ["tensorboard", "mlflow"]), tmp_path / "run"
    with pytest.raises(DistillError) as info, open_trackers(recipe, run):
        pass
    assert info.value.where == "runtime.log_to" and "mlflow" in info.value.what
    assert not (run / "tensorboard").exists()


def test_dry_run_refuses_a_missing_mlflow_as_the_run_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--dry-run` "refuses what the run would refuse before training": a recipe logging to
    mlflow without the package was planned, then the run refused it. The plan contacts no
    server (its set_experiment may create the experiment)."""
    from distill_cli import api

    monkeypatch.setitem(sys.modules, "mlflow", None)
    recipe = _recipe(tmp_path, ["mlflow"])
    with pytest.raises(DistillError) as info:
        api.plan(recipe)
    assert info.value.where == "runtime.log_to" and "not installed" in info.value.what
    fake = FakeMlflow()
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    assert api.plan(recipe).total_steps > 0
    assert fake.calls == []  # nothing asked of a server


def test_an_unreachable_mlflow_server_is_one_line_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeMlflow()

    def refuse(**_: Any) -> Any:
        raise ConnectionError("Connection refused\n  (long server traceback)")

    fake.start_run = refuse  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    recipe, run = _recipe(tmp_path, ["mlflow"]), tmp_path / "run"
    run.mkdir()
    with pytest.raises(DistillError) as info, open_trackers(recipe, run):
        pytest.fail("no training may start without its tracker")
    assert str(info.value).startswith("cannot start MLflow tracking: Connection refused (")
    assert "http://tracking:5000" in info.value.where and "\n" not in str(info.value)


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def start(self, total_steps: int, done_steps: int, epochs: int) -> None:
        self.calls.append(("start", (total_steps, done_steps, epochs)))

    def advance(self, step: int, epoch: int) -> None:
        self.calls.append(("advance", (step, epoch)))

    def log(self, record: dict[str, Any]) -> None:
        self.calls.append(("log", record))

    def finish(self) -> None:
        self.calls.append(("finish", None))


class _Broken:
    name = "broken"

    def __init__(self) -> None:
        self.logs = 0
        self.closed = False

    def log(self, record: dict[str, Any]) -> None:
        self.logs += 1
        raise ConnectionError("server down")

    def close(self, failed: bool) -> None:
        self.closed = True
        raise ConnectionError("server down")


class _Good(_Recorder):
    def close(self, failed: bool) -> None:
        self.calls.append(("close", failed))


def test_a_broken_tracker_warns_once_and_is_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    inner, broken, good = _Recorder(), _Broken(), _Good()
    reporter = TrackingReporter(inner, [broken, good])
    reporter.start(10, 0, 2)
    reporter.log(TRAIN)
    reporter.advance(1, 0)
    reporter.log(EVAL)
    reporter.finish()
    assert inner.calls == [
        ("start", (10, 0, 2)),
        ("log", TRAIN),
        ("advance", (1, 0)),
        ("log", EVAL),
        ("finish", None),
    ]
    assert good.calls == [("log", TRAIN), ("log", EVAL)]
    assert broken.logs == 1
    assert capsys.readouterr().err == "warning: broken stopped logging: server down\n"


def test_wrapped_reporter_errors_propagate() -> None:
    class Failing(_Recorder):
        def log(self, record: dict[str, Any]) -> None:
            raise ValueError("render failed")

    with pytest.raises(ValueError, match="render failed"):
        TrackingReporter(Failing(), []).log(TRAIN)


def test_one_tracker_failing_to_close_does_not_stop_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import distill_cli.train.tracking as tracking

    broken, good = _Broken(), _Good()
    monkeypatch.setitem(sys.modules, "mlflow", FakeMlflow())
    monkeypatch.setattr(tracking, "TensorBoardTracker", lambda *a, **k: broken)
    monkeypatch.setattr(tracking, "MLflowTracker", lambda *a, **k: good)
    recipe = _recipe(tmp_path, ["tensorboard", "mlflow"])
    with open_trackers(recipe, tmp_path) as trackers:
        assert trackers == [broken, good]
    assert broken.closed and good.calls == [("close", False)]
    assert "warning: broken failed to close: server down" in capsys.readouterr().err


def test_run_logs_to_tensorboard_end_to_end(tmp_path: Path) -> None:
    from distill_cli import api

    body = fm_body(tmp_path / "runs", None, epochs=1)
    body["runtime"] = {"log_to": ["tensorboard"]}
    api.run(write_recipe(tmp_path, "fm", body))
    got = read_scalars(tmp_path / "runs" / "fm" / "tensorboard")
    for tag in ("train/loss", "train/lr", "train/images_per_s", "eval/top1", "eval/agreement_top1"):
        assert tag in got, sorted(got)
    metrics = [json.loads(line) for line in (tmp_path / "runs/fm/metrics.jsonl").open()]
    evals = [m for m in metrics if m["kind"] == "eval"]
    assert got["eval/top1"] == [(m["step"], pytest.approx(m["top1"])) for m in evals]
