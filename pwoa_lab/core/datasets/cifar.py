"""CIFAR-10 and CIFAR-100 from the original Python pickles (`<root>/cifar-10-batches-py/`), read in place by a
restricted unpickler (`read_cifar_pickle`) that builds numpy arrays and plain containers only, so a tampered batch
file cannot run code."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from pwoa_lab.core.datasets.files import download_into, missing_error, split_of_training_set
from pwoa_lab.core.datasets.record import DatasetInfo, register_dataset


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


def _layout(classes: int) -> tuple[str, list[str], list[str], str, str]:
    """(folder, training files, test files, label key, torchvision class name) of CIFAR-`classes`."""
    if classes == 10:
        return ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels", "CIFAR10")
    return "cifar-100-python", ["train"], ["test"], "fine_labels", "CIFAR100"


def _missing(info: DatasetInfo, root: Path) -> tuple[Path, list[str]] | None:
    """(folder, files) of the first split whose pickles are missing under `root`, else None."""
    base, train_files, test_files, _, _ = _layout(info.num_classes)
    for files in (train_files, test_files):
        if not all((root / base / f).is_file() for f in files):
            return root / base, files
    return None


def _load(info: DatasetInfo, split: str, root: Path, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """`split` of CIFAR-10 or -100: train / val from the 50,000 training images, test from the 10,000."""
    base, train_files, test_files, label_key, tv_class = _layout(info.num_classes)
    name, train = info.name, split in ("train", "val")
    folder = root / base
    files = train_files if train else test_files
    if not all((folder / f).is_file() for f in files):
        if not download:
            raise missing_error(name, folder, files)
        import torchvision
        download_into(getattr(torchvision.datasets, tv_class), root, train, name, folder, files)
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
    y = torch.tensor(ys, dtype=torch.int64)
    return split_of_training_set(x, y, info.n_val, split) if train else (x, y)


CIFAR10 = register_dataset(DatasetInfo(
    "cifar10", 10, (3, 32, 32), eps=8 / 255, pgd_step=2 / 255, pgd_steps=10, n_val=5000, augment=True,
    load=_load, missing=_missing,
    default_model="vgg_small", teacher_file="cifar10_vgg_small.pt",
    stats=((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)), public_teachers=True,
    help="CIFAR-10 32x32 colour (python pickles under --root / PWOA_DATA_ROOT)"), replace=True)
CIFAR100 = register_dataset(DatasetInfo(
    "cifar100", 100, (3, 32, 32), eps=8 / 255, pgd_step=2 / 255, pgd_steps=10, n_val=5000, augment=True,
    load=_load, missing=_missing,
    default_model="resnet18", stats=((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)), public_teachers=True,
    help="CIFAR-100 32x32 colour (python pickles under --root / PWOA_DATA_ROOT; no shipped teacher)"), replace=True)
