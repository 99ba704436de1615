"""What `distill export` starts from: a run directory, a checkpoint, or a timm model name.

Whatever SOURCE is, the result is the same: the student built with timm's exportable layer
settings and its weights loaded, its input config exactly as it was trained (from the checkpoint
sidecar, so ONNX and PyTorch see identical pixels), its class names, the hash of the weights file
(recorded in the ONNX metadata, so a shipped file can be traced back), and, when a recipe is
known, its data (validation images for the parity gate, training images for int8 calibration)
and its teacher (timed beside the student: the speed-up is the point of distillation).

Missing extras never stop an export: data that cannot be read or a teacher that cannot be built
leave a note in the report and the export goes on (parity then runs on random inputs, and an
accuracy gate fails loudly because it cannot be measured).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from distill_cli.arguments import input_size as parse_input_size
from distill_cli.arguments import not_empty
from distill_cli.data import DataBundle, build_data
from distill_cli.errors import DistillError
from distill_cli.export.class_names import class_names
from distill_cli.export.source_advice import flag_error, run_advice, timm_name_or_nothing
from distill_cli.export.source_spec import spec_from_side_file
from distill_cli.host import absolute
from distill_cli.models import hub
from distill_cli.models.checkpoint import read_sidecar, sidecar_path
from distill_cli.models.create import Net, create_net, infer_num_classes
from distill_cli.models.names import CHECKPOINT_SUFFIXES, check_model_name
from distill_cli.models.probe import probe
from distill_cli.models.side_file import SideFile
from distill_cli.models.weights import file_classes, weights_source
from distill_cli.recipe.document import Recipe, load_recipe
from distill_cli.recipe.sections import ModelSpec
from distill_cli.rundir.layout import RunDir

#: Names that are a weights file, not a timm model, even when no such file is there: a missing
#: `model_best.pth.tar` or Lightning `last.ckpt` was looked up as a misspelt timm name.
SourceKind = Literal["run", "checkpoint", "timm"]


@dataclass
class Source:
    """The student to export and everything known about where it came from."""

    kind: SourceKind
    path: str
    student: Net
    checkpoint: Path | None
    checkpoint_sha256: str | None
    class_names: list[str] | None
    default_out: Path
    recipe: Recipe | None = None
    data: DataBundle | None = None
    teacher_specs: list[ModelSpec] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: where `class_names` came from: "checkpoint", "dataset", "timm" (the model's own
    #: pretrained label set) or "unknown"
    class_names_source: str = "unknown"

    @property
    def weights(self) -> str:
        return "checkpoint" if self.checkpoint is not None else "random initialisation"

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": self.path if self.kind == "timm" else absolute(self.path),
            "checkpoint": absolute(self.checkpoint) if self.checkpoint else None,
            "checkpoint_sha256": self.checkpoint_sha256,
            "weights": self.weights,
            "recipe": self.recipe.name if self.recipe else None,
            "notes": list(self.notes),
        }

    def build_teachers(self) -> list[Net]:
        """The run's teacher(s), exportable and in eval mode; a note for each one unavailable."""
        nets = []
        for spec in self.teacher_specs:
            net = self._build_teacher(spec)
            if net is not None:
                nets.append(net)
        return nets

    def _build_teacher(self, spec: ModelSpec) -> Net | None:
        if spec.pretrained:
            self.notes.append(
                f"teacher {spec.model} not timed: it uses hub weights (pretrained: true)"
            )
            return None
        if spec.checkpoint is not None and not spec.checkpoint.exists():  # a Hub folder is one
            self.notes.append(f"teacher not timed: checkpoint {spec.checkpoint} not found")
            return None
        classes = len(self.data.classes) if self.data is not None else None
        try:
            num = infer_num_classes(spec, classes or self.student.info.num_classes)
            net = create_net(spec, num, exportable=True)
        except DistillError as exc:
            self.notes.append(f"teacher not timed: {exc}")
            return None
        net.module.eval()
        return net


def _run_dir_of(checkpoint: Path) -> Path | None:
    """The run directory a checkpoint lives in (runs/<name>/checkpoints/x.safetensors)."""
    run = checkpoint.parent.parent
    if checkpoint.parent == RunDir(run).checkpoints and RunDir(run).recipe.is_file():
        return run
    return None


