"""wavg under torch.distributed: each rank's bank holds its contiguous 1/W shard of the flat sample
(as ``wavg train`` with data parallelism does), and the averages are completed through the process
group from Python (torch.distributed's own collectives; no ProcessGroup ever crosses into C++).
Also the resharding of bank states written by W ranks onto W' ranks."""
from __future__ import annotations

from typing import Dict, List, Mapping, Sequence, Tuple

import torch

from ._wavg import Error

FORMAT = "wavg.ModelAverager/1"


def rank_rows(n: int, rank: int, world: int) -> Tuple[int, int]:
    """Rank ``rank``'s contiguous part of ``n`` elements: (first, count), as the C++ runner's."""
    first, last = n * rank // world, n * (rank + 1) // world
    return first, last - first


def _one_line(e: BaseException) -> str:
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    return lines[0] if lines else type(e).__name__


def group_of(process_group) -> Tuple[object, int, int]:
    """(group, rank, world) of a process group; a one-line wavg.Error if there is none."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        raise Error("ModelAverager: process_group given but torch.distributed is not initialized "
                    "(call torch.distributed.init_process_group first)")
    try:
        return process_group, dist.get_rank(process_group), dist.get_world_size(process_group)
    except (RuntimeError, ValueError) as e:
        raise Error(f"ModelAverager: process_group {process_group!r} is not usable here: "
                    f"{_one_line(e)}") from None


def _collective(what: str, rank: int, world: int, run):
    try:
        return run()
    except RuntimeError as e:  # gloo: a dead peer, a timeout
        raise Error(f"process group: {what} failed on rank {rank} of {world} (another rank died or "
                    f"timed out?): {_one_line(e)}") from None


def _device(group) -> torch.device:
    """Where the group's collectives take their tensors: NCCL's on this rank's GPU, others' on CPU."""
    import torch.distributed as dist
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def check_same_bank(group, rank: int, world: int, numel: int, averagers: int) -> None:
    """Every rank must hold the same model size and bank: checked once, when the bank is built."""
    import torch.distributed as dist
    dev = _device(group)
    mine = torch.tensor([numel, averagers], dtype=torch.int64, device=dev)
    every = [torch.empty_like(mine) for _ in range(world)]
    _collective("checking the model size", rank, world,
                lambda: dist.all_gather(every, mine, group=group))
    mine, every = mine.cpu(), [t.cpu() for t in every]
    for r, t in enumerate(every):
        if not torch.equal(t, mine):
            raise Error(f"ModelAverager: rank {r} has {int(t[0])} elements and {int(t[1])} averagers, "
                        f"rank {rank} {numel} and {averagers}: every rank must average the same model")


def make_gather(group, rank: int, world: int):
    """The C++ bank's shard-gathering hook: ``whole`` (uint8 over the flat average, numel elements
    of esize bytes) has this rank's shard filled; every other rank's is filled on return. Gloo in
    torch 1.13 has no all_gather of uneven sizes: each shard is padded to the largest. NCCL's
    collectives go through this rank's GPU."""
    import torch.distributed as dist
    dev = _device(group)

    def gather(whole: torch.Tensor, numel: int, esize: int) -> None:
        bounds = [rank_rows(numel, r, world) for r in range(world)]
        most = max(c for _, c in bounds) * esize
        first, count = bounds[rank]
        mine = torch.zeros(most, dtype=torch.uint8, device=dev)
        mine[:count * esize] = whole[first * esize:(first + count) * esize].to(dev)
        out = [torch.empty(most, dtype=torch.uint8, device=dev) for _ in range(world)]
        _collective("all_gather of the averages", rank, world,
                    lambda: dist.all_gather(out, mine, group=group))
        for r, (f, c) in enumerate(bounds):
            if r != rank:
                whole[f * esize:(f + c) * esize] = out[r][:c * esize].cpu()
    return gather


def _shard_of(state: Mapping, k: int) -> Tuple[int, int]:
    meta = state["meta"]
    try:
        return int(meta["bank.shard_offset"]), int(meta["bank.shard_length"])
    except (KeyError, ValueError):
        raise Error(f"load_state_dict: shard {k} has no bank.shard_offset/bank.shard_length") from None


def _counters(meta: Mapping[str, str]) -> Dict[str, str]:
    """What must agree between the shards of one state (the C++ runner's bank_counters)."""
    return {k: v for k, v in meta.items()
            if (k.startswith("bank.") and not k.startswith("bank.shard_"))
            or k.startswith("averager.") or k.startswith("ring.")}


def check_state(state: object, k: int) -> Mapping:
    if not isinstance(state, Mapping) or state.get("format") != FORMAT:
        got = state.get("format") if isinstance(state, Mapping) else type(state).__name__
        raise Error(f"load_state_dict: not a wavg.ModelAverager state_dict (format '{got}')")
    if not isinstance(state.get("meta"), Mapping) or not isinstance(state.get("arrays"), Mapping):
        raise Error("load_state_dict: 'meta' and 'arrays' must be dicts")
    return state


def check_tiling(shards: Sequence[Mapping], numel: int) -> List[Tuple[int, int]]:
    """The shards, in rank order, tile [0, numel) and agree on every counter."""
    bounds, nxt = [], 0
    world = shards[0].get("world_size", 1)
    if len(shards) != world:
        raise Error(f"load_state_dict: the state was written by {world} ranks, {len(shards)} "
                    "shards given (give all of them, in rank order)")
    for k, s in enumerate(shards):
        off, length = _shard_of(s, k)
        if off != nxt or length < 0 or length > numel - off:
            raise Error(f"load_state_dict: shard {k} [{off}, +{length}) does not continue the "
                        f"previous one at {nxt} within {numel} elements")
        if _counters(s["meta"]) != _counters(shards[0]["meta"]):
            raise Error(f"load_state_dict: shard {k}'s counters differ from shard 0's "
                        "(shards of different states?)")
        bounds.append((off, length))
        nxt += length
    if nxt != numel:
        raise Error(f"load_state_dict: the shards cover {nxt} of the model's {numel} elements "
                    "(give every rank's shard, in rank order)")
    return bounds


def reshard(shards: Sequence[Mapping], numel: int, offset: int, length: int):
    """This bank's shard [offset, offset + length) cut from the shards of a state written by
    ``len(shards)`` ranks: every state array holds k rows of its shard's length (slot-major: an
    average, a sum, a ring of k slots), so row s is stitched from row s of every old shard."""
    bounds = check_tiling(shards, numel)
    meta = {str(k): str(v) for k, v in shards[0]["meta"].items()}
    meta["bank.shard_offset"], meta["bank.shard_length"] = str(offset), str(length)
    arrays = []
    for name in shards[0]["arrays"]:
        parts = []
        for k, (s, (_, ol)) in enumerate(zip(shards, bounds)):
            a = s["arrays"].get(name)
            if not isinstance(a, torch.Tensor):
                raise Error(f"load_state_dict: shard {k} lacks array '{name}'")
            parts.append((a.detach().cpu().reshape(-1), ol))
        rows = next((a.numel() // ol for a, ol in parts if ol > 0), 0)
        for k, (a, ol) in enumerate(parts):
            if a.numel() != rows * ol or a.dtype != parts[0][0].dtype:
                raise Error(f"load_state_dict: array '{name}' of shard {k} is not {rows} rows of "
                            f"its {ol} elements ({a.numel()} {a.dtype})")
        whole = torch.cat([a.view(rows, ol) for a, ol in parts], dim=1)
        arrays.append((str(name), whole[:, offset:offset + length].contiguous().view(-1)))
    return meta, arrays
