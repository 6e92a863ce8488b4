"""The pruning design space: structured (channel) pruning, gradient importance, the cubic schedule, and the
new schedules of the ADMM pipeline, on tiny models and the digits smoke preset (seconds)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from pwoa_lab.pruning import structured as S
from pwoa_lab.training.methods import AdmmPruning, PruneConfig
from pwoa_lab import pruning as P
from pwoa_lab.core.models import build_model, count_parameters
from pwoa_lab.training.presets import preset_config
from pwoa_lab.pruning import (apply_masks, cubic_sparsity, gradient_importance, importance_masks, is_masked,
                              magnitude_masks, network_sparsity, prune_by_magnitude, sparsity_report)
from pwoa_lab.experiments.runs import run_config

MNIST = (1, 28, 28)
DIGITS = (1, 16, 16)


@pytest.fixture()
def lenet():
    torch.manual_seed(0)
    return build_model("lenet3", "mnist").eval()


def tiny(**kw) -> PruneConfig:
    return preset_config("digits", "smoke", rate=kw.pop("rate", 4), batch_size=40, val_n=40, **kw)


# ----------------------------------------------------------------------------------------------- structured

@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75])
def test_structured_prune_removes_exactly_the_fraction_per_layer(lenet, fraction):
    x = torch.rand(5, *MNIST)
    removed = S.structured_prune(lenet, MNIST, fraction)
    expect = {"conv1": 32, "conv2": 64, "fc1": 1024}
    assert set(removed) == set(expect)           # the classifier's outputs are never pruned
    for name, c in expect.items():
        assert len(removed[name]) == round(fraction * c)
    assert lenet.conv1.out_channels == 32 - round(fraction * 32)
    assert lenet.conv2.in_channels == lenet.conv1.out_channels
    assert lenet.conv2.out_channels == 64 - round(fraction * 64)
    assert lenet.fc1.in_features == lenet.conv2.out_channels * 49
    assert lenet.fc1.out_features == 1024 - round(fraction * 1024)
    assert lenet.conv1.in_channels == 1 and lenet.fc2.out_features == 10
    logits, hiddens = lenet.forward_features(x)
    assert logits.shape == (5, 10) and lenet(x).shape == (5, 10)
    assert [h.shape[1] for h in hiddens] == [lenet.conv1.out_channels, lenet.conv2.out_channels, lenet.fc1.out_features]


def test_scope_hidden_keeps_the_first_layer(lenet):
    removed = S.structured_prune(lenet, MNIST, 0.5, scope="hidden")
    assert set(removed) == {"conv2", "fc1"} and lenet.conv1.out_channels == 32


def test_lowest_magnitude_channels_go(lenet):
    with torch.no_grad():
        lenet.conv1.weight[[3, 7]] *= 1e-3
    removed = S.structured_prune(lenet, MNIST, 2 / 32)
    assert removed["conv1"] == [3, 7]


def test_rate_4_lenet3_keeps_at_most_a_quarter_of_the_parameters(lenet):
    before = S.parameter_count(lenet)
    p = S.fraction_for_rate(lenet, MNIST, 4)
    S.structured_prune(lenet, MNIST, p)
    after = S.parameter_count(lenet)
    assert after <= before / 4
    assert after > before / 4.2                  # the smallest fraction that gets there, not much more
    assert not is_masked(lenet)


def test_channel_masks_compute_what_the_physical_prune_computes(lenet):
    x = torch.rand(4, *MNIST)
    groups = S.channel_groups(lenet, MNIST)
    remove = S.channels_to_remove(S.channel_scores(lenet, groups), 0.5)
    masked = copy.deepcopy(lenet)
    apply_masks(masked, S.channel_masks(masked, groups, remove))
    S.prune_channels(lenet, MNIST, remove)
    assert torch.allclose(masked(x), lenet(x), atol=1e-5)


def test_save_and_load_structured_gives_a_plain_model(lenet, tmp_path):
    S.structured_prune(lenet, MNIST, 0.5)
    path = S.save_structured(lenet, tmp_path / "s.pt", metadata={"rate": 4})
    payload = torch.load(path, weights_only=True)   # plain tensors and containers only
    assert payload["shapes"]["conv1.weight"] == [16, 1, 5, 5]
    model, meta = S.load_structured(path)
    assert type(model) is type(lenet) and meta["rate"] == 4 and not is_masked(model)
    assert not any("mask" in k or "orig" in k for k in model.state_dict())
    x = torch.rand(3, *MNIST)
    assert torch.equal(model(x), lenet(x))
    assert S.parameter_count(model) == S.parameter_count(lenet)


def test_resize_to_state_rebuilds_resnet_shapes():
    torch.manual_seed(0)
    net = build_model("resnet18", "cifar10").eval()
    S.structured_prune(net, (3, 32, 32), 0.5)
    fresh = S.resize_to_state(build_model("resnet18", "cifar10"), net.state_dict())
    fresh.load_state_dict(net.state_dict())
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(fresh.eval()(x), net(x), atol=1e-5)


def test_channel_admm_projects_onto_rows(lenet):
    groups = S.channel_groups(lenet, MNIST)
    admm = S.ChannelADMM(lenet, groups, 0.5)
    for key, z in admm.Z.items():
        rows = z.reshape(z.shape[0], -1).abs().sum(1) > 0
        assert int(rows.sum()) == admm.keep[key]
    assert {k: len(v) for k, v in admm.removed().items()} == {"conv1": 16, "conv2": 32, "fc1": 512}


# ----------------------------------------------------------------------------------------------- importance

def test_gradient_importance_is_w_times_grad_by_hand():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4))
    x, y = torch.rand(10, 1, 6, 6), torch.randint(0, 4, (10,))
    scores = gradient_importance(net, x, y, batch_size=3)   # chunked: still the gradient of the mean loss
    F.cross_entropy(net(x), y).backward()
    for key, layer in (("0.weight", net[0]), ("3.weight", net[3])):
        assert torch.allclose(scores[key], (layer.weight * layer.weight.grad).abs(), atol=1e-7)


def test_gradient_importance_of_a_pruned_weight_is_zero():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    masks = prune_by_magnitude(net, 2)
    scores = gradient_importance(net, torch.rand(6, 1, 4, 4), torch.randint(0, 3, (6,)))
    for key, mask in masks.items():
        assert (scores[key][~mask] == 0).all()
    assert is_masked(net)                         # the model itself is untouched


@pytest.mark.parametrize("mode", ["layer", "global"])
def test_importance_masks_of_magnitude_equal_magnitude_masks(teacher, mode):
    scores = {k: m.weight.detach().abs() for k, m in
              [(f"{n}.weight", m) for n, m in teacher.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]}
    ours, theirs = importance_masks(scores, 4, mode), magnitude_masks(teacher, 4, mode=mode)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_importance_masks_within_never_revive():
    s = torch.tensor([5.0, 0.0, 3.0, 9.0, 1.0, 0.0])       # entry 3 scores highest but was pruned before
    within = {"w": torch.tensor([True, True, True, False, True, False])}
    mask = importance_masks({"w": s}, 2, within=within)["w"]   # keep 3 of 6
    assert mask.tolist() == [True, False, True, False, True, False]


def test_cubic_schedule_ends_at_its_final_sparsity_and_never_goes_down():
    n, final = 7, 0.875
    values = [cubic_sparsity(t, n, final) for t in range(n + 1)]
    assert values[0] == 0.0 and values[-1] == final
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert cubic_sparsity(n + 3, n, final) == final
    assert cubic_sparsity(0, 4, 0.75, initial=0.5) == 0.5
    with pytest.raises(ValueError):
        cubic_sparsity(1, 0, 0.5)


# ----------------------------------------------------------------------------------------------- schedules

def test_defaults_take_the_papers_path():
    c = PruneConfig()
    assert (c.structure, c.importance, c.schedule) == ("weight", "magnitude", "admm")
    assert [p.name for p in c.phases()] == ["admm", "retrain"]
    assert [(p.name, p.epochs) for p in PruneConfig(schedule="oneshot").phases()] == [("retrain", 20)]
    assert [p.name for p in PruneConfig(schedule="iterative").phases()] == ["gradual", "retrain"]
    with pytest.raises(ValueError, match="schedule"):
        PruneConfig(schedule="sometimes").resolved()
    with pytest.raises(ValueError, match="structured"):
        PruneConfig(structure="structured", scope="reference").resolved()


def test_default_method_has_no_schedule_plan(teacher, small_data):
    method = AdmmPruning(tiny(method="naive").resolved(), teacher, copy.deepcopy(teacher), small_data[0])
    assert method.plan is None


@pytest.mark.parametrize("importance", ["magnitude", "gradient"])
def test_iterative_weight_pruning_follows_the_cubic_schedule(teacher, small_data, importance):
    seen = []
    config = tiny(method="naive", schedule="iterative", importance=importance, admm_epochs=3, retrain_epochs=1)
    result = run_config(teacher, config, *small_data, progress=False,
                        on_epoch=lambda row: seen.append(row))
    targets = [r["target_sparsity"] for r in seen if r["phase"] == "gradual"]
    assert targets == [pytest.approx(cubic_sparsity(t, 3, 0.75)) for t in (1, 2, 3)]
    assert all(b > a for a, b in zip(targets, targets[1:]))
    report = sparsity_report(result.model)
    assert report.iloc[:-1].sparsity.round(3).eq(0.75).all()


@pytest.mark.parametrize("schedule", ["admm", "oneshot", "iterative"])
def test_structured_runs_give_a_plain_smaller_model(teacher, small_data, schedule):
    config = tiny(method="pwoa", structure="structured", schedule=schedule, importance="magnitude",
                  admm_epochs=2, retrain_epochs=1)
    result = run_config(teacher, config, *small_data, progress=False)
    assert S.parameter_count(result.model) <= S.parameter_count(teacher) / 4
    assert not is_masked(result.model) and result.masks == {}
    assert "loss_hsic" in result.history and result.history.loss_hsic.notna().any()   # HSIC ran on the small model
    assert result.model(small_data[1].x[:3]).shape == (3, 10)


def test_structured_gradient_oneshot_and_weight_gradient_admm_run(teacher, small_data):
    for extra in (dict(structure="structured", schedule="oneshot"), dict(schedule="admm")):
        result = run_config(teacher, tiny(method="kd", importance="gradient", admm_epochs=1, retrain_epochs=1,
                                          **extra), *small_data, progress=False)
        if extra.get("structure"):
            assert S.parameter_count(result.model) <= S.parameter_count(teacher) / 4
        else:
            assert network_sparsity(result.model) == pytest.approx(0.75, abs=1e-3)


def test_structured_iterative_run_resumes_to_the_same_weights(teacher, small_data, tmp_path):
    config = tiny(method="naive", structure="structured", schedule="iterative", admm_epochs=2, retrain_epochs=2)
    whole = run_config(teacher, config, *small_data, progress=False)

    class Stop(Exception):
        pass

    def stop_after(n):
        def hook(row):
            if row["epoch"] == n:
                raise Stop
        return hook

    state = tmp_path / "state.pt"
    for n in (1, 3):                  # in the gradual phase, then in retraining (after the physical prune)
        with pytest.raises(Stop):
            run_config(teacher, config, *small_data, progress=False, state_path=state, on_epoch=stop_after(n))
    resumed = run_config(teacher, config, *small_data, progress=False, state_path=state)
    for (k, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("scope", ["all", "hidden", "convs", "reference"])
def test_vgg_small_prunes_in_every_scope_by_weight_and_by_channel(scope):
    """The CPU CIFAR net: magnitude masks in every scope, and Torch-Pruning's channel removal (convs, BatchNorm and
    the flattened classifier input follow) gives a smaller model that still computes."""
    torch.manual_seed(0)
    model = build_model("vgg_small", "cifar10").eval()
    masks = P.magnitude_masks(model, 4, scope)
    assert masks and all(abs(float(m.float().mean()) - 0.25) < 0.01 for m in masks.values())
    if scope == "reference":
        return  # structured pruning takes scopes all, hidden and convs
    before = count_parameters(model)
    S.structured_prune(model, (3, 32, 32), 0.5, scope=scope)
    assert count_parameters(model) < before
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
