"""The classroom explorer (pwoa_lab/course/explorer.py, notebooks/explorer.ipynb) in smoke mode: real runs; and how
it is served to a room (pwoa_lab/course/serving.py, `make explorer`).

Every test shares one temporary result cache (module scope): the first computes the smoke default selection
(digits, naive and pwoa at 4x and 16x, seed 0: four runs of seconds), the others read it back; the stop test
computes the same selection in a cache of its own. The real-browser case (Voila + headless Chromium) is in
tests/test_browser.py.
"""
from __future__ import annotations

import base64
import gc
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import pytest

from pwoa_lab.cli import build_parser
from pwoa_lab.course import explorer as ex
from pwoa_lab.course import serving
from pwoa_lab.course.serving import serve_command
from pwoa_lab.experiments import explore as ex_data
from pwoa_lab.experiments.figures import figure1

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
    calls, epochs = [], []
    view = ex.explore(sel, PRESET, teacher, cache_dir=cache, on_run=lambda i, n, run: calls.append((i, n, run)),
                      on_epoch=lambda done, of: epochs.append((done, of)))
    yield view, calls, epochs
    view.close()


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
    view, calls, epochs = first_view
    assert view.computed == view.selection.runs() and view.missing == []
    # on_run: before each run (0..3 of 4), then once at the end
    assert [(i, n) for i, n, _ in calls] == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    # on_epoch: every training epoch of every run, counted from 1 within its run (what moves the bar)
    assert epochs and all(1 <= done <= of for done, of in epochs)
    assert sum(done == of for done, of in epochs) == 4 and sum(done == 1 for done, _ in epochs) == 4
    table = view.table
    assert list(table.method) == ["teacher", "naive", "naive", "pwoa", "pwoa"]
    assert set(table.rate[table.method != "teacher"]) == {4.0, 16.0}
    assert table[["natural", "pgd"]].notna().all().all()
    assert set(view.summary.method) == {"teacher", "naive", "pwoa"}
    assert {"pgd", "pgd_std", "pgd_low", "pgd_high", "seeds"} <= set(view.summary.columns)
    s = view.summary
    assert (s.pgd_low <= s.pgd + 1e-9).all() and (s.pgd <= s.pgd_high + 1e-9).all()
    # the claim per rate in words, decided by intervals (teacher, naive and PwoA are all shown)
    assert len(view.verdicts) == 2
    assert all(any(w in v for w in ("HOLDS", "FAILS", "INCONCLUSIVE")) for v in view.verdicts)
    html = ex.table_output(view.summary, view.verdicts)["data"]["text/html"]
    assert "95% interval" in html and "<li>" in html
    assert set(view.histories.method) == {"naive", "pwoa"} and "val_pgd" in view.histories
    for name in ("figure1", "curves", "plane"):
        assert view.png(name).startswith(b"\x89PNG"), name
    assert "4 of 4 runs shown (4 computed now, 0 read from the cache)" in view.message()


def test_explore_reuses_the_cache_and_follows_the_rate_selection(first_view, cache, teacher):
    view, _, _ = first_view
    again = ex.explore(view.selection, PRESET, teacher, cache_dir=cache, compute=False)
    assert again.computed == [] and again.missing == []
    assert again.table.cached.all()  # every row, the teacher's included, came from the cache
    # the explorer's runs are Figure 1's: `pwoa-lab figure1` (or `make demo`) finds them, and the other way round
    fig1 = figure1("digits", rates=[4, 16], methods=["naive", "pwoa"], preset=PRESET, seeds=[0], teacher=teacher,
                   cache_dir=cache, progress=False, scope="hidden")
    assert len(fig1) == 5 and fig1.cached.all()
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
    for shown in (again, one_rate, partial):
        shown.close()


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

    # no automatic computing (the default): a new rate is reported missing and the button offers it with an
    # estimate from the runs the store measured (the same method, rate and schedule at 4x and 16x are not: a guess)
    assert not app.auto.value
    app.rates[16.0].value = True
    app.rates[8.0].value = True
    assert app.view.missing == [("naive", 8.0, 0), ("pwoa", 8.0, 0)]
    assert not app.compute_button.disabled and "compute 2 missing run(s): about" in app.compute_button.description
    assert "a guess" in app.compute_button.description
    progress = []
    app.progress.observe(lambda c: progress.append(c["new"]), names="value")
    app.compute_button.click()  # computes in a background thread
    assert app.wait(timeout=600) and app.error is None, app.error
    assert app.view.missing == [] and app.view.computed == [("naive", 8.0, 0), ("pwoa", 8.0, 0)]
    assert progress and progress[-1] == app.progress.max == 2 * ex.PROGRESS_STEPS and app.compute_button.disabled
    assert set(app.view.table.rate) == {1.0, 4.0, 8.0, 16.0}


