"""wavg from PyTorch: a bank of weight averagers over a live ``torch.nn.Module``.

The averaging, the swaps, the saves and the bank's state are wavg's C++ library (the extension
``wavg._wavg``); this module only names things the Python way. ::

    import wavg
    avg = wavg.ModelAverager(model, [wavg.Lawa(window=20), wavg.Ema(beta=0.9), wavg.Swa(start=500)],
                             buffers="average")
    avg.observe(0)                         # the initial weights (step 0)
    for step in range(1, T + 1):
        ...; optimizer.step()
        avg.observe(step)                  # one copy of the weights for the whole bank
        if step % 100 == 0:
            with avg.swap("lawa_L20_nu1"):  # the model holds the average; restored bit-exactly
                evaluate(model)
    avg.save("ema_b0.9_nu1", "ema.safetensors")
    sd = avg.state_dict(); avg.load_state_dict(sd)   # resume, bit-identical; torch.save-able

Every error of the library is a :class:`wavg.Error`, a ``ValueError`` whose message is the one line
the CLI prints after ``wavg: error:``.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import torch  # first: loads the LibTorch the extension links against

from . import _shards, _wavg
from ._wavg import Error

__all__ = ["Error", "Lawa", "LawaExp", "Ema", "Swa", "Phema", "ModelAverager", "average_checkpoints",
           "update_bn", "set_threads", "threads"]

_POLICIES = ("copy", "average", "recompute")


@dataclass(frozen=True)
class _Options:
    every: int = 1
    start: int = 0
    name: Optional[str] = None
    buffers: Optional[str] = None  # None: the ModelAverager's default

    def _spec(self, default_buffers: str) -> "_wavg._Spec":
        raise NotImplementedError

    def _make(self, scheme: str, default_buffers: str, window: int = 0, beta: float = 0.0,
              alpha: float = 0.0, sigma_rels: Sequence[float] = ()) -> "_wavg._Spec":
        buffers = self.buffers if self.buffers is not None else default_buffers
        return _wavg.make_spec(scheme, int(window), float(beta), float(alpha),
                               [float(s) for s in sigma_rels], int(self.every), int(self.start),
                               self.name or "", buffers)


@dataclass(frozen=True)
class Lawa(_Options):
    """LAWA: the uniform mean of the last ``window`` samples (one every ``every`` steps from
    ``start``), exact, O(N) work per step. Give ``window``, or ``horizon`` (ν·L/T, a fraction of the
    run) with ``total_steps``. Default name ``lawa_L{window}_nu{every}``."""

    window: Optional[int] = None
    horizon: Optional[float] = None
    total_steps: Optional[int] = None

    def _spec(self, default_buffers: str) -> "_wavg._Spec":
        window = self.window
        if self.horizon is not None:
            if window is not None or self.total_steps is None:
                raise Error("lawa: give either window, or horizon with total_steps")
            window = _wavg.lawa_window_for_horizon(float(self.horizon), int(self.every),
                                                   int(self.total_steps))
        if window is None:
            raise Error("lawa: window (L) is missing (or give horizon with total_steps)")
        return self._make("lawa", default_buffers, window=window)


@dataclass(frozen=True)
class LawaExp(_Options):
    """Kaddour's EXP window: the last ``window`` samples weighted ∝ (1 − alpha)^age."""

    window: int = 0
    alpha: float = 0.0

    def _spec(self, default_buffers: str) -> "_wavg._Spec":
        return self._make("lawa_exp", default_buffers, window=self.window, alpha=self.alpha)


@dataclass(frozen=True)
class Ema(_Options):
    """EMA: e ← β·e + (1−β)·x per sample, e₁ = x₁ (fp32 state). Give ``beta`` or ``half_life``
    (in steps). Default name ``ema_b{beta}_nu{every}``."""

    beta: Optional[float] = None
    half_life: Optional[float] = None

    def _spec(self, default_buffers: str) -> "_wavg._Spec":
        beta = self.beta
        if self.half_life is not None:
            if beta is not None:
                raise Error("ema: give either beta or half_life")
            beta = _wavg.ema_beta_for_half_life(float(self.half_life), int(self.every))
        if beta is None:
            raise Error("ema: beta is missing (or give half_life)")
        return self._make("ema", default_buffers, beta=beta)


