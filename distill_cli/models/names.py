"""Which names distill builds a model from: timm's model names (with an optional pretrained
tag, `resnet18.a1_in1k`). A misspelt name fails with timm's close matches; a Hugging Face Hub
id is refused with the timm name to write. Asked by `create_net`, export's model source and the
benchmarks' option checks, so every command words it alike."""

from __future__ import annotations

import timm

from distill_cli.errors import DistillError


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
    import difflib

    close = difflib.get_close_matches(base, timm.list_models(), n=5, cutoff=0.5)
    hint = "close matches: " + ", ".join(close) if close else "see `timm.list_models()`"
    raise DistillError(f"unknown timm model {name!r}", where, hint)
