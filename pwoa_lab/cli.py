"""The `pwoa-lab` command line: train teachers, evaluate checkpoints, prune, make the figures.

    pwoa-lab train-teacher --dataset mnist --model lenet3 --epochs 6 --out teacher.pt
    pwoa-lab evaluate --checkpoint teacher.pt --dataset mnist --attacks natural,fgsm,pgd,cw,aa --n 1000
    pwoa-lab prune --checkpoint teacher.pt --method pwoa --rate 4 --preset quick --out pruned.pt
    pwoa-lab prune --checkpoint digits --method hydra --rate 4 --out hydra.pt   # run again to resume
    pwoa-lab prune --checkpoint digits --method pwoa --rate 4 --structure structured --schedule iterative --out s.pt
    pwoa-lab figure1 --dataset digits --preset quick --out results/fig1
    pwoa-lab figure3 --dataset digits --preset quick --out results/fig3
    pwoa-lab explorer --host 0.0.0.0 --port 8866     # the classroom explorer for a room (Voila)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import sys
from pathlib import Path

from pwoa_lab import defaults

DEFAULT_SEED = defaults.SEED  # every command: the paper's seed


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=None, help="data root (default: $PWOA_DATA_ROOT, else ./data)")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: $PWOA_DEVICE, else the best available)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"the run's seed (default {DEFAULT_SEED})")


def _resolve_checkpoint(name: str) -> Path:
    """A path, or the name of a shipped teacher (digits, mnist, cifar10)."""
    from pwoa_lab.io.checkpoint import SHIPPED_TEACHERS
    return SHIPPED_TEACHERS[name] if name in SHIPPED_TEACHERS and not Path(name).exists() else Path(name)


def cmd_train_teacher(args: argparse.Namespace) -> int:
    from pwoa_lab.core.attacks import default_attack_options
    from pwoa_lab.core.data import load_dataset
    from pwoa_lab.core.evaluation import evaluate
    from pwoa_lab.experiments.runs import train_teacher
    from pwoa_lab.io.checkpoint import command_line, save_checkpoint
    from pwoa_lab.training.methods import TeacherConfig
    out = _check_out_file(args.out, args.overwrite)
    config = TeacherConfig(dataset=args.dataset, model=args.model, method=args.method, eps=args.eps,
                           epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule,
                           optimizer=args.optimizer, weight_decay=args.weight_decay, val_n=args.val_n,
                           val_pgd_steps=args.val_pgd_steps,
                           adv_steps=args.pgd_steps, eps_ramp_epochs=args.eps_ramp, n_per_class=args.n_per_class,
                           seed=args.seed, device=args.device)
    model, history, metrics = train_teacher(config, root=args.root)
    model_name = model.kit_name
    meta = {"model": model_name, "dataset": args.dataset, "eps": metrics["eps"], "seed": args.seed,
            "kind": "teacher", "config": config.to_dict(), "metrics": metrics, "command": command_line(),
            "history": history.to_dict("records")}
    if args.test_n:
        test = load_dataset(args.dataset, "test", args.root)
        table = evaluate(model, test, ["natural", "pgd"], eps=metrics["eps"], n=args.test_n,
                         attack_options=default_attack_options(args.dataset, metrics["eps"]))
        meta["metrics"]["test"] = {r.attack: r.accuracy for r in table.itertuples()}
        print(table.to_string(index=False))
    save_checkpoint(out, model, meta, storage_dtype=args.storage_dtype, overwrite=args.overwrite)
    print(f"saved {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pwoa_lab.core.attacks import default_attack_options
    from pwoa_lab.core.data import dataset_info, load_dataset
    from pwoa_lab.core.evaluation import evaluate
    from pwoa_lab.io.checkpoint import load_checkpoint
    from pwoa_lab.utils import get_device
    device = get_device(args.device)
    model, meta = load_checkpoint(_resolve_checkpoint(args.checkpoint), device,
                                  expect={"dataset": args.dataset})
    dataset = args.dataset or meta["dataset"]
    eps = args.eps if args.eps is not None else meta.get("eps", dataset_info(dataset).eps)
    options = default_attack_options(dataset, eps)
    options["aa"] = {"version": args.aa_version}
    if args.pgd_steps is not None:  # the step size stays the dataset's (CIFAR: 2/255)
        if args.pgd_steps < 1:
            raise ValueError(f"--pgd-steps must be >= 1; got {args.pgd_steps}")
        options["pgd"] = dict(options["pgd"], steps=args.pgd_steps)
        if dataset_info(dataset).pgd_step is None:
            options["pgd"]["alpha"] = 2.5 * eps / args.pgd_steps
    test = load_dataset(dataset, args.split, args.root)
    table = evaluate(model, test, args.attacks, eps=eps, n=args.n, attack_options=options, device=device)
    table.insert(0, "checkpoint", str(args.checkpoint))
    if args.format == "json":
        print(json.dumps(table.to_dict("records"), indent=2))
    else:
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    return 0


def cmd_import_teacher(args: argparse.Namespace) -> int:
    from pwoa_lab.io.teacher_import import import_teacher
    _check_out_file(args.out, args.overwrite)
    result = import_teacher(args.arch, args.dataset, args.weights, fmt=args.format, eps=args.eps, out=args.out,
                            mean=args.mean, std=args.std, source=args.source, n=args.n, aa_n=args.aa_n,
                            aa_version=args.aa_version, pgd_steps=args.pgd_steps, root=args.root,
                            device=args.device, overwrite=args.overwrite)
    if result.evaluation is not None:
        table = result.evaluation[["attack", "setting", "eps", "n", "accuracy", "seconds"]]
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        print("compare with the numbers published for these weights (same eps and attack) before pruning")
    info = result.meta["import"]
    print(f"saved {result.path} (sha256 of {info['file']}: {info['sha256'][:16]}..., source: "
          f"{info['source'] or 'not given'})")
    return 0


def _check_out_file(out: str, overwrite: bool) -> Path:
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


def _check_out_folder(out: str) -> Path:
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


def _csv(df):
    return lambda path: df.to_csv(path, index=False)


def _png(fig):
    return lambda path: fig.savefig(path, dpi=120, format="png")


def _overrides(args: argparse.Namespace) -> dict:
    out = {}
    if getattr(args, "scope", None):
        out["scope"] = args.scope
    return out


DESIGN_FIELDS = ("structure", "importance", "schedule")  # PruneConfig's design-space fields (prune_schedules)


def _design_overrides(args: argparse.Namespace, methods: list[str]) -> dict:
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


def _design_words(design: dict) -> str:
    """'structure structured, importance magnitude (default), schedule admm (default)': what a run used."""
    from pwoa_lab.training.methods import PruneConfig
    defaults = {f.name: f.default for f in dataclasses.fields(PruneConfig)}
    return ", ".join(f"{f} {design[f]}" if f in design else f"{f} {defaults[f]} (default)" for f in DESIGN_FIELDS)


def cmd_prune(args: argparse.Namespace) -> int:
    from pwoa_lab.core.data import check_available
    from pwoa_lab.core.evaluation import EvalSettings, evaluate_row
    from pwoa_lab.experiments.runs import check_run, run_config
    from pwoa_lab.io.checkpoint import command_line, load_checkpoint, save_checkpoint
    from pwoa_lab.pruning.export import save_sparse
    from pwoa_lab.pruning.masks import sparsity_report
    from pwoa_lab.training.presets import preset_config
    from pwoa_lab.utils import get_device, torch_threads
    out = _check_out_file(args.out, args.overwrite)  # before any training: a trained model is never lost to it
    sparse_out = out.with_name(out.stem + ".sparse.pt")
    state_path = out.with_name(out.name + ".state")  # resume point: the same command continues an interrupted run
    design = _design_overrides(args, [args.method])
    structured = design.get("structure") == "structured"  # a smaller dense model: no zeros, no sparse file
    for path in (out,) if structured else (out, sparse_out):
        if path.exists() and not args.overwrite:
            raise FileExistsError(f"{path} exists; refusing to overwrite it (pass --overwrite or another --out)")
    device = get_device(args.device)
    teacher, meta = load_checkpoint(_resolve_checkpoint(args.checkpoint), device)
    teacher_params = sum(p.numel() for p in teacher.parameters())
    overrides = {**_overrides(args), **design}
    if args.mix_ratio is not None:
        overrides["mix_ratio"] = args.mix_ratio
    config = preset_config(meta["dataset"], args.preset, method=args.method, rate=args.rate, seed=args.seed,
                           device=str(device), **overrides)
    check_run(teacher, config.resolved())  # a rate that leaves too few weights: refused before training
    check_available(meta["dataset"], args.root)
    if state_path.exists():
        print(f"resuming from {state_path} where it belongs to this run (else it is ignored and left as it is)")
    result = run_config(teacher, config, root=args.root, state_path=state_path)
    with torch_threads(defaults.RUN_THREADS):  # evaluated like every run: the same numbers whatever the cores
        row = evaluate_row(result.model, meta["dataset"], result.config.eps, EvalSettings(n=args.n, aa_n=0),
                           args.root)
    report = sparsity_report(result.model, result.config.scope)
    print(report.to_string(index=False))
    print({k: round(v, 2) for k, v in row.items()})
    params = sum(p.numel() for p in result.model.parameters())
    print(f"{_design_words(design)}; parameters {params:,} of the teacher's {teacher_params:,} "
          f"({100 * params / teacher_params:.1f}%)")
    new_meta = {"model": meta["model"], "dataset": meta["dataset"], "eps": result.config.eps, "seed": args.seed,
                "kind": "pruned", "method": args.method, "rate": result.config.rate, "teacher": str(args.checkpoint),
                "config": result.config.to_dict(), "metrics": {"test": row, "train_seconds": result.train_seconds},
                "command": command_line(), "history": result.history.to_dict("records")}
    saved = _save_or_fallback(lambda path, overwrite: save_checkpoint(path, result.model, new_meta,
                                                                      overwrite=overwrite), out, args.overwrite)
    if structured:  # channels removed: the file is already the small model; a sparse copy would hold no zeros
        state_path.unlink(missing_ok=True)
        print(f"saved {saved} (structured: a smaller plain model without masks, "
              f"{saved.stat().st_size / 1e6:.2f} MB)")
        return 0 if saved == out else 1
    sparse_meta = {k: new_meta[k] for k in ("model", "dataset", "method", "rate", "command")}
    saved_sparse = _save_or_fallback(lambda path, overwrite: save_sparse(result.model, path, metadata=sparse_meta,
                                                                         overwrite=overwrite),
                                     sparse_out, args.overwrite)
    state_path.unlink(missing_ok=True)  # the saved model replaces the resume point
    print(f"saved {saved} (dense with zeros, {saved.stat().st_size / 1e6:.2f} MB) and {saved_sparse} "
          f"(compact, {saved_sparse.stat().st_size / 1e6:.2f} MB)")
    return 0 if (saved, saved_sparse) == (out, sparse_out) else 1


def _save_or_fallback(save, path: Path, overwrite: bool) -> Path:
    """`save(path, overwrite)`, or, when `path` cannot be written (the disk filled up, the folder went away),
    `save` into the cache folder's `unsaved/` under a free name, saying where on stderr: a trained model is never
    lost to an output error. Returns the path written."""
    from pwoa_lab.io.cache import cache_root
    from pwoa_lab.utils import reserve_paths
    try:
        save(path, overwrite)
        return path
    except FileExistsError:  # the user's file, kept on purpose: not an output error
        raise
    except OSError as err:
        (fallback,) = reserve_paths([cache_root() / "unsaved" / path.name])
        save(fallback, True)
        print(f"pwoa-lab: cannot write {path} ({err.strerror or err}); the trained model is saved at {fallback} "
              "instead: move it where you want it", file=sys.stderr)
        return fallback


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"--workers takes 'auto' or a whole number >= 1, not {text!r}")
    return n


def resolve_workers(workers: int | str, device: str | None) -> int:
    """'auto': 1 on a GPU (one device to share), else the CPU cores, at most 4 (memory); a number as given."""
    if workers != "auto":
        return int(workers)
    from pwoa_lab.experiments.jobs import auto_workers
    return auto_workers(device)


def _seeds(args: argparse.Namespace) -> list[int]:
    """--seeds 0,1,2 (each run once per seed), else the one --seed."""
    if not args.seeds:
        return [args.seed]
    try:
        return [int(x) for x in args.seeds.split(",")]
    except ValueError:
        raise ValueError(f"--seeds takes whole numbers separated by commas, e.g. 0,1,2; got {args.seeds!r}") from None


def _mean_std_table(summary, metrics) -> str:
    """A seed summary as text: method, rate, network sparsity, seeds, then each metric as one `format_cell`."""
    shown = summary.assign(**{"net sparsity": [f"{100 * v:.1f}%" for v in summary.sparsity]})
    return _interval_table(shown, ["method", "rate", "net sparsity", "seeds"], metrics)


def _interval_table(frame, keys: list[str], metrics: list[str], extra: list[str] = ()) -> str:
    """Rows of `frame` as text: `keys`, each metric as 'mean [low, high]' (or '± sd': `intervals.format_cell`),
    then `extra` columns; metrics with no value are left out."""
    import math

    import pandas as pd

    from pwoa_lab.core.intervals import format_cell
    metrics = [m for m in metrics if m in frame.columns and frame[m].notna().any()]
    rows = []
    for r in frame.to_dict("records"):
        row = {k: (f"{r[k]:g}x" if k == "rate" else r[k]) for k in keys}
        row.update({m: format_cell(r[m], r.get(f"{m}_low", math.nan), r.get(f"{m}_high", math.nan),
                                   r.get(f"{m}_std", math.nan)) for m in metrics})
        row.update({k: r[k] for k in extra})
        rows.append(row)
    return pd.DataFrame(rows).to_string(index=False)


def cmd_figure1(args: argparse.Namespace) -> int:
    from pwoa_lab.course.plots import plot_figure1
    from pwoa_lab.core.intervals import VERDICT_RULE
    from pwoa_lab.experiments.confidence import environment_line
    from pwoa_lab.experiments.figures import claim_in_words, figure1, phenomenon, seed_summary
    from pwoa_lab.experiments.frontier import figure1_tuned, parse_budgets
    out = _check_out_folder(args.out)  # before any run: results are never computed for nowhere
    rates = [float(r) for r in args.rates.split(",")]
    methods = [m.strip() for m in args.methods.split(",")]
    seeds = _seeds(args)
    design = _design_overrides(args, methods)
    teacher = _resolve_checkpoint(args.checkpoint) if args.checkpoint else None
    lr_factors, epoch_factors = parse_budgets(args.budgets)
    run_args = dict(preset=args.preset, seeds=seeds, teacher=teacher, root=args.root, device=args.device,
                    workers=resolve_workers(args.workers, args.device), backend=args.backend, address=args.address,
                    **_overrides(args), **design)
    if args.tune == "budget":  # every budget runs; each method's is chosen on the validation split
        df = figure1_tuned(args.dataset, rates=rates, methods=methods, lr_factors=lr_factors,
                           epoch_factors=epoch_factors, extend=not args.no_extend, **run_args)
    else:
        df = figure1(args.dataset, rates=rates, methods=methods, use_cache=not args.no_cache, **run_args)
    for field, value in design.items():  # which design every pruned row used ("-": the teacher)
        df[field] = [("-" if m == "teacher" else value) for m in df.method]
    summary = seed_summary(df)
    stem = f"figure1_{args.dataset}_{args.preset}" + ("_tuned" if args.tune == "budget" else "")
    scope = args.scope or "all"
    design_title = "".join(f", {v}" for v in design.values())
    fig = plot_figure1(df, summary=summary,
                       title=f"Figure 1: {args.dataset}, preset {args.preset}, scope {scope}{design_title}, "
                             f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}")
    csv, summary_csv, png = write_results(out, [f"{stem}.csv", f"{stem}_summary.csv", f"{stem}.png"],
                                          [_csv(df), _csv(summary), _png(fig)])
    print(f"scope {scope} (which weights are pruned), {_design_words(design)}, seeds {', '.join(map(str, seeds))}; "
          "mean over seeds and test images [95% interval over both]; " + environment_line(df))
    print(_mean_std_table(summary, ["natural", "pgd", "aa", "pgd_last"]))
    _smoke_note(args.preset)
    if args.tune == "budget":
        chosen = df[~df.method.isin(["teacher", "oneshot"])].drop_duplicates(["method", "rate"])
        print("budgets chosen on validation (highest val PGD within 1 point of the best val natural): "
              + "; ".join(f"{m} {r:g}x: {b}" for m, r, b in zip(chosen.method, chosen.rate, chosen.budget)))
    print("aa: per test point the worst case of PGD and AutoAttack (AutoAttack runs only on the points PGD did not break); pgd_last: "
          "the last epoch's model, where checkpoint selection (best validation PGD) kept another one")
    if {"naive", "pwoa"} <= set(methods):
        print("\nThe paper's claim (naive pruning collapses to at most a third of the teacher's robust accuracy, "
              f"PwoA stays within 3 points of it), per rate; {VERDICT_RULE}:")
        for metric in ("pgd", "aa"):
            if summary[metric].notna().any():
                for line in claim_in_words(phenomenon(df, metric), metric):
                    print("- " + line)
    print(f"\nwrote {csv}, {summary_csv} and {png}")
    return 0


def _add_budgets(p: argparse.ArgumentParser, default: list[str] | None = None) -> None:
    p.add_argument("--budgets", nargs="+", default=default or ["lr=0.1,1/3,1,3", "epochs=1"],
                   help="the fine-tuning budgets, as factors of the preset's learning rates and epochs: "
                        "lr=F1,F2,... epochs=F1,F2,... (default: lr=0.1,1/3,1,3 epochs=1)")
    p.add_argument("--no-extend", action="store_true",
                   help="read the budget grid as given; by default, where a method's best validation point lies on "
                        "the grid's edge, the next factor past it (x3 or /3) runs too, up to lr x0.01-x10 and "
                        "epochs x1/9-x9")


def cmd_frontier(args: argparse.Namespace) -> int:
    from pwoa_lab.course.plots import plot_frontier
    from pwoa_lab.experiments.confidence import environment_line
    from pwoa_lab.experiments.frontier import FRONT_RULE, budget_label, frontier, parse_budgets
    out = _check_out_folder(args.out)  # before any run: results are never computed for nowhere
    lr_factors, epoch_factors = parse_budgets(args.budgets)
    rates = [float(r) for r in args.rates.split(",")]
    methods = [m.strip() for m in args.methods.split(",")]
    seeds = _seeds(args)
    teacher = _resolve_checkpoint(args.checkpoint) if args.checkpoint else None
    fr = frontier(args.dataset, rates, methods, lr_factors, epoch_factors, seeds, args.preset,
                  compare=("pwoa", "naive"), teacher=teacher, root=args.root, device=args.device,
                  extend=not args.no_extend,
                  workers=resolve_workers(args.workers, args.device), backend=args.backend, address=args.address,
                  **_overrides(args))
    stem = f"frontier_{args.dataset}_{args.preset}"
    scope = args.scope or "all"
    fig = plot_frontier(fr.points, title=f"frontier: {args.dataset}, preset {args.preset}, scope {scope}, "
                                         f"{len(seeds)} seed(s)\npoints: learning-rate factor[/epoch factor]; "
                                         "lines: each method's front")
    csv, png = write_results(out, [f"{stem}.csv", f"{stem}.png"], [_csv(fr.points.drop(columns="point")), _png(fig)])
    shown = fr.points.assign(budget=[budget_label(a, b) if k == "method" else "-"
                                     for a, b, k in zip(fr.points.lr_factor, fr.points.epoch_factor, fr.points.kind)])
    print(f"robust = {fr.robust_metric} (per point the worst case of PGD and AutoAttack where the preset runs "
          f"AutoAttack); mean over seeds {', '.join(map(str, seeds))} and the test images, [95% interval over "
          f"both]; {environment_line(fr.runs)}")
    print(_interval_table(shown, ["rate", "method", "budget"], ["natural", "robust"], ["on_front"]))
    if len(fr.extensions):
        print("\nThe grid extended where a best validation point lay on its edge:")
        for row in fr.extensions.itertuples():
            added = f"added {row.axis.split('_')[0]} x{row.factor:.3g}" if row.factor == row.factor else "stopped"
            print(f"- {row.method} {row.rate:g}x: {added} ({row.why})")
    _smoke_note(args.preset)
    if len(fr.verdicts):
        print(f"\nPwoA's front against naive's, per rate ({FRONT_RULE}):")
        for row in fr.verdicts.itertuples():
            print(f"- {row.rate:g}x: {row.verdict.upper()}: {row.text}")
    print(f"\nwrote {csv} and {png}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from pwoa_lab.course.plots import plot_sweep
    from pwoa_lab.experiments.sweep import PLOT_METRICS, parse_grid, sweep
    from pwoa_lab.utils import check_choice
    out = _check_out_folder(args.out)  # the output and the plot's options before any run
    check_choice(args.metric, PLOT_METRICS, "--metric")
    grid = parse_grid(args.grid)
    x = args.x or next((k for k in grid if len(grid[k]) > 1 and k != "method"), next(iter(grid)))
    hue = args.hue if args.hue is not None else next((k for k in grid if k != x and len(grid[k]) > 1), None)
    for name in (x, hue):
        if name is not None and name not in grid and name not in ("method", "rate", "seed"):
            raise ValueError(f"--x / --hue name a grid field; this grid has: {', '.join(grid)}")
    teacher = _resolve_checkpoint(args.checkpoint) if args.checkpoint else None
    result = sweep(grid, seeds=_seeds(args), dataset=args.dataset, preset=args.preset, teacher=teacher,
                   root=args.root, device=args.device, use_cache=not args.no_cache, backend=args.backend,
                   address=args.address, workers=resolve_workers(args.workers, args.device))
    stem = f"sweep_{args.dataset}_{args.preset}"
    names, writers = [f"{stem}.csv", f"{stem}_summary.csv"], [_csv(result.runs), _csv(result.summary)]
    if len(result.runs):
        fig = plot_sweep(result.runs, x=x, metric=args.metric, hue=hue,
                         title=f"sweep: {args.dataset}, preset {args.preset}, {len(_seeds(args))} seed(s)")
        names, writers = names + [f"{stem}_{args.metric}.png"], writers + [_png(fig)]
    csv, summary_csv, *png = write_results(out, names, writers)
    png = png[0] if png else None
    shown = [c for c in result.summary.columns if not c.endswith("_std") and c not in ("natural_last", "pgd_last")]
    metrics = [c for c in shown if c in ("natural", "fgsm", "pgd", "aa", "sparsity")]
    print(result.summary[shown].round({m: 2 for m in metrics}).to_string(index=False))  # grid values as given
    print(f"\n{len(result.runs)} runs ({result.submitted} computed, the rest from the cache); wrote {csv}, "
          f"{summary_csv}" + (f" and {png}" if len(result.runs) else ""))
    if len(result.failed):
        print(f"\n{len(result.failed)} run(s) failed (rerun the same command to retry only these):", file=sys.stderr)
        for row in result.failed.drop(columns="traceback").to_dict("records"):
            error = row.pop("error")
            print(f"- {row}: {error}", file=sys.stderr)
        return 1
    return 0


def cmd_figure3(args: argparse.Namespace) -> int:
    from pwoa_lab.course.plots import plot_figure3
    from pwoa_lab.experiments.figures import figure3, time_ratio_summary
    out = _check_out_folder(args.out)
    ratios = None if args.mix_ratios is None else [float(r) for r in args.mix_ratios.split(",")]
    methods = [m.strip() for m in args.methods.split(",")]
    teacher = _resolve_checkpoint(args.checkpoint) if args.checkpoint else None
    curves, summary = figure3(args.dataset, rate=args.rate, mix_ratios=ratios, methods=methods, preset=args.preset,
                              seeds=_seeds(args), teacher=teacher, root=args.root, device=args.device,
                              use_cache=not args.no_cache, n_per_class=args.n_per_class)
    stem = f"figure3_{args.dataset}_{args.preset}"
    fig = plot_figure3(curves.dropna(subset=["val_pgd"]), target=float(summary.target_val_pgd.iloc[0]),
                       title=f"Figure 3: {args.dataset} {args.rate:g}x, preset {args.preset}")
    paths = write_results(out, [f"{stem}_curves.csv", f"{stem}_summary.csv", f"{stem}.png"],
                          [_csv(curves), _csv(summary), _png(fig)])
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print("\ntime_ratio: time to reach PwoA's (r=0) final validation PGD accuracy / PwoA's time (NaN: never); "
          "mean over seeds [95% interval over seeds], where every seed reached it:")
    print(_interval_table(time_ratio_summary(summary), ["method", "mix_ratio", "seeds", "reached"],
                          ["time_ratio", "pgd", "aa"]))
    _smoke_note(args.preset)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


SMOKE_NOTE = ("smoke check: the smoke preset trains a few batches to test that the kit runs; these numbers and "
              "verdicts are no results (use --preset quick)")


def _smoke_note(preset: str) -> None:
    if preset == "smoke":
        print(SMOKE_NOTE)


SCOPE_HELP = ("which weights are pruned: all (default: every conv and linear weight), hidden (all but the first "
              "layer and the classifier), convs, or reference (the PwoA reference code's rule: every conv and a "
              "layer named fc)")

# what each value of the design-space options does (pwoa_lab.prune_schedules); the values come from the code
DESIGN_HELP = {
    "structure": ("what is removed", {
        "weight": "single weights, masked: the model keeps its dense shape (default)",
        "structured": "whole channels with Torch-Pruning: a physically smaller plain model, no masks; rate R keeps "
                      "at most 1/R of the parameters (scope all or hidden)"}),
    "importance": ("how weights / channels are ranked", {
        "magnitude": "|w| (structured: the filter's L2 norm) (default)",
        "gradient": "|w * dL/dw| on 512 natural training images (first-order Taylor; structured: summed over the "
                    "filter)"}),
    "schedule": ("when the sparsity is imposed", {
        "admm": "ADMM pulls the weights to the sparse set, one hard prune, then retraining (the paper; default)",
        "oneshot": "prune by importance first, then fine-tune with the loss for the same epoch budget (not the "
                   "method oneshot, which does no training)",
        "iterative": "the sparsity grows on a cubic schedule (Zhu & Gupta 2017) over the first epochs, then "
                     "retraining at the final sparsity"}),
}


def _add_design(p: argparse.ArgumentParser) -> None:
    """--structure / --importance / --schedule: the PruneConfig fields of the same names (any loss)."""
    from pwoa_lab.pruning.schedules import IMPORTANCES, SCHEDULES, STRUCTURES
    for field, values in zip(DESIGN_FIELDS, (STRUCTURES, IMPORTANCES, SCHEDULES)):
        what, words = DESIGN_HELP[field]
        p.add_argument(f"--{field}", default=None, metavar="{" + ",".join(values) + "}",
                       help=f"{what}: " + "; ".join(f"{v}: {words.get(v, 'see pwoa_lab.prune_schedules')}"
                                                     for v in values))


def cmd_explorer(args: argparse.Namespace) -> int:
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


def _add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="local", choices=("local", "ray"),
                   help="local: worker processes on this machine; ray: one task per run on a Ray cluster "
                        "(pip install -e '.[cluster]')")
    p.add_argument("--address", default=None,
                   help="the Ray cluster to use, e.g. ray://head:10001 or auto (default: RAY_ADDRESS, else a local "
                        "cluster started for this command)")


def build_parser() -> argparse.ArgumentParser:
    from pwoa_lab.training.presets import PRESETS
    from pwoa_lab.training.registry import method_help
    parser = argparse.ArgumentParser(prog="pwoa-lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train-teacher", help="adversarially train a robust teacher")
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", default=None,
                   help="small_cnn, lenet3, vgg_small, resnet18, wrn34_10 (default: per dataset)")
    p.add_argument("--method", default="pgd", help="pgd (PGD-AT), fgsm_rs (fast AT) or none (plain CE)")
    p.add_argument("--eps", type=float, default=None, help="default: the dataset's eps")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-schedule", default="constant", help="constant or cosine")
    p.add_argument("--optimizer", default="adam", help="adam or sgd (momentum 0.9)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--pgd-steps", type=int, default=10)
    p.add_argument("--eps-ramp", type=float, default=2.0, help="epochs over which eps ramps up")
    p.add_argument("--n-per-class", type=int, default=None, help="train on a class-balanced subset")
    p.add_argument("--val-n", type=int, default=1000, help="validation images per epoch (for checkpoint selection)")
    p.add_argument("--val-pgd-steps", type=int, default=20, help="PGD steps of that validation")
    p.add_argument("--test-n", type=int, default=0, help="also evaluate on this many test images")
    p.add_argument("--storage-dtype", default="float32", help="float32 or float16 (half the file size)")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    _add_common(p)
    p.set_defaults(func=cmd_train_teacher)

    p = sub.add_parser("evaluate", help="natural and robust accuracy of a checkpoint")
    p.add_argument("--checkpoint", required=True,
                   help="a .pt file, or 'digits'/'mnist'/'cifar10' for a shipped teacher")
    p.add_argument("--dataset", default=None, help="default: the checkpoint's dataset")
    p.add_argument("--attacks", default="natural,fgsm,pgd",
                   help="comma list of natural,fgsm,pgd,cw,aa,worst (worst: per point the worst case of PGD and "
                        "AutoAttack)")
    p.add_argument("--eps", type=float, default=None, help="default: the checkpoint's eps")
    p.add_argument("--n", type=int, default=None, help="first N test images (default: all)")
    p.add_argument("--pgd-steps", type=int, default=None,
                   help="PGD steps (default: the dataset's: digits 20, MNIST 40, CIFAR 10; the step size stays "
                        "the dataset's)")
    p.add_argument("--split", default="test", help="test or val")
    p.add_argument("--aa-version", default="standard", help="standard or fast")
    p.add_argument("--format", default="table", choices=["table", "json"])
    _add_common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("import-teacher", help="import public robust weights (TRADES, RobustBench, plain) as a "
                                              "teacher checkpoint, and evaluate them")
    p.add_argument("--arch", required=True, help="wrn34_10 or resnet18")
    p.add_argument("--dataset", required=True, help="cifar10 or cifar100")
    p.add_argument("--weights", required=True, help="the public .pt/.pth file (read with weights_only=True)")
    p.add_argument("--format", default="plain",
                   help="trades (drops the unused sub_block1), robustbench (strips 'model.', reads mu/sigma "
                        "buffers) or plain (public or kit names); a 'module.' prefix is stripped in all")
    p.add_argument("--eps", default=None, help="L-inf radius the model was trained for, e.g. 8/255 "
                                               "(default: the dataset's)")
    p.add_argument("--mean", default=None, help="input normalization the model expects: three numbers "
                                                "'0.4914,0.4822,0.4465' or a dataset name (cifar10, cifar100)")
    p.add_argument("--std", default=None, help="as --mean, for the standard deviations")
    p.add_argument("--source", default="", help="where the weights come from (recorded in the metadata)")
    p.add_argument("--n", type=int, default=1000, help="evaluate on the first N test images (0: skip)")
    p.add_argument("--aa-n", type=int, default=None, help="AutoAttack images (default: --n; 0: skip AA)")
    p.add_argument("--aa-version", default="standard", help="standard or fast")
    p.add_argument("--pgd-steps", type=int, default=None, help="default: the dataset's (CIFAR: 10)")
    p.add_argument("--out", required=True, help="the kit checkpoint to write")
    p.add_argument("--overwrite", action="store_true")
    _add_common(p)
    p.set_defaults(func=cmd_import_teacher)

    p = sub.add_parser("prune", help="prune a checkpoint with one of the registered methods (resumable)")
    p.add_argument("--checkpoint", required=True,
                   help="a .pt file, or 'digits'/'mnist'/'cifar10' for a shipped teacher")
    p.add_argument("--method", default="pwoa", help=method_help())
    p.add_argument("--rate", type=float, required=True, help="pruning rate R > 1 (keep 1/R of the weights)")
    p.add_argument("--preset", default=defaults.PRESET, help=", ".join(PRESETS))
    p.add_argument("--mix-ratio", type=float, default=None, help="probability of a PGD batch (default: method's)")
    p.add_argument("--scope", default=None, help=SCOPE_HELP)
    _add_design(p)
    p.add_argument("--n", type=int, default=None, help="evaluate on the first N test images")
    p.add_argument("--out", required=True, help="dense checkpoint path; a compact FILE.sparse.pt is written too "
                                                "(not with --structure structured: the file is already small)")
    p.add_argument("--overwrite", action="store_true")
    _add_common(p)
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("figure1", help="robustness vs pruning rate, naive vs PwoA (CSV + PNG)")
    p.add_argument("--dataset", default=defaults.DATASET)
    p.add_argument("--preset", default=defaults.PRESET, help=", ".join(PRESETS))
    p.add_argument("--rates", default="2,4,8,16")
    p.add_argument("--methods", default="oneshot,naive,pwoa",
                   help=f"comma list of methods ({method_help()})")
    p.add_argument("--seeds", default=None, help="run every (method, rate) once per seed, e.g. 0,1,2 "
                                                 "(default: the one --seed)")
    p.add_argument("--checkpoint", default=None, help="teacher checkpoint (default: the shipped one)")
    p.add_argument("--scope", default=None, help=SCOPE_HELP)
    _add_design(p)
    p.add_argument("--no-cache", action="store_true", help="recompute even if a cached result exists")
    p.add_argument("--workers", type=_workers, default="auto",
                   help="prune runs at once, each in its own process (default auto: 1 on a GPU, else up to 4 "
                        "CPU cores)")
    _add_backend(p)
    p.add_argument("--out", default="results")
    _add_common(p)
    p.add_argument("--tune", default="none", choices=("none", "budget"),
                   help="none: the paper's protocol (the preset's budget); budget: every budget of --budgets runs "
                        "and each method gets the one it does best with on the validation split")
    _add_budgets(p)
    p.set_defaults(func=cmd_figure1)

    p = sub.add_parser("frontier", help="natural vs robust accuracy of each method over its fine-tuning budget "
                                        "(CSV + PNG + verdict per rate)")
    p.add_argument("--dataset", default=defaults.DATASET)
    p.add_argument("--preset", default=defaults.PRESET, help=", ".join(PRESETS))
    p.add_argument("--rates", default="4,8")
    p.add_argument("--methods", default="naive,pwoa", help=f"comma list of methods that train ({method_help()})")
    p.add_argument("--seeds", default="0,1,2", help="every point once per seed (default 0,1,2)")
    p.add_argument("--checkpoint", default=None, help="teacher checkpoint (default: the shipped one)")
    p.add_argument("--scope", default=None, help=SCOPE_HELP)
    _add_budgets(p, default=["lr=0.1,1/3,1,3", "epochs=1"])
    p.add_argument("--workers", type=_workers, default="auto", help="runs at once, each in its own process")
    _add_backend(p)
    p.add_argument("--out", default="results")
    _add_common(p)
    p.set_defaults(func=cmd_frontier)

    p = sub.add_parser("sweep", help="any run-config fields x seeds, each run cached; a CSV and a plot",
                       description="Example: pwoa-lab sweep --dataset digits --preset quick --grid method=naive,pwoa "
                                   "--grid rate=2,4,8 --grid lambda_x=2e-4,2e-2 --seeds 0,1,2 --out results/lambda")
    p.add_argument("--dataset", default=defaults.DATASET)
    p.add_argument("--preset", default=defaults.PRESET, help=", ".join(PRESETS))
    p.add_argument("--grid", action="append", required=True, metavar="FIELD=V1,V2",
                   help="a run-config field and its values (repeat for more fields; the runs are their product), "
                        "e.g. method=naive,pwoa, rate=2,4,8, lambda_x=2e-4,2e-2, scope=all,hidden")
    p.add_argument("--seeds", default=None, help="every grid point once per seed, e.g. 0,1,2 (default: --seed)")
    p.add_argument("--metric", default="pgd", help="plotted metric: natural, fgsm, pgd, aa (default pgd)")
    p.add_argument("--x", default=None, help="grid field on the x axis (default: the first varied one)")
    p.add_argument("--hue", default=None, help="grid field that colours the lines (default: the next varied one)")
    p.add_argument("--checkpoint", default=None, help="teacher checkpoint (default: the shipped one)")
    p.add_argument("--no-cache", action="store_true", help="recompute even if a cached result exists")
    p.add_argument("--workers", type=_workers, default="auto",
                   help="local backend: runs at once, each in its own process (default auto)")
    _add_backend(p)
    p.add_argument("--out", default="results")
    _add_common(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("figure3", help="robustness vs training time: PwoA vs AdvPrune vs HYDRA over mix ratios")
    p.add_argument("--dataset", default=defaults.DATASET)
    p.add_argument("--preset", default=defaults.PRESET, help=", ".join(PRESETS))
    p.add_argument("--rate", type=float, default=4.0)
    p.add_argument("--mix-ratios", default=None,
                   help="comma-separated (default: 0,0.2,0.4,0.6,0.8,1 with --preset paper, else 0,0.5,1)")
    p.add_argument("--methods", default="pwoa,advprune,hydra")
    p.add_argument("--seeds", default=None, help="repeat every run once per seed, e.g. 0,1,2")
    p.add_argument("--n-per-class", type=int, default=None,
                   help="train every run on this many images per class (default: the preset's subset; "
                        "MNIST quick: 300)")
    p.add_argument("--checkpoint", default=None, help="teacher checkpoint (default: the shipped one)")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--out", default="results")
    _add_common(p)
    p.set_defaults(func=cmd_figure3)

    from pwoa_lab.course import serving
    p = sub.add_parser("explorer", help="serve the classroom explorer (notebooks/explorer.ipynb) with Voila",
                       description="Serve the classroom explorer with Voila. Served to others (a --host that is "
                                   "not loopback), auto-compute is off and one request may start at most "
                                   "--max-runs runs. Kernels whose page is gone are shut down after --cull-idle "
                                   "seconds. Arguments after -- go to Voila.")
    p.add_argument("--host", default="127.0.0.1", help="127.0.0.1: this machine only; 0.0.0.0: every network "
                                                      "interface (a room)")
    p.add_argument("--port", type=int, default=8866)
    p.add_argument("--cull-idle", type=int, default=serving.CULL_IDLE_S,
                   help=f"seconds a kernel with no page and no work is kept (default {serving.CULL_IDLE_S})")
    p.add_argument("--cull-interval", type=int, default=serving.CULL_INTERVAL_S,
                   help=f"seconds between checks for such kernels (default {serving.CULL_INTERVAL_S})")
    p.add_argument("--max-runs", type=int, default=None,
                   help=f"the most runs one request may start; 0: no cap (default: {serving.ROOM_MAX_RUNS} when "
                        "served to others, else no cap)")
    p.add_argument("--shared", action="store_true",
                   help="served to others although --host is loopback (behind a proxy on this machine)")
    p.add_argument("--notebook", default=str(serving.NOTEBOOK))
    p.add_argument("voila_args", nargs="*", help="after --: more Voila options")
    p.set_defaults(func=cmd_explorer)
    return parser


def interrupted_words(args: argparse.Namespace) -> str:
    """What an interrupted command kept, and how to go on: one line."""
    if args.command in ("figure1", "figure3", "sweep") and getattr(args, "no_cache", False):
        return "nothing was kept (--no-cache); run the same command again to start over"
    if args.command in ("figure1", "figure3", "sweep"):
        from pwoa_lab.io.cache import cache_root
        return (f"the finished runs are in the cache ({cache_root()}), with the last finished epoch of an "
                "unfinished one; run the same command again to resume")
    if args.command == "prune":
        state = Path(args.out).with_name(Path(args.out).name + ".state")
        return (f"the last finished epoch is kept in {state}; run the same command again to resume from it"
                if state.exists() else "no epoch had finished, nothing was kept; run the same command again")
    return "nothing was written (this command has no resume point); run the same command again to start over"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:  # Ctrl-C: one line, no traceback; 130 = 128 + SIGINT, as shells report it
        print(f"\npwoa-lab {args.command}: interrupted; {interrupted_words(args)}", file=sys.stderr)
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError, OSError, RuntimeError, ImportError) as err:
        print(f"pwoa-lab {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 130


if __name__ == "__main__":
    sys.exit(main())
