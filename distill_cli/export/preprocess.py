"""The preprocessing an exported model expects, described so a consumer can reproduce it exactly.

This is the owner of "how distill feeds a model at evaluation": the steps are those of
``distill_cli.data`` and ``distill_cli.models.view`` (the loader's square load for image files,
``eval_pixels``'s centre crop and resize, ``normalize``'s channel adaptation and mean/std),
written out with every detail a consumer holding only onnxruntime + numpy + PIL needs: source
channels, load size, crop rule, interpolation, antialiasing, scale, mean and std.
``examples/onnx_consumer.py`` implements it from the metadata alone, and a test checks that it
reproduces distill's own evaluation.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from distill_cli.data.pixels import BACKGROUND
from distill_cli.models.view import INTERPOLATION, ModelInfo

#: distill_cli.models.view.resize: F.interpolate(mode=INTERPOLATION, antialias=True,
#: align_corners=False) on float [0, 1] pixels (the same filter as PIL's BILINEAR resize).
ANTIALIAS = True


@dataclass
class Preprocess:
    """Every step from an image file to the model's input tensor, in order."""

    input_size: tuple[int, int]
    crop_pct: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_chans: int
    #: channels of the images distill evaluated on: 1 for grayscale (Fashion-MNIST), 3 for RGB
    source_channels: int
    #: image files are first resized (shorter side) and centre-cropped to this square; None for
    #: in-memory datasets (Fashion-MNIST, synthetic), whose pixels go straight to the crop step
    load_size: int | None
    layout: str = "NCHW"
    dtype: str = "float32"
    interpolation: str = INTERPOLATION
    antialias: bool = ANTIALIAS

    @property
    def channel_conversion(self) -> str:
        """distill_cli.models.view.match_channels, by name."""
        if self.source_channels == self.in_chans:
            return "none"
        if self.source_channels == 1:
            return "repeat"  # grayscale copied into every channel
        if self.source_channels == 3 and self.in_chans == 1:
            return "luminance"  # 0.299 R + 0.587 G + 0.114 B
        return "unsupported"

    @property
    def channel_order(self) -> str:
        """The order of the input's channels: `RGB` (OpenCV's `imread` gives BGR: reverse it),
        `L` for one channel. Said only as the decode step's "PIL mode RGB" before, which a
        deployer reading pixels with OpenCV on the device did not take for an order."""
        return {1: "L", 3: "RGB"}.get(self.in_chans, f"{self.in_chans} channels as decoded")

    def steps(self) -> list[str]:
        mode = "grayscale (PIL mode L)" if self.source_channels == 1 else "RGB (PIL mode RGB)"
        out = [f"decode the image as {mode}, uint8"]
        if self.load_size is not None:
            out[0] += (
                f" as a viewer shows it: EXIF orientation applied (PIL ImageOps.exif_transpose), "
                f"16-bit values scaled to their top 8 bits (value >> 8; a float image read as "
                f"0..1), transparency composited on {BACKGROUND} (white)"
            )
            out.append(
                f"resize the shorter side to {self.load_size} px (bilinear, antialiased, uint8; "
                f"long side int({self.load_size} * long / short)), then centre-crop "
                f"{self.load_size}x{self.load_size} (top = round((H - {self.load_size}) / 2))"
            )
        h, w = self.input_size
        out += [
            "scale pixels to float32 in [0, 1] (divide by 255)",
            f"centre-crop a square of side max(1, round({self.crop_pct} * min(H, W))) px "
            "(round half to even), top = (H - side) // 2, left = (W - side) // 2",
            f"resize to {h}x{w} (height x width): {self.interpolation}, antialias "
            f"{str(self.antialias).lower()}, align_corners false, on the float pixels",
            {
                "none": f"keep the channels ({self.channel_order}, in that order)",
                "repeat": f"repeat the single channel {self.in_chans} times",
                "luminance": "convert RGB to one channel: 0.299 R + 0.587 G + 0.114 B",
                "unsupported": "(no conversion known for these channel counts)",
            }[self.channel_conversion],
            f"subtract mean {list(self.mean)} and divide by std {list(self.std)} per channel",
            f"lay out as {self.layout} float32 with a batch axis first",
        ]
        return out

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_size"] = list(self.input_size)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        out["channel_conversion"] = self.channel_conversion
        out["channel_order"] = self.channel_order
        out["scale"] = 1 / 255
        out["align_corners"] = False
        out["crop"] = "centre square, side max(1, round(crop_pct * min(H, W)))"
        if self.load_size is not None:  # image files: decoded as `data.pixels.decode_bytes` does
            out["exif_orientation"] = "applied"
            out["background"] = BACKGROUND
        out["steps"] = self.steps()
        return out

    def metadata(self) -> dict[str, str]:
        """The ONNX metadata_props for it: one key per fact, plus the whole as JSON."""
        return {
            "distill.input_layout": self.layout,
            "distill.input_dtype": self.dtype,
            "distill.source_channels": str(self.source_channels),
            "distill.channel_conversion": self.channel_conversion,
            "distill.channel_order": self.channel_order,
            "distill.load_size": "" if self.load_size is None else str(self.load_size),
            "distill.interpolation": self.interpolation,
            "distill.antialias": str(self.antialias).lower(),
            "distill.crop_pct": str(self.crop_pct),
            "distill.crop": "centre square of side max(1, round(crop_pct * min(H, W))) px, "
            "then resized to input_size",
            "distill.preprocess": json.dumps(self.to_dict()),
            "distill.input": "float32 NCHW, (pixels / 255 - mean) / std; "
            "see distill.preprocess for every step",
        }


def describe(info: ModelInfo, source_channels: int | None, load_size: int | None) -> Preprocess:
    """`info`'s preprocessing; `source_channels` None (no data known) means the model's own."""
    return Preprocess(
        input_size=info.input_size,
        crop_pct=info.crop_pct,
        mean=tuple(info.mean),
        std=tuple(info.std),
        in_chans=info.in_chans,
        source_channels=source_channels or info.in_chans,
        load_size=load_size,
        interpolation=info.interpolation,
    )
