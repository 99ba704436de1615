"""`distill students`: the budget filter, the ranking, the cache, failures, the written recipe.

Most tests replace the timing module (`students._bench`) with a table of made-up latencies, so
the logic is checked exactly and fast; `test_real_timing_*` exports and times real tiny timm
models through `distill export`'s code, and the recipe test dry-runs what it wrote.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from distill_cli import api
from distill_cli.cli.entry import entry
from distill_cli.errors import EXIT_NOT_MEASURED, DistillError, RunFailed
from distill_cli.export.protocol import TimingPlan
from distill_cli.students import candidates as pool
from distill_cli.students import search as students
from distill_cli.students.candidates import deduplicate
from distill_cli.students.rank import family_of, load_accuracy
from distill_cli.students.recipe import NoFit, fit_schedule
from distill_cli.students.types import Candidate, StudentQuery, Timing
from tests.conftest import refused

TEACHER = "test_maxvit"  # 1.1 M params: with max_ratio 1 every other test_* model is a student
SMALL = ("test_resnet", "test_efficientnet", "test_vit", "test_byobnet", "test_convnext")


@pytest.fixture(scope="session")
def sizes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Model sizes (`distill models`' cache) are facts about timm: sized once per session."""
    return tmp_path_factory.mktemp("model-sizes")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, sizes_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DISTILL_CACHE_DIR", str(sizes_dir))
    folder = tmp_path / "cache"  # timings and candidate lists: fresh for every test
    monkeypatch.setattr(students, "cache_root", lambda q: q.cache_dir or folder)
    return folder


@dataclass
class FakeBench:
    """Stands in for student_bench: fixed latencies per model, and a log of what was timed."""

    p50: dict[str, float]
    fail: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, int]] = field(default_factory=list)

    def measure(self, name: str, q: StudentQuery, threads: int, probe: float | None) -> Timing:
        self.calls.append((name, threads))
        if name in self.fail:
            return Timing(name=name, ok=False, error=self.fail[name], threads=threads)
        ms = self.p50[name]
        return Timing(
            name=name,
            ok=True,
            params=1000,
            gflops=ms / 10,
            p50_ms=ms,
            p90_ms=ms * 1.1,
            runs=100,
            meets_protocol=True,
            threads=threads,
            exporter="dynamo",
        )


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeBench:
    bench = FakeBench(
        {
            "test_resnet": 1.0,
            "test_efficientnet": 2.0,
            "test_vit": 3.0,
            "test_byobnet": 4.0,
            "test_convnext": 6.0,
        }
    )
    monkeypatch.setattr(students, "_bench", lambda q: bench)
    return bench


def search(budget: float, **options: Any) -> Any:
    options.setdefault("candidates", SMALL)
    options.setdefault("max_ratio", 1.0)
    options.setdefault("input_size", 32)
    options.setdefault("threads", 1)
    options.setdefault("measure_all", True)  # skip rules have their own test
    return api.students(TEACHER, budget, **options)


def test_budget_filter_and_capacity_ranking(fake: FakeBench) -> None:
    result = search(3.5)
    fits = [e.name for e in result.fits]
    assert set(fits) == {"test_resnet", "test_efficientnet", "test_vit"}
    # capacity order: the fake's GFLOPs grow with its latency, so the slowest fit ranks first
    assert fits == ["test_vit", "test_efficientnet", "test_resnet"]
    assert [e.rank for e in result.fits] == [1, 2, 3]
    assert result.best is not None and result.best.name == "test_vit"
    assert result.best.headroom_ms == pytest.approx(0.5)
    over = [e for e in result.entries if e.status == "over"]
    assert [e.name for e in over] == ["test_byobnet", "test_convnext"]  # nearest to fitting first
    assert all(e.headroom_ms < 0 for e in over)
    assert result.entries[: len(fits)] == result.fits  # fits come first
    data = json.loads(json.dumps(result.to_dict()))
    assert data["best"] == "test_vit" and data["budget"]["stat"] == "p50"
    assert "--max-latency-ms 3.5" in data["export_command"]


