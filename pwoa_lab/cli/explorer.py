"""`pwoa-lab explorer`: serve the classroom explorer (notebooks/explorer.ipynb) with Voila (`course.serving`)."""
from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

from pwoa_lab.cli.common import add_command

EXAMPLES = ["pwoa-lab explorer                                # this machine only, at http://127.0.0.1:8866/",
            "pwoa-lab explorer --host 0.0.0.0 --port 8866     # the classroom explorer for a room",
            "pwoa-lab explorer --host 0.0.0.0 --max-runs 4 -- --debug"]


def add_parser(sub) -> None:
    from pwoa_lab.course import serving
    p = add_command(sub, "explorer", "serve the classroom explorer (notebooks/explorer.ipynb) with Voila", EXAMPLES,
                    about="Serve the classroom explorer with Voila. Served to others (a --host that is not "
                          "loopback), auto-compute is off and one request may start at most --max-runs runs. "
                          "Kernels whose page is gone are shut down after --cull-idle seconds. Arguments after -- "
                          "go to Voila.")
    p.add_argument("--host", default="127.0.0.1", help="127.0.0.1: this machine only (default); 0.0.0.0: every "
                                                      "network interface (a room)")
    p.add_argument("--port", type=int, default=8866, help="the port to serve on (default 8866)")
    p.add_argument("--cull-idle", type=int, default=serving.CULL_IDLE_S,
                   help=f"seconds a kernel with no page and no work is kept (default {serving.CULL_IDLE_S})")
    p.add_argument("--cull-interval", type=int, default=serving.CULL_INTERVAL_S,
                   help=f"seconds between checks for such kernels (default {serving.CULL_INTERVAL_S})")
    p.add_argument("--max-runs", type=int, default=None,
                   help=f"the most runs one request may start; 0: no cap (default: {serving.ROOM_MAX_RUNS} when "
                        "served to others, else no cap)")
    p.add_argument("--shared", action="store_true",
                   help="served to others although --host is loopback (behind a proxy on this machine)")
    p.add_argument("--notebook", default=str(serving.NOTEBOOK),
                   help="the explorer notebook to serve (default: notebooks/explorer.ipynb of this checkout)")
    p.add_argument("voila_args", nargs="*", help="after --: more Voila options")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pwoa_lab.course.serving import serve_command, served_to_others
    notebook = Path(args.notebook)
    if not notebook.is_file():
        raise FileNotFoundError(f"{notebook} is missing: pass --notebook notebooks/explorer.ipynb of a checkout")
    cmd, env = serve_command(args.host, args.port, args.cull_idle, args.cull_interval, args.max_runs, notebook,
                             args.voila_args, shared=args.shared or None)
    where = "to others on this network" if served_to_others(args.host) else "on this machine"
    name = socket.gethostname() if args.host in ("0.0.0.0", "::") else args.host  # what students type
    print(f"pwoa-lab explorer: serving {notebook} {where} at http://{name}:{args.port}/ (auto-compute "
          f"{'off' if env['PWOA_EXPLORER_SHARED'] == '1' else 'on'}, at most {env['PWOA_EXPLORER_MAX_RUNS']} runs "
          f"a request (0: no cap), idle kernels culled after {args.cull_idle} s)", flush=True)
    os.execvpe(cmd[0], cmd, {**os.environ, **env})  # Voila takes over this process (Ctrl-C stops it)
    return 0
