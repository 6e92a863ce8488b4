"""The one training loop (through the ADMM methods) and the distillation loss, on real (tiny) digits runs."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from pwoa_lab.io.cache import entry_key
from pwoa_lab.core.data import load_dataset
from pwoa_lab.core.distillation import frozen_teacher, kd_loss, soft_labels
from pwoa_lab.training.loop import NonFiniteLoss
from pwoa_lab.training.methods import PruneConfig
from pwoa_lab.training.presets import preset_config
from pwoa_lab.experiments.runs import run_config
from pwoa_lab.pruning import prunable_modules


def tiny(method: str, rate: float = 4, **kw) -> PruneConfig:
    return preset_config("digits", "smoke", method=method, rate=rate, batch_size=40, val_n=40, **kw)


# ----------------------------------------------------------------------------------------------- KD loss

def test_kd_loss_is_zero_when_student_equals_teacher():
    logits = torch.randn(16, 10)
    assert kd_loss(logits, logits.clone(), 30.0).abs().item() < 1e-6


def test_kd_loss_positive_and_matches_definition():
    s, t = torch.randn(8, 10), torch.randn(8, 10)
    T = 4.0
    p_t = torch.softmax(t / T, 1)
    manual = T ** 2 * (p_t * (torch.log(p_t) - torch.log_softmax(s / T, 1))).sum(1).mean()
    assert kd_loss(s, t, T).item() > 0
    assert torch.allclose(kd_loss(s, t, T), manual, atol=1e-5)


def test_kd_loss_gradient_does_not_reach_teacher():
    s = torch.randn(4, 10, requires_grad=True)
    t = torch.randn(4, 10, requires_grad=True)
    kd_loss(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_soft_labels_flatten_with_temperature():
    logits = torch.tensor([[4.0, 1.0, 0.0]])
    assert soft_labels(logits, 30).max() < soft_labels(logits, 1).max()
    assert torch.allclose(soft_labels(logits, 4).sum(1), torch.ones(1))


def test_kd_rejects_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), 0.0)


def test_frozen_teacher_is_a_copy_in_eval_mode(teacher):
    t = frozen_teacher(teacher)
    assert not t.training and all(not p.requires_grad for p in t.parameters())
    assert t is not teacher


# ----------------------------------------------------------------------------------------------- engine

@pytest.mark.parametrize("method", ["naive", "kd", "pwoa", "advprune"])
def test_every_method_prunes_to_the_rate(teacher, small_data, method):
    train, val = small_data
    rate = 4
    result = run_config(teacher, tiny(method, rate), train=train, val=val, progress=False)
    for name, module in prunable_modules(result.model).items():
        w = module.weight
        kept = int((w != 0).sum())
        assert kept == max(1, round(w.numel() / rate)), name
        assert torch.equal(result.masks[name], w != 0)
    h = result.history
    assert list(h.phase.unique()) == ["admm", "retrain"]
    assert h.train_seconds.is_monotonic_increasing
    assert h.val_natural.notna().iloc[-1] and h.val_pgd.notna().iloc[-1]
    report = result.sparsity()
    assert abs(report.iloc[-1]["sparsity"] - (1 - 1 / rate)) < 0.01
    # the teacher is untouched
    assert all(int((p != 0).sum()) == p.numel() for n, p in teacher.named_parameters() if n.endswith("weight"))


def test_pwoa_history_has_hsic_terms_and_loss_terms(teacher, small_data):
    train, val = small_data
    h = run_config(teacher, tiny("pwoa"), train=train, val=val, progress=False).history
    assert {"loss_kd", "loss_admm", "hsic_xz_1", "hsic_yz_3"} <= set(h.columns)
    retrain = h[h.phase == "retrain"]
    assert retrain.loss_hsic.notna().all()                      # HSIC in the retraining phase (default)
    assert h[h.phase == "admm"].loss_hsic.isna().all()               # ... and not during ADMM
    assert (h.hsic_xz_1 > 0).all()


def test_hsic_in_both_phases_option(teacher, small_data):
    train, val = small_data
    h = run_config(teacher, tiny("pwoa", hsic_phase="both"), train=train, val=val, progress=False).history
    assert h[h.phase == "admm"].loss_hsic.notna().all()


def test_methods_differ_only_in_loss(teacher, small_data):
    """Same seed, same schedule: naive and kd give different students; the same method twice is identical."""
    train, val = small_data
    a = run_config(teacher, tiny("naive"), train=train, val=val, progress=False).model
    b = run_config(teacher, tiny("kd"), train=train, val=val, progress=False).model
    c = run_config(teacher, tiny("naive"), train=train, val=val, progress=False).model
    assert any(not torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))


def test_same_config_and_seed_give_identical_history(teacher, small_data):
    train, val = small_data
    h1 = run_config(teacher, tiny("pwoa"), train=train, val=val, progress=False).history
    h2 = run_config(teacher, tiny("pwoa"), train=train, val=val, progress=False).history
    cols = [c for c in h1.columns if c != "train_seconds"]
    assert h1[cols].equals(h2[cols])


@pytest.mark.parametrize("method", ["pwoa", "advprune"])
def test_validating_more_often_does_not_change_the_trained_model(teacher, small_data, method):
    """The validation PGD draws its random start from a forked RNG, so eval_every changes only the history."""
    train, val = small_data
    a = run_config(teacher, tiny(method, eval_every=1, adv_steps=2), train=train, val=val,
                           progress=False)
    b = run_config(teacher, tiny(method, eval_every=100, adv_steps=2), train=train, val=val,
                           progress=False)
    assert a.history.val_pgd.notna().sum() > b.history.val_pgd.notna().sum()
    assert all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_cached_teacher_logits_give_bit_identical_training(small_data):
    """LeNet-3 (whose CPU kernels round differently for other batch sizes) with and without the cache."""
    from pwoa_lab.core.models import build_model
    torch.manual_seed(0)
    lenet = build_model("lenet3", "digits").eval()
    train = load_dataset("digits", "train", n_per_class=100, seed=0)   # more than one chunk of logits
    val = small_data[1]
    config = preset_config("digits", "smoke", method="pwoa", rate=4, batch_size=128, admm_epochs=1,
                           retrain_epochs=1, val_n=40)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)   # the kernels' blocking (and so their rounding) depends on batch size with threads
    try:
        runs = [run_config(lenet, dataclasses.replace(config, cache_teacher=c).resolved(), train=train, val=val,
                                   progress=False).model for c in (True, False)]
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(p, q) for p, q in zip(runs[0].state_dict().values(), runs[1].state_dict().values()))


def test_global_mode_and_convs_scope(teacher, small_data):
    train, val = small_data
    res = run_config(teacher, tiny("naive", 8, mode="global"), train=train, val=val, progress=False)
    total = sum(m.weight.numel() for m in prunable_modules(res.model).values())
    kept = sum(int((m.weight != 0).sum()) for m in prunable_modules(res.model).values())
    assert kept == round(total / 8)
    res = run_config(teacher, tiny("naive", 8, scope="convs"), train=train, val=val, progress=False)
    assert int((res.model.fc1.weight == 0).sum()) == 0
    assert int((res.model.conv2.weight != 0).sum()) == round(res.model.conv2.weight.numel() / 8)


def test_nan_loss_stops_with_a_message_naming_epoch_and_term(teacher, small_data):
    train, val = small_data
    config = tiny("pwoa", lambda_x=float("nan"))
    with pytest.raises(NonFiniteLoss, match=r"'hsic'.*retrain phase, epoch"):
        run_config(teacher, config, train=train, val=val, progress=False)


@pytest.mark.parametrize("field, value, match", [
    ("rate", 1.0, "rate"), ("rate", float("nan"), "rate"), ("rate", "4", "rate"),
    ("mix_ratio", 1.5, "mix_ratio"), ("mix_ratio", -0.1, "mix_ratio"),
    ("method", "magic", "method"), ("eps", 2.0, "eps"), ("optimizer", "lbfgs", "optimizer"),
    ("mode", "random", "mode"),
])
def test_bad_config_is_rejected_with_a_clear_error(field, value, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(PruneConfig(), **{field: value}).resolved()


def test_unknown_preset_and_fields_are_rejected():
    with pytest.raises(ValueError, match="preset"):
        preset_config("digits", "huge")
    with pytest.raises(ValueError, match="unknown PruneConfig fields"):
        preset_config("digits", "quick", learning_rate=1.0)
    with pytest.raises(ValueError, match="no schedule"):
        preset_config("cifar100", "quick")


def test_cache_key_changes_with_every_parameter():
    base = PruneConfig().resolved()
    key = entry_key("prune_row", base.to_dict())
    for f in dataclasses.fields(PruneConfig):
        if f.name in ("device",):
            continue
        value = getattr(base, f.name)
        if isinstance(value, bool):
            new = not value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            new = value + 1 if f.name != "mix_ratio" else 0.5
        elif isinstance(value, str):
            new = value + "x"
        elif isinstance(value, dict):
            new = {"changed": 1}
        else:
            new = 1
        changed = dataclasses.replace(base, **{f.name: new})
        assert entry_key("prune_row", changed.to_dict()) != key, f.name
    assert entry_key("prune_row", base.to_dict()) == key


def test_model_without_forward_features_gets_a_clear_error(small_data):
    train, val = small_data
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 10))
    with pytest.raises(TypeError, match="forward_features"):
        run_config(plain, tiny("pwoa"), train=train, val=val, progress=False)
    assert math.isfinite(run_config(plain, tiny("naive"), train=train, val=val,
                                            progress=False).history.val_natural.iloc[-1])


def test_interrupted_run_resumes_after_its_last_completed_epoch(teacher, small_data, tmp_path):
    train, val = small_data
    config = tiny("pwoa")
    full = run_config(teacher, config, train=train, val=val, progress=False)
    state = tmp_path / "state.pt"

    def stop_in_retraining(row):
        if row["phase"] == "retrain":
            raise KeyboardInterrupt  # Ctrl-C after the first retraining epoch (its state is saved)

    with pytest.raises(KeyboardInterrupt):
        run_config(teacher, config, train=train, val=val, progress=False, state_path=state,
                           on_epoch=stop_in_retraining)
    assert state.exists() and not list(tmp_path.glob(".*.tmp"))   # no half-written file left behind
    seen = []
    resumed = run_config(teacher, config, train=train, val=val, progress=False, state_path=state,
                                 on_epoch=seen.append)
    # neither the ADMM epochs nor the finished retraining epoch were redone
    assert [r["phase"] for r in seen] == ["retrain"] * (config.retrain_epochs - 1)
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    cols = [c for c in full.history.columns if c != "train_seconds"]
    assert full.history[cols].equals(resumed.history[cols])


def test_state_of_another_config_is_not_resumed(teacher, small_data, tmp_path):
    train, val = small_data
    state = tmp_path / "state.pt"
    run_config(teacher, tiny("kd"), train=train, val=val, progress=False, state_path=state)
    seen = []
    run_config(teacher, tiny("naive"), train=train, val=val, progress=False, state_path=state,
                       on_epoch=seen.append)
    assert seen[0]["phase"] == "admm" and len(seen) == 4


def test_nan_loss_keeps_the_last_good_epoch(teacher, small_data, tmp_path):
    train, val = small_data
    state = tmp_path / "state.pt"
    with pytest.raises(NonFiniteLoss):
        run_config(teacher, tiny("pwoa", lambda_x=float("nan")), train=train, val=val, progress=False,
                           state_path=state)
    saved = torch.load(state, weights_only=True)  # the resume state is plain containers
    assert saved["done"] == 2 and [r["phase"] for r in saved["history"]] == ["admm", "admm"]


# ----------------------------------------------------------------------------------------------- the loop's contract

class _Payload:
    """Unpickling this object would create a file: the side effect a planted resume state would have."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_resume_state_that_needs_arbitrary_unpickling_is_refused(teacher, small_data, tmp_path):
    from pwoa_lab.training.loop import STATE_FORMAT
    from pwoa_lab.experiments.runs import state_key
    train, val = small_data
    config = tiny("kd")
    marker = tmp_path / "code-ran"
    state = tmp_path / "state.pt"
    # a file of the right format and key, with a pickled object inside: only weights_only=False would load it
    torch.save({"format": STATE_FORMAT, "key": state_key(config.resolved(), teacher), "done": 1,
                "history": [_Payload(marker)]}, state)
    seen = []
    with pytest.warns(UserWarning, match="arbitrary unpickling"):
        result = run_config(teacher, config, train=train, val=val, progress=False, state_path=state,
                            on_epoch=seen.append)
    assert not marker.exists()                                   # nothing in the file was executed
    assert seen[0]["phase"] == "admm" and len(seen) == 4         # a fresh run, from the first epoch
    fresh = run_config(teacher, config, train=train, val=val, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(fresh.model.state_dict().values(),
                                                 result.model.state_dict().values()))
    assert torch.load(state, weights_only=True)["done"] == 4     # the refused file was replaced by a real state


