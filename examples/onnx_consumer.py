"""Classify images with a `distill export` ONNX file: onnxruntime + numpy + PIL, nothing else.

Everything about the input comes from the file's metadata (``distill.preprocess``): which
channels the images had, the square load step for image files, the centre crop (``crop_pct``),
the resize (bilinear, antialiased, on float pixels), the channel conversion (grayscale repeated
to 3 channels), mean/std, and the class names. No distill, torch or timm import: this is what a
deployment target runs.

    python examples/onnx_consumer.py runs/my-run/export/model.onnx photo1.jpg photo2.png --top 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps


def load(model_path: str | Path) -> tuple[ort.InferenceSession, dict[str, Any]]:
    """The session and the preprocessing description written by `distill export`."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    if "distill.preprocess" not in meta:
        raise SystemExit(f"{model_path}: no distill.preprocess metadata (re-export it)")
    pre = json.loads(meta["distill.preprocess"])
    names = json.loads(meta["distill.class_names"]) if "distill.class_names" in meta else None
    pre["class_names"] = names
    return session, pre


def _resize_float(channel: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear, antialiased resize of one float32 channel to (height, width).

    PIL's 32-bit float ("F") mode keeps full precision, and its BILINEAR filter widens with the
    scale when shrinking: the antialiased bilinear resize distill applies.
    """
    height, width = size
    if channel.shape == (height, width):
        return channel
    image = Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def _load_square(image: Image.Image, side: int) -> Image.Image:
    """Image files: shorter side to `side` (bilinear, antialiased, uint8), centre square crop."""
    w, h = image.size
    new = (side, int(side * h / w)) if w <= h else (int(side * w / h), side)
    image = image.resize(new, Image.Resampling.BILINEAR)
    left = round((new[0] - side) / 2.0)
    top = round((new[1] - side) / 2.0)
    return image.crop((left, top, left + side, top + side))


def as_viewed(image: Image.Image, background: int = 255) -> Image.Image:
    """A photo file as distill decodes one (the first step of `distill.preprocess`): upright
    (EXIF orientation), 16-bit values scaled to 8 bits (`convert` would clip them to white), and
    transparent pixels on `background` (`convert` would show what the editor left under them)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        wide = np.asarray(image).astype(np.int64).clip(0, 65535) >> 8
        image = Image.fromarray(wide.astype(np.uint8))
    elif image.mode == "F":
        image = Image.fromarray((np.asarray(image).clip(0, 1) * 255).round().astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:] / 255
        flat = rgba[..., :3] * alpha + background * (1 - alpha)
        image = Image.fromarray(np.round(flat).astype(np.uint8))
    return image


def preprocess(image: Image.Image, pre: dict[str, Any]) -> np.ndarray:
    """One image -> the model's (C, H, W) float32 input, following `pre` step by step."""
    if pre.get("load_size"):  # image files: decoded as a viewer shows them
        image = as_viewed(image, int(pre.get("background", 255)))
    image = image.convert("L" if pre["source_channels"] == 1 else "RGB")
    if pre.get("load_size"):
        image = _load_square(image, int(pre["load_size"]))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    height, width = pixels.shape[:2]
    side = max(1, round(min(height, width) * float(pre["crop_pct"])))  # round half to even
    top, left = (height - side) // 2, (width - side) // 2
    pixels = pixels[top : top + side, left : left + side]
    size = (int(pre["input_size"][0]), int(pre["input_size"][1]))
    chans = np.stack([_resize_float(pixels[:, :, c], size) for c in range(pixels.shape[2])])
    conversion, in_chans = pre["channel_conversion"], int(pre["in_chans"])
    if conversion == "repeat":
        chans = np.repeat(chans, in_chans, axis=0)
    elif conversion == "luminance":
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32).reshape(3, 1, 1)
        chans = (chans * weights).sum(0, keepdims=True)
    mean = np.asarray(pre["mean"], dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(pre["std"], dtype=np.float32).reshape(-1, 1, 1)
    return ((chans - mean) / std).astype(np.float32)


def classify(
    session: ort.InferenceSession, pre: dict[str, Any], paths: list[Path], batch: int = 64
) -> np.ndarray:
    """Logits (N, num_classes) for the image files, in order; a file made for one image at a
    time (a fixed batch of 1, as edge runtimes want) is fed one at a time."""
    first = session.get_inputs()[0]
    name = first.name
    if isinstance(first.shape[0], int):
        batch = first.shape[0]
    out = []
    for start in range(0, len(paths), batch):
        x = np.stack([preprocess(Image.open(p), pre) for p in paths[start : start + batch]])
        out.append(session.run(None, {name: x})[0])
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description="classify images with a distill ONNX file")
    parser.add_argument("model", type=Path)
    parser.add_argument("images", type=Path, nargs="+")
    parser.add_argument("--top", type=int, default=1, help="classes to print per image")
    args = parser.parse_args()
    session, pre = load(args.model)
    logits = classify(session, pre, args.images)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    names = pre["class_names"]
    for path, row in zip(args.images, probs, strict=True):
        best = np.argsort(-row)[: args.top]
        shown = ", ".join(f"{names[i] if names else i} {row[i] * 100:.1f}%" for i in best)
        print(f"{path}: {shown}")


if __name__ == "__main__":
    main()
