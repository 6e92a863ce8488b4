"""Datasets as in-memory tensors of images in [0, 1] (no normalization; a model may normalize inside).

Names: `digits` (scikit-learn's bundled 8x8 digits, upsampled to 16x16; needs no files), `mnist`,
`fashion_mnist`, `cifar10`, `cifar100` (torchvision layouts). Splits: `train`, `val` (held out from the
training set, for model selection), `test`.

Where files are looked for: the `root` argument (the CLI's `--root`), else the `PWOA_DATA_ROOT` environment
variable, else the project's `data/` folder. The root may be read-only: MNIST-style `.gz` archives are parsed in
place and CIFAR pickles are read in place; nothing is written there. CIFAR pickles are read by a restricted
unpickler (`read_cifar_pickle`) that builds numpy arrays and plain containers only, so a tampered batch file cannot
run code.

Downloads: none unless asked for. Missing files are a FileNotFoundError that names the folder looked in, `--root`
and `PWOA_DATA_ROOT`; nothing is created (no empty `data/MNIST/raw`). With `PWOA_DOWNLOAD=1` (or
`download=True`) torchvision fetches missing files into the root (online); a download that fails leaves no new
empty folders behind. `check_available(name, root)` raises the same error without reading anything: the sweeps
call it once, before any run starts.
"""
from __future__ import annotations

import functools
import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pwoa_lab.utils import check_choice

DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2] / "data"
SPLIT_SEED = 0  # the fixed seed of the train/val (and digits test) split: never change it


@dataclass(frozen=True)
class DatasetInfo:
    """What the rest of the kit needs to know about a dataset."""
    name: str
    num_classes: int
    shape: tuple[int, int, int]  # (C, H, W)
    eps: float                   # the kit's default L-inf radius
    pgd_step: float | None       # PGD step size for evaluation (None: 2.5 eps / steps)
    pgd_steps: int               # PGD steps for evaluation
    n_val: int                   # images held out from the training set
    augment: bool                # random crop + flip while training
    n_test: int = 10_000         # images in the test split


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo("digits", 10, (1, 16, 16), eps=0.2, pgd_step=None, pgd_steps=20, n_val=180, augment=False,
                          n_test=359),
    "mnist": DatasetInfo("mnist", 10, (1, 28, 28), eps=0.3, pgd_step=0.01, pgd_steps=40, n_val=5000, augment=False),
    "fashion_mnist": DatasetInfo("fashion_mnist", 10, (1, 28, 28), eps=0.1, pgd_step=0.01, pgd_steps=40,
                                 n_val=5000, augment=False),
    "cifar10": DatasetInfo("cifar10", 10, (3, 32, 32), eps=8 / 255, pgd_step=2 / 255, pgd_steps=10, n_val=5000,
                           augment=True),
    "cifar100": DatasetInfo("cifar100", 100, (3, 32, 32), eps=8 / 255, pgd_step=2 / 255, pgd_steps=10, n_val=5000,
                            augment=True),
}
SPLITS = ("train", "val", "test")


def dataset_info(name: str) -> DatasetInfo:
    """The `DatasetInfo` of a dataset name; unknown names list the valid ones."""
    return DATASETS[check_choice(name, DATASETS, "dataset")]


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
    if name == "digits":
        x, y = _digits_split(split)
    else:
        train = split in ("train", "val")
        x, y = _load_torchvision(name, train, data_root(root), _download_default(download))
        if train:
            x, y = _train_val_split(x, y, info.n_val, split)
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


# ----------------------------------------------------------------------------------------------- digits

def _digits_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 digits: 8x8, 17 gray levels -> [0, 1], bilinearly upsampled to 16x16.

    Fixed stratified split (seed SPLIT_SEED), per class: 20% test, 10% val, the rest train (359 / 179 / 1,259).
    Read and upsampled once per process; every call returns new tensors (indexing copies).
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


# ----------------------------------------------------------------------------------------------- torchvision

_MNIST_LIKE = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
_MNIST_FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_CIFAR = {"cifar10": ("cifar-10-batches-py", ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                                              "data_batch_5"], ["test_batch"], "labels"),
          "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels")}


def _download_default(download: bool | None) -> bool:
    """Whether missing files may be downloaded: the argument, else PWOA_DOWNLOAD=1 (true, yes); off by default."""
    if download is not None:
        return download
    return os.environ.get("PWOA_DOWNLOAD", "").strip().lower() in ("1", "true", "yes")


def _missing(name: str, folder: Path, files: list[str]) -> FileNotFoundError:
    return FileNotFoundError(
        f"dataset {name!r}: files not found in {folder} (looked for {', '.join(files)}). Point the kit at a "
        f"folder that holds them: --root FOLDER on the command line, root=... in Python, or the PWOA_DATA_ROOT "
        f"environment variable (now {os.environ.get('PWOA_DATA_ROOT', 'unset')!r}); or allow a download "
        "(online) with PWOA_DOWNLOAD=1.")


def _missing_files(name: str, root: Path) -> tuple[Path, list[str]] | None:
    """(folder, files looked for) when a split's files of `name` are missing under `root`, else None."""
    if name in _MNIST_LIKE:
        folder = root / _MNIST_LIKE[name] / "raw"
        for train in (True, False):
            stems = _MNIST_FILES[train]
            if any(_find_idx(folder, s) is None for s in stems):
                return folder, [f"{s}[.gz]" for s in stems]
        return None
    base, train_files, test_files, _ = _CIFAR[name]
    for files in (train_files, test_files):
        if not all((root / base / f).is_file() for f in files):
            return root / base, files
    return None


