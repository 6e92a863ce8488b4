"""pwoa_lab.core.models: every registry model, its logits, its hidden block outputs, and LeNet-3's size."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from pwoa_lab.core.datasets import dataset_info
from pwoa_lab.core.models import MODELS, build_model, count_parameters, logits_and_hiddens

# name, dataset, number of hidden block outputs the HSIC term uses (documented in the module docstring)
CASES = [("small_cnn", "digits", 3), ("lenet3", "mnist", 3), ("vgg_small", "cifar10", 3),
         ("resnet18", "cifar10", 10),
         ("wrn34_10", "cifar10", 17)]
SHAPES = {"digits": (1, 16, 16), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def test_registry_is_the_documented_one():
    assert set(MODELS) == {"small_cnn", "lenet3", "vgg_small", "resnet18", "wrn34_10"}
    assert dataset_info("digits").default_model == "small_cnn" and dataset_info("mnist").default_model == "lenet3"
    assert dataset_info("cifar10").default_model == "vgg_small"  # the CPU-sized net of the shipped teacher


@pytest.mark.parametrize("name,dataset,n_hidden", CASES)
def test_logits_and_hiddens(name, dataset, n_hidden):
    torch.manual_seed(0)
    model = build_model(name, dataset).eval()
    assert model.kit_name == name and model.kit_dataset == dataset
    x = torch.rand(2, *SHAPES[dataset])
    with torch.no_grad():
        logits, hiddens = model.forward_features(x)
        plain = model(x)
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    assert len(hiddens) == n_hidden == len(model.hidden_names)
    for h in hiddens:
        assert h.shape[0] == 2 and torch.isfinite(h).all()
    # model(x) is exactly the logits of forward_features(x)
    assert torch.equal(plain, logits)
    # the two images give different logits (the network really looks at its input)
    assert not torch.allclose(logits[0], logits[1])


def test_small_cnn_and_lenet3_hidden_shapes():
    torch.manual_seed(0)
    with torch.no_grad():
        _, h = build_model("small_cnn", "digits").eval().forward_features(torch.rand(2, 1, 16, 16))
        assert [tuple(t.shape) for t in h] == [(2, 32, 16, 16), (2, 64, 8, 8), (2, 128)]
        _, h = build_model("lenet3", "mnist").eval().forward_features(torch.rand(2, 1, 28, 28))
        assert [tuple(t.shape) for t in h] == [(2, 32, 28, 28), (2, 64, 14, 14), (2, 1024)]
    # relu outputs
    assert all((t >= 0).all() for t in h)


def test_resnet18_last_hidden_is_the_pooled_feature():
    torch.manual_seed(0)
    model = build_model("resnet18", "cifar10").eval()
    with torch.no_grad():
        logits, h = model.forward_features(torch.rand(2, 3, 32, 32))
    assert h[0].shape == (2, 64, 32, 32) and h[-2].shape == (2, 512, 4, 4) and h[-1].shape == (2, 512)
    assert torch.allclose(h[-1], h[-2].mean((2, 3)), atol=1e-6)
    assert torch.allclose(model.fc(h[-1]), logits, atol=1e-6)


def test_default_model_is_used_when_name_is_none():
    assert isinstance(build_model(None, "digits"), MODELS["small_cnn"])
    model = build_model(None, "mnist")
    assert isinstance(model, MODELS["lenet3"]) and model.kit_name == "lenet3"


def test_unknown_model_name_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        build_model("vgg16", "mnist")
    msg = str(info.value)
    assert "'vgg16'" in msg
    for valid in MODELS:
        assert valid in msg
    with pytest.raises(ValueError, match="mnist"):
        build_model("lenet3", "svhn")


def test_lenet3_size_matches_the_paper():
    model = build_model("lenet3", "mnist")
    assert count_parameters(model) == 3_274_634
    conv_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))
    assert conv_weights == 52_000


def test_logits_and_hiddens_helper_and_wrappers():
    torch.manual_seed(0)
    model = build_model("small_cnn", "digits").eval()
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        logits, hiddens = logits_and_hiddens(model, x)
        ref_logits, ref_hiddens = model.forward_features(x)
        wrapped_logits, _ = logits_and_hiddens(nn.DataParallel(model), x)  # a .module wrapper
    assert torch.equal(logits, ref_logits) and torch.equal(wrapped_logits, ref_logits)
    assert all(torch.equal(a, b) for a, b in zip(hiddens, ref_hiddens)) and len(hiddens) == 3


def test_logits_and_hiddens_rejects_models_without_forward_features():
    with pytest.raises(TypeError, match="forward_features"):
        logits_and_hiddens(nn.Linear(4, 2), torch.rand(1, 4))


def test_vgg_small_is_the_cpu_sized_cifar_net():
    model = build_model("vgg_small", "cifar10")
    assert 300_000 <= count_parameters(model) <= 320_000
    _, hiddens = model.forward_features(torch.rand(2, 3, 32, 32))
    assert [tuple(h.shape[1:]) for h in hiddens] == [(32, 32, 32), (64, 16, 16), (128, 8, 8)]
