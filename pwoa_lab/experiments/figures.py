"""The paper's figures as DataFrames: Figure 1 (robustness vs pruning rate) and Figure 3 (robustness vs
training time over mix ratios), each run a cached `prune_row`, plus the checks that read them."""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch.nn as nn

from pwoa_lab import defaults
from pwoa_lab.core.data import DATASETS, check_n_per_class, dataset_info
from pwoa_lab.core.evaluation import METRIC_WORDS, EvalSettings
from pwoa_lab.core.intervals import Interval, decide, images_to_settle, seed_interval, settle_hint
from pwoa_lab.experiments.capacity import capacity_configs, capacity_rows
from pwoa_lab.experiments.confidence import add_intervals, contrast_intervals, group_outcomes
from pwoa_lab.experiments.jobs import check_backend, check_workers
from pwoa_lab.experiments.runs import resolve_teacher, teacher_row
from pwoa_lab.experiments.sweep import check_seeds, summarize, sweep
from pwoa_lab.pruning.masks import rate_words
from pwoa_lab.training.presets import capacity_overrides, eval_settings, fig3_defaults, preset_config
from pwoa_lab.training.registry import CAPACITY, TEACHER, method_order, method_with_role
from pwoa_lab.utils import check_rate, get_device

FIG1_COLUMNS = ["dataset", "method", "rate", "seed", "natural", "fgsm", "pgd", "aa", "aa_points", "sparsity",
                "selected_epoch", "last_epoch", "natural_last", "pgd_last", "train_seconds", "eval_seconds", "cached",
                "device", "cpu", "torch", "threads", "key"]
SUMMARY_METRICS = ("natural", "fgsm", "pgd", "aa", "natural_last", "pgd_last")
CONTROLS = (None, "capacity")  # the reference rows figure1 can add beside the teacher (see `figure1`'s control)
CAPACITY_COLUMNS = ["weights", "target_weights", "scale"]


def figure1(dataset: str = defaults.DATASET, rates: Sequence[float] = (2, 4, 8, 16),
            methods: Sequence[str] = defaults.FIGURE1_METHODS, preset: str = defaults.PRESET,
            seed: int = defaults.SEED,
            seeds: Sequence[int] | None = None, teacher: nn.Module | str | Path | None = None,
            settings: EvalSettings | None = None, cache_dir: str | Path | None = None, use_cache: bool = True,
            root=None, device=None, progress: bool = True, workers: int = 1, backend: str = "local",
            address: str | None = None, control: str | None = None, **overrides: Any) -> pd.DataFrame:
    """Figure 1(b): natural / FGSM / PGD / AutoAttack accuracy (%) vs pruning rate, per method and seed.

    One row per (method, rate, seed) plus the unpruned teacher (method "teacher", rate 1, evaluated once): a
    `sweep` over method x rate. `seeds` (default: just `seed`) runs every (method, rate) once per seed, each
    cached on its own; aggregate with `seed_summary`. `oneshot` is the control with no training at all. `aa` is
    the per-point worst case of PGD and AutoAttack (`evaluation`); `natural_last` / `pgd_last` are the final
    epoch's model when checkpoint selection (`select`) kept another epoch. `overrides` go into every run config
    (e.g. scope="reference"). `workers` > 1 runs that many prune runs at once in separate processes, `backend="ray"`
    on a Ray cluster (same results; see `pwoa_lab.experiments.jobs`). `control="capacity"` adds, per rate and
    seed, a dense network of the pruned network's size trained with the teacher's recipe (method "capacity";
    `pwoa_lab.experiments.capacity`).
    """
    rates = [check_rate(r) for r in rates]
    seeds = check_seeds([seed] if seeds is None else seeds)
    if control not in CONTROLS:
        raise ValueError(f"unknown control {control!r}; valid: {', '.join(c for c in CONTROLS if c)} (or none)")
    settings = settings or eval_settings(dataset, preset)
    device = get_device(device)
    teacher = resolve_teacher(dataset, teacher, device)
    base = preset_config(dataset, preset, **overrides)  # what every run shares: the radius and the scope
    eps, scope = base.eps, base.scope
    if control:  # every width and the teacher's recipe checked before any run starts
        capacity_configs(teacher, dataset, rates, seeds, scope, capacity_overrides(dataset, preset))
    workers = check_workers(workers)
    teacher_args = (dataset, eps, settings, cache_dir, use_cache, root, str(device))
    local = check_backend(backend) == "local"
    # locally the teacher's evaluation runs beside the pruning runs; on a cluster here (its cache is this machine's)
    extra = [(teacher_row, (teacher if workers == 1 else copy.deepcopy(teacher).cpu(), *teacher_args))] \
        if local else []
    result = sweep({"method": list(methods), "rate": rates}, seeds, dataset, preset, teacher, settings, cache_dir,
                   use_cache, root, device, backend, address, workers, progress, f"figure 1 ({dataset}, {preset})",
                   errors="raise", extra_jobs=extra, **overrides)
    teacher_result = result.extras[0] if local else teacher_row(teacher, *teacher_args)
    df = pd.DataFrame([teacher_result] + result.runs.to_dict("records"))
    columns = FIG1_COLUMNS
    if control:
        extra = capacity_rows(teacher, dataset, rates, seeds, settings, scope, capacity_overrides(dataset, preset),
                              cache_dir, use_cache, root, workers, backend, address, progress)
        df = pd.concat([df, extra], ignore_index=True)
        columns = FIG1_COLUMNS[:-1] + CAPACITY_COLUMNS + FIG1_COLUMNS[-1:]
    return df[[c for c in columns if c in df.columns]]


