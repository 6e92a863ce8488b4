"""Figure-1 experiment, its cache and its plot, on tiny real digits runs."""
from __future__ import annotations

import json
import math

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

from pwoa_lab.io.cache import ResultCache
from pwoa_lab.core.evaluation import EvalSettings
from pwoa_lab.experiments.figures import figure1, phenomenon, time_to_reach
from pwoa_lab.experiments.runs import load_cached_model, prune_row
from pwoa_lab.utils import model_fingerprint
from pwoa_lab.training.presets import preset_config
from pwoa_lab.course.plots import plot_figure1

SETTINGS = EvalSettings(n=60, aa_n=0)


@pytest.fixture(scope="module")
def fig1(teacher, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    df = figure1("digits", rates=(4,), methods=("naive", "pwoa"), preset="smoke", teacher=teacher,
                 settings=SETTINGS, cache_dir=cache, progress=False)
    return df, cache


def test_figure1_table_has_teacher_row_and_one_row_per_method_and_rate(fig1):
    df, _ = fig1
    assert list(df.method) == ["teacher", "naive", "pwoa"]
    assert df.loc[df.method == "teacher", "rate"].item() == 1.0
    assert df.loc[df.method == "teacher", "sparsity"].item() == 0.0
    assert (df.loc[df.method != "teacher", "sparsity"] - 0.75).abs().max() < 0.01
    for col in ("natural", "fgsm", "pgd"):
        assert df[col].between(0, 100).all()
    # FGSM and PGD never above natural accuracy on the same images
    assert (df.pgd <= df.natural).all() and (df.fgsm <= df.natural).all()
    assert not df.cached.any()


def test_figure1_second_call_comes_from_the_cache_with_identical_numbers(fig1, teacher):
    df, cache = fig1
    again = figure1("digits", rates=(4,), methods=("naive", "pwoa"), preset="smoke", teacher=teacher,
                    settings=SETTINGS, cache_dir=cache, progress=False)
    assert again.cached.all()
    cols = ["natural", "fgsm", "pgd", "sparsity", "train_seconds"]
    pd.testing.assert_frame_equal(df[cols], again[cols])


def test_changed_parameter_never_returns_a_stale_result(fig1, teacher):
    _, cache = fig1
    row, _ = prune_row(teacher, preset_config("digits", "smoke", method="naive", rate=4, seed=7), SETTINGS,
                       cache_dir=cache, progress=False)
    assert row["cached"] is False
    row2, _ = prune_row(teacher, preset_config("digits", "smoke", method="naive", rate=4), EvalSettings(n=50, aa_n=0),
                        cache_dir=cache, progress=False)
    assert row2["cached"] is False


def test_cache_entry_records_config_seed_versions_device_and_model(fig1, teacher):
    _, cache = fig1
    row, _ = prune_row(teacher, preset_config("digits", "smoke", method="pwoa", rate=4), SETTINGS, cache_dir=cache,
                       progress=False)
    assert row["cached"]
    entry = json.loads((ResultCache("prune_row", cache).folder(row["key"]) / "result.json").read_text())
    assert {"config", "seed", "versions", "device", "history", "row"} <= set(entry)
    assert entry["config"]["method"] == "pwoa" and entry["seed"] == 1234
    model = load_cached_model(row["key"], teacher, cache)
    assert sum(int((p == 0).sum()) for n, p in model.named_parameters() if n.endswith("weight")) > 0


def test_damaged_cache_entry_is_ignored_and_recomputed(teacher, tmp_path):
    config = preset_config("digits", "smoke", method="naive", rate=2)
    row, _ = prune_row(teacher, config, SETTINGS, cache_dir=tmp_path, progress=False)
    path = ResultCache("prune_row", tmp_path).folder(row["key"]) / "result.json"
    path.write_text(path.read_text()[:50])          # a half-written file from an interrupted run
    again, _ = prune_row(teacher, config, SETTINGS, cache_dir=tmp_path, progress=False)
    assert again["cached"] is False and again["pgd"] == row["pgd"]
    assert json.loads(path.read_text())["row"]["pgd"] == row["pgd"]


def test_unwritable_cache_warns_and_still_returns_the_result(teacher, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    config = preset_config("digits", "smoke", method="naive", rate=2)
    with pytest.warns(UserWarning, match="cannot write the result cache"):
        row, history = prune_row(teacher, config, SETTINGS, cache_dir=blocker / "cache", progress=False)
    assert 0 <= row["natural"] <= 100 and len(history) > 0
    assert blocker.read_text().startswith("a file")


def test_model_fingerprint_tracks_weights(teacher):
    import copy
    import torch
    other = copy.deepcopy(teacher)
    assert model_fingerprint(other) == model_fingerprint(teacher)
    with torch.no_grad():
        other.fc2.bias[0] += 1e-3
    assert model_fingerprint(other) != model_fingerprint(teacher)


def test_phenomenon_and_plot(fig1):
    df, cache = fig1
    check = phenomenon(df, "pgd", rates=(4,), cache_dir=cache)
    teacher = df.loc[df.method == "teacher", "pgd"].item()
    assert check.teacher.item() == teacher
    assert check.pwoa_gap.item() == pytest.approx(teacher - df.loc[df.method == "pwoa", "pgd"].item())
    # the gap's paired interval holds its estimate, and the verdict is one of the three words
    assert check.pwoa_gap_low.item() <= check.pwoa_gap.item() <= check.pwoa_gap_high.item()
    assert check.verdict.item() in ("holds", "fails", "inconclusive")
    fig = plot_figure1(df)
    assert len(fig.axes) == 2  # natural and pgd (aa skipped: not computed)


def test_time_to_reach_counts_only_sparse_phases():
    h = pd.DataFrame({"phase": ["admm", "admm", "retrain", "retrain"], "train_seconds": [1.0, 2.0, 3.0, 4.0],
                      "val_pgd": [90.0, 80.0, 50.0, 70.0]})
    assert time_to_reach(h, 60.0) == 4.0        # the dense-ish ADMM epochs do not count
    assert time_to_reach(h, 95.0) != time_to_reach(h, 95.0)  # NaN: never reached


def test_figure1_rejects_bad_rates(teacher):
    with pytest.raises(ValueError, match="rate"):
        figure1("digits", rates=(0.5,), teacher=teacher, progress=False)


def test_figure1_with_two_worker_processes_gives_the_same_table(fig1, teacher, tmp_path):
    """Parallel runs seed themselves like sequential ones, and the evaluation seeds its attacks: same numbers.
    (Every run computes with defaults.RUN_THREADS threads, in this process or in a worker: the condition for
    bit-identical float results on a CPU; tests/test_run_store.py checks it with 2 threads in the caller.)"""
    df, _ = fig1
    par = figure1("digits", rates=(4,), methods=("naive", "pwoa"), preset="smoke", teacher=teacher,
                  settings=SETTINGS, cache_dir=tmp_path, progress=False, workers=2)
    cols = ["method", "rate", "natural", "fgsm", "pgd", "sparsity"]
    pd.testing.assert_frame_equal(par[cols], df[cols])
    assert not par.cached.any()


def test_evaluation_does_not_depend_on_the_global_rng(teacher):
    import torch
    from pwoa_lab.core.evaluation import evaluate_row
    torch.manual_seed(1)
    a = evaluate_row(teacher, "digits", 0.2, SETTINGS)
    torch.manual_seed(2)
    b = evaluate_row(teacher, "digits", 0.2, SETTINGS)
    assert {k: a[k] for k in ("natural", "fgsm", "pgd")} == {k: b[k] for k in ("natural", "fgsm", "pgd")}


@pytest.mark.parametrize("workers", [0, -1, 1.5, "2"])
def test_bad_workers_rejected(teacher, workers):
    with pytest.raises((ValueError, TypeError), match="workers"):
        figure1("digits", rates=(4,), methods=("naive",), preset="smoke", teacher=teacher, settings=SETTINGS,
                use_cache=False, progress=False, workers=workers)


# ----------------------------------------------------------------------------------------------- Figure 3

def test_figure3_summary_time_ratios_and_training_subset(teacher, tmp_path):
    from pwoa_lab.experiments.figures import figure3
    curves, summary = figure3("digits", rate=4, mix_ratios=(0, 1), methods=("pwoa", "advprune"), preset="smoke",
                              teacher=teacher, settings=SETTINGS, cache_dir=tmp_path, progress=False,
                              n_per_class=5)
    assert list(zip(summary.method, summary.mix_ratio)) == [("pwoa", 0.0), ("pwoa", 1.0), ("advprune", 0.0),
                                                            ("advprune", 1.0)]
    ref = curves[(curves.method == "pwoa") & (curves.mix_ratio == 0)]
    assert summary.target_val_pgd.iloc[0] == ref.val_pgd.iloc[-1]
    # PwoA r = 0 reaches its own final accuracy at the latest at its own end: ratio in (0, 1]
    assert 0 < summary.time_ratio.iloc[0] <= 1
    for row in summary.itertuples():  # every ratio is NaN or the run's first sparse epoch at the target
        hist = curves[(curves.method == row.method) & (curves.mix_ratio == row.mix_ratio)]
        expected = time_to_reach(hist, row.target_val_pgd) / ref.train_seconds.iloc[-1]
        assert (row.time_ratio == expected) or (row.time_ratio != row.time_ratio and expected != expected)
    # n_per_class=5: 50 training images; smoke digits batch 64 -> one batch an epoch
    entries = [json.loads(p.read_text()) for p in tmp_path.rglob("*.json")]
    configs = [e["config"] for e in entries if isinstance(e, dict) and "config" in e]
    assert configs and all(c["n_per_class"] == 5 for c in configs)
    _, summary2 = figure3("digits", rate=4, mix_ratios=(0, 1), methods=("pwoa", "advprune"), preset="smoke",
                              teacher=teacher, settings=SETTINGS, cache_dir=tmp_path, progress=False,
                              n_per_class=5)
    assert summary2.cached.all()
    pd.testing.assert_frame_equal(summary2.drop(columns="cached"), summary.drop(columns="cached"))


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10", True])
def test_figure3_rejects_bad_n_per_class(teacher, bad):
    from pwoa_lab.experiments.figures import figure3
    with pytest.raises(ValueError, match="n_per_class"):
        figure3("digits", mix_ratios=(0,), methods=("pwoa",), preset="smoke", teacher=teacher, settings=SETTINGS,
                use_cache=False, progress=False, n_per_class=bad)


def test_layer_sensitivity_prunes_one_layer_at_a_time(teacher):
    from pwoa_lab.experiments.analyses import layer_sensitivity
    from pwoa_lab.core.evaluation import evaluate_row
    from pwoa_lab.pruning import keep_count
    df = layer_sensitivity(teacher, "digits", 8, n=60).set_index("pruned")
    assert list(df.index) == ["none", "conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight", "all", "hidden"]
    sizes = {k: teacher.get_parameter(k).numel() for k in df.index[1:5]}
    for key, numel in sizes.items():
        assert df.loc[key, "weights"] == numel - keep_count(numel, 8)
    assert df.loc["all", "weights"] == sum(df.loc[k, "weights"] for k in sizes)
    assert df.loc["hidden", "weights"] == df.loc["conv2.weight", "weights"] + df.loc["fc1.weight", "weights"]
    base = evaluate_row(teacher, "digits", 0.2, SETTINGS)
    assert df.loc["none", "natural"] == base["natural"] and df.loc["none", "pgd"] == base["pgd"]
    # the shipped digits teacher: its two smallest layers carry most of the robustness lost to one-shot pruning
    assert df.loc["hidden", "pgd"] > df.loc["all", "pgd"]


def test_run_jobs_with_priority_returns_results_in_job_order():
    from pwoa_lab.experiments.jobs import run_jobs
    jobs = [(pow, (2, i)) for i in range(5)]
    assert run_jobs(jobs, workers=2, progress=False, priority=[0, 4, 1, 3, 2]) == [1, 2, 4, 8, 16]


def test_finetune_drift_starts_every_run_from_the_same_one_shot_model(teacher, tmp_path):
    from pwoa_lab.core.attacks import accuracy
    from pwoa_lab.experiments.analyses import finetune_drift
    from pwoa_lab.core.data import load_dataset
    from pwoa_lab.course.plots import plot_finetune_drift
    df = finetune_drift(teacher, "digits", 8, methods=("naive", "kd"), lrs=(5e-4, 5e-5), epochs=2, preset="smoke",
                        cache_dir=tmp_path, progress=False)
    assert list(df.columns) == ["method", "lr", "epoch", "train_seconds", "val_natural", "val_pgd"]
    runs = df[df.method != "teacher"]
    assert len(runs) == 2 * 2 * 3 and set(runs.epoch) == {0, 1, 2}
    start = runs[runs.epoch == 0]
    assert start.val_natural.nunique() == 1 and start.val_pgd.nunique() == 1
    # the dense teacher's row is the teacher's own validation accuracy
    config = preset_config("digits", "smoke").resolved()
    val = load_dataset("digits", "val").head(config.val_n)
    t = df[df.method == "teacher"].iloc[0]
    assert t.val_natural == 100 * accuracy(teacher, val.x, val.y) and 0 < t.val_pgd < t.val_natural
    # one-shot 8x on every layer costs this small CNN natural accuracy; cross-entropy fine-tuning at the larger
    # lr wins much of it back
    assert start.val_natural.iloc[0] < t.val_natural - 10
    naive = runs[(runs.method == "naive") & (runs.lr == 5e-4)].set_index("epoch")
    assert naive.loc[2, "val_natural"] > naive.loc[0, "val_natural"] + 10
    again = finetune_drift(teacher, "digits", 8, methods=("naive", "kd"), lrs=(5e-4, 5e-5), epochs=2,
                           preset="smoke", cache_dir=tmp_path, progress=False)
    pd.testing.assert_frame_equal(again, df)  # from the cache: same numbers
    plot_finetune_drift(df, "digits 8x")


@pytest.mark.parametrize("kwargs", [dict(epochs=0), dict(epochs=1.5), dict(lrs=()), dict(lrs=(-1e-3,)),
                                    dict(methods=("advprune",)), dict(rate=1)])
def test_finetune_drift_rejects_bad_input(teacher, kwargs):
    from pwoa_lab.experiments.analyses import finetune_drift
    with pytest.raises(ValueError):
        finetune_drift(teacher, "digits", **{"rate": 8, **kwargs}, preset="smoke", use_cache=False, progress=False)


def test_source_fingerprint_changes_when_a_module_is_edited(tmp_path):
    import shutil
    from pwoa_lab.io.cache import PACKAGE_DIR, source_fingerprint
    copy = tmp_path / "pwoa_lab"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pt"))
    assert source_fingerprint(copy) == source_fingerprint(PACKAGE_DIR)   # the same files, the same fingerprint
    hsic = copy / "core" / "hsic.py"
    hsic.write_text(hsic.read_text() + "\n# an edit\n")
    assert source_fingerprint(copy) != source_fingerprint(PACKAGE_DIR)


def test_cached_row_is_not_served_after_the_code_changed(teacher, tmp_path, monkeypatch):
    import pwoa_lab.io.cache
    config = preset_config("digits", "smoke", method="naive", rate=4, retrain_epochs=1, admm_epochs=1)
    first, _ = prune_row(teacher, config, SETTINGS, tmp_path, progress=False)
    again, _ = prune_row(teacher, config, SETTINGS, tmp_path, progress=False)
    assert not first["cached"] and again["cached"]
    monkeypatch.setattr(pwoa_lab.io.cache, "code_fingerprint", lambda: "edited-code")  # as if hsic.py had changed
    edited, _ = prune_row(teacher, config, SETTINGS, tmp_path, progress=False)
    assert not edited["cached"] and edited["key"] != first["key"]


# ----------------------------------------------------------------------------------------------- seeds, controls

def test_seed_summary_gives_mean_and_sample_std_per_method_and_rate():
    from pwoa_lab.experiments.figures import seed_summary
    df = pd.DataFrame({"dataset": "digits", "method": ["teacher", "pwoa", "pwoa", "pwoa", "naive", "naive"],
                       "rate": [1.0, 4.0, 4.0, 4.0, 4.0, 4.0], "seed": [0, 0, 1, 2, 0, 1],
                       "pgd": [34.0, 30.0, 33.0, 27.0, 1.0, 3.0], "sparsity": [0.0, 0.75, 0.75, 0.75, 0.75, 0.75]})
    s = seed_summary(df, ["pgd"]).set_index("method")
    assert list(s.index) == ["teacher", "naive", "pwoa"]           # teacher, then the methods in the kit's order
    assert s.loc["pwoa", "pgd"] == pytest.approx(30.0) and s.loc["pwoa", "seeds"] == 3
    assert s.loc["pwoa", "pgd_std"] == pytest.approx(3.0)          # sample std of 30, 33, 27
    assert s.loc["naive", "pgd_std"] == pytest.approx(2 ** 0.5)
    assert math.isnan(s.loc["teacher", "pgd_std"])                  # one evaluation: no spread to report
    # no run of this hand-made table is in the store: no interval, and no verdict word but "inconclusive"
    assert math.isnan(s.loc["pwoa", "pgd_low"])
    check = phenomenon(df, "pgd", rates=(4,))
    assert check.pwoa.item() == pytest.approx(30.0) and check.verdict.item() == "inconclusive"
    assert "not in the run store" in check.settle.item()


def test_figure1_runs_every_method_and_rate_once_per_seed(teacher, tmp_path):
    df = figure1("digits", rates=(4,), methods=("oneshot", "naive"), preset="smoke", seeds=(0, 1), teacher=teacher,
                 settings=SETTINGS, cache_dir=tmp_path, progress=False, retrain_epochs=1, admm_epochs=1)
    runs = df[df.method != "teacher"]
    assert sorted(zip(runs.method, runs.seed)) == [("naive", 0), ("naive", 1), ("oneshot", 0), ("oneshot", 1)]
    once = runs[runs.method == "oneshot"]
    assert once.pgd.nunique() == 1 and (once.train_seconds == 0).all()   # no training: the seed changes nothing
    with pytest.raises(ValueError, match="seeds"):
        figure1("digits", rates=(4,), methods=("naive",), preset="smoke", seeds=(0, 0), teacher=teacher)


def test_oneshot_trains_nothing_and_equals_magnitude_pruning(teacher):
    import copy
    import torch
    from pwoa_lab.pruning import apply_masks, magnitude_masks, remove_masks
    from pwoa_lab.experiments.runs import run_config
    for mode in ("layer", "global"):
        result = run_config(teacher, preset_config("digits", "smoke", method="oneshot", rate=8, scope="hidden",
                                                   mode=mode), progress=False)
        expected = copy.deepcopy(teacher)
        apply_masks(expected, magnitude_masks(expected, 8, "hidden", mode))
        remove_masks(expected)
        assert len(result.history) == 0 and result.train_seconds == 0 and result.selected_epoch == 0
        for (name, a), b in zip(expected.state_dict().items(), result.model.state_dict().values()):
            assert torch.equal(a, b), (mode, name)


def test_selection_picks_the_epoch_it_says_on_a_crafted_history():
    from pwoa_lab.training.loop import select_epoch
    h = pd.DataFrame({"phase": ["admm", "admm", "retrain", "retrain", "retrain", "retrain"],
                      "epoch": [1, 2, 3, 4, 5, 6],
                      "val_pgd": [95.0, 60.0, 45.8, float("nan"), 45.8, 31.4],
                      "val_natural": [90.0, 91.0, 92.0, 93.0, 94.0, 99.0]})
    assert select_epoch(h, "last", ["retrain"]) == 6
    # the ADMM epoch's 95 is not a sparse model; the tie 45.8 goes to the later epoch; the unvalidated epoch 4 never
    assert select_epoch(h, "best_val_pgd", ["retrain"]) == 5
    assert select_epoch(h, "best_val_natural", ["retrain"]) == 6
    assert select_epoch(h.drop(columns="val_pgd"), "best_val_pgd", ["retrain"]) == 6   # nothing validated: last
    with pytest.raises(ValueError, match="selection"):
        select_epoch(h, "best_test_pgd", ["retrain"])


def test_selection_never_reads_the_test_split(teacher, monkeypatch):
    import pwoa_lab.core.data
    from pwoa_lab.training.loop import select_epoch
    from pwoa_lab.experiments.runs import run_config
    real = pwoa_lab.core.data.load_dataset

    def no_test(name, split="train", *args, **kwargs):
        assert split != "test", "a training run read the test split"
        return real(name, split, *args, **kwargs)

    monkeypatch.setattr(pwoa_lab.core.data, "load_dataset", no_test)
    monkeypatch.setattr(pwoa_lab.experiments.runs, "load_dataset", no_test)
    config = preset_config("digits", "smoke", method="naive", rate=4, retrain_epochs=3, admm_epochs=1, eval_every=1)
    result = run_config(teacher, config, progress=False)
    assert result.config.select == "best_val_pgd"                           # the default of a pruning run
    assert result.selected_epoch == select_epoch(result.history, "best_val_pgd", ["retrain"])


def test_learning_curve_separates_data_from_steps(teacher, tmp_path):
    from pwoa_lab.experiments.analyses import learning_curve, one_shot
    from pwoa_lab.core.evaluation import evaluate_row
    from pwoa_lab.course.plots import plot_learning_curve
    settings = EvalSettings(n=None, aa_n=0)
    curve = learning_curve(teacher, "digits", rates=(8,), methods=("naive",), sizes=(12, 120), fixed_steps=19,
                           steps=(19, 114), fixed_size=120, preset="smoke", settings=settings, scope="hidden",
                           cache_dir=tmp_path, progress=False)
    batch = preset_config("digits", "smoke").batch_size
    data, steps = curve[curve.axis == "data"], curve[curve.axis == "steps"]
    assert list(data.n_per_class) == [12, 120] and set(steps.n_per_class) == {120}
    # whole epochs: steps = epochs x batches per epoch, as close to the target as whole epochs allow
    for r in curve[curve.axis != "control"].itertuples():
        batches = math.ceil(10 * r.n_per_class / batch)
        assert r.steps == r.epochs * batches
        if r.axis == "data":  # about the fixed 19 steps, whatever the data size
            assert abs(r.steps - 19) < batches
    assert list(steps.steps) == [19, 114]
    # the same (images, steps) on both axes is one run: the same numbers
    same = curve[(curve.n_per_class == 120) & (curve.steps == 19)]
    assert len(same) == 2 and same.pgd.nunique() == 1 and same.natural.nunique() == 1
    # the control is the teacher, magnitude-pruned, evaluated like every row
    control = curve[curve.method == "oneshot"].iloc[0]
    direct = evaluate_row(one_shot(teacher, 8, "hidden"), "digits", 0.2, settings)
    assert (control.natural, control.pgd, control.steps) == (direct["natural"], direct["pgd"], 0)
    # cross-entropy fine-tuning on natural images: more steps on the same images cost robustness
    longest = steps[steps.steps == 114].iloc[0]
    assert longest.pgd < control.pgd - 10, curve
    fig = plot_learning_curve(curve)
    assert [len(ax.lines) for ax in fig.axes] == [2, 2]  # naive + the one-shot line in each panel
