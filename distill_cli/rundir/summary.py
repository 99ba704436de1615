"""`summary.json`, typed: what a finished run reports, in one place.

The engine builds a `RunSummary` at the end of a run, `RunDir` writes it, and everything that
reads a run's result (the API, the console, reports, tracking) reads this type rather than a
dict with string keys. `to_dict()` is the file's exact content, key order included, so the
file format is defined here and nowhere else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from distill_cli.host import absolute
from distill_cli.typecheck import field_problem


@dataclass(frozen=True)
class WeightsSource:
    """A weights file a teacher was loaded from: the file (resolved: a Hub folder's weights
    file), the entry of its checkpoint dict (`state_dict_ema`; None for a plain state dict),
    its size and SHA-256. Two checkpoints saved under one name (`best.pth` overwritten by a
    later training) differ here, so a result names the weights that taught it."""

    path: str
    entry: str | None
    bytes: int
    sha256: str

    def line(self) -> str:
        """One line for a terminal: `best.pth [state_dict_ema], 44.7 MB, sha256 3f2a...`."""
        entry = f" [{self.entry}]" if self.entry else ""
        return f"{self.path}{entry}, {self.bytes / 1e6:,.1f} MB, sha256 {self.sha256[:12]}"


@dataclass(frozen=True)
class ModelResult:
    """One model of a run: the student, or the (possibly ensembled) teacher.

    `weights` is the entry of the teacher's checkpoint dict its weights were loaded from, with
    the others it holds (`state_dict (also state_dict_ema)`): a checkpoint of timm's train.py
    holds two sets, and which one taught the student is a fact of the result. None for a plain
    state dict, hub weights or a student. `files`: the weights files the teacher was loaded
    from (one per ensemble member with a checkpoint), each with its size and SHA-256.
    """

    model: str
    params: int
    top1: float | None = None
    top5: float | None = None
    weights: str | None = None
    files: list[WeightsSource] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelResult:
        files = [WeightsSource(**f) for f in data.get("files") or []]
        return cls(**{**data, "files": files})


@dataclass(frozen=True)
class TestResult:
    """The test split of a run with `data.holdout`, evaluated once training has ended.

    `top1`/`top5` are the final weights (what the function-matching paper reports), `best_top1`
    the weights of the `best` checkpoint, which was chosen on the holdout; the teacher's and
    the agreement are on the same images. Nothing in the run looked at these numbers before.
    `images` is how many images the numbers are on: the split's files less the `bad_images`
    that could not be decoded (data.on_bad_image=skip), which are left out, not replaced.
    """

    images: int
    top1: float | None = None
    top5: float | None = None
    best_top1: float | None = None
    teacher_top1: float | None = None
    agreement_top1: float | None = None
    bad_images: int = 0


@dataclass(frozen=True)
class RunSummary:
    """What `api.run` / `api.train` produced; mirrors `runs/<name>/summary.json`.

    Undecodable files (data.on_bad_image=skip), each counted once, per split: `bad_images` of
    the training split (replaced by good ones while training), `val_bad_images` of the split
    evaluated during training (the holdout with data.holdout), left out of its numbers, which
    are on `val_images` images; the test split's are in `test`.
    """

    name: str
    run_dir: Path
    method: str
    student: ModelResult
    teacher: ModelResult | None
    agreement_top1: float | None
    kl: float | None
    best_epoch: float | None
    best_score: float | None
    epochs: float
    steps: int
    images_per_s: float | None
    wall_time_s: float
    device: str
    precision: str
    processes: int = 1
    peak_gpu_memory_gib: float | None = None
    bad_images: int = 0
    skipped_steps: int = 0
    val_images: int | None = None
    val_bad_images: int = 0
    test: TestResult | None = None  # data.holdout: the test split; else the student is on val
    #: training classes none of whose images could be decoded: never seen in training
    lost_classes: list[str] = field(default_factory=list)
    #: the same image in train and an evaluated split, or in two classes (data.on_duplicates)
    duplicates: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, summary: dict[str, Any]) -> RunSummary:
        """From `summary.json`'s content (also files written by older versions)."""
        if not isinstance(summary, dict):
            raise TypeError("summary.json is not a JSON object")
        teacher = summary.get("teacher")
        data = summary.get("data") or {}
        best = summary.get("best") or {}
        result = cls(
            name=summary["name"],
            run_dir=Path(summary["run_dir"]),
            method=summary["method"],
            student=ModelResult(**summary["student"]),
            teacher=ModelResult.from_dict(teacher) if teacher else None,
            agreement_top1=(summary.get("agreement") or {}).get("top1"),
            kl=summary.get("kl"),
            best_epoch=best.get("epoch"),
            best_score=best.get("score"),
            epochs=summary["epochs"],
            steps=summary["steps"],
            images_per_s=summary.get("images_per_s"),
            wall_time_s=summary["wall_time_s"],
            device=summary["device"],
            precision=summary["precision"],
            processes=summary.get("processes", 1),
            peak_gpu_memory_gib=summary.get("peak_gpu_memory_gib"),
            bad_images=data.get("bad_images", 0),
            skipped_steps=data.get("skipped_steps", 0),
            val_images=data.get("val_images"),
            val_bad_images=data.get("val_bad_images", 0),
            lost_classes=data.get("lost_classes", []),
            duplicates=data.get("duplicates", []),
            test=TestResult(**summary["test"]) if summary.get("test") else None,
        )
        problem = field_problem(result)  # a hand-edited file: wrong types are refused here
        if problem is not None:
            raise TypeError(f"summary.json has a wrong value ({problem})")
        return result

    @classmethod
    def load(cls, run_dir: str | Path) -> RunSummary:
        """The result of a finished run, read back from its folder."""
        from distill_cli.rundir.layout import RunDir

        return RunDir(Path(run_dir)).read_summary()

    def to_dict(self) -> dict[str, Any]:
        """`summary.json`'s content."""
        s, t = self.student, self.teacher
        return {
            "name": self.name,
            "run_dir": absolute(self.run_dir),  # as written; a reader takes where it read it
            "method": self.method,
            "student": {"model": s.model, "params": s.params, "top1": s.top1, "top5": s.top5},
            "teacher": None
            if t is None
            else {
                "model": t.model,
                "params": t.params,
                "top1": t.top1,
                **({"weights": t.weights} if t.weights else {}),
                **({"files": [asdict(f) for f in t.files]} if t.files else {}),
            },
            "agreement": {"top1": self.agreement_top1},
            "kl": self.kl,
            "best": {"epoch": self.best_epoch, "score": self.best_score},
            "epochs": self.epochs,
            "steps": self.steps,
            "images_per_s": self.images_per_s,
            "wall_time_s": self.wall_time_s,
            "device": self.device,
            "processes": self.processes,
            "peak_gpu_memory_gib": self.peak_gpu_memory_gib,
            "precision": self.precision,
            "data": {
                "bad_images": self.bad_images,
                "skipped_steps": self.skipped_steps,
                "val_images": self.val_images,
                "val_bad_images": self.val_bad_images,
                "lost_classes": self.lost_classes,
                "duplicates": self.duplicates,
            },
            "test": None if self.test is None else asdict(self.test),
        }
