"""`benchmarks/gpu_check.py --smoke`: the GPU check's own code, run on the CPU with tiny models.

GPU time is a short lease; this keeps the check from meeting a bug for the first time there.
The smoke run goes through every part's plumbing (the peers, the export on CUDA refused with its
one-line error, bf16 against fp32, photos of mixed sizes) and its results file must hold what
the docs promise: each part's shape, the targets it is judged by, the pinned versions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "benchmarks" / "gpu_check.py"


def _results(out: Path) -> dict[str, Any]:
    (path,) = out.glob("gpu_check_*.json")  # named by device and date
    assert path.name.startswith("gpu_check_cpu-smoke_20"), path.name
    return json.loads(path.read_text())


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_part_and_records_results(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(CHECK), str(out), "--smoke"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = _results(out)
    assert list(results["parts"]) == ["1", "2", "3", "5", "4", "6"]  # the order
    for part, entry in results["parts"].items():
        assert entry["ok"], (part, entry.get("error"), entry.get("log_tail"))
        assert entry["part"]["number"] == int(part) and entry["environment"]["torch"]
        assert (out / f"part{part}.log").is_file()
    parts = results["parts"]

    # 2: both sides timed alike, alternated, with their spread; the bare script hashed
    large = parts["2"]["large"]["bench_train"]
    assert large["rounds"] == 2 and large["target_ratio"] == 0.9  # smoke's rounds, CPU target
    for side in ("distill", "bare"):
        assert len(large[side]["per_round"]) == 2
        low, high = large[side]["spread"]
        assert low <= large[side]["images_per_s"] <= high
    assert "median of" in large["bare"]["timing"]
    script = parts["2"]["large"]["bare_script"]  # hashed where the script is at hand
    assert len(script.get("sha256", "")) == 64 or "not found" in script["skipped"]
    assert "Name" in parts["2"]["large"]["profile_distill_step"]
    small = parts["2"]["small"]
    for config in ("batch 16, eager", "batch 64, eager", "batch 64, CUDA graphs"):
        assert small[config]["ratio"] > 0 and small[config]["batch_size"] == int(config[6:8])
    assert small["graphs_to_plain"]["target"] == 3.0

    # 3: four trainers on each data set, the peers' versions pinned, time to a target read
    env = parts["3"]["environment"]
    assert env["timm"] and env["torchdistill"], env
    jpeg, mem = parts["3"]["jpeg"], parts["3"]["small"]
    for name in ("distill kd", "distill function_matching", "timm", "torchdistill"):
        assert jpeg[name]["images_per_s"] > 0, name
        assert mem[name]["seconds_to_target"] is not None, name
        assert mem[name]["evals"][-1]["epoch"] == mem["settings"]["epochs"], name
    assert jpeg["timm"]["peer"].startswith("timm train.py --kd-model-name")
    assert jpeg["timm"]["batch"] == jpeg["torchdistill"]["batch"] == jpeg["batch"]
    photos = parts["3"]["photos"]
    assert photos["sides_px"][0] >= 200 and photos["sides_px"][1] <= 800

    # 5: without onnxruntime-gpu, --device cuda is refused in one line and the export still runs
    for name, export in parts["5"]["exports"].items():
        assert (
            export["cuda_refused"].startswith("error: ")
            and "onnxruntime-gpu" in (export["cuda_refused"])
        ), name
        assert export["parity"]["passed"], name
        assert {e["name"] for e in export["latency"]} >= {"student/onnxruntime/fp32"}
    assert "provider not available" in parts["5"]["cuda_provider"]

    # 4: nvJPEG and CPU workers, data path and full step, each says cold or warm
    for decode in ("device", "workers"):
        for what in ("data_path", "full_step"):
            entry = parts["4"][what][decode]
            assert entry["images_per_s"] > 0 and entry["cache"].split()[0] in ("cold", "warm")

    # 6: the same run in both precisions, and their difference
    runs = parts["6"]["runs"]
    assert runs["bf16"]["precision"] == "bf16-autocast" and runs["fp32"]["precision"] == "fp32"
    assert set(parts["6"]["difference_bf16_minus_fp32"]) == {"top1", "agreement_top1", "speed"}
    assert len(list(out.iterdir())) <= 8  # what a device run can bring back


def test_a_failing_part_is_recorded_and_the_next_still_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # part 4 cannot write its photos into a file that stands where its folder should be, and
    # part 6's Fashion-MNIST folder holds no IDX files to train on (a missing folder is refused
    # before any part runs): both fail, each with its reason
    work = tmp_path / "work"
    work.mkdir()
    (work / "photos").write_text("not a folder")
    (tmp_path / "no-idx").mkdir()
    cmd = [sys.executable, str(CHECK), str(out), "--smoke", "--parts", "4,6", "--work", str(work)]
    cmd += ["--fmnist", str(tmp_path / "no-idx")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    parts = _results(out)["parts"]
    assert list(parts) == ["4", "6"]
    assert not parts["4"]["ok"] and "write" in parts["4"]["error"]
    assert "log_tail" in parts["4"] and parts["4"]["limit_s"] == 300
    assert not parts["6"]["ok"] and "distill_cli', 'train'" in parts["6"]["error"]
    assert "error: Fashion-MNIST file train-images-idx3-ubyte" in (out / "part6.log").read_text()
