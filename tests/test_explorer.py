"""The classroom explorer (pwoa_lab/explorer.py, notebooks/explorer.ipynb) in smoke mode: real runs.

Every test shares one temporary result cache (module scope): the first computes the smoke default selection
(digits, naive and pwoa at 4x and 16x, seed 0: four runs of seconds), the others read it back. The real-browser
case (Voila + headless Chromium) is in tests/test_browser.py.
"""
from __future__ import annotations

import base64
from pathlib import Path

import nbformat
import pytest

from pwoa_lab.course import explorer as ex

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "explorer.ipynb"
PRESET = "smoke"


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("explorer-cache")


@pytest.fixture(scope="module")
def first_view(cache, teacher):
    """The smoke default selection, computed into the fresh cache."""
    sel = ex.default_selection(PRESET)
    calls = []
    view = ex.explore(sel, PRESET, teacher, cache_dir=cache, on_run=lambda i, n, run: calls.append((i, n, run)))
    return view, calls


def _png(out) -> str:
    (item,) = out.outputs
    return item["data"]["image/png"]


def test_selection_is_checked():
    sel = ex.Selection("digits", ("pwoa", "naive"), (16, 4, 4), "hidden", (0,)).checked()
    assert sel.rates == (4.0, 16.0) and sel.methods == ("naive", "pwoa")
    assert len(sel.runs()) == 4
    for bad, match in [(dict(rates=()), "rate"), (dict(methods=()), "method"), (dict(scope="most"), "scope"),
                       (dict(rates=(1,)), "rate"), (dict(seeds=(0, 0)), "seeds"), (dict(methods=("magic",)), "magic")]:
        with pytest.raises(ValueError, match=match):
            ex.Selection(**{**ex.Selection().__dict__, **bad}).checked()
    assert ex.default_selection("smoke").checked().runs() == [("naive", 4.0, 0), ("naive", 16.0, 0),
                                                              ("pwoa", 4.0, 0), ("pwoa", 16.0, 0)]
    assert "digits" in ex.available_datasets("smoke")


def test_explore_computes_the_missing_runs_with_progress(first_view):
    view, calls = first_view
    assert view.computed == view.selection.runs() and view.missing == []
    # on_run: before each run (0..3 of 4), then once at the end
    assert [(i, n) for i, n, _ in calls] == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    table = view.table
    assert list(table.method) == ["teacher", "naive", "naive", "pwoa", "pwoa"]
    assert set(table.rate[table.method != "teacher"]) == {4.0, 16.0}
    assert table[["natural", "pgd"]].notna().all().all()
    assert set(view.summary.method) == {"teacher", "naive", "pwoa"}
    assert {"pgd", "pgd_std", "seeds"} <= set(view.summary.columns)
    assert set(view.histories.method) == {"naive", "pwoa"} and "val_pgd" in view.histories
    for name in ("figure1", "curves", "plane"):
        assert view.png(name).startswith(b"\x89PNG"), name
    assert "4 of 4 runs shown (4 computed now, 0 read from the cache)" in view.message()


def test_explore_reuses_the_cache_and_follows_the_rate_selection(first_view, cache, teacher):
    view, _ = first_view
    again = ex.explore(view.selection, PRESET, teacher, cache_dir=cache, compute=False)
    assert again.computed == [] and again.missing == []
    assert again.table.cached.all()  # every row, the teacher's included, came from the cache
    assert again.table.drop(columns=["cached", "eval_seconds"]).equals(view.table.drop(columns=["cached",
                                                                                                "eval_seconds"]))
    one_rate = ex.explore(ex.Selection("digits", ("naive", "pwoa"), (4,), "hidden", (0,)), PRESET, teacher,
                          cache_dir=cache, compute=True)
    assert one_rate.computed == []  # a subset: nothing to compute
    assert set(one_rate.table.rate) == {1.0, 4.0}
    assert one_rate.png("figure1") != again.png("figure1")
    assert one_rate.png("curves") != again.png("curves")
    # a new rate and seed: reported missing, not computed, the cached runs still shown
    wider = ex.Selection("digits", ("naive", "pwoa"), (4, 8), "hidden", (0, 1))
    assert ex.missing_runs(wider, PRESET, teacher, cache) == [("naive", 8.0, 0), ("pwoa", 8.0, 0),
                                                              ("naive", 4.0, 1), ("naive", 8.0, 1),
                                                              ("pwoa", 4.0, 1), ("pwoa", 8.0, 1)]
    partial = ex.explore(wider, PRESET, teacher, cache_dir=cache, compute=False)
    assert len(partial.missing) == 6 and set(partial.table.rate) == {1.0, 4.0}
    assert "2 of 8 runs shown" in partial.message()
    # another scope is another setting
    assert len(ex.missing_runs(ex.Selection("digits", ("pwoa",), (4,), "all", (0,)), PRESET, teacher, cache)) == 1


