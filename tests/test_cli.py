"""The `pwoa-lab` command line, called in-process through pwoa_lab.cli.main."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from pwoa_lab.io.checkpoint import load_checkpoint, save_checkpoint
from pwoa_lab.cli import main
from pwoa_lab.core.data import dataset_info
from pwoa_lab.core.models import build_model


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


# ------------------------------------------------------- the design space: --structure, --importance, --schedule

def _n_params(state: dict) -> int:
    return sum(v.numel() for k, v in state.items() if k.endswith((".weight", ".bias")))


def test_prune_structure_structured_saves_a_physically_smaller_plain_model(digits_teacher, tmp_path, capsys):
    from pwoa_lab.io.checkpoint import read_checkpoint
    from pwoa_lab.pruning import is_masked
    from pwoa_lab.pruning.structured import resize_to_state
    teacher, _ = digits_teacher
    out = tmp_path / "s.pt"
    rc = main(["prune", "--checkpoint", "digits", "--method", "naive", "--rate", "4", "--preset", "smoke",
               "--structure", "structured", "--schedule", "oneshot", "--n", "30", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "structure structured, importance magnitude (default), schedule oneshot" in printed
    blob = read_checkpoint(out)
    config = blob["meta"]["config"]
    assert (config["structure"], config["importance"], config["schedule"]) == ("structured", "magnitude", "oneshot")
    state = blob["state_dict"]
    teacher_params = sum(p.numel() for p in teacher.parameters())
    assert _n_params(state) <= teacher_params / 4  # rate 4: at most a quarter of the parameters, really removed
    assert not any("mask" in k or k.endswith("_orig") for k in state)
    assert not (tmp_path / "s.sparse.pt").exists()  # nothing sparse to compress in a smaller dense model
    # it is the same architecture family with fewer channels: a plain nn.Module, no masks, same output shape
    model = resize_to_state(build_model(blob["meta"]["model"], "digits", blob["meta"].get("normalize")), state)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    assert not is_masked(model) and sum(p.numel() for p in model.parameters()) == _n_params(state)
    with torch.no_grad():
        assert model.eval()(torch.rand(2, 1, 16, 16)).shape == (2, 10)
    # and the kit loads it like any checkpoint: `evaluate` rebuilds the smaller layers from the file
    loaded, _ = load_checkpoint(out)
    assert sum(p.numel() for p in loaded.parameters()) == _n_params(state)
    assert main(["evaluate", "--checkpoint", str(out), "--n", "20"]) == 0


def test_prune_importance_and_schedule_reach_the_run_and_weight_pruning_keeps_the_shape(digits_teacher, tmp_path,
                                                                                       capsys):
    teacher, _ = digits_teacher
    out = tmp_path / "w.pt"
    rc = main(["prune", "--checkpoint", "digits", "--method", "naive", "--rate", "4", "--preset", "smoke",
               "--importance", "gradient", "--schedule", "iterative", "--lr-factor", "1/3", "--n", "30",
               "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0 and "structure weight (default), importance gradient, schedule iterative" in printed
    model, meta = load_checkpoint(out)
    config = meta["config"]
    # the budget option made the frontier's point: every learning rate a third of the preset's
    from pwoa_lab.training.presets import preset_config
    preset = preset_config("digits", "smoke", method="naive", rate=4, importance="gradient", schedule="iterative")
    lrs = {k: v / 3 for k, v in preset.resolved().to_dict().items() if k in ("lr_admm", "lr_retrain")}
    assert lrs and {k: config[k] for k in lrs} == pytest.approx(lrs)
    assert (config["structure"], config["importance"], config["schedule"]) == ("weight", "gradient", "iterative")
    # the iterative schedule really ran: a gradual phase whose target sparsity grows, then retraining
    phases = [row["phase"] for row in meta["history"]]
    assert "gradual" in phases and "retrain" in phases and "admm" not in phases
    targets = [row["target_sparsity"] for row in meta["history"] if row["phase"] == "gradual"]
    assert targets == sorted(targets) and targets[-1] == pytest.approx(0.75)
    # weight pruning: the dense shape, a quarter of the weights non-zero, and the compact file beside it
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in teacher.parameters())
    weights = [m.weight for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    nonzero = sum(int(torch.count_nonzero(w)) for w in weights) / sum(w.numel() for w in weights)
    assert nonzero == pytest.approx(0.25, abs=0.01)
    assert (tmp_path / "w.sparse.pt").exists()


@pytest.mark.parametrize("flag, value, what, valid", [
    ("--structure", "channel", "structure", "structured, weight"),
    ("--importance", "taylor", "importance", "gradient, magnitude"),
    ("--schedule", "cubic", "schedule", "admm, iterative, oneshot"),
])
def test_bad_design_values_exit_2_with_the_library_message(random_checkpoint, tmp_path, capsys, flag, value, what,
                                                          valid):
    from pwoa_lab.training.methods import PruneConfig
    with pytest.raises(ValueError) as library:
        PruneConfig(dataset="digits", **{what: value}).resolved()
    assert str(library.value) == f"unknown {what} {value!r}; valid: {valid}"
    out = tmp_path / "p.pt"
    for argv in (["prune", "--checkpoint", str(random_checkpoint), "--rate", "4", "--out", str(out)],
                 ["figure1", "--rates", "4", "--methods", "naive", "--out", str(tmp_path / "fig")]):
        assert main(argv + [flag, value]) == 2
        captured = capsys.readouterr()
        assert captured.err.strip().endswith(str(library.value))  # the same words as the library
        assert captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["random.pt"]  # failed before anything was run or written


def test_design_options_are_refused_with_hydra(random_checkpoint, tmp_path, capsys):
    rc = main(["prune", "--checkpoint", str(random_checkpoint), "--method", "hydra", "--rate", "4",
               "--structure", "structured", "--out", str(tmp_path / "h.pt")])
    assert rc == 2 and "not to hydra" in capsys.readouterr().err


def test_figure1_structure_and_schedule_reach_every_run(digits_teacher, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    monkeypatch.setenv("PWOA_CACHE_DIR", str(cache))
    rc = main(["figure1", "--dataset", "digits", "--preset", "smoke", "--rates", "4", "--methods", "naive",
               "--structure", "structured", "--schedule", "iterative", "--workers", "1", "--out",
               str(tmp_path / "fig")])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "structure structured, importance magnitude (default), schedule iterative" in printed
    import pandas as pd
    df = pd.read_csv(tmp_path / "fig" / "figure1_digits_smoke.csv")
    pruned = df[df.method == "naive"]
    assert len(pruned) == 1 and set(pruned.structure) == {"structured"} and set(pruned.schedule) == {"iterative"}
    assert (pruned.sparsity < 0.05).all()  # channels removed, not zeroed: the smaller model has no zero weights
    records = [json.loads(p.read_text()) for p in (cache / "prune_row").glob("*/result.json")]
    assert [(r["config"]["structure"], r["config"]["schedule"], r["config"]["rate"]) for r in records] == \
        [("structured", "iterative", 4.0)]


# ------------------------------------------------------- issue 24: outputs checked first, Ctrl-C, rates, data

def _read_only_folder():
    """A folder that even root cannot write (a read-only system folder), or skip."""
    import tempfile
    for candidate in ("/sys", "/proc"):
        try:
            fd, probe = tempfile.mkstemp(dir=candidate)
        except OSError:
            return Path(candidate)
        os.close(fd)
        os.unlink(probe)
    pytest.skip("no read-only folder on this machine")


def test_prune_into_a_path_under_a_file_fails_before_training(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("a file, not a folder")
    rc = main(["prune", "--checkpoint", "digits", "--method", "naive", "--rate", "4", "--preset", "smoke",
               "--out", str(afile / "out.pt")])
    captured = capsys.readouterr()
    assert rc == 2
    assert f"--out {afile / 'out.pt'}: {afile} is a file, not a folder; choose another --out" in captured.err
    assert captured.out == ""  # no training report: it failed before the run
    assert afile.read_text() == "a file, not a folder"


def test_prune_into_a_read_only_folder_fails_before_training(tmp_path, capsys):
    folder = _read_only_folder()
    rc = main(["prune", "--checkpoint", "digits", "--method", "naive", "--rate", "4", "--preset", "smoke",
               "--out", str(folder / "pwoa-lab-test" / "out.pt")])
    captured = capsys.readouterr()
    assert rc == 2
    assert f"cannot write in {folder}" in captured.err and "choose an --out in a writable folder" in captured.err
    assert captured.out == ""


def test_figure1_into_a_read_only_folder_fails_before_any_run(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    monkeypatch.setenv("PWOA_CACHE_DIR", str(cache))
    rc = main(["figure1", "--preset", "smoke", "--rates", "4", "--methods", "naive", "--workers", "1",
               "--out", str(_read_only_folder() / "pwoa-lab-figures")])
    assert rc == 2
    assert "choose an --out in a writable folder (nothing was computed)" in capsys.readouterr().err
    assert not cache.exists()  # no run, not even the teacher's row


def test_sweep_with_an_unknown_metric_fails_before_any_run(tmp_path, monkeypatch, capsys):
    cache, out = tmp_path / "cache", tmp_path / "out"
    monkeypatch.setenv("PWOA_CACHE_DIR", str(cache))
    rc = main(["sweep", "--preset", "smoke", "--grid", "method=naive", "--grid", "rate=4", "--metric", "foo",
               "--workers", "1", "--out", str(out)])
    assert rc == 2
    assert "unknown --metric 'foo'; valid: aa, fgsm, natural, natural_last, pgd, pgd_last, sparsity, " \
           "train_seconds" in capsys.readouterr().err
    assert not cache.exists() and not out.exists()


def test_a_trained_model_that_cannot_be_saved_is_kept_beside_the_cache(tmp_path, monkeypatch, capsys):
    """The output folder passed the check, then the disk filled up while saving: the model goes to the cache's
    unsaved/ folder, the command says where and exits 1."""
    import errno
    from pwoa_lab.io import checkpoint
    cache, out = tmp_path / "cache", tmp_path / "out" / "pruned.pt"
    monkeypatch.setenv("PWOA_CACHE_DIR", str(cache))
    real_save = checkpoint.save_checkpoint

    def disk_full_at_out(path, *args, **kwargs):
        if Path(path) == out:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_checkpoint", disk_full_at_out)
    rc = main(["prune", "--checkpoint", "digits", "--method", "oneshot", "--rate", "4", "--preset", "smoke",
               "--n", "20", "--out", str(out)])
    captured = capsys.readouterr()
    kept = cache / "unsaved" / "pruned.pt"
    assert rc == 1
    assert f"cannot write {out} (No space left on device); the trained model is saved at {kept}" in captured.err
    model, meta = load_checkpoint(kept)
    assert meta["kind"] == "pruned" and meta["rate"] == 4.0
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sum(int((w == 0).sum()) for w in weights) > 0
    assert (tmp_path / "out" / "pruned.sparse.pt").exists()  # the file that could be written is where asked


def test_ctrl_c_prints_one_line_without_traceback_and_exits_130(monkeypatch, tmp_path, capsys):
    from pwoa_lab.cli import figure1, prune

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(figure1, "run", interrupted)
    monkeypatch.setenv("PWOA_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["figure1", "--preset", "smoke", "--out", str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"pwoa-lab figure1: interrupted; 0 run(s) finished by this command are kept in the cache "
                          f"({tmp_path / 'cache'}), with the last finished epoch of an unfinished one; run the same "
                          "command again to resume")
    monkeypatch.setattr(prune, "run", interrupted)
    out = tmp_path / "p.pt"
    (tmp_path / "p.pt.state").write_bytes(b"a resume point")
    assert main(["prune", "--checkpoint", "digits", "--rate", "4", "--out", str(out)]) == 130
    assert capsys.readouterr().err.strip() == (f"pwoa-lab prune: interrupted; the last finished epoch is kept in "
                                               f"{out}.state; run the same command again to resume from it")


@pytest.mark.parametrize("rate", ["1000", "1e9", "31"])
def test_a_rate_that_leaves_too_few_weights_is_refused_before_training(tmp_path, capsys, rate):
    out = tmp_path / "p.pt"
    rc = main(["prune", "--checkpoint", "digits", "--method", "naive", "--rate", rate, "--preset", "smoke",
               "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    assert "of the 288 weights of conv1.weight (scope all)" in captured.err
    assert "fewer than 10 weights in a pruned layer" in captured.err
    assert "The largest rate here is 30.3: use a rate of at most 30.3" in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_largest_rate_depends_on_the_scope_and_is_itself_accepted(teacher):
    from pwoa_lab.pruning.masks import check_rate_fits, keep_count, largest_rate
    assert largest_rate(teacher, "all") == (30.3, "conv1.weight", 288)
    assert largest_rate(teacher, "hidden") == (1940.2, "conv2.weight", 18432)  # conv1 and fc2 stay dense
    assert check_rate_fits(teacher, 30.3, "all") == 30.3 and keep_count(288, 30.3) == 10
    assert check_rate_fits(teacher, 1000, "hidden") == 1000
    with pytest.raises(ValueError, match="would leave 9 of the 288"):
        check_rate_fits(teacher, 30.4, "all")


def test_figure1_without_the_data_fails_once_before_any_run(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "no_data"
    empty.mkdir()
    cache = tmp_path / "cache"
    monkeypatch.setenv("PWOA_CACHE_DIR", str(cache))
    monkeypatch.delenv("PWOA_DOWNLOAD", raising=False)  # the default: no download
    rc = main(["figure1", "--dataset", "mnist", "--preset", "smoke", "--rates", "4", "--methods", "naive,pwoa",
               "--workers", "2", "--root", str(empty), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("files not found") == 1 and "Traceback" not in err
    assert "--root FOLDER" in err and "PWOA_DATA_ROOT" in err and str(empty / "MNIST" / "raw") in err
    assert list(empty.iterdir()) == []  # no download attempt, no empty MNIST/raw
    assert not (cache / "prune_row").exists()


def test_evaluate_an_empty_checkpoint_gives_the_kits_words(tmp_path, capsys):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert main(["evaluate", "--checkpoint", str(empty), "--n", "5"]) == 2
    err = capsys.readouterr().err
    assert f"{empty} could not be read as a checkpoint (the file is empty: 0 bytes)" in err
    assert "weights_only" not in err


def test_every_command_has_an_example_and_every_option_a_help_text():
    import argparse

    from pwoa_lab.cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert len(sub.choices) >= 9
    for name, parser in sub.choices.items():
        assert f"\n  pwoa-lab {name}" in parser.description, name  # an example command line
        bare = [a.dest for a in parser._actions if not a.help]
        assert bare == [], f"{name}: options without help: {bare}"


def test_config_options_default_to_the_config_and_say_its_default(capsys):
    from pwoa_lab.cli import build_parser
    from pwoa_lab.training.methods import PruneConfig, TeacherConfig
    parser = build_parser()
    args = parser.parse_args(["train-teacher", "--dataset", "digits", "--out", "t.pt"])
    assert args.epochs is None and args.adv_steps is None and args.lr is None  # the config decides
    args = parser.parse_args(["prune", "--checkpoint", "digits", "--rate", "4", "--out", "p.pt"])
    assert args.method is None and args.scope is None and args.structure is None
    with pytest.raises(SystemExit):
        parser.parse_args(["train-teacher", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"training epochs (default: {TeacherConfig.epochs})" in text
    assert f"PGD steps of the training attack (default: {TeacherConfig.adv_steps})" in text
    with pytest.raises(SystemExit):
        parser.parse_args(["prune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {PruneConfig.method})" in text and f"(default: {PruneConfig.schedule})" in text


def test_bad_numbers_and_datasets_without_schedules_are_answered_in_the_kits_words(tmp_path, capsys):
    from pwoa_lab.cli import main
    assert main(["figure1", "--rates", "4,x", "--out", str(tmp_path / "a")]) == 2
    assert "--rates takes numbers separated by commas, e.g. 2,4,8; got '4,x'" in capsys.readouterr().err
    assert main(["figure1", "--dataset", "cifar100", "--preset", "smoke", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "the smoke preset has no schedules for the dataset 'cifar100'" in err and "the preset paper" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
