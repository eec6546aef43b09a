"""Data-parallel training with a sharded wavg bank, launched by torchrun:

    torchrun --nproc_per_node=2 examples/python/train_distributed.py --steps 200 --out /tmp/wavg_ddp

Each rank trains a DistributedDataParallel MLP on its own batches (gloo on CPU, nccl on GPUs) and
its bank holds only its contiguous 1/W of the averages; evaluation swaps the whole average in (the
other ranks' shards are gathered through the process group), rank 0 saves it, and the bank's state
is one file per rank that resumes on any number of ranks (load the list of every rank's state).
"""
import argparse
import os

import torch
import torch.distributed as dist

import wavg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--out", default="/tmp/wavg_ddp")
    args = ap.parse_args()
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")  # torchrun's env://
    rank, world = dist.get_rank(), dist.get_world_size()
    os.makedirs(args.out, exist_ok=True)

    torch.manual_seed(0)  # the same task on every rank; DDP broadcasts rank 0's initial weights
    w_true = torch.randn(4, 16)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.GELU(), torch.nn.Linear(64, 4))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(ddp.parameters(), lr=3e-3)
    # The bank over the DDP model (its `module`'s names): this rank holds its shard only.
    avg = wavg.ModelAverager(ddp, [wavg.Lawa(window=20), wavg.Ema(beta=0.99)],
                             process_group=dist.group.WORLD)
    gen = torch.Generator().manual_seed(1 + rank)  # each rank its own batches
    x_val = torch.randn(512, 16, generator=torch.Generator().manual_seed(99))
    y_val = torch.sin(x_val @ w_true.T)

    def val_loss(m: torch.nn.Module) -> float:
        with torch.no_grad():
            return torch.nn.functional.mse_loss(m(x_val), y_val).item()

    avg.observe(0)
    for step in range(1, args.steps + 1):
        x = torch.randn(32, 16, generator=gen)
        opt.zero_grad()
        torch.nn.functional.mse_loss(ddp(x), torch.sin(x @ w_true.T)).backward()
        opt.step()
        avg.observe(step)
        if step % 50 == 0 or step == args.steps:
            losses = {"raw": val_loss(model)}
            for name in avg.names:  # every rank swaps, in the same order (the gather is collective)
                with avg.swap(name) as m:
                    losses[name] = val_loss(m)
            if rank == 0:
                print(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in losses.items()), flush=True)
    avg.save("ema_b0.99_nu1", os.path.join(args.out, "ema.safetensors"))  # rank 0 writes
    torch.save(avg.state_dict(), os.path.join(args.out, f"bank_rank{rank}_of{world}.pt"))
    dist.barrier()
    if rank == 0:  # the W shards resume on one process (or any other number of ranks)
        one = wavg.ModelAverager(model, [wavg.Lawa(window=20), wavg.Ema(beta=0.99)])
        one.load_state_dict([torch.load(os.path.join(args.out, f"bank_rank{r}_of{world}.pt"))
                             for r in range(world)])
        with one.swap("ema_b0.99_nu1") as m:
            print(f"resharded {world} -> 1: ema val loss {val_loss(m):.4f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