@dataclass(frozen=True)
class Swa(_Options):
    """SWA: the mean of every sample from ``start`` on (fp64 running sum)."""

    def _spec(self, default_buffers: str) -> "_wavg._Spec":
        return self._make("swa", default_buffers)


@dataclass(frozen=True)
class Phema(_Options):
    """Post-hoc EMA (EDM2): one power-function EMA profile per ``sigma_rels`` entry; pick one with
    ``profile=k`` in swap/save/average (0: the first)."""

    sigma_rels: Sequence[float] = (0.05, 0.10)

    def _spec(self, default_buffers: str) -> "_wavg._Spec":
        return self._make("phema", default_buffers, sigma_rels=self.sigma_rels)


AveragerLike = Union[Lawa, LawaExp, Ema, Swa, Phema]


def set_threads(n: int) -> None:
    """Threads of wavg's averaging kernels (0: the default, min(2, cores)). Not while an
    asynchronous update is running."""
    if int(n) < 0:
        raise Error(f"set_threads: n must be >= 0, got {n}")
    _wavg.set_threads(int(n))


def threads() -> int:
    """Threads wavg's averaging kernels use."""
    return _wavg.threads()


def update_bn(loader, device: Optional[torch.device] = None) -> Callable[[torch.nn.Module], None]:
    """A ``recompute`` function for ``buffers="recompute"``: BatchNorm statistics recomputed over
    ``loader`` with ``torch.optim.swa_utils.update_bn``."""
    def recompute(model: torch.nn.Module) -> None:
        torch.optim.swa_utils.update_bn(loader, model, device)
    return recompute


def _keeping_buffers(model: torch.nn.Module, buffers, recompute) -> Callable[[], None]:
    """``recompute(model)``, after which every buffer is the tensor it was: torch's update_bn
    assigns new running_mean/var tensors, which the C++ averager (holding the originals) would no
    longer see or restore; their values are copied into the originals, which are put back."""
    slots = []
    for name, tensor in buffers:
        owner, _, attr = name.rpartition(".")
        slots.append((model.get_submodule(owner) if owner else model, attr, tensor))

    def run() -> None:
        try:
            recompute(model)
        finally:
            with torch.no_grad():
                for module, attr, tensor in slots:
                    now = module._buffers.get(attr)
                    if now is not tensor:
                        if now is not None and now.shape == tensor.shape:
                            tensor.copy_(now)
                        module._buffers[attr] = tensor
    return run


