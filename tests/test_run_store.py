"""The run store under parallelism (issue 24): a run's numbers do not depend on the number of workers, and
processes that share a cache and an output folder compute each run once and keep their output sets apart."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from pwoa_lab.core.evaluation import EvalSettings
from pwoa_lab.experiments.batch import run_configs
from pwoa_lab.experiments.runs import load_cached_model
from pwoa_lab.io.cache import ResultCache, compute_once
from pwoa_lab.training.presets import preset_config
from pwoa_lab.utils import reserve_paths, torch_threads

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = EvalSettings(n=60, aa_n=0)
ROW_COLUMNS = ("natural", "fgsm", "pgd", "natural_last", "pgd_last", "sparsity", "selected_epoch")


def _kit_env(**extra: str) -> dict[str, str]:
    """The environment of a `python -m pwoa_lab.cli` child process: this checkout's package, no downloads, CPU."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "PWOA_DOWNLOAD": "0", "PWOA_DEVICE": "cpu", **extra}


def test_torch_threads_sets_the_count_inside_and_restores_the_callers():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), torch_threads(1):
            raise RuntimeError("a failing run")
        assert torch.get_num_threads() == 2  # restored on an error too
    finally:
        torch.set_num_threads(before)


def test_a_run_gives_the_same_weights_and_row_with_one_worker_or_two(teacher, tmp_path):
    """Problem 1: with 2 threads in the calling process (a 2-core machine's default), one worker used to compute
    in-process with 2 threads and two workers with 1 each, so the float sums and the weights differed. Every run
    now computes with defaults.RUN_THREADS threads: the pruned weights are equal bit for bit."""
    configs = [preset_config("digits", "smoke", method="pwoa", rate=4),
               preset_config("digits", "smoke", method="naive", rate=4)]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        one = run_configs(teacher, configs, SETTINGS, cache_dir=tmp_path / "w1", workers=1, progress=False,
                          errors="raise")
        assert torch.get_num_threads() == 2  # the caller's count is restored after the runs
        two = run_configs(teacher, configs, SETTINGS, cache_dir=tmp_path / "w2", workers=2, progress=False,
                          errors="raise")
    finally:
        torch.set_num_threads(before)
    assert one.submitted == two.submitted == 2
    for (row1, hist1), (row2, hist2) in zip(one.results, two.results):
        assert {k: row1[k] for k in ROW_COLUMNS} == {k: row2[k] for k in ROW_COLUMNS}
        assert list(hist1.val_pgd) == list(hist2.val_pgd)
        assert row1["key"] == row2["key"]  # the same cache key: whichever ran first is what later reads get
        model1 = load_cached_model(row1["key"], teacher, tmp_path / "w1").state_dict()
        model2 = load_cached_model(row2["key"], teacher, tmp_path / "w2").state_dict()
        assert list(model1) == list(model2)
        for name in model1:
            assert torch.equal(model1[name], model2[name]), f"{row1['method']}: {name} differs"


def test_an_output_set_takes_one_free_suffix_for_all_its_files(tmp_path):
    (tmp_path / "fig.png").write_text("an older picture")
    paths = reserve_paths([tmp_path / "fig.csv", tmp_path / "fig_summary.csv", tmp_path / "fig.png"])
    assert [p.name for p in paths] == ["fig-2.csv", "fig_summary-2.csv", "fig-2.png"]
    assert (tmp_path / "fig.png").read_text() == "an older picture"
    assert not (tmp_path / "fig.csv").exists()  # the set with a taken member was released whole


