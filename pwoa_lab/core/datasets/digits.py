"""scikit-learn's 8x8 digits, upsampled to 16x16: the embedded dataset (needs no files)."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pwoa_lab.core.datasets.files import SPLIT_SEED
from pwoa_lab.core.datasets.record import DatasetInfo, register_dataset


def load_digits_split(info: DatasetInfo, split: str, root: Path | None = None, download: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 digits: 8x8, 17 gray levels -> [0, 1], bilinearly upsampled to 16x16.

    Fixed stratified split (seed SPLIT_SEED), per class: 20% test, 10% val, the rest train (359 / 179 / 1,259).
    Read and upsampled once per process; every call returns new tensors (indexing copies). `root` and `download`
    are not used (the data ships with scikit-learn).
    """
    x, y, parts = _digits_all()
    index = parts[split]
    return x[index], y[index]


@functools.lru_cache(maxsize=1)
def _digits_all() -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """All 1,797 digits (x upsampled, y) and the sorted indices of each split (read-only: callers index them)."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False).clamp(0, 1)
    y = torch.tensor(digits.target, dtype=torch.int64)
    rng = np.random.default_rng(SPLIT_SEED)
    parts = {"train": [], "val": [], "test": []}
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(digits.target == c))
        n_test, n_val = round(0.2 * len(idx)), round(0.1 * len(idx))
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test:n_test + n_val])
        parts["train"].append(idx[n_test + n_val:])
    return x, y, {name: torch.from_numpy(np.sort(np.concatenate(idx))) for name, idx in parts.items()}


DIGITS = register_dataset(DatasetInfo(
    "digits", 10, (1, 16, 16), eps=0.2, pgd_step=None, pgd_steps=20, n_val=180, augment=False, n_test=359,
    load=load_digits_split, default_model="small_cnn", teacher_file="digits_small_cnn.pt",
    help="scikit-learn's 8x8 digits at 16x16 (embedded, no files needed)"), replace=True)