def seed_summary(df: pd.DataFrame, metrics: Sequence[str] = SUMMARY_METRICS,
                 cache_dir: str | Path | None = None) -> pd.DataFrame:
    """Mean and sample standard deviation over seeds per (dataset, method, rate) of a Figure-1 table, and the 95%
    interval over seeds and test images of each metric that has per-image outcomes (natural, pgd, aa).

    Columns: dataset, method, rate, seeds (how many), sparsity (mean), and for each metric present `m` (mean),
    `m_low` / `m_high` (the interval; NaN where the runs' outcomes are not in the store) and `m_std` (NaN for a
    single seed); rows ordered teacher, then the methods in the registry's order, then by rate.
    """
    out = summarize(df, ["dataset", "method", "rate"], metrics, cache_dir=cache_dir)
    order = {m: i for i, m in enumerate(method_order())}
    out["_order"] = out.method.map(lambda m: order.get(m, len(order)))
    return out.sort_values(["_order", "rate"]).drop(columns="_order").reset_index(drop=True)


def claim_verdict(collapse: Interval | None, gap: Interval | None, tolerance: float = 3.0) -> str:
    """The paper's claim at one rate from two paired intervals: `collapse` = naive - collapse x teacher (the claim
    wants it below 0) and `gap` = teacher - PwoA (wants it below `tolerance`). "holds" when both intervals lie wholly
    on the claim's side, "fails" when either lies wholly on the other side, else "inconclusive"."""
    if collapse is None or gap is None:
        return "inconclusive"
    sides = (decide(collapse, 0.0), decide(gap, tolerance))
    if "above" in sides:
        return "fails"
    if sides == ("below", "below"):
        return "holds"
    return "inconclusive"


