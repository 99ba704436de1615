"""`benchmarks/full_data.py`: choices on the holdout, the table and figure from its JSON, and
(slow) the whole pipeline in tiny with `--quick`."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import full_data  # noqa: E402
from full_data_report import figure, markdown  # noqa: E402
from tuning import best_on_holdout  # noqa: E402


def _row(method: str, epochs: int, lr: float, seed: int, holdout: float, test: float):
    row = full_data.make_row("s", method, epochs, (lr, 1e-4), seed, "tune")
    row.holdout_top1, row.test_top1, row.agreement = holdout, test, 95.0
    return row


def test_the_grid_is_picked_on_the_holdout_never_on_the_test_set() -> None:
    rows = [_row("labels", 5, 1e-2, 0, 90.0, 80.0), _row("labels", 5, 3e-3, 0, 85.0, 95.0)]
    assert best_on_holdout(rows) == (1e-2, 1e-4)
    failed = _row("labels", 5, 3e-3, 0, 99.0, 99.0)
    failed.holdout_top1 = None
    assert best_on_holdout([failed]) is None
    stopped = _row("labels", 5, 3e-3, 0, 99.0, 99.0)
    stopped.error = "stopped at the part's time budget"
    assert best_on_holdout([*rows, stopped]) == (1e-2, 1e-4)


def test_the_table_and_figure_show_means_spreads_and_gaps(tmp_path: Path) -> None:
    rows = [
        _row(full_data.FM, 2, 1e-2, 0, 91.0, 90.0),
        _row(full_data.FM, 5, 1e-2, 0, 93.0, 92.0),
        _row(full_data.FM, 5, 1e-2, 1, 93.0, 93.0),
        _row("labels", 5, 3e-3, 0, 90.0, 90.0),
        _row("labels", 5, 3e-3, 1, 90.0, 91.0),
    ]
    broken = _row("classic KD", 5, 1e-2, 0, 0.0, 0.0)
    broken.error = "stopped at the part's time budget"
    data = {
        "scale": "test",
        "test_images": 10_000,
        "lengths": [2, 5],
        "teacher": {"model": "t", "params": 2_000_000, "test_top1": 94.0, "holdout_top1": 94.5},
        "picked": {"s": {full_data.FM: [1e-2, 1e-4], "labels": [3e-3, 1e-4]}},
        "rows": [asdict(r) for r in [*rows, broken]],
    }
    table = markdown(data)
    assert (
        "| function matching | 5 | 0.01 / 0.0001 | 92.00, 93.00 | 92.50% (1.00) | +2.00 | -1.50 |"
        in table
    )
    assert "| labels | 5 | 0.003 / 0.0001 | 90.00, 91.00 | 90.50% (1.00) | +0.00 |" in table
    assert "| function matching | 2 |" in table and "Not finished: " in table
    assert "top-1 on the 10,000 test images" in table
    figure(data, tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 10_000


def test_help_works() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "full_data.py"), "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0 and "--scale {gpu,cpu}" in done.stdout and "--part" in done.stdout


@pytest.mark.slow
@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="no Fashion-MNIST"
)
def test_quick_mode_runs_the_whole_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "out dir"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "full_data.py"), "--quick", "--out", str(out)]
    # overrides that cost nothing (logging only) make this a variant: named apart, recorded
    cmd += ["--set", "schedule.log_every=7", "--teacher-set", "schedule.log_every=7"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=2400, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert not (out / "full_data_quick.json").exists()
    (results,) = out.glob("full_data_quick_test-resnet-test-efficientnet-*.json")
    data = json.loads(results.read_text())
    tag = data["tag"]
    assert results.name == f"full_data_quick_{tag}.json"
    assert data["models"]["sets"] == ["schedule.log_every=7"]
    assert data["models"]["teacher_sets"] == ["schedule.log_every=7"]
    assert data["models"]["teacher"] == "test_resnet" == data["teacher"]["model"]
    assert Path(data["teacher"]["run"]).name.startswith("full-data-teacher-test-resnet-")
    rows = data["rows"]
    assert [r["error"] for r in rows] == [None] * len(rows)
    methods = list(full_data.METHODS)
    for student in full_data.SCALES["quick"].students:
        mine = [r for r in rows if r["student"] == student]
        # the grid at the shortest length for every method, FM at the other length, the
        # others at the longest, then the second seed of every method at the longest
        assert sum(r["role"] == "tune" for r in mine) == 2 * len(methods)
        assert {(r["method"], r["epochs"]) for r in mine if r["role"] == "ladder"} == {
            (m, 2) for m in methods
        }
        assert {r["method"] for r in mine if r["seed"] == 1} == set(methods)
        assert set(data["picked"][student]) == set(methods)
    for r in rows:  # each trained, was evaluated on the holdout, then tested once
        assert 0 <= r["test_top1"] <= 100 and r["curve"][-1][0] == r["epochs"]
        assert r["run"].endswith(f"-{tag}") and (out / r["run"] / "summary.json").is_file()
        assert r["curve"][-1][1] == pytest.approx(r["holdout_top1"])
    assert data["teacher"]["test_top1"] > 0 and data["environment"]["torch"]
    assert results.with_suffix(".png").stat().st_size > 10_000
    assert "function matching" in results.with_suffix(".md").read_text()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert again.returncode == 0 and "teacher: reusing" in again.stdout
    assert len(json.loads(results.read_text())["rows"]) == len(rows)
