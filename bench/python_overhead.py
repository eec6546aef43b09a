#!/usr/bin/env python3
"""What weight averaging costs a plain PyTorch training loop (issue 23 §4): the step time of an
MLP trained with SGD, with no averaging, with the averagers people use today, and with wavg's bank,
in one run, on two models (about 0.5 M and 50 M parameters). Each configuration gets a fresh model
and optimizer, a few warm-up steps and the median of `--steps` timed steps; the baseline (nothing)
runs first and last, so drift in the machine's load shows.

The anchors:
  AveragedModel EMA     torch.optim.swa_utils.AveragedModel with an EMA avg_fn (torch 1.13 has no
                        get_ema_multi_avg_fn): per tensor β·e, (1−β)·x, the sum, a copy.
  foreach EMA           timm's ModelEmaV3 without _foreach_lerp_ (torch 1.13 lacks it):
                        _foreach_mul_(e, β) then _foreach_add_(e, x, alpha=1−β).
  ema-pytorch EMA       lucidrains' ema_pytorch.EMA (pinned in scripts/requirements-test.txt).
  wavg                  wavg.ModelAverager: one staging copy per step feeds the whole bank.

Bytes moved per parameter per step (fp32, reads + writes to memory): foreach EMA 20 (mul: 4 + 4,
add: 4 + 4 + 4); AveragedModel EMA 36 (three elementwise ops and a copy); wavg: the staging copy
(4 + 4) and one fused pass that reads the sample once (4) and per EMA reads and writes its fp32
state (8), per distinct LAWA ν writes one ring slot (4). The bank of 20 (10 LAWA L = 2…50 sharing
one ring, 10 EMA) moves 8 + 4 + 80 + 4 = 96 B; its bound is that traffic at the copy bandwidth
measured in the same run (torch's copy_ of a 256 MiB buffer).

    .venv/bin/python bench/python_overhead.py [--steps 10] [--sizes 0.5e6,50e6]
"""
import argparse
import copy
import os
import platform
import statistics
import time

import torch

import wavg

try:
    from ema_pytorch import EMA as LucidEMA
except ImportError:  # scripts/setup.sh installs it; the row is reported as missing otherwise
    LucidEMA = None


def mlp(params: float) -> torch.nn.Module:
    """Four Linear layers, width chosen for about `params` parameters."""
    width = 64
    while 3 * (2 * width) ** 2 + 2 * width * width < params:
        width += 64
    d, h = width, 2 * width
    return torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.ReLU(), torch.nn.Linear(h, h),
                               torch.nn.ReLU(), torch.nn.Linear(h, h), torch.nn.ReLU(),
                               torch.nn.Linear(h, d))


class ForeachEma:
    """timm ModelEmaV3's update where torch has no _foreach_lerp_."""

    def __init__(self, model: torch.nn.Module, beta: float):
        self.beta = beta
        self.ema = [p.detach().clone() for p in model.parameters()]
        self.src = [p.detach() for p in model.parameters()]

    @torch.no_grad()
    def update(self):
        torch._foreach_mul_(self.ema, self.beta)
        torch._foreach_add_(self.ema, self.src, alpha=1 - self.beta)


def averaged_model_ema(model, beta):
    avg = torch.optim.swa_utils.AveragedModel(
        model, avg_fn=lambda e, x, n: beta * e + (1 - beta) * x)
    return lambda: avg.update_parameters(model)


BANK20 = [wavg.Lawa(window=round(2 + 48 * i / 9)) for i in range(10)] + \
         [wavg.Ema(beta=1 - 10 ** -(1 + 0.3 * i)) for i in range(10)]
EMA10 = [wavg.Ema(beta=1 - 10 ** -(1 + 0.3 * i)) for i in range(10)]

# (name, bytes per parameter per step, factory(model) -> per-step callable)
CONFIGS = [
    ("nothing", 0, lambda m: (lambda: None)),
    ("AveragedModel EMA x1", 36, lambda m: averaged_model_ema(m, 0.999)),
    ("foreach EMA x1", 20, lambda m: ForeachEma(m, 0.999).update),
    ("ema-pytorch EMA x1", 20, lambda m: (lucid(m).update) if LucidEMA else None),
    ("foreach EMA x10", 200, lambda m: chain([ForeachEma(m, 0.99).update for _ in range(10)])),
    ("AveragedModel EMA x20", 720, lambda m: chain([averaged_model_ema(m, 0.99) for _ in range(20)])),
    ("wavg EMA x1", 20, lambda m: observer(m, [wavg.Ema(beta=0.999)], False)),
    ("wavg bank EMA x10", 92, lambda m: observer(m, EMA10, False)),
    ("wavg bank 20 (10 LAWA + 10 EMA)", 96, lambda m: observer(m, BANK20, False)),
    ("wavg bank 20, async", 96, lambda m: observer(m, BANK20, True)),
    ("nothing (again)", 0, lambda m: (lambda: None)),
]


