"""The docs keep their promises: every relative link from README.md and docs/*.md resolves (the
file exists, an #anchor names a heading of its target), every JSON file they cite exists and is
valid JSON, and every table of docs/benchmarks.md says where its raw data is (a committed file
under benchmarks/results/, or plainly that it was not recorded and the command to regenerate it).
Users copy from them too: every key the recipe's pydantic models accept is in recipe.md with its
default (each method's settings in methods.md), every flag of a quoted `distill ...` line is one
its command takes, and every `--set KEY=` names a recipe key.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from distill_cli.recipe.document import Recipe

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BENCHMARKS = ROOT / "docs" / "benchmarks.md"

LINK = re.compile(r"!?\[(?:[^\]]|\\\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
RESULTS = re.compile(r"benchmarks/results/[\w.{},\-]+\.json")
EXTERNAL = ("http://", "https://", "mailto:")


def _prose(path: Path) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in _prose(path):
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def _links(page: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in _prose(page):
        # inline code is not a link: `[x](y)` in backticks is an example
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if not target.startswith(EXTERNAL):
                found.append((number, target))
    return found


def _expand(pattern: str) -> list[str]:
    """`run{1,2}.json` -> run1.json, run2.json (the shell's brace expansion, one level)."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if not match:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [p for part in match.group(1).split(",") for p in _expand(head + part + tail)]


def _cited_part(text: str) -> str:
    """What a paragraph cites: the text before "regenerate with" (what follows names the file a
    rerun would write, which does not exist until someone runs it)."""
    return text.split("regenerate with")[0]


def _paragraphs(page: Path) -> list[str]:
    out, current = [], []
    for _, line in _prose(page):
        if line.strip():
            current.append(line)
        elif current:
            out.append(" ".join(current))
            current = []
    return out + ([" ".join(current)] if current else [])


def cited_json(page: Path) -> list[Path]:
    """The JSON files a page cites: links to *.json and benchmarks/results/ paths in its prose
    (not in code blocks, and not the output file of a "regenerate with" command)."""
    files = [
        (page.parent / target.split("#")[0]).resolve()
        for _, target in _links(page)
        if target.split("#")[0].endswith(".json")
    ]
    for paragraph in _paragraphs(page):
        for name in RESULTS.findall(_cited_part(paragraph)):
            files += [ROOT / path for path in _expand(name)]
    return sorted(set(files))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for number, target in _links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{page.name}:{number}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{page.name}:{number}: {target} (no heading #{anchor})")
    assert broken == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_cited_json_file_exists_and_parses(page: Path) -> None:
    for path in cited_json(page):
        assert path.is_file(), f"{page.name} cites {path.relative_to(ROOT)}, which is missing"
        json.loads(path.read_text())  # a cited file that is not JSON fails here


def _tables(path: Path) -> list[tuple[int, list[str]]]:
    """(first line, the prose lines since the previous table or heading) of each table."""
    out: list[tuple[int, list[str]]] = []
    before: list[str] = []
    in_table = False
    for number, line in _prose(path):
        if line.startswith("|"):
            if not in_table:
                out.append((number, before))
            in_table = True
            continue
        if in_table or line.startswith("#"):
            before = []
        in_table = False
        before.append(line)
    return out


def test_every_benchmark_table_says_where_its_raw_data_is() -> None:
    """Each table has a 'Raw data:' line between it and the table or heading above: a committed
    benchmarks/results/ file (which must exist), or "not recorded" with the command to rerun."""
    missing = []
    for number, before in _tables(BENCHMARKS):
        text = " ".join(before)
        if "Raw data" not in text:
            missing.append(f"benchmarks.md:{number}: no 'Raw data:' line above the table")
            continue
        raw = text[text.index("Raw data") :]
        cited = _cited_part(raw)
        files = [ROOT / p for name in RESULTS.findall(cited) for p in _expand(name)]
        if not files and not ("not recorded" in raw and "regenerate with" in raw):
            missing.append(f"benchmarks.md:{number}: raw data neither cited nor marked missing")
        missing += [f"benchmarks.md:{number}: {f} is missing" for f in files if not f.is_file()]
    assert missing == []


def test_the_checks_catch_what_they_exist_for(tmp_path: Path) -> None:
    """A broken link, a missing anchor and a missing cited file are found (the checks can fail)."""
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# A title\n\n## Export latency (2 threads)\n\n[ok](#export-latency-2-threads) "
        "[bad](#nowhere) [gone](missing.md) [data](data.json)\n\n```\n[not](a-link.md)\n```\n"
        "\nRaw data: `benchmarks/results/kept.json`; regenerate with `x --json "
        "benchmarks/results/new.json`.\n"
    )
    assert anchors(page) == {"a-title", "export-latency-2-threads"}
    targets = [t for _, t in _links(page)]
    assert targets == ["#export-latency-2-threads", "#nowhere", "missing.md", "data.json"]
    assert set(cited_json(page)) == {
        ROOT / "benchmarks/results/kept.json",
        (tmp_path / "docs" / "data.json").resolve(),
    }
    assert _expand("r{1,2_b}.json") == ["r1.json", "r2_b.json"]


# --- the recipe keys, the method settings and the command lines the docs quote -------------------

RECIPE_MD = ROOT / "docs" / "recipe.md"
METHODS_MD = ROOT / "docs" / "methods.md"
#: Files a user copies `distill ...` lines from whole (every line is a command line or a comment):
#: the CI templates, the scripts, the examples and the shipped recipes' comments.
SCRIPTS = sorted(
    {*ROOT.glob("examples/**/*.*"), *ROOT.glob("scripts/*.*"), *ROOT.glob("recipes/**/*.yaml")}
)
COMMAND = re.compile(r"(?:^|[\s/`(])(?:distill|-m distill_cli)\s+([^`#|;&>\n]*)")
FLAG = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")
#: An indented code block's command line (Markdown's other code block).
INDENTED = re.compile(r" {4,}(\S*/)?distill\s| {4,}.*-m distill_cli\s")
SET_KEY = re.compile(r"--set[ =]+[\"']?([A-Za-z_][\w.]*)=")


def _table(path: Path) -> list[list[str]]:
    """The cells of every table row (header rows included, separator rows not) of a page."""
    rows = []
    for _, line in _prose(path):
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))])
    return rows


