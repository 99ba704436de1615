"""Part 5: `distill export` on the GPU (issue 26, item 5).

Two students, each exported with `--device cuda` (onnxruntime's CUDA provider, TensorRT where its
wheel lists it and a session can be made; parity checked on each GPU provider) beside PyTorch
eager and `torch.compile` on the same GPU:

- the function-matching student of part 3 (mobilenetv3_small_050, 32 px, trained weights), and
- resnet18 at 224 px with timm's random weights (the size a GPU deployment serves; parity with
  random weights is judged by top-1 agreement, the report says so).

Without onnxruntime's CUDA build (onnxruntime-gpu is a 244 MiB wheel, too large to travel to the
device) `--device cuda` is refused with its one-line error, which is recorded, and the export
runs with `--device auto`: ONNX Runtime on the CPU, PyTorch eager and compiled on the GPU.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from distill_cli.host import thread_budget
from gpu.common import ROOT, Record, cli

FAST = ["--warmup", "10", "--runs", "100", "--min-time", "1", "--max-time", "5", "--batch", "32"]
#: smoke: the caller's thread budget (one under the test suite's workers; see gpu.common.tiny)
SMOKE = ["--warmup", "2", "--runs", "5", "--min-time", "0", "--batch", "4"]
SMOKE += ["--threads", str(thread_budget())]


def run(rec: Record, *, smoke: bool, work: Path, **_: Any) -> None:
    import onnxruntime as ort

    listed = ort.get_available_providers()
    rec.set("onnxruntime_providers", listed)
    if "CUDAExecutionProvider" not in listed:
        rec.set("cuda_provider", "provider not available: onnxruntime-gpu is not installed")
    fm = work / "peers" / "runs" / "peers-distill-function_matching"
    students = {
        "fm student (part 3)": [str(fm)] if (fm / "summary.json").is_file() else None,
        "resnet18 224 px": ["resnet18", "--num-classes", "1000", "--input-size", "224"],
    }
    if smoke:
        students["resnet18 224 px"] = ["test_resnet", "--num-classes", "10", "--input-size", "32"]
    for name, source in students.items():
        if source is None:
            rec.put("exports", name, {"skipped": "part 3 left no function-matching run"})
            continue
        with rec.guard(f"export {name}"):
            rec.put("exports", name, export(source, work / "export" / _slug(name), smoke))


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def export(source: list[str], out: Path, smoke: bool) -> dict[str, Any]:
    """`distill export` with --device cuda, else (refused) --device auto; the report's figures."""
    timing = SMOKE if smoke else FAST
    result: dict[str, Any] = {}
    for device in ("cuda", "auto"):
        cmd = cli("export", *source, "--out", str(out), "--force", "--no-teacher")
        cmd += ["--device", device, *timing]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        result.setdefault("commands", []).append(" ".join(cmd[2:]))
        if proc.returncode == 2 and device == "cuda":  # refused: one line, recorded as is
            result["cuda_refused"] = proc.stderr.strip()
            continue
        if proc.returncode not in (0, 1):  # 1: a gate missed; the report is still there
            raise RuntimeError(f"exit code {proc.returncode}: {proc.stderr.strip()[-600:]}")
        break
    report = json.loads((out / "report.json").read_text())
    parity = report["parity"]
    result["parity"] = {
        k: parity.get(k) for k in ("passed", "max_abs_diff", "top1_agreement", "warning")
    }
    result["parity"]["providers"] = parity.get("providers", {})
    result["latency"] = [
        {k: e.get(k) for k in ("name", "provider", "p50_ms", "p90_ms", "throughput_ips", "error")}
        for e in report["latency"]["entries"]
    ]
    result["environment"] = report["latency"].get("environment")
    return result
