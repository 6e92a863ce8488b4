"""Sweeps: grid validation, the local backend, failures that keep the finished runs, and the Ray backend (a local
Ray cluster started by the test) giving the local backend's table number for number."""
from __future__ import annotations

import pandas as pd
import pytest

from pwoa_lab.training.presets import preset_config
from pwoa_lab.experiments.sweep import grid_fields, grid_points, parse_grid, sweep

SMOKE = dict(dataset="digits", preset="smoke", progress=False)
METRIC_COLUMNS = ["natural", "fgsm", "pgd", "aa", "sparsity", "selected_epoch", "last_epoch", "natural_last",
                  "pgd_last"]


def test_grid_points_is_the_cartesian_product_in_order():
    points = grid_points({"method": ["naive", "pwoa"], "rate": [2, 4, 8]})
    assert len(points) == 6
    assert points[0] == {"method": "naive", "rate": 2} and points[-1] == {"method": "pwoa", "rate": 8}
    assert grid_points([{"method": "pwoa", "mix_ratio": 0.0}]) == [{"method": "pwoa", "mix_ratio": 0.0}]


def test_unknown_grid_field_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown grid field 'lambda_z'.*lambda_x.*temperature"):
        grid_points({"lambda_z": [1.0]})
    with pytest.raises(ValueError, match="'seed' cannot be a grid field: pass seeds="):
        grid_points({"seed": [0, 1]})
    with pytest.raises(ValueError, match="non-empty list"):
        grid_points({"rate": []})
    assert "score_epochs" in grid_fields(["hydra"]) and "score_epochs" not in grid_fields(["pwoa"])


def test_bad_values_fail_before_any_run_with_the_single_run_error(tmp_path):
    with pytest.raises(ValueError) as single:
        preset_config("digits", "smoke", method="pwoa", rate=0.5).resolved()
    with pytest.raises(ValueError) as swept:
        sweep({"rate": [2, 0.5]}, cache_dir=tmp_path, **SMOKE)
    assert str(swept.value) == str(single.value)
    with pytest.raises(ValueError, match="scope"):
        sweep({"scope": ["hidden", "everything"]}, cache_dir=tmp_path, **SMOKE)
    with pytest.raises(ValueError, match="n_per_class"):
        sweep({"n_per_class": [0]}, cache_dir=tmp_path, **SMOKE)
    assert not any(tmp_path.rglob("result.json"))  # nothing ran


def test_fields_a_loss_ignores_do_not_make_new_runs():
    naive = [preset_config("digits", "smoke", method="naive", lambda_x=lx, temperature=t).resolved()
             for lx, t in ((2e-4, 30.0), (2e-2, 1.0))]
    assert naive[0] == naive[1]  # one run serves both grid points
    kd = [preset_config("digits", "smoke", method="kd", lambda_x=lx).resolved() for lx in (2e-4, 2e-2)]
    assert kd[0] == kd[1]
    assert preset_config("digits", "smoke", method="kd", temperature=1.0).resolved().temperature == 1.0
    pwoa = [preset_config("digits", "smoke", method="pwoa", lambda_x=lx).resolved() for lx in (2e-4, 2e-2)]
    assert pwoa[0] != pwoa[1] and pwoa[1].lambda_x == 2e-2


def test_parse_grid_types_values_like_the_config_fields():
    grid = parse_grid(["method=naive,pwoa", "rate=2,4", "lambda_x=2e-4,2e-2", "n_per_class=none,50",
                       "scope=hidden"])
    assert grid == {"method": ["naive", "pwoa"], "rate": [2.0, 4.0], "lambda_x": [2e-4, 2e-2],
                    "n_per_class": [None, 50], "scope": ["hidden"]}
    assert parse_grid(["method=hydra", "score_epochs=1,2"])["score_epochs"] == [1, 2]
    with pytest.raises(ValueError, match="'n_per_class' takes int values or none; got 'many'"):
        parse_grid(["n_per_class=many"])
    with pytest.raises(ValueError, match="FIELD=V1,V2"):
        parse_grid(["rate"])
    with pytest.raises(ValueError, match="unknown grid field 'rates'"):
        parse_grid(["rates=2,4"])


