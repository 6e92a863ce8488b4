"""Datasets as in-memory tensors of images in [0, 1] (no normalization; a model may normalize inside).

What a dataset is lives in its record (`pwoa_lab.core.datasets`: `digits`, scikit-learn's 8x8 digits upsampled to
16x16, needs no files; `mnist`, `fashion_mnist`, `cifar10`, `cifar100` in torchvision's layouts). Splits: `train`,
`val` (held out from the training set, for model selection), `test`.

Where files are looked for: the `root` argument (the CLI's `--root`), else the `PWOA_DATA_ROOT` environment
variable, else the project's `data/` folder. The root may be read-only: MNIST-style `.gz` archives are parsed in
place and CIFAR pickles are read in place; nothing is written there.

Downloads: none unless asked for. Missing files are a FileNotFoundError that names the folder looked in, `--root`
and `PWOA_DATA_ROOT`; nothing is created (no empty `data/MNIST/raw`). With `PWOA_DOWNLOAD=1` (or
`download=True`) torchvision fetches missing files into the root (online); a download that fails leaves no new
empty folders behind. `check_available(name, root)` raises the same error without reading anything: the sweeps
call it once, before any run starts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from pwoa_lab.core.datasets import DATASETS, SPLITS, DatasetInfo, dataset_info, dataset_names  # noqa: F401
from pwoa_lab.core.datasets.cifar import read_cifar_pickle  # noqa: F401
from pwoa_lab.core.datasets.files import download_default, missing_error
from pwoa_lab.utils import check_choice

DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2] / "data"


@dataclass
class TensorData(torch.utils.data.Dataset):
    """Images `x` [N, C, H, W] float32 in [0, 1] and labels `y` [N] int64."""
    x: torch.Tensor
    y: torch.Tensor
    name: str = ""
    split: str = ""

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def take(self, index: torch.Tensor | slice) -> "TensorData":
        return TensorData(self.x[index], self.y[index], self.name, self.split)

    def head(self, n: int | None) -> "TensorData":
        """The first `n` examples (all when `n` is None)."""
        return self if n is None else self.take(slice(0, n))


def data_root(root: str | Path | None = None) -> Path:
    """The data root: the argument, else $PWOA_DATA_ROOT, else the project's data/ folder."""
    if root is not None:
        return Path(root)
    env = os.environ.get("PWOA_DATA_ROOT")
    return Path(env) if env else DEFAULT_DATA_ROOT


def load_dataset(name: str, split: str = "train", root: str | Path | None = None,
                 n_per_class: int | None = None, seed: int = 0, download: bool | None = None) -> TensorData:
    """Load `split` of dataset `name` as tensors in [0, 1].

    `n_per_class` keeps a seeded, class-balanced subset (quick presets). `download` (default: the
    PWOA_DOWNLOAD variable, off unless it is 1) lets torchvision fetch missing files into the root (online).
    """
    info = dataset_info(name)
    check_choice(split, SPLITS, "split")
    root, download = data_root(root), download_default(download)
    if info.missing is not None and not root.is_dir() and not download:
        raise missing_error(name, root, ["the data root itself"])
    x, y = info.load(info, split, root, download)
    data = TensorData(x, y, name, split)
    return subset_per_class(data, n_per_class, seed) if n_per_class is not None else data


def check_n_per_class(n) -> int:
    """A number of examples per class: a whole number >= 1, else a ValueError that says so."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n_per_class must be a positive integer (images per class); got {n!r}")
    return n


def subset_per_class(data: TensorData, n: int, seed: int = 0) -> TensorData:
    """A seeded subset with (up to) `n` examples of every class, in a shuffled order."""
    check_n_per_class(n)
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in torch.unique(data.y):
        idx = torch.nonzero(data.y == c).flatten()
        keep.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    index = torch.cat(keep)
    index = index[torch.randperm(len(index), generator=g)]
    return data.take(index)


def augment_batch(x: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4) -> torch.Tensor:
    """CIFAR augmentation on a batch [B, C, H, W]: random crop with `pad` zero padding + horizontal flip."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    out = torch.empty_like(x)
    for i in range(b):
        crop = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


def check_available(name: str, root: str | Path | None = None, download: bool | None = None) -> None:
    """Raise the FileNotFoundError that `load_dataset` would raise for any split of `name` whose files are missing,
    without reading them (a dataset that needs no files passes; with downloads allowed nothing is checked)."""
    info = dataset_info(name)
    if info.missing is None or download_default(download):
        return
    root = data_root(root)
    if not root.is_dir():
        raise missing_error(name, root, ["the data root itself"])
    missing = info.missing(info, root)
    if missing is not None:
        raise missing_error(name, *missing)
