"""The course notebooks: each one executes headless in smoke mode, and the committed files carry no outputs.

Every notebook runs in a fresh "python3" kernel (jupyter_client starts it with this interpreter, i.e. the
project's venv; checked below) with PWOA_SMOKE=1, MPLBACKEND=Agg and PWOA_CACHE_DIR set to one temporary
folder shared by all the notebooks of a test run, so that notebooks 03-05 reuse the pruning runs that 02 trained
(each notebook still runs alone, only slower). A notebook passes when every cell runs without error and at least
one cell shows an image. Every notebook runs a second time with DATASET = "cifar10" (the shipped VGG-small
teacher, the real CIFAR-10 files under $PWOA_DATA_ROOT; skipped with the reason where they are absent), and a
notebook pointed at a folder without the CIFAR-10 files must stop in its set-up cell with a message that names them.

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
            "06_pruning_design_space", "07_is_the_comparison_fair", "08_how_sure_are_we"]
CELL_TIMEOUT = 600  # seconds per cell
DATASET_LINE = 'DATASET = "digits"'  # the parameters cell's line that picks the data set
# every notebook on CIFAR-10 too (the same code paths with 3x32x32 images and the VGG-small teacher): about 7
# minutes of the suite on 2 CPU cores
CIFAR10_NOTEBOOKS = NOTEBOOKS

PROBE = "import sys as _s, resource as _r\n_u = _r.getrusage(_r.RUSAGE_SELF)\nprint('PWOA-PROBE', _s.prefix, _u.ru_utime + _u.ru_stime)"


@pytest.fixture(scope="module")
def smoke_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pwoa-notebook-cache")


def test_all_course_notebooks_present():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


def _image_outputs(nb) -> int:
    return sum(1 for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
               if "image/png" in out.get("data", {}))


def _run_in_smoke_mode(path: Path, dataset: str | None, cache: Path, out: Path, monkeypatch) -> None:
    """Execute `path` headless in smoke mode (its DATASET set to `dataset`, or left as it is) and check that it
    ran in this environment and showed an image."""
    monkeypatch.setenv("PWOA_SMOKE", "1")
    monkeypatch.setenv("PWOA_CACHE_DIR", str(cache))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PWOA_DOWNLOAD", "0")
    nb = nbformat.read(path, as_version=4)
    if dataset is not None:
        set_dataset(nb, dataset)
    nb.cells.append(new_code_cell(PROBE))  # which interpreter ran it, and its CPU time
    start = time.perf_counter()
    try:
        execute_notebook(nb, NB_DIR, timeout=CELL_TIMEOUT)
    finally:
        nbformat.write(nb, out / path.name)  # the executed copy, for a look after a failure
    wall = time.perf_counter() - start

    probe = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("name") == "stdout").split()
    assert probe[0] == "PWOA-PROBE", probe
    assert Path(probe[1]).resolve() == Path(sys.prefix).resolve(), \
        f"the python3 kernel ran in {probe[1]}, not in this environment ({sys.prefix}); install ipykernel here"
    assert _image_outputs(nb) >= 1, f"{path.name} showed no image"
    if os.environ.get("PWOA_NOTEBOOK_TIMINGS"):
        with open(os.environ["PWOA_NOTEBOOK_TIMINGS"], "a") as f:
            f.write(json.dumps({"notebook": path.stem, "dataset": dataset or "digits", "wall_s": round(wall, 1),
                                "kernel_cpu_s": round(float(probe[2]), 1)}) + "\n")


def set_dataset(nb, dataset: str) -> None:
    """Set the DATASET of a notebook's parameters cell, as a user edits it."""
    cells = [c for c in nb.cells if c.cell_type == "code" and DATASET_LINE in c.source]
    assert len(cells) == 1, f"expected one parameters cell with {DATASET_LINE!r}, found {len(cells)}"
    cells[0].source = cells[0].source.replace(DATASET_LINE, f'DATASET = "{dataset}"')


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_mode(path: Path, smoke_cache: Path, tmp_path: Path, monkeypatch):
    _run_in_smoke_mode(path, None, smoke_cache, tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("path", CIFAR10_NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_cifar10_in_smoke_mode(path: Path, cifar10_root: Path, cifar10_teacher,
                                                tmp_path_factory, tmp_path: Path, monkeypatch):
    """DATASET = "cifar10" (the shipped VGG-small teacher, the real CIFAR-10 files under $PWOA_DATA_ROOT)."""
    monkeypatch.setenv("PWOA_DATA_ROOT", str(cifar10_root))
    cache = tmp_path_factory.getbasetemp() / "pwoa-notebook-cache-cifar10"
    cache.mkdir(exist_ok=True)
    _run_in_smoke_mode(path, "cifar10", cache, tmp_path, monkeypatch)


def test_a_notebook_without_the_cifar10_files_says_what_is_missing(tmp_path: Path, monkeypatch):
    """The set-up cell names the missing files and how to point the kit at them, before anything runs."""
    monkeypatch.setenv("PWOA_DATA_ROOT", str(tmp_path))
    from pwoa_lab import course
    with pytest.raises(FileNotFoundError, match="cifar10 data is missing.*data_batch_1.*PWOA_DATA_ROOT.*digits"):
        course.setup("cifar10", cache_dir=tmp_path / "cache", quiet=True)


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