def _aligned(
    data: DataBundle, meta: SideFile, checkpoint: Path, class_map: dict[str, str]
) -> tuple[DataBundle, SideFile]:
    """The data's labels in the order the checkpoint's outputs follow (its side file's class
    names, else timm's train.py's folder numbering), as are the ONNX file's class names."""
    from distill_cli.data.classes import align_classes, timm_numbered

    names = meta.class_names or timm_numbered(checkpoint, data.classes, class_map)
    if not names:
        return data, meta
    meta = meta.model_copy(update={"class_names": list(names)})
    return align_classes(data, list(names), class_map, "checkpoint"), meta


def _load_data(recipe: Recipe, notes: list[str]) -> DataBundle | None:
    args = recipe.data.data_args()
    if recipe.data.source in ("shards", "hf_dataset"):
        # the holdout would read every training shard's labels first (`split_shards`) for the
        # few hundred images parity takes: the data's own validation split serves instead
        args["holdout"] = None
        notes.append(
            f"streamed data ({recipe.data.source}): parity on images of a seeded choice of "
            "validation shards, int8 calibrated on training shards, front to back (not a "
            "class-balanced draw)"
        )
    try:
        return build_data(**args, seed=recipe.runtime.seed)
    except DistillError as exc:
        # the data error's own advice ("check data.root") is about a recipe the user is
        # writing; an export reads the run's saved one, and --recipe is what points it elsewhere
        notes.append(
            f"no validation data ({exc.what}: {exc.where}); parity uses random inputs - pass "
            "--recipe R whose data: section finds the images where they are now"
        )
        return None


def resolve_source(
    source: str,
    *,
    checkpoint: Path | None = None,
    checkpoint_key: str | None = None,
    recipe: Path | None = None,
    num_classes: int | None = None,
    input_size: int | str | tuple[int, int] | None = None,
    model_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
) -> Source:
    """Build the student from SOURCE; see the module docstring for what each kind provides.

    `recipe` (any source) names the recipe whose data is used for parity and calibration;
    `num_classes`, `input_size` and `model_kwargs` apply to a timm name (checkpoints carry them);
    `seed` seeds a timm name's random weights (without --checkpoint), so verdicts repeat.
    `checkpoint_key` names the entry of a foreign checkpoint dict to load (`state_dict_ema`);
    a run's checkpoints are plain state dicts (`models.weights` refuses a key for them).
    """
    input_size = parse_input_size(input_size)  # 224, "224x192" or (224, 192)
    path = Path(not_empty(source))
    if path.suffix == ".onnx":
        raise DistillError(
            "SOURCE is what the ONNX file is made from, not an ONNX file",
            source,
            "pass the run directory or checkpoint; check an existing file with --onnx FILE",
        )
    if path.is_dir() or path.suffix in CHECKPOINT_SUFFIXES or path.exists():
        given = [f for f, v in (("--input-size", input_size), ("--num-classes", num_classes)) if v]
        if given:  # it was ignored without a word: the file said `input_size [32, 32]`
            raise DistillError(
                f"{given[0]} goes with a timm model name; a run or checkpoint is exported at the "
                "input size and class count it was trained with (its side file)",
                given[0],
                f"drop it, or pass the timm name with --checkpoint FILE and {given[0]} N"
                + (  # a deployer wanting another size needs a file that takes it
                    "; --dynamic-size exports a file that takes any height and width"
                    if given[0] == "--input-size"
                    else ""
                ),
            )
    if path.is_dir() and not RunDir(path).recipe.is_file() and _weights_in(path):
        if hub.side_file(path) is not None:  # a Hub folder: its config.json names the model
            return _from_checkpoint(path, recipe, model_kwargs, key=checkpoint_key)
        raise DistillError(
            f"the folder holds {hub.weights_file(path).name} but no timm config.json naming "
            "its model",
            source,
            f"pass the timm name it was built from: distill export MODEL --checkpoint {source}",
        )
    if path.is_dir():
        return _from_run(path, checkpoint, recipe, checkpoint_key)
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):  # was "not a checkpoint"
        raise DistillError("a recipe, not a run or weights", source, run_advice(path))
    if path.suffix in CHECKPOINT_SUFFIXES or path.exists():
        if checkpoint is not None:
            raise DistillError(
                "--checkpoint goes with a timm model name",
                "--checkpoint",
                "drop --checkpoint: SOURCE is a checkpoint already",
            )
        return _from_checkpoint(path, recipe, model_kwargs, key=checkpoint_key)
    if "/" in source or "\\" in source:
        if source.startswith(("hf-hub:", "timm/")):  # a Hub id, copied from its page
            timm_name_or_nothing(source)
        raise DistillError("SOURCE not found", source, "a run directory, checkpoint or timm name")
    if checkpoint_key is not None and checkpoint is None:
        raise DistillError(
            "--checkpoint-key names an entry of the --checkpoint file",
            "--checkpoint-key",
            "give --checkpoint FILE too, or drop it",
        )
    timm_name_or_nothing(source)
    return _from_timm(
        source, checkpoint, recipe, num_classes, input_size, model_kwargs, seed, checkpoint_key
    )


