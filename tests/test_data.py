"""pwoa_lab.core.data on real data: digits (bundled), MNIST and CIFAR-10 (from PWOA_DATA_ROOT, read in place)."""
from __future__ import annotations

import gzip
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch

from pwoa_lab.core.data import augment_batch, dataset_info, load_dataset, subset_per_class

# class counts published with the data (see the data folder's README): MNIST train and test
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def rows(data) -> set[bytes]:
    """Each image as the bytes of its 8-bit pixels (exact comparison of images across splits)."""
    q = (data.x * 255).round().to(torch.uint8).flatten(1)
    return {r.numpy().tobytes() for r in q}


def class_counts(y: torch.Tensor, num_classes: int = 10) -> list[int]:
    return torch.bincount(y, minlength=num_classes).tolist()


# ----------------------------------------------------------------------------------------------- digits

@pytest.fixture(scope="module")
def digits():
    return {s: load_dataset("digits", s) for s in ("train", "val", "test")}


def test_digits_shapes_dtypes_and_range(digits):
    for split, d in digits.items():
        assert d.x.shape[1:] == (1, 16, 16), split
        assert d.x.dtype == torch.float32 and d.y.dtype == torch.int64
        assert len(d) == len(d.x) == len(d.y)
        assert d.x.min() >= 0 and d.x.max() <= 1
        assert d.x.max() > 0.9  # really images in [0, 1], not [0, 1/16] or [0, 1/255]
        assert sorted(d.y.unique().tolist()) == list(range(10))
        assert d.name == "digits" and d.split == split
    assert dataset_info("digits").shape == (1, 16, 16)


def test_digits_fixed_split_sizes_and_stratification(digits):
    sizes = {s: len(d) for s, d in digits.items()}
    # per-class rounding of the 70/10/20 split of scikit-learn's 1,797 digits
    assert sizes == {"train": 1259, "val": 179, "test": 359}
    assert sum(sizes.values()) == 1797
    total = [a + b + c for a, b, c in zip(*(class_counts(d.y) for d in digits.values()))]
    for c, n in enumerate(class_counts(digits["test"].y)):
        assert abs(n - 0.2 * total[c]) <= 0.5, f"class {c}: {n} test of {total[c]}"
    for c, n in enumerate(class_counts(digits["val"].y)):
        assert abs(n - 0.1 * total[c]) <= 0.5, f"class {c}: {n} val of {total[c]}"


def test_digits_split_is_fixed_across_loads(digits):
    again = load_dataset("digits", "test")
    assert torch.equal(again.x, digits["test"].x) and torch.equal(again.y, digits["test"].y)


def test_digits_splits_are_disjoint_and_cover_everything(digits):
    tr, va, te = (rows(digits[s]) for s in ("train", "val", "test"))
    # every digit image is distinct, so the sets have the split sizes ...
    assert (len(tr), len(va), len(te)) == (1259, 179, 359)
    # ... no test image is in train or val, no val image in train ...
    assert not te & tr
    assert not te & va
    assert not va & tr
    # ... and together they are the whole data set
    assert len(tr | va | te) == 1797


# ----------------------------------------------------------------------------------------------- subsets

def test_subset_per_class_is_balanced_and_drawn_from_the_data(digits):
    train = digits["train"]
    sub = subset_per_class(train, 7, seed=3)
    assert len(sub) == 70
    assert class_counts(sub.y) == [7] * 10
    assert rows(sub) <= rows(train)
    # an image keeps its own label
    lookup = {r: int(y) for r, y in zip((x.numpy().tobytes() for x in (train.x * 255).round().to(torch.uint8)
                                                                           .flatten(1)), train.y)}
    for x, y in zip((sub.x * 255).round().to(torch.uint8).flatten(1), sub.y):
        assert lookup[x.numpy().tobytes()] == int(y)
    # shuffled, not grouped by class
    assert not torch.equal(sub.y, torch.sort(sub.y).values)


def test_subset_per_class_is_seeded(digits):
    train = digits["train"]
    a, b = subset_per_class(train, 5, seed=11), subset_per_class(train, 5, seed=11)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    c = subset_per_class(train, 5, seed=12)
    assert rows(a) != rows(c)
    # load_dataset(n_per_class=...) is the same seeded subset
    d = load_dataset("digits", "train", n_per_class=5, seed=11)
    assert torch.equal(a.x, d.x) and torch.equal(a.y, d.y)


def test_subset_per_class_caps_at_the_class_size_and_rejects_n_below_one(digits):
    val = digits["val"]
    sub = subset_per_class(val, 1000, seed=0)
    assert class_counts(sub.y) == class_counts(val.y)
    assert rows(sub) == rows(val)
    with pytest.raises(ValueError, match="n_per_class"):
        subset_per_class(val, 0)


