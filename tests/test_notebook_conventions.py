"""The conventions every course notebook keeps, whoever edits it in JupyterLab.

A title; a contents list; the parameters cell first (tagged `parameters`, plain values such as
DATASET = "digits") followed by the one set-up call `course.setup(DATASET)`; a runtime note saying when it was
measured; at least one figure; and "Things to try" with a worked answer (a collapsed <details> block with the
code and the numbers the kit measured) under every exercise.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
DETAILS = re.compile(r"<details>\s*<summary>\s*Worked answer\s*</summary>(.*?)</details>", re.S)
EXERCISE = re.compile(r"^(\d+)\. ", re.M)
DRAWS = re.compile(r"\b(show|plt\.show|display)\(\s*(fig|plots\.|plt\.|\w+\.plot)|\bshow\(")

pytestmark = pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)


def _nb(path: Path):
    return nbformat.read(path, as_version=4)


def _code(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_title_and_contents(path):
    first = _nb(path).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), f"{path.name}: no '# ' title first"
    assert "**Contents**" in first.source, f"{path.name}: no contents list under the title"
    assert len(re.findall(r"^\d+\. \[[^\]]+\]\(#[\w-]+\)", first.source, re.M)) >= 3, \
        f"{path.name}: the contents list should link its sections"


def test_parameters_cell_first_then_one_setup_call(path):
    code = _code(_nb(path))
    params = code[0]
    assert "parameters" in params.metadata.get("tags", []), f"{path.name}: first code cell is not tagged parameters"
    assert re.search(r'^DATASET = "\w+"', params.source, re.M), f"{path.name}: no DATASET = ... parameter"
    # plain values only: no imports, no calls into the kit
    assert not re.search(r"^\s*(import|from)\s", params.source, re.M), f"{path.name}: imports in the parameters cell"
    assert "course.setup(DATASET)" in code[1].source, f"{path.name}: the second code cell should call course.setup"
    assert "%matplotlib inline" in code[1].source, f"{path.name}: inline plots are switched on in the set-up cell"
    later = "\n".join(c.source for c in code[2:])
    assert "course.setup(" not in later and 'os.environ.get("PWOA_SMOKE"' not in later, \
        f"{path.name}: the set-up is repeated later"


def test_runtime_note_is_dated(path):
    first = _nb(path).cells[0].source
    assert "**Runtime**" in first, f"{path.name}: no runtime note"
    assert re.search(r"measured on 20\d\d-\d\d-\d\d", first), f"{path.name}: the runtime note has no 'measured on' date"


def test_at_least_one_figure(path):
    assert any(DRAWS.search(c.source) for c in _code(_nb(path))), f"{path.name}: no cell draws or shows a figure"


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