def _split_values(cell: str) -> list[str]:
    """A cell's comma-separated parts, commas inside backticks or brackets kept (`[0.9, 0.999]`)."""
    parts, depth, tick, current = [], 0, False, ""
    for char in cell:
        tick = not tick if char == "`" else tick
        depth += (char in "[(") - (char in "])") if not tick else 0
        if char == "," and not tick and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [*parts, current.strip()]


def documented_keys(path: Path) -> dict[str, str]:
    """recipe.md's keys (`section.key`) with their default cell. A row may name several keys
    (`optim.lr`, `optim.weight_decay` with `1e-3`, `1e-4`: paired in order); `.key` is a key of
    the row's first section (`data.synthetic.num_classes`, `.train_size`) or, in a row of
    only such keys, of each section the last row of plain keys named (`teacher`, `student`)."""
    keys: dict[str, str] = {}
    sections: list[str] = []
    for cells in _table(path):
        names = re.findall(r"`\s*([\w.]+)`", cells[0]) if len(cells) >= 3 else []
        if not names:
            continue
        plain = [n for n in names if not n.startswith(".")]
        parents = [plain[0].rpartition(".")[0]] if plain else sections
        defaults = _split_values(cells[1])
        if len(defaults) != len(names):
            defaults = [cells[1]] * len(names)
        for name, default in zip(names, defaults, strict=True):
            for key in [p + name for p in parents] if name.startswith(".") else [name]:
                keys[key] = default
        if plain == names:
            sections = names
    return keys


