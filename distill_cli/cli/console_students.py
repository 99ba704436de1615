"""Terminal tables for `distill students` (the ranked candidates within a latency budget) and
`distill models` (the timm models matching a pattern), with their number formats (rich).

Rendering only: every figure comes from the search result the API returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from distill_cli.students.model_search import ModelSearch


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_params(n: int | None) -> str:
    """Human units so a column of 8-digit counts can be compared at a glance."""
    if n is None:
        return "?"
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return str(n)


def _gflops(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3g}"


def students_table(search: Any) -> Table:
    """`distill students`: fits ranked (up to --top), then over budget and failures with reasons.

    Skipped and unmeasured candidates are counted in the caption; `--json` lists every one."""
    q = search.query
    title = Text(f"students of {q.teacher}")
    if search.teacher_params:
        title.append(f" ({format_params(search.teacher_params)} params)")
    title.append(
        f" within {q.max_latency_ms:g} ms {q.latency_stat} at batch {q.batch}, "
        f"{q.input_size} px, {q.precision}, {q.device}, {search.environment.get('threads')} threads"
    )
    table = Table(title=title)
    for name, justify in (
        ("#", "right"),
        ("model", "left"),
        ("params", "right"),
        ("GFLOPs", "right"),
        ("p50 ms", "right"),
        ("p90 ms", "right"),
        ("headroom", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    accuracy = any(e.top1 is not None for e in search.entries)
    if accuracy:
        table.add_column("top-1", justify="right")
    table.add_column("note", overflow="fold", max_width=60)
    fits = [e for e in search.entries if e.status == "fits"]
    shown = fits[: q.top] if q.top else fits
    rest = [e for e in search.entries if e.status in ("over", "failed")]
    for e in shown + rest:
        style = {"fits": "green", "over": "yellow", "failed": "red"}[e.status]
        headroom = "-"
        if e.headroom_ms is not None:
            pct = 100.0 * e.headroom_ms / q.max_latency_ms
            headroom = f"{e.headroom_ms:+.2f} ms ({pct:+.0f}%)"
        note = [e.reason or ("failed" if e.status == "failed" else "")]
        if e.cached:
            note.append("cached")
        row = [
            str(e.rank) if e.rank else "",
            Text(e.name, style=f"bold {style}"),
            format_params(e.params),
            _gflops(e.gflops),
            _ms(e.p50_ms),
            _ms(e.p90_ms),
            Text(headroom, style=style),
        ]
        if accuracy:
            row.append(f"{e.top1:.1f}" if e.top1 is not None else "-")
        row.append(Text("; ".join(n for n in note if n)))
        table.add_row(*row)
    counts = {s: sum(e.status == s for e in search.entries) for s in ("skipped", "unmeasured")}
    lines = [
        f"{len(fits)} fit{'' if len(fits) == 1 else 's'}"
        + (f" (top {len(shown)} shown)" if len(shown) < len(fits) else "")
        + f"; {search.measured} timed now, {search.from_cache} from the cache, "
        f"in {search.seconds:.1f} s ({search.prepare_seconds:.1f} s preparing the candidates) "
        f"on {search.environment.get('cpu')}",
        f"not timed: {len(search.duplicates)} near-duplicates, {counts['skipped']} predicted "
        f"over budget, {counts['unmeasured']} not measured (--json lists them)",
        "answer: final (every candidate timed or ruled out)"
        if search.complete
        else f"answer: provisional, {search.untimed} candidates untimed ({search.stopped}); "
        "--measure-all times every one",
        f"ranking: {search.ranking}",
        (
            "same gate after training: "
            if search.query.export_gate_checks_it
            else "the export's gate after training (batch 1, CPU: not this budget): "
        )
        + search.export_command(),
    ]
    lines += [f"note: {n}" for n in search.notes]
    if search.recipe_path is not None:
        lines.append(f"recipe: {search.recipe_path}")
    table.caption = Text("\n".join(lines))
    return table


def _input_side(size: tuple[int, int] | None) -> str:
    """A model's input as HxW, "?" when timm does not say."""
    return f"{size[0]}x{size[1]}" if size else "?"


def models_table(search: ModelSearch) -> Table:
    """One row a model; the teacher comparison columns appear only when there is a teacher."""
    title = Text(f"timm models matching {search.pattern!r}")
    t = search.teacher
    if t is not None:
        side = _input_side(t.input_size)
        title.append(f"\nteacher {t.name}: {format_params(t.params)} params, {side}")
        title.append(f"; students have <= {search.max_ratio:g}x its params")
    caption = None
    if search.truncated:
        caption = Text(
            f"showing {len(search.entries)} of {search.total_matches} matches; --limit 0 for all"
        )
    table = Table(title=title, caption=caption)
    table.add_column("model", style="bold")
    table.add_column("params", justify="right")
    table.add_column("input", justify="right")
    if search.flops:
        table.add_column("GFLOPs", justify="right")
    table.add_column("pretrained", justify="center")
    if t is not None:
        table.add_column("x smaller", justify="right")
        table.add_column("student?", justify="center")
    marks = {None: Text("?", style="dim"), True: Text("✓", "green"), False: Text("✗", "red")}
    for e in search.entries:
        row: list[str | Text] = [Text(e.name), format_params(e.params), _input_side(e.input_size)]
        if search.flops:
            row.append(f"{e.gflops:.2f}" if e.gflops is not None else "?")
        row.append("✓" if e.pretrained else "")
        if t is not None:
            row.append(f"{e.ratio:.1f}" if e.ratio is not None else "?")
            row.append(marks[e.student])
        table.add_row(*row)
    return table
