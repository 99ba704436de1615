"""The checkpoint file format, written and read: safetensors weights + a JSON sidecar.

Everything that knows how a checkpoint is laid out lives here, so the writer and the reader
cannot drift apart.

``best.safetensors`` holds the student's weights only: it is what export and other runs load.
``last.safetensors`` additionally holds the optimizer's tensors (under ``__optimizer__/``) and
the training position in its header, all in one file, so one atomic rename makes the whole
resumable state consistent: a kill mid-write leaves the previous file intact.

The JSON sidecar (``<name>.json``) says what the weights are: timm name, classes, input config,
epoch and metrics, so an export or a later run needs nothing but the checkpoint.

Reading a weights file into a model (distill's or a user's, saved the usual ways) is in
weights.py; this module owns the layout distill writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as st_save
from torch import nn

from distill_cli.errors import DistillError, RunFailed
from distill_cli.files import atomic_write
from distill_cli.models import hub, timm_args
from distill_cli.models.side_file import SideFile, parse_side_file

#: Keys in a training checkpoint that hold optimizer or method state rather than model weights.
OPTIM_PREFIX = "__optimizer__/"
METHOD_PREFIX = "__method__/"
PRIVATE_PREFIX = "__"
_STATE_KEY = "distill.train_state"


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share storage (views, tied weights).
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def checkpoint_not_found(path: Path) -> DistillError:
    """A weights file that is not there. One in a run folder's `checkpoints/` (the shipped
    distillation recipes name `runs/quickstart-teacher/checkpoints/best.safetensors`) is most
    often a run not trained yet, so the message names the run to train, not only the path."""
    from distill_cli.rundir.layout import RunDir  # the one owner of the run folder's names

    if path.parent == RunDir(path.parent.parent).checkpoints and path.suffix == ".safetensors":
        run = path.parent.parent.name
        return DistillError(
            f"checkpoint file not found: the run {run!r} has not written it",
            str(path),
            f"train that run first (the recipe with name: {run}), or point to your weights",
        )
    return DistillError("checkpoint file not found", str(path), "check the path")


def weights_path(checkpoint: Path) -> Path:
    """The weights file a checkpoint path names: the file itself; a distill run folder's best
    checkpoint (as `distill export RUN` takes it: a recipe's `teacher.checkpoint: runs/teacher`
    was "holds no model.safetensors"); a Hugging Face folder's weights (`hub.weights_file`)."""
    if checkpoint.is_dir():
        from distill_cli.rundir.layout import RunDir

        run = RunDir(checkpoint)
        if run.is_run:
            if not run.best.is_file():
                raise checkpoint_not_found(run.best)
            return run.best
    return hub.weights_file(checkpoint)


class NonFiniteState(RunFailed):
    """A tensor about to be saved holds NaN/Inf: the file is not written, the old one stays."""


def first_nonfinite(tensors: dict[str, torch.Tensor]) -> str | None:
    """The first floating tensor holding NaN or Inf, by name (None when all are finite)."""
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return key
    return None


def save_weights(
    path: Path,
    model: nn.Module,
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    train_state: dict[str, Any] | None = None,
    extra: dict[str, torch.Tensor] | None = None,
) -> None:
    """Save model weights (and optionally the optimizer, the method's extra state and the
    training position), then the sidecar.

    Every floating tensor (parameters, buffers such as BatchNorm's running statistics,
    optimizer moments) must be finite: a checkpoint is what a resume, an export or a later run
    trusts, so a NaN/Inf one raises :class:`NonFiniteState` naming the tensor, and the file on
    disk keeps its previous, good content.
    """
    tensors = _cpu(model.state_dict())
    tensors.update(_cpu({f"{METHOD_PREFIX}{k}": v for k, v in (extra or {}).items()}))
    header: dict[str, str] = {"format": "pt", "distill.meta": json.dumps(meta)}
    if optimizer is not None:
        opt_tensors, opt_json = _flatten_optimizer(optimizer)
        tensors.update(opt_tensors)
        header[_STATE_KEY] = json.dumps({**(train_state or {}), "optimizer": opt_json})
    bad = first_nonfinite(tensors)
    if bad is not None:
        step = meta.get("step")
        raise NonFiniteState(
            f"tensor {bad!r} holds NaN/Inf"
            + (f" at step {step}" if step is not None else "")
            + f"; {path.name} was not overwritten and keeps the last good state",
            str(path),
            "lower optim.lr or set optim.clip_grad_norm; --resume restarts from the kept state",
        )
    atomic_write(path, st_save(tensors, metadata=header))
    atomic_write(sidecar_path(path), json.dumps(meta, indent=2) + "\n")


