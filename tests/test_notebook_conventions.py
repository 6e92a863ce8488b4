"""The conventions every course notebook keeps, whoever edits it in JupyterLab.

A title; a contents list; the parameters cell first (tagged `parameters`, plain values such as
DATASET = "digits") followed by the set-up cell, the same two lines in every notebook (`from pwoa_lab import
course`, `C = course.setup(DATASET)`; later cells use `C.SMOKE`, `C.teacher`, ...); a runtime note that quotes
docs/runtimes.md, the one table of notebook runtimes (written by `bench/time_notebooks.py --write-docs`), as does
notebook 00's table; at least one figure; and "Things to try" with a worked answer (a collapsed <details> block
with the code and the numbers the kit measured) under every exercise.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
# bench/time_notebooks.py reads and writes docs/runtimes.md; loaded from its file (bench/ is not a package)
_spec = importlib.util.spec_from_file_location("time_notebooks", ROOT / "bench" / "time_notebooks.py")
time_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(time_notebooks)
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
DETAILS = re.compile(r"<details>\s*<summary>\s*Worked answer\s*</summary>(.*?)</details>", re.S)
EXERCISE = re.compile(r"^(\d+)\. ", re.M)
DRAWS = re.compile(r"\b(show|plt\.show|display)\(\s*(fig|plots\.|plt\.|\w+\.plot)|\bshow\(")
SETUP_CELL = "from pwoa_lab import course\nC = course.setup(DATASET)"
COURSE_NAMES = ("SMOKE", "PRESET", "cache_dir", "PROGRESS", "SEEDS", "show", "teacher", "meta", "EPS")
# a wall time as docs/runtimes.md writes it ("11 s", "9.7 min"), not followed by "(estimate)"
TIME = r"(?<![\w.])\d+(?:\.\d+)? (?:s|min)\b"
MEASURED_TIME = re.compile(TIME + r"(?! \(estimate\))")

each_notebook = pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)


def _nb(path: Path):
    return nbformat.read(path, as_version=4)


def _code(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


@each_notebook
def test_title_and_contents(path):
    first = _nb(path).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), f"{path.name}: no '# ' title first"
    assert "**Contents**" in first.source, f"{path.name}: no contents list under the title"
    assert len(re.findall(r"^\d+\. \[[^\]]+\]\(#[\w-]+\)", first.source, re.M)) >= 3, \
        f"{path.name}: the contents list should link its sections"


@each_notebook
def test_parameters_cell_first_then_one_setup_call(path):
    code = _code(_nb(path))
    params = code[0]
    assert "parameters" in params.metadata.get("tags", []), f"{path.name}: first code cell is not tagged parameters"
    assert re.search(r'^DATASET = "\w+"', params.source, re.M), f"{path.name}: no DATASET = ... parameter"
    # plain values only: no imports, no calls into the kit
    assert not re.search(r"^\s*(import|from)\s", params.source, re.M), f"{path.name}: imports in the parameters cell"
    assert code[1].source.strip() == SETUP_CELL, \
        f"{path.name}: the second code cell should be exactly the set-up cell\n{SETUP_CELL}\nnot\n{code[1].source}"
    later = "\n".join(c.source for c in code[2:])
    assert "course.setup(" not in later and 'os.environ.get("PWOA_SMOKE"' not in later, \
        f"{path.name}: the set-up is repeated later"
    # no unpacking of C into globals (SMOKE = C.SMOKE, teacher, meta = C.teacher, C.meta): later cells say C.SMOKE
    unpacked = re.search(r"^[\w, ]+=\s*C\.(" + "|".join(COURSE_NAMES) + r")\b\s*(,\s*C\.\w+\s*)*(#.*)?$", later, re.M)
    assert not unpacked, f"{path.name}: C is unpacked into globals ({unpacked.group(0).strip()!r}); use C.<name>"


def test_the_setup_cell_is_the_same_in_every_course_notebook():
    cells = {path.stem: _code(_nb(path))[1].source.strip() for path in NOTEBOOKS}
    assert len(set(cells.values())) == 1, f"the set-up cells differ: {cells}"
    assert set(cells.values()) == {SETUP_CELL}


@each_notebook
def test_runtime_note_is_dated(path):
    first = _nb(path).cells[0].source
    assert "**Runtime**" in first, f"{path.name}: no runtime note"
    assert re.search(r"measured on 20\d\d-\d\d-\d\d", first), f"{path.name}: the runtime note has no 'measured on' date"


def _runtimes() -> dict[str, dict[str, str]]:
    rows, _ = time_notebooks.read_runtimes(time_notebooks.RUNTIMES)
    return rows


def _runtime_note(path: Path) -> str:
    note = re.search(r"^\*\*Runtime\*\*.*$", _nb(path).cells[0].source, re.M)
    assert note, f"{path.name}: no runtime note"
    return note.group(0)


@each_notebook
def test_runtime_note_quotes_docs_runtimes(path):
    """The note's full-mode and smoke times and their dates are docs/runtimes.md's; it states no other time."""
    row = _runtimes().get(path.stem)
    assert row, f"docs/runtimes.md has no row for {path.stem} (python bench/time_notebooks.py --only {path.name[:2]} --write-docs)"
    note = _runtime_note(path)
    assert "docs/runtimes.md" in note, f"{path.name}: the runtime note should link to docs/runtimes.md"
    for mode in time_notebooks.MODES:
        clause = re.search(rf"{mode} mode\b[^;]*", note, re.I)
        assert clause, f"{path.name}: the runtime note says nothing about {mode} mode"
        stated = re.search(TIME, clause.group(0))
        assert stated and stated.group(0) == row[mode], \
            (f"{path.name}: the runtime note gives {mode} mode {stated.group(0) if stated else 'no time'}, "
             f"docs/runtimes.md {row[mode]}")
        assert f"measured on {row[mode + '_date']}" in clause.group(0), \
            f"{path.name}: the {mode}-mode time should say 'measured on {row[mode + '_date']}', as docs/runtimes.md does"
    others = {m.group(0) for m in MEASURED_TIME.finditer(note)} - {row["full"], row["smoke"]}
    assert not others, (f"{path.name}: the runtime note states {sorted(others)}, which docs/runtimes.md does not "
                        f"(full {row['full']}, smoke {row['smoke']}); mark an estimate with '(estimate)'")


def test_notebook_00_runtime_table_quotes_docs_runtimes():
    rows = _runtimes()
    assert sorted(rows) == [p.stem for p in NOTEBOOKS], "docs/runtimes.md should have one row per course notebook"
    text = "\n".join(c.source for c in _nb(NOTEBOOKS[0]).cells if c.cell_type == "markdown")
    table = {m.group(1): (m.group(2).strip(), m.group(3).strip())
             for m in re.finditer(r"^\| `(\d\d)` \|([^|]*)\|([^|]*)\|", text, re.M)}
    assert re.search(r"^\| notebook \| full mode[^|]*\| smoke mode[^|]*\|", text, re.M), \
        "notebook 00's runtime table should have the columns notebook | full mode ... | smoke mode ..."
    for stem, row in rows.items():
        assert table.get(stem[:2]) == (row["full"], row["smoke"]), \
            (f"notebook 00's table gives {stem[:2]} {table.get(stem[:2])}, docs/runtimes.md "
             f"{(row['full'], row['smoke'])} (full, smoke)")


def test_docs_runtimes_is_as_the_script_writes_it():
    text = time_notebooks.RUNTIMES.read_text(encoding="utf-8")
    rows, notes = time_notebooks.read_runtimes(time_notebooks.RUNTIMES)
    assert time_notebooks.render_runtimes(rows, notes) == text, \
        "docs/runtimes.md is not in the form bench/time_notebooks.py --write-docs writes"
    for stem, row in rows.items():
        for mode in time_notebooks.MODES:
            assert re.fullmatch(TIME, row[mode]), f"docs/runtimes.md: {stem} {mode} mode {row[mode]!r} is not a time"
            assert re.fullmatch(r"20\d\d-\d\d-\d\d", row[mode + "_date"]), f"docs/runtimes.md: {stem} has no {mode} date"


@each_notebook
def test_at_least_one_figure(path):
    assert any(DRAWS.search(c.source) for c in _code(_nb(path))), f"{path.name}: no cell draws or shows a figure"


@each_notebook
def test_things_to_try_with_a_worked_answer_under_each_exercise(path):
    cells = [c for c in _nb(path).cells if c.cell_type == "markdown" and re.search(r"^#+ .*Things to try", c.source, re.M)]
    assert len(cells) == 1, f"{path.name}: expected one 'Things to try' section"
    text = cells[0].source[cells[0].source.index("Things to try"):]
    answers = [m.span() for m in DETAILS.finditer(text)]
    starts = [m.start() for m in EXERCISE.finditer(text)
              if not any(a <= m.start() < b for a, b in answers)]  # numbered lines inside an answer do not count
    assert len(starts) >= 3, f"{path.name}: fewer than three exercises"
    for n, (a, b) in enumerate(zip(starts, starts[1:] + [len(text)]), 1):
        chunk = text[a:b]
        answer = DETAILS.search(chunk)
        assert answer, f"{path.name}: exercise {n} has no <details><summary>Worked answer</summary> block"
        body = answer.group(1)
        assert "```" in body, f"{path.name}: the worked answer to exercise {n} shows no code"
        assert re.search(r"\d", body.replace("```python", "")), f"{path.name}: worked answer {n} has no numbers"
        assert re.search(r"\b(smoke|quick)\b", body), \
            f"{path.name}: worked answer {n} does not say which preset (smoke or quick) its numbers come from"


# --- the README and the docs ---------------------------------------------------------------------------------------

README = ROOT / "README.md"
README_MAX_WORDS = 1500
# "issue #12", "issues #3 and #4", "(#45)", "see #123": a tracker's number in prose. Not matched: colours ("#1f77b4",
# '#123456' in quotes), HTML entities (&#123;), another project's reference (jupyter/nbclient#312), "#1".
ISSUE_NUMBER = (re.compile(r"(?i)\bissues?\s*#\d+"), re.compile(r"(?<![\w&/#'\"])#\d{2,}\b"))
CODE_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]+`")
URL = re.compile(r"\]\([^)\s]*\)|<?https?://\S+")


def _prose(markdown: str) -> str:
    """Markdown without its code blocks, inline code and link targets or URLs."""
    return URL.sub(" ", INLINE_CODE.sub(" ", CODE_FENCE.sub(" ", markdown)))


def _issue_numbers(text: str) -> list[str]:
    return [text[max(0, m.start() - 40):m.end() + 20].replace("\n", " ")
            for pattern in ISSUE_NUMBER for m in pattern.finditer(text)]


def test_readme_is_short():
    words = len(README.read_text(encoding="utf-8").split())
    assert words <= README_MAX_WORDS, (f"README.md has {words} words, more than {README_MAX_WORDS}: move details, "
                                       "results and times into docs/")


@pytest.mark.parametrize("path", [README, *sorted((ROOT / "docs").glob("*.md")), *NOTEBOOKS,
                                  *sorted((ROOT / "notebooks").glob("[!0-9]*.ipynb"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_issue_numbers(path):
    """The README, the docs and the notebooks say what the kit does, not which tracker issue changed it."""
    if path.suffix == ".ipynb":
        texts = [_prose(c.source) if c.cell_type == "markdown" else c.source for c in _nb(path).cells]
    else:
        texts = [_prose(path.read_text(encoding="utf-8"))]
    hits = [hit for text in texts for hit in _issue_numbers(text)]
    assert not hits, f"{path.relative_to(ROOT)} mentions issue numbers: {hits}"


def test_issue_number_pattern():
    for text in ("fixed in issue #12", "see issues #3 and #4", "the widget stalled (#45)", "as #123 showed"):
        assert _issue_numbers(_prose(text)), text
    for text in ("color='#1f77b4'", 'c="#123456"', "&#123;", "jupyter/nbclient#312", "## 12 runs", "#1 seed",
                 "`git log -S '#12'`", "[link](https://example.org/x#123)", "```\nrun #42\n```"):
        assert not _issue_numbers(_prose(text)), text
