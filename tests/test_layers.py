"""The package's layers hold: no import runs up them, and docs/modules.md says what the code is."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import modules_md  # noqa: E402


def test_no_import_runs_up_the_layers():
    assert modules_md.upward_imports() == []


def test_an_upward_import_is_caught(tmp_path, monkeypatch):
    # the check itself can fail: a core module that imports the training loop is reported
    fake = modules_md.PACKAGE / "core" / "_layer_probe.py"
    fake.write_text("from pwoa_lab.training.loop import fit\n")
    try:
        bad = modules_md.upward_imports()
    finally:
        fake.unlink()
    assert len(bad) == 1 and "pwoa_lab.core._layer_probe imports pwoa_lab.training.loop" in bad[0]


def test_every_module_has_a_docstring():
    missing = [str(p) for p in modules_md.modules() if not modules_md.first_line(p)]
    assert missing == []


def test_docs_modules_md_is_up_to_date():
    assert modules_md.DOC.read_text() == modules_md.render(), "docs/modules.md is stale: python scripts/modules_md.py"
