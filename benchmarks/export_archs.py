"""Which timm architectures export to ONNX, with which exporter, and with what parity.

For each architecture (random weights, nothing downloaded; `img_size` set where the model takes
it): build it with timm's exportable settings, export it with each exporter on its own (no
fallback, so both are judged), run distill's checks (onnx.checker full check + ONNX Runtime
load), and compare ONNX Runtime with PyTorch on 8 random inputs at batch 8 and batch 1. This is
where the README's list of architectures that cannot export comes from.

    python benchmarks/export_archs.py                      # the default list, 64 px
    python benchmarks/export_archs.py --arch volo_d1_224 --arch hiera_tiny_224 --size 224

One JSON line per architecture on stdout, then a markdown summary of the exceptions; nothing
is written to disk (the ONNX files live in a temporary folder).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchargs import Several, at_least, one_line_errors, parser, positive_float

if TYPE_CHECKING:
    import torch

DEFAULT = [
    "resnet18",
    "mobilenetv3_small_050",
    "efficientnet_b0",
    "convnext_atto",
    "regnetx_002",
    "deit_tiny_patch16_224",
    "vit_tiny_patch16_224",
    "lcnet_050",
    "ghostnet_050",
    "mixnet_s",
    "repvgg_a0",
    "rexnet_100",
    "densenet121",
    "levit_128s",
    "mobilevit_xxs",
    "edgenext_xx_small",
    "fastvit_t8",
    "tiny_vit_5m_224",
    "mobilenetv4_conv_small",
    "efficientvit_b0",
    "efficientformer_l1",
    "regnety_002",
    "mnasnet_small",
    "hrnet_w18_small",
    "dla34",
    "swin_tiny_patch4_window7_224",
    "poolformer_s12",
    "coat_lite_tiny",
    "maxvit_nano_rw_256",
    "inception_next_atto",
    "cspresnet50",
    "resnext26ts",
    "sebotnet33ts_256",
    "eva02_tiny_patch14_224",
    "beit_base_patch16_224",
    "crossvit_tiny_240",
    "pit_ti_224",
    "xcit_nano_12_p16_224",
    "tresnet_m",
    "hgnetv2_b0",
    "repghostnet_050",
    "nfnet_l0",
    "mobileone_s0",
    "vovnet39a",
    "selecsls42b",
    "dpn68",
    "inception_v3",
    "xception41",
    "res2net50_14w_8s",
    "hiera_tiny_224",
    "volo_d1_224",
    "sequencer2d_s",
    "nest_tiny",
    "mvitv2_tiny",
    "davit_tiny",
    "focalnet_tiny_srf",
    "efficientvit_m0",
    "cait_xxs24_224",
    "convit_tiny",
    "tnt_s_patch16_224",
    "twins_svt_small",
    "gcvit_xxtiny",
    "nextvit_small",
    "ghostnetv3_050",
    "rdnet_tiny",
]


def _build(name: str, size: int) -> tuple[torch.nn.Module, dict[str, Any]]:
    import timm

    base = {"num_classes": 10, "exportable": True}
    try:
        return timm.create_model(name, img_size=size, **base), {"img_size": size}
    except TypeError:
        return timm.create_model(name, **base), {}


def _try(model: torch.nn.Module, size: int, exporter: str, folder: Path) -> dict[str, Any]:
    import numpy as np
    import torch

    from distill_cli.export import onnx_export as ox
    from distill_cli.export.capture import captured_output

    path = folder / f"{exporter}.onnx"
    t0 = time.perf_counter()
    try:
        with captured_output() as out:
            ox._export_once(model, torch.randn(2, 3, size, size), path, exporter, ox.DEFAULT_OPSET)
            ox.check_onnx(path)
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        first = lines[0][:240] if lines else out.tail(2)[:240]
        return {"ok": False, "error": f"{type(exc).__name__}: {first}"}
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = model(x).numpy()
    got = session.run(None, {"input": x.numpy()})[0]
    one = session.run(None, {"input": x[:1].numpy()})[0]
    diff = max(float(np.abs(got - ref).max()), float(np.abs(one - ref[:1]).max()))
    scale = float(np.abs(ref).max()) or 1.0
    return {
        "ok": True,
        "seconds": round(time.perf_counter() - t0, 2),
        "max_abs_diff": diff,
        "max_rel_diff": diff / scale,
        "agreement": float((got.argmax(-1) == ref.argmax(-1)).mean() * 100),
    }


def sweep(name: str, size: int) -> dict[str, Any]:
    import torch

    from distill_cli.export import onnx_export as ox

    torch.manual_seed(0)
    row: dict[str, Any] = {"arch": name, "size": size}
    try:
        model, kwargs = _build(name, size)
        model.eval()
        with torch.inference_mode():
            model(torch.randn(1, 3, size, size))
    except Exception as exc:
        row["create_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:240]}"
        return row
    row["kwargs"] = kwargs
    row["params_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
    with tempfile.TemporaryDirectory() as tmp:
        for exporter in ox.EXPORTERS:
            row[exporter] = _try(model, size, exporter, Path(tmp))
    return row


def main() -> None:
    p = parser(__doc__)
    p.add_argument(
        "--arch",
        action=Several,
        help=f"timm name, repeatable (default: DEFAULT in this script, {len(DEFAULT)} models)",
    )
    p.add_argument("--size", type=at_least(1), default=64, help="input side (64)")
    p.add_argument("--tolerance", type=positive_float, default=1e-4, help="max |diff| (1e-4)")
    args = p.parse_args()
    from tuning import check_models

    one_line_errors(lambda: check_models(args.arch or [], "--arch"))
    import torch

    from distill_cli.export import onnx_export as ox

    torch.set_num_threads(2)
    rows = []
    for name in args.arch or DEFAULT:
        row = sweep(name, args.size)
        rows.append(row)
        print(json.dumps(row), flush=True)
    # the columns are the exporters that ran (distill's EXPORTERS), not a fixed pair
    print(f"\n| architecture | {' | '.join(ox.EXPORTERS)} |\n|---|" + "---|" * len(ox.EXPORTERS))
    for row in rows:
        if "create_error" in row:
            blank = " |" * (len(ox.EXPORTERS) - 1)
            print(f"| {row['arch']} | not built at {args.size} px: {row['create_error']} |{blank}")
            continue
        cells = []
        for exporter in ox.EXPORTERS:
            r = row[exporter]
            if not r["ok"]:
                cells.append(f"fails: {r['error']}")
            elif r["max_abs_diff"] > args.tolerance:
                cells.append(
                    f"exports; max diff {r['max_abs_diff']:.1e} (relative {r['max_rel_diff']:.1e})"
                )
            else:
                cells.append("ok")
        if any(cell != "ok" for cell in cells):  # the table lists the exceptions
            print(f"| {row['arch']} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
