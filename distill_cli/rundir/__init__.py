"""The run folder: its layout (`layout`, the only code that names its files), telling distill's
own files from anything else (`checks`), and the typed files a run leaves (`summary`:
summary.json, `class_eval`: eval.json). Nothing here imports torch.
"""

from __future__ import annotations

from distill_cli.rundir.class_eval import ClassEval
from distill_cli.rundir.layout import RunDir
from distill_cli.rundir.summary import RunSummary

__all__ = ["ClassEval", "RunDir", "RunSummary"]