def phenomenon(df: pd.DataFrame, metric: str = "pgd", rates: Sequence[float] | None = None,
               tolerance: float = 3.0, collapse: float = 1 / 3, cache_dir: str | Path | None = None
               ) -> pd.DataFrame:
    """The paper's claim checked per rate on a Figure-1 table (its per-run rows: their per-image outcomes give the
    intervals), with `VERDICT_RULE`.

    The claim holds at a rate when naive pruning collapses (`metric` at most `collapse` x the teacher's) and PwoA
    stays close (within `tolerance` points of the teacher). Columns: rate, sparsity, teacher, oneshot, naive, pwoa
    (means over seeds and images); naive_vs_collapse (naive - collapse x teacher), pwoa_gap (teacher - pwoa) and
    pwoa_minus_naive, each with `_low` / `_high` (paired 95% intervals); verdict ("holds", "fails",
    "inconclusive"), holds (bool) and settle (for an inconclusive verdict, what would settle it).
    """
    if "seeds" in df.columns:
        raise ValueError("phenomenon reads the per-run Figure-1 table (figure1's), whose runs carry per-image "
                         "outcomes for the intervals; got a seed_summary table")
    groups = group_outcomes(df, ["method", "rate"], metric, cache_dir)
    control, baseline, proposed = (method_with_role(r) for r in ("control", "baseline", "proposed"))
    teacher_rows = df[df.method == TEACHER]
    if teacher_rows.empty:
        raise ValueError("phenomenon needs the teacher's row (figure1 adds it)")
    teacher = float(teacher_rows[metric].iloc[0])
    t_key = (TEACHER, float(teacher_rows.rate.iloc[0]))
    rates = sorted(df.loc[df.method != TEACHER, "rate"].unique()) if rates is None else rates
    dataset = str(df.dataset.iloc[0]) if "dataset" in df.columns else None
    test_size = dataset_info(dataset).n_test if dataset in DATASETS else None
    out = []
    for rate in rates:
        sel = df[(df.rate == rate) & (df.method != CAPACITY)]  # the pruned networks (the control is dense)
        row = {"rate": float(rate), "sparsity": float(sel.sparsity.mean()), TEACHER: teacher}
        for method in (control, baseline, proposed):
            row[method] = float(sel.loc[sel.method == method, metric].mean()) if (sel.method == method).any() \
                else float("nan")
        naive, pwoa = (baseline, float(rate)), (proposed, float(rate))
        ivs = contrast_intervals(groups, {"naive_vs_collapse": {naive: 1.0, t_key: -collapse},
                                          "pwoa_gap": {t_key: 1.0, pwoa: -1.0},
                                          "pwoa_minus_naive": {pwoa: 1.0, naive: -1.0}})
        for name, iv in ivs.items():
            row[name] = iv.estimate if iv is not None else float("nan")
            row[f"{name}_low"] = iv.low if iv is not None else float("nan")
            row[f"{name}_high"] = iv.high if iv is not None else float("nan")
        row["verdict"] = claim_verdict(ivs["naive_vs_collapse"], ivs["pwoa_gap"], tolerance)
        row["holds"] = row["verdict"] == "holds"
        row["settle"] = ""
        if row["verdict"] == "inconclusive":
            row["settle"] = _settle(ivs, groups.get(naive), tolerance, test_size)
        out.append(row)
    return pd.DataFrame(out)


def _settle(ivs: dict[str, Interval | None], outcomes, tolerance: float, test_size: int | None) -> str:
    if outcomes is None or any(ivs[k] is None for k in ("naive_vs_collapse", "pwoa_gap")):
        return "the runs' per-image outcomes are not in the run store: run with the cache on"
    n = outcomes.shape[1]
    undecided = [(ivs["naive_vs_collapse"], 0.0), (ivs["pwoa_gap"], tolerance)]
    undecided = [(iv, t) for iv, t in undecided if decide(iv, t) == "inconclusive"]
    iv, t = max(undecided, key=lambda p: images_to_settle(p[0], p[1], n))
    return settle_hint(iv, t, n, test_size)


