"""The course notebooks: each one executes headless in smoke mode, and the committed files carry no outputs.

Every notebook runs in a fresh "python3" kernel (jupyter_client starts it with this interpreter, i.e. the
project's venv; checked below) with PWOA_SMOKE=1, MPLBACKEND=Agg and PWOA_CACHE_DIR set to one temporary
folder shared by all the notebooks of a test run, so that notebooks 03-05 reuse the pruning runs that 02 trained
(each notebook still runs alone, only slower). A notebook passes when every cell runs without error and at least
one cell shows an image.

"Stripped" is checked on what git commits: the notebook's blob in the git index (`git show :path`) inside a git
checkout, else the file on disk. A notebook saved from JupyterLab keeps its outputs in the working tree; the
nbstripout filter (`make setup-git`, named in .gitattributes) strips them when it is `git add`-ed. The notebook
conventions are checked in test_notebook_conventions.py.

Set PWOA_NOTEBOOK_TIMINGS=/path/file.jsonl to append each notebook's wall and kernel CPU seconds there.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from pwoa_lab.course import execute_notebook

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
EXPECTED = ["00_start_here", "01_adversarial_examples", "02_naive_pruning_breaks_robustness",
            "03_distillation_and_hsic", "04_efficiency_and_mix_ratio", "05_rigorous_evaluation",
            "06_pruning_design_space", "07_is_the_comparison_fair"]
CELL_TIMEOUT = 600  # seconds per cell

PROBE = "import sys as _s, resource as _r\n_u = _r.getrusage(_r.RUSAGE_SELF)\nprint('PWOA-PROBE', _s.prefix, _u.ru_utime + _u.ru_stime)"


@pytest.fixture(scope="module")
def smoke_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pwoa-notebook-cache")


def test_all_course_notebooks_present():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


def _image_outputs(nb) -> int:
    return sum(1 for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
               if "image/png" in out.get("data", {}))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_mode(path: Path, smoke_cache: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PWOA_SMOKE", "1")
    monkeypatch.setenv("PWOA_CACHE_DIR", str(smoke_cache))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PWOA_DOWNLOAD", "0")
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(new_code_cell(PROBE))  # which interpreter ran it, and its CPU time
    start = time.perf_counter()
    try:
        execute_notebook(nb, NB_DIR, timeout=CELL_TIMEOUT)
    finally:
        nbformat.write(nb, tmp_path / path.name)  # the executed copy, for a look after a failure
    wall = time.perf_counter() - start

    probe = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("name") == "stdout").split()
    assert probe[0] == "PWOA-PROBE", probe
    assert Path(probe[1]).resolve() == Path(sys.prefix).resolve(), \
        f"the python3 kernel ran in {probe[1]}, not in this environment ({sys.prefix}); install ipykernel here"
    assert _image_outputs(nb) >= 1, f"{path.name} showed no image"
    if os.environ.get("PWOA_NOTEBOOK_TIMINGS"):
        with open(os.environ["PWOA_NOTEBOOK_TIMINGS"], "a") as f:
            f.write(json.dumps({"notebook": path.stem, "wall_s": round(wall, 1),
                                "kernel_cpu_s": round(float(probe[2]), 1)}) + "\n")


def committed_text(path: Path) -> tuple[str, str]:
    """The notebook as git would commit it (its blob in the index), else the file on disk; and which one it is."""
    rel = path.resolve().relative_to(ROOT).as_posix()
    try:
        result = subprocess.run(["git", "-C", str(ROOT), "show", f":{rel}"], capture_output=True, text=True,
                                encoding="utf-8")
    except FileNotFoundError:  # no git on this machine
        result = None
    if result is not None and result.returncode == 0:
        return result.stdout, "the git index"
    return path.read_text(encoding="utf-8"), "the working tree"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_stripped(path: Path):
    text, where = committed_text(path)
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    hint = f" ({where}; run `make setup-git` once, then `git add` the notebook again)"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {i} has stored outputs" + hint
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count" + hint
    assert "widgets" not in nb.metadata, f"{path.name} stores widget state" + hint