def _model_sections(annotation: Any) -> list[type[BaseModel]]:
    """The recipe sections a field's type holds (`ModelSpec | list[ModelSpec]`: ModelSpec)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _model_sections(arg)]


def recipe_fields(model: type[BaseModel], prefix: str = "") -> dict[str, FieldInfo]:
    """Every leaf key a recipe accepts (`data.synthetic.image_size`), with its field; `method`
    is each method's own (methods.md documents those)."""
    out: dict[str, FieldInfo] = {}
    for name, info in model.model_fields.items():
        sections = _model_sections(info.annotation)
        if name == "method" and not prefix:
            continue
        if not sections:
            out[prefix + name] = info
        for section in sections:
            out.update(recipe_fields(section, f"{prefix}{name}."))
    return out


def _value(text: str) -> Any:
    """A documented value as YAML reads it, numbers YAML 1.1 leaves as text (`1e-3`) included."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:  # prose in backticks (`<output.dir>/.cache/`) is not a value
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-3)  # 1.333 documents 4/3
    return str(a) == str(b)


def default_problem(info: FieldInfo, cell: str, values: list[str]) -> str | None:
    """Why `cell` does not document the field's default: a required key must say "required",
    a key with a value must show it (`false`, `[]`, `1e-3`); a `None` default may be prose
    ("timm cfg", "on for CUDA"), since it means "decided at run time"."""
    if info.is_required():
        return None if "required" in cell else f"is required, documented as {cell!r}"
    default = info.get_default(call_default_factory=True)
    if default is None:
        return None
    default = str(default) if isinstance(default, Path) else default
    if any(_same(default, _value(v)) for v in values):
        return None
    return f"defaults to {default!r}, documented as {cell!r}"


def test_every_recipe_key_is_in_recipe_md_with_its_default() -> None:
    """The reference and the pydantic models name the same keys, with the same defaults."""
    documented = documented_keys(RECIPE_MD)
    fields = recipe_fields(Recipe)
    sections = {key.rpartition(".")[0] for key in fields} | {"method.name"}
    problems = [f"{key}: not in recipe.md" for key in fields if key not in documented]
    problems += [f"{key}: no such key" for key in documented if key not in {*fields, *sections}]
    for key, info in fields.items():
        if key in documented:
            cell = documented[key]
            problem = default_problem(info, cell, re.findall(r"`([^`]*)`", cell))
            problems += [f"{key}: {problem}"] if problem else []
    assert problems == []


def test_every_method_setting_is_in_methods_md_with_its_default() -> None:
    """Each method's `Params` key has a row of methods.md naming that method, and the row's
    defaults (`1.0 / 4.0`: one per group of methods) include the method's own."""
    from distill_cli.methods import method_params_by_name  # imports torch: only for this test

    rows = [cells for cells in _table(METHODS_MD) if len(cells) >= 4]
    problems = []
    for method, params in method_params_by_name().items():
        for key, info in params.model_fields.items():
            if key == "name":
                continue
            found = [
                (names, cells)
                for cells in rows
                if key in (names := re.findall(r"`(\w+)`", cells[0]))
                and method in re.split(r"[\s,]+", cells[1])
            ]
            if not found:
                problems.append(f"method.{key} ({method}): no row of methods.md for it")
                continue
            names, cells = found[0]
            defaults = _split_values(cells[2])
            cell = defaults[names.index(key)] if len(defaults) == len(names) else cells[2]
            values = [v.strip().strip("`") for v in re.split(r"[/,]", cell)]
            problem = default_problem(info, cell, values)
            problems += [f"method.{key} ({method}): {problem}"] if problem else []
    assert problems == []


def _continues(code: list[tuple[int, str]], number: int) -> bool:
    """Whether line `number` continues the code line before it (which ends with a backslash)."""
    return bool(code) and code[-1][0] == number - 1 and code[-1][1].rstrip().endswith("\\")