def test_app_redraws_on_a_rate_change_and_computes_on_request(first_view, cache):
    app = ex.explorer_app(PRESET, cache_dir=cache)
    assert app.error is None, app.error
    assert app.selection() == ex.default_selection(PRESET).checked()
    assert app.view.computed == [] and app.view.missing == []  # the first view came from the cache
    before = _png(app.outputs["figure1"])
    assert base64.b64decode(before).startswith(b"\x89PNG")
    assert "<table" in app.outputs["table"].outputs[0]["data"]["text/html"]
    assert app.compute_button.disabled

    app.rates[16.0].value = False  # the browser test clicks this box
    assert app.error is None, app.error
    after = _png(app.outputs["figure1"])
    assert after != before and app.updates == 2
    assert set(app.view.summary.rate) == {1.0, 4.0}

    # no automatic computing: a new rate is reported missing and the button offers it
    app.auto.value = False
    app.rates[16.0].value = True
    app.rates[8.0].value = True
    assert app.view.missing == [("naive", 8.0, 0), ("pwoa", 8.0, 0)]
    assert not app.compute_button.disabled and "2 missing" in app.compute_button.description
    progress = []
    app.progress.observe(lambda c: progress.append(c["new"]), names="value")
    app.compute_button.click()
    assert app.error is None, app.error
    assert app.view.missing == [] and app.view.computed == [("naive", 8.0, 0), ("pwoa", 8.0, 0)]
    assert progress and progress[-1] == 2 and app.compute_button.disabled
    assert set(app.view.table.rate) == {1.0, 4.0, 8.0, 16.0}

    app.methods["naive"].value = app.methods["pwoa"].value = False  # nothing picked: said so, nothing breaks
    assert "pick at least one method" in app.status.value and app.error


def test_notebook_is_stripped_and_only_calls_the_package():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None
    assert "widgets" not in nb.metadata
    assert 'os.environ.get("PWOA_SMOKE", "0") == "1"' in code[0].source
    assert "explorer_app(" in code[-1].source and sum(len(c.source.splitlines()) for c in code) < 15


@pytest.mark.slow
def test_notebook_runs_in_smoke_mode(first_view, cache, monkeypatch):
    """The notebook in a real kernel (as Voila runs it). It reads the runs the tests above cached, unless a
    package file changed since this process started (the cache key holds the code's fingerprint): then it
    computes them again, which is fine too."""
    from nbformat.v4 import new_code_cell

    from pwoa_lab.course import execute_notebook
    monkeypatch.setenv("PWOA_SMOKE", "1")
    monkeypatch.setenv("PWOA_CACHE_DIR", str(cache))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(new_code_cell("_app = _\nprint('PROBE', _app.error, len(_app.view.missing), "
                                  "len(_app.outputs['figure1'].outputs))"))
    execute_notebook(nb, NOTEBOOK.parent, timeout=600)
    shown = [o for o in nb.cells[-2].outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert shown, "the app cell displayed no widget"
    probe = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert probe.split() == ["PROBE", "None", "0", "1"], probe
