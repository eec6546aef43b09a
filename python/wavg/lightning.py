"""wavg inside PyTorch Lightning: a callback that rides a ``Trainer.fit`` with a bank of averagers.

    from wavg.lightning import WeightAveraging
    cb = WeightAveraging([wavg.Lawa(window=20), wavg.Ema(beta=0.999)], evaluate="ema_b0.999_nu1")
    trainer = pl.Trainer(callbacks=[cb], ...); trainer.fit(module, train_loader, val_loader)
    cb.averager.save("ema_b0.999_nu1", "ema.safetensors")

- The bank observes the initial weights (step 0) when training starts and the weights after every
  optimizer step (``trainer.global_step``) in ``on_train_batch_end`` (gradient accumulation: once
  per optimizer step).
- ``evaluate=name``: Lightning's validation loop runs on that average (swapped in for the loop and
  restored bit-exactly after it; the trained weights while the averager is still empty).
  ``evaluate="each"`` (or a list of names): the loop runs on the trained weights as usual, then
  every average is swapped in and ``validation_step``'s returned values (a tensor or a dict of
  them), averaged over the validation batches, are logged as ``<key>/<averager>`` (``val_loss``
  returned as a tensor: ``val_loss/<averager>`` needs ``log_key``).
- The bank's state is part of Lightning's checkpoint (the callback's ``state_dict``) and comes back
  on ``fit(ckpt_path=...)``; the run then continues bit-identically.
- Under DDP (a ``torch.distributed`` process group), each rank's bank holds its 1/W shard; the
  checkpoint holds every rank's shard, so it resumes on any number of ranks.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

import pytorch_lightning as pl
import torch

from . import Error, ModelAverager


class WeightAveraging(pl.Callback):
    """A bank of wavg averagers over the LightningModule, as a Lightning callback. ``averagers``,
    ``buffers``, ``recompute`` and ``asynchronous`` are :class:`wavg.ModelAverager`'s;
    ``evaluate``: ``None`` (validate the trained weights), an averager's name, ``"each"`` or a list
    of names; ``log_key``: the name a tensor returned by ``validation_step`` is logged under."""

    def __init__(self, averagers: Sequence[Any], buffers: str = "copy", recompute=None,
                 asynchronous: Optional[bool] = None,
                 evaluate: Union[None, str, Sequence[str]] = None, log_key: str = "val_loss") -> None:
        self._args = (list(averagers), buffers, recompute, asynchronous)
        self._evaluate = evaluate
        self._log_key = log_key
        self._avg: Optional[ModelAverager] = None
        self._pending: Optional[Dict[str, Any]] = None  # a checkpoint's state, before setup
        self._swap = None

    @property
    def averager(self) -> ModelAverager:
        """The :class:`wavg.ModelAverager` (after the Trainer's setup)."""
        if self._avg is None:
            raise Error("WeightAveraging: no averager before Trainer.fit has set the callback up")
        return self._avg

    # -- the bank --------------------------------------------------------------------------------

    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        if self._avg is not None:
            return
        group = None
        if trainer.world_size > 1 and torch.distributed.is_initialized():
            group = torch.distributed.group.WORLD
        averagers, buffers, recompute, asynchronous = self._args
        self._avg = ModelAverager(pl_module, averagers, buffers=buffers, recompute=recompute,
                                  asynchronous=asynchronous, process_group=group)
        if isinstance(self._evaluate, str) and self._evaluate != "each":
            self._avg._index(self._evaluate)  # an unknown name fails now, naming the known ones
        if self._pending is not None:
            self._restore(self._pending)

    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if trainer.global_step == 0 and self.averager.last_step < 0:
            self.averager.observe(0)  # the initial weights (not again on a resume)

    def on_train_batch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule",
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if step > self.averager.last_step:  # an optimizer step was taken
            self.averager.observe(step)

    def state_dict(self) -> Dict[str, Any]:
        if self._avg is None:
            return {} if self._pending is None else self._pending
        self._avg.wait()
        mine = self._avg.state_dict()
        if self._avg.world_size == 1:
            return {"shards": [mine]}
        shards: List[Any] = [None] * self._avg.world_size
        torch.distributed.all_gather_object(shards, mine)  # rank 0 writes the checkpoint
        return {"shards": shards}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        if not state_dict:
            return
        if self._avg is None:
            self._pending = dict(state_dict)
        else:
            self._restore(state_dict)

    def _restore(self, state: Dict[str, Any]) -> None:
        shards = state.get("shards")
        if not isinstance(shards, list) or not shards:
            raise Error("WeightAveraging: the checkpoint's callback state has no bank shards")
        # One shard of the same world size: this rank's; otherwise this rank's part is cut.
        same = len(shards) == self.averager.world_size
        self.averager.load_state_dict(shards[self.averager.rank] if same else shards)
        self._pending = None

    # -- validation through the swap ---------------------------------------------------------------

    def _single(self) -> Optional[str]:
        e = self._evaluate
        return e if isinstance(e, str) and e != "each" else None

    def on_validation_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        name = self._single()
        if name is not None and self._avg is not None and self._avg.samples(name) > 0:
            self._swap = self._avg.swap(name)
            self._swap.__enter__()

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._close_swap()

    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule",
                     exception: BaseException) -> None:
        self._close_swap()

    def _close_swap(self) -> None:
        if self._swap is not None:
            swap, self._swap = self._swap, None
            swap.__exit__(None, None, None)

    def _names(self) -> List[str]:
        e = self._evaluate
        if e is None or self._single() is not None:
            return []
        return self.averager.names if e == "each" else [str(n) for n in e]

    def on_validation_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if trainer.sanity_checking or self._avg is None:
            return
        for name in self._names():
            if self._avg.samples(name) == 0:
                continue
            with self._avg.swap(name):
                means = self._evaluate_loaders(trainer, pl_module)
            for key, value in means.items():
                pl_module.log(f"{key}/{name}", value, sync_dist=trainer.world_size > 1)

    def _evaluate_loaders(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule"
                          ) -> Dict[str, torch.Tensor]:
        """validation_step's returned values over every validation batch, averaged; the module's
        own self.log calls are muted meanwhile (they would log the average as the trained one)."""
        loaders = trainer.val_dataloaders
        loaders = list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]
        sums: Dict[str, torch.Tensor] = {}
        batches = 0
        pl_module.log = lambda *a, **k: None  # an instance attribute over the method
        try:
            with torch.no_grad():
                for k, loader in enumerate(loaders):
                    for i, batch in enumerate(loader):
                        batch = trainer.strategy.batch_to_device(batch)
                        extra = (k,) if len(loaders) > 1 else ()
                        out = pl_module.validation_step(batch, i, *extra)
                        if isinstance(out, torch.Tensor):
                            out = {self._log_key: out}
                        for key, v in (out or {}).items():
                            v = torch.as_tensor(v, dtype=torch.float64).detach().cpu()
                            sums[key] = sums.get(key, 0) + v
                        batches += 1
        finally:
            del pl_module.log
        return {key: s / max(batches, 1) for key, s in sums.items()}
