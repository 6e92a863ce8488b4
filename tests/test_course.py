"""course.setup: the one set-up call of every course notebook."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pwoa_lab.io import cache, checkpoint
from pwoa_lab import course  # noqa: E402
from pwoa_lab.course import notebook_setup  # noqa: E402


def test_smoke_env_gives_the_smoke_preset_one_seed_and_no_progress(monkeypatch, tmp_path):
    monkeypatch.setenv("PWOA_SMOKE", "1")
    monkeypatch.setenv("PWOA_CACHE_DIR", str(tmp_path))
    c = course.setup("digits", quiet=True)
    assert (c.SMOKE, c.PRESET, c.SEEDS, c.PROGRESS) == (True, "smoke", (0,), False)


def test_full_mode_gives_the_quick_preset_and_three_seeds(monkeypatch, tmp_path):
    monkeypatch.delenv("PWOA_SMOKE", raising=False)
    monkeypatch.setenv("PWOA_CACHE_DIR", str(tmp_path))
    c = course.setup("digits", quiet=True)
    assert (c.SMOKE, c.PRESET, c.SEEDS, c.PROGRESS) == (False, "quick", (0, 1, 2), True)
    monkeypatch.setenv("PWOA_SMOKE", "0")
    assert course.setup("digits", quiet=True).PRESET == "quick"


def test_cache_dir_is_honoured(monkeypatch, tmp_path):
    monkeypatch.setenv("PWOA_CACHE_DIR", str(tmp_path / "env"))
    assert course.setup("digits", quiet=True).cache_dir == tmp_path / "env"
    # an explicit folder wins over the environment; and the kit's cache uses the same folder
    c = course.setup("digits", cache_dir=tmp_path / "arg", quiet=True)
    assert c.cache_dir == tmp_path / "arg" == cache.cache_root(c.cache_dir)
    monkeypatch.delenv("PWOA_CACHE_DIR")
    assert course.setup("digits", quiet=True).cache_dir == Path.home() / ".cache" / "pwoa-lab"


def test_the_teacher_is_the_shipped_one_for_the_dataset(monkeypatch, tmp_path):
    monkeypatch.setenv("PWOA_CACHE_DIR", str(tmp_path))
    c = course.setup("digits", quiet=True)
    shipped, meta = checkpoint.load_teacher("digits")
    assert c.meta["dataset"] == "digits" and c.EPS == meta["eps"] == 0.2
    assert not c.teacher.training
    for a, b in zip(c.teacher.state_dict().values(), shipped.state_dict().values()):
        assert torch.equal(a, b)
    x = torch.rand(2, 1, 16, 16)
    assert c.teacher(x).shape == (2, 10)


def test_a_bad_dataset_or_preset_gives_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'digts'.*digits"):
        course.setup("digts", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="no robust teacher ships for 'cifar100'.*teacher="):
        course.setup("cifar100", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown preset 'fast'"):
        course.setup("digits", preset="fast", cache_dir=tmp_path)


def test_show_closes_the_figure(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    course.setup("digits", cache_dir=tmp_path, quiet=True).show(fig)
    assert not plt.fignum_exists(fig.number)


def test_summary_line_is_printed(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PWOA_SMOKE", "1")
    course.setup("digits", cache_dir=tmp_path)
    out = capsys.readouterr().out
    assert "digits" in out and "'smoke'" in out and str(tmp_path) in out


class _StallingChannel:
    """A kernel channel with the stall of jupyter/nbclient#312: a message becomes available `ready_after` seconds
    from now, but a wait that started before then does not wake up for it and ends empty at its own timeout; a
    wait that starts after it returns the message at once."""

    def __init__(self, ready_after: float):
        import time
        self.ready_at = time.monotonic() + ready_after
        self.timeouts: list[float | None] = []

    async def get_msg(self, timeout=None):
        import asyncio
        import time
        from queue import Empty
        self.timeouts.append(timeout)
        if time.monotonic() >= self.ready_at:
            return {"msg": "reply"}
        await asyncio.sleep(timeout)
        raise Empty


def test_kernel_replies_are_awaited_in_short_slices(monkeypatch):
    import asyncio
    import time
    from queue import Empty
    monkeypatch.setattr(notebook_setup, "REPLY_POLL_S", 0.05)
    channel = _StallingChannel(ready_after=0.12)
    notebook_setup._poll_in_slices(channel)
    start = time.monotonic()
    assert asyncio.run(channel.get_msg(timeout=30)) == {"msg": "reply"}
    assert time.monotonic() - start < 5  # the stalled single wait would have lasted the whole 30 s
    assert len(channel.timeouts) >= 3 and max(channel.timeouts) <= 0.05
    # no message at all: Empty at the caller's deadline, not before
    never = _StallingChannel(ready_after=1e9)
    notebook_setup._poll_in_slices(never)
    start = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(never.get_msg(timeout=0.2))
    assert 0.2 <= time.monotonic() - start < 2
    # no deadline (the output poll): waits slice after slice until the message is there
    later = _StallingChannel(ready_after=0.12)
    notebook_setup._poll_in_slices(later)
    assert asyncio.run(later.get_msg()) == {"msg": "reply"}
