"""One rank of test_lightning.py's DDP fit (strategy="ddp" on CPU, gloo; started with torchrun's
environment, which Lightning takes as processes launched externally): every rank trains on the same
batches (no distributed sampler), so the trajectory is one process's bit for bit, and the bank is
sharded. Writes OUT/res{rank}.pt (the averages, the shard) and end-of-epoch checkpoints. Usage:
lightning_ddp_worker.py OUT"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_lightning as tl  # noqa: E402
from test_lightning import pl, WeightAveraging  # noqa: E402


def main():
    out = sys.argv[1]
    torch.set_num_threads(1)
    cb = WeightAveraging(tl.AVERAGERS)
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=out, filename="{epoch}", save_top_k=-1,
                                        every_n_epochs=1, save_on_train_epoch_end=True)
    kw = {k: v for k, v in tl.TRAINER.items() if k != "devices"}
    trainer = pl.Trainer(max_epochs=tl.EPOCHS, callbacks=[cb, ckpt], strategy="ddp", devices=2,
                         use_distributed_sampler=False, **kw)
    trainer.fit(tl.Regression(), tl.loader(1))
    torch.save({"averages": {n: cb.averager.average(n) for n in cb.averager.names},
                "shard": cb.averager.shard}, os.path.join(out, f"res{trainer.global_rank}.pt"))


if __name__ == "__main__":
    main()
