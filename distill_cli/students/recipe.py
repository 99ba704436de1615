"""`distill students --write-recipe`: a function-matching recipe for the chosen student.

The recipe starts from the shipped ``recipes/function_matching.yaml`` (the paper's settings live
there and only there), with the teacher, the data and the student at its deployment input size
filled in, and a header that says which budget chose the student and which `distill export`
line checks the same budget after training. It is validated before this returns.

The recipe fits the data it is written for: the batch is the template's (the paper's 512) only
when the training split has room for it (at most a quarter of the images per batch, a power of
two, at least 8), the warm-up is at most a tenth of the steps, and the student starts from
timm's pretrained weights when its architecture has them (the paper's students do).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from distill_cli.errors import DistillError, RunFailed
from distill_cli.files import atomic_write, refuse_existing, refuse_odd_path
from distill_cli.recipe.document import recipe_text
from distill_cli.recipe.yaml_text import parse_yaml
from distill_cli.students.types import StudentEntry, StudentSearch

#: Fashion-MNIST's training split (the IDX files distill reads).
FASHION_MNIST_TRAIN = 60_000
_SOURCES = {
    "synthetic": "synthetic",
    "fashion_mnist": "fashion_mnist",
    "fashion-mnist": "fashion_mnist",
}


class NoFit(RunFailed):
    """A recipe was asked for but no candidate fits; `.search` still holds every timing."""

    def __init__(self, error: DistillError, search: StudentSearch) -> None:
        super().__init__(error.what, error.where, error.hint)
        self.code = error.code  # nothing measured keeps its own exit code
        self.search = search


@dataclass(frozen=True)
class RecipeAsk:
    """`--write-recipe` and the flags that go with it: where the recipe goes, its data, the
    teacher's weights (default: timm's hub), the student (default: the best fit), the run name,
    and whether an existing file may be replaced."""

    path: Path
    data: str
    teacher_checkpoint: Path | None = None
    student: str | None = None
    name: str | None = None
    force: bool = False

    @classmethod
    def of(
        cls,
        path: str | Path | None,
        data: str | Path | None,
        teacher_checkpoint: str | Path | None = None,
        student: str | None = None,
        name: str | None = None,
        force: bool = False,
    ) -> RecipeAsk | None:
        """The ask from the flags (None without a path); `data` is required with a path, and
        the recipe's flags without one are refused: `--teacher-checkpoint` was ignored, and the
        search timed students for a teacher file it never read."""
        if path is None:
            given = [
                flag
                for flag, value in (
                    ("--data", data),
                    ("--teacher-checkpoint", teacher_checkpoint),
                    ("--student", student),
                    ("--name", name),
                    ("--force", force),
                )
                if value
            ]
            if given:
                raise DistillError(
                    f"{given[0]} goes into the recipe --write-recipe writes",
                    given[0],
                    "add --write-recipe student.yaml, or drop " + ", ".join(given),
                )
            return None
        if data is None:
            hint = "synthetic, fashion_mnist or an image folder"
            raise DistillError("--write-recipe needs --data", "--data", hint)
        checkpoint = Path(teacher_checkpoint) if teacher_checkpoint else None
        return cls(Path(path), str(data), checkpoint, student, name, force)

    def check(self, teacher: str) -> None:
        """The usage errors, before minutes of timing rather than after: `data` must name a
        source, the file must be new unless `force`, and the teacher's checkpoint must be one
        `distill run` loads into `teacher` (`check_teacher_file`)."""
        data_section(self.data)
        refuse_odd_path(self.path, "--write-recipe")
        if not self.force:
            refuse_existing(self.path, "--force")
        if self.teacher_checkpoint is not None:
            check_teacher_file(teacher, self.teacher_checkpoint)


def check_teacher_file(teacher: str, checkpoint: Path) -> None:
    """Refuse, in `distill run`'s words, a teacher checkpoint the run would refuse (its side
    file, another model's weights, a class count its head does not have): the recipe was
    written after minutes of timing and failed only when run. The teacher is built on the meta
    device, so a 300M-parameter one costs no memory; the file is read as the run reads it."""
    import warnings

    import torch

    from distill_cli.models.create import create_net
    from distill_cli.models.feed import resolve_num_classes
    from distill_cli.models.weights import file_classes
    from distill_cli.recipe.sections import ModelSpec

    spec = ModelSpec(model=teacher, checkpoint=checkpoint)
    try:
        classes: int | None = resolve_num_classes(spec, None)[0]
    except DistillError:  # no side file says: the head's rows (the run takes the data's)
        classes = file_classes(teacher, checkpoint)
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")  # copying into meta tensors is a no-op, as meant
        create_net(spec, classes or 1000, role="teacher")


def _template() -> dict[str, Any]:
    from distill_cli.recipe.catalog import shipped

    try:
        data = parse_yaml(shipped("function_matching").read_text())
    except (DistillError, OSError, yaml.YAMLError):
        data = None  # installed without the recipes folder: the method's own defaults
    if not isinstance(data, dict):
        data = {"method": {"name": "function_matching"}, "schedule": {"epochs": 1000}}
    return data


def data_section(data: str, template: dict[str, Any] | None = None) -> dict[str, Any]:
    """`--data`: synthetic, fashion_mnist, or an image folder root (train/ and val/ inside)."""
    if data in _SOURCES:
        return {"source": _SOURCES[data]}
    root = Path(data)
    if not root.is_dir():
        raise DistillError(
            "--data is not a folder", data, "synthetic, fashion_mnist or a folder with train/, val/"
        )
    if not (root / "train").is_dir():
        # the recipe reads DIR/train: `distill run` would refuse it after the minutes of timing
        # (a folder of class folders, or of Fashion-MNIST's IDX files, was written as one)
        held = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        what = (
            f"it holds {', '.join(held[:3])}{', ...' if len(held) > 3 else ''}"
            if held
            else ("it holds no folders")
        )
        raise DistillError(
            f"--data has no train/ folder ({what}): the recipe reads DIR/train/<class>/ and "
            "DIR/val/<class>/",
            data,
            "give the folder holding train/ and val/, or --data fashion_mnist or synthetic",
        )
    section = dict((template or {}).get("data") or {})
    section.update({"source": "image_folder", "root": root.as_posix()})
    return section


def train_images(section: dict[str, Any]) -> int | None:
    """How many training images `section` (a recipe's data block) holds, without loading them."""
    from distill_cli.recipe.sections import SyntheticSpec

    source = section.get("source")
    if source == "synthetic":
        return SyntheticSpec().train_size
    if source == "fashion_mnist":
        return FASHION_MNIST_TRAIN
    if source in ("shards", "hf_dataset"):  # its files are not images: 0 sized nothing
        images = section.get("train_images")
        return int(images) if images else None
    from distill_cli.data.folders import image_files

    folder = Path(section["root"]) / section.get("train_dir", "train")
    if not folder.is_dir():
        return None
    # the scan's own rule, so macOS's `._x.jpg` forks and `__MACOSX/` do not size the batch
    return len(image_files(folder, []))


def fit_schedule(schedule: dict[str, Any], images: int | None) -> str:
    """Shrink the template's batch and warm-up to `images` (in place); returns what it chose."""
    batch = int(schedule.get("batch_size", 512))
    if images:
        room = 1 << max(3, (max(images // 4, 1)).bit_length() - 1)  # a power of two, >= 8
        batch = max(1, min(batch, room, images))
        schedule["batch_size"] = batch
    epochs = schedule.get("epochs")
    if not (images and epochs):
        return f"batch {batch}"
    steps = max(1, images // batch) * int(epochs)
    if schedule.get("warmup_steps"):
        schedule["warmup_steps"] = min(int(schedule["warmup_steps"]), max(1, steps // 10))
    return f"batch {batch}, {epochs} epochs = {steps} steps"


def _choose(search: StudentSearch, student: str | None) -> StudentEntry:
    if student is not None:
        for entry in search.entries:
            if entry.name == student:
                if entry.status != "fits":
                    raise RunFailed(
                        f"{student} is not within the budget ({entry.status})", "--student"
                    )
                return entry
        raise DistillError(
            f"{student} is not among the candidates",
            "--student",
            "name a model of the table (or drop --student for the best fit)",
        )
    if search.best is None:
        raise RunFailed(
            f"no candidate fits {search.query.max_latency_ms:g} ms: no recipe written",
            "--write-recipe",
            "raise --max-latency-ms, lower --input-size or try --precision int8",
        )
    return search.best


def write_recipe(search: StudentSearch, ask: RecipeAsk) -> Path:
    """Write the recipe for `ask.student` (default: the top-ranked fit) to `ask.path`; returns
    the path.

    The recipe is validated before it is written, and an existing file is replaced only with
    `ask.force`."""
    from pydantic import ValidationError

    from distill_cli.recipe.document import Recipe
    from distill_cli.recipe.messages import format_validation_error

    chosen = _choose(search, ask.student)
    q, path, teacher_checkpoint = search.query, ask.path, ask.teacher_checkpoint
    raw = _template()
    teacher: dict[str, Any] = {"model": q.teacher}
    if teacher_checkpoint is not None:
        teacher["checkpoint"] = teacher_checkpoint.as_posix()
    else:
        teacher["pretrained"] = True
    spec: dict[str, Any] = {"model": chosen.name, "input_size": q.input_size}
    if chosen.model_kwargs:
        spec["kwargs"] = dict(chosen.model_kwargs)
    run_name = ask.name or re.sub(r"[^A-Za-z0-9._-]", "-", f"{chosen.name}-from-{q.teacher}")
    raw.update(
        name=run_name,
        description=f"function matching {q.teacher} -> {chosen.name} ({q.input_size} px), "
        f"chosen by `distill students` for {q.max_latency_ms:g} ms",
        teacher=teacher,
        student=spec,
        data=data_section(ask.data, raw),
    )
    raw.pop("model", None)
    if chosen.pretrained:
        spec["pretrained"] = True
    images = train_images(raw["data"])
    fit = fit_schedule(raw.setdefault("schedule", {}), images)
    stat = chosen.p50_ms if q.latency_stat == "p50" else chosen.p90_ms
    header = [
        f"# Written by `distill students {q.teacher} --max-latency-ms {q.max_latency_ms:g}`:",
        f"# {chosen.name} ran at {q.latency_stat} {stat:.3f} ms (batch {q.batch}, {q.precision},"
        f" {search.environment.get('threads')} threads, {q.device}) on "
        f"{search.environment.get('cpu')}.",
        "# Train:  distill run " + path.as_posix(),
        (
            "# Export with the same budget as a gate:  "
            if q.export_gate_checks_it
            else "# Export (its gate is batch 1 on the CPU, not this budget):  "
        )
        + search.export_command(f"runs/{run_name}"),
        f"# Schedule for {images if images is not None else 'an unknown number of'} training "
        f"images: {fit}.",
    ]
    if chosen.meets_protocol is False:  # the table said so; the file read alone did not
        kinds = ", ".join(dict.fromkeys(i.split(":")[0] for i in chosen.protocol_issues))
        header.insert(
            2,
            f"# That figure does not meet the timing protocol ({kinds or 'see the table'}): "
            "time it again on a quiet machine before trusting the pick.",
        )
    if teacher_checkpoint is None:
        header.append("# The teacher uses timm's hub weights; set teacher.checkpoint for your own.")
    text = "\n".join(header) + "\n" + recipe_text(raw)
    try:  # what `distill run` will read must validate, before anything is on disk
        Recipe.model_validate(parse_yaml(text))
    except ValidationError as exc:
        raise format_validation_error(exc, f"the recipe for {path}") from exc
    if not ask.force:
        refuse_existing(path, "--force")
    atomic_write(path, text)  # never through a symlink, never half a file
    return path