class ModelAverager:
    """A bank of averagers riding one model's training trajectory.

    ``model``'s parameters and floating buffers (its ``state_dict`` names) form the sample: each
    :meth:`observe` copies them once for the whole bank, and the averages live in CPU memory.
    ``buffers`` is what an averager does with the buffers (BatchNorm statistics) when swapped in:
    ``"copy"`` keeps the model's own, ``"average"`` averages them like parameters, ``"recompute"``
    calls ``recompute(model)`` at the averaged weights (see :func:`update_bn`). Each averager may
    override it (``wavg.Lawa(window=20, buffers="average")``).

    ``asynchronous``: update the bank on a background thread while training goes on (default: on
    for a model on a GPU, where the sample goes to pinned memory on a side stream; off on CPU).

    While a swap is alive on a model's tensors, every other swap, ``observe`` and ``save`` that touch
    them (from any ModelAverager) raise :class:`wavg.Error`. Do not step the optimizer inside a swap.

    ``process_group`` (a ``torch.distributed`` group, e.g. ``torch.distributed.group.WORLD``): each
    rank's bank holds only its contiguous 1/W shard of the flat sample; ``swap``, ``average`` and
    ``save`` gather the others' shards through the group (every rank must call them, in the same
    order; ``save`` writes on rank 0 only), and :meth:`state_dict` is this rank's shard. A model
    wrapped in ``DistributedDataParallel`` is averaged as its ``module`` (names without
    ``module.``), and ``swap`` yields that module.
    """

    def __init__(self, model: torch.nn.Module, averagers: Sequence[AveragerLike],
                 buffers: str = "copy",
                 recompute: Optional[Callable[[torch.nn.Module], None]] = None,
                 asynchronous: Optional[bool] = None, process_group=None) -> None:
        if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            model = model.module
        if not isinstance(model, torch.nn.Module):
            raise Error(f"ModelAverager: model must be a torch.nn.Module, got {type(model).__name__}")
        if buffers not in _POLICIES:
            raise Error(f"unknown buffer policy '{buffers}' (copy, average, recompute)")
        specs = []
        for a in averagers:
            if not isinstance(a, _Options):
                raise Error(f"ModelAverager: {a!r} is not an averager (wavg.Lawa, wavg.Ema, ...)")
            specs.append(a._spec(buffers))
        if not specs:
            raise Error("ModelAverager: no averagers")
        persistent = set(model.state_dict(keep_vars=True).keys())
        params = list(model.named_parameters())
        bufs = [(n, b) for n, b in model.named_buffers() if n in persistent]
        self._model = model
        self._order = list(model.state_dict(keep_vars=True).keys())
        callback = _keeping_buffers(model, bufs, recompute) if recompute is not None else None
        self._impl = _wavg._ModelAverager(params, bufs, specs, callback)
        self._rank, self._world = 0, 1
        if process_group is not None:
            self._join(process_group)
        if asynchronous is not None:
            self._impl.set_async(bool(asynchronous))

    def _join(self, process_group) -> None:
        group, self._rank, self._world = _shards.group_of(process_group)
        numel = self._impl.numel()
        _shards.check_same_bank(group, self._rank, self._world, numel, self._impl.size())
        first, count = _shards.rank_rows(numel, self._rank, self._world)
        self._impl.set_shard(first, count, _shards.make_gather(group, self._rank, self._world))

    @property
    def rank(self) -> int:
        """This process's rank in the process group (0 without one)."""
        return self._rank

    @property
    def world_size(self) -> int:
        """Ranks sharing the bank (1 without a process group)."""
        return self._world

    @property
    def shard(self) -> "tuple[int, int]":
        """(offset, length): the part of the flat sample this rank's bank holds."""
        return tuple(self._impl.shard())

    @property
    def names(self) -> List[str]:
        """The averagers' names, in the order given."""
        return [self._impl.name(i) for i in range(self._impl.size())]

    @property
    def model(self) -> torch.nn.Module:
        return self._model

    def _index(self, name: str) -> int:
        if not isinstance(name, str):
            raise Error(f"averager name must be a str, got {type(name).__name__}")
        return self._impl.find(name)

    def observe(self, step: int) -> None:
        """Samples the model after ``step`` optimizer steps (steps increase; 0: the initial
        weights). One staging copy feeds the whole bank; a NaN/Inf is refused naming the tensor."""
        self._impl.observe(int(step))

    def wait(self) -> None:
        """Waits for an in-flight background update (asynchronous mode)."""
        self._impl.wait()

    @contextlib.contextmanager
    def swap(self, name: str, profile: int = 0) -> Iterator[torch.nn.Module]:
        """Puts averager ``name`` into the model for the ``with`` block and restores the model
        bit-exactly on exit, also when the block raises. Yields the model."""
        s = self._impl.swap_in(self._index(name), int(profile))
        try:
            yield self._model
        finally:
            s.close()

    def average(self, name: str, profile: int = 0) -> Dict[str, torch.Tensor]:
        """Averager ``name`` as a ``state_dict``: every parameter and buffer under its name, as the
        model would hold it in a swap (copies)."""
        d = self._impl.average(self._index(name), int(profile))
        return {k: d[k] for k in self._order if k in d}

    def save(self, name: str, path: str, metadata: Optional[Mapping[str, str]] = None,
             profile: int = 0) -> None:
        """Writes averager ``name`` as a safetensors file (state_dict names, atomically, with a
        checksum), as the CLI and the C++ API do. Under a process group every rank takes part in
        the gather and rank 0 writes."""
        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        if self._rank == 0:
            self._impl.save(self._index(name), str(path), meta, int(profile))
        else:  # the same gather as rank 0's save (or none, inside a swap of the same averager)
            self._impl.average(self._index(name), int(profile))

    def samples(self, name: str) -> int:
        """Samples averager ``name`` has taken (LAWA averages the last min(n, L) of them)."""
        return self._impl.samples(self._index(name))

    def describe(self, name: str) -> str:
        return self._impl.describe(self._index(name))

    @property
    def last_step(self) -> int:
        """The last step observed (-1 before the first)."""
        return self._impl.last_step()

    @property
    def asynchronous(self) -> bool:
        """Whether observe() leaves the bank update to a background thread."""
        return self._impl.is_async()

    @asynchronous.setter
    def asynchronous(self, on: bool) -> None:
        self._impl.set_async(bool(on))

    @property
    def staged_samples(self) -> int:
        """Samples staged so far: one copy of the model per observed step, whatever the bank."""
        return self._impl.staged_samples()

    @property
    def staged_bytes(self) -> int:
        """Bytes those staging copies wrote."""
        return self._impl.staged_bytes()

    @property
    def state_bytes(self) -> int:
        """Bytes of averager state the bank holds (CPU memory)."""
        return self._impl.state_bytes()

    def state_dict(self) -> Dict[str, object]:
        """The bank's exact state (plain dicts, strings and CPU tensors: torch.save-able). Under a
        process group: this rank's shard (``meta``'s bank.shard_offset/length), with ``rank`` and
        ``world_size``."""
        return {"format": _shards.FORMAT, "meta": dict(self._impl.state_meta()),
                "arrays": dict(self._impl.state_arrays()), "rank": self._rank,
                "world_size": self._world}

    def load_state_dict(self, state: Union[Mapping[str, object], Sequence[Mapping[str, object]]]
                        ) -> None:
        """Restores a :meth:`state_dict` of a ModelAverager with the same averagers over the same
        model; training then continues bit-identically. On a refusal the bank is unchanged.

        ``state`` is one state (this rank's shard, or a whole bank) or the list of every rank's
        shards of one state, in rank order: a state written by W ranks loads on W' ranks (or
        without a process group) by cutting this rank's part from them (resharding)."""
        shards = [state] if isinstance(state, Mapping) or not isinstance(state, Sequence) else state
        if not shards:
            raise Error("load_state_dict: an empty list of shards")
        shards = [_shards.check_state(s, k) for k, s in enumerate(shards)]
        offset, length = self._impl.shard()
        meta, arrays = shards[0]["meta"], shards[0]["arrays"]
        if len(shards) == 1 and ("bank.shard_offset" not in meta
                                 or _shards._shard_of(shards[0], 0) == (offset, length)):
            self._impl.load_state({str(k): str(v) for k, v in meta.items()},
                                  [(str(k), v) for k, v in arrays.items()])
            return
        meta, arrays = _shards.reshard(shards, self._impl.numel(), offset, length)
        self._impl.load_state(meta, arrays)


def average_checkpoints(paths: Sequence[str], out: str, averager: AveragerLike,
                        dtype: Optional[str] = None, weights: Optional[Sequence[float]] = None,
                        strip_prefixes: Sequence[str] = (), overwrite: bool = False,
                        saturate: bool = False) -> Dict[str, object]:
    """``wavg average`` as a function: averages the checkpoints ``paths`` (safetensors files,
    sharded indexes or directories; path i is step i of the averager's sampling rule) into ``out``.
    Returns the report (the weights used, files read, tensors written)."""
    spec = averager._spec("copy")
    return _wavg.average_checkpoints([str(p) for p in paths], str(out), spec, dtype,
                                     [float(w) for w in (weights or [])], list(strip_prefixes),
                                     bool(overwrite), bool(saturate))