def lucid(m):
    return LucidEMA(m, beta=0.999, update_after_step=0, update_every=1)


def chain(fs):
    def run():
        for f in fs:
            f()
    return run


def observer(model, bank, asynchronous):
    avg = wavg.ModelAverager(model, bank, asynchronous=asynchronous)
    step = iter(range(1 << 62))
    return lambda: avg.observe(next(step))


def time_config(size, factory, steps, warmup=3):
    torch.manual_seed(0)
    model = mlp(size)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    x = torch.randn(32, model[0].in_features)
    update = factory(model)
    if update is None:
        return None
    times = []
    for k in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        opt.step()
        update()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[warmup:])


def copy_bandwidth():
    """GB/s of torch's copy_ (read + write) over 256 MiB, best of 5."""
    a = torch.ones(64 << 20)
    b = torch.empty_like(a)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        b.copy_(a)
        best = min(best, time.perf_counter() - t0)
    return 2 * a.numel() * 4 / best / 1e9


def main():
    ap = argparse.ArgumentParser(description="weight-averaging overhead on a PyTorch loop")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--sizes", default="0.5e6,50e6")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="torch's intra-op threads and wavg's averaging threads (default: cores)")
    args = ap.parse_args()
    # Both sides on the same threads (Debian's torch may start with 1; wavg's default is cores).
    torch.set_num_threads(args.threads)
    wavg.set_threads(args.threads)
    sizes = [float(s) for s in args.sizes.split(",")]
    print(f"== python_overhead: {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads, wavg {wavg.threads()}), "
          f"{platform.processor() or platform.machine()}, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    bw = copy_bandwidth()
    print(f"copy bandwidth (torch copy_, 256 MiB, read + write): {bw:.1f} GB/s")
    results = {}
    for size in sizes:
        numel = sum(p.numel() for p in mlp(size).parameters())
        for name, nbytes, factory in CONFIGS:
            t = time_config(size, factory, args.steps)
            results[(numel, name)] = t
            print(f"  {numel / 1e6:.2f} M  {name}: " +
                  ("not installed" if t is None else f"{t * 1e3:.2f} ms/step"), flush=True)
    numels = sorted({n for n, _ in results})
    head = "| averaging | B/param/step |" + "".join(
        f" {n / 1e6:.2f} M: ms/step | overhead ms | overhead vs wavg EMA x1 |" for n in numels)
    print(head)
    print("|" + "---|" * (2 + 3 * len(numels)))
    for name, nbytes, _ in CONFIGS:
        row = f"| {name} | {nbytes} |"
        for n in numels:
            t, base = results[(n, name)], results[(n, "nothing")]
            ref = results[(n, "wavg EMA x1")] - base
            if t is None:
                row += " not installed | | |"
                continue
            row += f" {t * 1e3:.2f} | {(t - base) * 1e3:.2f} | {(t - base) / ref:.2f} |"
        print(row)
    big = numels[-1]
    base = results[(big, "nothing")]
    for name, nbytes, _ in CONFIGS:
        if name.startswith("wavg bank 20"):
            over = results[(big, name)] - base
            bound = nbytes * big / (bw * 1e9)
            print(f"{name} on {big / 1e6:.1f} M: overhead {over * 1e3:.1f} ms, memory-traffic "
                  f"bound {bound * 1e3:.1f} ms ({nbytes} B x {big} params at {bw:.1f} GB/s): "
                  f"{over / bound:.2f}x the bound")
    py10 = results[(big, "foreach EMA x10")] - base
    wv10 = results[(big, "wavg bank EMA x10")] - base
    fastest = min(results[(big, n)] for n in ("AveragedModel EMA x1", "foreach EMA x1",
                                              "ema-pytorch EMA x1") if results[(big, n)]) - base
    print(f"goals on {big / 1e6:.1f} M: wavg EMA x1 / fastest Python EMA x1 = "
          f"{(results[(big, 'wavg EMA x1')] - base) / fastest:.2f} (goal <= 1); "
          f"10 Python EMAs / wavg bank of 10 EMAs = {py10 / wv10:.2f} (goal >= 2)")
    print(f"load average {os.getloadavg()[0]:.2f} at the end. None of the anchors keeps an online "
          "LAWA window (a Python deque of L model copies re-summed at each readout would)")


if __name__ == "__main__":
    main()