def test_sets_reserved_at_once_never_share_or_mix_a_suffix(tmp_path):
    names = [tmp_path / "fig.csv", tmp_path / "fig_summary.csv", tmp_path / "fig.png"]
    start, sets = threading.Barrier(8), []

    def reserve():
        start.wait()
        sets.append(reserve_paths(names))

    threads = [threading.Thread(target=reserve) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    suffixes = []
    for paths in sets:
        stems = {p.name.replace("_summary", "").rsplit(".", 1)[0] for p in paths}
        assert len(stems) == 1, f"a mixed set: {[p.name for p in paths]}"
        suffixes.append(stems.pop())
    assert sorted(suffixes) == sorted(["fig"] + [f"fig-{i}" for i in range(2, 9)])
    assert len(list(tmp_path.iterdir())) == 24


def test_a_lock_held_by_a_killed_process_is_free_again(tmp_path):
    """A process killed while it computes a run leaves its lock file behind, but not the lock (flock)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pwoa_lab.io.cache import ResultCache\n"
         f"lock = ResultCache('prune_row', {str(tmp_path)!r}).lock('k')\nassert lock.acquire()\n"
         "print('held', flush=True)\ntime.sleep(600)"],
        env=_kit_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = ResultCache("prune_row", tmp_path).lock("k")
        assert not lock.acquire(blocking=False)  # held by the live process
        holder.kill()
        holder.wait(timeout=30)
        assert lock.acquire(blocking=False)
        lock.release()
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_a_read_only_cache_gives_a_free_lock(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("where the cache folder should be")
    lock = ResultCache("prune_row", blocker / "cache").lock("k")
    assert lock.acquire(blocking=False)  # nothing to share: no process can store there
    lock.release()


@pytest.mark.slow
def test_two_figure1_commands_at_once_compute_each_run_once_and_write_separate_sets(tmp_path):
    """Problem 2: two commands on the same cache and --out used to compute every run each, and to mix their
    output files' suffixes. Now one computes a run while the other waits and reads it, and each command's CSV,
    summary and PNG share one suffix."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = [sys.executable, "-m", "pwoa_lab.cli", "figure1", "--preset", "smoke", "--rates", "4", "--methods",
            "pwoa", "--workers", "1", "--out", str(out)]
    env = _kit_env(PWOA_CACHE_DIR=str(cache))
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
             for _ in range(2)]
    results = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in results]
    stem = "figure1_digits_smoke"
    assert sorted(os.listdir(out)) == sorted(f"{stem}{part}{s}{ext}" for s in ("", "-2")
                                             for part, ext in (("", ".csv"), ("_summary", ".csv"), ("", ".png")))
    tables = [pd.read_csv(out / f"{stem}{s}.csv") for s in ("", "-2")]
    for method in ("teacher", "pwoa"):
        rows = [t[t.method == method].iloc[0] for t in tables]
        assert sorted(bool(r.cached) for r in rows) == [False, True], method  # computed by one, read by the other
        assert [r.pgd for r in rows][0] == [r.pgd for r in rows][1]
        assert [r.natural for r in rows][0] == [r.natural for r in rows][1]
    assert len(list((cache / "prune_row").glob("*/result.json"))) == 1
    assert all((out / f"{stem}{s}.png").stat().st_size > 0 for s in ("", "-2"))


@pytest.mark.slow
def test_ctrl_c_during_a_parallel_figure1_keeps_the_finished_runs_and_says_how_to_resume(tmp_path):
    """Problem 4: Ctrl-C (SIGINT to the terminal's whole process group) used to print a traceback from the
    command and from each worker. Now: one line that says what was kept and that the same command resumes, exit
    130, and the runs stored before it stay in the cache."""
    cache = tmp_path / "cache"
    argv = [sys.executable, "-m", "pwoa_lab.cli", "figure1", "--preset", "smoke", "--rates", "2,4,8,16",
            "--methods", "naive,pwoa", "--workers", "2", "--out", str(tmp_path / "out")]
    proc = subprocess.Popen(argv, env=_kit_env(PWOA_CACHE_DIR=str(cache)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 600
        while not list(cache.glob("prune_row/*/result.json")) and time.monotonic() < deadline \
                and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, "the command ended before a run was stored"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "leaked semaphore" not in err
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert len(lines) == 1 and "run the same command again to resume" in lines[0] and str(cache) in lines[0]
    kept = list(cache.glob("prune_row/*/result.json"))
    assert 1 <= len(kept) < 8
    assert f"interrupted; {len(kept)} run(s) finished by this command are kept" in lines[0]  # the count is true
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_compute_once_waits_for_a_held_entry_and_computes_it_only_if_nobody_stored_it(tmp_path):
    """Entries another process holds are waited for: read back where it stored them, computed here where it
    stopped without storing."""
    cache = ResultCache("prune_row", tmp_path)
    stored: dict[str, int] = {}
    rounds: list[list[str]] = []

    def compute(mine, locks):
        rounds.append(list(mine))
        for item in mine:
            assert locks[item].held  # computed under its lock
            stored[item] = 1

    held = {k: ResultCache("prune_row", tmp_path).lock(k) for k in ("b", "c")}
    assert all(lock.acquire(blocking=False) for lock in held.values())  # "another process" holds b and c
    worker = threading.Thread(target=compute_once, args=(cache, ["a", "b", "c"], str, stored.__contains__, compute))
    worker.start()
    time.sleep(1.0)
    assert rounds == [["a"]] and worker.is_alive()  # a computed; b and c waited for
    stored["b"] = 2  # the other process stores b ...
    held["b"].release()
    held["c"].release()  # ... and stops without storing c
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert rounds == [["a"], ["c"]] and stored == {"a": 1, "b": 2, "c": 1}