def _weights_in(folder: Path) -> bool:
    """Whether `folder` holds a Hub layout's weights (model.safetensors, shards...)."""
    return any((folder / name).is_file() for name in (*hub.WEIGHTS, *hub.INDEXES))


def _from_run(
    run: Path, checkpoint: Path | None, recipe_path: Path | None, key: str | None = None
) -> Source:
    if checkpoint is not None:
        raise DistillError(
            "--checkpoint goes with a timm model name",
            "--checkpoint",
            "drop --checkpoint: a run exports its best weights; for another of its checkpoints, "
            "pass that file as SOURCE",
        )
    rec_file, best = RunDir(run).recipe, RunDir(run).best
    if not rec_file.is_file():
        raise DistillError("not a run directory (no recipe.yaml)", str(run), run_advice(run))
    pid = RunDir(run).training()
    if not best.is_file():
        last = RunDir(run).last
        raise DistillError(
            "the run has no best checkpoint yet" + (f"; it is training (pid {pid})" if pid else ""),
            str(best),
            ("export it once its first epoch ends" if pid else "finish (or --resume) the run first")
            + (f", or pass its last checkpoint, {last}" if last.is_file() and not pid else ""),
        )
    src = _from_checkpoint(best, recipe_path, None, run=run, key=key)
    if pid:  # exported silently, as if it were the finished run's
        epoch = read_sidecar(best).epoch
        src.notes.append(
            f"the run is still training (pid {pid}): this is its best checkpoint so far"
            + (f" (epoch {epoch})" if epoch is not None else "")
            + "; export again when it ends"
        )
    src.kind, src.path = "run", str(run)
    return src


def _from_checkpoint(
    ckpt: Path,
    recipe_path: Path | None,
    model_kwargs: dict[str, Any] | None,
    run: Path | None = None,
    key: str | None = None,
) -> Source:
    if not ckpt.exists():
        from distill_cli.models.checkpoint import checkpoint_not_found

        raise checkpoint_not_found(ckpt)
    meta = read_sidecar(ckpt)
    if meta.model is None:
        from distill_cli.models.weights import read_weights

        arch = read_weights(ckpt, key).arch  # timm's train.py names its model: the command
        raise DistillError(
            "the checkpoint has no sidecar naming its model"
            + (f" (the file says it was saved from {arch!r})" if arch else ""),
            str(sidecar_path(ckpt)),
            "pass the timm name it was built from as SOURCE: distill export "
            + (f"{arch} --checkpoint {ckpt}" if arch else f"MODEL --checkpoint {ckpt}")
            + (f" --checkpoint-key {key}" if key else "")
            + ("" if arch else " (MODEL: e.g. resnet18)"),
        )
    notes: list[str] = []
    run = run or _run_dir_of(ckpt)
    rec = load_recipe(RunDir(run).recipe) if run is not None else None  # moved: followed
    kwargs = dict(rec.student.kwargs) if rec is not None else {}
    kwargs.update(model_kwargs or {})
    data_rec = load_recipe(recipe_path) if recipe_path is not None else rec
    check_model_name(meta.model, f"model ({sidecar_path(ckpt)})")
    classes = meta.classes or file_classes(meta.model, ckpt, key)
    if classes is None:
        raise DistillError(
            "the checkpoint's side file gives no num_classes and its head cannot tell",
            str(sidecar_path(ckpt)),
            'write "num_classes": N (the outputs of its classifier) into the side file',
        )
    student = create_net(spec_from_side_file(ckpt, meta, kwargs, key), classes, exportable=True)
    student.module.eval()
    data = _load_data(data_rec, notes) if data_rec is not None else None
    if data is not None and data_rec is not None:
        data, meta = _aligned(data, meta, ckpt, data_rec.data.class_map)
    teachers = rec.teachers if rec is not None else []
    names, names_from = class_names(meta, data, student)
    return Source(
        kind="checkpoint",
        path=str(ckpt),
        student=student,
        checkpoint=ckpt,
        checkpoint_sha256=weights_source(ckpt, key).sha256,
        class_names=names,
        class_names_source=names_from,
        default_out=RunDir(run).export if run is not None else ckpt.parent / f"{ckpt.stem}-export",
        recipe=data_rec,
        data=data,
        teacher_specs=teachers,
        notes=notes,
    )


