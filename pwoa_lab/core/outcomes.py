"""Per-image outcomes of an evaluation (`PointOutcomes`): which test images a model got right, packed for the run store.

`pwoa_lab.core.evaluation.evaluate_points` returns them beside its row: which test images were scored, and per image
whether it was right naturally, under PGD and under the per-image worst case of PGD and AutoAttack. Every interval of
the kit (`pwoa_lab.core.intervals`) is computed from them.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class PointOutcomes:
    """Which test images a model got right, per image: the record every interval of the kit is computed from.

    index:       int [n], the test images scored naturally and by PGD (positions in the test split).
    natural:     bool [n], the clean image is classified correctly.
    pgd:         bool [n], the PGD example is classified correctly.
    worst_index: int [k], the images of the per-image worst case of PGD and AutoAttack (empty: not run).
    worst:       bool [k], neither PGD nor AutoAttack broke the image.
    `to_record()` packs it into a few bytes per image for the run store; `from_record` unpacks it.
    """
    index: np.ndarray
    natural: np.ndarray
    pgd: np.ndarray
    worst_index: np.ndarray
    worst: np.ndarray

    def metric(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(image indices, bool outcomes) of "natural", "pgd" or "aa" (the worst case)."""
        if name in ("natural", "pgd"):
            return self.index, getattr(self, name)
        if name in ("aa", "worst"):
            return self.worst_index, self.worst
        raise ValueError(f"per-image outcomes exist for natural, pgd and aa; got {name!r}")

    def to_record(self) -> dict[str, Any]:
        return {"index": _ranges(self.index), "natural": _bits(self.natural), "pgd": _bits(self.pgd),
                "worst_index": _ranges(self.worst_index), "worst": _bits(self.worst)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "PointOutcomes":
        index, worst_index = _unranges(record["index"]), _unranges(record["worst_index"])
        return cls(index, _unbits(record["natural"], len(index)), _unbits(record["pgd"], len(index)),
                   worst_index, _unbits(record["worst"], len(worst_index)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PointOutcomes) and all(
            np.array_equal(getattr(self, f), getattr(other, f))
            for f in ("index", "natural", "pgd", "worst_index", "worst"))


def _ranges(index: np.ndarray) -> list[list[int]]:
    """Indices as runs [[start, stop], ...] of consecutive values (the first n images: one run)."""
    index = np.asarray(index, dtype=np.int64)
    if not len(index):
        return []
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    return [[int(part[0]), int(part[-1]) + 1] for part in np.split(index, breaks)]


def _unranges(runs: list) -> np.ndarray:
    return np.concatenate([np.arange(a, b) for a, b in runs]).astype(np.int64) if runs else np.zeros(0, np.int64)


def _bits(mask: np.ndarray) -> str:
    return base64.b64encode(np.packbits(np.asarray(mask, dtype=bool)).tobytes()).decode("ascii")


def _unbits(text: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))[:n].astype(bool)
