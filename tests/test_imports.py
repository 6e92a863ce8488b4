"""Importing public robust teachers: key layouts, strict loading, normalization, and no unsafe unpickling.

Round trips rename a kit model's keys into each public layout (TRADES WRN with `sub_block1`, RobustBench's
`model.` with normalization buffers, DataParallel's `module.`, plain), import them back and compare outputs on
random images. The WideResNet here is WRN-16-2 (2 blocks per group, same TRADES key names as WRN-34-10, which
`tests/test_cifar_path.py` checks at full size); ResNet-18 is the kit's own.
"""
from __future__ import annotations

import argparse
import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from pwoa_lab import cli
from pwoa_lab.io.checkpoint import load_checkpoint, save_checkpoint
from pwoa_lab.core.data import dataset_info, load_dataset, read_cifar_pickle
from pwoa_lab.io.teacher_import import (TeacherImportError, import_teacher, kit_to_public,
                                        load_public_weights, parse_eps, public_to_kit, read_weights, to_public_layout)
from pwoa_lab.core.models import Normalized, ResNet18, WideResNet, build_model, logits_and_hiddens

MEAN, STD = dataset_info("cifar10").stats


def _randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter and BatchNorm buffer drawn at random, so that two swapped tensors change the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif t.dim() > 1:  # conv / linear weights: keep the init's scale so activations stay finite
                t.copy_(torch.randn(t.shape, generator=gen) * t.std().clamp_min(1e-3))
            else:  # BatchNorm scales around 1; shifts, running means and biases around 0
                t.copy_(torch.randn(t.shape, generator=gen) * 0.1 + (1.0 if name.endswith(".weight") else 0.0))
    return model.eval()


def _wrn() -> WideResNet:
    return WideResNet(depth=16, widen=2)


def _fresh(arch: str) -> nn.Module:
    torch.manual_seed(99)  # a different init than the original: only the loaded weights can make them agree
    return _wrn() if arch == "wrn34_10" else ResNet18()


@pytest.fixture(scope="module")
def originals() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {"wrn34_10": _randomized(_wrn(), 1), "resnet18": _randomized(ResNet18(), 2)}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))


# ----------------------------------------------------------------------------------------------- name rules

@pytest.mark.parametrize("kit, public, arch, n", [
    ("blocks.0.bn1.weight", "block1.layer.0.bn1.weight", "wrn34_10", 5),
    ("blocks.5.shortcut.weight", "block2.layer.0.convShortcut.weight", "wrn34_10", 5),
    ("blocks.14.conv2.weight", "block3.layer.4.conv2.weight", "wrn34_10", 5),
    ("bn.running_var", "bn1.running_var", "wrn34_10", 5),
    ("fc.bias", "fc.bias", "wrn34_10", 5),
    ("conv1.weight", "conv1.weight", "wrn34_10", 5),
    ("blocks.3.conv1.weight", "block2.layer.1.conv1.weight", "wrn34_10", 2),
    ("blocks.4.shortcut.1.running_mean", "layer3.0.shortcut.1.running_mean", "resnet18", 0),
    ("blocks.7.bn2.weight", "layer4.1.bn2.weight", "resnet18", 0),
    ("bn1.bias", "bn1.bias", "resnet18", 0),
    ("fc.weight", "linear.weight", "resnet18", 0),
])
def test_explicit_name_rules(kit, public, arch, n):
    assert kit_to_public(kit, arch, n) == public
    assert public_to_kit(public, arch, n) == kit


@pytest.mark.parametrize("arch", ["wrn34_10", "resnet18"])
def test_every_kit_name_round_trips_and_public_names_are_distinct(arch):
    with torch.device("meta"):  # the full-size architectures' names without allocating weights
        names = list(build_model(arch, "cifar10").state_dict())
    n = 5 if arch == "wrn34_10" else 0
    public = [kit_to_public(k, arch, n) for k in names]
    assert len(set(public)) == len(names)
    assert [public_to_kit(p, arch, n) for p in public] == names
    if arch == "wrn34_10":
        assert "block3.layer.4.bn2.running_var" in public and "bn1.weight" in public
        assert sum(".convShortcut." in p for p in public) == 3  # one per group, where width or stride changes
    else:
        assert "linear.weight" in public and "layer2.0.shortcut.0.weight" in public


# ----------------------------------------------------------------------------------------------- round trips