# ----------------------------------------------------------------------------------------------- MNIST

@pytest.fixture(scope="module")
def mnist(mnist_root):
    return {s: load_dataset("mnist", s, mnist_root) for s in ("train", "val", "test")}


def test_mnist_sizes_labels_and_range(mnist):
    assert {s: len(d) for s, d in mnist.items()} == {"train": 55000, "val": 5000, "test": 10000}
    for d in mnist.values():
        assert d.x.shape[1:] == (1, 28, 28) and d.x.dtype == torch.float32
        assert d.x.min() == 0 and d.x.max() == 1
    assert mnist["test"].y[:5].tolist() == [7, 2, 1, 0, 4]
    assert class_counts(mnist["test"].y) == MNIST_TEST_COUNTS
    # train + val is exactly the 60,000 training images
    assert [a + b for a, b in zip(class_counts(mnist["train"].y), class_counts(mnist["val"].y))] == MNIST_TRAIN_COUNTS


def test_mnist_splits_are_disjoint(mnist):
    tr, va, te = (rows(mnist[s]) for s in ("train", "val", "test"))
    assert len(va) == 5000 and len(te) == 10000
    assert not va & tr
    assert not te & tr
    assert not te & va


def test_mnist_val_split_is_fixed(mnist, mnist_root):
    again = load_dataset("mnist", "val", mnist_root)
    assert torch.equal(again.x, mnist["val"].x) and torch.equal(again.y, mnist["val"].y)


def test_mnist_loads_through_the_environment_variable(mnist_root, monkeypatch):
    monkeypatch.setenv("PWOA_DATA_ROOT", str(mnist_root))
    test = load_dataset("mnist", "test")  # no root argument
    assert len(test) == 10000 and test.y[:5].tolist() == [7, 2, 1, 0, 4]


def test_mnist_loads_from_a_read_only_root_without_writing(mnist_root, tmp_path):
    ro = tmp_path / "ro"
    raw = ro / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copyfile(mnist_root / "MNIST" / "raw" / name, raw / name)
    for p in (raw / "t10k-images-idx3-ubyte.gz", raw / "t10k-labels-idx1-ubyte.gz"):
        p.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    for d in (raw, raw.parent, ro):
        d.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)

    def snapshot():
        return sorted((str(p.relative_to(ro)), p.stat().st_size, p.stat().st_mtime_ns) for p in ro.rglob("*"))

    before = snapshot()
    try:
        test = load_dataset("mnist", "test", ro)
        after = snapshot()
    finally:
        for d in (ro, raw.parent, raw):
            d.chmod(stat.S_IRWXU)
    assert after == before, "loading wrote into the data root"
    reference = load_dataset("mnist", "test", mnist_root)
    assert torch.equal(test.x, reference.x) and torch.equal(test.y, reference.y)
    # the train files were not copied: asking for them is a clear error, not a download
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_dataset("mnist", "train", ro)


