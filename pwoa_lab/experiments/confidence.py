"""How sure each table is: the per-image outcomes of cached runs, grouped over seeds, and their intervals.

Every evaluated run keeps, in the run store, which test images it scored and per image whether it was right
(`core.evaluation.PointOutcomes`). Here a table's runs are grouped (e.g. per method and rate: the seeds of one
configuration) into outcome arrays [seeds, images], and `core.intervals.bootstrap_intervals` turns them into 95%
intervals, paired wherever groups were scored on the same images. Nothing here computes a model: a run whose
outcomes are not in the store (computed with use_cache=False) simply has no interval (NaN).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import pandas as pd

from pwoa_lab.core.intervals import Interval, accuracy_interval, bootstrap_intervals
from pwoa_lab.experiments.runs import load_points

STORES = ("prune_row", "teacher_row", "capacity_row")
INTERVAL_METRICS = ("natural", "pgd", "aa")  # the metrics whose per-image outcomes runs keep


def run_outcomes(key: Any, metric: str, cache_dir: str | Path | None = None
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """(image indices, bool outcomes) of one stored run's `metric` ("natural", "pgd" or "aa"), or None."""
    for kind in STORES:
        points = load_points(key, kind, cache_dir)
        if points is not None:
            index, values = points.metric(metric)
            return (index, values) if len(index) else None
    return None


def group_outcomes(runs: pd.DataFrame, by: Sequence[str], metric: str, cache_dir: str | Path | None = None
                   ) -> dict[Hashable, np.ndarray]:
    """{group: outcomes [seeds, images]} of `metric` for the runs of a table grouped by the columns `by` (each
    group a tuple of their values; its `key` column names each run in the store). A group is left out when one of
    its runs has no stored outcomes, or when its runs were scored on different images."""
    out: dict[Hashable, np.ndarray] = {}
    if "key" not in runs.columns or runs.empty:
        return out
    for group, part in runs.groupby(list(by), sort=False, dropna=False):
        group = group if isinstance(group, tuple) else (group,)
        found = [run_outcomes(k, metric, cache_dir) for k in part.key]
        if not found or any(f is None for f in found):
            continue
        index = found[0][0]
        if any(not np.array_equal(f[0], index) for f in found):
            continue
        out[group] = np.stack([f[1] for f in found]).astype(float)
    return out


def group_intervals(groups: Mapping[Hashable, np.ndarray]) -> dict[Hashable, Interval]:
    """The interval of each group's accuracy (%), over its seeds and images: one bootstrap per group, so that a
    group's interval does not depend on which other groups a table holds."""
    return {name: accuracy_interval(arr) for name, arr in groups.items()}


def contrast_intervals(groups: Mapping[Hashable, np.ndarray],
                       contrasts: Mapping[Hashable, Mapping[Hashable, float]]) -> dict[Hashable, Interval | None]:
    """The paired interval of each contrast {group: coefficient}; None where a group it names has no outcomes or
    its groups were scored on different images."""
    out: dict[Hashable, Interval | None] = {}
    # one bootstrap per set of groups (in a fixed order): a contrast's interval depends on its own groups only,
    # never on which other contrasts are asked for at the same time
    by_groups: dict[tuple, dict[Hashable, Mapping[Hashable, float]]] = {}
    for label, contrast in contrasts.items():
        sizes = {groups[g].shape[1] if g in groups else None for g in contrast}
        if None in sizes or len(sizes) != 1:
            out[label] = None
        else:
            by_groups.setdefault(tuple(sorted(contrast, key=repr)), {})[label] = contrast
    for names, part in by_groups.items():
        labels = {name: f"g{i}" for i, name in enumerate(names)}
        out.update(bootstrap_intervals({labels[n]: groups[n] for n in names},
                                       {lab: {labels[g]: float(v) for g, v in c.items()} for lab, c in part.items()}))
    return {label: out[label] for label in contrasts}


def add_intervals(summary: pd.DataFrame, runs: pd.DataFrame, by: Sequence[str], metrics: Sequence[str],
                  cache_dir: str | Path | None = None, rename: Mapping[str, str] | None = None) -> pd.DataFrame:
    """`summary` (one row per group of `by`) with `<m>_low` and `<m>_high` beside each metric's mean column: the
    95% interval over the group's seeds and test images. `rename` maps a metric to the summary's column name."""
    out = summary.copy()
    rename = dict(rename or {})
    for metric in metrics:
        column = rename.get(metric, metric)
        if column not in out.columns:
            continue
        ivs = group_intervals(group_outcomes(runs, by, metric, cache_dir))
        keys = [tuple(r) for r in out[list(by)].itertuples(index=False)]
        low = [ivs[k].low if k in ivs else math.nan for k in keys]
        high = [ivs[k].high if k in ivs else math.nan for k in keys]
        at = list(out.columns).index(column) + 1
        out.insert(at, f"{column}_high", high)
        out.insert(at, f"{column}_low", low)
    return out


def environment_line(runs: pd.DataFrame) -> str:
    """Where a table's runs were computed, once: e.g. 'computed on cpu (AVX512), torch 2.14.1, 1 thread a run'."""
    cols = ["device", "cpu", "torch", "threads"]
    if not set(cols) <= set(runs.columns):
        return "computed on: not recorded"
    seen = runs[cols].dropna().drop_duplicates()
    parts = [f"{r.device} ({r.cpu}), torch {r.torch}, {int(r.threads)} thread{'s' if int(r.threads) != 1 else ''} "
             "a run" for r in seen.itertuples()]
    return "computed on " + "; ".join(parts) if parts else "computed on: not recorded"


def resolution_table(a: np.ndarray, b: np.ndarray, sizes: Sequence[int]) -> pd.DataFrame:
    """How sharply a difference is measured on the first n test images: for each n of `sizes` (at most the
    images scored), the difference accuracy(a) - accuracy(b) (points) on those images and its 95% interval paired
    and unpaired. `a`, `b`: outcomes [seeds, images] on the same images. Columns: images, difference, paired_low,
    paired_high, paired_half_width, unpaired_half_width."""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    rows = []
    for n in sizes:
        n = int(min(n, a.shape[1]))
        paired = bootstrap_intervals({"a": a[:, :n], "b": b[:, :n]}, {"d": {"a": 1.0, "b": -1.0}})["d"]
        unpaired = bootstrap_intervals({"a": a[:, :n], "b": b[:, :n]}, {"d": {"a": 1.0, "b": -1.0}},
                                       paired=False)["d"]
        rows.append({"images": n, "difference": paired.estimate, "paired_low": paired.low,
                     "paired_high": paired.high, "paired_half_width": paired.half_width,
                     "unpaired_half_width": unpaired.half_width})
    return pd.DataFrame(rows).drop_duplicates("images").reset_index(drop=True)
