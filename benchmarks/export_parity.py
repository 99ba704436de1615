"""How far ONNX Runtime's fp32 logits are from PyTorch's: the measurement behind the defaults of
`distill export --atol/--rtol` (docs/benchmarks.md, "Parity tolerances").

For every architecture of the export sweep (tests/export_sweep_archs.py; random weights seeded
with 0, 64 px, nothing downloaded) it exports exactly as `distill export` does (reparameterized
when the model has such blocks), runs 64 seeded random inputs at batch 64 and batch 1 through
both runtimes and prints one JSON line: the largest |logit|, max |diff|, max relative diff
(logits >= 1e-3 of the largest), and the smallest atol that passes at each rtol of a grid
(``max(|a-b| - rtol*max(|b|, 1e-3*row max))``, the gate's bound). A markdown table of the
worst cases follows.

    python benchmarks/export_parity.py                 # the whole sweep
    python benchmarks/export_parity.py --arch dla34    # one
    python benchmarks/export_parity.py --json benchmarks/results/export_parity.json
    python benchmarks/export_parity.py --arch test_vit,convnext_femto --size 96 --exporter dynamo

`--arch` also takes any timm model outside the sweep (created as `distill export NAME` creates
it: fixed-size models at `--size`); `--size` and `--exporter` rerun the measurement in another
setting than the published one.

Prints one JSON line per architecture and the table; `--json` also writes every row with the
command and the versions (the raw data of the table in docs/benchmarks.md) to the file it names.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchargs import (  # noqa: E402
    Several,
    add_overwrite,
    at_least,
    command,
    fail,
    output_file,
    parser,
    place,
)

RTOLS = (0.0, 1e-5, 1e-4, 1e-3)


def measure(name: str, kwargs: dict, exporter: str, size: int) -> dict:
    import numpy as np
    import onnxruntime as ort

    from distill_cli.export.inputs import InputSet
    from distill_cli.export.onnx_export import export_onnx
    from distill_cli.export.parity import (
        NEAR_ZERO,
        collect,
        ort_runner,
        parity_bound,
        torch_runner,
    )
    from distill_cli.export.reparam import reparameterize
    from distill_cli.export.source import resolve_source

    src = resolve_source(name, input_size=size, num_classes=10, model_kwargs=kwargs, seed=0)
    net = src.student
    rep = reparameterize(net.module, None)
    inputs = InputSet(net.info, None, 64, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        t0 = time.perf_counter()
        export_onnx(rep.module, (net.info.in_chans, *net.info.input_size), path, exporter=exporter)
        seconds = time.perf_counter() - t0
        ref = collect(torch_runner(net.module), inputs)
        got = collect(ort_runner(ort.InferenceSession(str(path))), inputs)
    b = np.concatenate([ref.logits, ref.batch1]).astype(np.float64)
    a = np.concatenate([got.logits, got.batch1]).astype(np.float64)
    diff = np.abs(a - b)
    scale = float(np.abs(b).max())
    mask = np.abs(b) >= NEAR_ZERO * scale
    return {
        "arch": name,
        "exporter": exporter,
        "reparameterized": rep.applied,
        "logit_scale": scale,
        "max_abs_diff": float(diff.max()),
        "max_rel_diff": float((diff[mask] / np.abs(b[mask])).max()),
        # the gate's own bound with atol 0 (its rtol part), so "needed" means what the gate needs
        "needed_atol": {
            str(r): float(max(0.0, (diff - parity_bound(b, 0.0, r)).max())) for r in RTOLS
        },
        "top1_agreement": float((a.argmax(-1) == b.argmax(-1)).mean() * 100),
        "export_s": round(seconds, 1),
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument(
        "--arch", action=Several, help="these of the sweep, or any timm models (default: the sweep)"
    )
    p.add_argument("--size", type=at_least(16), default=None, help="input side, px (64)")
    p.add_argument(
        "--exporter",
        choices=("torchscript", "dynamo"),
        default=None,
        help="every model's exporter (default: the sweep's per model, torchscript outside it)",
    )
    p.add_argument(
        "--json", type=place, help="write the rows, command and versions here (default: none)"
    )
    p.add_argument("--threads", type=at_least(1), default=2, help="PyTorch threads (2)")
    add_overwrite(p)
    args = p.parse_args()
    from tests.export_sweep_archs import SIZE

    cases = _cases(args.arch, args.size, args.exporter)
    if args.json:
        output_file(args.json, "--json", args.overwrite)
    import torch

    from distill_cli.export.latency import versions

    torch.set_num_threads(args.threads)
    rows: list[dict] = []
    record = {
        "command": command("benchmarks/export_parity.py"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "size": args.size or SIZE,
        "threads": args.threads,
        "versions": versions(),
        "worst_atol_needed": {},
        "rows": rows,
    }
    for name, kwargs, exporter in cases:
        try:
            row = measure(name, kwargs, exporter, args.size or SIZE)
        except Exception as exc:  # report and go on: one broken family must not hide the rest
            row = {"arch": name, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json:  # after every row: a sweep cut short keeps the rows it measured
            record["worst_atol_needed"] = worst_needed(rows)
            args.json.write_text(json.dumps(record, indent=1) + "\n")
    ok = [r for r in rows if "error" not in r]
    if not ok:
        fail("no architecture exported", "export_parity.py", "see the rows' errors above", code=1)
    print("\n| arch | largest logit | max abs diff | max rel diff | atol needed at rtol 1e-4 |")
    print("|---|---:|---:|---:|---:|")
    for r in sorted(ok, key=lambda r: -r["needed_atol"]["0.0001"])[:10]:
        print(
            f"| {r['arch']} | {r['logit_scale']:.3g} | {r['max_abs_diff']:.2e} | "
            f"{r['max_rel_diff']:.2e} | {r['needed_atol']['0.0001']:.2e} |"
        )
    print(
        f"\n{len(ok)} architectures; worst atol needed per rtol: {json.dumps(worst_needed(rows))}"
    )


def _cases(
    arch: list[str] | None, size: int | None, exporter: str | None
) -> list[tuple[str, dict, str]]:
    """(name, create kwargs, exporter) of each model to measure, in the sweep's order and then
    the order given: a sweep model keeps its kwargs (its `img_size` follows `--size`), a timm
    model outside it gets none; an unknown name is refused before anything is built."""
    import timm

    from tests.export_sweep_archs import SWEEP

    sweep = {name: (kwargs, how) for name, kwargs, how, _ in SWEEP}
    unknown = [a for a in arch or [] if a not in sweep and not timm.is_model(a)]
    if unknown:
        fail(
            f"{', '.join(unknown)}: neither in the export sweep nor a timm model",
            "--arch",
            "a timm name (`distill models PATTERN` lists them) or one of "
            "tests/export_sweep_archs.py",
        )
    names = [n for n in sweep if not arch or n in arch] + [a for a in arch or [] if a not in sweep]
    cases = []
    for name in dict.fromkeys(names):
        kwargs, how = sweep.get(name, ({}, "torchscript"))
        if size is not None and "img_size" in kwargs:
            kwargs = {**kwargs, "img_size": size}
        cases.append((name, kwargs, exporter or how))
    return cases


def worst_needed(rows: list[dict]) -> dict[str, float]:
    """Per rtol of RTOLS, the largest atol any exported row needs (the rows that failed skipped)."""
    ok = [r for r in rows if "error" not in r]
    return {str(r): max(x["needed_atol"][str(r)] for x in ok) for r in RTOLS} if ok else {}


if __name__ == "__main__":
    main()
