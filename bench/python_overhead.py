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
    steps_t, updates_t = [], []
    for k in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        opt.step()
        t1 = time.perf_counter()
        update()
        t2 = time.perf_counter()
        steps_t.append(t2 - t0)
        updates_t.append(t2 - t1)
    # The step's median, and the averaging call's fastest time: on a shared machine the minimum is
    # the time the work itself takes, what other processes add is not.
    return statistics.median(steps_t[warmup:]), min(updates_t[warmup:])


def copy_bandwidth():
    """GB/s of torch's copy_ (read + write) over 256 MiB, best of 10."""
    a = torch.ones(64 << 20)
    b = torch.zeros_like(a)  # touched: no page faults in the timed copies
    best = float("inf")
    for _ in range(10):
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
            print(f"  {numel / 1e6:.2f} M  {name}: " + ("not installed" if t is None else
                  f"{t[0] * 1e3:.2f} ms/step, averaging call {t[1] * 1e3:.3f} ms"), flush=True)
    numels = sorted({n for n, _ in results})
    # Overhead: the averaging call's time (async: what observe() costs the training thread; the
    # update itself runs beside the next step).
    head = "| averaging | B/param/step |" + "".join(
        f" {n / 1e6:.2f} M: step ms (median) | averaging ms (min) | vs wavg EMA x1 |" for n in numels)
    print(head)
    print("|" + "---|" * (2 + 3 * len(numels)))
    for name, nbytes, _ in CONFIGS:
        row = f"| {name} | {nbytes} |"
        for n in numels:
            t = results[(n, name)]
            if t is None:
                row += " not installed | | |"
                continue
            ref = results[(n, "wavg EMA x1")][1]
            row += f" {t[0] * 1e3:.2f} | {t[1] * 1e3:.3f} | {t[1] / ref:.2f} |"
        print(row)
    big = numels[-1]
    over = {name: results[(big, name)][1] for name, _, _ in CONFIGS if results[(big, name)]}
    for name, nbytes, _ in CONFIGS:
        if name == "wavg bank 20 (10 LAWA + 10 EMA)":
            bound = nbytes * big / (bw * 1e9)
            print(f"{name} on {big / 1e6:.1f} M: {over[name] * 1e3:.1f} ms per step, memory-traffic "
                  f"bound {bound * 1e3:.1f} ms ({nbytes} B x {big} params at {bw:.1f} GB/s): "
                  f"{over[name] / bound:.2f}x the bound (goal <= 1.2)")
    fastest = min(over[n] for n in ("AveragedModel EMA x1", "foreach EMA x1", "ema-pytorch EMA x1")
                  if n in over)
    print(f"goals on {big / 1e6:.1f} M: wavg EMA x1 / fastest Python EMA x1 = "
          f"{over['wavg EMA x1'] / fastest:.2f} (goal <= 1); 10 Python EMAs / wavg bank of 10 "
          f"EMAs = {over['foreach EMA x10'] / over['wavg bank EMA x10']:.2f} (goal >= 2)")
    print(f"load average {os.getloadavg()[0]:.2f} at the end. None of the anchors keeps an online "
          "LAWA window (a Python deque of L model copies re-summed at each readout would)")


if __name__ == "__main__":
    main()