def check_available(name: str, root: str | Path | None = None, download: bool | None = None) -> None:
    """Raise the FileNotFoundError that `load_dataset` would raise for any split of `name` whose files are missing,
    without reading them (digits needs no files; with downloads allowed nothing is checked)."""
    dataset_info(name)
    if name == "digits" or _download_default(download):
        return
    root = data_root(root)
    if not root.is_dir():
        raise _missing(name, root, ["the data root itself"])
    missing = _missing_files(name, root)
    if missing is not None:
        raise _missing(name, *missing)


def _load_torchvision(name: str, train: bool, root: Path, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if not root.is_dir() and not download:
        raise _missing(name, root, ["the data root itself"])
    if name in _MNIST_LIKE:
        return _load_mnist_like(name, train, root, download)
    return _load_cifar(name, train, root, download)


def _download(cls, root: Path, train: bool, name: str, folder: Path, files: list[str]) -> None:
    """torchvision's download of `cls` into `root`; on failure the folders it created and left empty are removed
    (an offline machine keeps no empty `MNIST/raw`), and the error names the files, --root and PWOA_DATA_ROOT."""
    below = [root / d for d in reversed(folder.relative_to(root).parents) if d != Path(".")] + [folder]
    new = [d for d in [root, *below] if not d.exists()]  # top down: e.g. root/MNIST, root/MNIST/raw
    try:
        cls(str(root), train=train, download=True)
    except Exception as err:  # offline, read-only root, ...
        for d in reversed(new):
            try:
                d.rmdir()  # only if empty: a partial download stays for a retry to see
            except OSError:
                pass
        why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FileNotFoundError(f"{_missing(name, folder, files)} A download was tried and failed ({why}): "
                                "is this machine offline?") from err


def _read_idx(path: Path) -> np.ndarray:
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


def _load_mnist_like(name: str, train: bool, root: Path, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    folder = root / _MNIST_LIKE[name] / "raw"
    stems = _MNIST_FILES[train]
    paths = [_find_idx(folder, s) for s in stems]
    if None in paths:
        if not download:
            raise _missing(name, folder, [f"{s}[.gz]" for s in stems])
        import torchvision
        _download(getattr(torchvision.datasets, _MNIST_LIKE[name]), root, train, name, folder,
                  [f"{s}[.gz]" for s in stems])
        paths = [_find_idx(folder, s) for s in stems]
    images, labels = _read_idx(paths[0]), _read_idx(paths[1])
    x = torch.from_numpy(images.copy()).float().div_(255).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


class _CifarUnpickler(pickle.Unpickler):
    """Builds only what CIFAR batch pickles hold: dicts, lists, str, int, bytes and numpy arrays.

    Containers and scalars need no global lookup; the only globals allowed are numpy's array, scalar and dtype
    reconstruction and `_codecs.encode` (how Python 3 writes bytes into a protocol-2 pickle). Any other global
    (os.system, builtins.eval, ...) raises UnpicklingError before it is imported."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol 5
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load the global {module}.{name}: CIFAR batch pickles hold only numpy arrays, "
                "lists, dicts, str and int, and unpickling anything else can run code")
        new = hasattr(np, "_core") and hasattr(np._core, "multiarray")  # numpy 2 renamed numpy.core (old name warns)
        if new and module.startswith("numpy.core."):
            module = "numpy._core." + module.removeprefix("numpy.core.")
        elif not new and module.startswith("numpy._core."):
            module = "numpy.core." + module.removeprefix("numpy._core.")
        return super().find_class(module, name)


def read_cifar_pickle(path: str | Path) -> dict:
    """One CIFAR batch pickle (`data_batch_1`, `test_batch`, `train`, ...) as a dict, read with a restricted
    unpickler (latin-1 strings, as torchvision reads them). A file that asks for anything beyond numpy arrays
    and plain containers raises ValueError naming the file."""
    try:
        with open(path, "rb") as fh:
            entry = _CifarUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError) as err:
        raise ValueError(f"{path} is not a readable CIFAR batch pickle ({type(err).__name__}: {err}); replace it "
                         "with the original file from https://www.cs.toronto.edu/~kriz/cifar.html") from err
    if not isinstance(entry, dict):
        raise ValueError(f"{path} holds a {type(entry).__name__}, not the dict of a CIFAR batch")
    return entry


def _load_cifar(name: str, train: bool, root: Path, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    base, train_files, test_files, label_key = _CIFAR[name]
    folder = root / base
    files = train_files if train else test_files
    if not all((folder / f).is_file() for f in files):
        if not download:
            raise _missing(name, folder, files)
        import torchvision
        cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        _download(cls, root, train, name, folder, files)
    xs, ys = [], []
    for f in files:  # read in place (works on a read-only root; the MD5s of rebuilt pickles may differ)
        entry = read_cifar_pickle(folder / f)
        if "data" not in entry or label_key not in entry:
            raise ValueError(f"{folder / f} has no 'data' / {label_key!r} entries: not a {name} batch file")
        xs.append(np.asarray(entry["data"], dtype=np.uint8))
        ys.extend(entry[label_key])
    data = np.concatenate(xs)
    expected = 50000 if train else 10000
    if data.shape != (expected, 3072) or len(ys) != expected:
        raise ValueError(f"dataset {name!r} in {folder}: expected {expected} images of 3x32x32, found array "
                         f"{data.shape} and {len(ys)} labels (corrupted or partial files?)")
    x = torch.from_numpy(data.reshape(-1, 3, 32, 32)).float().div_(255)
    return x, torch.tensor(ys, dtype=torch.int64)


def _train_val_split(x: torch.Tensor, y: torch.Tensor, n_val: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed seeded hold-out of `n_val` training images for validation."""
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    index = perm[:n_val] if split == "val" else perm[n_val:]
    index = torch.sort(index).values
    return x[index], y[index]
