"""The `pwoa-lab` command line: train teachers, evaluate checkpoints, prune, make the figures.

    pwoa-lab train-teacher --dataset mnist --model lenet3 --epochs 6 --out teacher.pt
    pwoa-lab evaluate --checkpoint teacher.pt --dataset mnist --attacks natural,fgsm,pgd,cw,aa --n 1000
    pwoa-lab prune --checkpoint teacher.pt --method pwoa --rate 4 --preset quick --out pruned.pt
    pwoa-lab prune --checkpoint digits --method hydra --rate 4 --out hydra.pt   # run again to resume
    pwoa-lab prune --checkpoint digits --method pwoa --rate 4 --structure structured --schedule iterative --out s.pt
    pwoa-lab figure1 --dataset digits --preset quick --out results/fig1
    pwoa-lab figure3 --dataset digits --preset quick --out results/fig3
    pwoa-lab explorer --host 0.0.0.0 --port 8866     # the classroom explorer for a room (Voila)
    pwoa-lab cache export --out class.pack           # the computed runs, for students: pwoa-lab cache import
"""
from __future__ import annotations

import argparse
import sys

from pwoa_lab.cli import (cache, evaluate, explorer, figure1, figure3, frontier, import_teacher, prune, sweep,
                          train_teacher)

# one module per subcommand, in the order of `pwoa-lab --help`: each has add_parser(sub) and run(args) -> int
COMMANDS = (train_teacher, evaluate, import_teacher, prune, figure1, frontier, sweep, figure3, explorer, cache)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pwoa-lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


CACHED = ("figure1", "figure3", "frontier", "sweep")  # the commands whose runs go into the run store as they finish


def interrupted_words(args: argparse.Namespace, stored_before: int = 0) -> str:
    """What an interrupted command kept, and how to go on: one line. `stored_before`: the runs this process had
    stored before the command started (`cache.stored_count`)."""
    if args.command in CACHED and getattr(args, "no_cache", False):
        return "nothing was kept (--no-cache); run the same command again to start over"
    if args.command in CACHED:
        from pwoa_lab.io.cache import cache_root, stored_count
        kept = stored_count("prune_row", "capacity_row") - stored_before
        return (f"{kept} run(s) finished by this command are kept in the cache ({cache_root()}), with the last "
                "finished epoch of an unfinished one; run the same command again to resume (runs from earlier "
                "commands are read back, not computed again)")
    if args.command == "prune":
        from pwoa_lab.experiments.prune import prune_paths
        state = prune_paths(args.out).state
        return (f"the last finished epoch is kept in {state}; run the same command again to resume from it"
                if state.exists() else "no epoch had finished, nothing was kept; run the same command again")
    return "nothing was written (this command has no resume point); run the same command again to start over"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from pwoa_lab.io.cache import stored_count
    stored_before = stored_count("prune_row", "capacity_row")  # what this command stores is counted from here
    try:
        return args.func(args)
    except KeyboardInterrupt:  # Ctrl-C: one line, no traceback; 130 = 128 + SIGINT, as shells report it
        print(f"\npwoa-lab {args.command}: interrupted; {interrupted_words(args, stored_before)}", file=sys.stderr)
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError, OSError, RuntimeError, ImportError) as err:
        print(f"pwoa-lab {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 130
