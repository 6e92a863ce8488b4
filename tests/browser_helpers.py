"""Helpers for the real-browser tests (tests/test_browser.py): an isolated JupyterLab server, an isolated Voila
server (the classroom explorer) and a headless Debian Chromium driven by Playwright.

Facts these rely on (checked on a CI-like machine): Playwright must launch the system Chromium through
`executable_path` (its own browser download fails here); the networking flags below stop Chromium from
retrying closed hosts; JupyterLab's status bar "| Idle" is the trustworthy "kernel connected" signal; the
"Jupyter news?" toast (announcements plugin) covers part of the page unless disabled.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "browser"


def missing_browser_tools() -> str | None:
    """Why the browser test cannot run here, or None when it can."""
    if not CHROMIUM.is_file():
        return (f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`; .ci/run does "
                f"this as root). Never `playwright install` (browser downloads fail here)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "python package playwright is missing: `.venv/bin/python -m pip install playwright` (extra [browser])"
    try:
        import jupyterlab  # noqa: F401
        import ipywidgets  # noqa: F401
    except ImportError as e:
        return f"{e.name} is missing (`make install`)"
    return None


def missing_voila() -> str | None:
    """Why the explorer's browser test cannot run here (voila missing), or None when it can."""
    try:
        import voila  # noqa: F401
    except ImportError:
        return ("python package voila is missing: `make explorer` or `.venv/bin/python -m pip install -e "
                "'.[explorer]'` installs it (.ci/run does)")
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    url: str            # http://127.0.0.1:PORT
    token: str
    root: Path          # the server's root_dir
    log: Path           # server stdout + stderr
    proc: subprocess.Popen

    def page_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?token={self.token}&reset"


