"""pwoa_lab.io.checkpoint: round trips, float16 storage, no overwrites, and clear errors for bad files."""
from __future__ import annotations

import random

import pytest
import torch

from pwoa_lab.io.checkpoint import (FORMAT, shipped_teachers, CheckpointError, load_checkpoint, load_teacher,
                                    read_checkpoint, save_checkpoint)
from pwoa_lab.core.data import dataset_info, load_dataset
from pwoa_lab.core.models import build_model

META = {"model": "small_cnn", "dataset": "digits", "eps": 0.1, "seed": 7, "kind": "teacher",
        "metrics": {"val_natural": 91.5, "val_pgd": 60.25}, "note": "unit test"}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("small_cnn", "digits").eval()


@pytest.fixture(scope="module")
def images(digits_test):
    return digits_test.x[:32]


@pytest.fixture
def saved(tmp_path, model):
    return save_checkpoint(tmp_path / "model.pt", model, dict(META))


def test_round_trip_gives_identical_weights_and_outputs(saved, model, images):
    loaded, meta = load_checkpoint(saved)
    assert type(loaded) is type(model)
    assert not loaded.training
    ref, new = model.state_dict(), loaded.state_dict()
    assert ref.keys() == new.keys()
    for k in ref:
        assert new[k].dtype == ref[k].dtype and torch.equal(new[k], ref[k]), k
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))
    assert loaded.kit_name == "small_cnn" and loaded.kit_dataset == "digits"


def test_metadata_is_kept(saved):
    _, meta = load_checkpoint(saved)
    for key, value in META.items():
        assert meta[key] == value, key
    assert meta["storage_dtype"] == "float32"
    assert set(meta["versions"]) >= {"pwoa_lab", "torch", "numpy"}
    blob = read_checkpoint(saved)
    assert blob["format"] == FORMAT and blob["version"] == 1


def test_float16_storage_loads_as_float32_and_is_half_the_size(tmp_path, model, images):
    p32 = save_checkpoint(tmp_path / "f32.pt", model, dict(META))
    p16 = save_checkpoint(tmp_path / "f16.pt", model, dict(META), storage_dtype="float16")
    ratio = p16.stat().st_size / p32.stat().st_size
    assert 0.45 < ratio < 0.6, ratio
    stored = read_checkpoint(p16)["state_dict"]
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    loaded, meta = load_checkpoint(p16)
    assert meta["storage_dtype"] == "float16"
    for k, v in model.state_dict().items():
        w = loaded.state_dict()[k]
        assert w.dtype == torch.float32
        # exactly the float16 rounding of the original weights
        assert torch.equal(w, v.half().float()), k
    with torch.no_grad():
        a, b = model(images), loaded(images)
    assert not torch.equal(a, b)  # rounding did happen ...
    assert torch.allclose(a, b, atol=1e-2, rtol=1e-2)  # ... and barely matters


def test_unknown_storage_dtype_is_rejected(tmp_path, model):
    with pytest.raises(KeyError):
        save_checkpoint(tmp_path / "x.pt", model, dict(META), storage_dtype="int8")
    assert not (tmp_path / "x.pt").exists()


def test_metadata_must_name_model_and_dataset(tmp_path, model):
    with pytest.raises(ValueError, match="'model' and 'dataset'"):
        save_checkpoint(tmp_path / "x.pt", model, {"dataset": "digits"})
    assert not (tmp_path / "x.pt").exists()


def test_refuses_to_overwrite(saved, model):
    before = saved.read_bytes()
    torch.manual_seed(1)
    other = build_model("small_cnn", "digits")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        save_checkpoint(saved, other, dict(META))
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]  # no temporary file left behind
    # an explicit overwrite replaces it
    save_checkpoint(saved, other, dict(META), overwrite=True)
    loaded, _ = load_checkpoint(saved)
    assert torch.equal(loaded.conv1.weight, other.conv1.weight)
    assert not torch.equal(loaded.conv1.weight, model.conv1.weight)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_file(saved, tmp_path):
    data = saved.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted") as info:
        load_checkpoint(bad)
    assert str(bad) in str(info.value)


def test_random_bytes_file(tmp_path):
    bad = tmp_path / "noise.pt"
    bad.write_bytes(random.Random(0).randbytes(4096))
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(bad)


@pytest.mark.parametrize("content", ["state_dict", "dict", "tensor"])
def test_foreign_torch_save_file(tmp_path, model, content):
    bad = tmp_path / "foreign.pt"
    obj = {"state_dict": model.state_dict(), "dict": {"weights": model.state_dict(), "epoch": 3},
           "tensor": torch.zeros(3)}[content]
    torch.save(obj, bad)
    with pytest.raises(CheckpointError, match="not a pwoa-lab checkpoint"):
        load_checkpoint(bad)


