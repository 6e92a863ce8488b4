"""The method registry: a new method is one registration, and everything that lists methods follows."""
import pytest
import torch
import torch.nn.functional as F

from pwoa_lab.course.explorer import Selection
from pwoa_lab.course.plots import METHOD_STYLE
from pwoa_lab.experiments.figures import seed_summary
from pwoa_lab.experiments.runs import run_config
from pwoa_lab.experiments.sweep import grid_fields
from pwoa_lab.training.methods import PruneConfig
from pwoa_lab.training.presets import preset_config
from pwoa_lab.training.registry import MethodSpec, method_names, method_order, method_spec, register, unregister


def l1_loss(student, batch, phase, ctx):
    """CE on natural images plus an L1 penalty on every parameter."""
    ce = F.cross_entropy(student(batch.inputs), batch.y)
    l1 = 1e-4 * sum(p.abs().sum() for p in student.parameters())
    return ce + l1, {"ce": ce.item(), "l1": l1.item()}


@pytest.fixture
def toy_method():
    spec = register(MethodSpec("toy_l1", PruneConfig, loss=l1_loss, ignores=("lambda_x", "lambda_y"), order=45,
                               label="CE + L1 (toy)", color="tab:olive", marker="*", help="CE + L1, a test method"))
    yield spec
    unregister("toy_l1")


def test_the_builtin_methods_are_registered_in_display_order():
    assert method_names() == ("oneshot", "naive", "kd", "pwoa", "advprune", "hydra")
    assert method_order()[0] == "teacher"
    assert method_spec("advprune").mix_ratio == 1.0 and method_spec("pwoa").uses_teacher


def test_a_new_method_is_one_registration(toy_method, capsys, small_data, teacher):
    from pwoa_lab.cli import build_parser
    # listed, styled, ordered, offered, with its help text
    assert "toy_l1" in method_names() and method_names().index("toy_l1") == method_names().index("pwoa") + 1
    assert METHOD_STYLE["toy_l1"] == {"color": "tab:olive", "marker": "*", "label": "CE + L1 (toy)"}
    assert Selection(methods=("toy_l1", "naive"), rates=(4,)).checked().methods == ("naive", "toy_l1")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["prune", "--help"])
    assert "toy_l1: CE + L1, a test method" in " ".join(capsys.readouterr().out.split())
    assert "lambda_x" in grid_fields(["toy_l1"])
    # the preset gives it the ADMM schedule, and the fields it ignores go back to their defaults
    config = preset_config("digits", "smoke", method="toy_l1", lambda_x=0.5, rate=4)
    resolved = config.resolved()
    assert resolved.lambda_x == PruneConfig.lambda_x and resolved.mix_ratio == 0.0
    # it trains through the one loop with its own loss
    train, val = small_data
    result = run_config(teacher, config, train=train, val=val, progress=False)
    assert "loss_l1" in result.history and result.history.loss_l1.notna().all()
    assert result.masks and all(float(m.float().mean()) <= 0.26 for m in result.masks.values())
    # tables order it after pwoa
    import pandas as pd
    rows = pd.DataFrame([{"dataset": "digits", "method": m, "rate": 4.0, "seed": 0, "natural": 1.0, "sparsity": 0.75} for m in ("toy_l1", "pwoa", "naive")])
    assert list(seed_summary(rows, metrics=("natural",)).method) == ["naive", "pwoa", "toy_l1"]


def test_after_unregistering_the_method_is_unknown_everywhere(toy_method):
    unregister("toy_l1")
    with pytest.raises(ValueError, match="unknown method 'toy_l1'"):
        preset_config("digits", "smoke", method="toy_l1")
    with pytest.raises(KeyError):
        METHOD_STYLE["toy_l1"]
    with pytest.raises(ValueError, match="unknown method"):
        Selection(methods=("toy_l1",), rates=(4,)).checked()


def test_a_method_brings_its_own_adversarial_objective(small_data, teacher):
    """advprune's batches come from the spec's adversarial hook when it has one (here: FGSM at eps)."""
    calls = []

    def fgsm_batch(student, x, y, config):
        calls.append(len(x))
        x = x.clone().requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(student(x), y), x)
        return (x + config.eps * grad.sign()).clamp(0, 1).detach()

    register(MethodSpec("toy_fgsm", PruneConfig, loss=method_spec("naive").loss, mix_ratio=1.0,
                        adversarial=fgsm_batch))
    try:
        train, val = small_data
        result = run_config(teacher, preset_config("digits", "smoke", method="toy_fgsm", rate=4), train=train,
                            val=val, progress=False)
    finally:
        unregister("toy_fgsm")
    assert calls and (result.history.adv_batch_fraction == 1.0).all()


def test_registering_a_name_twice_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        register(MethodSpec("pwoa", PruneConfig))
    with pytest.raises(ValueError, match="lower-case"):
        MethodSpec("Bad Name", PruneConfig)