def claim_in_words(check: pd.DataFrame, metric: str = "pgd", tolerance: float = 3.0, collapse: float = 1 / 3
                   ) -> list[str]:
    """Per rate of a `phenomenon` table: one plain sentence (does the paper's claim hold there, and why), then the
    two differences that decide it with their 95% intervals."""
    robust = f"{METRIC_WORDS.get(metric, metric)} accuracy"

    def iv(r, name: str) -> str:
        low, high = getattr(r, f"{name}_low"), getattr(r, f"{name}_high")
        return f"{getattr(r, name):+.1f}" + ("" if math.isnan(low) else f" [{low:+.1f}, {high:+.1f}]")

    def side(r, name: str, threshold: float) -> str:
        low, high = getattr(r, f"{name}_low"), getattr(r, f"{name}_high")
        return "unknown" if math.isnan(low) else decide(Interval(getattr(r, name), low, high), threshold)

    lines = []
    for r in check.itertuples():
        at = f"At {rate_words(r.rate)} pruning"
        if r.verdict == "holds":
            head = (f"{at} the paper's claim HOLDS: naive pruning keeps {r.naive:.1f}% {robust}, under "
                    f"{_fraction(collapse)} of the dense teacher's {r.teacher:.1f}%, while PwoA keeps {r.pwoa:.1f}%, "
                    f"within {tolerance:g} points of it.")
        elif r.verdict == "fails":
            why = []
            if side(r, "pwoa_gap", tolerance) == "above":
                why.append(f"PwoA keeps {r.pwoa:.1f}% {robust}, more than {tolerance:g} points below the dense "
                           f"teacher's {r.teacher:.1f}%")
            if side(r, "naive_vs_collapse", 0.0) == "above":
                why.append(f"naive pruning keeps {r.naive:.1f}%, more than {_fraction(collapse)} of the teacher's "
                           f"{r.teacher:.1f}%: it does not collapse")
            head = f"{at} the paper's claim FAILS: " + " and ".join(why) + "."
        else:
            head = (f"{at} the measurement cannot decide (INCONCLUSIVE): naive pruning keeps {r.naive:.1f}% {robust} "
                    f"and PwoA {r.pwoa:.1f}%, against the dense teacher's {r.teacher:.1f}%, and the 95% intervals are "
                    f"too wide to tell" + (f"; {r.settle}." if r.settle else "."))
        detail = (f" The numbers: naive minus {_fraction(collapse)} of the teacher {iv(r, 'naive_vs_collapse')} (the "
                  f"claim wants it below 0), the teacher minus PwoA {iv(r, 'pwoa_gap')} (wants it below "
                  f"{tolerance:g})")
        if not math.isnan(r.oneshot):
            detail += f"; pruning with no training at all keeps {r.oneshot:.1f}%"
        lines.append(head + detail + ".")
    return lines


def _fraction(share: float) -> str:
    """1/3 -> 'a third', 0.5 -> 'half', else '0.25 x'."""
    return {1 / 3: "a third", 1 / 2: "half", 1 / 4: "a quarter"}.get(share, f"{share:.2g} x")


# ----------------------------------------------------------------------------------------------- Figure 3

PRUNED_PHASES = ("retrain", "score", "finetune")  # phases in which the student is already sparse


def time_to_reach(history: pd.DataFrame, target: float, metric: str = "val_pgd") -> float:
    """Training seconds at the first epoch of a sparse phase whose `metric` >= target (NaN if never)."""
    sparse = history[history.phase.isin(PRUNED_PHASES)]
    hit = sparse[sparse[metric] >= target]
    return float(hit.train_seconds.iloc[0]) if len(hit) else float("nan")