def _from_timm(
    name: str,
    checkpoint: Path | None,
    recipe_path: Path | None,
    num_classes: int | None,
    input_size: tuple[int, int] | None,
    model_kwargs: dict[str, Any] | None,
    seed: int = 0,
    key: str | None = None,
) -> Source:
    check_model_name(name)
    notes: list[str] = []
    meta = read_sidecar(checkpoint) if checkpoint is not None else SideFile()
    saved = meta.model
    if (
        checkpoint is not None
        and isinstance(saved, str)
        and saved.split(".")[0] != name.split(".")[0]
    ):
        # it failed later as "73 missing, 83 unexpected keys ... strict: false loads only the
        # matching keys", a recipe key the export has no flag for
        raise DistillError(
            f"the checkpoint was saved from {saved} (its side file), not {name}",
            str(checkpoint),
            f"pass the checkpoint itself as SOURCE, or the timm name {saved} with --checkpoint",
        )
    rec = load_recipe(recipe_path) if recipe_path is not None else None
    data = _load_data(rec, notes) if rec is not None else None
    if data is not None and rec is not None and checkpoint is not None:
        data, meta = _aligned(data, meta, checkpoint, rec.data.class_map)
    classes = num_classes or meta.classes
    if classes is None and data is not None:
        classes = len(data.classes)
    fields: dict[str, Any] = {"model": name, "checkpoint": checkpoint, "kwargs": model_kwargs or {}}
    fields["checkpoint_key"] = key
    if input_size is not None:
        fields["input_size"] = input_size
    spec = ModelSpec.model_validate(fields)
    if classes is None and checkpoint is not None:  # a foreign checkpoint: its head says
        classes = file_classes(name, checkpoint, key)
    if classes is None:
        import timm

        classes = int(timm.get_pretrained_cfg_value(name, "num_classes") or 1000)
    if checkpoint is None:
        torch.manual_seed(seed)  # the same random weights, so the same verdict, on every run
    try:
        # timm may refuse to build a size (a hybrid ViT whose stem does not divide it) or
        # kwargs; a value timm accepts at creation may only fail in forward (drop_rate=abc),
        # and a size it builds may not run (a ViT at 33 px: an AssertionError traceback in
        # parity)
        student = create_net(spec, int(classes), exportable=True)
        student.module.eval()
        if model_kwargs or input_size is not None:
            probe(student, "student", torch.device("cpu"))
    except DistillError as exc:
        raise flag_error(exc, input_size, model_kwargs) from None
    if checkpoint is None:
        notes.append(
            f"random weights (no --checkpoint, seed {seed}): the export checks the graph, "
            "not a model"
        )
    names, names_from = class_names(meta, data, student)
    return Source(
        kind="timm",
        path=name,
        student=student,
        checkpoint=checkpoint,
        checkpoint_sha256=weights_source(checkpoint, key).sha256 if checkpoint else None,
        class_names=names,
        class_names_source=names_from,
        default_out=Path("export") / name,
        recipe=rec,
        data=data,
        notes=notes,
    )
