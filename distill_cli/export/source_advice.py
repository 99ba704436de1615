"""What `distill export` and `distill bench latency` say when SOURCE or a model flag is wrong:
advice named from what the user actually gave (source.py resolves SOURCE; this is its words).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill_cli.errors import DistillError
from distill_cli.models.names import check_model_name
from distill_cli.rundir import find
from distill_cli.rundir.layout import RunDir


def run_advice(folder: Path) -> str:
    """What to pass instead of a folder that is not a run (`rundir.find.run_advice`: the run it
    lies in, the runs inside it, the run its recipe made); in a run's export folder, also how to
    time the exported file alone."""
    advice = find.run_advice(folder)
    if RunDir(folder.parent).is_run:
        files = sorted(folder.glob("model*.onnx"), key=lambda f: (f.name != "model.onnx", f))
        if files:  # an export folder: `distill bench latency` times its files as they are
            advice += f" (to time an exported file alone: distill bench latency {files[0]})"
    return advice


def flag_error(
    exc: DistillError, input_size: tuple[int, int] | None, model_kwargs: dict[str, Any] | None
) -> DistillError:
    """A model that cannot be built or run at the size or kwargs given on the command line:
    the error names the flag (`--input-size`, `--model-arg`), not a recipe key the export
    command has none of; any other error (a checkpoint that does not fit) as it was."""
    about_model = (exc.where or "").endswith((".input_size", ".in_chans", ".kwargs"))
    if not about_model or not (model_kwargs or input_size is not None):
        return exc
    if not model_kwargs:
        return DistillError(
            f"the model does not run at --input-size {_px(input_size)}: {exc.what}",
            "--input-size",
            "pick a size the model accepts (e.g. a multiple of its patch size)",
        )
    return DistillError(
        f"the model does not run with --model-arg {model_kwargs}: {exc.what}",
        "--model-arg",
        "give each KEY=VALUE the type timm's model takes (numbers unquoted)",
    )


def _px(size: tuple[int, int] | None) -> str:
    """A size as `--input-size` takes it: `224`, or `224x192` when not square."""
    if size is None:
        return "-"
    return str(size[0]) if size[0] == size[1] else f"{size[0]}x{size[1]}"


def timm_name_or_nothing(source: str) -> None:
    """SOURCE without a slash is a timm name or a file or folder of the working directory.
    `distill export my-run` from the wrong folder said "unknown timm model 'my-run' (model)",
    as if a model name had been meant, and named a recipe key the command has not."""
    try:
        check_model_name(source, "SOURCE")
    except DistillError as exc:
        if "Hugging Face Hub id" in exc.what:  # the recipe's advice has no flag here
            raise DistillError(
                exc.what,
                "SOURCE",
                "download the repo (`hf download REPO --local-dir DIR`) and pass its folder as "
                "SOURCE: its config.json names the model",
            ) from None
        if not exc.what.startswith("unknown timm model"):
            raise  # a file named where a name belongs: its own advice
        raise DistillError(
            f"no run folder or file {source!r} here ({Path.cwd()}), and no timm model of that name",
            "SOURCE",
            f"{exc.hint}; or pass the run folder's path (runs/NAME)",
        ) from None