def test_hydra_run_resumes_after_an_interrupt(small_data, tmp_path):
    torch.manual_seed(0)
    from pwoa_lab.core.models import build_model
    model = build_model(None, "digits").eval()
    train, val = small_data
    config = preset_config("digits", "smoke", method="hydra", rate=4, batch_size=40, val_n=40, finetune_epochs=2,
                           adv_steps=2)
    full = run_config(model, config, train=train, val=val, progress=False)
    state = tmp_path / "state.pt"

    def stop_after_scoring(row):
        if row["phase"] == "score":
            raise KeyboardInterrupt  # after the score epoch's state is saved: the resume starts the finetune phase

    with pytest.raises(KeyboardInterrupt):
        run_config(model, config, train=train, val=val, progress=False, state_path=state,
                   on_epoch=stop_after_scoring)
    seen = []
    resumed = run_config(model, config, train=train, val=val, progress=False, state_path=state, on_epoch=seen.append)
    # Ctrl-C came after the score epoch: it is not redone, and the resumed run rebuilds the scored layers,
    # restores them, then makes the hard prune to top-k(|scores|) afresh
    assert [r["phase"] for r in seen] == ["finetune", "finetune"]
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    cols = [c for c in full.history.columns if c != "train_seconds"]
    assert full.history[cols].equals(resumed.history[cols])