def command_lines(path: Path) -> list[tuple[int, str]]:
    """(line, what follows `distill`) for each command a page quotes: in its code (fenced
    blocks, indented command lines, inline code; lines continued with a backslash joined) or,
    for a script or CI file, on any line. Prose that names the tool ("distill writes...") is
    not a command."""
    text = path.read_text().splitlines()
    if path.suffix == ".md":
        fenced, code = False, []
        for number, line in enumerate(text, 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
            elif fenced or INDENTED.match(line) or _continues(code, number):
                code.append((number, line))
            else:
                code += [(number, f"`{span}`") for span in re.findall(r"`([^`]+)`", line)]
    else:
        code = list(enumerate(text, 1))
    joined: list[tuple[int, str]] = []
    for number, line in code:
        if joined and joined[-1][1].endswith("\\"):
            joined[-1] = (
                joined[-1][0],
                f"{joined[-1][1][:-1].rstrip()} {line.strip().lstrip('#')}",
            )
        else:
            joined.append((number, line.rstrip()))
    return [(n, m.strip()) for n, line in joined for m in COMMAND.findall(line) if m.strip()]


def flag_problems(path: Path, cli: Any) -> list[str]:
    """The flags of `distill ...` lines in `path` that their (sub)command does not take."""
    problems = []
    for number, line in command_lines(path):
        command, words = cli, line.split()
        while words and words[0] in getattr(command, "commands", {}):
            command = command.commands[words.pop(0)]
        if command is cli and words and not words[0].startswith("-"):
            continue  # prose in code ("`distill` writes") or a placeholder (`distill ...`)
        known = {o for p in [*command.params, *cli.params] for o in (*p.opts, *p.secondary_opts)}
        for flag in FLAG.findall(line):
            if flag.split("=")[0] not in known:
                problems.append(f"{path.name}:{number}: {flag} is not an option of: {line}")
    return problems


def test_every_flag_the_docs_quote_exists() -> None:
    """`distill run RECIPE --resum` in a page fails for whoever copies it: every flag of every
    quoted command line (README, docs/, CI examples, scripts) is one its command takes."""
    import typer

    from distill_cli.cli.app import app

    cli = typer.main.get_command(app)
    problems = [p for page in [*PAGES, *SCRIPTS] for p in flag_problems(page, cli)]
    assert problems == []


def test_every_set_key_the_docs_quote_is_a_recipe_key() -> None:
    """`--set data.roots=...` would be refused: each `--set KEY=` of the docs names a key."""
    from distill_cli.methods import method_params_by_name

    fields = recipe_fields(Recipe)
    method_keys = {f"method.{k}" for p in method_params_by_name().values() for k in p.model_fields}
    valid = {*fields, *method_keys, "method", "teacher", "student", "model"}
    valid |= {k.replace("student.", "model.", 1) for k in fields}  # `model:` is its alias
    valid |= {k.rpartition(".")[0] for k in valid}
    problems = [
        f"{page.name}:{number}: --set {key}"
        for page in [*PAGES, *SCRIPTS]
        for number, line in command_lines(page)
        for key in SET_KEY.findall(line)
        if key not in valid
    ]
    assert problems == []


def test_the_key_and_flag_checks_catch_mistakes(tmp_path: Path) -> None:
    """A misspelt flag, an undocumented key and a wrong default are found (the checks can fail)."""
    import typer

    from distill_cli.cli.app import app

    page = tmp_path / "page.md"
    page.write_text(
        "Run `distill run r.yaml --resum` or\n\n    distill compare a b \\\n        --mdd\n\n"
        "```bash\ndistill export runs/a \\\n"
        "  --quantize int8 --min-top 80   # gates\n.venv/bin/distill report runs/a --jsn\n"
        "```\n\n| key | default | meaning |\n|---|---|---|\n"
        "| `optim.lr`, `optim.weight_decay` | `1e-2`, `1e-4` | |\n"
        "| `teacher`, `student` | | |\n| `  .mean`, `.std` | timm cfg | |\n"
    )
    cli = typer.main.get_command(app)
    assert [line for _, line in command_lines(page)] == [
        "run r.yaml --resum",
        "compare a b --mdd",
        "export runs/a --quantize int8 --min-top 80",
        "report runs/a --jsn",
    ]
    assert [p.split(": ")[1] for p in flag_problems(page, cli)] == [
        "--resum is not an option of",
        "--mdd is not an option of",
        "--min-top is not an option of",
        "--jsn is not an option of",
    ]
    keys = documented_keys(page)
    assert set(keys) == {
        "optim.lr", "optim.weight_decay", "teacher", "student",
        "teacher.mean", "student.mean", "teacher.std", "student.std",
    }  # fmt: skip
    lr = recipe_fields(Recipe)["optim.lr"]
    assert default_problem(lr, keys["optim.lr"], ["1e-2"]) is not None
    assert default_problem(lr, "`1e-3`", ["1e-3"]) is None


def api_call_problems(page: Path) -> list[str]:
    """`api.NAME(..., key=...)` in `page` where NAME is no function of `distill_cli.api`, or
    `key` none of its parameters (a function that takes any, `**fields`, takes every key)."""
    import inspect

    from distill_cli import api

    problems = []
    for number, line in enumerate(page.read_text().splitlines(), 1):
        for name, args in re.findall(r"\bapi\.(\w+)\(([^()]*)", line):
            function = getattr(api, name, None)
            if not callable(function):
                problems.append(f"{page.name}:{number}: api.{name} does not exist")
                continue
            params = inspect.signature(function).parameters
            if any(p.kind is p.VAR_KEYWORD for p in params.values()):
                continue
            problems += [
                f"{page.name}:{number}: api.{name} takes no {key}="
                for key in re.findall(r"(?<![\w.])(\w+)=", args)
                if key not in params
            ]
    return problems


def test_every_api_call_the_docs_show_exists(tmp_path: Path) -> None:
    """The Python the pages show calls functions that exist, with keywords they take."""
    assert [p for page in PAGES for p in api_call_problems(page)] == []
    page = tmp_path / "page.md"
    page.write_text("`api.compare([a], plots=None)`, `api.exprt(x)`, `api.report(run_dir)`\n")
    assert api_call_problems(page) == [
        "page.md:1: api.compare takes no plots=",
        "page.md:1: api.exprt does not exist",
    ]


def test_every_recipe_the_docs_show_validates(tmp_path: Path) -> None:
    """A ```yaml block with a `name:` is a whole recipe a user copies into a file: distill's own
    loader accepts it (no key renamed or removed since it was written)."""
    from distill_cli.recipe.document import load_recipe

    blocks = [
        (page, block)
        for page in PAGES
        for block in re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S)
        if re.search(r"^name:", block, re.M)
    ]
    assert len(blocks) >= 2  # README's and recipe.md's
    for number, (page, block) in enumerate(blocks):
        path = tmp_path / f"{number}.yaml"
        path.write_text(block)
        assert load_recipe(path).name, page.name