def test_an_invalid_selection_shows_only_its_error(first_view, cache):
    app = ex.explorer_app(PRESET, cache_dir=cache, auto_compute=False)
    app.rates[32.0].value = True  # two runs missing: the button offers them
    assert not app.compute_button.disabled and all(out.outputs for out in app.outputs.values())
    app.methods["naive"].value = app.methods["pwoa"].value = False  # nothing picked
    assert "pick at least one method" in app.status.value and app.error and app.view is None
    # no stale figure or table beside the error, and no button that would compute the last valid selection
    assert all(out.outputs == () for out in app.outputs.values())
    assert app.compute_button.disabled and not re.search(r"\d", app.compute_button.description)  # no "compute 2"
    app.methods["pwoa"].value = True  # valid again: everything comes back
    assert app.error is None and all(out.outputs for out in app.outputs.values())
    assert app.view.missing == [("pwoa", 32.0, 0)] and not app.compute_button.disabled


def test_progress_moves_within_a_run_and_the_clock_ticks(first_view, cache):
    app = ex.explorer_app(PRESET, cache_dir=cache, auto_compute=False)
    app.rates[2.0].value = True
    assert app.view.missing == [("naive", 2.0, 0), ("pwoa", 2.0, 0)]
    seen = []  # (thread, progress value, status) at every change of either
    app.progress.observe(lambda c: seen.append((threading.current_thread().name, c["new"], None)), names="value")
    app.status.observe(lambda c: seen.append((threading.current_thread().name, None, c["new"])), names="value")
    app.compute_button.click()
    assert app.wait(timeout=600) and app.error is None, app.error
    assert app.view.computed == [("naive", 2.0, 0), ("pwoa", 2.0, 0)]
    values = [v for _, v, _ in seen if v is not None]
    # the bar moves with the epochs: it is part-filled before the first run ends, never goes back, ends full
    assert any(0 < v < ex.PROGRESS_STEPS for v in values), values
    assert values == sorted(values) and values[-1] == 2 * ex.PROGRESS_STEPS
    computing = [t for _, _, t in seen if t and t.startswith("computing naive 2x seed 0")]
    assert any("epoch 1 of" in t for t in computing), computing
    # the clock thread rewrote the status while the runs computed (not only between runs)
    assert any(name == "pwoa-explorer-clock" and t for name, _, t in seen), seen
    assert all(re.search(r": \d+ (s|min \d+ s) so far", t) for t in computing), computing
    assert app.progress.layout.visibility == "hidden" and "2 computed now" in app.status.value
    time.sleep(1.5)  # the clock stopped with the runs: the final status stays
    assert "computing" not in app.status.value


