"""The patience benchmark's rows: which runs it trains, with which overrides and settings.

`patience.py` runs them and writes their results (`Progress`: the JSON kept as rows finish,
so a cut run leaves them). Kept apart from the runner, they are one table: the methods
compared, their overrides, the lr/wd grid, which method's pick each row takes, and each row's
run name (method, length, setting, variant), by which a rerun in the same folder finds a
finished run again; with the keys a `--set` may not give (`owned`)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from patience_report import FM_LABEL
from tuning import LAUNCHED, Setting, best_on_holdout, same_run, setting_suffix, tagged

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "patience"
TEACHER_RECIPE = RECIPES / "teacher.yaml"
FM_RECIPE = RECIPES / "function_matching.yaml"

SCRATCH = "student from scratch (subset labels)"
KD = "classic KD (T=4, alpha=0.5)"
ESKD = "early-stopped KD (KD for the first 75%)"
#: The comparison rows at `--compare-at` epochs: label -> overrides of the FM recipe.
#: Settings not named here (student, crops, batch, subset) are the FM recipe's; lr and wd are
#: each tuned method's pick (TUNED), or the pick of the method an ablation changes (SHARES).
COMPARISONS: dict[str, list[str]] = {
    SCRATCH: ["teacher=null", "method={name: supervised, label_smoothing: 0.1}"],
    KD: [
        "method={name: kd, temperature: 4.0, alpha: 0.5, mixup: false}",
    ],
    ESKD: [
        "method={name: eskd, temperature: 4.0, alpha: 0.5, kd_stop_epoch: STOP}",
    ],
    "FM ablation: fixed teacher": [
        "method.teacher_targets=fixed",
        "method.mixup=false",
    ],
    "FM ablation: independent views": ["method.views=independent"],
    "FM ablation: consistent views, no mixup": ["method.mixup=false"],
}
#: What every distillation run sets after `--set` (refused there, with the option to use).
STUDENT_OWNED = {
    **LAUNCHED,
    "data.subset": "--subset",
    "data.holdout": "--holdout",
    "student.model": "--student",
    "teacher.model": "--teacher",
    "teacher.checkpoint": "--teacher and --teacher-set (the benchmark trains its teacher)",
    "schedule.epochs": "--lengths, --compare-at or --tune-at",
}
#: With tuning, the grid's lr and wd come after `--set` too (`--tune-at 0` leaves them free).
GRID_OWNED = {
    "optim.lr": "--tune-at 0 (then every row runs the recipe's lr and wd, which --set may change)",
    "optim.weight_decay": "--tune-at 0 (then every row runs the recipe's lr and wd)",
}
#: What the teacher's run sets after `--teacher-set`.
TEACHER_OWNED = {**LAUNCHED, "data.holdout": "--holdout", "model.model": "--teacher"}


def owned(tuned: bool) -> dict[str, str]:
    """The keys a `--set` may not give (key -> the option to use): the grid's lr and wd only
    while the grid sets them (`tuned`)."""
    return {**STUDENT_OWNED, **(GRID_OWNED if tuned else {})}


#: The methods given the same tuning budget (every GRID setting at `--tune-at` epochs).
TUNED = (FM_LABEL, SCRATCH, KD)
#: Rows that change one thing of a tuned method run with that method's pick, as in the paper.
SHARES = {
    ESKD: KD,
    "FM ablation: fixed teacher": FM_LABEL,
    "FM ablation: independent views": FM_LABEL,
    "FM ablation: consistent views, no mixup": FM_LABEL,
}
#: (lr, wd) with weight decay counted as the paper does (x schedule): its Pets/Flowers grid.
GRID = ((1e-2, 1e-3), (1e-2, 1e-4), (3e-3, 1e-3), (3e-3, 1e-4))


@dataclass
class RunRow:
    """One finished (or failed) run of the benchmark."""

    label: str
    epochs: int
    run: str
    overrides: list[str]
    lr: float | None = None  # None: the recipe's
    wd: float | None = None
    role: str = "ladder"  # or "tune" (the grid at --tune-at epochs)
    top1: float | None = None  # the test set, final weights
    best_top1: float | None = None  # the test set, the best-on-holdout checkpoint
    best_epoch: float | None = None  # chosen on the holdout
    holdout_top1: float | None = None  # the holdout, final weights
    agreement: float | None = None
    kl: float | None = None
    wall_s: float | None = None
    images_per_s: float | None = None
    curve: list[tuple[float, float]] = field(default_factory=list)
    error: str | None = None


def _slug(label: str) -> str:
    return label.split(":")[-1].split("(")[0].strip().replace(" ", "-").replace(",", "")


def _with(row: RunRow, cfg: Setting | None, tag: str) -> RunRow:
    """The row with a setting of the grid (lr, wd), or the recipe's when `cfg` is None; a
    variant's runs (`tag`) are named apart from the default's."""
    if cfg is not None:
        row.lr, row.wd = cfg
        row.overrides = [*row.overrides, f"optim.lr={cfg[0]}", f"optim.weight_decay={cfg[1]}"]
        row.run += setting_suffix(cfg)
    row.run = tagged(row.run, tag)
    return row


def tune_rows(tune_at: int, grid: tuple[Setting, ...], tag: str = "") -> list[RunRow]:
    """Every tuned method with every grid setting at `tune_at` epochs."""
    rows = []
    for label in TUNED:
        sets = COMPARISONS.get(label, [])
        for cfg in grid:
            row = RunRow(label, tune_at, f"patience-tune-{_slug(label)}-{tune_at}", list(sets))
            row.role = "tune"
            rows.append(_with(row, cfg, tag))
    return rows


def pick(rows: list[RunRow]) -> dict[str, Setting]:
    """Per tuned method, the setting with the best final holdout top-1 (never the test set)."""
    picks = {label: best_on_holdout([r for r in rows if r.label == label]) for label in TUNED}
    return {label: cfg for label, cfg in picks.items() if cfg is not None}


def ladder_rows(
    lengths: list[int], compare_at: int, picks: dict[str, Setting], tag: str = ""
) -> list[RunRow]:
    """FM at every length, the comparisons at `compare_at`, each with its (or its parent's) pick."""
    rows = [
        _with(RunRow(FM_LABEL, n, f"patience-fm-{n}", []), picks.get(FM_LABEL), tag)
        for n in lengths
    ]
    for label, overrides in COMPARISONS.items():
        sets = [o.replace("STOP", str(max(1, compare_at * 3 // 4))) for o in overrides]
        row = RunRow(label, compare_at, f"patience-{_slug(label)}-{compare_at}", sets)
        rows.append(_with(row, picks.get(SHARES.get(label, label)), tag))
    # longest first: the slowest runs start early, so the pool ends together
    return sorted(rows, key=lambda r: -r.epochs)


def finished(run: Path, items: list[str]) -> bool:
    """Whether `run` already finished with exactly these settings (`tuning.same_run`) after its
    teacher was trained: a rerun of a cut benchmark runs only the rows still missing, and a run
    of other settings (another subset, holdout, model or override) is never read as this one."""
    ckpt = next((i.split("=", 1)[1] for i in items if i.startswith("teacher.checkpoint=")), None)
    summary = run / "summary.json"
    teacher = Path(ckpt) if ckpt else None
    if teacher and teacher.is_file() and summary.is_file():
        return summary.stat().st_mtime >= teacher.stat().st_mtime and same_run(
            run, FM_RECIPE, items
        )  # a student of an older teacher is run again
    return same_run(run, FM_RECIPE, items)


def train_images(teacher: Path) -> int:
    """The images the teacher trained on, from its saved recipe: Fashion-MNIST's 60,000 less the
    holdout, then `data.train_limit` (the order `build_data` takes them in)."""
    from distill_cli.recipe.document import load_recipe

    data = load_recipe(teacher / "recipe.yaml").data
    left = 60000 - (data.holdout or 0)
    return min(left, data.train_limit) if data.train_limit else left


class Progress:
    """The results JSON kept up to date while the runs finish (`complete: false`): a session
    cut short leaves every finished row there, and a rerun in the same OUT reuses those runs
    and completes it."""

    def __init__(self, path: Path, result: dict, started: float) -> None:
        self.path, self.result, self.started = path, result, started
        self.lock = threading.Lock()

    def add(self, row: RunRow) -> None:
        with self.lock:
            self.result["tune" if row.role == "tune" else "rows"].append(asdict(row))
            self.result["wall_s"] = time.perf_counter() - self.started
            self.path.write_text(json.dumps(self.result, indent=2))