LAYOUTS = [  # (format written, DataParallel prefix, format read back)
    ("plain", False, "plain"), ("plain", True, "plain"), ("robustbench", False, "robustbench"),
    ("robustbench", True, "robustbench"), ("trades", False, "trades"), ("trades", True, "trades"),
]


@pytest.mark.parametrize("arch", ["wrn34_10", "resnet18"])
@pytest.mark.parametrize("written, dataparallel, fmt", LAYOUTS)
def test_round_trip_through_a_file(tmp_path, originals, images, arch, written, dataparallel, fmt):
    original = originals[arch]
    sub_block1 = written == "trades" and arch == "wrn34_10"
    public = to_public_layout(original.state_dict(), arch, written, dataparallel=dataparallel,
                              sub_block1=sub_block1)
    assert all(k.startswith("module.") for k in public) == dataparallel
    assert any(k.startswith(("model.", "module.model.")) for k in public) == (written == "robustbench")
    path = tmp_path / "public.pt"
    torch.save({"state_dict": public, "epoch": 99, "best_acc": 57.3}, path)  # a typical training-script file
    model, report = load_public_weights(path, _fresh(arch), fmt)
    assert not isinstance(model, Normalized) and report.normalize is None
    assert report.loaded == len(original.state_dict())
    assert report.stripped == (["module."] if dataparallel else []) + (["model."] if written == "robustbench" else [])
    n_sub = sum(k.startswith(("sub_block1.", "module.sub_block1.")) for k in public)
    assert (n_sub > 0) == sub_block1 and len(report.dropped) == n_sub
    assert all(name.startswith("sub_block1.") for name in report.dropped)
    assert torch.equal(model(images), original(images))
    for k, v in original.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_kit_names_load_as_plain(originals, images):
    original = originals["resnet18"]
    model, report = load_public_weights(dict(original.state_dict()), _fresh("resnet18"), "plain")
    assert torch.equal(model(images), original(images)) and report.loaded == len(original.state_dict())


def test_robustbench_trades_model_with_sub_block1_under_model_prefix(originals, images):
    # RobustBench's copy of the TRADES WRN keeps sub_block1 (its WideResNet(sub_block1=True)), under `model.`
    original = originals["wrn34_10"]
    public = to_public_layout(original.state_dict(), "wrn34_10", "robustbench", sub_block1=True)
    assert any(k.startswith("model.sub_block1.") for k in public)
    model, report = load_public_weights(public, _fresh("wrn34_10"), "robustbench")
    assert torch.equal(model(images), original(images)) and report.dropped


def test_trades_layout_matches_the_published_names(originals):
    public = to_public_layout(originals["wrn34_10"].state_dict(), "wrn34_10", "trades")
    for name in ("conv1.weight", "block1.layer.0.bn1.weight", "block1.layer.0.conv1.weight",
                 "block1.layer.0.convShortcut.weight", "block2.layer.1.conv2.weight",
                 "sub_block1.layer.0.conv1.weight", "bn1.running_mean", "fc.weight", "fc.bias"):
        assert name in public, name
    # WRN-16-2: group 1 goes 16 -> 32 channels, so block1.layer.0 has a shortcut conv; layer.1 has none
    assert "block1.layer.1.convShortcut.weight" not in public


# ----------------------------------------------------------------------------------------------- strict loading

def _trades(originals) -> dict[str, torch.Tensor]:
    return to_public_layout(originals["wrn34_10"].state_dict(), "wrn34_10", "trades")


def test_missing_tensor_is_listed(originals):
    public = _trades(originals)
    del public["block2.layer.1.conv2.weight"]
    with pytest.raises(TeacherImportError) as err:
        load_public_weights(public, _fresh("wrn34_10"), "trades")
    text = str(err.value)
    assert "missing (kit tensors the file does not fill), 1: blocks.3.conv2.weight" in text
    assert "left over" not in text


def test_left_over_tensor_is_listed(originals):
    public = _trades(originals)
    public["aux_head.weight"] = torch.zeros(10, 128)
    with pytest.raises(TeacherImportError) as err:
        load_public_weights(public, _fresh("wrn34_10"), "trades")
    assert "left over (file tensors that map to no kit tensor), 1: aux_head.weight" in str(err.value)


def test_sub_block1_is_an_error_unless_the_format_drops_it(originals):
    public = _trades(originals)
    with pytest.raises(TeacherImportError) as err:
        load_public_weights(public, _fresh("wrn34_10"), "plain")
    text = str(err.value)
    assert "sub_block1.layer.0.conv1.weight" in text and "use --format trades" in text


