"""One prepared GPU check (issue 26): the shipped code's GPU tests, fair throughput against the
bare step, the peers (timm, torchdistill) in the same run, GPU export latency, real photo folders
read cold, and bf16 against fp32.

GPU time is short (a lease of ~15 minutes, the machine's start included), so everything the GPU
has to prove runs from two prepared commands of at most 9 minutes (their parts capped at 500 s
and 230 s), tested on the CPU first (`--smoke`, in the test suite; docs/benchmarks.md lists the
commands):

    python benchmarks/gpu_check.py OUT --parts 1,2,3      # 500 s of caps on one H100
    python benchmarks/gpu_check.py OUT --parts 5,4,6      # 230 s, same machine and --work
    python benchmarks/gpu_check.py OUT --smoke            # every part's plumbing, CPU, tiny models

Parts (benchmarks/gpu/, one module each), run in the order 1, 2, 3, 5, 4, 6:
  1. `pytest -m gpu` (tests.py): the shipped code's GPU tests, compile and resume included.
  2. throughput.py: distill's step vs the bare step alternated (`rounds` 3), timed alike, at
     224 px and at the small-image setting (eager at equal batch, CUDA graphs at equal settings).
  3. peers.py: timm's train.py KD and torchdistill's KD beside distill KD and function matching,
     on a JPEG folder and on Fashion-MNIST in memory (images/s, time to a student top-1).
  5. export.py: `distill export --device cuda` (onnxruntime's CUDA, TensorRT where present),
     parity on the GPU, beside PyTorch eager and compiled.
  4. photos.py: mixed-size JPEGs read cold, nvJPEG vs CPU workers, data path and full step.
  6. precision.py: the same short function-matching run in bf16 and in fp32.

Each part runs in its own process under its own time limit; the results file
(`OUT/gpu_check_<device>_<date>.json`) is rewritten after every part (a timeout still leaves
what finished), a part that fails records its error and the next one runs. Logs:
`OUT/partN.log`. Scratch files go to `--work`, not to OUT (what a device run brings back is
at most 8 files).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchargs import Raw, fail, output_folder, place

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
ORDER = (1, 2, 3, 5, 4, 6)
#: seconds each part may take, on the GPU and in smoke mode. These are caps, sized so that both
#: device commands (parts 1-3: 8.3 min; parts 5, 4, 6: 3.8 min) and a machine's start fit one
#: 15-minute lease; each part scales its work to its cap. Earlier parts on an H200: the tests
#: 91 s, one throughput round at 224 px 85 s, the JPEG part 87 s.
LIMITS = {
    "gpu": {1: 180, 2: 140, 3: 180, 5: 60, 4: 70, 6: 100},
    "smoke": {p: 300 for p in ORDER},  # a loaded CI machine is slow
}
DEFAULT_BARE = [
    ROOT / ".gpu" / "bench" / "bare_kd_step.py",
    ROOT.parent / "shared" / "bench" / "bare_kd_step.py",
]
DEFAULT_FMNIST = [ROOT / ".gpu" / "fmnist", Path("/usr/share/datasets/fashion-mnist")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=Raw)
    p.add_argument("out", type=place, help="folder for the results file and the parts' logs")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny models: the same code in ~1 min")
    p.add_argument(
        "--parts",
        default=",".join(map(str, ORDER)),
        help="the parts to run, in this order, e.g. 2,3 (default: %(default)s)",
    )
    p.add_argument(
        "--work", type=place, default=None, help="scratch folder (default: OUT-work beside OUT)"
    )
    p.add_argument(
        "--bare",
        type=place,
        default=None,
        help="bare_kd_step.py, part 2's reference (default: the first of "
        + ", ".join(str(x.relative_to(ROOT.parent)) for x in DEFAULT_BARE)
        + " that exists)",
    )
    p.add_argument(
        "--fmnist",
        type=place,
        default=None,
        help="Fashion-MNIST IDX folder (default: the first of "
        + ", ".join(str(x) for x in DEFAULT_FMNIST)
        + " that exists)",
    )
    p.add_argument("--part", type=int, default=None, help=argparse.SUPPRESS)  # one part, in-process
    p.add_argument("--limit", type=float, default=None, help=argparse.SUPPRESS)  # its seconds
    a = p.parse_args()
    try:
        a.part_list = [int(x) for x in a.parts.split(",") if x.strip()]
    except ValueError:
        p.error(f"argument --parts: {a.parts!r} is not a comma-separated list of part numbers")
    if not a.part_list or set(a.part_list) - set(ORDER):
        p.error(f"argument --parts: {a.parts!r}: the parts are {', '.join(map(str, ORDER))}")
    if len(set(a.part_list)) < len(a.part_list):  # the second run would replace the first's entry
        p.error(f"argument --parts: {a.parts!r} names a part twice")
    if a.fmnist is not None and not a.fmnist.is_dir():
        p.error(f"argument --fmnist: {a.fmnist} is not a folder (the Fashion-MNIST IDX files)")
    if a.bare is not None and not a.bare.is_file():
        p.error(f"argument --bare: {a.bare} is not a file (bare_kd_step.py)")
    a.work = (a.work or a.out.parent / f"{a.out.name}-work").resolve()
    a.bare = a.bare or next((x for x in DEFAULT_BARE if x.is_file()), None)
    a.fmnist = a.fmnist or next((x for x in DEFAULT_FMNIST if x.is_dir()), None)
    if a.part is not None:
        from gpu import run_part  # the parts import torch; this process never does

        deadline = time.monotonic() + (a.limit or 3600) - 10  # 10 s to write what it has
        run_part(
            a.part, smoke=a.smoke, work=a.work, bare=a.bare, fmnist=a.fmnist, deadline=deadline
        )
        return
    run_all(a)


def run_all(a: argparse.Namespace) -> None:
    output_folder(a.out, "OUT")
    output_folder(a.work, "--work")
    mode = "smoke" if a.smoke else "gpu"
    device = device_name() if not a.smoke else "cpu-smoke"
    name = f"gpu_check_{slug(device)}_{time.strftime('%Y-%m-%d')}.json"
    command = shlex.join([sys.executable, *sys.argv])
    results: dict[str, Any] = {
        "command": command,
        "commands": [command],
        "mode": mode,
        "device": device,
        "host": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "parts": {},
    }
    results = earlier(a.out / name, results)
    write(a.out / name, results)
    started = time.perf_counter()
    for part in a.part_list:
        entry = {"check_command": command, **run_one(a, part, LIMITS[mode][part])}
        results["parts"][str(part)] = entry
        results["wall_s"] = round(time.perf_counter() - started, 1)
        write(a.out / name, results)
        status = "ok" if entry.get("ok") else f"FAILED: {entry.get('error', '?')}"
        print(f"part {part}: {entry['wall_s']:.0f} s, {status}", flush=True)
    print(f"all parts: {results['wall_s']:.0f} s; {a.out / name}", flush=True)


def earlier(path: Path, results: dict[str, Any]) -> dict[str, Any]:
    """`results` with the parts an earlier command of the same device and day wrote to `path`
    (the second prepared command after the first, in the same OUT): its parts are kept, each
    with the command that ran it (`check_command`), unless this command runs them again. A
    file that is not such a results file is refused, not replaced."""
    if not path.is_file():
        return results
    try:
        old = json.loads(path.read_text())
        parts = old["parts"]
        assert isinstance(parts, dict) and old["device"] == results["device"]
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        fail("not a results file of gpu_check.py", str(path), "name another OUT folder")
    commands = old.get("commands") or [old.get("command")]
    kept = {
        part: {"check_command": old.get("command"), **entry}
        if "check_command" not in entry
        else entry
        for part, entry in parts.items()
        if isinstance(entry, dict)
    }
    print(f"{path}: keeping parts {', '.join(kept) or 'none'} of an earlier command", flush=True)
    return {**results, "commands": [*commands, results["command"]], "parts": kept}


def run_one(a: argparse.Namespace, part: int, limit: int) -> dict[str, Any]:
    """Runs one part in its own process under `limit` seconds; reads what it wrote, even partial."""
    record = a.work / f"part{part}.json"
    record.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), str(a.out), "--part", str(part)]
    cmd += ["--work", str(a.work), "--limit", str(limit)]
    cmd += ["--bare", str(a.bare)] if a.bare else []
    cmd += ["--fmnist", str(a.fmnist)] if a.fmnist else []
    cmd += ["--smoke"] if a.smoke else []
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(BENCH), str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env["PYTHONUNBUFFERED"] = "1"
    started = time.perf_counter()
    error = None
    with open(a.out / f"part{part}.log", "w") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )
        try:
            code = proc.wait(timeout=limit)
            if code:
                error = f"exit code {code}"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the part and whatever it started (runs, the bare step)
            proc.wait()
            error = f"stopped at its limit of {limit} s"
    entry: dict[str, Any] = json.loads(record.read_text()) if record.is_file() else {}
    entry["wall_s"] = round(time.perf_counter() - started, 1)
    entry["limit_s"] = limit
    if error or entry.get("errors"):
        entry["ok"] = False
        entry["error"] = "; ".join(x for x in [error, *entry.get("errors", [])] if x)
        entry["log_tail"] = (a.out / f"part{part}.log").read_text(errors="replace")[-3000:]
    else:
        entry["ok"] = True
    return entry


def device_name() -> str:
    """The GPU's name from nvidia-smi (this process never imports torch), else 'cpu'."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    return out.splitlines()[0] if out else "cpu"


def slug(text: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3' (a file name without odd characters)."""
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split()) or "unknown"


def write(path: Path, results: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str))
    tmp.replace(path)


if __name__ == "__main__":
    main()
