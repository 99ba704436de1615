"""The parity gate: does the ONNX file compute what the PyTorch model computes?

Both run on the same float32 inputs: real validation images through the model's own validation
preprocessing (``eval_pixels`` + ``normalize``, exactly what `distill run` evaluated), or seeded
random inputs when no data is known. The comparison is on logits (max and mean |diff|, and the
max relative to the largest logit, which makes random-weight models with huge logits readable),
on top-1 agreement, and on top-1 accuracy against the labels when there are labels.
The inputs themselves (which images, preprocessed how, in which batches) are inputs.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from distill_cli.export.file_input import one_at_a_time
from distill_cli.export.inputs import Batches, InputSet

#: Parity defaults, from the measurement in docs/benchmarks.md ("Parity tolerances"): fp32
#: ONNX Runtime vs PyTorch across the architecture sweep stays well inside both.
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3
#: The loosest bounds a parity check can be given (`--atol`, `--rtol`); above them it cannot fail
#: on a wrong graph, whose logits are off by 10% or more of their size (docs/benchmarks.md):
#: - rtol 0.05: half that 10%, and 85x the worst relative error measured on the 35 swept
#:   architectures (5.9e-4);
#: - atol 0.1: a trained model's logits are ~10-50, so a wrong graph is off by 1 or more; the
#:   worst atol any swept architecture needed was 2.4e-7 at rtol 1e-3, and 5.8e-4 at rtol 0
#:   (DLA-34, logits of 485), bar a random-weight MobileOne whose logits of 8e14 rtol covers.
#: `1e30` for either passed every file, top-1 agreement aside.
MAX_ATOL = 0.1
MAX_RTOL = 0.05
#: What the ceilings are measured against, for the refusal's message.
MEASURED = "the worst measured on 35 architectures: 2.4e-7 at rtol 1e-3, relative error 5.9e-4"
#: A logit under this fraction of its row's largest |logit| is "~0" for relative measures: it is
#: computed from the same features as the largest, so float32 rounds it on that scale, not its own.
NEAR_ZERO = 1e-3


Runner = Callable[[np.ndarray], np.ndarray]


def torch_runner(module: nn.Module) -> Runner:
    module.eval()

    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        return module(torch.from_numpy(x)).float().numpy()

    return run


def ort_runner(session: Any) -> Runner:
    """A session run on a batch; a file that takes one image at a time (a fixed batch of 1,
    as edge runtimes want) is fed the batch image by image."""
    first = session.get_inputs()[0]
    name, batch = first.name, first.shape[0] if first.shape else None

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: x})[0], dtype=np.float32)

    return one_at_a_time(run, batch if isinstance(batch, int) else None)


@dataclass
class Outputs:
    logits: np.ndarray
    labels: np.ndarray | None
    batch1: np.ndarray  # the first input run alone


def collect(runner: Runner, inputs: InputSet | Batches) -> Outputs:
    outs: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    first: np.ndarray | None = None
    for x, y in inputs.batches():
        if first is None:
            first = runner(np.ascontiguousarray(x[:1]))
        outs.append(runner(x))
        if y is not None:
            labels.append(y)
    if first is None:
        raise ValueError("no inputs to compare on")
    return Outputs(np.concatenate(outs), np.concatenate(labels) if labels else None, first)


def _top1(logits: np.ndarray, labels: np.ndarray | None) -> float | None:
    if labels is None:
        return None
    return float((logits.argmax(-1) == labels).mean() * 100)


def per_class_top1(logits: np.ndarray, labels: np.ndarray, classes: int) -> list[float | None]:
    """Top-1 of each class in percent; None for a class without images."""
    hits = logits.argmax(-1) == labels
    out: list[float | None] = []
    for c in range(classes):
        mine = labels == c
        out.append(float(hits[mine].mean() * 100) if mine.any() else None)
    return out


def _per_class_drop(reference: Outputs, candidate: Outputs) -> list[float | None] | None:
    """Per class, the reference's top-1 minus the candidate's (what quantization cost it)."""
    if reference.labels is None:
        return None
    classes = reference.logits.shape[-1]
    ref = per_class_top1(reference.logits, reference.labels, classes)
    cand = per_class_top1(candidate.logits, reference.labels, classes)
    return [None if a is None or b is None else a - b for a, b in zip(ref, cand, strict=True)]


def _rel(diff: np.ndarray, ref: np.ndarray, scale: float) -> float:
    """max |a - b| / |b| over the logits that are not ~0 (>= NEAR_ZERO of the largest |logit|).

    Near-zero logits are left out: their relative error says nothing (x / 1e-9 is huge for any
    x); they are covered by atol.
    """
    mask = np.abs(ref) >= NEAR_ZERO * scale
    return float((diff[mask] / np.abs(ref[mask])).max()) if mask.any() else 0.0


def parity_bound(ref: np.ndarray, atol: float, rtol: float) -> np.ndarray:
    """Each logit's allowed |onnx - pytorch|: ``atol + rtol * max(|b|, NEAR_ZERO * row max)``.

    Why the row's largest |logit| enters: float32 rounds a logit on the scale of the features it
    is computed from, which the row's largest logit shows, not on its own size. A random-weight
    MobileOne has logits of 1e15 beside others near 0, whose rounding error (1e8, 1e-7 of the
    row) no bound on |b| alone admits; for a trained model (logits of ~10) the floor is far under
    atol, so the bound is the plain ``atol + rtol * |b|``.
    """
    magnitude = np.abs(ref)
    floor = NEAR_ZERO * magnitude.max(axis=-1, keepdims=True) if ref.size else 0.0
    return atol + rtol * np.maximum(magnitude, floor)


def compare(
    reference: Outputs,
    candidate: Outputs,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> dict[str, Any]:
    """Logit and top-1 differences of `candidate` from `reference` (accuracies in percent).

    `outside` counts the logits (batch N and the batch-1 run together) that break
    `parity_bound` (``atol + rtol * |b|``, with |b| at least NEAR_ZERO of its row's largest);
    `worst_ratio` is the largest ``|a - b| / bound`` (<= 1 passes), which says how close to the
    bound the file is.
    """
    ref = reference.logits.astype(np.float64)
    diff = np.abs(candidate.logits.astype(np.float64) - ref)
    ref1 = reference.batch1.astype(np.float64)
    diff1 = np.abs(candidate.batch1.astype(np.float64) - ref1)
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    bound, bound1 = parity_bound(ref, atol, rtol), parity_bound(ref1, atol, rtol)
    # NaN compares False with everything: a NaN logit counts as outside.
    outside = int((~(diff <= bound)).sum() + (~(diff1 <= bound1)).sum())
    ratio = max(float(np.nanmax(diff / bound)), float(np.nanmax(diff1 / bound1)))
    ref_top1, cand_top1 = _top1(reference.logits, reference.labels), None
    if reference.labels is not None:
        cand_top1 = _top1(candidate.logits, reference.labels)
    agree = float((candidate.logits.argmax(-1) == reference.logits.argmax(-1)).mean() * 100)
    return {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "max_rel_diff": _rel(diff, ref, scale),
        "batch1_max_abs_diff": float(diff1.max()),
        "logit_scale": scale or 1.0,
        "logits_compared": int(diff.size + diff1.size),
        "logits_outside": outside,
        "worst_ratio": ratio if np.isfinite(ratio) else float("inf"),
        "top1_agreement": agree,
        "top1_reference": ref_top1,
        "top1": cand_top1,
        "top1_drop": None if cand_top1 is None or ref_top1 is None else ref_top1 - cand_top1,
    }


def fp32_parity(
    reference: Outputs, onnx_out: Outputs, inputs: InputSet, atol: float, rtol: float
) -> dict[str, Any]:
    """The fp32 gate: every logit within `parity_bound` (batch N and 1), 100% agreement."""
    cmp = compare(reference, onnx_out, atol, rtol)
    where = f"{inputs.describe()['images']} {inputs.kind} inputs"
    figures = (
        f"max abs diff {cmp['max_abs_diff']:.3g}, max rel diff {cmp['max_rel_diff']:.3g}, "
        f"top-1 agreement {cmp['top1_agreement']:.2f}%"
    )
    misses = []
    if cmp["logits_outside"]:
        misses.append(
            f"parity: {cmp['logits_outside']} of {cmp['logits_compared']} logits outside "
            f"|a-b| <= {atol:.3g} + {rtol:.3g}*max(|b|, {NEAR_ZERO:g}*row max) ({figures}) "
            f"on {where}"
        )
    if cmp["top1_agreement"] < 100.0:
        misses.append(f"parity: top-1 agreement with PyTorch < 100% ({figures}) on {where}")
    warning = None
    if cmp["logit_scale"] < 10 * atol:
        warning = (
            f"the largest |logit| is {cmp['logit_scale']:.2g}, under 10x atol {atol:.3g}: the "
            "logit bound barely constrains this model (random weights?); top-1 agreement is "
            "the check that counts, and a smaller --atol checks more"
        )
    return {
        "inputs": inputs.describe(),
        "warning": warning,
        "atol": atol,
        "rtol": rtol,
        "rule": (
            f"|onnx - pytorch| <= atol + rtol * max(|pytorch|, {NEAR_ZERO:g} * the row's "
            "largest |logit|) per logit, 100% top-1 agreement"
        ),
        **{k: cmp[k] for k in _KEPT},
        "top1_pytorch": cmp["top1_reference"],
        "top1_onnx": cmp["top1"],
        "top1_drop": cmp["top1_drop"],
        "passed": not misses,
        "misses": misses,
    }


_KEPT = (
    "max_abs_diff",
    "mean_abs_diff",
    "max_rel_diff",
    "batch1_max_abs_diff",
    "logit_scale",
    "logits_compared",
    "logits_outside",
    "worst_ratio",
    "top1_agreement",
)


def variant_parity(fp32: Outputs, variant: Outputs) -> dict[str, Any]:
    """A variant against the fp32 ONNX model: agreement, accuracy and its drop, logit error."""
    cmp = compare(fp32, variant)
    return {
        "top1_agreement_fp32": cmp["top1_agreement"],
        "top1": cmp["top1"],
        "top1_fp32": cmp["top1_reference"],
        "top1_drop": cmp["top1_drop"],
        "per_class_top1_drop": _per_class_drop(fp32, variant),
        "max_abs_diff": cmp["max_abs_diff"],
        "mean_abs_diff": cmp["mean_abs_diff"],
        "max_rel_diff": cmp["max_rel_diff"],
    }


def ort_file_runner(path: Path, provider: str = "CPUExecutionProvider") -> Runner:
    """An ONNX file run by ONNX Runtime on one provider (quiet session)."""
    import onnxruntime as ort

    from distill_cli.export.latency import open_session

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort_runner(open_session(path, opts, provider))


def gpu_parity(
    parity: dict[str, Any], reference: Outputs, path: Path, inputs: InputSet, provider: str
) -> None:
    """The fp32 gate again on a GPU provider (the file a GPU deployment runs computes what
    PyTorch computes there too): `parity["providers"][provider]`; its misses join the gate's.
    A provider listed but unusable (TensorRT without its libraries) is recorded as such."""
    try:
        out = collect(ort_file_runner(path, provider), inputs)
    except Exception as exc:
        if provider == "CUDAExecutionProvider":
            raise
        note = f"provider not available: {str(exc).splitlines()[0][:300]}"
        parity.setdefault("providers", {})[provider] = {"available": False, "error": note}
        return
    block = fp32_parity(reference, out, inputs, parity["atol"], parity["rtol"])
    keep = ("passed", "misses", "max_abs_diff", "max_rel_diff", "top1_agreement", "top1_onnx")
    parity.setdefault("providers", {})[provider] = {k: block[k] for k in keep}
    parity["misses"] += [f"{provider}: {m}" for m in block["misses"]]
    parity["passed"] = parity["passed"] and block["passed"]
