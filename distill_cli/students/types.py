"""What `distill students` asks and answers: the query, one timing, one candidate, the search.

Kept free of torch, timm and onnxruntime imports on purpose (the timing plan comes from the
torch-free export/protocol.py): a query whose every timing is in the
cache is answered from these types alone, in a fraction of a second (importing timm takes
seconds).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from distill_cli.arguments import known_keywords, square_side
from distill_cli.errors import DistillError
from distill_cli.export.protocol import MAX_SECONDS, TimingPlan
from distill_cli.export.ranges import DEFAULT_OPSET, check_opset, check_range
from distill_cli.host import check_classes, check_threads

Status = Literal["fits", "over", "skipped", "unmeasured", "failed"]
#: Order of the statuses in the ranked table: the answer first, the reasons for the rest after.
STATUS_ORDER: dict[str, int] = {"fits": 0, "over": 1, "skipped": 2, "unmeasured": 3, "failed": 4}
DEVICES = ("cpu", "cuda")
STUDENT_PRECISIONS = ("fp32", "fp16", "int8")
#: The statistics `distill export --latency-stat` gates on; the budget means the same here.
BUDGET_STATS = ("p50", "p90")
#: Warm-up calls above this many times the budget end a timing early (see student_bench).
PROBE_FACTOR = 2.0


@dataclass(frozen=True)
class StudentQuery:
    """Everything that decides which candidates are timed and how (the CLI's flags).

    `timing` is `distill export`'s timing plan (`TimingPlan`: threads, warm-up, runs, minimum
    and maximum seconds per model, same defaults and bounds), so a figure here and the export's
    latency gate measure the same thing; its `batch` (the export's throughput batch) is not
    used: `batch` here is the images per call the budget is for. `time_budget_s` bounds the
    timing sweep as a whole (`--time-budget`); preparing the candidate list is not counted in it.
    `measure_all` times every candidate: no predicted-over skips and no `limit`.
    """

    teacher: str
    max_latency_ms: float
    device: str = "cpu"
    input_size: int = 224
    batch: int = 1
    precision: str = "fp32"
    latency_stat: str = "p50"
    pattern: str = "*"
    families: tuple[str, ...] = ()
    candidates: tuple[str, ...] = ()
    max_ratio: float = 0.5
    pretrained_only: bool = True
    include_test_models: bool = False
    dedup: bool = True
    measure_all: bool = False
    limit: int = 40
    top: int | None = None
    num_classes: int | None = None
    exporter: str = "dynamo"
    opset: int = DEFAULT_OPSET
    timing: TimingPlan = field(default_factory=TimingPlan)
    time_budget_s: float | None = None
    accuracy_csv: Path | None = None
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        for key in ("families", "candidates"):  # a Python caller may pass a str or a list
            value = getattr(self, key)
            value = (value,) if isinstance(value, str) else tuple(value or ())
            object.__setattr__(self, key, value)
        for key in ("accuracy_csv", "cache_dir"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, key, Path(value))
        # `--input-size 224` or `224x224` (the export's forms): one square side, as timed
        object.__setattr__(self, "input_size", square_side(self.input_size, "--input-size", 8))
        self.validate()

    @classmethod
    def from_flat(cls, teacher: str, max_latency_ms: float, **options: Any) -> StudentQuery:
        """A query from one flat set of keywords (`api.students`' keyword convenience): timing
        keys (`threads`, `warmup`, `runs`, `min_time_s`, `max_time_s`) go to the `TimingPlan`;
        an unknown key is an error."""
        timing_keys = set(TimingPlan.__dataclass_fields__) - {"batch"}
        own = set(cls.__dataclass_fields__) - {"teacher", "max_latency_ms", "timing"}
        known_keywords(options, own | timing_keys, "students options")
        check_range(max_latency_ms, "--max-latency-ms")
        plan = {k: options.pop(k) for k in list(options) if k in timing_keys}
        if plan:
            options["timing"] = TimingPlan(**plan)
        return cls(teacher=teacher, max_latency_ms=float(max_latency_ms), **options)

    @property
    def threads(self) -> int:
        """The thread count timed with (the plan's; 0 became all usable cores)."""
        return self.timing.threads

    @property
    def export_gate_checks_it(self) -> bool:
        """Whether `distill export --max-latency-ms` gates this budget: it times batch 1 on the
        CPU provider, so a `--batch` or `--device cuda` budget is another question."""
        return self.batch == 1 and self.device == "cpu"

    @property
    def sweep_limit(self) -> int:
        """How many candidates may be timed (0: all): `limit`, unless `measure_all`."""
        return 0 if self.measure_all else self.limit

    def validate(self) -> None:
        """Usage errors (exit 2) before anything is built or timed."""
        q = self

        def bad(what: str, where: str, hint: str | None = None) -> DistillError:
            return DistillError(what, where, hint)

        if not (q.max_latency_ms > 0 and math.isfinite(q.max_latency_ms)):
            raise bad(
                "the latency budget must be a positive number of ms",
                "--max-latency-ms",
                "e.g. --max-latency-ms 5",
            )
        if q.max_latency_ms > MAX_SECONDS * 1000:  # as export's gate: `1e30` kept every model
            raise bad(
                f"a budget of {q.max_latency_ms:g} ms is above {MAX_SECONDS * 1000:,.0f} ms (an "
                "hour a call, the longest --max-time times): every candidate would fit, so it "
                "chooses nothing",
                "--max-latency-ms",
                f"give the deployment's budget, at most {MAX_SECONDS * 1000:,.0f} ms; to rank "
                "sizes without one: distill models --teacher TEACHER",
            )
        if q.device not in DEVICES:
            raise bad(f"unknown device {q.device!r}", "--device", "cpu or cuda")
        if q.precision not in STUDENT_PRECISIONS:
            raise bad(f"unknown precision {q.precision!r}", "--precision", "fp32, fp16 or int8")
        if q.latency_stat not in BUDGET_STATS:
            raise bad(
                f"unknown latency statistic {q.latency_stat!r}", "--latency-stat", "p50 or p90"
            )
        if q.exporter not in ("dynamo", "torchscript"):
            raise bad(f"unknown exporter {q.exporter!r}", "--exporter", "dynamo or torchscript")
        budget = q.time_budget_s
        for value, flag, whole in (
            (q.batch, "--batch", True),
            (q.max_ratio, "--max-ratio", False),
            (q.limit, "--limit", True),
            (q.top, "--top", True),
            (q.num_classes, "--num-classes", True),
            (budget, "--time-budget", False),
        ):
            # a Python caller's "8" was a TypeError from `>=` below, and 2.5 one from a slice
            check_range(value, flag, whole=whole)
        checks = [
            (q.batch >= 1, "--batch", "the batch must be >= 1"),
            (q.max_ratio > 0, "--max-ratio", "the ratio must be positive"),
            (q.limit >= 0, "--limit", "the limit must be >= 0 (0: no limit)"),
            (q.top is None or q.top >= 1, "--top", "--top must be >= 1"),
            (q.num_classes is None or q.num_classes >= 1, "--num-classes", "must be >= 1"),
            (q.timing.max_time_s > 0, "--max-time", "must be positive seconds"),
            (
                budget is None or (budget > 0 and math.isfinite(budget)),
                "--time-budget",
                "must be positive seconds",
            ),
        ]
        for ok, where, what in checks:
            if not ok:
                raise bad(what, where, "see `distill students --help`")
        if not q.teacher.strip():
            raise bad("the teacher name is empty", "TEACHER", "give a timm name, e.g. resnet50")
        if q.candidates and (q.pattern != "*" or q.families):
            given = "--pattern" if q.pattern != "*" else "--family"
            raise bad(  # the list was timed as given, the pattern or family unread
                f"--candidates names the models exactly; {given} chooses among timm's and would "
                "be ignored",
                given,
                f"drop {given}, or drop --candidates and let {given} choose",
            )
        _check_cache_dir(q.cache_dir)
        check_opset(q.opset, q.exporter)  # `--opset -1` was timed, cached and answered
        square_side(q.input_size, "--input-size", 8)  # 8 px to the machine's bounds (host.py)
        check_classes(q.num_classes, "--num-classes")
        check_threads(q.threads, "--threads")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("accuracy_csv", "cache_dir"):
            out[key] = str(out[key]) if out[key] is not None else None
        out["families"], out["candidates"] = list(self.families), list(self.candidates)
        return out


def _check_cache_dir(folder: Path | None) -> None:
    """An explicit `--cache-dir` must be a folder one can name: the cache's writes fail without
    a word (a cache only costs speed), so `--cache-dir /dev/zero` or a pasted line break ran
    every timing again, each time, with nothing said."""
    if folder is None:
        return
    from distill_cli.file_kinds import not_a_file
    from distill_cli.files import refuse_odd_path

    refuse_odd_path(folder, "--cache-dir")
    what = "a file" if folder.is_file() else not_a_file(folder)
    if what not in (None, "a folder"):
        raise DistillError(
            f"the timing cache folder is {what} ({folder})",
            "--cache-dir",
            "name a folder (it is made when missing), or leave --cache-dir out",
        )


@dataclass(frozen=True)
class Timing:
    """One candidate timed (or its export failure): what the on-disk cache holds per key.

    `complete` is False when the warm-up alone showed the model far over the budget and the
    timed runs were skipped: `p50_ms` is then the median of the last warm-up calls, an estimate
    (`meets_protocol` False), reused only for budgets it is still far over.
    """

    name: str
    ok: bool
    error: str | None = None
    params: int | None = None
    gflops: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    min_ms: float | None = None
    warmup: int = 0
    runs: int = 0
    seconds: float = 0.0
    meets_protocol: bool = False
    protocol_issues: list[str] = field(default_factory=list)
    complete: bool = True
    provider: str = ""
    threads: int = 0
    batch: int = 1
    precision: str = "fp32"
    exporter: str | None = None
    export_seconds: float | None = None
    session_create_ms: float | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    measured_at: str = ""

    def stat(self, name: str) -> float | None:
        return self.p50_ms if name == "p50" else self.p90_ms

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Timing:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Candidate:
    """A timm architecture that could be the student, sized up before any timing."""

    name: str
    family: str
    params: int
    gflops_est: float | None  # at the deployment input size, scaled from timm's default input
    pretrained: bool = False


@dataclass(frozen=True)
class StudentEntry:
    """One row of the answer: a candidate, what happened to it, and its place in the ranking."""

    name: str
    family: str
    status: Status
    params: int | None
    gflops: float | None
    p50_ms: float | None = None
    p90_ms: float | None = None
    headroom_ms: float | None = None  # budget minus the budget statistic; negative = over
    meets_protocol: bool | None = None
    cached: bool = False
    reason: str | None = None
    top1: float | None = None  # from the accuracy table, when one is used
    rank: int | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    exporter: str | None = None
    pretrained: bool = False  # timm has pretrained weights for the architecture
    protocol_issues: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Duplicate:
    """A candidate not timed because an almost identical one (`kept`) is."""

    name: str
    kept: str


@dataclass(frozen=True)
class StudentSearch:
    """The ranked answer of `distill students` / `api.students`."""

    query: StudentQuery
    teacher_params: int | None
    entries: list[StudentEntry]
    duplicates: list[Duplicate]
    ranking: str
    environment: dict[str, Any]
    seconds: float
    measured: int
    from_cache: int
    stopped: str | None = None
    notes: list[str] = field(default_factory=list)
    recipe_path: Path | None = None
    prepare_seconds: float = 0.0

    @property
    def untimed(self) -> int:
        """Candidates the sweep left unmeasured (a limit, the time budget, an interrupt)."""
        return sum(e.status == "unmeasured" for e in self.entries)

    @property
    def complete(self) -> bool:
        """True when every candidate was timed or ruled out: the answer cannot change on a
        rerun with the same inputs (only a noisier machine could move a figure)."""
        return self.untimed == 0

    @property
    def fits(self) -> list[StudentEntry]:
        return [e for e in self.entries if e.status == "fits"]

    @property
    def best(self) -> StudentEntry | None:
        """The top-ranked candidate within the budget, or None when nothing fits."""
        fits = self.fits
        return fits[0] if fits else None

    @property
    def failed(self) -> list[StudentEntry]:
        return [e for e in self.entries if e.status == "failed"]

    def export_command(self, run_dir: str = "runs/<name>") -> str:
        """The `distill export` line whose latency gate checks the same budget, stat, variant."""
        q = self.query
        parts = [f"distill export {run_dir}"]
        if q.precision == "int8":
            parts.append("--quantize int8")
        elif q.precision == "fp16":
            parts.append("--precision fp16")
        parts.append(f"--threads {self.environment.get('threads', q.threads)}")
        parts.append(f"--max-latency-ms {q.max_latency_ms:g}")
        if q.latency_stat != "p50":
            parts.append(f"--latency-stat {q.latency_stat}")
        if q.precision != "fp32":
            parts.append(f"--latency-variant {q.precision}")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query.to_dict(),
            "teacher_params": self.teacher_params,
            "ranking": self.ranking,
            "budget": {
                "max_latency_ms": self.query.max_latency_ms,
                "stat": self.query.latency_stat,
                "batch": self.query.batch,
                "precision": self.query.precision,
                "device": self.query.device,
            },
            "best": self.best.name if self.best else None,
            "entries": [e.to_dict() for e in self.entries],
            "duplicates": [asdict(d) for d in self.duplicates],
            "environment": self.environment,
            "seconds": round(self.seconds, 3),
            "measured": self.measured,
            "from_cache": self.from_cache,
            "stopped": self.stopped,
            "untimed": self.untimed,
            "complete": self.complete,
            "prepare_seconds": round(self.prepare_seconds, 3),
            "notes": list(self.notes),
            "export_command": self.export_command(),
            "recipe": str(self.recipe_path) if self.recipe_path else None,
        }