def test_shape_mismatch_is_listed(originals):
    public = _trades(originals)
    public["fc.weight"] = torch.zeros(100, public["fc.weight"].shape[1])
    public["fc.bias"] = torch.zeros(100)
    with pytest.raises(TeacherImportError) as err:
        load_public_weights(public, _fresh("wrn34_10"), "trades")
    text = str(err.value)
    assert "shape mismatch, 2:" in text and "fc.weight (file fc.weight): file [100, 128] vs kit [10, 128]" in text


def test_wrong_depth_says_so(originals):
    public = _trades(originals)  # WRN-16 (2 blocks per group) into a WRN-10 (1 per group)
    with pytest.raises(TeacherImportError) as err:
        load_public_weights(public, WideResNet(depth=10, widen=2), "trades")
    text = str(err.value)
    assert "2 blocks per group (WRN-16)" in text and "left over" in text


def test_wrong_architecture_says_so(originals):
    public = to_public_layout(originals["resnet18"].state_dict(), "resnet18", "plain")
    with pytest.raises(TeacherImportError) as err:
        load_public_weights(public, _fresh("wrn34_10"), "plain")
    assert "try --arch resnet18" in str(err.value)


def test_robustbench_prefix_with_plain_format_is_refused_with_a_hint(originals):
    public = to_public_layout(originals["resnet18"].state_dict(), "resnet18", "robustbench")
    with pytest.raises(TeacherImportError) as err:
        load_public_weights(public, _fresh("resnet18"), "plain")
    assert "use --format robustbench" in str(err.value)


def test_two_names_for_one_tensor_are_refused(originals):
    public = _trades(originals)
    public["bn.weight"] = public["bn1.weight"].clone()  # the kit's name beside the public one
    with pytest.raises(TeacherImportError, match="two file tensors for one kit tensor"):
        load_public_weights(public, _fresh("wrn34_10"), "trades")


def test_non_finite_weights_are_refused(originals):
    public = _trades(originals)
    public["fc.weight"][0, 0] = float("nan")
    with pytest.raises(TeacherImportError, match="non-finite values"):
        load_public_weights(public, _fresh("wrn34_10"), "trades")


def test_old_files_without_num_batches_tracked_load(originals, images):
    public = {k: v for k, v in _trades(originals).items() if not k.endswith("num_batches_tracked")}
    model, report = load_public_weights(public, _fresh("wrn34_10"), "trades")
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert len(report.filled) == n_bn and all(k.endswith("num_batches_tracked") for k in report.filled)
    assert torch.equal(model(images), originals["wrn34_10"](images))


def test_half_precision_file_loads_as_float32(originals, images):
    public = {k: (v.half() if v.is_floating_point() else v) for k, v in _trades(originals).items()}
    model, _ = load_public_weights(public, _fresh("wrn34_10"), "trades")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert torch.allclose(model(images), originals["wrn34_10"](images), rtol=0.05, atol=0.05)


# ----------------------------------------------------------------------------------------------- unsafe files

MARKER_TEXT = "the side effect ran"


def _side_effect(path: str) -> dict:
    """What an attacker's pickle would run on load (here: write a marker file)."""
    Path(path).write_text(MARKER_TEXT)
    return {}


class Payload:
    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return _side_effect, (self.path,)


def test_file_needing_arbitrary_unpickling_is_refused(tmp_path, originals):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": dict(originals["resnet18"].state_dict()), "hook": Payload(marker)}, path)
    with pytest.raises(TeacherImportError) as err:
        read_weights(path)
    assert "needs arbitrary unpickling" in str(err.value) and "weights_only=True" in str(err.value)
    assert "_side_effect" in str(err.value)  # names the global it refused
    assert not marker.exists()
    # the file really does run code when loaded the unsafe way: the refusal above is what protects
    torch.load(path, weights_only=False)
    assert marker.read_text() == MARKER_TEXT


