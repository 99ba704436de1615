"""`benchmarks/gpu_check.py --smoke`: the GPU check's own code, run on the CPU with tiny models.

GPU time is a short lease; this keeps the check from meeting a bug for the first time there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_part_and_records_results(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), str(out), "--smoke"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert list(results["parts"]) == ["1", "2", "3", "5", "4"]  # the order
    for part, entry in results["parts"].items():
        assert entry["ok"], (part, entry.get("error"), entry.get("log_tail"))
        assert entry["environment"]["torch"]
        assert (out / f"part{part}.log").is_file()
    parts = results["parts"]
    bench = parts["2"]["bench_train"]
    assert bench["distill"]["images_per_s"] > 0 and bench["bare"]["images_per_s"] > 0
    assert bench["ratio"] > 0 and "Name" in parts["2"]["profile_distill_step"]
    assert parts["3"]["best"]["ratio_to_plain"] > 0
    assert parts["5"]["teacher"]["student"]["top1"] is not None
    assert set(parts["5"]["students"]) == {"function matching", "scratch (labels)"}
    for decode in ("device", "workers"):
        assert parts["4"]["data_path"][decode]["images_per_s"] > 0
        assert parts["4"]["full_step"][decode]["images_per_s"] > 0
    assert "Name" in parts["4"]["data_path_device_profile"]
    assert len(list(out.iterdir())) <= 8  # what a device run can bring back


def test_a_failing_part_is_recorded_and_the_next_still_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # part 4 cannot write its JPEGs into a file that stands where its folder should be
    work = tmp_path / "work"
    work.mkdir()
    (work / "jpeg").write_text("not a folder")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), str(out), "--smoke"]
    cmd += ["--parts", "4,2", "--work", str(work)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    parts = json.loads((out / "results.json").read_text())["parts"]
    assert not parts["4"]["ok"] and "write" in parts["4"]["error"]
    assert parts["2"]["ok"]
