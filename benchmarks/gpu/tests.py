"""Part 1: the shipped code's GPU tests (`pytest -m gpu`), each test's outcome and recorded
properties (the compile/eager and resume figures the tests write with `record_property`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from gpu.common import ROOT, Record

#: seconds left before the part's deadline at which pytest is interrupted (SIGINT: it stops
#: after the running test and still writes its junit file, so what ran is recorded)
MARGIN_S = 25


def run(rec: Record, *, smoke: bool, work: Path, deadline: float, **_: Any) -> None:
    junit = work / "gpu-tests.xml"
    junit.unlink(missing_ok=True)
    # smoke (CPU, in the test suite, which collects every module anyway): one module is enough
    # to prove the plumbing (its GPU tests skip), not the whole suite's collection again
    where = "tests/test_gpu.py" if smoke else "tests/"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", where, "-q", "-p", "no:cacheprovider"]
    cmd += ["--continue-on-collection-errors", f"--junitxml={junit}", "-o", "junit_family=xunit1"]
    rec.set("command", " ".join(cmd[1:]))
    env = {**os.environ, "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}  # for the determinism test
    with rec.guard("pytest"):
        # output straight into the part's log, test by test
        proc = subprocess.Popen([*cmd, "-v", "--durations=0"], cwd=ROOT, env=env)
        try:
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic() - MARGIN_S))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                code = proc.wait(timeout=MARGIN_S - 5)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            rec.data["errors"].append("gpu tests interrupted at the part's limit")
        rec.set("exit_code", code)
        rec.set("tests", _junit_tests(junit))
        outcomes = [t["outcome"] for t in rec.data["tests"]]
        rec.set("summary", {o: outcomes.count(o) for o in sorted(set(outcomes))})
        failed = [t["name"] for t in rec.data["tests"] if t["outcome"] == "failed"]
        if code not in (0, 2, 5) or failed:  # 5: nothing collected; 2: interrupted (above)
            rec.data["errors"].append(f"gpu tests failed: {failed or code}")


def _junit_tests(path: Path) -> list[dict[str, Any]]:
    """Each test's outcome, time, failure message and recorded properties (from junit xml)."""
    if not path.is_file():
        return []
    tests = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", None
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = "failed" if tag != "skipped" else "skipped"
                message = (node.get("message") or "")[:600]
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        tests.append(
            {
                "name": case.get("name"),
                "outcome": outcome,
                "seconds": float(case.get("time") or 0),
                **({"message": message} if message else {}),
                **({"properties": props} if props else {}),
            }
        )
    return tests
