"""Tests for pwoa_lab.pruning: masks, ADMM, masked training, report, export."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from pwoa_lab import pruning as P


class SmallNet(nn.Module):
    """conv(1->4, 3x3) -> relu -> linear(4*6*6 -> 10) on 1x8x8 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv1(x)).flatten(1))


def small_net(seed: int = 0) -> SmallNet:
    torch.manual_seed(seed)
    return SmallNet()


def big_linear_net(seed: int = 0) -> nn.Sequential:
    """Dominated by one 256x512 linear layer (131072 weights)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 14 * 14, 512), nn.ReLU(),
                         nn.Linear(512, 256))


def toy_batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)


# ----------------------------------------------------------------------------------------------- masks

def test_project_topk_matches_sorted_reference():
    torch.manual_seed(0)
    w = torch.randn(7, 13)
    for rate in (2, 4, 8, 16, 3.5):
        k = max(1, round(w.numel() / rate))
        out = P.project_topk(w, rate)
        ref = np.zeros(w.numel(), dtype=np.float32)
        order = np.argsort(-np.abs(w.numpy().ravel()))[:k]
        ref[order] = w.numpy().ravel()[order]
        assert torch.count_nonzero(out) == k
        assert np.array_equal(out.numpy().ravel(), ref)


def test_project_topk_ties_keep_exactly_k():
    w = torch.ones(10, 10)
    out = P.project_topk(w, 4)
    assert int(torch.count_nonzero(out)) == 25


@pytest.mark.parametrize("rate", [2, 4, 8, 16, 32, 64])
def test_layer_masks_sparsity_is_one_minus_one_over_rate(rate):
    model = small_net()
    masks = P.magnitude_masks(model, rate)
    assert set(masks) == {"conv1.weight", "fc.weight"}
    for key, mask in masks.items():
        numel = mask.numel()
        assert mask.dtype == torch.bool
        assert int(mask.sum()) == max(1, round(numel / rate))
        sparsity = 1 - mask.float().mean().item()
        if numel % rate == 0:
            assert sparsity == pytest.approx(1 - 1 / rate, abs=1e-12)
        else:
            assert abs(sparsity - (1 - 1 / rate)) <= 1 / numel + 1e-12
        # the kept entries are the largest-magnitude ones of that layer
        w = dict(model.named_parameters())[key].detach().abs()
        assert w[mask].min() >= w[~mask].max()


def test_global_masks_keep_round_total_over_rate():
    model = small_net()
    with torch.no_grad():
        model.conv1.weight.mul_(10)  # conv weights dominate: a global threshold keeps more of them
    masks = P.magnitude_masks(model, 8, mode="global")
    total = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == round(total / 8)
    kept = torch.cat([w.abs()[masks[k]] for k, w in P.prunable_weights(model).items()])
    dropped = torch.cat([w.abs()[~masks[k]] for k, w in P.prunable_weights(model).items()])
    assert kept.min() >= dropped.max()
    assert masks["conv1.weight"].float().mean() > masks["fc.weight"].float().mean()


def test_scope_convs_leaves_linear_dense():
    model = small_net()
    masks = P.magnitude_masks(model, 4, scope="convs")
    assert list(masks) == ["conv1.weight"]
    P.apply_masks(model, masks)
    table = P.sparsity_report(model, scope="all").set_index("layer")
    assert table.loc["fc.weight", "nonzero"] == model.fc.weight.numel()
    assert table.loc["conv1.weight", "nonzero"] == round(36 / 4)


def test_scope_hidden_keeps_first_and_classifier_dense():
    from pwoa_lab.core.models import build_model
    model = build_model("small_cnn", "digits")
    assert list(P.prunable_modules(model, "all")) == ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"]
    masks = P.magnitude_masks(model, 8, scope="hidden")
    assert list(masks) == ["conv2.weight", "fc1.weight"]
    P.apply_masks(model, masks)
    table = P.sparsity_report(model, scope="all").set_index("layer")
    for dense in ("conv1.weight", "fc2.weight"):
        assert table.loc[dense, "nonzero"] == getattr(model, dense.split(".")[0]).weight.numel()
    for pruned in ("conv2.weight", "fc1.weight"):
        assert table.loc[pruned, "nonzero"] == round(table.loc[pruned, "params"] / 8)
    resnet = build_model("resnet18", "cifar10")
    hidden = P.prunable_modules(resnet, "hidden")
    assert set(P.prunable_modules(resnet, "all")) - set(hidden) == {"conv1.weight", "fc.weight"}


@pytest.mark.parametrize("bad", [1, 0.5, 0, -2, float("nan"), float("inf"), "4", None, True])
def test_bad_rate_raises(bad):
    with pytest.raises(ValueError, match="rate must be a"):
        P.magnitude_masks(small_net(), bad)
    with pytest.raises(ValueError, match="rate"):
        P.project_topk(torch.randn(4), bad)


def test_bad_scope_and_mode_raise():
    with pytest.raises(ValueError, match="convs"):
        P.magnitude_masks(small_net(), 4, scope="linears")
    with pytest.raises(ValueError, match="global"):
        P.magnitude_masks(small_net(), 4, mode="random")


# ----------------------------------------------------------------------------------------------- ADMM

def test_admm_penalty_matches_formula():
    model = small_net()
    admm = P.ADMM(model, 4, rho0=0.3)
    for key in admm.U:
        admm.U[key] = torch.randn_like(admm.U[key])
    expected = 0.0
    for name, w in model.named_parameters():
        if name in admm.Z:
            assert torch.equal(admm.Z[name], P.project_topk(w.detach(), 4))
            expected += 0.3 / 2 * float(((w.detach() - admm.Z[name] + admm.U[name]) ** 2).sum())
    pen = admm.penalty()
    assert pen.item() == pytest.approx(expected, rel=1e-5)
    pen.backward()  # differentiable in W: d/dW = rho (W - Z + U)
    grad = 0.3 * (model.fc.weight.detach() - admm.Z["fc.weight"] + admm.U["fc.weight"])
    assert torch.allclose(model.fc.weight.grad, grad, atol=1e-6)


def test_admm_update_follows_formulas_and_caps_rho():
    model = small_net()
    admm = P.ADMM(model, 8, rho0=0.5, rho_growth=1.5, rho_max=1.0)
    admm.U["fc.weight"] = torch.randn_like(admm.U["fc.weight"])
    with torch.no_grad():
        model.fc.weight.add_(0.05 * torch.randn_like(model.fc.weight))
    W, U_old = model.fc.weight.detach().clone(), admm.U["fc.weight"].clone()
    admm.update()
    Z = P.project_topk(W + U_old, 8)
    assert torch.equal(admm.Z["fc.weight"], Z)
    assert torch.allclose(admm.U["fc.weight"], U_old + W - Z)
    assert admm.rho["fc.weight"] == pytest.approx(0.75)
    admm.update()
    assert admm.rho["fc.weight"] == 1.0  # 1.125 capped
    masks = admm.masks()
    assert torch.equal(masks["fc.weight"], admm.Z["fc.weight"] != 0)
    assert int(masks["fc.weight"].sum()) == round(model.fc.weight.numel() / 8)


def test_admm_drives_primal_residual_down():
    model = small_net()
    x, y = toy_batch()
    admm = P.ADMM(model, 4, rho0=0.5, rho_growth=1.5, rho_max=5.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    start = admm.primal_residual()
    for _ in range(8):
        for _ in range(5):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y) + admm.penalty()
            loss.backward()
            opt.step()
        admm.update()
    end = admm.primal_residual()
    assert start > 0.05
    assert end < 0.05 * start


# ----------------------------------------------------------------------------------------------- masked training

@pytest.mark.parametrize("make_opt", [
    lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-4),
    lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=1e-4),
    lambda ps: torch.optim.AdamW(ps, lr=1e-2),
], ids=["sgd_momentum_wd", "adam_wd", "adamw"])
def test_masks_survive_optimizer_steps(make_opt):
    model = small_net()
    x, y = toy_batch()
    masks = P.prune_by_magnitude(model, 4)
    assert P.is_masked(model)
    assert "fc.weight_orig" in dict(model.named_parameters())
    opt = make_opt(model.parameters())
    P.check_optimizer(model, opt)
    before = {k: P.effective_weight(m).detach().clone() for k, m in P.prunable_modules(model).items()}
    for _ in range(20):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        model(x)  # module.weight is refreshed by the forward pre-hook
    for key, module in P.prunable_modules(model).items():
        w = P.effective_weight(module).detach()
        assert torch.all(w[~masks[key]] == 0.0)
        assert not torch.equal(w[masks[key]], before[key][masks[key]])
        assert torch.equal(module.weight.detach(), w)  # the forward's weight is the masked one
    assert all(torch.equal(a, b) for a, b in zip(P.current_masks(model).values(), masks.values()))


def test_deepcopy_and_remove_masks():
    model = small_net()
    x, y = toy_batch()
    masks = P.prune_by_magnitude(model, 8)
    nn.functional.cross_entropy(model(x), y).backward()  # module.weight is now a non-leaf tensor
    clone = copy.deepcopy(model)
    assert P.is_masked(clone)
    assert torch.equal(clone(x), model(x))
    with torch.no_grad():
        clone.fc.weight_orig.add_(1.0)  # independent storage
    assert not torch.equal(clone(x), model(x))
    assert torch.all(clone.fc.weight[~masks["fc.weight"]] == 0)
    fc_param = model.fc.weight_orig
    out = model(x)
    removed = P.remove_masks(model)
    assert not P.is_masked(model)
    assert model.fc.weight is fc_param  # same Parameter object: optimizers stay valid
    assert set(removed) == set(masks)
    assert torch.equal(model(x), out)
    assert torch.all(model.fc.weight[~masks["fc.weight"]] == 0)
    copy.deepcopy(model)


def test_bad_mask_shape_raises():
    with pytest.raises(ValueError, match="shape"):
        P.apply_masks(small_net(), {"fc.weight": torch.ones(3, 3, dtype=torch.bool)})


# ----------------------------------------------------------------------------------------------- report

def test_sparsity_report_matches_direct_count():
    model = small_net()
    P.prune_by_magnitude(model, 16)
    for m in (model, copy.deepcopy(model)):
        table = P.sparsity_report(m)
        assert list(table.columns) == ["layer", "shape", "params", "nonzero", "sparsity"]
        assert list(table["layer"]) == ["conv1.weight", "fc.weight", "total"]
        conv_nz = int((m.conv1.weight_orig * m.conv1.weight_mask != 0).sum())
        fc_nz = int((m.fc.weight_orig * m.fc.weight_mask != 0).sum())
        assert list(table["nonzero"]) == [conv_nz, fc_nz, conv_nz + fc_nz]
        assert list(table["params"]) == [36, 1440, 1476]
        assert table["shape"][0] == "4x1x3x3"
        assert table["sparsity"].iloc[-1] == pytest.approx(1 - (conv_nz + fc_nz) / 1476)
    P.remove_masks(model)
    assert list(P.sparsity_report(model)["nonzero"]) == list(table["nonzero"])


# ----------------------------------------------------------------------------------------------- export

def test_dense_state_dict_loads_strict_and_matches():
    model = small_net()
    x, _ = toy_batch()
    P.prune_by_magnitude(model, 4)
    keys_before = set(model.state_dict())
    sd = P.dense_state_dict(model)
    assert set(model.state_dict()) == keys_before  # caller's model untouched
    assert P.is_masked(model)
    fresh = small_net(seed=123)
    assert set(sd) == set(fresh.state_dict())
    fresh.load_state_dict(sd, strict=True)
    assert torch.equal(fresh(x), model(x))
    assert P.plain_state_dict(fresh.state_dict()).keys() == sd.keys()


def test_save_load_sparse_round_trip_and_size(tmp_path):
    model = big_linear_net()
    P.prune_by_magnitude(model, 16)
    dense = P.dense_state_dict(model)
    torch.save(dense, tmp_path / "dense.pt")
    path = P.save_sparse(model, tmp_path / "sparse.pt", metadata={"rate": 16, "note": "x", "tags": [1, 2.5]})
    state, masks, meta = P.load_sparse(path)
    assert meta == {"rate": 16, "note": "x", "tags": [1, 2.5]}
    assert list(state) == list(dense)
    for key in dense:
        assert state[key].dtype == dense[key].dtype
        assert torch.equal(state[key].view(torch.int32), dense[key].view(torch.int32))  # bit-identical
    assert all(torch.equal(masks[k], m) for k, m in P.current_masks(model).items())
    ratio = (tmp_path / "sparse.pt").stat().st_size / (tmp_path / "dense.pt").stat().st_size
    assert ratio <= 1 / 6, ratio
    # a plain (mask-removed) model gives the same weights
    P.remove_masks(model)
    P.save_sparse(model, tmp_path / "plain.pt")
    state2, _, _ = P.load_sparse(tmp_path / "plain.pt")
    assert all(torch.equal(state2[k].view(torch.int32), dense[k].view(torch.int32)) for k in dense)
    fresh = big_linear_net(seed=9)
    fresh.load_state_dict(state2, strict=True)


def test_save_sparse_refuses_overwrite(tmp_path):
    model = small_net()
    path = tmp_path / "m.pt"
    P.save_sparse(model, path)
    with pytest.raises(FileExistsError, match="overwrite"):
        P.save_sparse(model, path)
    P.save_sparse(small_net(seed=5), path, overwrite=True)
    assert torch.equal(P.load_sparse(path)[0]["fc.bias"], small_net(seed=5).fc.bias.detach())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temp files left


def test_save_sparse_rejects_non_plain_metadata(tmp_path):
    with pytest.raises(TypeError, match="metadata"):
        P.save_sparse(small_net(), tmp_path / "m.pt", metadata={"x": np.float64(1.0)})
    assert not (tmp_path / "m.pt").exists()


def test_load_sparse_rejects_truncated_and_foreign_files(tmp_path):
    good = tmp_path / "good.pt"
    P.save_sparse(small_net(), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    foreign = tmp_path / "foreign.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, foreign)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for bad in (truncated, foreign, text):
        with pytest.raises(ValueError, match="not a pwoa-lab sparse checkpoint") as info:
            P.load_sparse(bad)
        assert str(bad) in str(info.value)
    with pytest.raises(FileNotFoundError):
        P.load_sparse(tmp_path / "missing.pt")


def test_keep_count_examples():
    assert P.keep_count(100, 16) == 6  # round(6.25)
    assert P.keep_count(3, 64) == 1
    assert P.keep_count(3_200_000, 64) == 50_000
    assert math.isclose(1 - P.keep_count(4096, 32) / 4096, 1 - 1 / 32)
