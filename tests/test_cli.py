"""The `pwoa-lab` command line, called in-process through pwoa_lab.cli.main."""
from __future__ import annotations

import json

import pytest
import torch

from pwoa_lab.checkpoint import load_checkpoint, save_checkpoint
from pwoa_lab.cli import main
from pwoa_lab.data import dataset_info
from pwoa_lab.models import build_model


@pytest.fixture
def random_checkpoint(tmp_path):
    """A valid digits checkpoint with untrained weights (for the argument checks; no teacher needed)."""
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "random.pt", build_model("small_cnn", "digits"),
                           {"model": "small_cnn", "dataset": "digits", "eps": 0.1})


def test_evaluate_shipped_teacher_as_json(digits_teacher, capsys):
    _, meta = digits_teacher
    rc = main(["evaluate", "--checkpoint", "digits", "--attacks", "natural,pgd", "--n", "50", "--format", "json"])
    out = capsys.readouterr().out
    assert rc == 0
    rows = json.loads(out)
    assert [r["attack"] for r in rows] == ["natural", "pgd"]
    for r in rows:
        assert set(r) == {"checkpoint", "attack", "eps", "n", "accuracy", "seconds"}
        assert r["checkpoint"] == "digits" and r["n"] == 50
        assert r["eps"] == pytest.approx(meta["eps"])  # the checkpoint's own eps by default
        assert 0 <= r["accuracy"] <= 100
    natural, pgd = rows[0]["accuracy"], rows[1]["accuracy"]
    assert natural > 80
    assert 0 < pgd < natural  # a robust model: attacked, but not broken


def test_evaluate_table_format_and_eps_override(random_checkpoint, capsys):
    rc = main(["evaluate", "--checkpoint", str(random_checkpoint), "--attacks", "natural,fgsm", "--n", "20",
               "--eps", "0"])
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == ["checkpoint", "attack", "eps", "n", "accuracy", "seconds"]
    natural, fgsm = (line.split() for line in lines[1:])
    assert natural[1] == "natural" and fgsm[1] == "fgsm"
    assert natural[2] == fgsm[2] == "0.00"
    assert natural[4] == fgsm[4]  # eps 0: FGSM changes nothing


def test_evaluate_bad_attack_name_exits_2_listing_valid_names(random_checkpoint, capsys):
    rc = main(["evaluate", "--checkpoint", str(random_checkpoint), "--attacks", "natural,pgd40", "--n", "5"])
    captured = capsys.readouterr()
    assert rc == 2
    assert "unknown attack 'pgd40'" in captured.err
    assert "valid: aa, cw, fgsm, natural, pgd" in captured.err
    assert captured.out == ""


def test_evaluate_wrong_dataset_and_missing_checkpoint_exit_2(random_checkpoint, tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(random_checkpoint), "--dataset", "mnist", "--n", "5"]) == 2
    err = capsys.readouterr().err
    assert "dataset='digits'" in err and "'mnist'" in err
    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_train_teacher_writes_a_loadable_checkpoint_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "teacher.pt"
    args = ["train-teacher", "--dataset", "digits", "--epochs", "1", "--n-per-class", "10", "--pgd-steps", "2",
            "--out", str(out)]
    assert main(args) == 0
    assert f"saved {out}" in capsys.readouterr().out
    model, meta = load_checkpoint(out, expect={"dataset": "digits", "model": "small_cnn"})
    assert meta["kind"] == "teacher" and meta["seed"] == 1234  # the one default seed of every command
    assert meta["config"]["epochs"] == 1 and meta["config"]["n_per_class"] == 10
    assert meta["config"]["method"] == "pgd" and meta["config"]["adv_steps"] == 2
    assert meta["eps"] == pytest.approx(dataset_info("digits").eps)
    assert len(meta["history"]) == 1 and meta["metrics"]["best_epoch"] == 1
    with torch.no_grad():
        logits = model(torch.rand(2, 1, 16, 16))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()

    before, mtime = out.read_bytes(), out.stat().st_mtime_ns
    assert main(args) == 2
    captured = capsys.readouterr()
    assert "exists" in captured.err and "--overwrite" in captured.err
    assert out.read_bytes() == before and out.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher.pt"]  # no stray temporary files

    # --overwrite replaces it (another seed, so other weights)
    assert main(args + ["--overwrite", "--seed", "1"]) == 0
    capsys.readouterr()
    _, meta2 = load_checkpoint(out)
    assert meta2["seed"] == 1 and out.read_bytes() != before


def test_train_teacher_unknown_method_exits_2(tmp_path, capsys):
    out = tmp_path / "t.pt"
    rc = main(["train-teacher", "--dataset", "digits", "--method", "trades", "--epochs", "1", "--out", str(out)])
    assert rc == 2
    assert "fgsm_rs, none, pgd" in capsys.readouterr().err
    assert not out.exists()


def test_missing_subcommand_or_required_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["train-teacher", "--dataset", "digits"])  # no --out
    assert info.value.code == 2
    assert "--out" in capsys.readouterr().err