def test_p90_budget_is_the_export_gate_statistic(fake: FakeBench) -> None:
    from distill_cli import api

    # p90 = 1.1 x p50 in the fake: 3.0 ms p50 fits 3.2 at p50 but not at p90 (3.3)
    typed = api.students(TEACHER, 3.2, candidates=SMALL, max_ratio=1.0, input_size=32)
    assert "test_vit" in [e.name for e in typed.fits]
    assert typed.export_command("runs/x").startswith("distill export runs/x --threads ")
    with pytest.raises(TypeError, match="unknown students options"):
        api.students(TEACHER, 3.2, treads=2)
    strict = search(3.2, latency_stat="p90")
    assert "test_vit" not in [e.name for e in strict.fits]
    assert "--latency-stat p90" in strict.export_command()


def test_cache_hit_then_invalidated_by_threads_and_versions(
    fake: FakeBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = search(3.5)
    assert first.measured == len(SMALL) and first.from_cache == 0
    assert len(fake.calls) == len(SMALL)
    again = search(3.5)
    assert again.measured == 0 and again.from_cache == len(SMALL)
    assert len(fake.calls) == len(SMALL)  # nothing timed again
    assert all(e.cached for e in again.entries if e.status in ("fits", "over"))
    assert [e.name for e in again.entries] == [e.name for e in first.entries]

    search(3.5, threads=2)  # another thread count is another measurement
    assert len(fake.calls) == 2 * len(SMALL)
    assert {t for _, t in fake.calls[len(SMALL) :]} == {2}

    real = students.package_versions
    monkeypatch.setattr(
        students, "package_versions", lambda: {**real(), "onnxruntime": "99.0-test"}
    )
    bumped = search(3.5)
    assert bumped.measured == len(SMALL)  # a new onnxruntime measures again
    assert len(fake.calls) == 3 * len(SMALL)


def test_failures_are_listed_with_their_reason(fake: FakeBench) -> None:
    fake.fail["test_vit"] = "ONNX export failed with both exporters: dynamo: boom"
    result = search(3.5)
    (failed,) = result.failed
    assert failed.name == "test_vit" and failed.status == "failed"
    assert "both exporters" in (failed.reason or "")
    assert result.entries[-1].name == "test_vit"  # listed, last, never dropped
    assert result.best is not None and result.best.name == "test_efficientnet"


def test_max_time_stops_cleanly_with_what_was_measured(
    fake: FakeBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter(range(0, 1000, 10))  # every look at the clock is 10 s later
    monkeypatch.setattr(students, "_clock", lambda: float(next(clock)))
    result = search(3.5, time_budget_s=25)
    assert result.stopped is not None and "--time-budget" in result.stopped
    unmeasured = [e for e in result.entries if e.status == "unmeasured"]
    assert unmeasured and len(fake.calls) == len(SMALL) - len(unmeasured)
    assert all("stopped" in (e.reason or "") for e in unmeasured)
    assert result.untimed == len(unmeasured) and not result.complete
    assert any(f"{len(unmeasured)} of {len(SMALL)} candidates untimed" in n for n in result.notes)


def test_skip_rules_and_limit(fake: FakeBench) -> None:
    cands = [
        Candidate("a_small", "a", 1000, 1.0),
        Candidate("a_big", "a", 2000, 2.0),
        Candidate("b_huge", "b", 9000, 9.0),
    ]
    over = [(cands[0], Timing(name="a_small", ok=True, p50_ms=5.0))]
    assert "family member" in (students._skip_reason(cands[1], over) or "")
    assert "4x+ the GFLOPs" in (students._skip_reason(cands[2], over) or "")
    assert students._skip_reason(Candidate("b_tiny", "b", 10, 0.5), over) is None

    limited = search(3.5, limit=2, measure_all=False)
    assert len(fake.calls) == 2
    assert sum(e.status == "unmeasured" for e in limited.entries) == len(SMALL) - 2
    assert limited.stopped == "--limit 2"


def test_dedup_keeps_one_of_near_identical_variants() -> None:
    cands = [
        Candidate("tf_efficientnet_b0", "efficientnet", 5_288_548, 0.40, True),
        Candidate("efficientnet_b0", "efficientnet", 5_288_548, 0.40, True),
        Candidate("efficientnet_b1", "efficientnet", 7_794_184, 0.60, True),
        Candidate("resnet18", "resnet", 11_689_512, 1.82, True),
        Candidate("resnet18d", "resnet", 11_708_744, 2.06, True),  # deeper stem: +13% FLOPs
    ]
    kept, dups = deduplicate(cands)
    assert [c.name for c in kept] == ["efficientnet_b0", "efficientnet_b1", "resnet18", "resnet18d"]
    assert [(d.name, d.kept) for d in dups] == [("tf_efficientnet_b0", "efficientnet_b0")]
    assert family_of("tf_efficientnet_b0") == "efficientnet"
    assert family_of("mobilenetv3_large_100") == "mobilenetv3"
    assert family_of("resnet18d") == "resnet"


def test_dedup_on_real_timm_variants(fake: FakeBench) -> None:
    fake.p50.update({"test_efficientnet_gn": 2.0, "test_efficientnet_ln": 2.0})
    result = search(3.5, candidates=(), pattern="test_efficientnet*", dedup=True)
    assert [e.name for e in result.entries] == ["test_efficientnet"]
    assert {d.name for d in result.duplicates} >= {"test_efficientnet_gn", "test_efficientnet_ln"}


def test_accuracy_table_ranks_first_and_is_named(fake: FakeBench, tmp_path: Path) -> None:
    table = tmp_path / "results-imagenet.csv"
    table.write_text("model,top1,top5\ntest_resnet.r1_in1k,71.5,90\ntest_resnet.r2_in1k,72.0,90\n")
    result = search(3.5, accuracy_csv=table)
    assert result.best is not None and result.best.name == "test_resnet"
    assert result.best.top1 == 72.0  # the best of the architecture's tags
    assert str(table) in result.ranking
    bad = tmp_path / "bad.csv"
    bad.write_text("name,acc\nx,1\n")
    with pytest.raises(DistillError, match="columns model and top1"):
        load_accuracy(bad)


def test_bad_inputs_are_one_line_usage_errors(
    fake: FakeBench, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # --data given the class folders, or Fashion-MNIST's IDX folder, was written into the
    # recipe as an image folder that `distill run` then refused after the timing
    (tmp_path / "photos" / "cat").mkdir(parents=True)
    (tmp_path / "photos" / "dog").mkdir()
    recipe = ["--max-latency-ms", "3", "--write-recipe", str(tmp_path / "x.yaml"), "--data"]
    cases = [
        ([*recipe, str(tmp_path / "photos")], "--data has no train/ folder (it holds cat, dog)"),
        ([*recipe, str(tmp_path)], "--data has no train/ folder (it holds photos)"),
        (["--max-latency-ms", "0"], "budget"),
        (["--max-latency-ms", "nan"], "budget"),
        (["--max-latency-ms", "3", "--precision", "int4"], "precision"),
        (["--max-latency-ms", "3", "--device", "tpu"], "device"),
        (["--max-latency-ms", "3", "--batch", "0"], "batch"),
        (["--max-latency-ms", "3", "--write-recipe", "x.yaml"], "--data"),
        (["--max-latency-ms", "3", "--candidates", "resnet5O"], "resnet50"),
        # a pattern was "unknown timm model", suggesting unrelated names
        (["--max-latency-ms", "3", "--candidates", "test_res*"], "--pattern 'test_res*'"),
    ]
    for args, needle in cases:
        with pytest.raises(SystemExit) as info:
            entry(["students", TEACHER, *args])
        assert info.value.code == 2, args
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    # a pretrained tag timm does not have was taken (timm.is_model ignores tags) and written
    # into the recipe as pretrained weights to fetch
    with pytest.raises(SystemExit) as info:
        entry(["students", "resnet18.nosuchtag", "--max-latency-ms", "3"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert info.value.code == 2 and len(err) == 1 and "a1_in1k" in err[0], err
    assert fake.calls == []  # nothing was timed for a bad invocation


def test_cli_json_and_no_fit_exit_code(fake: FakeBench, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["students", TEACHER, "--candidates", ",".join(SMALL), "--max-ratio", "1"]
    common.append("--measure-all")
    with pytest.raises(SystemExit) as info:
        entry([*common, "--max-latency-ms", "3.5", "--input-size", "32", "--json"])
    assert info.value.code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["best"] == "test_vit" and len(data["entries"]) == len(SMALL)
    with pytest.raises(SystemExit) as info:
        entry([*common, "--max-latency-ms", "0.5", "--input-size", "32"])
    assert info.value.code == 1  # nothing fits: a pipeline must stop here
    captured = capsys.readouterr()
    assert "test_resnet" in captured.out  # the table is still printed
    err = captured.err.strip().splitlines()
    assert err[-1].startswith("error: no candidate fits 0.5 ms")
    # a CI log is not silent: one plain line per candidate timed, with its phase
    assert sum(line.startswith("students timing: ") for line in err) >= len(SMALL)


def _teacher_checkpoint(folder: Path, classes: int) -> Path:
    import timm
    from safetensors.torch import save_file

    model = timm.create_model(TEACHER, num_classes=classes)
    path = folder / "teacher.safetensors"
    save_file(model.state_dict(), str(path))
    return path


def test_written_recipe_validates_and_dry_runs(fake: FakeBench, tmp_path: Path) -> None:
    from distill_cli import api
    from distill_cli.recipe.document import load_recipe

    ckpt = _teacher_checkpoint(tmp_path, classes=10)
    out = tmp_path / "student.yaml"
    result = search(3.5, write_recipe=out, data="fashion_mnist", teacher_checkpoint=ckpt)
    assert result.recipe_path == out
    text = out.read_text()
    assert "--max-latency-ms 3.5" in text  # the export gate line, in the header
    recipe = load_recipe(out)
    assert recipe.method.name == "function_matching"
    assert recipe.student.model == "test_vit" and recipe.student.input_size == 32
    assert recipe.teachers[0].model == TEACHER and recipe.teachers[0].checkpoint == ckpt
    assert recipe.data.source == "fashion_mnist"
    # the written student starts from timm's weights; the test builds it without the hub
    offline = ["output.dir=" + str(tmp_path / "runs"), "student.pretrained=false"]
    assert recipe.student.pretrained is True
    plan = api.plan(out, offline)
    assert plan.data.classes == 10
    assert plan.student.name == "test_vit"
    assert plan.student.input_size == (32, 32)
    assert plan.teacher.name == TEACHER

    smoke_dir = tmp_path / "smoke"
    smoke_dir.mkdir()
    smoke = search(
        3.5,
        write_recipe=smoke_dir / "smoke.yaml",
        data="synthetic",  # 4 classes, 256 images: the batch is capped to fit
        student="test_resnet",
        teacher_checkpoint=_teacher_checkpoint(smoke_dir, classes=4),
    )
    plan = api.plan(smoke.recipe_path, offline)
    assert plan.student.name == "test_resnet"  # the chosen fit, not the best

    with pytest.raises(NoFit) as info:  # nothing fits: no file, but the timings come back
        search(0.5, write_recipe=tmp_path / "none.yaml", data="synthetic")
    assert isinstance(info.value, RunFailed) and info.value.search.entries
    assert not (tmp_path / "none.yaml").exists()
    with pytest.raises(DistillError, match="not a folder"):
        search(3.5, write_recipe=out, data=str(tmp_path / "missing"))


def test_real_timing_exports_and_times_tiny_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real path: resolve_source, export_onnx (with fallback), int8 variant, ORT timing."""
    from distill_cli.export import onnx_export
    from distill_cli.students import measure as student_bench

    real_export = onnx_export.export_onnx

    def flaky(module: Any, shape: Any, path: Path, **kw: Any) -> Any:
        if type(module).__name__ == "EfficientNet":
            raise DistillError("ONNX export failed with both exporters: simulated", str(path))
        return real_export(module, shape, path, **kw)

    monkeypatch.setattr(student_bench, "export_onnx", flaky)
    result = search(
        1000.0,
        candidates=("test_resnet", "test_efficientnet"),
        precision="int8",
        exporter="torchscript",
        warmup=2,
        runs=5,
        min_time_s=0.0,
    )
    by_name = {e.name: e for e in result.entries}
    ok = by_name["test_resnet"]
    assert ok.status == "fits" and ok.p50_ms is not None and 0 < ok.p50_ms < 1000
    assert ok.p90_ms >= ok.p50_ms and ok.exporter == "torchscript"
    assert ok.gflops is not None and ok.gflops > 0 and ok.params and ok.params > 100_000
    assert ok.meets_protocol is False  # 2 warm-up calls are below the protocol: recorded
    assert by_name["test_efficientnet"].status == "failed"
    assert "simulated" in (by_name["test_efficientnet"].reason or "")
    assert result.environment["threads"] == 1 and result.environment["cpu"]


def test_nothing_measured_is_not_nothing_fits(
    fake: FakeBench, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sweep whose time budget ran out before any timing says so, with its own exit code."""
    clock = iter(range(0, 100_000, 100))  # every look at the clock is 100 s later
    monkeypatch.setattr(students, "_clock", lambda: float(next(clock)))
    args = ["students", TEACHER, "--candidates", ",".join(SMALL), "--max-ratio", "1"]
    with pytest.raises(SystemExit) as info:
        entry([*args, "--max-latency-ms", "3.5", "--input-size", "32", "--time-budget", "50"])
    assert info.value.code == EXIT_NOT_MEASURED == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: nothing was measured: 5 candidates untimed")
    assert "--time-budget 50 s" in err[-1] and "fits" not in err[-1]
    assert fake.calls == []


def test_time_budget_starts_after_the_candidate_list(
    fake: FakeBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sizing the candidate list (slow once) is not charged to --time-budget."""
    now = [0.0]
    monkeypatch.setattr(students, "_clock", lambda: now[0])
    real = pool._size_up

    def slow_sizing(q: StudentQuery, progress: Any) -> Any:
        now[0] += 1000.0  # the first call sizes timm's registry for "minutes"
        return real(q, progress)

    monkeypatch.setattr(pool, "_size_up", slow_sizing)
    result = search(3.5, time_budget_s=60)
    assert result.measured == len(SMALL) and result.complete and result.untimed == 0
    assert result.prepare_seconds == 1000.0


def test_untimed_count_and_the_mode_that_times_all(fake: FakeBench) -> None:
    partial = search(3.5, limit=2, measure_all=False)
    assert partial.untimed > 0 and not partial.complete
    assert partial.to_dict()["untimed"] == partial.untimed
    fake.calls.clear()
    full = search(3.5, limit=2, measure_all=True)  # --measure-all: no skips and no --limit
    assert full.complete and full.untimed == 0 and len(fake.calls) == len(SMALL) - 2
    assert full.measured + full.from_cache == len(SMALL)
    again = search(3.5, limit=2, measure_all=True)  # same inputs, same answer
    assert [e.name for e in again.fits] == [e.name for e in full.fits]


def test_timm_test_models_are_left_out_by_default(fake: FakeBench) -> None:
    """`*st_resnet*` matches only timm's `test_resnet`: left out unless asked for."""
    with pytest.raises(DistillError, match="--include-test-models"):
        search(3.5, candidates=(), pattern="*st_resnet*")
    kept = search(3.5, candidates=(), pattern="*st_resnet*", include_test_models=True)
    assert [e.name for e in kept.entries] == ["test_resnet"]


def test_query_takes_the_export_timing_plan_and_its_bounds(fake: FakeBench) -> None:
    q = StudentQuery.from_flat(TEACHER, 3.0, warmup=3, runs=7, max_time_s=2.0, time_budget_s=9)
    assert q.timing == TimingPlan(warmup=3, runs=7, max_time_s=2.0, threads=q.threads)
    assert q.time_budget_s == 9  # the sweep's limit, not a model's --max-time
    with pytest.raises(DistillError, match="--runs"):
        api.students(TEACHER, 3.0, runs=0)  # the export's own range check
    with pytest.raises(DistillError, match="--time-budget"):
        StudentQuery(TEACHER, 3.0, time_budget_s=0)
    with pytest.raises(TypeError, match="max_sweep_s"):
        api.students(TEACHER, 3.0, max_sweep_s=5)


def test_written_recipe_fits_the_data_and_starts_pretrained(
    fake: FakeBench, tmp_path: Path
) -> None:
    from PIL import Image

    from distill_cli.recipe.document import load_recipe

    for split, count in (("train", 40), ("val", 8)):
        for c in ("a", "b"):
            folder = tmp_path / "data" / split / c
            folder.mkdir(parents=True)
            for i in range(count // 2):
                Image.new("RGB", (8, 8), (i, 0, 0)).save(folder / f"{i}.png")
    out = tmp_path / "student.yaml"
    ckpt = _teacher_checkpoint(tmp_path, classes=2)
    search(3.5, write_recipe=out, data=str(tmp_path / "data"), teacher_checkpoint=ckpt)
    recipe = load_recipe(out)
    assert recipe.schedule.batch_size == 8  # 40 images: a quarter is 10, the power of two 8
    assert recipe.schedule.warmup_steps <= recipe.schedule.epochs * (40 // 8) // 10
    assert recipe.student.pretrained is True  # test_vit has timm weights
    assert "Schedule for 40 training images: batch 8" in out.read_text()
    schedule = {"batch_size": 512, "epochs": 1000, "warmup_steps": 1500}
    assert fit_schedule(schedule, 240) == "batch 32, 1000 epochs = 7000 steps"
    assert schedule == {"batch_size": 32, "epochs": 1000, "warmup_steps": 700}
    big = {"batch_size": 512, "epochs": 10, "warmup_steps": 100}
    fit_schedule(big, 60_000)
    assert big == {"batch_size": 512, "epochs": 10, "warmup_steps": 100}


def test_a_budget_the_export_gate_does_not_check_is_not_called_the_same_gate(
    fake: FakeBench, tmp_path: Path
) -> None:
    """The export's latency gate times batch 1 on the CPU: a `--batch 4` budget is another
    question, and neither the caption nor the written recipe calls that gate the same one."""
    from rich.console import Console

    from distill_cli.cli.console_students import students_table

    def caption(result: Any) -> str:
        console = Console(width=300, record=True)
        console.print(students_table(result))
        return console.export_text()

    same = search(3.5, write_recipe=tmp_path / "b1.yaml", data="synthetic")
    assert "same gate after training: distill export" in caption(same)
    assert "# Export with the same budget as a gate:" in (tmp_path / "b1.yaml").read_text()
    other = search(3.5, write_recipe=tmp_path / "b4.yaml", data="synthetic", batch=4)
    assert "same gate" not in caption(other) and "not this budget" in caption(other)
    header = (tmp_path / "b4.yaml").read_text()
    assert "same budget" not in header and "not this budget" in header


def test_teacher_given_as_its_file(fake: FakeBench, tmp_path: Path) -> None:
    """TEACHER as the weights a user holds: a checkpoint with its side file, timm train.py's
    file (its `arch` entry), a run folder; the model is read from it, its class count sizes the
    students, and the written recipe loads the teacher from that file."""
    import timm
    import torch

    from distill_cli.recipe.document import load_recipe

    with_side = _teacher_checkpoint(tmp_path, classes=7)
    (tmp_path / "teacher.json").write_text(json.dumps({"model": TEACHER, "num_classes": 7}))
    out = tmp_path / "student.yaml"
    result = api.students(
        str(with_side), 3.5, candidates=SMALL, max_ratio=1.0, input_size=32, threads=1,
        measure_all=True, write_recipe=out, data="synthetic",
    )  # fmt: skip
    assert result.query.teacher == TEACHER and result.query.num_classes == 7
    teacher = load_recipe(out).teachers[0]
    assert (teacher.model, teacher.checkpoint) == (TEACHER, with_side)

    saved = tmp_path / "timm_train" / "model_best.pth.tar"  # what timm's train.py writes
    saved.parent.mkdir()
    model = timm.create_model(TEACHER, num_classes=5)
    torch.save({"arch": TEACHER, "state_dict": model.state_dict(), "epoch": 3}, saved)
    assert search(3.5).query.teacher == TEACHER  # (the name as such still works)
    listed = api.models("test_resnet", teacher=str(saved))  # `distill models --teacher FILE`
    assert listed.teacher is not None and listed.teacher.name == TEACHER
    found = api.students(str(saved), 3.5, candidates=SMALL, max_ratio=1.0, input_size=32)
    assert found.query.teacher == TEACHER and found.best is not None

    bare = tmp_path / "bare.safetensors"  # no side file, no arch: say how to name the model
    bare.write_bytes(with_side.read_bytes())
    refusals = {
        str(bare): f"pass the timm name as TEACHER and the file as --teacher-checkpoint {bare}",
        str(tmp_path / "missing.pt"): "no such file or folder",
        str(tmp_path / "nope" / "run"): "no such file or folder",
        str(out): "a recipe, not the teacher's weights",
        "timm/resnet18.a1_in1k": "Hugging Face Hub id",
    }
    # the wrong file under a weights name is told by its first bytes, not its suffix
    onnx, png = tmp_path / "exported.pt", tmp_path / "photo.pth"
    onnx.write_bytes(b"\x08\x07\x12\x07pytorch\x1a\x052.9.0")  # ir_version, producer...
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    refusals[str(onnx)] = "an ONNX model, not the teacher's weights"
    refusals[str(png)] = "a PNG image, not the teacher's weights"
    for teacher_arg, words in refusals.items():
        with pytest.raises(DistillError, match=re.escape(words)) as info:
            api.students(teacher_arg, 3.5, candidates=SMALL, max_ratio=1.0, input_size=32)
        assert info.value.code == 2
    with pytest.raises(DistillError, match="TEACHER is a file already") as info:
        api.students(
            str(with_side), 3.5, candidates=SMALL, write_recipe=tmp_path / "x.yaml",
            data="synthetic", teacher_checkpoint=with_side,
        )  # fmt: skip
    assert info.value.where == "--teacher-checkpoint"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        # an unset variable in `--candidates "$LIST"`: the whole registry was timed instead
        (["--candidates", ""], "--candidates '' holds no name"),
        (["--family", " , "], "--family ' , ' holds no name"),
        # the exact list was timed and the pattern or family read by nobody
        (["--candidates", "test_vit", "--pattern", "mobile*"], "--pattern chooses among"),
        (["--candidates", "test_vit", "--family", "resnet"], "--family chooses among"),
        # the cache's writes fail without a word: every call timed everything again
        (["--cache-dir", "/dev/null"], "cache folder is a device"),
        (["--cache-dir", __file__], "cache folder is a file"),
        (["--cache-dir", "cache\nx"], "holds a control character"),
        # export's opset rule: `--opset -1` was timed, cached and answered
        (["--opset", "-1"], "opset -1 is outside what can be written"),
        (["--opset", "13"], "the dynamo exporter writes opset 18 or later"),
    ],
)
def test_a_students_list_or_cache_that_would_be_ignored_is_refused(
    extra: list[str], needle: str, capfd: pytest.CaptureFixture[str]
) -> None:
    argv = ["students", "test_resnet", "--max-latency-ms", "5", *extra]
    refused(argv, needle, capfd)