#: A repository file a page names (`recipes/methods/kd.yaml`, `benchmarks/patience.py`); results
#: files are the cited-JSON test's (a "regenerate with" output need not exist yet).
REPO_FILE = re.compile(
    r"(?<![\w/.])(?:recipes|benchmarks|scripts|examples|tests|distill_cli)/[\w./-]+\.(?:yaml|yml|py|sh)\b"
)


def test_every_repository_file_the_docs_name_exists() -> None:
    """A renamed recipe, script or module leaves no page pointing at the old name."""
    missing = [
        f"{page.name}:{number}: {name}"
        for page in PAGES
        for number, line in enumerate(page.read_text().splitlines(), 1)
        for name in REPO_FILE.findall(line)
        if not (ROOT / name).exists()
    ]
    assert missing == []


def api_type_problems(page: Path) -> list[str]:
    """Types `page` has a caller construct, call or catch (`RunDir(path)`, `RunSummary.load(...)`,
    "raises `GateFailed`") that `distill_cli.api` does not have: the docs say `from distill_cli
    import api`, so `except api.GateFailed` must work (it was an AttributeError)."""
    import builtins

    from distill_cli import api

    problems = []
    for number, line in enumerate(page.read_text().splitlines(), 1):
        names = set(re.findall(r"raises `([A-Z]\w+)`", line))
        for span in re.findall(r"`([^`]+)`", line):
            names |= set(re.findall(r"(?<![\w.])([A-Z][a-z]\w*)(?:\.\w+)?\(", span))
        problems += [
            f"{page.name}:{number}: api.{name} does not exist"
            for name in sorted(names)
            if not hasattr(builtins, name) and not hasattr(api, name)
        ]
    return problems