def test_stop_keeps_the_finished_runs_and_compute_goes_on(tmp_path, teacher):
    """The button computes in a background thread: the app takes calls meanwhile, "stop" ends the computation at
    the next run start (or epoch), the finished run stays in the cache, and pressing compute again computes only
    the rest. A cache of its own: four missing runs."""
    app = ex.explorer_app(PRESET, cache_dir=tmp_path)
    sel = app.selection().checked()
    runs = sel.runs()
    assert app.view.missing == runs and not app.compute_button.disabled
    while_busy = {}

    def stop_at_the_second_run(change):  # called in the compute thread as run 2 of 4 starts
        if change["new"] == "run 2/4" and not while_busy:
            while_busy.update(controls_disabled=all(c.disabled for c in app._controls),
                              button=app.compute_button.disabled, stop_shown=app.stop_button.layout.display != "none",
                              second_start=app.start_compute(), second_refresh=app.refresh(compute=True))
            app.stop()
    app.progress.observe(stop_at_the_second_run, names="description")
    assert app.start_compute()
    assert app.computing and app.stop_button.layout.display != "none"  # the call returned while runs compute
    assert app.wait(timeout=600) and not app.computing and app.error is None, app.error
    # one computation at a time: controls and button disabled, and neither a second start nor a refresh ran
    assert while_busy == dict(controls_disabled=True, button=True, stop_shown=True, second_start=False,
                              second_refresh=None)
    assert app.view.stopped == 4 and app.view.computed == runs[:1]
    assert ex.missing_runs(sel, PRESET, teacher, tmp_path) == runs[1:]  # the first run is kept, nothing else
    assert "stopped: 1 of 4 runs computed and kept; press compute to go on" in app.status.value
    assert app.view.missing == runs[1:] and "1 of 4 runs shown" in app.status.value
    assert app.stop_button.layout.display == "none" and not any(c.disabled for c in app._controls)
    assert not app.compute_button.disabled and "compute 3 missing run(s)" in app.compute_button.description

    # within a run: a stop after the first epoch drops that run (it is not stored half-trained)
    epochs = []
    with pytest.raises(ex.ComputeStopped) as stopped:
        ex.compute_missing(sel, PRESET, teacher, tmp_path, on_epoch=lambda done, of: epochs.append(done),
                           should_stop=lambda: bool(epochs))
    assert epochs == [1] and stopped.value.computed == [] and stopped.value.runs == runs[1:]
    assert ex.missing_runs(sel, PRESET, teacher, tmp_path) == runs[1:]

    app.progress.unobserve(stop_at_the_second_run, names="description")
    app.compute_button.click()
    assert app.wait(timeout=600) and app.error is None, app.error
    assert app.view.computed == runs[1:] and app.view.missing == [] and app.view.stopped is None
    assert "4 of 4 runs shown (3 computed now, 1 read from the cache)" in app.status.value


def test_the_tick_box_computes_in_the_background_and_a_change_meanwhile_waits(first_view, cache):
    """With "compute missing runs at once" a change computes in the background too; a change that arrives while it
    runs (code, a stale page: the controls are disabled) starts nothing, and the view follows it at the end."""
    app = ex.explorer_app(PRESET, cache_dir=cache, auto_compute=True)
    writers, jobs = [], []

    def change_meanwhile(_change):
        writers.append(threading.current_thread())
        if len(writers) == 1:
            app.rates[16.0].value = True
            jobs.append(app._job)
    app.status.observe(change_meanwhile, names="value")
    app.rates[16.0].value = False  # 4x alone: in the cache, nothing to train
    assert app.wait(timeout=600) and app.error is None, app.error
    # one background computation wrote every status: the change meanwhile started no other
    assert set(writers) == set(jobs) == {app._job} and app._job.name == "pwoa-explorer-compute"
    assert app.updates == 3 and app.view.selection.rates == (4.0, 16.0) and app.view.computed == []


