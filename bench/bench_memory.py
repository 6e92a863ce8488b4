"""Peak memory of one PwoA training step (KD + HBaR over every hidden layer), batch 128.

Models: LeNet-3 on MNIST-shaped inputs (1x28x28, the mnist quick preset: Adam) and ResNet-18 on CIFAR-shaped
inputs (3x32x32, the cifar10 quick preset: SGD with momentum, HSIC over its 10 hidden outputs). Each model is
measured in a fresh subprocess, which builds the student, a frozen teacher, a random batch in [0, 1], the
teacher's logits and the optimizer, then records the peak resident set (resource.getrusage(RUSAGE_SELF)
.ru_maxrss) before and after one step of the PwoA loss (`methods.AdmmPruning.loss` in the retraining phase) + backward + optimizer step.

Figure: ru_maxrss after - before (MiB): how far the step raises the process's peak. Details also give the
peak over the resident set just before the step (ru_maxrss counts the import-time peak too) and, on CUDA,
torch.cuda.max_memory_allocated over the step (memory_allocated before subtracted too). No targets.

    .venv/bin/python bench/bench_memory.py [--quick] [--models lenet3,resnet18]
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

MODELS = {"lenet3": ("mnist", "lenet3"), "resnet18": ("cifar10", "resnet18")}
BATCH = 128


def child(name: str, seed: int, batch: int) -> dict:
    """One step in this (fresh) process; returns the measurements."""
    import resource

    import torch
    from pwoa_lab.core.data import dataset_info
    from pwoa_lab.core.distillation import frozen_teacher
    from pwoa_lab.core.data import TensorData
    from pwoa_lab.training.loop import Batch, Phase, make_optimizer
    from pwoa_lab.training.methods import AdmmPruning
    from pwoa_lab.core.models import build_model
    from pwoa_lab.training.presets import preset_config
    from pwoa_lab.utils import get_device, set_seed

    def rss_now_kib() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * (resource.getpagesize() // 1024)

    dataset, arch = MODELS[name]
    info = dataset_info(dataset)
    config = preset_config(dataset, "quick", method="pwoa", batch_size=batch, seed=seed).resolved()
    device = get_device(None)
    set_seed(seed)
    student = build_model(arch, dataset).to(device).train()
    teacher = frozen_teacher(student).to(device)
    x = torch.rand(batch, *info.shape, device=device)
    y = torch.randint(0, info.num_classes, (batch,), device=device)
    # the method's own step: teacher logits precomputed (its cache), L_D + L_H in the retraining phase
    method = AdmmPruning(config, teacher, student, TensorData(x.cpu(), y.cpu(), dataset, "train"))
    retrain = Phase("retrain", 1, config.lr_retrain)
    opt = make_optimizer(student.parameters(), config, config.lr_retrain)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_before = torch.cuda.memory_allocated()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss        # KiB on Linux
    rss_before = rss_now_kib()
    loss, terms = method.loss(student, Batch(x, y, torch.arange(batch)), retrain)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if cuda:
        torch.cuda.synchronize()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"model": name, "input": list(info.shape), "batch": batch, "device": str(device),
           "optimizer": config.optimizer, "n_hidden": len(student.forward_features(x[:2])[1]),
           "maxrss_before_mib": before / 1024, "maxrss_after_mib": after / 1024,
           "step_peak_mib": (after - before) / 1024, "rss_before_mib": rss_before / 1024,
           "peak_over_rss_before_mib": (after - rss_before) / 1024, "terms": terms,
           "params_mib": sum(p.numel() * p.element_size() for p in student.parameters()) / 2**20}
    if cuda:
        out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        out["cuda_step_peak_mib"] = (torch.cuda.max_memory_allocated() - cuda_before) / 2**20
    return out


def body(args) -> dict:
    figures, notes, details = [], [], {}
    batch = args.batch or (32 if args.quick else BATCH)
    for name in args.models.split(","):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--batch", str(batch),
               "--seed", str(args.seed)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=_common.REPO)
        if proc.returncode != 0:
            notes.append(f"{name}: the measuring subprocess failed: {proc.stderr[-600:]}")
            figures.append(_common.figure(f"{name} step peak RSS increase (batch {batch})", None, "MiB"))
            continue
        m = json.loads(proc.stdout.strip().splitlines()[-1])
        details[name] = m
        shape = "x".join(map(str, m["input"]))
        print(f"  {name} ({shape}, batch {batch}, {m['device']}): ru_maxrss {m['maxrss_before_mib']:.0f} -> "
              f"{m['maxrss_after_mib']:.0f} MiB (+{m['step_peak_mib']:.0f}); peak over the RSS before the step "
              f"{m['peak_over_rss_before_mib']:.0f} MiB")
        figures.append(_common.figure(f"{name} ({shape}) step: ru_maxrss after - before, batch {batch}",
                                      m["step_peak_mib"], "MiB"))
        if "cuda_step_peak_mib" in m:
            figures.append(_common.figure(f"{name} ({shape}) step: CUDA max_memory_allocated - before",
                                          m["cuda_step_peak_mib"], "MiB"))
        notes.append(f"{name}: {m['n_hidden']} hidden layers in the HSIC term, {m['optimizer']}, parameters "
                     f"{m['params_mib']:.1f} MiB; RSS just before the step {m['rss_before_mib']:.0f} MiB, "
                     f"peak after {m['maxrss_after_mib']:.0f} MiB (+{m['peak_over_rss_before_mib']:.0f} MiB over "
                     "the RSS before)")
    import torch
    if not torch.cuda.is_available():
        notes.append("no CUDA device: torch.cuda.max_memory_allocated not measured")
    return {"figures": figures, "notes": notes, "details": details}


def main(argv=None) -> dict:
    p = _common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--models", default="lenet3,resnet18")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 128; quick 32)")
    p.add_argument("--child", default=None, help=argparse_suppress())
    args, _ = p.parse_known_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.seed, args.batch or BATCH), default=str))
        return {}
    return _common.run_script("bench_memory", body, p, argv)


def argparse_suppress():
    import argparse
    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
