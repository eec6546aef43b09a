"""A complete training loop with a wavg bank (the Python counterpart of
examples/train_with_averaging.cpp): a small CNN-free MLP with BatchNorm on a synthetic regression
task, AdamW, and four averagers riding the run. Every `--eval-every` steps the raw model and each
average are evaluated on held-out data, the averages swapped into the model itself (no copy of the
model is made); at the end the EMA is saved as safetensors and the bank's state round-trips.

    .venv/bin/python examples/python/train_with_averaging.py --steps 300 --out /tmp/wavg_example
"""
import argparse
import os

import torch

import wavg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--out", default="/tmp/wavg_example")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)

    # The task: y = sin(W x) + noise, with a fixed random W.
    w_true = torch.randn(8, 32)
    def batch(n: int):
        x = torch.randn(n, 32)
        return x, torch.sin(x @ w_true.T) + 0.1 * torch.randn(n, 8)
    x_val, y_val = batch(2048)
    train_batches = [batch(64) for _ in range(16)]  # also used to recompute BatchNorm statistics

    model = torch.nn.Sequential(torch.nn.Linear(32, 128), torch.nn.BatchNorm1d(128),
                                torch.nn.GELU(), torch.nn.Linear(128, 8))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.steps)

    # The bank: one staging copy of the weights per step feeds all four averagers.
    #   LAWA: the mean of the last 20 samples (exact, O(N) work per step).
    #   EMA: half-life of 25 steps (beta = 0.5^(1/25)).
    #   SWA: the mean of every sample from step 100 on.
    #   EXP: the last 20 samples weighted by (1 - 0.1)^age.
    # buffers="average" averages BatchNorm's running statistics like the weights; the SWA also
    # shows "recompute": its statistics are recomputed at its weights (torch's update_bn).
    avg = wavg.ModelAverager(
        model,
        [wavg.Lawa(window=20), wavg.Ema(half_life=25), wavg.Swa(start=100, buffers="recompute"),
         wavg.LawaExp(window=20, alpha=0.1)],
        buffers="average",
        recompute=wavg.update_bn([x for x, _ in train_batches]))
    print("averagers:", ", ".join(avg.names))

    def evaluate() -> float:
        model.eval()
        with torch.no_grad():
            return torch.nn.functional.mse_loss(model(x_val), y_val).item()

    avg.observe(0)  # the initial weights are step 0
    for step in range(1, args.steps + 1):
        model.train()
        x, y = train_batches[step % len(train_batches)]
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        sched.step()
        avg.observe(step)  # after `step` optimizer steps
        if step % args.eval_every == 0 or step == args.steps:
            row = [f"step {step:4d}  raw {evaluate():.4f}"]
            for name in avg.names:
                if avg.samples(name) == 0:
                    continue  # SWA starts at step 100
                with avg.swap(name):  # the model holds the average here...
                    row.append(f"{name} {evaluate():.4f}")
                # ...and its own weights again here, bit-exactly
            print("  ".join(row))

    path = os.path.join(args.out, "ema.safetensors")
    avg.save(avg.names[1], path)  # state_dict names: load with safetensors or `wavg eval`
    print("saved", avg.names[1], "to", path)

    # Resume: the bank's state is a plain dict of tensors and strings (torch.save-able).
    torch.save(avg.state_dict(), os.path.join(args.out, "bank.pt"))
    again = wavg.ModelAverager(model, [wavg.Lawa(window=20), wavg.Ema(half_life=25),
                                       wavg.Swa(start=100, buffers="recompute"),
                                       wavg.LawaExp(window=20, alpha=0.1)],
                               buffers="average",
                               recompute=wavg.update_bn([x for x, _ in train_batches]))
    again.load_state_dict(torch.load(os.path.join(args.out, "bank.pt")))
    same = all(torch.equal(again.average("lawa_L20_nu1")[k], v)
               for k, v in avg.average("lawa_L20_nu1").items())
    print("bank state restored bit-identically:", same)


if __name__ == "__main__":
    main()
