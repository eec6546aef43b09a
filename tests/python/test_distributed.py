"""wavg under torch.distributed (issue 24 §1): 2 local processes on gloo over 127.0.0.1, each rank's
bank holding its 1/W shard. The reference is one process riding the same trajectory without a
process group (the package's one-process averages are themselves checked against AveragedModel, a
deque and the fp64 EMA recurrence in test_wavg.py): the averages, a swap, a save, and states
resharded 2 -> 1 and 1 -> 2 must equal it bit for bit; a dead rank must make the other fail with
one line. Every launch is bounded in time and its processes are killed on failure."""
import os
import sys
import time

import pytest
import torch

import wavg

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))  # tests/wavg_testlib.py: the shared safetensors I/O
import dist_worker as dw  # noqa: E402
from multiproc import launch  # noqa: E402
import wavg_testlib  # noqa: E402

pytestmark = pytest.mark.skipif(not (torch.distributed.is_available()
                                     and torch.distributed.is_gloo_available()),
                                reason="torch without gloo")


def single_run(out):
    """The one-process reference: the same trajectory, no process group. Returns the averages, the
    swap at MID, the end state, and the model/optimizer at MID for the 2 -> 1 resume."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks
    try:
        model = dw.make_model()
        avg = wavg.ModelAverager(model, dw.averagers(wavg), buffers="average")
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        ref = {}
        avg.observe(0)
        for step in range(1, dw.T + 1):
            dw.sgd_step(model, opt, step)
            avg.observe(step)
            if step == dw.MID:
                with avg.swap("lawa_L4_nu1") as m:
                    ref["swapped"] = dw.floating_state(m)
                torch.save(avg.state_dict(), os.path.join(out, "mid_single.pt"))
                ref["mid_model"] = {k: v.clone() for k, v in model.state_dict().items()}
                ref["mid_opt"] = torch.load(_saved(opt.state_dict(), out))
        ref["averages"] = {n: avg.average(n) for n in avg.names}
        ref["state"] = avg.state_dict()
        avg.save("ema_b0.9_nu1", os.path.join(out, "ema_single.safetensors"))
        return ref
    finally:
        torch.set_num_threads(threads)


def _saved(obj, out):
    path = os.path.join(out, "deep_copy.pt")
    torch.save(obj, path)
    return path


def assert_same(got, ref, what):
    assert got.keys() == ref.keys(), what
    for k in ref:
        assert got[k].dtype == ref[k].dtype and torch.equal(got[k], ref[k]), f"{what}: {k} differs"


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    ref = single_run(str(out))
    results = launch("train", out)
    for r, (rc, err) in enumerate(results):
        assert rc == 0, f"rank {r} exited {rc}: {err[-2000:]}"
    res = [torch.load(os.path.join(out, f"result_rank{r}.pt")) for r in range(2)]
    return out, ref, res


def test_ranks_hold_uneven_contiguous_shards(two_ranks):
    out, _, res = two_ranks
    assert [r["shard"] for r in res] == [(0, 43), (43, 44)]
    for r in range(2):  # each rank's state is its shard: 1/W of the bank's memory
        sd = torch.load(os.path.join(out, f"end_rank{r}.pt"))
        assert (sd["rank"], sd["world_size"]) == (r, 2)
        assert sd["meta"]["bank.shard_length"] == str(res[r]["shard"][1])
        one = two_ranks[1]["state"]["arrays"]
        for name, a in sd["arrays"].items():
            assert a.numel() * 87 == one[name].numel() * res[r]["shard"][1], name


def test_sharded_averages_equal_one_process_bit_for_bit(two_ranks):
    _, ref, res = two_ranks
    for r in range(2):
        assert list(res[r]["averages"]) == list(ref["averages"])
        for name in ref["averages"]:
            assert_same(res[r]["averages"][name], ref["averages"][name], f"rank {r} {name}")
        assert_same(res[r]["swapped"], ref["swapped"], f"rank {r}: the swap at step {dw.MID}")


def test_sharded_save_equals_one_process(two_ranks):
    out = two_ranks[0]
    got, meta = wavg_testlib.read_safetensors(os.path.join(out, "ema.safetensors"))
    ref, ref_meta = wavg_testlib.read_safetensors(os.path.join(out, "ema_single.safetensors"))
    assert meta == ref_meta and got.keys() == ref.keys()
    for k in ref:
        assert got[k].dtype == ref[k].dtype and got[k].tobytes() == ref[k].tobytes(), k


def test_same_world_reload_is_bit_exact(two_ranks):
    out, _, res = two_ranks
    for r in range(2):
        saved = torch.load(os.path.join(out, f"end_rank{r}.pt"))
        assert saved["meta"] == res[r]["reloaded_state"]["meta"]
        assert_same(res[r]["reloaded_state"]["arrays"], saved["arrays"], f"rank {r} state")
        for name in res[r]["averages"]:
            assert_same(res[r]["reloaded"][name], res[r]["averages"][name], f"rank {r} {name}")


def test_one_process_state_resumes_on_two_ranks(two_ranks):
    _, ref, res = two_ranks
    for r in range(2):
        for name in ref["averages"]:
            assert_same(res[r]["resharded"][name], ref["averages"][name], f"1 -> 2, rank {r} {name}")


def test_two_rank_state_resumes_on_one_process(two_ranks):
    out, ref, _ = two_ranks
    # The end state: its two shards stitched into one bank hold the one-process bank exactly.
    end = [torch.load(os.path.join(out, f"end_rank{r}.pt")) for r in range(2)]
    avg = wavg.ModelAverager(dw.make_model(), dw.averagers(wavg), buffers="average")
    avg.load_state_dict(end)
    assert_same(avg.state_dict()["arrays"], ref["state"]["arrays"], "2 -> 1 end state")
    # The mid state: resumed on one process at step MID, trained to T, the same averages.
    model = dw.make_model()
    model.load_state_dict(ref["mid_model"])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    opt.load_state_dict(ref["mid_opt"])
    avg = wavg.ModelAverager(model, dw.averagers(wavg), buffers="average")
    avg.load_state_dict([torch.load(os.path.join(out, f"mid_rank{r}.pt")) for r in range(2)])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for step in range(dw.MID + 1, dw.T + 1):
            dw.sgd_step(model, opt, step)
            avg.observe(step)
    finally:
        torch.set_num_threads(threads)
    for name in ref["averages"]:
        assert_same(avg.average(name), ref["averages"][name], f"2 -> 1 resumed {name}")


def test_incomplete_shards_are_refused(two_ranks):
    out = two_ranks[0]
    end = [torch.load(os.path.join(out, f"end_rank{r}.pt")) for r in range(2)]
    avg = wavg.ModelAverager(dw.make_model(), dw.averagers(wavg), buffers="average")
    before = avg.state_dict()
    with pytest.raises(wavg.Error, match="written by 2 ranks, 1 shards given"):
        avg.load_state_dict(end[1])
    with pytest.raises(wavg.Error, match="does not continue the previous one"):
        avg.load_state_dict([end[1], end[0]])
    assert_same(avg.state_dict()["arrays"], before["arrays"], "a refused load changed the bank")


def test_dead_rank_fails_with_one_line(tmp_path):
    start = time.monotonic()
    (rc0, err0), (rc1, _) = launch("dead", tmp_path)
    assert rc1 == 3
    assert rc0 == 2, err0
    lines = [ln for ln in err0.splitlines() if ln.strip()]
    assert lines[-1].startswith("wavg: error: process group: all_gather of the averages failed on "
                                "rank 0 of 2"), err0
    assert time.monotonic() - start < 60


def test_torchrun_example(tmp_path):
    """examples/python/train_distributed.py as torchrun starts it (RANK, WORLD_SIZE, MASTER_ADDR,
    ... in the environment; Debian's torch 1.13 torchrun itself fails under Python 3.11): the
    sharded EMA swapped in on 2 ranks and the 2 -> 1 resharded bank give the same validation loss."""
    example = os.path.join(HERE, "..", "..", "examples", "python", "train_distributed.py")
    results = launch("example", tmp_path, argv=[sys.executable, example, "--steps", "20",
                                                "--out", str(tmp_path / "out")])
    for r, (rc, text) in enumerate(results):
        assert rc == 0, f"rank {r}: {text[-2000:]}"
    lines = results[0][1].splitlines()
    last = [ln for ln in lines if ln.startswith("step 20:")][0]
    resharded = [ln for ln in lines if ln.startswith("resharded 2 -> 1:")][0]
    assert last.split("ema_b0.99_nu1 ")[1] == resharded.split("ema val loss ")[1], lines
    assert (tmp_path / "out" / "ema.safetensors").is_file()