def test_pickled_namespace_is_refused_with_the_way_out(tmp_path, originals):
    path = tmp_path / "with_args.pt"
    torch.save({"state_dict": dict(originals["resnet18"].state_dict()), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(TeacherImportError) as err:
        import_teacher("resnet18", "cifar10", path, n=0, out=tmp_path / "t.pt")
    assert "torch.save(sd.get('state_dict', sd), 'weights.pt')" in str(err.value)
    assert not (tmp_path / "t.pt").exists()


def test_damaged_and_foreign_files(tmp_path, originals):
    path = tmp_path / "cut.pt"
    torch.save(dict(originals["resnet18"].state_dict()), path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(TeacherImportError, match="truncated, damaged"):
        read_weights(path)
    other = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], other)
    with pytest.raises(TeacherImportError, match="not a state dict"):
        read_weights(other)
    with pytest.raises(TeacherImportError, match="does not exist"):
        read_weights(tmp_path / "nope.pt")


def test_kit_checkpoint_is_pointed_back_to_the_kit(tmp_path, originals):
    path = save_checkpoint(tmp_path / "kit.pt", build_model("resnet18", "cifar10"),
                           {"model": "resnet18", "dataset": "cifar10"})
    with pytest.raises(TeacherImportError, match="already a pwoa-lab checkpoint"):
        read_weights(path)


def _cifar_batch(n: int = 20, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"batch_label": "testing batch 1 of 1", "labels": [int(v) for v in rng.integers(0, 10, n)],
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar_reader_reads_numpy_batches(tmp_path, protocol):
    batch = _cifar_batch()
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    back = read_cifar_pickle(path)
    assert back["labels"] == batch["labels"] and back["batch_label"] == batch["batch_label"]
    assert back["data"].dtype == np.uint8 and np.array_equal(back["data"], batch["data"])


def test_cifar_reader_refuses_code(tmp_path):
    marker = tmp_path / "marker.txt"
    root = tmp_path / "root"
    (root / "cifar-10-batches-py").mkdir(parents=True)
    batch = {**_cifar_batch(), "extra": Payload(marker)}
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError) as err:
        load_dataset("cifar10", "test", root)
    assert "refusing to load the global" in str(err.value) and "_side_effect" in str(err.value)
    assert not marker.exists()


# ----------------------------------------------------------------------------------------------- normalization

def test_normalization_buffers_become_a_normalized_model(originals, images):
    inner = originals["resnet18"]
    published = Normalized(inner, MEAN, STD).eval()  # a public model that normalizes inside
    for keys in (("mu", "sigma"), ("normalize.mean", "normalize.std"), ("mean", "std")):
        public = to_public_layout(published.state_dict(), "resnet18", "robustbench", norm_keys=keys)
        assert public[keys[0]].shape == (1, 3, 1, 1)
        model, report = load_public_weights(public, _fresh("resnet18"), "robustbench")
        assert isinstance(model, Normalized) and report.normalize_from == f"file buffers {keys[0]}/{keys[1]}"
        assert torch.allclose(model.mean.flatten(), torch.tensor(MEAN))
        mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
        expected = inner((images - mean) / std)
        assert torch.equal(model(images), expected)
        assert not torch.allclose(model(images), inner(images))  # the normalization does change the outputs


def test_normalized_model_keeps_hiddens_for_hsic(originals, images):
    inner = originals["resnet18"]
    model = Normalized(inner, MEAN, STD).eval()
    logits, hiddens = logits_and_hiddens(model, images)
    ref_logits, ref_hiddens = inner.forward_features((images - model.mean) / model.std)
    assert model.hidden_names == inner.hidden_names and len(hiddens) == 10
    assert torch.equal(logits, ref_logits) and all(torch.equal(a, b) for a, b in zip(hiddens, ref_hiddens))


def test_user_mean_std_wrap_a_trades_model(originals, images):
    inner = originals["resnet18"]
    public = to_public_layout(inner.state_dict(), "resnet18", "trades")
    model, report = load_public_weights(public, _fresh("resnet18"), "trades", mean="cifar10", std="cifar10")
    assert isinstance(model, Normalized) and report.normalize_from == "--mean/--std"
    same, _ = load_public_weights(public, _fresh("resnet18"), "trades", mean=",".join(map(str, MEAN)),
                                  std=list(STD))
    assert torch.equal(model(images), same(images))
    with pytest.raises(ValueError, match="both --mean and --std"):
        load_public_weights(public, _fresh("resnet18"), "trades", mean="cifar10")


def test_user_stats_must_agree_with_the_file(originals):
    public = to_public_layout(Normalized(originals["resnet18"], MEAN, STD).state_dict(), "resnet18", "robustbench")
    load_public_weights(public, _fresh("resnet18"), "robustbench", mean=MEAN, std=STD)  # agreeing: fine
    with pytest.raises(TeacherImportError, match="the file's normalization buffers say"):
        load_public_weights(public, _fresh("resnet18"), "robustbench", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def test_normalization_survives_a_checkpoint_round_trip(tmp_path, originals, images):
    model = Normalized(originals["resnet18"], MEAN, STD).eval()
    model.kit_name, model.kit_dataset = "resnet18", "cifar10"
    path = save_checkpoint(tmp_path / "n.pt", model, {"model": "resnet18", "dataset": "cifar10"})
    loaded, meta = load_checkpoint(path)
    assert isinstance(loaded, Normalized) and meta["normalize"] == model.normalization()
    assert torch.equal(loaded(images), model(images))
    with pytest.raises(ValueError, match="metadata says normalize"):
        save_checkpoint(tmp_path / "bad.pt", originals["resnet18"], {"model": "resnet18", "dataset": "cifar10",
                                                                     "normalize": {"mean": MEAN, "std": STD}})


def test_build_model_rebuilds_the_wrapper():
    model = build_model("resnet18", "cifar10", normalize={"mean": list(MEAN), "std": list(STD)})
    assert isinstance(model, Normalized) and model.kit_name == "resnet18"
    with pytest.raises(ValueError, match="channel means"):
        build_model("resnet18", "cifar10", normalize={"mean": [0.5], "std": [0.5]})
    with pytest.raises(ValueError, match="std must be finite and > 0"):
        Normalized(ResNet18(), MEAN, (0.2, 0.0, 0.2))


# ----------------------------------------------------------------------------------------------- import_teacher

def test_import_teacher_records_provenance(tmp_path, originals, images):
    original = originals["resnet18"]
    weights = tmp_path / "public_r18.pth"
    torch.save(to_public_layout(original.state_dict(), "resnet18", "trades", dataparallel=True), weights)
    out = tmp_path / "teacher.pt"
    result = import_teacher("resnet18", "cifar10", weights, fmt="trades", eps="8/255", out=out, n=0,
                            source="unit test", progress=False)
    assert result.evaluation is None and result.path == out
    loaded, meta = load_checkpoint(out, expect={"dataset": "cifar10", "model": "resnet18"})
    info = meta["import"]
    assert info["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert info["format"] == "trades" and info["source"] == "unit test" and info["file"] == "public_r18.pth"
    assert info["stripped"] == ["module."] and info["tensors"] == len(original.state_dict())
    assert meta["eps"] == pytest.approx(8 / 255) and meta["kind"] == "teacher" and "normalize" not in meta
    assert torch.equal(loaded(images), original(images))
    with pytest.raises(FileExistsError):
        import_teacher("resnet18", "cifar10", weights, fmt="trades", out=out, n=0, progress=False)


def test_import_teacher_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown architecture"):
        import_teacher("lenet3", "cifar10", tmp_path / "w.pt", n=0)
    with pytest.raises(ValueError, match="unknown dataset"):
        import_teacher("resnet18", "mnist", tmp_path / "w.pt", n=0)
    with pytest.raises(ValueError, match="unknown format"):
        import_teacher("resnet18", "cifar10", tmp_path / "w.pt", fmt="timm", n=0)


def test_parse_eps():
    assert parse_eps("8/255") == pytest.approx(8 / 255) and parse_eps(0.03) == 0.03 and parse_eps(None) is None
    with pytest.raises(ValueError, match="fraction like 8/255"):
        parse_eps("eight")


def test_cli_import_and_errors(tmp_path, originals, capsys):
    weights = tmp_path / "rb.pt"
    published = Normalized(originals["resnet18"], MEAN, STD)
    torch.save(to_public_layout(published.state_dict(), "resnet18", "robustbench"), weights)
    out = tmp_path / "teacher.pt"
    args = ["import-teacher", "--arch", "resnet18", "--dataset", "cifar10", "--weights", str(weights),
            "--format", "robustbench", "--eps", "8/255", "--n", "0", "--source", "cli test", "--out", str(out)]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "input normalization (file buffers mu/sigma)" in printed and f"saved {out}" in printed
    assert isinstance(load_checkpoint(out)[0], Normalized)
    bad = args[:-1] + [str(tmp_path / "other.pt")]
    bad[bad.index("robustbench")] = "plain"
    assert cli.main(bad) == 2
    err = capsys.readouterr().err
    assert "pwoa-lab import-teacher: error:" in err and "left over" in err and "use --format robustbench" in err
