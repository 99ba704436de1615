"""Ctrl-C and SIGTERM outside the training loop: one line, exit 130 / 143, nothing left that
looks whole and is not.

Typer turned Ctrl-C into a silent exit 130 (no line), and SIGTERM killed the process where it
stood: an export stopped after writing model.onnx left it beside the previous export's
report.json (whose gates had passed), and a run stopped while it was being built left its
new folder behind. The training loop's own handling (position saved, `--resume`) is tested in
test_engine.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from distill_cli.cli.entry import entry
from tests.conftest import teacher_body, write_recipe


@pytest.fixture(autouse=True)
def _ctrl_c_reaches_python() -> Any:
    """Ctrl-C as a terminal delivers it. A suite started in the background (`nohup`, `&` in a
    script) inherits SIGINT ignored, and distill rightly keeps a signal its caller ignored, so
    these tests would see no Ctrl-C at all: they set Python's handler for their duration."""
    before = signal.getsignal(signal.SIGINT)
    if before is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def _sigint(disposition: Any) -> Any:
    """A child's SIGINT disposition set before it starts (Python installs its Ctrl-C handler
    only where SIGINT is not ignored): `SIG_DFL` as from a terminal, `SIG_IGN` as `nohup`."""
    return lambda: signal.signal(signal.SIGINT, disposition)


def _recipe(tmp_path: Path) -> Path:
    body = teacher_body(tmp_path / "runs ü", epochs=1)
    body["data"]["synthetic"]["train_size"] = 64
    return write_recipe(tmp_path, "r", body)


def _sigterm_then(real: Any, sig: int = signal.SIGTERM) -> Any:
    """`real`, called after this process was sent `sig` (a scheduler's preemption, Ctrl-C)."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), sig)
        return real(*args, **kwargs)

    return wrapped


def _exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as info:
        entry(argv)
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back
    return int(info.value.code or 0), capsys.readouterr().err.strip().splitlines()


def test_sigterm_during_an_export_removes_its_unchecked_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import distill_cli.export.pipeline as pipeline

    out = tmp_path / "export ü"
    out.mkdir()  # a previous export: its model and its verdict
    (out / ".distill-export").write_text("written by distill\n")
    (out / "model.onnx").write_bytes(b"the previous export's model")
    (out / "report.json").write_text('{"gates": {"passed": true}}')
    # the signal arrives once the new model.onnx is written, while its parity is checked
    real = pipeline.fp32_parity

    def parity(*args: Any, **kwargs: Any) -> Any:
        written = (out / "model.onnx").read_bytes()
        assert written.startswith(b"\x08") and not (out / "report.json").exists()
        return _sigterm_then(real)(*args, **kwargs)

    monkeypatch.setattr(pipeline, "fp32_parity", parity)
    argv = ["export", "test_resnet", "--out", str(out), "--exporter", "torchscript"]
    code, err = _exit([*argv, "--no-latency", "--no-simplify"], capsys)
    assert code == 143
    assert err[-1] == (
        "error: interrupted by SIGTERM (distill export) - nothing half-written was left; run it "
        "again to finish"
    )
    assert sorted(p.name for p in out.iterdir()) == [".distill-export"]  # no model, no verdict


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_signal_while_a_run_is_built_is_one_line_and_leaves_no_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, sig: int
) -> None:
    import distill_cli.train.engine as engine

    monkeypatch.setattr(engine, "build", _sigterm_then(engine.build, sig))
    code, err = _exit(["train", str(_recipe(tmp_path)), "--quiet"], capsys)
    name = signal.Signals(sig).name
    assert code == 128 + sig and err == [  # Ctrl-C was a silent exit 130
        f"error: interrupted by {name} (distill train) - nothing half-written was left; run it "
        "again to finish"
    ]
    assert not (tmp_path / "runs ü").exists()  # the folder made for it is gone again


def test_an_export_stopped_before_it_writes_leaves_the_files_it_did_not_replace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only what this export wrote is removed: a model.onnx it had not replaced yet stays
    (in a `--force` folder it may be the user's own); the old verdict goes, it is stale."""
    import distill_cli.export.produce as produce

    out = tmp_path / "mine"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"my own model")
    (out / "report.json").write_text("{}")
    monkeypatch.setattr(produce, "export_onnx", _sigterm_then(produce.export_onnx))
    argv = ["export", "test_resnet", "--out", str(out), "--force", "--no-latency"]
    code, err = _exit(argv, capsys)
    assert code == 143 and err[-1].startswith("error: interrupted by SIGTERM (distill export)")
    assert (out / "model.onnx").read_bytes() == b"my own model"
    assert not (out / "report.json").exists()


