"""Is it pruning, or size? The capacity control: a dense network of the pruned size, trained with the teacher's
recipe."""
import math

import pandas as pd
import pytest

from pwoa_lab import defaults
from pwoa_lab.cli import main
from pwoa_lab.core.datasets import dataset_info
from pwoa_lab.core.intervals import Interval
from pwoa_lab.core.models import build_model, count_parameters
from pwoa_lab.experiments.capacity import capacity_verdict, teacher_recipe
from pwoa_lab.experiments.explore import Selection, explorer_data
from pwoa_lab.experiments.figures import figure1
from pwoa_lab.io.checkpoint import shipped_teachers
from pwoa_lab.pruning.capacity import TOLERANCE, capacity_scale, pruned_weight_count
from pwoa_lab.pruning.masks import rate_words

RATES = (2, 4, 8, 10, 16)


@pytest.mark.parametrize("dataset,model", [(d, dataset_info(d).default_model) for d in shipped_teachers()]
                         + [("cifar10", "resnet18")])
def test_the_control_is_within_5_percent_of_the_pruned_weights_for_every_shipped_model(dataset, model):
    teacher = build_model(model, dataset)
    for scope in ("all", "hidden"):
        for rate in RATES:
            target = pruned_weight_count(teacher, rate, scope)
            width = capacity_scale(model, dataset, target)
            control = build_model(model, dataset, scale=width.scale)
            assert count_parameters(control) == width.weights
            assert abs(width.weights / target - 1) <= TOLERANCE, (scope, rate, width)
            assert round(width.scale, 4) == width.scale, width  # a short number for tables and keys
            assert target < count_parameters(teacher)


def test_the_pruned_count_is_what_a_prune_leaves():
    teacher = build_model("small_cnn", "digits")
    # conv2 (18,432 weights) and fc1 (131,072) are the hidden layers; at 4x each keeps a quarter
    assert pruned_weight_count(teacher, 4, "hidden") == count_parameters(teacher) - (18432 - 4608) - (131072 - 32768)


def test_a_size_no_width_can_reach_is_refused():
    with pytest.raises(ValueError, match="within 5%"):
        capacity_scale("small_cnn", "digits", 5)


def test_the_verdict_words_follow_the_interval():
    assert capacity_verdict(Interval(5.0, 1.0, 9.0)) == "above"
    assert capacity_verdict(Interval(-10.0, -14.0, -4.0)) == "far below"
    assert capacity_verdict(Interval(0.5, -2.0, 2.5)) == "near"
    assert capacity_verdict(Interval(-2.0, -6.0, 1.0)) == "inconclusive"
    assert capacity_verdict(None) == "inconclusive"


def test_a_teacher_without_its_recipe_is_refused_before_any_run(tmp_path):
    teacher = build_model("small_cnn", "digits")  # made in Python: no TeacherConfig recorded
    with pytest.raises(ValueError, match="teacher's own recipe"):
        teacher_recipe(teacher)
    with pytest.raises(ValueError, match="teacher's own recipe"):
        figure1("digits", rates=(4,), preset="smoke", teacher=teacher, control="capacity", cache_dir=tmp_path,
                progress=False)
    assert not (tmp_path / "prune_row").exists()  # nothing ran


def test_rates_both_ways_and_the_largest_rate_a_model_allows(tmp_path):
    assert [rate_words(r) for r in (8, 10, 20, 100)] == ["8x (87.5%)", "10x (90%)", "20x (95%)", "100x (99%)"]
    with pytest.raises(ValueError, match=r"leave 3 of the 288 weights of conv1.*The largest rate here is 30\.3"):
        figure1("digits", rates=(100,), preset="smoke", cache_dir=tmp_path, progress=False)


@pytest.fixture(scope="module")
def control_run(tmp_path_factory):
    """`pwoa-lab figure1 --control capacity` on digits smoke: (its CSV, printed text, cache folder)."""
    root = tmp_path_factory.mktemp("capacity")
    cache, out = root / "cache", root / "out"
    return cache, out