def _isolated_env(base: Path, cache_dir: Path) -> dict[str, str]:
    """Environment for the server and its kernels: Jupyter config / runtime / data / lab settings and
    workspaces under `base` (a user's own config never leaks in), smoke mode, a fresh result cache, and
    the inline matplotlib backend (CI exports MPLBACKEND=Agg, under which the widget would show no image)."""
    env = dict(os.environ)
    dirs = {"JUPYTER_CONFIG_DIR": base / "config", "JUPYTER_RUNTIME_DIR": base / "runtime",
            "JUPYTER_DATA_DIR": base / "data", "JUPYTERLAB_SETTINGS_DIR": base / "lab-settings",
            "JUPYTERLAB_WORKSPACES_DIR": base / "lab-workspaces", "IPYTHONDIR": base / "ipython"}
    for key, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        env[key] = str(path)
    env.pop("JUPYTER_PATH", None)
    env.pop("JUPYTER_PREFER_ENV_PATH", None)
    env["PWOA_SMOKE"] = "1"
    env["PWOA_CACHE_DIR"] = str(cache_dir)
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env["PYTHONUNBUFFERED"] = "1"
    # The `.venv` first on PATH, so the kernel (ipykernel's native spec = this interpreter) finds its tools.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"

    labconfig = dirs["JUPYTER_CONFIG_DIR"] / "labconfig"
    labconfig.mkdir(exist_ok=True)
    (labconfig / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    # Render every cell (no windowing), so the widget's DOM exists wherever it sits in the notebook.
    tracker = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True, exist_ok=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    return env


def _status_ok(url: str, token: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5) as r:
            return r.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


@contextlib.contextmanager
def jupyter_lab(root: Path, base: Path, cache_dir: Path, start_timeout: float = 180.0) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1:FREE with a random token, serving `root`; stopped with SIGTERM on exit."""
    token = os.urandom(16).hex()
    env = _isolated_env(base, cache_dir)
    log = base / "jupyterlab.log"
    last_error = None
    for _attempt in range(3):  # a free port can be taken between free_port() and the bind: retry
        port = free_port()
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
               f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root,
                                    start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline and proc.poll() is None and not _status_ok(url, token):
            time.sleep(0.5)
        if proc.poll() is None and _status_ok(url, token):
            break
        last_error = (f"JupyterLab did not answer {url}/api/status within {start_timeout:.0f} s "
                      f"(exit code {proc.poll()}); log {log}:\n{tail(log)}")
        stop(proc)
    else:
        raise RuntimeError(last_error)
    try:
        yield Lab(url=url, token=token, root=root, log=log, proc=proc)
    finally:
        stop(proc)


@dataclass
class VoilaServer:
    url: str            # http://127.0.0.1:PORT/ : the page of the served notebook
    log: Path           # server stdout + stderr
    proc: subprocess.Popen

    def kernel_status(self, kernel_id: str) -> int:
        """HTTP status of the server's /api/kernels/ID: 200 while the kernel lives, 404 once it is shut down."""
        try:
            with urllib.request.urlopen(f"{self.url}api/kernels/{kernel_id}", timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as err:
            return err.code


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def voila_server(notebook: Path, base: Path, cache_dir: Path, start_timeout: float = 180.0,
                 data_root: Path | None = None, **serve) -> Iterator[VoilaServer]:
    """The explorer served as `make explorer` serves it (`course.serving.serve_command`, with `serve`: e.g.
    cull_idle_s, max_runs, shared), on 127.0.0.1:FREE without a browser (smoke mode, the result cache
    `cache_dir`, Jupyter config under `base`); stopped with SIGTERM on exit. Voila runs the notebook when the page
    is requested, so being ready means the port answers (asking for the page here would run it once more)."""
    from pwoa_lab.course.serving import serve_command
    env = _isolated_env(base, cache_dir)
    if data_root is not None:  # e.g. an empty folder: a machine without the MNIST and CIFAR-10 files
        env["PWOA_DATA_ROOT"] = str(data_root)
    log = base / "voila.log"
    last_error = None
    for _attempt in range(3):  # a free port can be taken between free_port() and the bind: retry
        port = free_port()
        cmd, room = serve_command("127.0.0.1", port, notebook=notebook, voila_args=[
            "--no-browser", "--Voila.port_retries=0", "--VoilaExecutor.startup_timeout=300",
            "--show_tracebacks=True"], **serve)
        env.update(room)
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=notebook.parent,
                                    start_new_session=True)
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline and proc.poll() is None and not _port_open(port):
            time.sleep(0.5)
        if proc.poll() is None and _port_open(port):
            break
        last_error = (f"Voila did not open port {port} within {start_timeout:.0f} s (exit code {proc.poll()}); "
                      f"log {log}:\n{tail(log)}")
        stop(proc)
    else:
        raise RuntimeError(last_error)
    try:
        yield VoilaServer(url=f"http://127.0.0.1:{port}/", log=log, proc=proc)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM (the server shuts its kernels down), then SIGKILL of its process group if it hangs."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def prepare_notebook(src: Path, dest_dir: Path) -> Path:
    """Copy the notebook under test into the server root with its kernelspec set to `python3` (ipykernel's
    native spec: the interpreter running the server), so JupyterLab never asks which kernel to use."""
    nb = json.loads(src.read_text())
    nb.setdefault("metadata", {})["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                                   "language": "python"}
    dest = dest_dir / src.name
    dest.write_text(json.dumps(nb, indent=1))
    return dest


def save_failure_artifacts(page, lab: Lab | VoilaServer | None, name: str) -> list[Path]:
    """Full-page screenshot, page HTML and the server log under test-artifacts/browser/ (for a failure)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    saved = []
    with contextlib.suppress(Exception):
        p = ARTIFACTS / f"{name}-failure.png"
        page.screenshot(path=str(p), full_page=True, timeout=30_000)
        saved.append(p)
    with contextlib.suppress(Exception):
        p = ARTIFACTS / f"{name}-failure.html"
        p.write_text(page.content())
        saved.append(p)
    if lab is not None:
        with contextlib.suppress(Exception):
            p = ARTIFACTS / f"{name}-{'voila' if isinstance(lab, VoilaServer) else 'jupyterlab'}.log"
            shutil.copyfile(lab.log, p)
            saved.append(p)
    return saved