def test_truncated_mnist_archive_is_a_clear_error(mnist_root, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    shutil.copyfile(mnist_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz", raw / "t10k-labels-idx1-ubyte.gz")
    with gzip.open(mnist_root / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz", "rb") as f:
        head = f.read(16 + 784 * 100)  # header plus 100 of the 10,000 images
    with gzip.open(raw / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(head)
    with pytest.raises(ValueError, match="truncated"):
        load_dataset("mnist", "test", tmp_path)


# ----------------------------------------------------------------------------------------------- CIFAR-10

def test_cifar10_test_split_matches_the_real_files(cifar10_root):
    test = load_dataset("cifar10", "test", cifar10_root)
    assert test.x.shape == (10000, 3, 32, 32) and test.x.dtype == torch.float32
    assert test.x.min() >= 0 and test.x.max() <= 1
    assert torch.equal(test.x[0, :, 0, 0], torch.tensor([158, 112, 49]) / 255)
    assert test.y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert class_counts(test.y) == [1000] * 10


# ----------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_data_names_dataset_folder_and_variable(name, tmp_path, monkeypatch):
    empty = tmp_path / "empty_root"
    empty.mkdir()
    monkeypatch.setenv("PWOA_DATA_ROOT", str(empty))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(name, "test")
    msg = str(info.value)
    assert repr(name) in msg
    assert str(empty) in msg  # the folder looked in (inside the root)
    assert "PWOA_DATA_ROOT" in msg


def test_missing_root_folder_is_a_clear_error(tmp_path, monkeypatch):
    missing = tmp_path / "no_such_folder"
    monkeypatch.setenv("PWOA_DATA_ROOT", str(missing))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("mnist", "train")
    msg = str(info.value)
    assert "'mnist'" in msg and str(missing) in msg and "PWOA_DATA_ROOT" in msg
    assert not missing.exists()  # nothing was created (no download attempt)


def test_unknown_dataset_and_split_list_the_valid_names():
    with pytest.raises(ValueError) as info:
        load_dataset("imagenet", "train")
    for valid in ("cifar10", "cifar100", "digits", "fashion_mnist", "mnist"):
        assert valid in str(info.value)
    assert "'imagenet'" in str(info.value)
    with pytest.raises(ValueError, match="train, val"):
        load_dataset("digits", "training")


# ----------------------------------------------------------------------------------------------- augmentation

def test_augment_batch_keeps_shape_range_and_is_a_crop_or_flip():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 12, 12, generator=g)
    original = x.clone()
    out = augment_batch(x, torch.Generator().manual_seed(1), pad=2)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(x, original), "the input batch was modified"
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        candidates = [padded[i, :, dy:dy + 12, dx:dx + 12] for dy in range(5) for dx in range(5)]
        candidates += [c.flip(-1) for c in candidates]
        assert any(torch.equal(out[i], c) for c in candidates), f"image {i} is not a padded crop (or its mirror)"
    # seeded: the same generator seed gives the same batch, and the batch is really changed
    again = augment_batch(x, torch.Generator().manual_seed(1), pad=2)
    assert torch.equal(out, again)
    assert not torch.equal(out, x)


def test_augment_batch_on_cifar_shaped_digits_range(digits):
    x = digits["test"].x[:16]
    out = augment_batch(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    # zero padding only adds zeros: the total ink can only go down (crop) or stay (flip / no shift)
    assert (out.flatten(1).sum(1) <= x.flatten(1).sum(1) + 1e-4).all()


def test_data_folder_is_never_written(data_root):
    """Loading from the shared root is read-only: nothing new appears there."""
    before = sorted(os.listdir(data_root))
    load_dataset("digits", "val")
    if (data_root / "cifar-10-batches-py" / "test_batch").is_file():
        load_dataset("cifar10", "test", data_root)
    assert sorted(os.listdir(data_root)) == before
    assert not (Path(data_root) / "MNIST" / "processed").exists()


# ----------------------------------------------------------------------------------------------- offline (issue 24)

def test_missing_data_is_not_downloaded_unless_asked_and_nothing_is_created(tmp_path, monkeypatch):
    monkeypatch.delenv("PWOA_DOWNLOAD", raising=False)  # the default
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("mnist", "test", root)
    msg = str(info.value)
    assert "--root FOLDER" in msg and "PWOA_DATA_ROOT" in msg and "PWOA_DOWNLOAD=1" in msg
    assert "download was tried" not in msg
    assert list(root.iterdir()) == []  # no MNIST/raw left behind


def test_the_default_data_folder_is_left_as_it_is_when_the_data_is_missing(monkeypatch):
    from pwoa_lab.core.data import DEFAULT_DATA_ROOT
    if (DEFAULT_DATA_ROOT / "MNIST").exists():
        pytest.skip(f"{DEFAULT_DATA_ROOT / 'MNIST'} exists here")
    monkeypatch.delenv("PWOA_DATA_ROOT", raising=False)
    monkeypatch.delenv("PWOA_DOWNLOAD", raising=False)
    before = sorted(os.listdir(DEFAULT_DATA_ROOT)) if DEFAULT_DATA_ROOT.exists() else None
    with pytest.raises(FileNotFoundError, match="PWOA_DATA_ROOT"):
        load_dataset("mnist", "train")
    assert (sorted(os.listdir(DEFAULT_DATA_ROOT)) if DEFAULT_DATA_ROOT.exists() else None) == before


def test_check_available_raises_what_loading_would_without_reading(tmp_path, monkeypatch, mnist_root):
    from pwoa_lab.core.data import check_available
    monkeypatch.delenv("PWOA_DOWNLOAD", raising=False)
    root = tmp_path / "root"
    (root / "MNIST" / "raw").mkdir(parents=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):  # the test split is missing
        os.symlink(mnist_root / "MNIST" / "raw" / name, root / "MNIST" / "raw" / name)
    with pytest.raises(FileNotFoundError) as checked:
        check_available("mnist", root)
    with pytest.raises(FileNotFoundError) as loaded:
        load_dataset("mnist", "test", root)
    assert str(checked.value) == str(loaded.value)
    check_available("mnist", mnist_root)
    check_available("digits", tmp_path / "nowhere")  # embedded: needs no files


def test_a_failed_download_leaves_no_empty_folders(tmp_path, monkeypatch):
    import torchvision

    def offline_mnist(root, train, download):  # what torchvision does on an offline machine: folders, then fail
        (Path(root) / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline_mnist)
    root = tmp_path / "root"
    with pytest.raises(FileNotFoundError, match="A download was tried and failed .*offline"):
        load_dataset("mnist", "test", root, download=True)
    assert not root.exists()
