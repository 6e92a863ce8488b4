"""The HBaR overhead of one PwoA training step.

Figure: time of one training step with KD + HBaR over the same step with KD only. LeNet-3, MNIST-shaped
random inputs in [0, 1], batch 128, teacher logits precomputed. A step is: forward with
`models.logits_and_hiddens`, loss, backward, Adam step. KD: `distillation.kd_loss` (T = 30); HBaR:
`hsic.hbar_loss` over the 3 hidden layers (lambda_x 2e-4, lambda_y 5e-5, sigma 5, HKH centering).
Target <= 1.3.

It also times the pieces of the HSIC term (the term alone forward and forward + backward; the Gaussian kernels
of the hidden layers; centering + soft-projection solves + traces) and, on a miss or with --profile, runs
torch.profiler over the term, so that a miss says where the time goes.

    .venv/bin/python bench/bench_hbar_step.py [--quick] [--repeats N] [--profile]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

TARGET = "<= 1.3"
BATCH = 128
LAMBDA_X, LAMBDA_Y, SIGMA, TEMPERATURE = 2e-4, 5e-5, 5.0, 30.0


def body(args) -> dict:
    import torch
    from pwoa_lab.core import hsic
    from pwoa_lab.core.distillation import kd_loss
    from pwoa_lab.core.models import build_model, logits_and_hiddens
    from pwoa_lab.utils import set_seed

    set_seed(args.seed)
    model = build_model("lenet3", "mnist").train()
    teacher = build_model("lenet3", "mnist").eval()
    x = torch.rand(BATCH, 1, 28, 28)
    y = torch.randint(0, 10, (BATCH,))
    with torch.no_grad():
        t_logits = teacher(x)                         # precomputed, as the engine's teacher cache does
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    repeats = args.repeats or (3 if args.quick else 21)

    def step(with_hbar: bool) -> None:
        opt.zero_grad(set_to_none=True)
        logits, hiddens = logits_and_hiddens(model, x)
        loss = kd_loss(logits, t_logits, TEMPERATURE)
        if with_hbar:
            h, _ = hsic.hbar_loss(x, y, hiddens, 10, LAMBDA_X, LAMBDA_Y, SIGMA, "hkh")
            loss = loss + h
        loss.backward()
        opt.step()

    timings = _common.interleaved_medians({"kd": lambda: step(False), "kd+hbar": lambda: step(True)},
                                          repeats=repeats, warmup=2)
    ratio = timings["kd+hbar"]["median_s"] / timings["kd"]["median_s"]
    print(f"  KD step {timings['kd']['median_s'] * 1000:.1f} ms, KD+HBaR step "
          f"{timings['kd+hbar']['median_s'] * 1000:.1f} ms (median of {repeats}), ratio {ratio:.3f}")

    # pieces of the HSIC term, on detached hidden activations that require grad (no network involved)
    with torch.no_grad():
        _, hiddens0 = logits_and_hiddens(model, x)
    hid = [h.detach().clone().requires_grad_(True) for h in hiddens0]
    kz = [hsic.gaussian_kernel(h.detach(), SIGMA).requires_grad_(True) for h in hid]
    ky = hsic.label_kernel(y, 10)
    kx = hsic.gaussian_kernel(x, SIGMA)

    def hsic_forward():
        with torch.no_grad():
            hsic.hbar_loss(x, y, hid, 10, LAMBDA_X, LAMBDA_Y, SIGMA, "hkh")

    def hsic_fwd_bwd():
        h, _ = hsic.hbar_loss(x, y, hid, 10, LAMBDA_X, LAMBDA_Y, SIGMA, "hkh")
        torch.autograd.grad(h, hid)

    def kernels_fwd_bwd():   # Gaussian kernels of the 3 hidden layers: pairwise distances + exp, fwd + bwd
        torch.autograd.grad(sum(hsic.gaussian_kernel(h, SIGMA).sum() for h in hid), hid)

    def rest_fwd_bwd():      # from the kernel matrices on: centering, 5 solves, traces, fwd + bwd
        rx = hsic.soft_projection(hsic.center(kx))
        ry = hsic.soft_projection(hsic.center(ky))
        loss = 0.0
        for k in kz:
            rz = hsic.soft_projection(hsic.center(k))
            loss = loss + LAMBDA_X * hsic.trace_of_product(rx, rz) - LAMBDA_Y * hsic.trace_of_product(ry, rz)
        torch.autograd.grad(loss, kz)

    pieces = _common.interleaved_medians({"hsic_forward": hsic_forward, "hsic_forward_backward": hsic_fwd_bwd,
                                          "kernels_forward_backward": kernels_fwd_bwd,
                                          "center_solve_trace_forward_backward": rest_fwd_bwd},
                                         repeats=repeats, warmup=1)
    kd_ms = timings["kd"]["median_s"] * 1000
    bd = {k: round(v["median_s"] * 1000, 2) for k, v in pieces.items()}
    print("  HSIC pieces (ms, median): " + ", ".join(f"{k} {v}" for k, v in bd.items()))
    extra_ms = (timings["kd+hbar"]["median_s"] - timings["kd"]["median_s"]) * 1000
    hidden_dims = [int(h[0].numel()) for h in hid]
    gram_gflop = 2 * BATCH**2 * sum(hidden_dims) / 1e9
    net_gflop = 3 * _lenet3_forward_flops(BATCH) / 1e9
    floor = 1 + 2 * gram_gflop / net_gflop
    analysis = (f"HBaR adds {extra_ms:.0f} ms to a {kd_ms:.0f} ms KD step. The HSIC term alone: "
                f"{bd['hsic_forward_backward']:.0f} ms forward+backward ({bd['hsic_forward']:.0f} ms forward); of "
                f"that, the Gaussian kernels of the hidden layers take {bd['kernels_forward_backward']:.0f} ms and "
                f"centering + the five 128x128 solves + traces {bd['center_solve_trace_forward_backward']:.0f} ms. "
                f"The kernels are Gram matrices of the flattened hidden layers (d = {hidden_dims}): one matrix "
                f"product forward and one backward (hsic.pairwise_sq_dists takes the squared norms from the Gram "
                f"diagonal, and its Gram product has a one-mm backward), {2 * gram_gflop:.2f} GFLOP in all, "
                f"against {net_gflop:.1f} GFLOP for the network's forward+backward. At equal FLOP rates that "
                f"alone puts the ratio at {floor:.2f}; the solves, the KD term and the optimizer step come on top, "
                f"so the ratio sits near the 1.3 target, and on this shared VM run-to-run noise (about 10%) "
                f"decides pass or miss.")
    profile_summary = None
    if ratio > 1.3 or args.profile:
        profile_summary = _profile(hsic_fwd_bwd)
        print("  profile of the HSIC term (fwd+bwd), self CPU ms per call:\n" + profile_summary)
    notes = [("MISS explained: " if ratio > 1.3 else "") + analysis]
    if profile_summary:
        notes.append("torch.profiler, HSIC term forward+backward, top ops by self CPU time (ms per call):\n"
                     + profile_summary)
    figures = [_common.figure("KD+HBaR step / KD step (LeNet-3, batch 128)", ratio, "ratio", TARGET)]
    return {"figures": figures, "notes": notes,
            "details": {"steps": timings, "hsic_pieces_ms": bd, "repeats": repeats, "gram_floor": floor,
                        "kd_step_ms": kd_ms, "hbar_extra_ms": extra_ms, "hidden_dims": hidden_dims}}


def _profile(fn, calls: int = 3, top: int = 8) -> str:
    """Top ops by self CPU time of `calls` calls of fn, in ms per call."""
    from torch.profiler import ProfilerActivity, profile
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            fn()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    total = sum(e.self_cpu_time_total for e in prof.key_averages()) / calls / 1000
    lines = [f"{e.key:<28} {e.self_cpu_time_total / calls / 1000:8.1f} ms  ({e.count // calls} calls)" for e in rows]
    return "\n".join(lines + [f"{'total':<28} {total:8.1f} ms"])


def _lenet3_forward_flops(batch: int) -> float:
    conv1 = 28 * 28 * 32 * 25 * 1 * 2
    conv2 = 14 * 14 * 64 * 32 * 25 * 2
    fc1 = 3136 * 1024 * 2
    fc2 = 1024 * 10 * 2
    return batch * (conv1 + conv2 + fc1 + fc2)


def main(argv=None) -> dict:
    p = _common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 21; quick 3)")
    p.add_argument("--profile", action="store_true", help="profile the HSIC term even when the target is met")
    return _common.run_script("bench_hbar_step", body, p, argv)


if __name__ == "__main__":
    main()
