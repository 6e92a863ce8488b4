"""Serving the classroom explorer to a room: the Voila command of `make explorer` / `pwoa-lab explorer`.

- `serve_command(host, port, ...)`: the Voila command line and the environment its kernels get. Idle kernels are
  culled (Voila's `MappingKernelManager.cull_*` settings). Served to others (a host that is not loopback, or
  `shared=True`), the explorer computes only when its button is pressed and one request may start at most
  `max_runs` runs.
- `room_settings()`: what the explorer app reads back: (shared, max_runs) from PWOA_EXPLORER_SHARED and
  PWOA_EXPLORER_MAX_RUNS.

Light on purpose (no torch, no matplotlib): the CLI imports it to build its help.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "explorer.ipynb"  # in a checkout
CULL_IDLE_S = 600       # a kernel with no page connected and nothing to do for 10 min is shut down (about 0.9 GB)
CULL_INTERVAL_S = 60    # how often Voila looks for such kernels
ROOM_MAX_RUNS = 6       # served to others: the most runs one request may start (quick preset: minutes each)


def served_to_others(host: str) -> bool:
    """Whether Voila listening on `host` is reachable from other machines (anything but loopback)."""
    return host not in LOCAL_HOSTS


def room_settings() -> tuple[bool, int | None]:
    """(shared, max_runs) as `serve_command` passes them to the kernels: PWOA_EXPLORER_SHARED=1 (served to
    others) and PWOA_EXPLORER_MAX_RUNS (unset or 0: no cap)."""
    shared = os.environ.get("PWOA_EXPLORER_SHARED", "").strip().lower() in ("1", "true", "yes")
    raw = os.environ.get("PWOA_EXPLORER_MAX_RUNS", "").strip()
    try:
        max_runs = int(raw) if raw else 0
    except ValueError:
        raise ValueError(f"PWOA_EXPLORER_MAX_RUNS={raw!r} is not a whole number of runs") from None
    if max_runs < 0:
        raise ValueError(f"PWOA_EXPLORER_MAX_RUNS={raw!r}: give 0 (no cap) or more")
    return shared, max_runs or None


def serve_command(host: str = "127.0.0.1", port: int = 8866, cull_idle_s: int = CULL_IDLE_S,
                  cull_interval_s: int = CULL_INTERVAL_S, max_runs: int | None = None,
                  notebook: str | Path = NOTEBOOK, voila_args: Sequence[str] = (), shared: bool | None = None
                  ) -> tuple[list[str], dict[str, str]]:
    """The Voila command that serves the explorer, and the environment variables its kernels read.

    Kernels of closed pages are culled: Voila's own shutdown on closing a tab does not always arrive (a page
    still loading, a laptop put to sleep, a lost network), and every kernel holds about 0.9 GB. Served to others
    (`shared`; None: `host` is not loopback; say True behind a proxy on this machine), auto-compute is off and
    one request may start at most `max_runs` runs (None: ROOM_MAX_RUNS there, no cap on this machine alone;
    0: no cap)."""
    if cull_idle_s <= 0 or cull_interval_s <= 0:
        raise ValueError(f"cull_idle_s and cull_interval_s must be positive, got {cull_idle_s}, {cull_interval_s}")
    shared = served_to_others(host) if shared is None else shared
    max_runs = (ROOM_MAX_RUNS if shared else 0) if max_runs is None else max_runs
    if max_runs < 0:
        raise ValueError(f"max_runs must be 0 (no cap) or more, got {max_runs}")
    cmd = [sys.executable, "-m", "voila", str(notebook), f"--Voila.ip={host}", f"--port={port}",
           f"--MappingKernelManager.cull_idle_timeout={cull_idle_s}",
           f"--MappingKernelManager.cull_interval={cull_interval_s}",
           # a kernel with its page still open is kept (a student reading), however long it idles
           "--MappingKernelManager.cull_connected=False"]
    if served_to_others(host):
        cmd.append("--no-browser")  # a server for others: no browser on the server itself
    env = {"PWOA_EXPLORER_SHARED": "1" if shared else "0", "PWOA_EXPLORER_MAX_RUNS": str(max_runs)}
    return cmd + list(voila_args), env
