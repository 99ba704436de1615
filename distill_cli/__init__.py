"""distill: distill any timm teacher into a small, fast student, validate it, ship it as ONNX."""

__version__ = "0.1.0"
