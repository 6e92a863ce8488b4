"""Real size and speed (pwoa_lab.pruning.footprint) and the design-space experiment, its plot and its widget view."""
from __future__ import annotations

import copy

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from pwoa_lab.pruning import footprint as F  # noqa: E402
from pwoa_lab.pruning import structured as S  # noqa: E402
from pwoa_lab.experiments.design_space import design_space, mean_std_table, summarize
from pwoa_lab.core.evaluation import EvalSettings
from pwoa_lab.core.models import build_model
from pwoa_lab.course.plots import plot_design_space
from pwoa_lab.pruning import prune_by_magnitude
from pwoa_lab.course.widgets import design_space_view

MNIST = (1, 28, 28)


@pytest.fixture(scope="module")
def three_models():
    torch.manual_seed(0)
    dense = build_model("lenet3", "mnist").eval()
    weight = copy.deepcopy(dense)
    prune_by_magnitude(weight, 4)                      # still masked: footprint handles that itself
    structured = copy.deepcopy(dense)
    S.structured_prune(structured, MNIST, S.fraction_for_rate(structured, MNIST, 4))
    return {"dense": dense, "weight 4x": weight, "structured 4x": structured}


def test_footprint_columns_are_positive_and_structured_is_smaller(three_models):
    table = F.footprint_table(three_models, MNIST, reference=three_models["dense"], batches=(1, 8), repeats=3,
                              warmup=1, threads=1).set_index("model")
    numeric = ["params", "nonzero", "dense_bytes", "sparse_bytes", "ship_bytes", "latency_ms_1", "latency_ms_8"]
    assert (table[numeric] > 0).all().all()
    assert table.loc["structured 4x", "params"] <= table.loc["dense", "params"] / 4
    assert table.loc["structured 4x", "ship_bytes"] < table.loc["dense", "ship_bytes"] / 3
    assert table.loc["weight 4x", "params"] == table.loc["dense", "params"]     # same shape ...
    assert table.loc["weight 4x", "nonzero"] < table.loc["dense", "params"] / 3  # ... a quarter non-zero
    assert table.loc["weight 4x", "sparse_bytes"] < table.loc["weight 4x", "dense_bytes"] / 2
    assert list(table.ship_format) == ["dense", "sparse", "structured"]


def test_latency_is_a_median_in_ms_and_restores_threads(three_models):
    before = torch.get_num_threads()
    ms = F.latency_ms(three_models["structured 4x"], MNIST, batch=2, repeats=3, warmup=1, threads=1)
    assert 0 < ms < 10_000
    assert torch.get_num_threads() == before


@pytest.fixture(scope="module")
def grid(teacher, tmp_path_factory):
    cache = tmp_path_factory.mktemp("ds-cache")
    kw = dict(dataset="digits", rates=(4,), seeds=(0,), structures=("weight", "structured"),
              importances=("magnitude",), schedules=("oneshot",), losses=("naive",), preset="smoke",
              settings=EvalSettings(n=20, aa_n=0), cache_dir=cache, batches=(1, 4), repeats=2, threads=1,
              progress=False, admm_epochs=1, retrain_epochs=1)
    return design_space(teacher, **kw), kw


def test_design_space_rows_axes_and_footprint(grid):
    df, _ = grid
    assert list(df.structure) == ["dense", "weight", "structured"]
    assert set(df.method) == {"teacher", "naive"}
    cols = ["params", "ship_bytes", "latency_ms_1", "latency_ms_4", "pgd", "natural"]
    assert (df[cols] > -1).all().all() and (df[["params", "ship_bytes", "latency_ms_4"]] > 0).all().all()
    by = df.set_index("structure")
    assert by.loc["structured", "params"] <= by.loc["dense", "params"] / 4
    assert by.loc["weight", "params"] == by.loc["dense", "params"]
    assert by.loc["weight", "latency_ms_4"] == by.loc["dense", "latency_ms_4"]   # one architecture, timed once


def test_design_space_second_call_reads_the_cache(grid, teacher):
    df, kw = grid
    again = design_space(teacher, **{**kw, "latency": False})
    assert again[["pgd", "natural"]].equals(df[["pgd", "natural"]])


def test_summaries_plot_and_view(grid):
    df, _ = grid
    s = summarize(df[df.method != "teacher"])
    assert {"pgd_mean", "pgd_std", "n_seeds"} <= set(s.columns)
    assert list(mean_std_table(df[df.method != "teacher"]).columns) == [
        "structure", "importance", "schedule", "method", "rate", "pgd", "aa", "n_seeds"]
    for x in ("ship_bytes", "latency_ms_4"):
        fig = plot_design_space(df, x=x, metric="pgd")
        assert fig.axes and fig.axes[0].get_xscale() == "log"
        plt.close(fig)
    table, fig = design_space_view(df, "ship_bytes", "natural", structures=("structured",))
    assert list(table.structure) == ["structured"]
    plt.close(fig)