@pytest.mark.slow
def test_a_failing_run_is_reported_and_the_others_kept(tmp_path):
    # a learning rate of 1e12 diverges: the run raises NonFiniteLoss inside its worker process
    grid = {"method": ["naive"], "lr_admm": [5e-4, 1e12]}
    result = sweep(grid, seeds=(0,), cache_dir=tmp_path, workers=2, **SMOKE)
    assert list(result.runs.lr_admm) == [5e-4]
    assert len(result.failed) == 1 and result.failed.lr_admm.iloc[0] == 1e12 and result.failed.seed.iloc[0] == 0
    assert result.failed.error.iloc[0].startswith("NonFiniteLoss: loss term")
    # rerun: the finished run comes from the cache, only the failed one is computed again (and fails again)
    again = sweep(grid, seeds=(0,), cache_dir=tmp_path, **SMOKE)
    assert again.submitted == 1 and bool(again.runs.cached.iloc[0])
    assert again.runs.pgd.iloc[0] == result.runs.pgd.iloc[0]


@pytest.fixture()
def local_ray():
    ray = pytest.importorskip("ray", reason="the ray backend needs the cluster extra: pip install -e '.[cluster]'")
    from pwoa_lab.experiments.jobs import start_local_ray_defaults
    start_local_ray_defaults()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_backend_gives_the_local_table_and_then_serves_the_cache(local_ray, tmp_path):
    grid = {"method": ["naive", "pwoa"], "rate": [2, 4]}
    # two local workers run one torch thread each, as each one-CPU Ray task does: the same arithmetic
    local = sweep(grid, seeds=(0, 1), cache_dir=tmp_path / "local", workers=2, **SMOKE)
    on_ray = sweep(grid, seeds=(0, 1), cache_dir=tmp_path / "ray", backend="ray", **SMOKE)
    assert on_ray.submitted == 8 and on_ray.failed.empty and len(on_ray.runs) == 8
    key = ["method", "rate", "seed"]
    pd.testing.assert_frame_equal(local.runs[key + METRIC_COLUMNS], on_ray.runs[key + METRIC_COLUMNS])
    pd.testing.assert_frame_equal(local.summary, on_ray.summary)
    assert (local.runs.key == on_ray.runs.key).all()
    # the driver stored the workers' results, pruned weights included
    assert len(list((tmp_path / "ray").rglob("model.pt"))) == 8
    again = sweep(grid, seeds=(0, 1), cache_dir=tmp_path / "ray", backend="ray", **SMOKE)
    assert again.submitted == 0 and again.runs.cached.all()
    pd.testing.assert_frame_equal(again.runs[key + METRIC_COLUMNS], on_ray.runs[key + METRIC_COLUMNS])


@pytest.mark.slow
def test_cli_sweep_writes_the_table_and_the_plot(tmp_path, capsys, monkeypatch):
    from pwoa_lab.cli import main
    monkeypatch.setenv("PWOA_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["sweep", "--dataset", "digits", "--preset", "smoke", "--grid", "method=naive", "--grid", "rate=2,4",
            "--seeds", "0", "--workers", "1", "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    runs = pd.read_csv(tmp_path / "out" / "sweep_digits_smoke.csv")
    assert list(runs.rate) == [2.0, 4.0] and set(runs.method) == {"naive"} and runs.pgd.between(0, 100).all()
    assert (tmp_path / "out" / "sweep_digits_smoke_pgd.png").stat().st_size > 0
    assert "2 runs (2 computed" in capsys.readouterr().out
    assert main(argv) == 0  # same command: served from the cache, written beside the first files
    assert "2 runs (0 computed" in capsys.readouterr().out
    assert (tmp_path / "out" / "sweep_digits_smoke-2.csv").exists()
    assert main(["sweep", "--preset", "smoke", "--grid", "rates=2", "--out", str(tmp_path / "out")]) == 2
    assert "unknown grid field 'rates'; valid fields:" in capsys.readouterr().err


def test_plot_sweep_draws_one_line_per_hue_and_method():
    import matplotlib
    matplotlib.use("Agg")
    from pwoa_lab.course.plots import plot_sweep
    rows = [dict(method=m, rate=r, lambda_x=lx, seed=s, pgd=10.0 * s + lx * 100)
            for m in ("naive", "pwoa") for r in (4.0, 8.0) for lx in (0.0, 2e-4, 2e-2) for s in (0, 1, 2)]
    fig = plot_sweep(pd.DataFrame(rows), x="lambda_x", metric="pgd", hue="rate")
    ax = fig.axes[0]
    assert len(ax.containers) == 4  # (naive, pwoa) x (4x, 8x), each with its error bars
    line = ax.containers[0].lines[0]
    assert list(line.get_ydata()) == pytest.approx([10.0, 10.02, 12.0])  # the mean over the three seeds
    with pytest.raises(ValueError, match="no column 'lambda_y'"):
        plot_sweep(pd.DataFrame(rows), x="lambda_y")