def test_every_type_the_api_docs_have_a_caller_use_is_in_the_api(tmp_path: Path) -> None:
    assert [p for page in PAGES for p in api_type_problems(page)] == []
    page = tmp_path / "page.md"
    page.write_text(
        "`RunDir(run).read_class_eval()` raises `GateFailed`; `Nowhere.load(x)`, `TypeError(x)`"
        "\n`api.run(r)` raises `NoSuchError`\n"
    )
    assert api_type_problems(page) == [
        "page.md:1: api.Nowhere does not exist",
        "page.md:2: api.NoSuchError does not exist",
    ]


#: Flags that shape the CLI's output or launch, with no keyword in the API.
CLI_ONLY = {"--json", "--quiet", "--dry-run", "--nproc", "--md", "--csv"}
#: Flags whose API keyword is spelt otherwise; api.md must name each keyword.
RENAMED = {
    "--set": "overrides",
    "--min-time": "min_time_s",
    "--max-time": "max_time_s",
    "--time-budget": "time_budget_s",
    "--model-arg": "model_kwargs",
    "--family": "families",
    "--accuracy": "accuracy_csv",
    "--pretrained": "pretrained_only",
    "--all-weights": "pretrained_only",
    "--no-plot": "plot",
}


def _api_keywords() -> dict[str, set[str]]:
    """Each command's keywords in `distill_cli.api`: its function's own and those of the flat
    options it routes (`ExportOptions.from_flat`, `StudentQuery.from_flat`)."""
    import dataclasses
    import inspect

    from distill_cli import api
    from distill_cli.export import ExportOptions, TimingPlan
    from distill_cli.export.gates import Gates
    from distill_cli.export.options import Int8Spec
    from distill_cli.students.model_search import find_models
    from distill_cli.students.types import StudentQuery

    def own(fn: Any) -> set[str]:
        return set(inspect.signature(fn).parameters)

    def fields(*types: Any) -> set[str]:
        return {f.name for t in types for f in dataclasses.fields(t)}

    timing = fields(TimingPlan)
    run = own(api.run) | own(api.plan)
    return {
        "run": run,
        "train": run,
        "export": own(api.export) | fields(ExportOptions, Gates, Int8Spec) | timing,
        "students": own(api.students) | fields(StudentQuery) | timing,
        "models": own(api.models) | own(find_models),
        "compare": own(api.compare),
        "report": own(api.report),
        "bench latency": own(api.bench_latency) | timing,
        "bench train": own(api.bench_train),
    }


def test_every_flag_is_an_api_keyword_of_the_same_name_or_a_documented_one() -> None:
    """api.md: "a flag is the keyword of the same name" (`--min-top1 80` is `min_top1=80`),
    with the exceptions it names; `--name` of `distill students` was `recipe_name=`."""
    import typer

    from distill_cli.cli.app import app

    cli = typer.main.get_command(app)
    api_md = (ROOT / "docs" / "api.md").read_text()
    problems = []
    for name, keywords in _api_keywords().items():
        command = cli
        for word in name.split():
            command = command.commands[word]  # type: ignore[attr-defined]
        for param in command.params:
            flag = max(param.opts, key=len)
            if flag in CLI_ONLY or not flag.startswith("--"):
                continue
            keyword = RENAMED.get(flag, flag[2:].replace("-", "_"))
            if keyword not in keywords:
                problems.append(f"distill {name} {flag}: no api keyword {keyword}=")
            elif flag in RENAMED and not re.search(
                rf"(?<![\w-]){flag}(?![\w-]).{{0,80}}?`{keyword}\b", api_md, re.S
            ):
                problems.append(f"distill {name} {flag}: api.md does not name {keyword}")
    assert problems == [], "\n".join(problems)
