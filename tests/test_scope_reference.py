"""scope="reference" (the PwoA reference code's layer rule), network_sparsity and rate_label.

The reference code prunes a weight if it is a conv weight or its parameter name contains "fc.weight". The
expected sets below are built from `named_parameters()` with that rule (4-d weight or "fc.weight" in the
name), independently of how pruning.py selects modules.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pwoa_lab import pruning as P
from pwoa_lab.core.models import WideResNet, build_model

# LeNet-3 on MNIST, by hand: conv 1->32 5x5, conv 32->64 5x5, fc 64*7*7 -> 1024, fc 1024 -> 10
LENET3 = {"conv1.weight": 32 * 1 * 5 * 5, "conv2.weight": 64 * 32 * 5 * 5,
          "fc1.weight": 64 * 7 * 7 * 1024, "fc2.weight": 1024 * 10}


def reference_rule(model: nn.Module) -> set[str]:
    """The reference code's selection, applied to parameter names."""
    return {name for name, p in model.named_parameters()
            if name.endswith("weight") and (p.dim() == 4 or "fc.weight" in name)}


def test_reference_is_in_scopes_and_bad_scopes_list_it():
    assert "reference" in P.SCOPES
    with pytest.raises(ValueError, match="reference"):
        P.prunable_modules(build_model("small_cnn", "digits"), "referenc")


def test_reference_on_lenet3_selects_exactly_the_two_convs():
    torch.manual_seed(0)
    model = build_model("lenet3", "mnist")
    layers = P.prunable_modules(model, "reference")
    assert list(layers) == ["conv1.weight", "conv2.weight"]  # fc1.weight, fc2.weight do not contain "fc.weight"
    assert set(layers) == reference_rule(model)
    assert all(isinstance(m, nn.Conv2d) for m in layers.values())
    assert {k: w.numel() for k, w in P.prunable_weights(model, "all").items()} == LENET3
    assert sum(w.numel() for w in P.prunable_weights(model, "reference").values()) == 52_000


# ResNet-18: stem + 16 block convs + 3 shortcuts + fc; WRN-10-2: stem + 3 blocks x (2 convs + shortcut) + fc
@pytest.mark.parametrize("make, n_layers", [(lambda: build_model("resnet18", "cifar10"), 21),
                                            (lambda: WideResNet(3, 10, 32, depth=10, widen=2), 11)],
                         ids=["resnet18", "wrn10_2"])
def test_reference_on_resnets_selects_every_conv_and_fc(make, n_layers):
    model = make()
    layers = P.prunable_modules(model, "reference")
    convs = {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert set(layers) == convs | {"fc.weight"}
    assert set(layers) == reference_rule(model)
    assert any("shortcut" in key for key in layers)  # 1x1 shortcut convs are convs too
    # here the classifier is the only linear layer, so "reference" and "all" coincide
    assert list(layers) == list(P.prunable_modules(model, "all"))
    assert len(layers) == n_layers


def test_reference_keeps_only_linear_layers_named_like_fc():
    model = nn.Module()
    model.conv = nn.Conv2d(1, 2, 3)
    model.fc1 = nn.Linear(4, 4)
    model.head = nn.Module()
    model.head.fc = nn.Linear(4, 3)
    model.classifier = nn.Linear(3, 2)
    assert list(P.prunable_modules(model, "reference")) == ["conv.weight", "head.fc.weight"]
    assert list(P.prunable_modules(model, "convs")) == ["conv.weight"]


def test_magnitude_pruning_lenet3_at_4x_reference_leaves_fc_dense():
    torch.manual_seed(0)
    model = build_model("lenet3", "mnist")
    masks = P.prune_by_magnitude(model, 4, scope="reference")
    assert list(masks) == ["conv1.weight", "conv2.weight"]
    table = P.sparsity_report(model, "all").set_index("layer")
    assert table.loc["conv1.weight", "nonzero"] == 200 and table.loc["conv2.weight", "nonzero"] == 12_800
    for dense in ("fc1.weight", "fc2.weight"):
        assert table.loc[dense, "nonzero"] == LENET3[dense]
    # by hand: 600 + 38,400 zeros among 3,273,504 weights
    expected = (600 + 38_400) / 3_273_504
    assert sum(LENET3.values()) == 3_273_504
    assert P.network_sparsity(model) == pytest.approx(expected, rel=1e-12)
    assert table.loc["total", "sparsity"] == pytest.approx(expected, rel=1e-12)
    assert P.sparsity_report(model, "reference").iloc[-1]["sparsity"] == 0.75  # the rate, on the pruned layers
    assert P.rate_label(4, P.network_sparsity(model)) == "4x (net 1.2%)"
    P.remove_masks(model)  # plain weights with exact zeros: the same count
    assert P.network_sparsity(model) == pytest.approx(expected, rel=1e-12)


def test_magnitude_pruning_resnet18_reference_prunes_the_whole_network():
    torch.manual_seed(0)
    model = build_model("resnet18", "cifar10")
    sizes = {k: w.numel() for k, w in P.prunable_weights(model, "all").items()}
    P.prune_by_magnitude(model, 8, scope="reference")
    zeros = sum(n - P.keep_count(n, 8) for n in sizes.values())
    assert P.network_sparsity(model) == pytest.approx(zeros / sum(sizes.values()), rel=1e-12)
    assert P.network_sparsity(model) == pytest.approx(0.875, abs=1e-6)


def test_admm_with_reference_scope():
    torch.manual_seed(0)
    model = build_model("small_cnn", "digits")  # fc1, fc2: only the two convs
    admm = P.ADMM(model, 4, scope="reference")
    assert list(admm.modules) == ["conv1.weight", "conv2.weight"]
    for key, mask in admm.masks().items():
        assert int(mask.sum()) == P.keep_count(mask.numel(), 4)
    # a model whose reference scope is empty is rejected like any other empty scope
    with pytest.raises(ValueError, match="no prunable layers"):
        P.ADMM(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), 4, scope="reference")


def test_network_sparsity_counts_every_conv_and_linear_weight():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, bias=True), nn.Flatten(), nn.Linear(8, 4))
    assert P.network_sparsity(model) == 0.0
    with torch.no_grad():
        model[0].weight[0].zero_()       # 9 of 18 conv weights
        model[0].bias.zero_()            # biases do not count
        model[2].weight[:, :2].zero_()   # 8 of 32 linear weights
    assert P.network_sparsity(model) == pytest.approx(17 / 50)
    assert P.network_sparsity(model) == pytest.approx(P.sparsity_report(model, "all").iloc[-1]["sparsity"])
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        P.network_sparsity(nn.Sequential(nn.ReLU()))


def test_rate_label_format_and_checks():
    assert P.rate_label(8, 0.1234) == "8x (net 12.3%)"
    assert P.rate_label(2.5, 0.6) == "2.5x (net 60.0%)"
    assert P.rate_label(1, 0.0) == "1x (net 0.0%)"
    assert P.rate_label(16.0, 1.0) == "16x (net 100.0%)"
    for rate, sparsity, match in [(0.5, 0.1, "rate must be >= 1"), (8, 12.3, "fraction"), (8, -0.1, "fraction"),
                                  ("8", 0.1, "rate must be a finite"), (True, 0.1, "rate"),
                                  (8, float("nan"), "sparsity must be a finite")]:
        with pytest.raises(ValueError, match=match):
            P.rate_label(rate, sparsity)
