"""A class pack: the runs of one cache exported as a file and imported into another, read there without training."""
import io
import json
import tarfile

import pytest

from pwoa_lab.cli import main
from pwoa_lab.core.evaluation import EvalSettings
from pwoa_lab.experiments.figures import figure1
from pwoa_lab.io import pack as packs

SETTINGS = EvalSettings(n=60, aa_n=0)


def _figure(teacher, cache):
    return figure1("digits", rates=(4,), methods=("oneshot", "naive"), preset="smoke", seeds=(0,), teacher=teacher,
                   settings=SETTINGS, cache_dir=cache, progress=False)


def test_a_pack_round_trip_serves_the_same_figure_without_training(teacher, tmp_path, capsys):
    first = _figure(teacher, tmp_path / "instructor")
    assert not first.cached.any()
    assert main(["cache", "export", "--out", str(tmp_path / "class.pack"), "--cache-dir",
                 str(tmp_path / "instructor")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["cache", "import", str(tmp_path / "class.pack"), "--cache-dir", str(tmp_path / "student")]) == 0
    assert "3 run(s) added" in capsys.readouterr().out
    again = _figure(teacher, tmp_path / "student")
    assert again.cached.all()                                       # nothing trained or evaluated again
    assert again.drop(columns=["cached"]).equals(first.drop(columns=["cached"]))
    # a second import keeps what is there
    info = packs.import_pack(tmp_path / "class.pack", tmp_path / "student")
    assert (info.added, info.kept) == (0, 3)


def test_a_pack_of_another_kit_version_is_refused_with_both_versions(teacher, tmp_path, monkeypatch):
    _figure(teacher, tmp_path / "old")
    monkeypatch.setattr(packs, "code_fingerprint", lambda: "0123456789abcdef")  # as if made by other code
    packs.export_pack(tmp_path / "old.pack", tmp_path / "old")
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"made by pwoa-lab .* \(code 0123456789ab.*this kit is pwoa-lab"):
        packs.import_pack(tmp_path / "old.pack", tmp_path / "new")
    assert not (tmp_path / "new" / "prune_row").exists()            # nothing written


def test_a_pack_that_holds_other_paths_is_refused(tmp_path):
    bad = tmp_path / "bad.pack"
    with tarfile.open(bad, "w:gz") as tar:
        for name, data in (("manifest.json", json.dumps({"format": packs.FORMAT, "kit_version": packs.__version__,
                                                         "code": packs.code_fingerprint()}).encode()),
                           ("prune_row/../../evil.txt", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="which no class pack holds"):
        packs.import_pack(bad, tmp_path / "cache")
    assert not (tmp_path / "evil.txt").exists()
    with pytest.raises(ValueError, match="not a pwoa-lab class pack"):
        (tmp_path / "junk.pack").write_bytes(b"junk")
        packs.import_pack(tmp_path / "junk.pack", tmp_path / "cache")


def test_export_refuses_an_empty_cache_and_an_existing_file(tmp_path):
    with pytest.raises(ValueError, match="no stored runs"):
        packs.export_pack(tmp_path / "a.pack", tmp_path / "empty")
    (tmp_path / "b.pack").write_text("mine")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        packs.export_pack(tmp_path / "b.pack", tmp_path / "empty")
    assert (tmp_path / "b.pack").read_text() == "mine"
