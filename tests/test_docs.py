"""The docs keep their promises: every relative link from README.md and docs/*.md resolves (the
file exists, an #anchor names a heading of its target), every JSON file they cite exists and is
valid JSON, and every table of docs/benchmarks.md says where its raw data is (a committed file
under benchmarks/results/, or plainly that it was not recorded and the command to regenerate it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

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
