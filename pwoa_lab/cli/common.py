"""What several commands share: their options (--root, --device, --seed, --workers, --backend, the design space),
the checks of --out, the result files (CSV, PNG), the interval tables and the smoke note.

Light to import (`pwoa-lab --help` builds every parser): anything heavy is imported inside the functions that
need it. An option that sets a run-config field (`config_option`) has default None, "the config's default",
and its help shows that default as the config class says it.
"""
from __future__ import annotations

import argparse
import dataclasses
import textwrap
from pathlib import Path
from typing import Any

from pwoa_lab import defaults

DEFAULT_SEED = defaults.SEED  # every command: the paper's seed

SCOPE_HELP = ("which weights are pruned: all (every conv and linear weight), hidden (all but the first layer and the "
              "classifier), convs, or reference (the PwoA reference code's rule: every conv and a layer named fc)")

DESIGN_FIELDS = ("structure", "importance", "schedule")  # PruneConfig's design-space fields (pruning.schedules)

# what each value of the design-space options does (pwoa_lab.pruning.schedules); the values come from the code
DESIGN_HELP = {
    "structure": ("what is removed", {
        "weight": "single weights, masked: the model keeps its dense shape",
        "structured": "whole channels with Torch-Pruning: a physically smaller plain model, no masks; rate R keeps "
                      "at most 1/R of the parameters (scope all or hidden)"}),
    "importance": ("how weights / channels are ranked", {
        "magnitude": "|w| (structured: the filter's L2 norm)",
        "gradient": "|w * dL/dw| on 512 natural training images (first-order Taylor; structured: summed over the "
                    "filter)"}),
    "schedule": ("when the sparsity is imposed", {
        "admm": "ADMM pulls the weights to the sparse set, one hard prune, then retraining (the paper)",
        "oneshot": "prune by importance first, then fine-tune with the loss for the same epoch budget (not the "
                   "method oneshot, which does no training)",
        "iterative": "the sparsity grows on a cubic schedule (Zhu & Gupta 2017) over the first epochs, then "
                     "retraining at the final sparsity"}),
}

SMOKE_WHY = ("the smoke preset trains a few batches to test that the kit runs; its numbers and verdicts are no "
             "results (use --preset quick)")


# ----------------------------------------------------------------------------------------------- parsers

