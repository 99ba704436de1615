"""TEACHER given as the file a user has: `distill students runs/teacher --max-latency-ms 5`.

A team asking which student to distill into holds its teacher as weights (a run of `distill
train`, a checkpoint with its side file, a Hugging Face folder, timm's train.py output), not
always as a timm name; `runs/t/checkpoints/best.safetensors` was "unknown timm model". The
file names its model (`models.checkpoint.read_sidecar`, or timm's `arch` entry), which is the
TEACHER the search needs; its class count sizes the students' heads, and a recipe written with
`--write-recipe` loads the teacher from that same file (as `--teacher-checkpoint` would).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from distill_cli.errors import DistillError
from distill_cli.file_kinds import TEXT, WEIGHTS, kind_of
from distill_cli.students.types import StudentQuery


@dataclass(frozen=True)
class TeacherFile:
    """The model a teacher file holds, and the file itself."""

    model: str
    checkpoint: Path
    num_classes: int | None


def teacher_file(teacher: str, flag: str = "TEACHER") -> TeacherFile | None:
    """What `flag` (TEACHER, `distill models --teacher`) names when it is a file or folder (None
    for a timm name)."""
    from distill_cli.models.names import check_model_name

    if teacher.startswith(("hf-hub:", "timm/")):
        check_model_name(teacher, flag)  # a Hub id: says the timm name to write instead
    path = Path(teacher).expanduser()
    if not path.exists():
        from distill_cli.models.names import CHECKPOINT_SUFFIXES

        if "/" in teacher or "\\" in teacher or path.suffix.lower() in CHECKPOINT_SUFFIXES:
            raise DistillError(
                "no such file or folder",
                f"{flag} ({teacher})",
                "a timm name, a teacher checkpoint, or the run folder that trained it",
            )
        return None
    what = kind_of(path) if path.is_file() else None  # by its first bytes, not its suffix
    if what is not None and what not in WEIGHTS:
        recipe = what == TEXT and path.suffix.lower() in (".yaml", ".yml", ".json")
        raise DistillError(
            f"{'a recipe' if recipe else what}, not the teacher's weights",
            f"{flag} ({teacher})",
            "pass the teacher's timm name, its checkpoint, or the run folder that trained it",
        )
    from distill_cli.models.checkpoint import named_model, read_sidecar

    model = named_model(path)  # a run folder's best, a Hub folder's config.json, a side file
    if model is None:
        raise DistillError(
            "the file does not say which timm model it holds (no side file, no `arch` entry)",
            f"{flag} ({teacher})",
            f"pass the timm name as {flag} and the file as --teacher-checkpoint {teacher}"
            if flag == "TEACHER"
            else f"pass the timm name it was built from as {flag}",
        )
    check_model_name(model, f"{flag} ({teacher})")
    return TeacherFile(model, path, read_sidecar(path).classes)


def teacher_name(teacher: str, flag: str) -> str:
    """The timm name `flag` means: itself, or the model of the file it names."""
    found = teacher_file(teacher, flag)
    return found.model if found is not None else teacher


def with_teacher_file(
    query: StudentQuery, checkpoint: str | Path | None, write_recipe: str | Path | None
) -> tuple[StudentQuery, str | Path | None]:
    """The query with TEACHER as a timm name, when it was given as a file (its model; its class
    count unless `num_classes` is set), and the written recipe's teacher checkpoint: that file."""
    found = teacher_file(query.teacher)
    if found is None:
        return query, checkpoint
    if checkpoint is not None:
        raise DistillError(
            "TEACHER is a file already; --teacher-checkpoint would name a second one",
            "--teacher-checkpoint",
            f"drop it, or pass the timm name {found.model} as TEACHER",
        )
    query = replace(query, teacher=found.model, num_classes=query.num_classes or found.num_classes)
    return query, found.checkpoint if write_recipe is not None else None
