"""`distill report` and `distill compare`: pages and plots whose numbers are the run's numbers."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest

from distill_cli import api
from distill_cli.errors import DistillError
from distill_cli.reports import plots
from distill_cli.reports.compare import RESULT_COLUMNS, compare_runs, differing_keys
from distill_cli.reports.history import load_run
from distill_cli.rundir.summary import RunSummary
from tests.conftest import CLI, fm_body, write_recipe

PNG = b"\x89PNG\r\n\x1a\n"
FAST_EXPORT = {"warmup": 2, "runs": 5, "min_time_s": 0, "batch": 4, "threads": 1}


def _line(fig, gid: str):  # type: ignore[no-untyped-def]
    (line,) = [ln for ax in fig.axes for ln in ax.lines if ln.get_gid() == gid]
    return [float(v) for v in line.get_xdata()], [float(v) for v in line.get_ydata()]


def _records(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunSummary, RunSummary]:
    """Two tiny function-matching runs that differ only in `method.views` (and their names)."""
    folder = tmp_path_factory.mktemp("reports")
    body = fm_body(folder / "runs", None, epochs=3)
    consistent = api.run(write_recipe(folder, "consistent", body))
    body["method"]["views"] = "independent"
    independent = api.run(write_recipe(folder, "independent", body))
    return consistent, independent


def test_report_pages_and_figures_show_the_runs_numbers(
    two_runs: tuple[RunSummary, RunSummary],
) -> None:
    result, _ = two_runs
    report = api.report(result.run_dir)
    run = result.run_dir
    assert report.html == run / "report.html" and report.markdown == run / "report.md"
    names = sorted(p.name for p in report.images)
    # no export: no latency; the final evaluation per class (eval.json): confusion matrices
    assert names == ["report_accuracy.png", "report_confusion.png", "report_training.png"]
    for image in report.images:
        assert image.read_bytes().startswith(PNG)

    # the plotted curves are metrics.jsonl, and their last point is the summary's figure
    history = load_run(run)
    evals = _records(run, "eval")
    accuracy = plots.accuracy_figure(history)
    x, top1 = _line(accuracy, "student_top1")
    assert x == [1.0, 2.0, 3.0] and top1 == [r["top1"] for r in evals]
    assert top1[-1] == pytest.approx(result.student.top1)
    _, agreement = _line(accuracy, "agreement_top1")
    assert agreement[-1] == pytest.approx(result.agreement_top1)
    assert result.teacher is not None
    teacher_lines = [ln for ln in accuracy.axes[0].lines if "teacher" in str(ln.get_label())]
    assert teacher_lines[0].get_ydata()[0] == pytest.approx(result.teacher.top1)
    steps, losses = _line(plots.training_figure(history), "loss")
    train = _records(run, "train")
    assert steps == [r["step"] for r in train] and losses == [r["loss"] for r in train]
    assert report.student_top1 == pytest.approx(result.student.top1)

    # the HTML stands alone: every figure embedded, decodable, nothing fetched from elsewhere
    page = report.html.read_text()
    embedded = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(embedded) == 3 and all(base64.b64decode(e).startswith(PNG) for e in embedded)
    assert "http" not in re.sub(r"<pre>.*?</pre>", "", page, flags=re.S)
    assert f"{result.student.top1:.2f}%" in page and f"{result.teacher.top1:.2f}%" in page
    markdown = report.markdown.read_text()
    assert "![student top-1 and agreement per epoch](report_accuracy.png)" in markdown
    assert f"| student | test_efficientnet | {result.student.params / 1e6:.2f} M |" in markdown
    assert "views: consistent" in markdown  # the resolved recipe


def test_report_shows_the_export_latency_and_parity(
    two_runs: tuple[RunSummary, RunSummary], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(two_runs[0].run_dir, run)
    exported = api.export(run, exporter="torchscript", simplify=False, **FAST_EXPORT)
    report = api.report(run)
    assert [p.name for p in report.images][-1] == "report_latency.png"
    figure = plots.latency_figure(load_run(run).export or {})
    assert figure is not None
    bars = sorted(round(p.get_width(), 9) for p in figure.axes[0].patches)
    assert bars == sorted(round(e.p50_ms, 9) for e in exported.latency.entries)
    assert {e.model for e in exported.latency.entries} == {"student", "teacher"}
    markdown = report.markdown.read_text()
    assert "## Export" in markdown and "student/onnxruntime/fp32" in markdown
    assert f"{exported.latency_of('student/onnxruntime/fp32').p50_ms:.3f}" in markdown


def test_a_stopped_run_still_gets_a_report(
    two_runs: tuple[RunSummary, RunSummary], tmp_path: Path, cli: CLI
) -> None:
    run = tmp_path / "stopped"
    shutil.copytree(two_runs[0].run_dir, run)
    (run / "summary.json").unlink()
    (run / "eval.json").unlink()  # written with the summary, at the end
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(lines[:-2]) + '\n{"kind": "tr')  # torn line
    result = cli("report", str(run), "--json")  # the CLI, as a CI step would call it
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["html"] == str(run / "report.html") and len(report["images"]) == 2
    markdown = (run / "report.md").read_text()
    assert "not finished" in markdown and "line" in " ".join(report["notes"])
    assert report["student_top1"] == load_run(run).kind("eval")[-1]["top1"]


def test_garbled_bytes_in_a_run_folder_are_notes_not_crashes(
    two_runs: tuple[RunSummary, RunSummary], tmp_path: Path, cli: CLI
) -> None:
    """A disk that filled up or a copy gone wrong leaves bytes that are not UTF-8: the report
    still renders what it can read and says what it left out."""
    from distill_cli.export.report import ExportReport

    run = tmp_path / "garbled"
    shutil.copytree(two_runs[0].run_dir, run)
    lines = (run / "metrics.jsonl").read_bytes().splitlines()
    (run / "metrics.jsonl").write_bytes(
        b"\n".join([*lines[:-1], b"\xff\xfe\x00garbage", lines[-1]])
    )
    (run / "summary.json").write_bytes(b'{"name": "caf\xe9"}')  # Latin-1, not UTF-8
    result = cli("report", str(run), "--json")
    assert result.returncode == 0, result.stderr
    notes = " ".join(json.loads(result.stdout)["notes"])
    assert "not JSON" in notes and "summary.json is not UTF-8" in notes
    with pytest.raises(DistillError, match=r"summary\.json is unreadable"):
        RunSummary.load(run)
    (run / "report.json").write_bytes(b"\x89PNG")
    with pytest.raises(DistillError, match="export report is unreadable"):
        ExportReport.read(run / "report.json")


def test_report_of_a_folder_that_is_not_a_run(tmp_path: Path, cli: CLI) -> None:
    with pytest.raises(DistillError, match="not a run folder"):
        api.report(tmp_path)
    result = cli("report", str(tmp_path / "missing"))
    assert result.returncode == 2 and result.stderr.startswith("error: no such run folder")
    assert "Traceback" not in result.stderr


def test_compare_shows_exactly_the_differing_keys(
    two_runs: tuple[RunSummary, RunSummary], tmp_path: Path, cli: CLI
) -> None:
    consistent, independent = two_runs
    comparison = api.compare([consistent.run_dir, independent.run_dir], plot=tmp_path / "c.png")
    assert comparison.differing == ["method.views"]
    assert comparison.header[:2] == ["run", "method.views"]
    rows = comparison.rows()
    assert [r[:2] for r in rows] == [["consistent", "consistent"], ["independent", "independent"]]
    assert comparison.results[0]["final top-1"] == pytest.approx(consistent.student.top1)
    assert comparison.results[1]["agreement"] == pytest.approx(independent.agreement_top1)
    assert comparison.results[0]["best top-1"] >= comparison.results[0]["final top-1"]

    figure = plots.compare_figure(comparison.runs)
    for run in (consistent, independent):
        _, curve = _line(figure, run.name)
        assert curve[-1] == pytest.approx(run.student.top1)
    assert (tmp_path / "c.png").read_bytes().startswith(PNG)

    md = cli("compare", str(consistent.run_dir), str(independent.run_dir), "--md", "--no-plot")
    assert md.returncode == 0, md.stderr
    header = md.stdout.splitlines()[0]
    assert header.startswith("| run | method.views | final top-1 | best top-1 | agreement |")
    runs = (str(consistent.run_dir), str(independent.run_dir))
    csv = cli("compare", *runs, "--csv", "--no-plot")
    row = csv.stdout.splitlines()[1].split(",")
    assert row[:2] == ["consistent", "consistent"]
    assert float(row[2]) == pytest.approx(consistent.student.top1)
    table = cli("compare", str(consistent.run_dir), str(independent.run_dir), "--no-plot")
    assert "method.views" in table.stdout and "independent" in table.stdout


def test_differing_keys_count_a_missing_key_as_a_difference() -> None:
    a = {"name": "a", "optim": {"lr": 1, "name": "adamw"}, "method": {"mixup": True}}
    b = {"name": "b", "optim": {"lr": 2, "name": "adamw"}}
    assert differing_keys([a, b]) == ["optim.lr", "method.mixup"]
    assert differing_keys([a, a]) == []


def test_a_section_one_run_leaves_out_is_one_row_not_all_its_keys() -> None:
    # a supervised teacher run (teacher: null) beside its student: every teacher.* key was a
    # column ("null" against each value), burying what differs
    teacher = {"model": "test_resnet", "checkpoint": "t.pt", "strict": True, "in_chans": 3}
    supervised = {"name": "t", "teacher": None, "optim": {"lr": 1}}
    student = {"name": "s", "teacher": teacher, "optim": {"lr": 1}}
    assert differing_keys([supervised, student]) == ["teacher.model"]
    other = {"name": "o", "teacher": {**teacher, "checkpoint": "u.pt"}, "optim": {"lr": 2}}
    assert differing_keys([supervised, student, other]) == [
        "teacher.model",
        "teacher.checkpoint",
        "optim.lr",
    ]
    # an ensemble (a list) against one teacher: the list is a value of its own, not dropped
    ensemble = {"name": "e", "teacher": [teacher, teacher], "optim": {"lr": 1}}
    assert differing_keys([ensemble, student])[0] == "teacher"


def test_a_comparison_too_wide_for_the_terminal_is_turned() -> None:
    from rich.console import Console

    from distill_cli.cli.console import comparison_table
    from distill_cli.reports.compare import Comparison

    class Run:
        def __init__(self, name: str) -> None:
            self.name = name

    keys = [f"method.key_{i}" for i in range(12)]
    values = [{k: f"value-{i}-{k}" for k in keys} for i in range(2)]
    results = [dict.fromkeys(RESULT_COLUMNS) for _ in range(2)]
    comparison = Comparison([Run("a"), Run("b")], keys, values, results)  # type: ignore[list-item]
    wide = Console(width=1000, record=True)
    wide.print(comparison_table(comparison, 1000))
    cells = [c.strip() for c in wide.export_text().splitlines()[2].split("┃")]
    assert cells[1:4] == ["run", "method.key_0", "method.key_1"]
    narrow = Console(width=120, record=True)
    narrow.print(comparison_table(comparison, 120))
    lines = narrow.export_text().splitlines()
    assert [c.strip() for c in lines[2].split("┃")][1:4] == ["", "a", "b"]  # a column per run
    row = next(line for line in lines if "method.key_3" in line)
    assert "value-0-method.key_3" in row and "value-1-method.key_3" in row
    assert max(len(line) for line in lines) <= 120


def test_compare_needs_two_runs(two_runs: tuple[RunSummary, RunSummary]) -> None:
    with pytest.raises(DistillError, match="at least two runs"):
        compare_runs([two_runs[0].run_dir])
    # the same run twice (here once through a trailing slash) printed two identical rows
    run = two_runs[0].run_dir
    with pytest.raises(DistillError, match="the same run is given twice") as info:
        compare_runs([run, two_runs[1].run_dir, f"{run}/"])
    assert info.value.code == 2
    # a file of the run (its checkpoint) was "no such run folder": it names the run to pass
    best = Path(run) / "checkpoints" / "best.safetensors"
    with pytest.raises(DistillError, match=r"a file, not a run folder .* pass .*") as info:
        compare_runs([best, two_runs[1].run_dir])
    assert str(info.value).endswith(f"pass the run folder {run}")


def test_phase_lines_mark_changes_only_and_broken_numbers_do_not_crash(tmp_path: Path) -> None:
    from distill_cli.reports.history import RunHistory

    records = [
        {"kind": "phase", "step": 0, "epoch": 0, "teacher_cache": "built"},
        {"kind": "phase", "step": 0, "epoch": 0, "phase": "kd"},
        {"kind": "eval", "step": 4, "epoch": 1, "top1": 50.0},
        {"kind": "phase", "step": 4, "epoch": 1, "phase": "kd"},
        {"kind": "phase", "step": 8, "epoch": 2, "phase": "ce"},
        {"kind": "eval", "step": 8, "epoch": 2, "top1": 60.0},
    ]
    history = RunHistory(tmp_path, {"name": "x"}, records, None, None)
    lines = plots.accuracy_figure(history).axes[0].lines
    assert [ln.get_xdata()[0] for ln in lines if ln.get_linestyle() == ":"] == [2]
    assert history.epochs == 2
    export = {
        "latency": {
            "entries": [
                {"name": "student/onnxruntime/fp32", "model": "student", "variant": "fp32",
                 "runtime": "onnxruntime", "p50_ms": 1.0, "p90_ms": "inf"},
                {"name": "student/pytorch", "model": "student", "variant": "fp32",
                 "runtime": "pytorch", "p50_ms": "nan", "p90_ms": "nan"},
            ]
        },
        "parity": {"top1_agreement": "nan"},
    }  # fmt: skip
    figure = plots.latency_figure(export)
    assert figure is not None and [p.get_width() for p in figure.axes[0].patches] == [1.0]


def test_compare_prints_run_names_as_text_and_pipes_write_no_plot(
    two_runs: tuple[RunSummary, RunSummary], tmp_path: Path, cli: CLI
) -> None:
    odd = tmp_path / "abl[lr=1e-3]"
    shutil.copytree(two_runs[1].run_dir, odd)
    runs = (str(two_runs[0].run_dir), str(odd))
    table = cli("compare", *runs, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "abl[lr=1e-3]" in table.stdout and (tmp_path / "compare.png").is_file()
    (tmp_path / "compare.png").unlink()
    md = cli("compare", *runs, "--md", cwd=tmp_path)
    assert md.returncode == 0 and "abl[lr=1e-3]" in md.stdout
    assert not (tmp_path / "compare.png").exists()
    bad = cli("compare", *runs, "--plot", str(tmp_path / "no" / "such" / "dir.png"))
    assert bad.returncode == 2 and bad.stderr.startswith("error: cannot write the plot")


def test_class_names_the_font_lacks_draw_without_a_console_warning(tmp_path: Path) -> None:
    """A photo folder with Chinese class names: the figure is written, and matplotlib's
    "Glyph missing from font" warning (with its source line) does not reach the console."""
    import warnings

    from distill_cli.reports.plots import confusion_figure, save
    from distill_cli.rundir.class_eval import ClassEval, Confusion

    cm = Confusion(["狗", "猫"], [[3, 1], [0, 4]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = confusion_figure(ClassEval(1, "model", cm))
        assert fig is not None
        save(fig, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")


def test_what_is_not_a_run_folder_names_the_run_meant(tmp_path: Path) -> None:
    """`distill report`/`compare` said "pass runs/<name>" for a folder of runs, a run's
    subfolder and the recipe a run was made from; they now name the run, as `distill export`
    does (one owner: `rundir.find`)."""
    body = fm_body(tmp_path / "runs", None)
    body["data"]["synthetic"]["train_size"] = 32
    body["schedule"] = {"steps": 1, "batch_size": 16, "evals": 1}
    recipe = write_recipe(tmp_path, "teacher", body)
    run = api.run(recipe).run_dir
    cases = {
        run.parent: f"pass one of the runs in it: {run}",
        run / "checkpoints": f"pass the run folder {run}",
        run / "summary.json": f"pass the run folder {run}",
        run.parent / "nope": "pass runs/<name> from `distill run`",
    }
    for given, hint in cases.items():
        with pytest.raises(DistillError) as info:
            load_run(given)
        assert info.value.hint == hint, given
    with pytest.raises(DistillError) as info:
        load_run(recipe)
    assert info.value.hint == f"that is a recipe; pass the run folder it made: {run}"
    with pytest.raises(DistillError, match="a recipe, not a run or weights") as info:
        api.export(recipe, out=run.parent / "x")
    assert info.value.hint.endswith(str(run))
