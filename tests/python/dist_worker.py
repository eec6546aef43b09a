"""One rank of tests/python/test_distributed.py's 2-process runs (gloo over 127.0.0.1), and the
model, data and trajectory both sides share. Usage: dist_worker.py SCENARIO RANK WORLD PORT OUT.

  train: DDP-wrapped SGD on the same batches on every rank (so the trajectory is one process's, bit
         for bit: DDP's mean of equal gradients is exact) with a sharded ModelAverager; writes the
         averages, a swap, a save, the mid and end shard states, a bank resharded from the one-process
         state OUT/mid_single.pt, and the end state reloaded (same world size) to OUT/*_rank{r}.pt.
  dead:  rank 1 dies after the bank is built; rank 0's next gather must fail with one line
         (`wavg: error: ...` on stderr, exit 2), not hang.
"""
import datetime
import os
import sys

import torch

T, MID = 12, 6


def make_model():
    torch.manual_seed(0)  # 35 + 28 + 24 = 87 elements: the shards of 2 ranks are uneven (43, 44)
    return torch.nn.Sequential(torch.nn.Linear(5, 7, bias=False), torch.nn.BatchNorm1d(7),
                               torch.nn.ReLU(), torch.nn.Linear(7, 3))


def averagers(wavg):
    return [wavg.Lawa(window=4), wavg.Ema(beta=0.9), wavg.Swa(start=3, every=2),
            wavg.LawaExp(window=3, alpha=0.2)]


def batch(step):
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randn(8, 5, generator=g), torch.randn(8, 3, generator=g)


def sgd_step(model, opt, step):
    x, y = batch(step)
    model.train()
    opt.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.step()


def floating_state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}


def train(rank, out, wavg, pg):
    model = make_model()
    ddp = torch.nn.parallel.DistributedDataParallel(model, process_group=pg)
    avg = wavg.ModelAverager(ddp, averagers(wavg), buffers="average", process_group=pg)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    res = {"shard": avg.shard, "names": avg.names}
    avg.observe(0)
    resharded = None
    for step in range(1, T + 1):
        sgd_step(ddp, opt, step)
        avg.observe(step)
        if resharded is not None:
            resharded.observe(step)
        if step == MID:
            with avg.swap("lawa_L4_nu1") as m:
                res["swapped"] = floating_state(m)
            torch.save(avg.state_dict(), os.path.join(out, f"mid_rank{rank}.pt"))
            # A 1-process state loaded on 2 ranks: each cuts its slice, then rides on.
            resharded = wavg.ModelAverager(ddp, averagers(wavg), buffers="average", process_group=pg)
            resharded.load_state_dict(torch.load(os.path.join(out, "mid_single.pt")))
    res["averages"] = {n: avg.average(n) for n in avg.names}
    res["resharded"] = {n: resharded.average(n) for n in avg.names}
    avg.save("ema_b0.9_nu1", os.path.join(out, "ema.safetensors"))
    end = avg.state_dict()
    torch.save(end, os.path.join(out, f"end_rank{rank}.pt"))
    reloaded = wavg.ModelAverager(ddp, averagers(wavg), buffers="average", process_group=pg)
    reloaded.load_state_dict(torch.load(os.path.join(out, f"end_rank{rank}.pt")))
    res["reloaded"] = {n: reloaded.average(n) for n in avg.names}
    res["reloaded_state"] = reloaded.state_dict()
    torch.save(res, os.path.join(out, f"result_rank{rank}.pt"))


def dead(rank, wavg, pg):
    avg = wavg.ModelAverager(make_model(), [wavg.Lawa(window=2)], process_group=pg)
    avg.observe(0)
    if rank == 1:
        os._exit(3)  # no goodbye: the peer sees its sockets close
    try:
        avg.average("lawa_L2_nu1")
    except wavg.Error as e:
        print(f"wavg: error: {e}", file=sys.stderr, flush=True)
        os._exit(2)  # the process group's teardown would wait for the dead peer
    print("the gather with a dead rank returned", file=sys.stderr)
    os._exit(1)


def main():
    scenario, rank, world, port, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    torch.set_num_threads(1)
    import torch.distributed as dist
    import wavg
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=30))
    pg = dist.group.WORLD
    if scenario == "train":
        train(rank, out, wavg, pg)
    else:
        dead(rank, wavg, pg)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