def test_ctrl_c_during_the_final_evaluation_stops_the_run_instead_of_being_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop had taken its last look at the flag: Ctrl-C during the last evaluation (or
    the last save) was noted and never acted on, and the run ended with exit 0."""
    from distill_cli.train.evaluate import Evaluator

    real = Evaluator.student_metrics
    monkeypatch.setattr(Evaluator, "student_metrics", _sigterm_then(real, signal.SIGINT))
    recipe = _recipe(tmp_path)
    code, err = _exit(["train", str(recipe), "--quiet"], capsys)
    last = tmp_path / "runs ü" / "r" / "checkpoints" / "last.safetensors"
    assert code == 130 and err == [
        f"error: interrupted by SIGINT at step 2; position saved ({last}) - continue with --resume"
    ]
    assert not (tmp_path / "runs ü" / "r" / "summary.json").exists()
    monkeypatch.setattr(Evaluator, "student_metrics", real)
    assert _exit(["train", str(recipe), "--resume", "--quiet"], capsys)[0] == 0
    assert '"steps": 2' in (tmp_path / "runs ü" / "r" / "summary.json").read_text()


def _command(
    tmp_path: Path, script: str, sigint: Any = signal.SIG_DFL
) -> subprocess.CompletedProcess[str]:
    """`script` run as the `distill` command's process (argv[0] `distill`), in this checkout."""
    prelude = "import os, signal, sys\nsys.argv = ['distill', 'recipes']\n"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run(
        [sys.executable, "-c", prelude + script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        preexec_fn=_sigint(sigint),
    )


def test_ctrl_c_while_the_summary_is_written_says_how_to_finish(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the loop (the test split, summary.json, eval.json) Ctrl-C said "run it again",
    which an existing run refuses without --resume: it names the saved position instead."""
    from distill_cli.rundir.layout import RunDir

    real = RunDir.write_summary
    monkeypatch.setattr(RunDir, "write_summary", _sigterm_then(real, signal.SIGINT))
    recipe = _recipe(tmp_path)
    code, err = _exit(["train", str(recipe), "--quiet"], capsys)
    assert code == 130 and len(err) == 1
    assert err[0].startswith("error: interrupted by SIGINT at step 2; position saved (")
    assert err[0].endswith("last.safetensors) - continue with --resume")
    monkeypatch.setattr(RunDir, "write_summary", real)
    assert _exit(["train", str(recipe), "--resume", "--quiet"], capsys)[0] == 0
    assert (tmp_path / "runs ü" / "r" / "summary.json").is_file()


def test_a_second_ctrl_c_in_training_names_the_position_resume_continues_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two Ctrl-C in quick succession stop training at once; the line said "nothing
    half-written was left; run it again to finish", which an existing run refuses without
    --resume. It names the last saved position, which --resume continues from."""
    from distill_cli.train.trainer import Trainer

    real = Trainer._save_last

    def save_then_two_ctrl_c(self: Trainer, step: int) -> None:
        real(self, step)
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Trainer, "_save_last", save_then_two_ctrl_c)
    body = teacher_body(tmp_path / "runs", epochs=2)
    body["data"]["synthetic"]["train_size"] = 64
    recipe = write_recipe(tmp_path, "r", body)
    code, err = _exit(["train", str(recipe), "--quiet"], capsys)
    assert code == 130 and len(err) == 1
    assert err[0].startswith("error: stopped at once by a second SIGINT; the last saved position")
    assert "(step 2) is intact" in err[0] and err[0].endswith("- continue with --resume")
    monkeypatch.setattr(Trainer, "_save_last", real)
    assert _exit(["train", str(recipe), "--resume", "--quiet"], capsys)[0] == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_while_the_command_imports_is_one_line(tmp_path: Path, sig: int) -> None:
    """Before the handler was in place, Ctrl-C in the command's first ~100 ms (its imports)
    was a KeyboardInterrupt traceback and a death by SIGINT (exit -2); SIGTERM killed it."""
    done = _command(
        tmp_path,
        f"import distill_cli\nos.kill(os.getpid(), {int(sig)})\n"
        "from distill_cli.cli.entry import entry\nentry()\n",
    )
    name = signal.Signals(sig).name
    assert (done.returncode, done.stderr.strip()) == (
        128 + sig,
        f"error: interrupted by {name} (distill recipes) - nothing half-written was left; "
        "run it again to finish",
    )


def test_ctrl_c_while_the_command_exits_is_not_a_traceback(tmp_path: Path) -> None:
    """Once the command's exit code is decided, Ctrl-C during the interpreter's exit (torch's
    teardown takes a while) raised in an exit hook, or killed the process by the signal."""
    done = _command(
        tmp_path,
        "import atexit, time\nimport distill_cli\n"
        "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(0.2)))\n"
        "from distill_cli.cli.entry import entry\nentry()\n",
    )
    assert done.returncode == 0 and done.stderr == ""
    assert "function_matching" in done.stdout


def test_importing_distill_in_a_program_leaves_its_signal_handlers(tmp_path: Path) -> None:
    """Only the command defers signals while it imports; a program that imports distill
    keeps Python's Ctrl-C."""
    script = (
        "import os, signal, sys\nimport distill_cli\n"
        "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
        "assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL\n"
        "assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=_sigint(signal.SIG_DFL),
    )
    assert done.returncode == 0, done.stderr


def test_a_command_started_with_ctrl_c_ignored_keeps_ignoring_it(tmp_path: Path) -> None:
    """`nohup distill run ... &`: the shell's Ctrl-C is not for it, at any point (here while it
    imports and while it works)."""
    done = _command(
        tmp_path,
        "import distill_cli\nos.kill(os.getpid(), signal.SIGINT)\n"
        "from distill_cli.cli.entry import entry\nentry()\n",
        sigint=signal.SIG_IGN,
    )
    assert done.returncode == 0 and done.stderr == ""
    assert "function_matching" in done.stdout


def test_resume_of_a_finished_run_keeps_its_results_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--resume` after the run had finished (a job script that always resumes, a requeue
    after the end) rewrote summary.json without `val_images` (no evaluation ran in that
    process) and logged the holdout's test line a second time."""
    body = teacher_body(tmp_path / "runs", epochs=1)
    body["data"]["synthetic"]["train_size"] = 64
    body["data"]["holdout"] = 16
    recipe = write_recipe(tmp_path, "r", body)
    run = tmp_path / "runs" / "r"
    assert _exit(["train", str(recipe), "--quiet"], capsys)[0] == 0
    summary, metrics = (run / "summary.json").read_text(), (run / "metrics.jsonl").read_text()
    assert '"val_images": 16' in summary and metrics.count('"kind": "test"') == 1
    assert _exit(["train", str(recipe), "--resume", "--quiet"], capsys)[0] == 0
    assert (run / "summary.json").read_text() == summary
    assert (run / "metrics.jsonl").read_text() == metrics


def test_slurms_warning_signal_saves_the_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`#SBATCH --signal=USR1@90` warns a job before its end; SIGUSR1's default action killed
    the run on the spot, without a line, losing the steps since its last checkpoint."""
    from distill_cli.train.trainer import Trainer

    real = Trainer.train_step

    def step(self: Trainer, batch: Any, epoch: int, step: int, window: Any = None) -> None:
        if step == 0:
            os.kill(os.getpid(), signal.SIGUSR1)
        real(self, batch, epoch, step, window)

    monkeypatch.setattr(Trainer, "train_step", step)
    body = teacher_body(tmp_path / "runs", epochs=2)
    body["data"]["synthetic"]["train_size"] = 64
    recipe = write_recipe(tmp_path, "r", body)
    code, err = _exit(["train", str(recipe), "--quiet"], capsys)
    assert code == 128 + signal.SIGUSR1 and err[0].startswith(
        "error: interrupted by SIGUSR1 at step 1; position saved"
    )
    monkeypatch.setattr(Trainer, "train_step", real)
    assert _exit(["train", str(recipe), "--resume", "--quiet"], capsys)[0] == 0
    assert '"steps": 4' in (tmp_path / "runs" / "r" / "summary.json").read_text()


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["models", "test_*"]])
def test_a_reader_that_goes_away_is_the_shells_sigpipe_code_without_a_word(
    args: list[str],
) -> None:
    """`distill --help | head -1`: rich and click answered the closed pipe with a silent exit 1,
    which a `set -o pipefail` script reads as a failed command. Now it is 141, what `ls | head`
    gives, and still no traceback or line (the reader went away; nothing failed). The reader is
    closed before the child writes, so the cut is certain, not a race with the pipe's buffer."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "distill_cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141, err.decode()
    assert err.decode().strip() == ""
