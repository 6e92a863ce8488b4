"""`pwoa-lab cache export / import`: a class pack of computed runs (`io.pack`), made once, imported by students."""
from __future__ import annotations

import argparse

from pwoa_lab.cli.common import add_command

EXAMPLES = ["pwoa-lab cache export --out class.pack                  # every run of this machine's cache",
            "pwoa-lab cache export --out digits.pack --dataset digits",
            "pwoa-lab cache import class.pack                        # on each student's machine"]


def add_parser(sub) -> None:
    p = add_command(sub, "cache", "share computed runs: export the cache as a class pack, or import one", EXAMPLES,
                    about="A class pack holds the runs of a cache: the instructor computes the figures once (on a "
                          "GPU or overnight) and exports them; students import the pack, and the notebooks, the "
                          "figures and the explorer read those runs at once instead of training. A pack made by "
                          "another version of the kit is refused (its runs are keyed by the code that made them).")
    p.add_argument("action", choices=("export", "import"), help="export: write a pack; import: read one in")
    p.add_argument("pack", nargs="?", default=None, help="import: the pack file to read")
    p.add_argument("--out", default=None, help="export: the pack file to write (refused if it exists)")
    p.add_argument("--dataset", default=None, help="export: only the runs of this dataset (default: every run)")
    p.add_argument("--overwrite", action="store_true", help="export: replace an existing --out file")
    p.add_argument("--cache-dir", default=None,
                   help="the cache to read or fill (default: $PWOA_CACHE_DIR, else ~/.cache/pwoa-lab)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pwoa_lab.io.pack import export_pack, import_pack
    if args.action == "export":
        if not args.out:
            raise ValueError("cache export needs --out FILE (the pack to write)")
        info = export_pack(args.out, args.cache_dir, args.dataset, args.overwrite)
        runs = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in info.entries.items() if n)
        print(f"wrote {info.path} ({info.size / 1e6:.1f} MB, {runs}) in {info.seconds:.1f} s; give it to the class: "
              f"pwoa-lab cache import {info.path.name}")
        return 0
    if not args.pack:
        raise ValueError("cache import needs the pack file: pwoa-lab cache import FILE")
    info = import_pack(args.pack, args.cache_dir)
    print(f"imported {info.path}: {info.added} run(s) added to the cache, {info.kept} already there and kept "
          f"({info.size / 1e6:.1f} MB in {info.seconds:.1f} s); the figures and notebooks now read them at once")
    return 0
