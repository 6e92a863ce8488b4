"""Shared fixtures: real-data roots (skip when absent), the shipped digits teacher, small digits splits.

No test may touch the network: PWOA_DOWNLOAD is forced to "0" at import, before any test module imports
pwoa_lab.core.data, so a missing file is a FileNotFoundError (or a skip), never a download.
"""
from __future__ import annotations

import os

os.environ["PWOA_DOWNLOAD"] = "0"
# The suite's exact-equality checks are written for the CPU's float semantics, and its tensors are CPU tensors:
# on a GPU machine the kit's default device would be cuda. tests/test_gpu.py asks for cuda by name.
os.environ.setdefault("PWOA_DEVICE", "cpu")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# Speed only: the models under test are small, and on a shared, busy CPU several intra-op threads spin
# against each other (AutoAttack on 50 digits: ~3 s with one thread, ~100 s with two on a loaded 2-core
# machine). PWOA_TEST_THREADS=N overrides.
torch.set_num_threads(int(os.environ.get("PWOA_TEST_THREADS", "1")))

MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")

TEACHER_NOT_TRAINED = "teacher not trained yet"


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The folder named by PWOA_DATA_ROOT (read-only is fine); skip the test when it is unset or absent."""
    env = os.environ.get("PWOA_DATA_ROOT")
    if not env:
        pytest.skip("PWOA_DATA_ROOT is not set: export it as a folder holding MNIST/raw/*.gz and "
                    "cifar-10-batches-py/ to run the real-data tests")
    root = Path(env)
    if not root.is_dir():
        pytest.skip(f"PWOA_DATA_ROOT={env!r} is not a folder")
    return root


def _require(folder: Path, files: tuple[str, ...], what: str) -> Path:
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        pytest.skip(f"{what} files missing under {folder}: {', '.join(missing)}")
    return folder


@pytest.fixture(scope="session")
def mnist_root(data_root: Path) -> Path:
    """The data root, if it holds the four MNIST .gz archives in MNIST/raw/."""
    _require(data_root / "MNIST" / "raw", MNIST_FILES, "MNIST")
    return data_root


@pytest.fixture(scope="session")
def cifar10_root(data_root: Path) -> Path:
    """The data root, if it holds cifar-10-batches-py/."""
    _require(data_root / "cifar-10-batches-py", CIFAR10_FILES, "CIFAR-10")
    return data_root


@pytest.fixture(scope="session")
def digits_test():
    from pwoa_lab.core.data import load_dataset
    return load_dataset("digits", "test")


@pytest.fixture(scope="module")
def small_data():
    """(train, val): 12 training digits per class and 40 validation digits, for short runs (fresh per module)."""
    from pwoa_lab.core.data import load_dataset
    return load_dataset("digits", "train", n_per_class=12, seed=0), load_dataset("digits", "val").head(40)


def _shipped_teacher(dataset: str):
    """(model in eval mode, meta) of the shipped teacher for `dataset`; skip while it is not trained yet."""
    from pwoa_lab.io.checkpoint import shipped_teachers, load_teacher
    path = shipped_teachers()[dataset]
    if not path.is_file():
        pytest.skip(f"{TEACHER_NOT_TRAINED} ({path} is missing)")
    return load_teacher(dataset)


@pytest.fixture(scope="session")
def digits_teacher():
    """(model in eval mode, meta) of the shipped digits teacher.

    Shared by every test of the run: a test that changes the model's mode must restore it.
    """
    return _shipped_teacher("digits")


@pytest.fixture(scope="session")
def mnist_teacher():
    """(model in eval mode, meta) of the shipped MNIST LeNet-3 teacher."""
    return _shipped_teacher("mnist")


@pytest.fixture(scope="session")
def cifar10_teacher():
    """(model in eval mode, meta) of the shipped CIFAR-10 VGG-small teacher."""
    return _shipped_teacher("cifar10")


@pytest.fixture(scope="session")
def teacher(digits_teacher):
    """The shipped digits teacher's model alone (eval mode, shared: restore anything you change)."""
    return digits_teacher[0]
