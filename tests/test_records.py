"""Each fact lives once: a dataset is one record, a method is one registration, and nothing else names them.

A toy dataset (a 4-class slice of digits) and a toy method, each registered once in a module of their own, run
through a smoke Figure 1 in worker processes; a method registered again with an edited loss is computed again;
a method a notebook registered is refused by worker processes with an error that says what to do.
"""
from __future__ import annotations

import ast
import importlib
import sys
import textwrap
from pathlib import Path

import pytest

from pwoa_lab.core.datasets import DATASETS, dataset_info, unregister_dataset
from pwoa_lab.core.models import build_model
from pwoa_lab.core.evaluation import EvalSettings
from pwoa_lab.experiments.figures import figure1
from pwoa_lab.experiments.batch import run_configs
from pwoa_lab.experiments.runs import prune_row
from pwoa_lab.training.presets import PRESETS, add_preset_block, preset_config, remove_preset_block
from pwoa_lab.training.registry import method_names, register, unregister

PACKAGE = Path(__file__).resolve().parents[1] / "pwoa_lab"
SETTINGS = EvalSettings(n=40, aa_n=0)

TOY_MODULE = '''
"""A toy extension: the digits 0-3 as a dataset, and CE + L1 as a method."""
import torch.nn.functional as F

from pwoa_lab.core.datasets import DatasetInfo, dataset_info, register_dataset
from pwoa_lab.training.methods import PruneConfig
from pwoa_lab.training.registry import MethodSpec, register


def load_four(info, split, root, download):
    digits = dataset_info("digits")
    x, y = digits.load(digits, split, root, download)
    keep = y < 4
    return x[keep], y[keep]


def l1_loss(student, batch, phase, ctx):
    ce = F.cross_entropy(student(batch.inputs), batch.y)
    l1 = 1e-4 * sum(p.abs().sum() for p in student.parameters())
    return ce + l1, {"ce": ce.item(), "l1": l1.item()}


register_dataset(DatasetInfo("toy4", 4, (1, 16, 16), eps=0.2, pgd_step=None, pgd_steps=5, n_val=40, augment=False,
                             n_test=146, load=load_four, default_model="small_cnn"))
register(MethodSpec("toy_l1", PruneConfig, loss=l1_loss, order=45, label="CE + L1 (toy)"))
'''


@pytest.fixture
def toy_extension(tmp_path):
    """The toy module on the Python path and imported (its records registered); everything removed after."""
    (tmp_path / "pwoa_toy_ext.py").write_text(TOY_MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        importlib.import_module("pwoa_toy_ext")
        add_preset_block("smoke", "toy4", PRESETS["smoke"]["digits"])
        yield
    finally:
        remove_preset_block("smoke", "toy4")
        unregister("toy_l1")
        unregister_dataset("toy4")
        sys.modules.pop("pwoa_toy_ext", None)
        sys.path.remove(str(tmp_path))


def test_a_toy_dataset_and_method_run_a_smoke_figure1_in_worker_processes(toy_extension, tmp_path):
    teacher = build_model(None, "toy4")  # an untrained small CNN with 4 outputs: the plumbing is what is tested
    df = figure1("toy4", rates=(2,), methods=("oneshot", "toy_l1"), preset="smoke", seeds=(0,), teacher=teacher,
                 settings=SETTINGS, cache_dir=tmp_path / "cache", progress=False, workers=2)
    assert set(df.method) == {"teacher", "oneshot", "toy_l1"}
    assert (df.dataset == "toy4").all() and df.natural.between(0, 100).all()
    assert not df[df.method == "toy_l1"].cached.any()  # computed, in the worker processes
    assert dataset_info("toy4").num_classes == 4 and "toy_l1" in method_names()


def test_nothing_of_the_toy_extension_stays_registered():
    assert "toy4" not in DATASETS and "toy_l1" not in method_names() and "toy4" not in PRESETS["smoke"]


def _register_from_a_notebook(source: str) -> None:
    """Run `source` as a notebook cell runs it: in a module namespace called __main__."""
    exec(compile(textwrap.dedent(source), "<notebook cell>", "exec"), {"__name__": "__main__"})


NOTEBOOK_METHOD = '''
import torch.nn.functional as F
from pwoa_lab.training.methods import PruneConfig
from pwoa_lab.training.registry import MethodSpec, register

def scaled_ce(student, batch, phase, ctx):
    loss = {scale} * F.cross_entropy(student(batch.inputs), batch.y)
    return loss, {{"ce": loss.item()}}

register(MethodSpec("nb_ce", PruneConfig, loss=scaled_ce), replace=True)
'''


@pytest.fixture
def notebook_method():
    yield lambda scale: _register_from_a_notebook(NOTEBOOK_METHOD.format(scale=scale))
    unregister("nb_ce")


def test_a_method_registered_again_with_an_edited_loss_is_computed_again(notebook_method, teacher, tmp_path):
    notebook_method(1.0)
    config = preset_config("digits", "smoke", method="nb_ce", rate=4, retrain_epochs=1, admm_epochs=1)
    first, _ = prune_row(teacher, config, SETTINGS, tmp_path, progress=False)
    again, _ = prune_row(teacher, config, SETTINGS, tmp_path, progress=False)
    assert not first["cached"] and again["cached"] and again["key"] == first["key"]
    notebook_method(0.5)  # the same name, an edited loss: not the same run
    edited, _ = prune_row(teacher, config, SETTINGS, tmp_path, progress=False)
    assert not edited["cached"] and edited["key"] != first["key"]


def test_worker_processes_refuse_a_method_of_a_notebook_with_what_to_do(notebook_method, teacher, tmp_path):
    notebook_method(1.0)
    configs = [preset_config("digits", "smoke", method="nb_ce", rate=r) for r in (2, 4)]
    with pytest.raises(ValueError, match=r"(?s)method 'nb_ce' is registered in this notebook.*workers=1"):
        run_configs(teacher, configs, SETTINGS, tmp_path, workers=2, progress=False)


# ----------------------------------------------------------------------------------------------- no name literals

# modules that may name datasets and methods: their records, the presets and the defaults
RECORDS = ("core/datasets/", "training/methods/", "training/presets.py", "defaults.py")
# names that are something else in a module: the pruning schedule "oneshot" (prune, then fine-tune) is not the
# method "oneshot"
OTHER_MEANINGS = {("pruning/schedules.py", "oneshot"), ("experiments/design_space.py", "oneshot"),
                  ("cli.py", "oneshot"), ("cli/common.py", "oneshot"), ("cli/prune.py", "oneshot")}


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """(line, value) of every string constant in a module's code, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def name_literals() -> list[str]:
    """'file:line: name' for every dataset or method name written as a string outside the records."""
    names = set(DATASETS) | set(method_names())
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(RECORDS):
            continue
        for line, value in _string_literals(path):
            if value in names and (rel, value) not in OTHER_MEANINGS:
                found.append(f"pwoa_lab/{rel}:{line}: {value!r}")
    return found


def test_no_module_names_a_dataset_or_method_outside_its_record():
    assert name_literals() == []


def test_a_name_literal_is_caught(tmp_path):
    probe = PACKAGE / "experiments" / "_literal_probe.py"
    probe.write_text('"""A probe."""\nMETHODS = ("naive",)\n')
    try:
        found = name_literals()
    finally:
        probe.unlink()
    assert found == ["pwoa_lab/experiments/_literal_probe.py:2: 'naive'"]