def test_best_validation_epoch_is_the_one_returned(teacher, small_data):
    """select="best_val_pgd" returns the weights of the sparse epoch with the best validation PGD accuracy, and
    selection never changes the training itself."""
    train, val = small_data
    config = tiny("naive", retrain_epochs=4, eval_every=1, select="last")
    last = run_config(teacher, config, train=train, val=val, progress=False)
    best = run_config(teacher, dataclasses.replace(config, select="best_val_pgd").resolved(), train=train, val=val,
                      progress=False)
    cols = [c for c in last.history.columns if c != "train_seconds"]
    assert last.history[cols].equals(best.history[cols])
    sparse = best.history[best.history.phase == "retrain"]
    assert best.selected_epoch == int(sparse.epoch[sparse.val_pgd == sparse.val_pgd.max()].iloc[-1])
    assert last.selected_epoch == int(last.history.epoch.iloc[-1])
    # the same run stopped at the selected epoch holds exactly those weights
    stopped = run_config(teacher, dataclasses.replace(config, retrain_epochs=best.selected_epoch - config.admm_epochs
                                                      ).resolved(), train=train, val=val, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(stopped.model.state_dict().values(),
                                                 best.model.state_dict().values()))


def test_a_new_method_is_a_loss_and_needs_no_change_to_the_loop(teacher, small_data):
    """A method written outside the kit (CE on natural batches plus an L1 penalty) runs through `fit` as it is."""
    from pwoa_lab.training.loop import Phase, fit
    from pwoa_lab.training.methods import MethodBase
    train, val = small_data

    class L1(MethodBase):
        name = "l1"

        def loss(self, student, batch, phase):
            ce = torch.nn.functional.cross_entropy(student(batch.inputs), batch.y)
            l1 = 1e-4 * sum(p.abs().sum() for p in student.parameters())
            return ce + l1, {"ce": ce.item(), "l1": l1.item()}

    student = frozen_teacher(teacher)
    for p in student.parameters():
        p.requires_grad_(True)
    before = sum(float(p.detach().abs().sum()) for p in student.parameters())
    config = dataclasses.replace(tiny("naive"), select="last").resolved()
    result = fit(student, [Phase("train", 2, 1e-3)], L1(), config, train, val, progress=False)
    assert list(result.history.phase) == ["train", "train"] and "loss_l1" in result.history
    assert sum(float(p.detach().abs().sum()) for p in result.model.parameters()) < before


def test_a_resume_state_that_is_no_torch_file_is_ignored_with_a_warning(tmp_path):
    from pwoa_lab.training.resume import load_state
    junk = tmp_path / "out.pt.state"
    junk.write_bytes(b"not a torch file at all")
    with pytest.warns(UserWarning, match="ignoring the resume state"):
        assert load_state(junk, "any-key") is None
    assert junk.read_bytes() == b"not a torch file at all"  # left as it is