def add_command(sub, name: str, help: str, examples: list[str], about: str | None = None) -> argparse.ArgumentParser:
    """The parser of one subcommand: `help` in `pwoa-lab --help`; its own --help says `about` (default: `help`)
    and the example command lines."""
    text = textwrap.fill(about or help[0].upper() + help[1:] + ".", 100, break_on_hyphens=False)
    words = "examples" if len(examples) > 1 else "example"
    return sub.add_parser(name, help=help, description=f"{text}\n\n{words}:\n" + "\n".join(f"  {e}" for e in examples),
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def config_default(config: type, name: str) -> Any:
    """The default of field `name` of a run-config dataclass (pwoa_lab.training.methods), read from the class."""
    for f in dataclasses.fields(config):
        if f.name == name:
            return f.default
    raise KeyError(f"{config.__name__} has no field {name!r}")


def config_option(p: argparse.ArgumentParser, flag: str, config: type, name: str, help: str, **kwargs) -> None:
    """`flag` sets field `name` of `config`: default None (the config's default, which the help shows; a field
    whose default is None says in `help` what None means). The value lands in `args.<name>`."""
    default = config_default(config, name)
    kwargs.setdefault("metavar", flag.lstrip("-").replace("-", "_").upper())
    p.add_argument(flag, dest=name, default=None, help=help if default is None else f"{help} (default: {default})",
                   **kwargs)


def config_values(args: argparse.Namespace, config: type) -> dict[str, Any]:
    """The options of `args` named like fields of `config` that were given (not None)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(config)
            if getattr(args, f.name, None) is not None}


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=None, help="data root (default: $PWOA_DATA_ROOT, else ./data)")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: $PWOA_DEVICE, else the best available)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"the run's seed (default {DEFAULT_SEED})")


def checkpoint_help() -> str:
    from pwoa_lab.io.checkpoint import shipped_teachers
    return f"a .pt file, or {' / '.join(shipped_teachers())} for that dataset's shipped teacher"


def add_figure_options(p: argparse.ArgumentParser) -> None:
    """--dataset, --preset and --checkpoint of a command that runs many prune runs from a teacher."""
    from pwoa_lab.core.datasets import DATASETS
    p.add_argument("--dataset", default=defaults.DATASET,
                   help=f"{', '.join(DATASETS)} (default {defaults.DATASET})")
    add_preset(p)
    p.add_argument("--checkpoint", default=None, help="teacher checkpoint (default: the shipped one)")


def add_control(p: argparse.ArgumentParser) -> None:
    """--control capacity: the dense network of the pruned size beside every rate."""
    p.add_argument("--control", default=None, choices=("capacity",),
                   help="capacity: beside each rate a dense network of the pruned network's size (the same family, "
                        "narrower), adversarially trained with the teacher's own recipe and evaluated like every "
                        "row: is a loss of robustness the method's or the size's? (costs one teacher training "
                        "per rate and seed, on a smaller network)")


def add_preset(p: argparse.ArgumentParser) -> None:
    from pwoa_lab.training.presets import PRESETS
    p.add_argument("--preset", default=defaults.PRESET,
                   help=f"the runs' schedules: {', '.join(PRESETS)} (default {defaults.PRESET})")


def add_scope(p: argparse.ArgumentParser) -> None:
    from pwoa_lab.training.methods import PruneConfig
    config_option(p, "--scope", PruneConfig, "scope", SCOPE_HELP)


def add_design(p: argparse.ArgumentParser) -> None:
    """--structure / --importance / --schedule: the PruneConfig fields of the same names (any loss)."""
    from pwoa_lab.pruning.schedules import IMPORTANCES, SCHEDULES, STRUCTURES
    from pwoa_lab.training.methods import PruneConfig
    for name, values in zip(DESIGN_FIELDS, (STRUCTURES, IMPORTANCES, SCHEDULES)):
        what, words = DESIGN_HELP[name]
        config_option(p, f"--{name}", PruneConfig, name, metavar="{" + ",".join(values) + "}",
                      help=f"{what}: " + "; ".join(f"{v}: {words.get(v, 'see pwoa_lab.pruning.schedules')}"
                                                    for v in values))


def workers_type(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"--workers takes 'auto' or a whole number >= 1, not {text!r}")
    return n


def add_workers(p: argparse.ArgumentParser, what: str = "runs") -> None:
    p.add_argument("--workers", type=workers_type, default="auto",
                   help=f"{what} at once, each in its own process (local backend; default auto: 1 on a GPU, else up "
                        "to 4 CPU cores)")
    p.add_argument("--backend", default="local", choices=("local", "ray"),
                   help="local: worker processes on this machine; ray: one task per run on a Ray cluster "
                        "(pip install -e '.[cluster]')")
    p.add_argument("--address", default=None,
                   help="the Ray cluster to use, e.g. ray://head:10001 or auto (default: RAY_ADDRESS, else a local "
                        "cluster started for this command)")


def add_budgets(p: argparse.ArgumentParser, default: list[str] | None = None) -> None:
    p.add_argument("--budgets", nargs="+", default=default or ["lr=0.1,1/3,1,3", "epochs=1"],
                   help="the fine-tuning budgets, as factors of the preset's learning rates and epochs: "
                        "lr=F1,F2,... epochs=F1,F2,... (default: lr=0.1,1/3,1,3 epochs=1)")
    p.add_argument("--no-extend", action="store_true",
                   help="read the budget grid as given; by default, where a method's best validation point lies on "
                        "the grid's edge, the next factor past it (x3 or /3) runs too, up to lr x0.01-x10 and "
                        "epochs x1/9-x9")


def budget_factor(text: str) -> float:
    """A budget factor on the command line: a number or a fraction like 1/3 (argparse type)."""
    from fractions import Fraction

    from pwoa_lab.utils import check_budget_factor
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"a budget factor is a number or a fraction like 1/3; got {text!r}") from None
    try:
        return check_budget_factor(value, "the factor")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_budget_factors(p: argparse.ArgumentParser) -> None:
    """--lr-factor and --epoch-factor: one fine-tuning budget (one point of a frontier's grid)."""
    p.add_argument("--lr-factor", type=budget_factor, default=None,
                   help="the fine-tuning budget's learning-rate factor: every learning rate of the preset's schedule "
                        "times F, e.g. 1/3 (default 1; the frontier's lr=... factors)")
    p.add_argument("--epoch-factor", type=budget_factor, default=None,
                   help="the budget's epoch factor: every phase's epochs times F, rounded, at least 1 (default 1; "
                        "the frontier's epochs=... factors)")


def budget_overrides(args: argparse.Namespace) -> dict[str, float]:
    return {k: v for k in ("lr_factor", "epoch_factor") if (v := getattr(args, k, None)) is not None}


def add_result_folder(p: argparse.ArgumentParser, no_cache: bool = True) -> None:
    """--out (a folder of result files) and, for commands that read the run cache, --no-cache."""
    if no_cache:
        p.add_argument("--no-cache", action="store_true", help="recompute even if a cached result exists")
    p.add_argument("--out", default="results",
                   help="folder for the result files (default results); files there are kept: a new set takes the "
                        "next free suffix, e.g. NAME-2.csv")


def per_dataset(field: str) -> str:
    """One fact of every dataset's record, for a help text: 'digits 20, mnist 40, ...'."""
    from pwoa_lab.core.datasets import DATASETS
    return ", ".join(f"{name} {getattr(info, field)}" for name, info in DATASETS.items())


# ----------------------------------------------------------------------------------------------- arguments

def resolve_checkpoint(name: str) -> Path:
    """A path, or the name of a dataset with a shipped teacher (`pwoa_lab.io.checkpoint.shipped_teachers`)."""
    from pwoa_lab.io.checkpoint import shipped_teachers
    shipped = shipped_teachers()
    return shipped[name] if name in shipped and not Path(name).exists() else Path(name)


def teacher_of(args: argparse.Namespace) -> Path | None:
    """--checkpoint of a figure command: the teacher's file, None for the dataset's shipped teacher."""
    return resolve_checkpoint(args.checkpoint) if args.checkpoint else None


def resolve_workers(workers: int | str, device: str | None) -> int:
    """'auto': 1 on a GPU (one device to share), else the CPU cores, at most 4 (memory); a number as given."""
    if workers != "auto":
        return int(workers)
    from pwoa_lab.experiments.jobs import auto_workers
    return auto_workers(device)


def numbers(text: str, option: str, example: str = "2,4,8") -> list[float]:
    """A comma list of numbers from an option (--rates 2,4,8), or an error in the kit's words."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values:
        raise ValueError(f"{option} takes numbers separated by commas, e.g. {example}; got {text!r}")
    return values


def seeds(args: argparse.Namespace) -> list[int]:
    """--seeds 0,1,2 (each run once per seed), else the one --seed."""
    if not args.seeds:
        return [args.seed]
    try:
        return [int(x) for x in args.seeds.split(",")]
    except ValueError:
        raise ValueError(f"--seeds takes whole numbers separated by commas, e.g. 0,1,2; got {args.seeds!r}") from None


def scope_overrides(args: argparse.Namespace) -> dict:
    """--scope as a run-config override, when given."""
    return {"scope": args.scope} if getattr(args, "scope", None) else {}


def design_overrides(args: argparse.Namespace, methods: list[str]) -> dict:
    """--structure / --importance / --schedule as PruneConfig fields (only those given), checked up front with the
    library's own check, so that a bad value fails before a teacher is loaded or a run starts."""
    from pwoa_lab.pruning.schedules import IMPORTANCES, SCHEDULES, STRUCTURES
    from pwoa_lab.training.methods import PruneConfig
    from pwoa_lab.training.registry import method_names, method_spec
    from pwoa_lab.utils import check_choice
    choices = dict(zip(DESIGN_FIELDS, (STRUCTURES, IMPORTANCES, SCHEDULES)))
    out = {f: check_choice(getattr(args, f), choices[f], f) for f in DESIGN_FIELDS if getattr(args, f, None)}
    if out and any(method_spec(m).config is not PruneConfig for m in methods):
        raise ValueError("--structure, --importance and --schedule apply to the ADMM pipeline "
                         f"({', '.join(method_names(PruneConfig))}), not to hydra (HYDRA learns its own pruning "
                         "scores); leave hydra out or drop these options")
    return out


def design_words(design: dict) -> str:
    """'structure structured, importance magnitude (default), schedule admm (default)': what a run used."""
    from pwoa_lab.training.methods import PruneConfig
    return ", ".join(f"{f} {design[f]}" if f in design else f"{f} {config_default(PruneConfig, f)} (default)"
                     for f in DESIGN_FIELDS)


# ----------------------------------------------------------------------------------------------- outputs

def check_out_file(out: str, overwrite: bool) -> Path:
    """--out of a command that writes one file, checked before any work: not a folder, not an existing file
    (without --overwrite), in a folder that can be written."""
    from pwoa_lab.utils import check_writable_folder
    out = Path(out)
    if out.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder; give a file name, e.g. --out {out / 'model.pt'}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; refusing to overwrite it (pass --overwrite or choose another --out)")
    check_writable_folder(out.parent, given=out)
    return out


def check_out_folder(out: str) -> Path:
    """--out of a command that writes a set of result files, checked before any work."""
    from pwoa_lab.utils import check_writable_folder
    return check_writable_folder(out)


def write_results(out: Path, names: list[str], writers: list) -> list[Path]:
    """Write one command's output set (`names` in `out`, `writers[i](path)` writes file i) under one shared free
    suffix (`name`, else `name-2`, ... for every file of the set: results are never overwritten), each file
    atomically. The runs are already in the cache: an error here says so."""
    from pwoa_lab.utils import write_reserved
    try:
        return write_reserved([out / n for n in names], writers)
    except OSError as err:
        raise OSError(err.errno, f"cannot write the results into {out} ({err.strerror or err}); the runs are in "
                                 "the cache: run the same command with a writable --out, nothing is computed "
                                 "again") from err


def csv_file(df):
    """A writer of `write_results`: the table as CSV."""
    return lambda path: df.to_csv(path, index=False)


def png_file(fig):
    """A writer of `write_results`: the figure as PNG."""
    return lambda path: fig.savefig(path, dpi=120, format="png")


def interval_table(frame, keys: list[str], metrics: list[str], extra: list[str] = ()) -> str:
    """Rows of `frame` as text: `keys`, each metric as 'mean [low, high]' (or '± sd': `intervals.format_cell`),
    then `extra` columns; metrics with no value are left out."""
    import math

    import pandas as pd

    from pwoa_lab.core.intervals import format_cell
    metrics = [m for m in metrics if m in frame.columns and frame[m].notna().any()]
    rows = []
    for r in frame.to_dict("records"):
        row = {k: (f"{r[k]:g}x" if k == "rate" and not isinstance(r[k], str) else r[k]) for k in keys}
        row.update({m: format_cell(r[m], r.get(f"{m}_low", math.nan), r.get(f"{m}_high", math.nan),
                                   r.get(f"{m}_std", math.nan)) for m in metrics})
        row.update({k: r[k] for k in extra})
        rows.append(row)
    return pd.DataFrame(rows).to_string(index=False)


def mean_std_table(summary, metrics) -> str:
    """A seed summary as text: method, rate (and the pruned layers' sparsity), network sparsity, seeds, then each
    metric as one `format_cell`."""
    from pwoa_lab.pruning.masks import rate_words
    shown = summary.assign(**{"rate": [rate_words(r) if r > 1 else f"{r:g}x" for r in summary.rate],
                              "net sparsity": [f"{100 * v:.1f}%" for v in summary.sparsity]})
    return interval_table(shown, ["method", "rate", "net sparsity", "seeds"], metrics)


def print_smoke_note(preset: str) -> None:
    """Print, for the smoke preset, that what follows is a check that the kit runs, not a result."""
    if note := defaults.smoke_note(preset):
        print(f"{note.upper()}: {SMOKE_WHY}")


def verdict_line(preset: str, text: str) -> str:
    """A printed verdict: marked as a smoke check under the smoke preset."""
    note = defaults.smoke_note(preset)
    return f"- [{note}] {text}" if note else f"- {text}"


def printable(frame):
    """A table to print without its columns that hold no value at all (NaN everywhere)."""
    return frame.dropna(axis=1, how="all")
