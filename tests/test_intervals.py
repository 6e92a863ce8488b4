"""How sure the kit is: bootstrap intervals over seeds and test images (coverage, pairing), verdicts decided by
intervals, a budget grid that is never read at its edge, per-image outcomes in the run store, and the CLI's
interval columns on digits (smoke preset)."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from pwoa_lab.core.evaluation import EvalSettings, PointOutcomes, evaluate_points
from pwoa_lab.core.intervals import (Interval, accuracy_interval, decide, difference_interval, images_to_settle,
                                     seed_interval, settle_hint)
from pwoa_lab.experiments.figures import claim_in_words, claim_verdict
from pwoa_lab.experiments.frontier import LR_LIMITS, edge_extensions
from pwoa_lab.experiments.runs import cached_prune_row, load_cached_model, load_points, prune_row
from pwoa_lab.io.cache import ResultCache
from pwoa_lab.training.presets import preset_config

SETTINGS = EvalSettings(n=60, aa_n=0)


# ----------------------------------------------------------------------------------------------- intervals

@pytest.mark.parametrize("seeds, flip", [(1, 0.0), (3, 0.1)])
def test_the_95_interval_covers_a_known_accuracy_in_92_to_98_percent_of_studies(seeds, flip):
    """Simulated studies with a known accuracy of 30%: images correct with probability 0.3, each seed's model
    re-drawing a share `flip` of the outcomes (training noise). The interval must cover 30 about 95% of the time."""
    rng = np.random.default_rng(0)
    studies, covered = 300, 0
    for k in range(studies):
        base = rng.random(200) < 0.3
        y = np.stack([np.where(rng.random(200) < flip, rng.random(200) < 0.3, base) for _ in range(seeds)])
        iv = accuracy_interval(y, n_resamples=1000, seed=k)
        covered += iv.low <= 30.0 <= iv.high
    assert 0.92 <= covered / studies <= 0.98


def test_the_paired_interval_of_a_difference_is_narrower_when_methods_agree_on_most_images():
    rng = np.random.default_rng(1)
    base = rng.random(359) < 0.5
    a = np.stack([base ^ (rng.random(359) < 0.05) for _ in range(3)])
    b = np.stack([base ^ (rng.random(359) < 0.05) for _ in range(3)])
    paired, unpaired = difference_interval(a, b), difference_interval(a, b, paired=False)
    assert paired.estimate == pytest.approx(unpaired.estimate)
    assert paired.low <= paired.estimate <= paired.high
    assert paired.high - paired.low < 0.5 * (unpaired.high - unpaired.low)


def test_intervals_are_reproducible_and_degenerate_outcomes_give_a_point():
    y = np.random.default_rng(2).random((3, 100)) < 0.4
    assert accuracy_interval(y) == accuracy_interval(y)
    zero = accuracy_interval(np.zeros((3, 50)))
    assert (zero.estimate, zero.low, zero.high) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same test images"):
        difference_interval(np.ones(10), np.ones(12))


def test_seed_interval_is_a_t_interval_over_seeds():
    iv = seed_interval([1.0, 2.0, 3.0])
    assert iv.estimate == 2.0 and iv.low == pytest.approx(2 - 4.303 / math.sqrt(3), abs=1e-3)
    assert math.isinf(seed_interval([1.5]).high)
    with pytest.raises(ValueError, match="no NaN"):
        seed_interval([1.0, float("nan")])


# ----------------------------------------------------------------------------------------------- verdicts

def test_the_three_verdict_words_on_constructed_intervals():
    below, above, across = Interval(-5, -8, -2), Interval(6, 4, 8), Interval(1, -2, 4)
    assert decide(below, 0) == "below" and decide(above, 0) == "above" and decide(across, 0) == "inconclusive"
    # the claim: naive - teacher/3 below 0, teacher - PwoA below the tolerance (3 points)
    assert claim_verdict(below, Interval(1, 0, 2), 3.0) == "holds"
    assert claim_verdict(above, Interval(1, 0, 2), 3.0) == "fails"          # naive keeps too much
    assert claim_verdict(below, Interval(9, 6, 12), 3.0) == "fails"          # PwoA loses too much
    assert claim_verdict(below, Interval(3, 1, 5), 3.0) == "inconclusive"    # the gap's interval holds 3
    assert claim_verdict(None, Interval(1, 0, 2), 3.0) == "inconclusive"


def test_each_claim_verdict_is_one_plain_sentence_that_names_what_decided_it():
    def row(collapse: Interval, gap: Interval, verdict: str, settle: str = "") -> dict:
        return {"rate": 8.0, "teacher": 34.0, "naive": 1.0, "pwoa": 22.0, "oneshot": float("nan"),
                "naive_vs_collapse": collapse.estimate, "naive_vs_collapse_low": collapse.low,
                "naive_vs_collapse_high": collapse.high, "pwoa_gap": gap.estimate, "pwoa_gap_low": gap.low,
                "pwoa_gap_high": gap.high, "verdict": verdict, "settle": settle}
    below, fails_gap = Interval(-10.3, -11, -9), Interval(12, 9, 15)
    lines = claim_in_words(pd.DataFrame([row(below, Interval(1, 0, 2), "holds"), row(below, fails_gap, "fails"),
                                         row(below, Interval(3, 1, 5), "inconclusive", "about 900 test images")]))
    first = [line.split(" The numbers")[0] for line in lines]
    assert first[0] == ("At 8x (87.5%) pruning the paper's claim HOLDS: naive pruning keeps 1.0% PGD accuracy, under "
                        "a third of the dense teacher's 34.0%, while PwoA keeps 22.0%, within 3 points of it.")
    # only the part of the claim that failed is named: here PwoA's gap, not naive pruning's collapse
    assert "FAILS: PwoA keeps 22.0% PGD accuracy, more than 3 points below" in first[1] and "collapse" not in first[1]
    assert "INCONCLUSIVE" in first[2] and first[2].endswith("about 900 test images.")
    assert "the teacher minus PwoA +12.0 [+9.0, +15.0]" in lines[1]  # the deciding interval follows


def test_an_inconclusive_verdict_says_how_many_images_would_settle_it():
    iv = Interval(2.0, -1.0, 5.0)                                      # half-width 3, 2 points from 0
    assert images_to_settle(iv, 0.0, 100) == math.ceil(100 * (3 / 2) ** 2)          # symmetric: either side
    assert "225 test images" in settle_hint(iv, 0.0, 100)
    assert "more seeds" in settle_hint(iv, 0.0, 359, test_size=200)
    assert math.isinf(images_to_settle(Interval(0.0, -1, 1), 0.0, 100))
    # a lopsided interval whose low edge sits on the threshold: a few more images, never "now n would settle it"
    assert "edge touches the threshold" in settle_hint(Interval(9.0, 3.0, 15.0), 3.0, 100)


# ----------------------------------------------------------------------------------------------- the grid's edge

def _validation(best_lr_robust: float, best_lr_natural: float, lrs=(0.1, 1 / 3, 1, 3)) -> pd.DataFrame:
    rows = []
    for lr in lrs:
        for seed in (0, 1):
            rows.append({"method": "naive", "rate": 8.0, "lr_factor": lr, "epoch_factor": 1.0, "seed": seed,
                         "val_pgd": 50.0 if math.isclose(lr, best_lr_robust) else 10.0,
                         "val_natural": 95.0 if math.isclose(lr, best_lr_natural) else 80.0})
    return pd.DataFrame(rows)


def _points(lrs):
    return [{"method": "naive", "rate": 8.0, "lr_factor": lr, "epoch_factor": 1.0} for lr in lrs]


def test_the_grid_extends_past_an_edge_that_holds_a_best_point():
    new, notes = edge_extensions(_validation(0.1, 1.0), _points((0.1, 1 / 3, 1, 3)))
    assert [p["lr_factor"] for p in new] == [pytest.approx(0.1 / 3)]           # robust best at the smallest lr
    assert "smallest lr factor" in notes[0]["why"]
    new, _ = edge_extensions(_validation(1.0, 3.0), _points((0.1, 1 / 3, 1, 3)))
    assert [p["lr_factor"] for p in new] == [pytest.approx(9.0)]               # natural best at the largest
    assert edge_extensions(_validation(1 / 3, 1.0), _points((0.1, 1 / 3, 1, 3)))[0] == []   # inside: nothing


def test_the_grid_extension_stops_at_its_limit_and_says_so():
    lrs = (LR_LIMITS[0] * 2, 0.1, 1.0)
    new, notes = edge_extensions(_validation(lrs[0], 0.1, lrs), _points(lrs))
    assert new == [] and "limit" in notes[0]["why"] and math.isnan(notes[0]["factor"])


# ----------------------------------------------------------------------------------------------- the run store

def test_per_image_outcomes_pack_and_unpack_exactly():
    rng = np.random.default_rng(3)
    points = PointOutcomes(np.r_[0:40, 50:57], rng.random(47) < 0.5, rng.random(47) < 0.3, np.arange(13),
                           rng.random(13) < 0.2)
    record = json.loads(json.dumps(points.to_record()))
    assert PointOutcomes.from_record(record) == points
    assert record["index"] == [[0, 40], [50, 57]]


def test_per_image_outcomes_read_from_the_cache_equal_a_recomputation(digits_teacher, tmp_path):
    teacher, _ = digits_teacher
    config = preset_config("digits", "smoke", method="naive", rate=4, retrain_epochs=1, admm_epochs=1)
    row, _ = prune_row(teacher, config, SETTINGS, tmp_path, progress=False)
    stored = load_points(row["key"], cache_dir=tmp_path)
    model = load_cached_model(row["key"], teacher, tmp_path)
    again = evaluate_points(model, "digits", config.resolved().eps, SETTINGS)[1]
    assert stored == again and len(stored.index) == 60
    assert 100 * stored.pgd.mean() == pytest.approx(row["pgd"])
    # a run stored without its outcomes gets them from its stored weights (no training), the same ones
    cache = ResultCache("prune_row", tmp_path)
    record = cache.get(row["key"])
    del record["points"]
    cache.put(row["key"], record)
    hit, _ = cached_prune_row(teacher, config, SETTINGS, tmp_path)
    assert hit["cached"] and load_points(row["key"], cache_dir=tmp_path) == stored


def test_a_run_records_where_it_ran(digits_teacher, tmp_path):
    import torch
    teacher, _ = digits_teacher
    row, _ = prune_row(teacher, preset_config("digits", "smoke", method="oneshot", rate=4), SETTINGS, tmp_path,
                       progress=False)
    assert row["device"] == "cpu" and row["threads"] == 1 and row["torch"] == str(torch.__version__)
    assert row["cpu"] == str(torch.backends.cpu.get_cpu_capability())


# ----------------------------------------------------------------------------------------------- the CLI

def _check_interval_columns(frame: pd.DataFrame, metrics) -> None:
    for m in metrics:
        ok = frame[[m, f"{m}_low", f"{m}_high"]].dropna()
        assert len(ok) and (ok[f"{m}_low"] <= ok[m] + 1e-9).all() and (ok[m] <= ok[f"{m}_high"] + 1e-9).all()


def test_cli_figure1_and_frontier_print_intervals_and_interval_verdicts(tmp_path, monkeypatch, capsys):
    from pwoa_lab.cli import main
    monkeypatch.setenv("PWOA_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["figure1", "--dataset", "digits", "--preset", "smoke", "--rates", "4", "--methods",
                 "oneshot,naive,pwoa", "--seeds", "0,1", "--out", str(tmp_path / "f1")]) == 0
    out = capsys.readouterr().out
    assert "95% interval" in out and "wholly on one side" in out
    # a smoke run says so before its table and on every verdict line, and its table has no empty column
    assert out.index("SMOKE CHECK") < out.index(" method ")
    verdicts = [line for line in out.splitlines() if line.startswith("- ")]
    assert verdicts and all(line.startswith("- [smoke check") for line in verdicts)
    assert any(w in out for w in ("HOLDS", "FAILS", "INCONCLUSIVE")) and "NaN" not in out and " nan " not in out
    summary = pd.read_csv(tmp_path / "f1" / "figure1_digits_smoke_summary.csv")
    _check_interval_columns(summary, ["natural", "pgd"])
    assert main(["frontier", "--dataset", "digits", "--preset", "smoke", "--rates", "4", "--methods", "naive,pwoa",
                 "--budgets", "lr=1", "--seeds", "0,1", "--out", str(tmp_path / "fr")]) == 0
    out = capsys.readouterr().out
    assert "95% interval" in out and "PwoA's front against naive's" in out
    assert "SMOKE CHECK" in out and "- [smoke check" in out and "budget: how the fine-tuning ran" in out
    points = pd.read_csv(tmp_path / "fr" / "frontier_digits_smoke.csv")
    _check_interval_columns(points, ["natural", "robust"])
