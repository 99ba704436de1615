"""Keep exporters and quantizers from writing to the terminal and to the user's folder.

torch.onnx (both exporters), onnxsim and onnxruntime.quantization print progress lines, warnings
and C++ log messages straight to file descriptors 1 and 2. `distill export --json` promises a
pure JSON stdout and the terminal table should not be buried, so their output is captured at the
descriptor level (Python-level redirection misses the C++ side) and kept for error messages.
Some of them also drop files into the working directory (ONNX Runtime's symbolic shape
inference: `sym_shape_infer_temp.onnx` and a `<uuid>.data`), so every such step runs through
`third_party_step`, which adds `files.private_cwd` to the capture.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator

from distill_cli.files import private_cwd


class Captured:
    """What the wrapped code printed; `tail()` is what goes into an error message."""

    def __init__(self) -> None:
        self.text = ""

    def tail(self, lines: int = 3) -> str:
        kept = [line.strip() for line in self.text.splitlines() if line.strip()]
        return " | ".join(kept[-lines:])


@contextlib.contextmanager
def captured_output() -> Iterator[Captured]:
    """Redirect fds 1 and 2 (and Python warnings and logging) into a buffer for the block."""
    result = Captured()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    previous_level = logging.root.manager.disable
    with tempfile.TemporaryFile(mode="w+b") as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield result
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            logging.disable(previous_level)
            sink.seek(0)
            result.text = sink.read().decode("utf-8", "replace")


@contextlib.contextmanager
def third_party_step() -> Iterator[Captured]:
    """A third-party export, simplify or quantize step: its output captured (`captured_output`)
    and its working directory a private temp folder (`files.private_cwd`), so a file it names
    relative to the cwd never lands in the user's. Pass it absolute paths only."""
    with private_cwd(), captured_output() as out:
        yield out
