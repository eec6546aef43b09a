"""wavg.lightning.WeightAveraging (issue 24 §2) against a plain training loop of the same model and
data (and, for LAWA, the naive fp64 mean of the last L weights), validation through the swap, a fit
resumed from an end-of-epoch checkpoint against the uninterrupted fit, bit for bit, and a 2-process
DDP fit (sharded bank) whose checkpoint resumes on one process. Runs with the
pinned pytorch-lightning of scripts/requirements-test.txt; skipped where it is not installed."""
import os
import sys

import pytest
import torch

pl = pytest.importorskip("pytorch_lightning")
import wavg  # noqa: E402
from wavg.lightning import WeightAveraging  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
EPOCHS, N, BATCH = 3, 40, 8  # 5 optimizer steps an epoch
AVERAGERS = [wavg.Lawa(window=4), wavg.Ema(beta=0.8), wavg.Swa(start=2)]
TRAINER = dict(logger=False, enable_progress_bar=False, enable_model_summary=False,
               accelerator="cpu", devices=1, num_sanity_val_steps=0)


def make_net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def dataset(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.TensorDataset(torch.randn(N, 6, generator=g), torch.randn(N, 2, generator=g))


def loader(seed):  # a deterministic sampler: the same batches in the same order every epoch
    return torch.utils.data.DataLoader(dataset(seed), batch_size=BATCH, shuffle=False)


class Regression(pl.LightningModule):
    def __init__(self, seed=0):
        super().__init__()
        self.net = make_net(seed)

    if torch.__version__ < "2":
        # Debian's torch 1.13 under Python 3.11 cannot import torch.distributed._shard (a dataclass
        # with a mutable default), which LightningModule.__init__ imports to register ShardedTensor
        # hooks; nothing here uses ShardedTensor.
        def _register_sharded_tensor_state_dict_hooks_if_available(self):
            pass

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("val_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def plain_loop():
    """The same model, data and optimizer without Lightning: the bank's averages and every step's
    weights (for the naive reference)."""
    net = make_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    avg = wavg.ModelAverager(net, AVERAGERS)
    avg.observe(0)
    history = [{k: v.clone() for k, v in net.state_dict().items()}]
    step = 0
    for _ in range(EPOCHS):
        for x, y in loader(1):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
            step += 1
            avg.observe(step)
            history.append({k: v.clone() for k, v in net.state_dict().items()})
    return net, avg, history


def val_loss_of(state):
    """The mean of the validation batches' losses (as Lightning's mean of val_loss) at `state`."""
    net = make_net()
    net.load_state_dict(state)
    with torch.no_grad():
        losses = [torch.nn.functional.mse_loss(net(x), y) for x, y in loader(2)]
    return torch.stack(losses).double().mean().item()


def assert_same(got, ref, what):
    assert got.keys() == ref.keys(), what
    for k in ref:
        assert torch.equal(got[k], ref[k]), f"{what}: {k} differs"


@pytest.fixture(scope="module")
def plain():
    return plain_loop()


def fit(callback, max_epochs=EPOCHS, ckpt_path=None, callbacks=(), val=True, seed=0):
    module = Regression(seed)
    trainer = pl.Trainer(max_epochs=max_epochs, callbacks=[callback, *callbacks],
                         enable_checkpointing=bool(callbacks), **TRAINER)
    trainer.fit(module, loader(1), loader(2) if val else None, ckpt_path=ckpt_path)
    return module, trainer


def test_callback_averages_equal_the_plain_loop(plain):
    net, avg, history = plain
    cb = WeightAveraging(AVERAGERS, evaluate="each")
    module, trainer = fit(cb)
    assert cb.averager.last_step == EPOCHS * N // BATCH
    assert_same(module.net.state_dict(), net.state_dict(), "trained weights")
    for name in avg.names:
        assert_same(cb.averager.average(name), {"net." + k: v for k, v in avg.average(name).items()},
                    name)
    # LAWA: the naive fp64 mean of the last 4 weights
    lawa = cb.averager.average("lawa_L4_nu1")
    for k, v in history[-1].items():
        ref = torch.stack([h[k].double() for h in history[-4:]]).mean(0)
        torch.testing.assert_close(lawa["net." + k].double(), ref, rtol=0, atol=1e-7)
    # evaluate="each": every average's validation loss logged under its name, the trained one as is
    m = trainer.callback_metrics
    for name in avg.names:
        ref = val_loss_of(avg.average(name))
        assert abs(m[f"val_loss/{name}"].item() - ref) <= 1e-6 * abs(ref), name
    assert abs(m["val_loss"].item() - val_loss_of(net.state_dict())) <= 1e-6


def test_validation_runs_on_the_chosen_average(plain):
    net, avg, _ = plain
    cb = WeightAveraging(AVERAGERS, evaluate="ema_b0.8_nu1")
    module, trainer = fit(cb)
    ref = val_loss_of(avg.average("ema_b0.8_nu1"))
    assert abs(trainer.callback_metrics["val_loss"].item() - ref) <= 1e-6 * abs(ref)
    assert_same(module.net.state_dict(), net.state_dict(), "weights after the swapped validation")


def test_unknown_average_is_refused():
    with pytest.raises(wavg.Error, match="unknown averager 'nope'"):
        fit(WeightAveraging(AVERAGERS, evaluate="nope"), max_epochs=1)


def test_resumed_fit_ends_with_the_same_averages(tmp_path):
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=str(tmp_path), filename="{epoch}", save_top_k=-1,
                                        every_n_epochs=1, save_on_train_epoch_end=True)
    whole = WeightAveraging(AVERAGERS)
    fit(whole, callbacks=[ckpt], val=False)
    first = os.path.join(str(tmp_path), "epoch=0.ckpt")
    saved = torch.load(first, weights_only=False)
    assert any(v.get("shards") for v in saved["callbacks"].values()), "no bank in the checkpoint"
    resumed = WeightAveraging(AVERAGERS)
    fit(resumed, ckpt_path=first, val=False, seed=7)  # the checkpoint restores weights and bank
    assert resumed.averager.last_step == whole.averager.last_step == EPOCHS * N // BATCH
    for name in whole.averager.names:
        assert_same(resumed.averager.average(name), whole.averager.average(name), name)
    assert_same(resumed.averager.state_dict()["arrays"], whole.averager.state_dict()["arrays"],
                "bank state")


def test_ddp_fit_shards_the_bank_and_its_checkpoint_resumes_on_one_process(plain, tmp_path):
    """strategy="ddp" on 2 CPU processes (gloo), the same batches on both ranks: each rank's bank
    holds its half, the averages equal the plain loop's bit for bit, and the end-of-epoch
    checkpoint (every rank's shard) resumes on one process to the same end."""
    sys.path.insert(0, HERE)
    from multiproc import launch
    results = launch("lightning ddp", tmp_path, argv=[sys.executable,
                     os.path.join(HERE, "lightning_ddp_worker.py"), str(tmp_path)])
    for r, (rc, text) in enumerate(results):
        assert rc == 0, f"rank {r}: {text[-3000:]}"
    _, avg, _ = plain
    res = [torch.load(os.path.join(str(tmp_path), f"res{r}.pt")) for r in range(2)]
    assert [r["shard"] for r in res] == [(0, 37), (37, 37)]
    for r in range(2):
        for name in avg.names:
            assert_same(res[r]["averages"][name],
                        {"net." + k: v for k, v in avg.average(name).items()}, f"rank {r} {name}")
    first = os.path.join(str(tmp_path), "epoch=0.ckpt")
    callbacks = torch.load(first, weights_only=False)["callbacks"]  # a Lightning checkpoint
    shards = [v["shards"] for v in callbacks.values() if "shards" in v]
    assert len(shards) == 1 and len(shards[0]) == 2, "the checkpoint lacks a rank's shard"
    resumed = WeightAveraging(AVERAGERS)
    fit(resumed, ckpt_path=first, val=False, seed=7)
    for name in avg.names:
        assert_same(resumed.averager.average(name),
                    {"net." + k: v for k, v in avg.average(name).items()}, f"2 -> 1 {name}")
