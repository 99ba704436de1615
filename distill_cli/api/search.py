"""The API of the model searches: `models` and `students` (see `distill_cli.api`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill_cli import arguments as args
from distill_cli.errors import WrongType
from distill_cli.process_state import leaves_process_as_found

if TYPE_CHECKING:
    from distill_cli.students.model_search import ModelSearch
    from distill_cli.students.types import StudentQuery, StudentSearch


@leaves_process_as_found
@args.plain_arguments
def models(pattern: str = "*", **options: Any) -> ModelSearch:
    """`distill models`: timm models matching `pattern` with parameters and input size; with
    `teacher=NAME` each is marked as a sensible student or not (see `find_models`)."""
    from distill_cli.export.ranges import check_range
    from distill_cli.students.model_search import find_models
    from distill_cli.students.teacher_file import teacher_name

    args.text(pattern, "pattern")
    takes = inspect.signature(find_models).parameters
    args.known_keywords(options, set(takes) - {"pattern"}, "models options")
    args.text(options.get("teacher"), "teacher", optional=True)
    if options.get("teacher") is not None:  # the teacher a user holds: a file names its model
        options["teacher"] = teacher_name(options["teacher"], "--teacher")
    for key in ("pretrained_only", "flops"):
        if key in options:
            args.switch(options[key], key)
    args.function(options.get("progress"), "progress")
    check_range(options.get("limit"), "--limit", 0, whole=True)
    check_range(options.get("max_ratio"), "--max-ratio", 0)
    return find_models(pattern, **options)


@leaves_process_as_found
@args.plain_arguments
def students(
    query: StudentQuery | str,
    max_latency_ms: float | None = None,
    *,
    progress: Callable[[str, int, int, str], None] | None = None,
    write_recipe: str | Path | None = None,
    data: str | Path | None = None,
    teacher_checkpoint: str | Path | None = None,
    student: str | None = None,
    name: str | None = None,
    force: bool = False,
    **options: Any,
) -> StudentSearch:
    """`distill students`: the teacher's timm students ranked within a latency budget.

    `query` is a `StudentQuery` (what `distill students` builds from its flags), or the
    teacher's name with `max_latency_ms` and the query's fields as keywords (`device`,
    `input_size`, `batch`, `precision`, `latency_stat`, `pattern`, `families`, `candidates`,
    `max_ratio`, `limit`, `measure_all`, `time_budget_s`, `cache_dir`, ... and the timing plan's
    `threads`, `warmup`, `runs`, `min_time_s`, `max_time_s`; see `StudentQuery.from_flat`).
    `progress(phase, done, total, name)` follows the sweep. With `write_recipe`, a
    function-matching recipe for the best fit (or `student`) on `data` is written and
    validated (`student`, `name` and `force` are the flags `--student`, `--name`, `--force`);
    when nothing fits, `NoFit` is raised and its `.search` holds the timings. Without a fit and
    without a recipe the result's `best` is None (`students.search.outcome` says why: nothing
    measured, or nothing fast enough).

        search = api.students("resnet50", 5.0, input_size=224, threads=2)
        print(search.best.name, search.best.p50_ms, search.untimed)
    """
    from distill_cli.students.recipe import RecipeAsk
    from distill_cli.students.search import search_students
    from distill_cli.students.teacher_file import with_teacher_file
    from distill_cli.students.types import StudentQuery

    args.function(progress, "progress")
    if isinstance(query, StudentQuery):
        if options or max_latency_ms is not None:
            raise args.one_of("StudentQuery", "query")
    else:
        if max_latency_ms is None:
            raise WrongType(
                "students(teacher, max_latency_ms, ...) needs a latency budget",
                "max_latency_ms",
                "e.g. api.students('resnet50', 5.0)",
            )
        query = StudentQuery.from_flat(args.text(query, "teacher"), max_latency_ms, **options)
    args.optional_path(write_recipe, "write_recipe")
    args.optional_path(data, "data")
    args.optional_path(teacher_checkpoint, "teacher_checkpoint")
    query, teacher_checkpoint = with_teacher_file(query, teacher_checkpoint, write_recipe)
    args.text(student, "student", optional=True)
    args.text(name, "name", optional=True)
    args.switch(force, "force")
    ask = RecipeAsk.of(write_recipe, data, teacher_checkpoint, student, name, force)
    return search_students(query, progress=progress, recipe=ask)
