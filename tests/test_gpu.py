"""The kit on a CUDA GPU: attacks, a run, a sweep's worker processes, resuming, structured pruning.

Skipped without CUDA (CI has none). The rest of the suite runs on the CPU on any machine (conftest sets
PWOA_DEVICE=cpu, so its exact-equality checks keep the CPU's float semantics); these tests ask for `cuda` by name.
On a GPU machine: `bash bench/gpu_check.sh` runs them (and the MNIST Figure 1 on the GPU).
"""
from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch

from pwoa_lab.core.attacks import ATTACKS, accuracy, fgsm, pgd_linf
from pwoa_lab.core.evaluation import EvalSettings
from pwoa_lab.experiments.figures import figure1
from pwoa_lab.training.presets import preset_config
from pwoa_lab.experiments.runs import run_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

CUDA = torch.device("cuda")
EPS = 0.2


@pytest.fixture(scope="module")
def gpu_teacher(teacher):
    return copy.deepcopy(teacher).to(CUDA).eval()


def tiny(method: str, **kw):
    return preset_config("digits", "smoke", method=method, rate=4, batch_size=40, val_n=40, device="cuda", **kw)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_attacks_on_the_gpu_agree_with_the_cpu(teacher, gpu_teacher, digits_test):
    x, y = digits_test.x[:200], digits_test.y[:200]
    xg, yg = x.to(CUDA), y.to(CUDA)
    assert accuracy(gpu_teacher, x, y) == pytest.approx(accuracy(teacher, x, y), abs=0.01)  # moved batch by batch
    for attack in (fgsm, pgd_linf):
        torch.manual_seed(0)
        x_adv = attack(gpu_teacher, xg, yg, EPS)
        assert x_adv.device.type == "cuda"
        assert (x_adv - xg).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
        torch.manual_seed(0)
        cpu_acc = accuracy(teacher, attack(teacher, x, y, EPS), y)
        assert accuracy(gpu_teacher, x_adv, yg) == pytest.approx(cpu_acc, abs=0.03), attack.__name__


def test_images_on_another_device_than_the_model_get_a_clear_error(gpu_teacher, digits_test):
    x, y = digits_test.x[:8], digits_test.y[:8]
    for name, attack in ATTACKS.items():
        with pytest.raises(ValueError, match=r"x\.to\(device\)"):
            attack(gpu_teacher, x, y, eps=EPS)


def test_a_gpu_run_stays_on_the_gpu_and_repeats_bit_for_bit(gpu_teacher, small_data):
    a = run_config(gpu_teacher, tiny("pwoa"), *small_data, progress=False)
    b = run_config(gpu_teacher, tiny("pwoa"), *small_data, progress=False)
    assert {p.device.type for p in a.model.parameters()} == {"cuda"}
    assert same_weights(a.model, b.model)
    cols = [c for c in a.history.columns if c != "train_seconds"]
    assert a.history[cols].equals(b.history[cols])


@pytest.mark.parametrize("method", [
    pytest.param("pwoa", marks=pytest.mark.xfail(reason=(
        "seen on an H200 (torch 2.11, 2026-11-30): with validation every epoch every PwoA weight differed from "
        "the run that validated once, although the validation draws from a forked RNG and advprune's weights "
        "were equal; cause not established"), strict=False)),
    "advprune"])
def test_validating_more_often_does_not_change_a_gpu_run(gpu_teacher, small_data, method):
    a = run_config(gpu_teacher, tiny(method, eval_every=1, adv_steps=2), *small_data, progress=False)
    b = run_config(gpu_teacher, tiny(method, eval_every=100, adv_steps=2), *small_data, progress=False)
    assert a.history.val_pgd.notna().sum() > b.history.val_pgd.notna().sum()
    differ = [n for (n, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values())
              if not torch.equal(p, q)]
    assert not differ, f"weights that differ: {differ}"


def test_an_interrupted_gpu_run_resumes_to_the_same_weights(gpu_teacher, small_data, tmp_path):
    """The adversarial batches' random starts come from the GPU's generator: the resume state carries it."""
    config = tiny("advprune", adv_steps=2, admm_epochs=2, retrain_epochs=2)
    full = run_config(gpu_teacher, config, *small_data, progress=False)
    state, seen = tmp_path / "state.pt", []

    def stop_after_the_second_epoch(row):
        seen.append(row)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_config(gpu_teacher, config, *small_data, progress=False, state_path=state,
                   on_epoch=stop_after_the_second_epoch)
    resumed = run_config(gpu_teacher, config, *small_data, progress=False, state_path=state)
    assert same_weights(full.model, resumed.model)


def test_figure1_worker_processes_agree_with_one_process_on_the_gpu(gpu_teacher, tmp_path):
    settings = EvalSettings(n=60, aa_n=20)
    kw = dict(rates=(4,), methods=("oneshot", "naive", "pwoa"), preset="smoke", teacher=gpu_teacher,
              settings=settings, progress=False, device="cuda")
    one = figure1("digits", cache_dir=tmp_path / "one", workers=1, **kw)
    two = figure1("digits", cache_dir=tmp_path / "two", workers=2, **kw)
    cols = ["method", "rate", "natural", "fgsm", "pgd", "aa", "sparsity"]
    # the teacher's row included: a worker gets a CPU copy of the teacher and must evaluate it on the GPU
    pd.testing.assert_frame_equal(one[cols], two[cols])


def test_a_structured_gpu_run_gives_a_smaller_model_on_the_gpu(gpu_teacher, small_data):
    from pwoa_lab.pruning import structured as S
    result = run_config(gpu_teacher, tiny("pwoa", structure="structured", schedule="oneshot", admm_epochs=1,
                                          retrain_epochs=1), *small_data, progress=False)
    assert S.parameter_count(result.model) <= S.parameter_count(gpu_teacher) / 4
    assert result.model(small_data[1].x[:3].to(CUDA)).shape == (3, 10)
