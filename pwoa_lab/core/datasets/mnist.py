"""MNIST and Fashion-MNIST from torchvision's layout: `<root>/MNIST/raw/*-idx?-ubyte[.gz]`, parsed in place."""
from __future__ import annotations

import functools
import gzip
from pathlib import Path

import numpy as np
import torch

from pwoa_lab.core.datasets.files import download_into, missing_error, split_of_training_set
from pwoa_lab.core.datasets.record import DatasetInfo, register_dataset

_FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally .gz) into a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (corrupted download?)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {int(np.prod(dims))} values, found {arr.size} (truncated file?)")
    return arr.reshape(dims)


def _find_idx(raw: Path, stem: str) -> Path | None:
    for candidate in (raw / stem, raw / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _missing(folder_name: str, info: DatasetInfo, root: Path) -> tuple[Path, list[str]] | None:
    """(folder, files) of the first split whose IDX files are missing under `root`, else None."""
    folder = root / folder_name / "raw"
    for train in (True, False):
        stems = _FILES[train]
        if any(_find_idx(folder, s) is None for s in stems):
            return folder, [f"{s}[.gz]" for s in stems]
    return None


def _load(folder_name: str, info: DatasetInfo, split: str, root: Path, download: bool
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """`split` of an MNIST-like dataset: train / val from the 60,000 training images, test from the 10,000."""
    name, train = info.name, split in ("train", "val")
    folder = root / folder_name / "raw"
    stems = _FILES[train]
    paths = [_find_idx(folder, s) for s in stems]
    if None in paths:
        if not download:
            raise missing_error(name, folder, [f"{s}[.gz]" for s in stems])
        import torchvision
        download_into(getattr(torchvision.datasets, folder_name), root, train, name, folder,
                      [f"{s}[.gz]" for s in stems])
        paths = [_find_idx(folder, s) for s in stems]
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    x = torch.from_numpy(images.copy()).float().div_(255).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return split_of_training_set(x, y, info.n_val, split) if train else (x, y)


MNIST = register_dataset(DatasetInfo(
    "mnist", 10, (1, 28, 28), eps=0.3, pgd_step=0.01, pgd_steps=40, n_val=5000, augment=False,
    load=functools.partial(_load, "MNIST"), missing=functools.partial(_missing, "MNIST"),
    default_model="lenet3", teacher_file="mnist_lenet3.pt",
    help="MNIST 28x28 (files under --root / PWOA_DATA_ROOT)"), replace=True)
FASHION_MNIST = register_dataset(DatasetInfo(
    "fashion_mnist", 10, (1, 28, 28), eps=0.1, pgd_step=0.01, pgd_steps=40, n_val=5000, augment=False,
    load=functools.partial(_load, "FashionMNIST"),
    missing=functools.partial(_missing, "FashionMNIST"), default_model="lenet3",
    help="Fashion-MNIST 28x28 (files under --root / PWOA_DATA_ROOT; no shipped teacher)"), replace=True)
