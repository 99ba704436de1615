"""The architecture sweep's results (benchmarks/arch_sweep.py): its typed rows, the JSON + markdown
table they are written as, the --update merge of a rerun into an earlier table, and where a
sweep writes (a partial sweep never replaces the published table).

A module of arch_sweep.py and arch_sweep_methods.py; run those (`--help` says how)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The published tables; a sweep of other models, sizes or stages goes to SCRATCH by default.
RESULTS = ROOT / "benchmarks" / "results"
SCRATCH = ROOT / "runs" / "arch_sweep"
#: The stages in table order (arch_sweep.py runs them in this order).
STAGES = ("student", "export", "report", "teacher", "students", "gray", "gray_export")


@dataclass
class StageResult:
    status: str  # pass | error | CRASH | skip
    seconds: float = 0.0
    rc: int | None = None
    message: str = ""


#: An input size: one side, or (H, W) (`arch_sweep.py --size 64x96`).
Size = int | tuple[int, int]


def parse_size(text: str) -> Size:
    """`--size`: a side (`80`) or HxW (`64x96`, a non-square input, as a recipe's
    `input_size: [64, 96]`); anything else is argparse's one-line usage error."""
    parts = text.lower().split("x")
    try:
        if len(parts) > 2:
            raise ValueError(text)
        sides = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give a side (80) or HxW (64x96), not {text!r}") from None
    return sides[0] if len(sides) == 1 else (sides[0], sides[1])


def px(size: Size) -> str:
    """The table's px cell: `80`, or `64x96` for a non-square size."""
    return str(size) if isinstance(size, int) else "x".join(map(str, size))


@dataclass
class ArchResult:
    name: str
    family: str
    size: Size
    stages: dict[str, StageResult] = field(default_factory=dict)
    parity_max_abs: float | None = None


def load_results(path: Path) -> list[ArchResult]:
    """The rows of an earlier sweep (for --update)."""
    if not path.is_file():
        return []
    rows = json.loads(path.read_text())["results"]
    return [
        ArchResult(
            r["name"],
            r["family"],
            r["size"] if isinstance(r["size"], int) else tuple(r["size"]),  # JSON's list
            {k: StageResult(**v) for k, v in r["stages"].items()},
            r.get("parity_max_abs"),
        )
        for r in rows
    ]


def merge(earlier: list[ArchResult], fresh: list[ArchResult]) -> list[ArchResult]:
    """The earlier rows in their order, with the stages run again replaced; new models last.
    A model rerun at another size (`--size`) replaces its whole row: a row has one `px`, and
    the earlier cells were measured at the old one."""
    by_name = {r.name: r for r in fresh}
    rows = []
    for old in earlier:
        new = by_name.pop(old.name, None)
        if new is None:
            rows.append(old)
            continue
        if new.size != old.size:
            rows.append(new)
            continue
        parity = new.parity_max_abs if "export" in new.stages else old.parity_max_abs
        rows.append(ArchResult(new.name, new.family, new.size, old.stages | new.stages, parity))
    return rows + [r for r in fresh if r.name in by_name]


# --- output -------------------------------------------------------------------------------------


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """The sweeps' `--timeout` and `--out` (whose default `results_folder` decides)."""
    from benchargs import place  # arch_sweep.py put benchmarks/ on the path

    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per command (300)")
    parser.add_argument(
        "--out",
        type=place,
        default=None,
        help="folder for the JSON + md (default: benchmarks/results for the whole default sweep "
        "or --update, else runs/arch_sweep)",
    )


def chosen_stages(
    parser: argparse.ArgumentParser,
    given: list[str],
    default: tuple[str, ...],
    known: tuple[str, ...],
) -> tuple[str, ...]:
    """`--stages` as a tuple (`default` when not given); an unknown stage is a usage error."""
    stages = tuple(given) or default
    unknown = set(stages) - set(known)
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}")
    return stages


def results_folder(out: Path | None, whole: bool, update: bool) -> Path:
    """Where a sweep writes its JSON + md: `--out` when given; else the published folder for
    the whole default sweep (what reproduces the committed table) or `--update` (a merge into
    it, asked for); any other sweep (other models, a size, some stages, --quick) goes to
    runs/arch_sweep, so it cannot replace the published table with a few rows."""
    if out is not None:
        return out
    if whole or update:
        return RESULTS
    print(f"a partial sweep: the table goes to {SCRATCH} (--out to choose, --update to merge)")
    return SCRATCH


def check_sweep(names: list[str], size: Size | None, timeout: float) -> None:
    """Before any work: every name is a timm model (a typo is not an architecture that
    failed), the size and timeout are usable. One error line, exit 2."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchargs import fail, one_line_errors
    from tuning import check_models

    if size is not None and min(size if isinstance(size, tuple) else (size,)) < 1:
        fail(f"input side {px(size)}", "--size", "give a side of at least 1 px (e.g. 64)")
    if not timeout > 0:
        fail(f"timeout {timeout:g} s", "--timeout", "give seconds above 0")
    one_line_errors(lambda: check_models(names, "--models"))


def write_results(
    results: list[ArchResult],
    stages: tuple[str, ...],
    out: Path,
    took: float,
    order: tuple[str, ...] = STAGES,
    stem: str = "arch_sweep_cpu",
    intro: str = "",
) -> None:
    """`<stem>.json` + `<stem>.md`; `order` is the table's stage order, `intro` its command."""
    out.mkdir(parents=True, exist_ok=True)
    stages = tuple(s for s in order if any(s in r.stages for r in results)) or stages
    meta = {
        "stages": list(stages),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    if took > 0:  # the latest invocation (an --update: its rows only); 0: table regenerated
        meta["last_run_seconds"] = round(took, 1)
        meta["last_command"] = shlex.join(["python", *sys.argv])
    try:
        import timm
        import torch

        meta |= {"timm": timm.__version__, "torch": torch.__version__}
    except ImportError:
        pass
    (out / f"{stem}.json").write_text(
        json.dumps({"meta": meta, "results": [asdict(r) for r in results]}, indent=1) + "\n"
    )
    lines = [
        "# Architecture sweep (CPU)",
        "",
        f"{intro or '`python benchmarks/arch_sweep.py`'}, {len(results)} architectures, "
        f"timm {meta.get('timm')}, torch {meta.get('torch')}, {meta['cpus']} CPUs, each "
        "command in its own process. A blank cell: the stage was not run for that model. "
        "`pass`: exit 0; `error`: a one-line `error:` refusal (exit 1/2); `CRASH`: a traceback, "
        "another exit code or a timeout; `skip`: the stage it needs did not pass. `parity`: max "
        "|ONNX - PyTorch| logit difference of the export; an export that passed held the parity "
        "gate, whose bound is relative (atol + rtol*|logit|: random-init MobileOne and "
        "Inception-v3 have logits of 1e9 and more).",
        "",
        "| model | family | px | " + " | ".join(stages) + " | parity |",
        "|---|---|---|" + "---|" * len(stages) + "---|",
    ]
    notes: list[str] = []
    for r in results:
        cells = []
        for key in stages:
            s = r.stages.get(key)
            cells.append("" if s is None else s.status)
            if s is not None and s.status in ("error", "CRASH"):
                notes.append(f"- `{r.name}` {key}: {s.message}")
        parity = "" if r.parity_max_abs is None else f"{r.parity_max_abs:.1e}"
        lines.append(
            f"| {r.name} | {r.family} | {px(r.size)} | " + " | ".join(cells) + f" | {parity} |"
        )
    if notes:
        lines += ["", "## Messages", "", *notes]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