def _flatten_optimizer(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{OPTIM_PREFIX}{idx}/{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return _cpu(tensors), {"param_groups": state["param_groups"], "scalars": scalars}


def read_train_state(path: Path) -> dict[str, Any]:
    """The training position stored in a `last` checkpoint's header."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
    except Exception as exc:
        raise DistillError(
            f"cannot read checkpoint: {exc}", str(path), "delete it or start over"
        ) from exc
    if _STATE_KEY not in header:
        raise DistillError(
            "checkpoint has no training state to resume from",
            str(path),
            "restore the run's last.safetensors, or start over with --overwrite",
        )
    return json.loads(header[_STATE_KEY])


def load_training(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore model and optimizer from a `last` checkpoint.

    Returns the training position and the method's extra state.
    """
    state = read_train_state(path)
    tensors = load_file(str(path))
    weights = {k: v for k, v in tensors.items() if not k.startswith(PRIVATE_PREFIX)}
    model.load_state_dict(weights)
    extra = {k[len(METHOD_PREFIX) :]: v for k, v in tensors.items() if k.startswith(METHOD_PREFIX)}
    opt_json = state.pop("optimizer")
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(OPTIM_PREFIX):
            idx, name = key[len(OPTIM_PREFIX) :].split("/", 1)
            opt_state.setdefault(int(idx), {})[name] = value
    for idx, scalars in opt_json["scalars"].items():
        opt_state.setdefault(int(idx), {}).update(scalars)
    groups = opt_json["param_groups"]
    for saved, current in zip(groups, optimizer.param_groups, strict=False):
        for key, value in saved.items():  # JSON turned tuples (betas) into lists
            if isinstance(current.get(key), tuple):
                saved[key] = tuple(value)
    optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    _match_param_strides(optimizer)
    return state, extra


def _match_param_strides(optimizer: torch.optim.Optimizer) -> None:
    """Give each moment tensor its parameter's memory format (channels_last convs).

    Checkpoints store tensors contiguous; the fused CUDA AdamW refuses moments whose strides
    differ from their parameter's ("must have same dtype, device, and layout").
    """
    for param, entry in optimizer.state.items():
        for key, value in entry.items():
            if (
                isinstance(value, torch.Tensor)
                and value.shape == param.shape
                and value.stride() != param.stride()
            ):
                entry[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


# --- the side file --------------------------------------------------------------------------


def sidecar_path(checkpoint: Path) -> Path:
    """`best.safetensors` -> `best.json`: the metadata sits beside the weights it describes."""
    return checkpoint.with_suffix(".json")


def read_sidecar(checkpoint: Path) -> SideFile:
    """The side file beside a checkpoint (distill's own, or one a user wrote), checked
    (`side_file.py`); for a timm model in the Hugging Face Hub layout, its config.json in the
    same keys (`models/hub.py`); for a checkpoint of timm's train.py, the arguments it
    recorded (`models/timm_args.py`: the size, mean/std and crop it trained with); else an empty
    SideFile."""
    checkpoint = weights_path(checkpoint)  # a folder: a run's best, a Hub folder's weights
    path = sidecar_path(checkpoint)
    if path == checkpoint or not path.is_file():  # a Hub folder's (a shard index is .json)
        hub_side = hub.side_file(checkpoint)
        if hub_side is not None:
            config = hub.config_file(checkpoint)
            return parse_side_file(hub_side, config).said_by(f"Hub {config.name}")
        trained = timm_args.train_args(checkpoint)  # timm's train.py: its recorded arguments
        if trained is None:
            return SideFile()
        where = trained[1].name if trained[1] != checkpoint else "the checkpoint's args"
        facts = parse_side_file(timm_args.side_facts(trained[0]), trained[1])
        return facts.said_by(f"timm train.py ({where})")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))  # Notepad's UTF-8 starts with a BOM
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DistillError(
            "checkpoint sidecar is not valid JSON", str(path), "restore or delete the file"
        ) from exc
    return parse_side_file(data, path)


def named_model(path: Path) -> str | None:
    """The timm model a weights file or folder says it holds: its side file's (or Hub config's)
    `model`, else the `arch` timm's train.py records in its checkpoints; None when neither says.

    The one reader of that fact: `distill students FILE` takes the file as its teacher by it,
    and a file written where a model name belongs is refused naming the name it gives."""
    model = read_sidecar(path).model
    if model is not None or path.is_dir():
        return model
    from distill_cli.models.weights import read_weights

    return read_weights(path).arch
