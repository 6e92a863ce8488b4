"""What one run of the `paper` preset costs (PwoA, Figure 1): measured on a GPU when there is one, else estimated.

Counts the floating-point work of one PwoA run on the paper's schedule (torch's FlopCounterMode on one training
step: forward + backward of the student, per image) times the images it processes: every epoch trains on the
training split and validates with PGD on `val_n` images (`val_pgd_steps` steps, each a forward + backward),
for admm_epochs + retrain_epochs epochs. The teacher's logits are computed once (cached) and the final test-set
evaluation is left out, so this is the training budget only.

Then the time: the step is timed here (CPU, one step of batch 128, median of repeats, torch's threads) and the
run's time is its work / the measured FLOP rate; on a GPU the step is timed on the GPU (a measurement). Without a
GPU, the GPU time is the work / an assumed sustained GPU rate (`--gpu-tflops`, default 10 TFLOP/s fp32, about half
of an A100's peak): an ESTIMATE, optimistic for small models (LeNet-3 does not fill a GPU), so read it as a lower
bound.

    .venv/bin/python bench/estimate_paper_cost.py [--gpu-tflops 10] [--repeats 5]
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

CASES = (("mnist", "lenet3", 55000), ("cifar10", "resnet18", 45000))  # training images after the validation split


def step_flops_and_seconds(dataset: str, model_name: str, device: str, repeats: int, batch: int = 128):
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode
    from pwoa_lab.core.data import dataset_info
    from pwoa_lab.core.models import build_model
    info = dataset_info(dataset)
    model = build_model(model_name, dataset).to(device)
    x = torch.rand(batch, *info.shape, device=device)
    y = torch.randint(0, info.num_classes, (batch,), device=device)

    def step():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    with FlopCounterMode(display=False) as counter:
        step()
    flops_per_image = counter.get_total_flops() / batch
    times = []
    for i in range(repeats + 1):
        _common.sync(device)
        start = time.perf_counter()
        step()
        _common.sync(device)
        if i:  # the first is a warm-up
            times.append(time.perf_counter() - start)
    return flops_per_image, statistics.median(times) / batch


def run_work(dataset: str, flops_per_image: float, train_images: int) -> tuple[float, dict]:
    from pwoa_lab.training.presets import preset_config
    c = preset_config(dataset, "paper", method="pwoa").resolved()
    epochs = c.admm_epochs + c.retrain_epochs
    per_epoch = train_images + c.val_n * (c.val_pgd_steps + 1)  # + 1: the natural validation pass
    return flops_per_image * per_epoch * epochs, {"epochs": epochs, "val_n": c.val_n,
                                                  "val_pgd_steps": c.val_pgd_steps, "train_images": train_images}


def body(args) -> dict:
    import torch
    gpu = torch.cuda.is_available()
    device = "cuda" if gpu else "cpu"
    repeats = args.repeats or (2 if args.quick else 5)
    figures, details = [], {}
    for dataset, model_name, train_images in CASES:
        flops, sec_per_image = step_flops_and_seconds(dataset, model_name, device, repeats)
        work, sched = run_work(dataset, flops, train_images)
        rate = flops / sec_per_image  # FLOP/s achieved by this machine on this model
        hours = work / rate / 3600
        details[dataset] = {"model": model_name, "train_step_gflop_per_image": flops / 1e9,
                            "measured_tflops": rate / 1e12, "run_pflop": work / 1e15, **sched}
        if gpu:
            figures.append(_common.figure(f"{dataset} ({model_name}) paper-preset PwoA run: GPU hours (measured "
                                          f"step rate, {torch.cuda.get_device_name(0)})", hours, "h"))
        else:
            figures.append(_common.figure(f"{dataset} ({model_name}) paper-preset PwoA run: CPU hours on this "
                                          "machine (measured step rate)", hours, "h"))
            figures.append(_common.figure(f"{dataset} ({model_name}) paper-preset PwoA run: GPU hours, ESTIMATE at "
                                          f"{args.gpu_tflops:g} TFLOP/s sustained", work / (args.gpu_tflops * 1e12)
                                          / 3600, "h"))
    notes = ["training budget only: the teacher's logits (computed once) and the final test-set evaluation are "
             "not counted; Figure 1 is 4 rates x the methods x the seeds such runs"]
    if not gpu:
        notes.append("no GPU here: the GPU hours are work / an assumed rate, a lower bound for small models")
    return {"figures": figures, "details": details, "notes": notes}


def main(argv=None) -> dict:
    parser = _common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--gpu-tflops", type=float, default=10.0,
                        help="assumed sustained fp32 TFLOP/s of the GPU (estimate only; default 10)")
    return _common.run_script("estimate_paper_cost", body, parser, argv)


if __name__ == "__main__":
    main()