def test_state_dict_of_another_architecture(saved, tmp_path):
    blob = torch.load(saved, weights_only=True)
    blob["meta"]["model"] = "lenet3"  # the weights are still SmallCNN's
    bad = tmp_path / "relabelled.pt"
    torch.save(blob, bad)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    msg = str(info.value)
    assert "weights do not fit lenet3" in msg and "another architecture" in msg


def test_unknown_architecture_in_metadata(saved, tmp_path):
    blob = torch.load(saved, weights_only=True)
    blob["meta"]["model"] = "vgg16"
    bad = tmp_path / "unknown.pt"
    torch.save(blob, bad)
    with pytest.raises(CheckpointError, match="unknown architecture"):
        load_checkpoint(bad)


def test_expect_checks_the_metadata(saved):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(saved, expect={"dataset": "mnist"})
    assert "dataset='digits'" in str(info.value) and "'mnist'" in str(info.value)
    with pytest.raises(CheckpointError, match="model='small_cnn'"):
        load_checkpoint(saved, expect={"model": "lenet3"})
    # matching or unspecified expectations load
    load_checkpoint(saved, expect={"dataset": "digits", "model": "small_cnn"})
    load_checkpoint(saved, expect={"dataset": None})


def test_load_teacher_unknown_dataset():
    with pytest.raises(ValueError, match="no shipped teacher for 'cifar100'"):
        load_teacher("cifar100")


def test_shipped_digits_teacher(digits_teacher, digits_test):
    model, meta = digits_teacher
    assert meta["dataset"] == "digits" and meta["model"] == "small_cnn"
    # the kit's default digits radius is the one its teacher was trained for
    assert meta["eps"] == pytest.approx(dataset_info("digits").eps)
    assert not model.training
    assert shipped_teachers()["digits"].is_file()
    with torch.no_grad():
        acc = (model(digits_test.x).argmax(1) == digits_test.y).float().mean().item()
    assert acc > 0.85, acc


def test_shipped_mnist_teacher(mnist_teacher, mnist_root):
    model, meta = mnist_teacher
    assert meta["dataset"] == "mnist" and meta["model"] == "lenet3"
    assert meta["eps"] == pytest.approx(dataset_info("mnist").eps) == pytest.approx(0.3)
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())  # whatever the storage dtype
    test = load_dataset("mnist", "test", mnist_root).head(200)
    with torch.no_grad():
        acc = (model(test.x).argmax(1) == test.y).float().mean().item()
    assert acc > 0.95, acc


def test_saved_file_is_plain_weights_only_data(saved):
    """A checkpoint holds only tensors and plain Python values: torch's safe loader reads it as is."""
    blob = torch.load(saved, map_location="cpu", weights_only=True)
    assert type(blob["meta"]["versions"]["torch"]) is str
    assert blob["meta"]["versions"]["torch"] == str(torch.__version__)


def test_file_whose_metadata_holds_a_torch_version_object_loads(saved, tmp_path, model, images):
    """Files written before versions() stored plain strings carry torch.__version__ (a TorchVersion)."""
    blob = torch.load(saved, weights_only=True)
    blob["meta"]["versions"]["torch"] = torch.__version__
    old = tmp_path / "old.pt"
    torch.save(blob, old)
    loaded, meta = load_checkpoint(old)
    assert meta["versions"]["torch"] == str(torch.__version__)
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))


class _Custom:
    """An object only arbitrary unpickling can rebuild."""


@pytest.mark.parametrize("content", ["empty", "custom object"])
@pytest.mark.parametrize("loader", ["checkpoint", "sparse", "structured"])
def test_unreadable_files_get_the_kits_words_never_torchs_weights_only_advice(tmp_path, loader, content):
    from pwoa_lab.pruning.export import load_sparse
    from pwoa_lab.pruning.structured import load_structured
    bad = tmp_path / "bad.pt"
    if content == "empty":
        bad.write_bytes(b"")
    else:  # a torch.save file that needs arbitrary unpickling: torch's own error advises weights_only=False
        torch.save({"format": FORMAT, "meta": _Custom()}, bad)
    load = {"checkpoint": load_checkpoint, "sparse": load_sparse, "structured": load_structured}[loader]
    with pytest.raises(ValueError) as info:
        load(bad)
    msg = str(info.value)
    assert str(bad) in msg
    assert ("the file is empty: 0 bytes" if content == "empty" else "only arbitrary unpickling could load") in msg
    assert "weights_only" not in msg and "Re-running" not in msg
