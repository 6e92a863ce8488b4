"""How sure a number is: 95% intervals for accuracies and their differences, over seeds and test images together.

An accuracy the kit prints is the mean, over seeds s and test images i, of one bit y[s, i] (image i classified
correctly by the model of seed s). It is uncertain for two reasons: another draw of test images, and another
training run. `bootstrap_intervals` resamples both with `scipy.stats.bootstrap` (percentile method): the test images
with replacement, *one* resample shared by every method scored on those images (the comparison is paired: an image
that is hard for one method is usually hard for the other, and that part of the noise cancels in a difference), and
each method's seeds with replacement, independently (two methods' runs of seed 0 share nothing but the number).
Resampling both crossed axes at once is Owen's pigeonhole bootstrap ('The pigeonhole bootstrap', Ann. Appl. Stat.
2007): with several seeds it counts the seed-by-image part of the noise twice, so its intervals are slightly wide
(conservative) rather than too narrow; with one seed it is the plain bootstrap over test images.
A statistic is any linear contrast of accuracies, e.g. {"pwoa": 1, "naive": -1} for PwoA minus naive, or
{"naive": 1, "teacher": -1/3} for "naive minus a third of the teacher". A fixed bootstrap seed makes every interval
reproducible.

    groups = {"naive": outcomes_naive, "pwoa": outcomes_pwoa}       # bool [seeds, images], the same images
    iv = bootstrap_intervals(groups, {"diff": {"pwoa": 1, "naive": -1}})["diff"]
    iv.estimate, iv.low, iv.high     # in accuracy points (%)
    decide(iv, 0.0)                   # "above", "below" or "inconclusive"

Verdicts read intervals only: a difference is on one side of a threshold when its whole 95% interval is
(`VERDICT_RULE` says it in one sentence); otherwise the verdict is "inconclusive", and `images_to_settle` estimates
how many test images would make the interval narrow enough, if the estimate stayed where it is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
from scipy.stats import bootstrap, t as student_t

CONFIDENCE = 0.95
N_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # the intervals themselves are reproducible
VERDICT_RULE = ("a verdict needs the 95% interval of the difference (bootstrap over seeds and test images, paired "
                "on the same images) to lie wholly on one side of its threshold; otherwise it is 'inconclusive'")
_CELLS_PER_BATCH = 4_000_000  # resample x image cells computed at once (memory)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its interval, in accuracy points (%): estimate, low, high at `level` (0.95)."""
    estimate: float
    low: float
    high: float
    level: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def __str__(self) -> str:
        return f"{self.estimate:.1f} [{self.low:.1f}, {self.high:.1f}]"