def test_figure1_with_the_capacity_control_from_the_command_line(control_run, capsys, monkeypatch):
    cache, out = control_run
    monkeypatch.setenv("PWOA_CACHE_DIR", str(cache))
    args = ["figure1", "--dataset", "digits", "--preset", "smoke", "--rates", "4,8", "--methods", "naive,pwoa",
            "--scope", "hidden", "--control", "capacity", "--workers", "2", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    df = pd.read_csv(out / "figure1_digits_smoke.csv")
    control = df[df.method == "capacity"]
    assert sorted(control.rate) == [4.0, 8.0] and control.seed.nunique() == 1
    assert ((control.weights / control.target_weights - 1).abs() <= TOLERANCE).all()
    assert control.pgd.between(0, 100).all() and not control.cached.any()
    assert "The capacity control" in text and "At 4x (75%), pwoa keeps" in text
    # the same command again reads every run, the control's too, from the store
    assert main(args[:-1] + [str(out / "again")]) == 0
    again = pd.read_csv(out / "again" / "figure1_digits_smoke.csv")
    assert again.cached.all() or again[again.method != "teacher"].cached.all()
    assert again[again.method == "capacity"].pgd.tolist() == control.pgd.tolist()


def test_the_explorer_shows_the_control_from_the_cache(control_run, monkeypatch):
    cache, _ = control_run
    sel = Selection("digits", ("naive", "pwoa"), (4.0, 8.0), "hidden", (defaults.SEED,), control=True)
    data = explorer_data(sel, "smoke", cache_dir=cache, compute=False)
    assert (data.table.method == "capacity").sum() == 2
    assert any(line.startswith("At 4x (75%), pwoa keeps") for line in data.verdicts)
    assert not math.isnan(float(data.summary[data.summary.method == "capacity"].pgd.iloc[0]))


def test_a_control_another_process_is_training_is_waited_for_and_read_back(tmp_path):
    """Two commands that ask for the same control at once train it once: the second waits on the entry's lock
    and reads what the first stored."""
    import shutil
    import threading
    import time

    from pwoa_lab.experiments.capacity import capacity_configs, capacity_key, capacity_rows
    from pwoa_lab.io.cache import ResultCache
    from pwoa_lab.io.checkpoint import load_teacher
    from pwoa_lab.training.presets import capacity_overrides, eval_settings

    teacher, _ = load_teacher("digits")
    settings, overrides = eval_settings("digits", "smoke"), capacity_overrides("digits", "smoke")
    args = (teacher, "digits", [8], [0], settings, "hidden", overrides)
    first = capacity_rows(*args, cache_dir=tmp_path / "a", progress=False)  # "the other process"'s result
    key = capacity_key(capacity_configs(teacher, "digits", [8], [0], "hidden", overrides)[0][3], settings)
    assert first.key.tolist() == [key] and not first.cached.any()

    other = ResultCache("capacity_row", tmp_path / "b").lock(key)
    assert other.acquire(blocking=False)  # another process is training this control in cache b
    out = {}
    waiter = threading.Thread(target=lambda: out.update(df=capacity_rows(*args, cache_dir=tmp_path / "b",
                                                                         progress=False)))
    waiter.start()
    time.sleep(2.0)
    assert waiter.is_alive()  # waiting for the lock, not training a second copy
    shutil.copytree(tmp_path / "a" / "capacity_row" / key, tmp_path / "b" / "capacity_row" / key)  # it stores
    other.release()
    waiter.join(timeout=120)
    df = out["df"]
    assert df.cached.all()  # read back, not trained again
    assert df.pgd.tolist() == first.pgd.tolist() and df.weights.tolist() == first.weights.tolist()


class _Interrupt(Exception):
    pass


def test_an_interrupted_control_resumes_from_its_last_epoch_with_the_same_numbers(tmp_path):
    """The control's training state is saved in its store entry after every epoch: run again, it goes on from
    there (one epoch left of two) and ends where an uninterrupted run ends."""
    from pwoa_lab.experiments.capacity import capacity_rows
    from pwoa_lab.io.checkpoint import load_teacher
    from pwoa_lab.training.presets import capacity_overrides, eval_settings

    teacher, _ = load_teacher("digits")
    overrides = {**capacity_overrides("digits", "smoke"), "epochs": 2}
    args = (teacher, "digits", [8], [0], eval_settings("digits", "smoke"), "hidden", overrides)
    whole = capacity_rows(*args, cache_dir=tmp_path / "whole", progress=False)

    def stop_after_the_first_epoch(row):
        if row["epoch"] == 1:
            raise _Interrupt  # as Ctrl-C or the explorer's stop would, after the first epoch's state was saved
    with pytest.raises(_Interrupt):
        capacity_rows(*args, cache_dir=tmp_path / "cut", progress=False, on_epoch=stop_after_the_first_epoch)
    assert len(list((tmp_path / "cut" / "capacity_row").glob("*/state.pt"))) == 1
    assert not list((tmp_path / "cut" / "capacity_row").glob("*/result.json"))
    epochs = []
    resumed = capacity_rows(*args, cache_dir=tmp_path / "cut", progress=False, on_epoch=lambda r: epochs.append(
        r["epoch"]))
    assert epochs == [2]  # only the epoch that was left
    assert not list((tmp_path / "cut" / "capacity_row").glob("*/state.pt"))  # the stored result replaces it
    assert resumed.pgd.tolist() == whole.pgd.tolist() and resumed.natural.tolist() == whole.natural.tolist()


def test_the_explorer_counts_estimates_computes_and_stops_the_controls_with_its_runs(tmp_path):
    """With the tick box on, the controls are missing runs like the others: counted, estimated, computed after the
    pruning runs under one count, and stopped after an epoch like them."""
    from pwoa_lab.experiments import explore as ex
    sel = Selection("digits", ("naive",), (8.0,), "hidden", (0,), control=True)
    before = explorer_data(sel, "smoke", cache_dir=tmp_path, compute=False)
    assert before.missing == [("naive", 8.0, 0), ("capacity", 8.0, 0)]
    assert before.estimate == (ex.DEFAULT_RUN_SECONDS["smoke"] + ex.DEFAULT_CONTROL_SECONDS["smoke"], False)
    runs, epochs = [], []
    stopped = explorer_data(sel, "smoke", cache_dir=tmp_path, on_run=lambda i, n, run: runs.append((i, n, run)),
                            on_epoch=lambda done, n: epochs.append(runs[-1][2][0]),
                            should_stop=lambda: "capacity" in epochs)  # stop in the control's first epoch
    assert runs[0] == (0, 2, ("naive", 8.0, 0)) and runs[-1] == (1, 2, ("capacity", 8.0, 0))
    assert stopped.computed == [("naive", 8.0, 0)] and stopped.missing == [("capacity", 8.0, 0)]
    assert stopped.message().startswith("stopped: 1 of 2 runs computed and kept")
    assert not list((tmp_path / "capacity_row").glob("*/result.json"))  # the stopped control: nothing stored
    again = explorer_data(sel, "smoke", cache_dir=tmp_path)  # the next press computes what is left
    assert again.computed == [("capacity", 8.0, 0)] and again.missing == []
    assert (again.table.method == "capacity").sum() == 1 and any(v.startswith("At 8x (87.5%), naive keeps") for v in again.verdicts)
    # another seed's control is now estimated from the one measured
    other = Selection("digits", ("naive",), (8.0,), "hidden", (1,), control=True)
    seconds, measured = ex.estimate_seconds([("capacity", 8.0, 1)], other, "smoke", tmp_path)
    assert measured and 0 < seconds < ex.DEFAULT_CONTROL_SECONDS["smoke"] * 10