def test_a_shared_server_computes_on_request_only_and_caps_the_runs(first_view, cache, teacher, monkeypatch):
    monkeypatch.setenv("PWOA_EXPLORER_SHARED", "1")
    monkeypatch.setenv("PWOA_EXPLORER_MAX_RUNS", "1")
    app = ex.explorer_app(PRESET, cache_dir=cache)
    assert app.auto.value is False and app.auto.disabled and app.max_runs == 1
    app.methods["naive"].value = False
    app.rates[32.0].value = True  # one run missing (pwoa 32x): a change of the controls does not compute it
    assert app.error is None and app.view.computed == [] and app.view.missing == [("pwoa", 32.0, 0)]
    assert not app.view.refused and not app.compute_button.disabled
    app.seeds.value = (0, 1)  # and pwoa at 4x, 16x, 32x with seed 1: 4 runs missing, the cap is 1
    assert len(app.view.missing) == 4 and app.view.refused
    assert app.compute_button.disabled and "more than 1 at once" in app.compute_button.description
    assert "pick fewer rates, seeds or methods" in app.status.value and "make demo" in app.status.value
    assert all(out.outputs for out in app.outputs.values())  # what the cache holds is still shown
    app.refresh(compute=True)  # a request that gets past the button (a stale page) is refused as well
    assert app.view.computed == [] and len(app.view.missing) == 4
    with pytest.raises(ex.TooManyRuns, match="4 runs"):
        ex.compute_missing(app.selection(), PRESET, teacher, cache, max_runs=3)
    assert len(ex.missing_runs(app.selection(), PRESET, teacher, cache)) == 4  # nothing ran


