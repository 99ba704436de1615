"""Which names distill builds a model from: timm's model names (with an optional pretrained
tag, `resnet18.a1_in1k`). A misspelt name fails with timm's close matches; a Hugging Face Hub
id is refused with the timm name to write. Asked by `create_net`, export's model source and the
benchmarks' option checks, so every command words it alike."""

from __future__ import annotations

from pathlib import Path

import timm

from distill_cli.errors import DistillError

#: The suffixes of weights files (a name ending so is a file meant, not a timm name).
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".tar")


def check_model_name(name: str, where: str = "model") -> None:
    """Fail with close matches when timm does not know `name` (`where`: the key that holds it).

    A Hub model id (`hf-hub:timm/resnet18.a1_in1k`, or `timm/resnet18.a1_in1k` as the Hub's page
    shows it) is not fetched by name: it would reach the network even without weights (for its
    config). The error names the architecture and tag to write instead, and the folder route."""
    repo = name.removeprefix("hf-hub:")
    if repo != name or repo.startswith("timm/"):
        tagged = repo.split("/", 1)[-1]
        raise DistillError(
            f"{name!r} is a Hugging Face Hub id; distill takes timm's model names",
            where,
            f"write {tagged!r} with pretrained: true (timm fetches the same weights), or "
            "download the repo and give its folder as checkpoint: (its config.json is read)",
        )
    base = name.split(".")[0]
    if timm.is_model(base):
        return
    file_meant = _file_as_name(name, where)
    if file_meant is not None:
        raise file_meant
    import difflib

    close = difflib.get_close_matches(base, timm.list_models(), n=5, cutoff=0.5)
    hint = "close matches: " + ", ".join(close) if close else "see `timm.list_models()`"
    raise DistillError(f"unknown timm model {name!r}", where, hint)


def _file_as_name(name: str, where: str) -> DistillError | None:
    """`teacher.model: runs/teacher` or `model: teacher.safetensors`: the weights meant, in the
    key that takes the architecture's name. The fix names the key the file goes in and, where
    the file says it (its side file), the model to write."""
    path = Path(name).expanduser()
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES and not (
        ("/" in name or "\\" in name) and path.exists()
    ):
        return None
    model = None
    if path.exists():
        from distill_cli.models.checkpoint import named_model

        try:
            model = named_model(path)
        except DistillError:  # the file cannot tell: the fix names the key without the model
            model = None
    key = f"{where.removesuffix('model')}checkpoint" if where.endswith(".model") else None
    if key is None:
        fix = "pass the timm name it was built from" + (f" ({model})" if model else "")
    elif model:
        fix = f"set {where}: {model} and {key}: {name}"
    else:
        fix = f"set {where} to the timm name it was built from and {key}: {name}"
    return DistillError(f"{name!r} is a weights file or run, not a timm model name", where, fix)