def as_outcomes(values) -> np.ndarray:
    """A float array [seeds, images] of 0/1 outcomes from a bool array [images] or [seeds, images]."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] == 0 or arr.shape[0] == 0:
        raise ValueError(f"outcomes must be [seeds, images] with at least one of each; got shape {arr.shape}")
    return arr


def bootstrap_intervals(groups: Mapping[str, np.ndarray], contrasts: Mapping[str, Mapping[str, float]],
                        paired: bool = True, level: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                        seed: int = BOOTSTRAP_SEED) -> dict[str, Interval]:
    """One `Interval` per contrast: sum of coef x accuracy (%) of the named groups, over seeds and test images.

    Arguments:
        groups (dict): name -> outcomes [S, N] (bool or 0/1; [N] for one seed). Every group is scored on the same N
            test images in the same order; S may differ between groups.
        contrasts (dict): label -> {group name: coefficient}.
        paired (bool): one resample of the images shared by every group (True), or one per group (False: as if
            every group had been scored on its own images; wider intervals for differences).
        level (float): the confidence level. (Default: 0.95)
        n_resamples (int): bootstrap resamples. (Default: 2000)
        seed (int): the bootstrap's random seed. (Default: 0)

    Shape:
        - groups' values: :math:`(S, N)`, outcomes in {0, 1}.
        - output: {label: Interval}, in accuracy points.
    """
    data = {name: as_outcomes(v) for name, v in groups.items()}
    if not data:
        raise ValueError("bootstrap_intervals needs at least one group of outcomes")
    n = {a.shape[1] for a in data.values()}
    if len(n) != 1:
        raise ValueError(f"every group must be scored on the same test images; got image counts {sorted(n)}")
    n_images = n.pop()
    names = list(data)
    for label, contrast in contrasts.items():
        unknown = set(contrast) - set(names)
        if unknown:
            raise ValueError(f"contrast {label!r} names groups that have no outcomes: {sorted(unknown)}")
    coef = np.array([[float(c.get(g, 0.0)) for g in names] for c in contrasts.values()])  # [C, G]
    estimate = 100.0 * coef @ np.array([data[g].mean() for g in names])
    if n_images < 2:  # nothing to resample: a single image says nothing about another one
        return {label: Interval(float(e), -math.inf, math.inf, level) for label, e in zip(contrasts, estimate)}

    # the samples scipy resamples: image indices (one shared, or one per group), then each group's seed indices
    samples, image_slot, seed_slot = [], {}, {}
    for g in names:
        if paired and samples:
            image_slot[g] = 0
        else:
            image_slot[g] = len(samples)
            samples.append(np.arange(n_images))
    for g in names:
        if data[g].shape[0] >= 2:  # one seed cannot be resampled: it stays as it is
            seed_slot[g] = len(samples)
            samples.append(np.arange(data[g].shape[0]))

    def statistic(*idx: np.ndarray, axis: int = -1) -> np.ndarray:
        idx = [np.asarray(i, dtype=np.int64) for i in idx]
        batch = idx[0].shape[:-1]
        flat = [i.reshape(-1, i.shape[-1]) for i in idx]
        b = flat[0].shape[0]
        weights = {}  # image slot -> how often each image was drawn [b, N]
        accs = []
        for g in names:
            slot = image_slot[g]
            if slot not in weights:
                rows = flat[slot] + n_images * np.arange(b)[:, None]
                weights[slot] = np.bincount(rows.ravel(), minlength=b * n_images).reshape(b, n_images)
            per_seed = weights[slot] @ data[g].T / n_images                     # [b, S]
            if g in seed_slot:
                picks = flat[seed_slot[g]]                                       # [b, S]
                accs.append(np.take_along_axis(per_seed, picks, axis=1).mean(axis=1))
            else:
                accs.append(per_seed.mean(axis=1))
        values = 100.0 * coef @ np.stack(accs)                                   # [C, b]
        return values.reshape((len(coef),) + batch)

    res = bootstrap(samples, statistic, n_resamples=n_resamples,
                    batch=max(1, _CELLS_PER_BATCH // (n_images * max(1, len(set(image_slot.values()))))),
                    vectorized=True, paired=False, confidence_level=level, method="percentile", rng=seed)
    low, high = np.atleast_1d(res.confidence_interval.low), np.atleast_1d(res.confidence_interval.high)
    return {label: Interval(float(e), float(lo), float(hi), level)
            for label, e, lo, hi in zip(contrasts, estimate, low, high)}


def accuracy_interval(outcomes, **kwargs) -> Interval:
    """The interval of one accuracy (%) from its outcomes [S, N] (or [N])."""
    return bootstrap_intervals({"a": outcomes}, {"a": {"a": 1.0}}, **kwargs)["a"]


def difference_interval(a, b, paired: bool = True, **kwargs) -> Interval:
    """The interval of accuracy(a) - accuracy(b) (points), a and b scored on the same images ([S, N] each)."""
    return bootstrap_intervals({"a": a, "b": b}, {"d": {"a": 1.0, "b": -1.0}}, paired=paired, **kwargs)["d"]


def decide(interval: Interval, threshold: float) -> str:
    """"above" or "below" when the whole interval lies on that side of `threshold`, else "inconclusive"."""
    if interval.low > threshold:
        return "above"
    if interval.high < threshold:
        return "below"
    return "inconclusive"


def images_to_settle(interval: Interval, threshold: float, n_images: int) -> float:
    """About how many test images would make the interval exclude `threshold`, if the estimate stayed where it is
    and the interval's side towards the threshold narrowed as 1/sqrt(images) (the seeds' part of it does not: with
    few seeds, more seeds may be needed too). inf where the estimate sits on the threshold."""
    margin = abs(interval.estimate - threshold)
    side = interval.estimate - interval.low if threshold < interval.estimate else interval.high - interval.estimate
    if margin == 0 or not math.isfinite(side):
        return math.inf
    return float(max(n_images + 1, math.ceil(n_images * (side / margin) ** 2)))


def settle_hint(interval: Interval, threshold: float, n_images: int, test_size: int | None = None) -> str:
    """What would settle an inconclusive verdict, in words."""
    need = images_to_settle(interval, threshold, n_images)
    if not math.isfinite(need):
        return "the estimate sits on the threshold: no number of images would settle it at this estimate"
    if need <= n_images * 1.1:
        return (f"the interval's edge touches the threshold: a few more test images (now {n_images:,}) or seeds "
                "would settle it")
    if test_size is not None and need > test_size:
        return (f"about {need:,.0f} test images would settle it, more than the {test_size:,} the test split holds: "
                "more seeds would narrow the interval further")
    return f"about {need:,.0f} test images (now {n_images:,}) would settle it"


def format_cell(mean: float, low: float = math.nan, high: float = math.nan, std: float = math.nan,
                digits: int = 1) -> str:
    """One table cell: 'mean [low, high]' where there is an interval, else 'mean ± std' where there is a spread
    over seeds, else the mean alone."""
    if low == low and low is not None:
        return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
    if std == std and std is not None:
        return f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"{mean:.{digits}f}"


def seed_interval(values, level: float = CONFIDENCE) -> Interval:
    """The interval of a mean over seeds of a number that is no accuracy over images (e.g. Figure 3's time ratio):
    mean +- t(level, seeds - 1) x sd / sqrt(seeds); infinite with one seed. NaN values are an error: say first how
    many seeds never got a value."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or not len(arr) or np.isnan(arr).any():
        raise ValueError(f"seed_interval needs one or more numbers (no NaN); got {values!r}")
    mean = float(arr.mean())
    if len(arr) < 2:
        return Interval(mean, -math.inf, math.inf, level)
    half = float(student_t.ppf((1 + level) / 2, len(arr) - 1) * arr.std(ddof=1) / math.sqrt(len(arr)))
    return Interval(mean, mean - half, mean + half, level)