def test_serve_command_for_this_machine_and_for_a_room(monkeypatch):
    cmd, env = serve_command("127.0.0.1", 8870)
    assert cmd[1:4] == ["-m", "voila", str(NOTEBOOK)] and "--port=8870" in cmd and "--Voila.ip=127.0.0.1" in cmd
    assert f"--MappingKernelManager.cull_idle_timeout={serving.CULL_IDLE_S}" in cmd
    assert f"--MappingKernelManager.cull_interval={serving.CULL_INTERVAL_S}" in cmd
    assert env == {"PWOA_EXPLORER_SHARED": "0", "PWOA_EXPLORER_MAX_RUNS": "0"}  # alone: as before, no cap
    cmd, env = serve_command("0.0.0.0", 8870, cull_idle_s=5, cull_interval_s=1, voila_args=["--debug"])
    assert "--Voila.ip=0.0.0.0" in cmd and "--no-browser" in cmd and cmd[-1] == "--debug"
    assert "--MappingKernelManager.cull_idle_timeout=5" in cmd and "--MappingKernelManager.cull_interval=1" in cmd
    assert env == {"PWOA_EXPLORER_SHARED": "1", "PWOA_EXPLORER_MAX_RUNS": str(serving.ROOM_MAX_RUNS)}
    assert serve_command("10.0.0.5", max_runs=2)[1]["PWOA_EXPLORER_MAX_RUNS"] == "2"
    cmd, env = serve_command("127.0.0.1", shared=True)  # behind a proxy on this machine: a room all the same
    assert env["PWOA_EXPLORER_SHARED"] == "1" and env["PWOA_EXPLORER_MAX_RUNS"] == str(serving.ROOM_MAX_RUNS)
    for bad in (dict(cull_idle_s=0), dict(max_runs=-1)):
        with pytest.raises(ValueError):
            serve_command("0.0.0.0", **bad)
    # what the kernels read back
    for key, value in serve_command("0.0.0.0", max_runs=3)[1].items():
        monkeypatch.setenv(key, value)
    assert serving.room_settings() == (True, 3)
    monkeypatch.setenv("PWOA_EXPLORER_MAX_RUNS", "0")
    assert serving.room_settings() == (True, None)
    monkeypatch.setenv("PWOA_EXPLORER_MAX_RUNS", "many")
    with pytest.raises(ValueError, match="PWOA_EXPLORER_MAX_RUNS"):
        serving.room_settings()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_explorer_serves_a_room_with_host_port_and_cap(monkeypatch):
    def dry_run(*assignments: str) -> list[str]:
        out = subprocess.run(["make", "-n", "explorer", *assignments], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.replace("\\\n", " ")
        (line,) = [ln for ln in out.splitlines() if "pwoa-lab explorer" in ln]
        return shlex.split(line)[1:]  # the arguments of `pwoa-lab`

    args = build_parser().parse_args(dry_run("HOST=0.0.0.0", "PORT=9123", "MAX_RUNS=3", "CULL_IDLE=120"))
    assert (args.host, args.port, args.max_runs, args.cull_idle) == ("0.0.0.0", 9123, 3, 120)
    cmd, env = serve_command(args.host, args.port, args.cull_idle, args.cull_interval, args.max_runs)
    assert env == {"PWOA_EXPLORER_SHARED": "1", "PWOA_EXPLORER_MAX_RUNS": "3"}
    assert "--MappingKernelManager.cull_idle_timeout=120" in cmd
    monkeypatch.setenv("HOST", "lab-pc-7")  # a shell's HOST (the machine's name) does not serve the room
    args = build_parser().parse_args(dry_run())
    assert (args.host, args.port, args.max_runs, args.shared, args.voila_args) == ("127.0.0.1", 8866, None, False, [])
    assert build_parser().parse_args(dry_run("SHARED=1")).shared


def test_pwoa_lab_explorer_hands_over_to_voila(monkeypatch, capsys, tmp_path):
    from pwoa_lab import cli
    from pwoa_lab.cli import explorer as explorer_command
    seen = {}
    monkeypatch.setattr(explorer_command.os, "execvpe", lambda file, args, env: seen.update(file=file, args=args, env=env))
    assert cli.main(["explorer", "--host", "0.0.0.0", "--port", "8871", "--max-runs", "2", "--", "--debug"]) == 0
    assert seen["args"] == serve_command("0.0.0.0", 8871, max_runs=2, voila_args=["--debug"])[0]
    assert seen["file"] == seen["args"][0]
    assert seen["env"]["PWOA_EXPLORER_SHARED"] == "1" and seen["env"]["PWOA_EXPLORER_MAX_RUNS"] == "2"
    assert "to others on this network" in capsys.readouterr().out
    assert cli.main(["explorer", "--notebook", str(tmp_path / "gone.ipynb")]) == 2
    assert "gone.ipynb is missing" in capsys.readouterr().err


def test_notebook_is_stripped_and_only_calls_the_package():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None
    assert "widgets" not in nb.metadata
    assert "defaults.smoke_mode()" in code[0].source  # the kit's one reading of PWOA_SMOKE
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


def test_the_frontier_view_reads_the_budget_grid_from_the_cache(first_view, cache, teacher):
    """The explorer's frontier is what `pwoa-lab frontier` put in the cache: nothing is trained for it. An empty
    cache gives the command that fills it; the preset's own budget alone is said to be no fair comparison yet, with
    that command; the grid gives the fronts, the teacher as a star and the verdicts under the plot."""
    from pwoa_lab.experiments.frontier import cached_frontier_result, frontier
    sel = ex.Selection("digits", ("naive", "pwoa"), (4,), "hidden", (0,))
    command = ("pwoa-lab frontier --dataset digits --preset smoke --rates 4 --scope hidden --seeds 0 "
               "--methods naive,pwoa")
    assert ex_data.frontier_command(sel, PRESET) == command
    nowhere = ex.Selection("digits", ("naive", "pwoa"), (32,), "hidden", (0,))  # no other test computes 32x
    assert cached_frontier_result("digits", [32], ["naive", "pwoa"], [0], PRESET, teacher=teacher, cache_dir=cache,
                                  scope="hidden") is None
    empty = ex.frontier_plot(nowhere, PRESET, None)
    assert not empty.axes[0].axison
    assert ex_data.frontier_command(nowhere, PRESET).replace(" --scope", "\n--scope") in \
        empty.axes[0].texts[0].get_text()

    def star(fig):  # the teacher's marker at its natural / robust accuracy
        return [tuple(line.get_xydata()[0]) for line in fig.axes[0].lines if line.get_marker() == "*"]

    # the default selection's runs are the preset's budget (lr x1) of the frontier: one point per method
    one_budget = ex.explore(sel, PRESET, teacher, cache_dir=cache, compute=False)
    teacher_row = one_budget.table[one_budget.table.method == "teacher"].iloc[0]
    assert star(one_budget.figures["frontier"]) == [(teacher_row.natural, teacher_row.pgd)]
    assert one_budget.frontier_note and command in one_budget.frontier_note
    title = one_budget.figures["frontier"].get_suptitle()
    assert "preset's own budget only" in title and "over the fine-tuning budget" not in title
    cells = ex.frontier_outputs(one_budget, "frontier")
    assert [c["data"]["text/plain"] for c in cells[1:2]] == [one_budget.frontier_note]
    assert "at the preset's budget alone" in cells[-1]["data"]["text/plain"]
    one_budget.close()

    frontier("digits", rates=[4], methods=["naive", "pwoa"], lr_factors=[0.1, 1], seeds=[0], preset=PRESET,
             teacher=teacher, cache_dir=cache, progress=False, scope="hidden", extend=False)
    grid = ex.explore(sel, PRESET, teacher, cache_dir=cache, compute=False)
    points = grid.frontier.points
    assert sorted(points[points.kind == "method"].lr_factor) == [0.1, 0.1, 1.0, 1.0]
    assert grid.frontier_note is None
    fig = grid.figures["frontier"]
    assert fig.axes[0].axison and star(fig) == [(teacher_row.natural, teacher_row.pgd)]
    assert "over the fine-tuning budget" in fig.get_suptitle() and "front: the points of a method" in \
        fig.get_suptitle()
    # the view prints the front comparison in words under the plot, decided by intervals
    assert grid.frontier.verdicts.verdict.iloc[0] in ("pwoa dominates", "naive dominates", "cross", "inconclusive")
    assert points[["natural_low", "robust_low"]].notna().all().all()
    cells = ex.frontier_outputs(grid, "frontier")
    assert "image/png" in cells[0]["data"] and len(cells) == 2
    assert cells[1]["data"]["text/plain"].splitlines()[1:] == grid.frontier_verdicts == [
        f"4x: {v.verdict}. {v.text}" for v in grid.frontier.verdicts.itertuples()]
    grid.close()


def test_smoke_views_say_they_are_no_result_and_tables_drop_empty_columns(first_view, cache):
    app = ex.explorer_app(PRESET, cache_dir=cache)
    view = app.view
    note = ex.smoke_note(PRESET)
    assert note == "smoke check (a few batches), not a result" and ex.smoke_note("quick") == ""
    for name, fig in first_view[0].figures.items():  # in red above the title, as the commands' figures
        assert fig.get_suptitle().startswith(note.upper()), name
    assert note in app.table_heading.value and note in app.frontier_heading.value
    table = app.outputs["table"].outputs[0]["data"]["text/plain"]
    assert f"The paper's claim per rate ({note}; " in table
    assert note in app.outputs["frontier"].outputs[-1]["data"]["text/plain"]  # the frontier's verdicts
    # a column empty in every row is left out (smoke runs skip AutoAttack: no aa column), in HTML and in text
    assert view.summary.aa.isna().all()
    cell = ex.table_output(view.summary.assign(sparsity=float("nan")), view.verdicts, note)["data"]
    header = cell["text/plain"].splitlines()[0].split()
    assert header == ["method", "rate", "seeds", "natural", "fgsm", "pgd"]
    assert "<th>aa</th>" not in cell["text/html"] and "sparsity" not in cell["text/html"]
    assert "sparsity %" in ex.table_output(view.summary)["data"]["text/plain"]


def test_redrawing_keeps_memory_flat(first_view, cache):
    """Every redraw closes the figures it drew and keeps nothing of the view before: changes of a control on
    cached runs leave no figure open and no Python object behind (a kept view would leave tens of thousands).
    100 changes, measured by hand, take minutes: fewer here."""
    try:
        from psutil import Process  # for the report only: RSS moves with the allocator, not with leaks alone
        rss_mib = lambda: Process().memory_info().rss / 2**20  # noqa: E731
    except ImportError:
        rss_mib = lambda: float("nan")  # noqa: E731
    app = ex.explorer_app(PRESET, cache_dir=cache)
    box = app.rates[16.0]
    for _ in range(2):  # warm up: imports, caches, the first PNG encoder
        box.value = not box.value
    gc.collect()
    figures, objects, blocks = plt.get_fignums(), len(gc.get_objects()), sys.getallocatedblocks()
    rss = rss_mib()
    for _ in range(CHANGES):  # an even number: the same selection at the end as at the start
        box.value = not box.value
    gc.collect()
    assert app.error is None and app.view.missing == [] and app.updates == CHANGES + 3
    assert plt.get_fignums() == figures
    grown = (len(gc.get_objects()) - objects, sys.getallocatedblocks() - blocks, rss_mib() - rss)
    print(f"[memory] {CHANGES} redraws: {grown[0]} more objects, {grown[1]} more memory blocks, RSS "
          f"{rss:.0f} MiB + {grown[2]:.1f} MiB")
    assert grown[0] < 1000 and grown[1] < 5000, grown


CHANGES = 10  # redraws in the memory test (2 to 5 s each on one core)


def test_the_estimate_reads_the_measured_runs_else_says_it_guesses(tmp_path):
    import json
    sel = ex.Selection("digits", ("naive",), (4.0,), "hidden", (1,))
    config = ex_data.run_config_of(sel, PRESET, "naive", 4.0, 1, "cpu").to_dict()
    for i, seconds in enumerate((10.0, 20.0, 60.0)):  # three stored runs like it (other seeds): the median counts
        entry = tmp_path / "prune_row" / f"k{i}"
        entry.mkdir(parents=True)
        (entry / "result.json").write_text(json.dumps({"config": {**config, "seed": i},
                                                       "row": {"train_seconds": seconds - 1, "eval_seconds": 1}}))
    assert ex_data.estimate_seconds(sel.runs(), sel, PRESET, tmp_path) == (20.0, True)
    other = ex.Selection("digits", ("naive",), (2.0,), "hidden", (0,))  # a rate nothing was measured at
    assert ex_data.estimate_seconds(other.runs(), other, PRESET, tmp_path) == (ex_data.DEFAULT_RUN_SECONDS[PRESET],
                                                                               False)
    # a stored run written again (here: a slower machine's) is read again, never served from the last refresh
    entry = tmp_path / "prune_row" / "k1"
    record = json.loads((entry / "result.json").read_text())
    (entry / "new.json").write_text(json.dumps({**record, "row": {"train_seconds": 99.0, "eval_seconds": 1}}))
    (entry / "new.json").replace(entry / "result.json")
    assert ex_data.estimate_seconds(sel.runs(), sel, PRESET, tmp_path) == (60.0, True)
    (tmp_path / "prune_row" / "k2" / "result.json").unlink()  # a removed run no longer counts
    assert ex_data.estimate_seconds(sel.runs(), sel, PRESET, tmp_path) == (55.0, True)


def test_datasets_without_their_data_are_not_offered_and_say_why(monkeypatch, tmp_path):
    monkeypatch.setenv("PWOA_DATA_ROOT", str(tmp_path))  # an empty data folder: only the embedded digits
    assert ex.available_datasets("smoke") == ["digits"]
    missing = ex_data.unavailable_datasets("smoke")
    assert set(missing) == {"mnist", "cifar10"}
    assert all("ask your instructor" in line and "digits" in line for line in missing.values())
