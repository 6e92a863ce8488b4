"""The package's layers hold: no import runs up them or in a circle, every `pwoa_lab.<name>` written anywhere
resolves, and docs/modules.md says what the code is."""
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


def test_no_import_circles():
    assert modules_md.import_circles() == []


def test_an_import_circle_is_caught():
    # the check itself can fail: two core modules that import each other (one inside a function) are reported
    a, b = modules_md.PACKAGE / "core" / "_circle_probe_a.py", modules_md.PACKAGE / "core" / "_circle_probe_b.py"
    a.write_text('"""Probe."""\nfrom pwoa_lab.core import _circle_probe_b\n')
    b.write_text('"""Probe."""\n\n\ndef f():\n    import pwoa_lab.core._circle_probe_a\n')
    try:
        circles = modules_md.import_circles()
    finally:
        a.unlink(missing_ok=True)
        b.unlink(missing_ok=True)
    probe = "pwoa_lab.core._circle_probe_a -> pwoa_lab.core._circle_probe_b -> pwoa_lab.core._circle_probe_a"
    assert [c for c in circles if "_circle_probe" in c] == [probe]


def test_every_dotted_name_resolves():
    assert modules_md.stale_dotted_names() == []


def test_every_module_has_a_docstring():
    missing = [str(p) for p in modules_md.modules() if not modules_md.first_line(p)]
    assert missing == []


def test_docs_modules_md_is_up_to_date():
    assert modules_md.DOC.read_text() == modules_md.render(), "docs/modules.md is stale: python scripts/modules_md.py"


def test_no_module_is_over_400_lines():
    long = [f"{p.relative_to(modules_md.PACKAGE.parent)}: {n}" for p in modules_md.modules()
            if (n := len(p.read_text().splitlines())) > 400]
    assert long == [], "split these by subject (one idea a file)"