def figure3(dataset: str = defaults.DATASET, rate: float = 4, mix_ratios: Sequence[float] | None = None,
            methods: Sequence[str] = defaults.FIGURE3_METHODS, preset: str = defaults.PRESET,
            seed: int = defaults.SEED,
            seeds: Sequence[int] | None = None, teacher: nn.Module | str | Path | None = None,
            settings: EvalSettings | None = None,
            cache_dir: str | Path | None = None, use_cache: bool = True, root=None, device=None,
            progress: bool = True, n_per_class: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Figure 3: robust accuracy vs training time for each method over its mix ratios.

    `mix_ratios`, `n_per_class` (train every run on this many images per class) and `settings` (test-set
    evaluation) default to the preset's Figure 3 block (`pwoa_lab.training.presets`): on CPU presets three mix ratios,
    MNIST on 300 images per class, and natural / FGSM / PGD on at most 500 and AutoAttack on at most 100 test
    images, since Figure 3 evaluates many models.

    Returns (curves, summary). `curves`: one row per run and epoch (method, mix_ratio, seed, phase, epoch,
    train_seconds, val_natural, val_pgd). `summary`: one row per run with the final test natural / PGD /
    AutoAttack accuracy, seconds and `time_ratio` = (its time to first reach PwoA's r = 0 final validation
    PGD accuracy with a sparse model) / (PwoA's r = 0 total time), both of the same seed; NaN when never reached.
    `seeds` (default: just `seed`) repeats every run per seed.
    """
    rate = check_rate(rate)
    block = fig3_defaults(dataset, preset)
    settings = settings or block["eval"]
    mix_ratios = block["mix_ratios"] if mix_ratios is None else mix_ratios
    n_per_class = block["n_per_class"] if n_per_class is None else n_per_class
    if n_per_class is not None:  # fail before the first run, not inside it
        check_n_per_class(n_per_class)
    subset = {} if n_per_class is None else {"n_per_class": n_per_class}
    points = [{"method": m, "mix_ratio": float(r)} for m in methods for r in mix_ratios]
    reference = {"method": method_with_role("proposed"), "mix_ratio": 0.0}  # the reference run of the time ratio
    if reference not in points:
        points.insert(0, reference)
    # one run at a time (no workers): the x axis is wall-clock training time, which parallel runs would distort
    result = sweep(points, check_seeds([seed] if seeds is None else seeds), dataset, preset, teacher, settings,
                   cache_dir, use_cache, root, device, progress=progress, desc=f"figure 3 ({dataset}, {preset})",
                   errors="raise", rate=rate, **subset)
    curves_df = result.curves
    summary = result.runs
    targets, ratios = [], []
    for row in summary.itertuples():
        of_seed = curves_df[curves_df.seed == row.seed]
        ref = of_seed[(of_seed.method == reference["method"]) & (of_seed.mix_ratio == 0)]
        target, ref_time = float(ref.val_pgd.iloc[-1]), float(ref.train_seconds.iloc[-1])
        hist = of_seed[(of_seed.method == row.method) & (of_seed.mix_ratio == row.mix_ratio)]
        targets.append(target)
        ratios.append(time_to_reach(hist, target) / ref_time)
    summary["time_ratio"] = ratios
    summary["target_val_pgd"] = targets
    keep = ["method", "mix_ratio", "seed", "phase", "epoch", "train_seconds", "val_natural", "val_pgd"]
    cols = ["dataset", "method", "rate", "mix_ratio", "seed", "natural", "fgsm", "pgd", "aa", "aa_points", "sparsity",
            "train_seconds", "time_ratio", "target_val_pgd", "cached", "key"]
    return curves_df[keep], summary[[c for c in cols if c in summary.columns]]


def time_ratio_summary(summary: pd.DataFrame, cache_dir: str | Path | None = None) -> pd.DataFrame:
    """Figure 3's time ratio per (method, mix_ratio) over seeds: seeds, reached (how many seeds reached the target),
    time_ratio (mean over the seeds that reached it) and its 95% interval over seeds (`intervals.seed_interval`;
    NaN where fewer than all seeds reached it: the mean of the others would flatter the method), and the final test
    pgd / aa accuracy (means) with their 95% intervals over seeds and test images."""
    rows = []
    for (method, ratio), part in summary.groupby(["method", "mix_ratio"], sort=False):
        reached = part.time_ratio.dropna()
        row = {"method": method, "mix_ratio": ratio, "seeds": len(part), "reached": len(reached),
               "time_ratio": float(reached.mean()) if len(reached) else float("nan"),
               "time_ratio_low": float("nan"), "time_ratio_high": float("nan")}
        if len(reached) == len(part):
            iv = seed_interval(reached.to_numpy())
            row.update(time_ratio_low=iv.low, time_ratio_high=iv.high)
        for m in ("pgd", "aa"):
            if m in part:
                row[m] = float(part[m].mean())
        rows.append(row)
    out = pd.DataFrame(rows)
    metrics = [m for m in ("pgd", "aa") if m in out and out[m].notna().any()]
    return add_intervals(out, summary, ["method", "mix_ratio"], metrics, cache_dir) if "key" in summary else out
