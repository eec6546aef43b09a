#!/usr/bin/env python3
"""Data-parallel `wavg train` over loopback (issue 14 §6): 2 ranks (--nproc 2) against 1 process on
synth_ctr (no BatchNorm): final raw model and averages within 1e-4 relative; the sharded banks'
averages equal, to the last bit, those of one bank fed the same trajectory (`wavg sweep` replaying
the 2-rank run's checkpoints) and the LAWA average equals a numpy mean of the checkpoints; a rank
killed while writing a state makes the other fail within the timeout naming the lost rank, and
--resume finishes bit-identical to an uninterrupted 2-rank run; the killed run resumes with 1 rank
too; two processes launched by hand with the torchrun variables, and two "hosts" in network
namespaces joined by a veth pair, train exactly like --nproc 2; bad launch variables, a port in use,
a rank that never arrives and a wrong world size give one clear error within the timeout; SIGINT
to the launcher reaches every rank, which write one state together and exit with 130.
Usage: dist_test.py PATH_TO_WAVG"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wavg_testlib import check, finish, read_safetensors, write_safetensors  # noqa: E402

WAVG = os.path.abspath(sys.argv[1])
TIMEOUT = 20  # dist_timeout of the runs, seconds
AVERAGES = ["final_raw", "final_lawa_L3_nu5", "final_ema_b0.9_nu5"]
CONFIG = """workload = "synth_ctr"
steps = 40
eval_every = 20
ckpt_every = 5
state_every = 10
keep_states = 5
batch_size = 256
dist_timeout = %d
[[lawa]]
window = 3
every = 5
[[ema]]
beta = 0.9
every = 5
""" % TIMEOUT


def tensors(path):
    """A safetensors file as {name: array} (the shared test library's reader, independent of wavg)."""
    return read_safetensors(path)[0]


def rel_diff(a, b):
    num = sum(float(np.sum((a[k].astype(np.float64) - b[k]) ** 2)) for k in a)
    den = sum(float(np.sum(a[k].astype(np.float64) ** 2)) for k in a)
    return (num / den) ** 0.5


def same_bits(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def metrics(run):
    rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
    return [{k: v for k, v in r.items() if k != "train_wall_s"} for r in rows]


def env_of(rank, world, port, addr="127.0.0.1", **extra):
    e = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
             MASTER_ADDR=addr, MASTER_PORT=str(port))
    e.update(extra)
    return e


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wavg(*args, env=None, timeout=120):
    return subprocess.run([WAVG, *args], capture_output=True, text=True, env=env, timeout=timeout)


def wavg_group(*args, env=None, timeout=60):
    """`wavg args` in a process group of its own (a --nproc launcher and its ranks), every process of
    it killed when it outlives the timeout."""
    p = subprocess.Popen([WAVG, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return subprocess.CompletedProcess(p.args, -signal.SIGKILL, out, err + "\n(killed after the timeout)")
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)  # a rank left behind
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def changes_of(run):
    path = os.path.join(run, "config_changes.jsonl")
    return [json.loads(l) for l in open(path)] if os.path.exists(path) else []


def two_ranks(cmds, timeout=120):
    """Starts [(argv, env), ...] at once and waits for all (killing them all on a timeout)."""
    procs = [subprocess.Popen(a, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for a, e in cmds]
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [(p.returncode, o, e) for p, (o, e) in zip(procs, outs)]


def same_run(run, ref, what):
    for f in AVERAGES:
        check(same_bits(tensors(f"{run}/{f}.safetensors"), tensors(f"{ref}/{f}.safetensors")),
              f"{what}: {f} bit-identical to the --nproc 2 run")
    check(metrics(run) == metrics(ref), f"{what}: metrics.jsonl identical to the --nproc 2 run")


def one_line_error(r, words, what):
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    ok = r.returncode == 2 and len(lines) == 1 and lines[0].startswith("wavg: error:") and all(
        w in lines[0] for w in words)
    check(ok, f"{what}: exit 2 with one error line naming {words} (got {r.returncode}: {lines})")


def netns_supported():
    name = f"wavgprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True)
    if r.returncode != 0:
        return False
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return True


def two_hosts(tmp, cfg, ref):
    """Ranks in two network namespaces joined by a veth pair: 10.77.0.1 (rank 0) and 10.77.0.2."""
    if shutil.which("ip") is None or not netns_supported():
        print("SKIP: two hosts: 'ip netns add' is not permitted here")
        return
    a, b = f"wavga{os.getpid()}", f"wavgb{os.getpid()}"
    setup = [["ip", "netns", "add", a], ["ip", "netns", "add", b],
             ["ip", "link", "add", f"va{os.getpid()}", "type", "veth", "peer", "name", f"vb{os.getpid()}"],
             ["ip", "link", "set", f"va{os.getpid()}", "netns", a],
             ["ip", "link", "set", f"vb{os.getpid()}", "netns", b],
             ["ip", "-n", a, "addr", "add", "10.77.0.1/24", "dev", f"va{os.getpid()}"],
             ["ip", "-n", b, "addr", "add", "10.77.0.2/24", "dev", f"vb{os.getpid()}"]]
    for ns, dev in ((a, f"va{os.getpid()}"), (b, f"vb{os.getpid()}")):
        setup += [["ip", "-n", ns, "link", "set", dev, "up"], ["ip", "-n", ns, "link", "set", "lo", "up"]]
    try:
        for c in setup:
            subprocess.run(c, check=True, capture_output=True)
        out = os.path.join(tmp, "hosts")
        cmd = [WAVG, "train", "--config", cfg, "--set", f"out={out}"]
        res = two_ranks([(["ip", "netns", "exec", ns, *cmd], env_of(r, 2, 29512, "10.77.0.1"))
                         for r, ns in ((0, a), (1, b))])
        check(all(rc == 0 for rc, _, _ in res), f"two hosts: both ranks succeed ({[r[2][-300:] for r in res]})")
        if all(rc == 0 for rc, _, _ in res):
            same_run(out, ref, "two hosts (network namespaces)")
    finally:
        subprocess.run(["ip", "netns", "del", a], capture_output=True)
        subprocess.run(["ip", "netns", "del", b], capture_output=True)


def bad_launches(tmp, cfg):
    out = os.path.join(tmp, "bad")
    base = ["train", "--config", cfg, "--set", f"out={out}"]
    one_line_error(wavg(*base, env=env_of("abc", 2, 29513)), ["RANK", "abc"], "RANK=abc")
    one_line_error(wavg(*base, env=env_of(5, 2, 29513)), ["RANK", "'5'"], "RANK=5 of 2")
    one_line_error(wavg(*base, env=env_of(0, 2, 70000)), ["MASTER_PORT", "70000"], "MASTER_PORT=70000")
    one_line_error(wavg(*base, "--set", "batch_size=255", env=env_of(0, 2, 29513)),
                   ["batch_size", "255", "WORLD_SIZE=2"], "indivisible batch")
    with socket.socket() as busy:  # the port is taken: rank 0 cannot serve the rendezvous
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        r = wavg(*base, env=env_of(0, 2, busy.getsockname()[1]))
        one_line_error(r, ["rendezvous", str(busy.getsockname()[1])], "port in use")
    t0 = time.time()  # rank 1 never arrives
    r = wavg(*base, "--set", "dist_timeout=3", env=env_of(0, 2, free_port()))
    one_line_error(r, ["rendezvous"], "a rank that never arrives")
    check(time.time() - t0 < 30, f"a rank that never arrives: fails in {time.time() - t0:.0f} s")
    port = free_port()  # rank 1 believes in 3 ranks
    sets = ["--set", "dist_timeout=5", "--set", "batch_size=258"]  # splits over 2 and over 3
    res = two_ranks([([WAVG, *base, *sets], env_of(0, 2, port)),
                     ([WAVG, *base, *sets], env_of(1, 3, port))], timeout=60)
    check(res[1][0] == 2 and "WORLD_SIZE is 3 here but 2 at rank 0" in res[1][2],
          f"wrong world size named ({res[1][2][-300:]})")
    check(res[0][0] != 0, "wrong world size: rank 0 fails too")


def killed_and_resumed(tmp, cfg, ref):
    run = os.path.join(tmp, "killed")
    t0 = time.time()  # rank 0 dies while writing the state of step 20 (the store goes with it)
    r = wavg("train", "--config", cfg, "--set", f"out={run}", "--nproc", "2",
             env=dict(os.environ, WAVG_TEST_KILL_IN_STATE_WRITE="20"))
    check(r.returncode != 0, f"killed rank: --nproc exits non-zero (got {r.returncode})")
    check("rank 0 was killed by signal 9" in r.stderr, f"killed rank: launcher names it ({r.stderr[-400:]})")
    check("lost rank 0" in r.stderr, "killed rank: the other rank names the lost rank")
    check(time.time() - t0 < TIMEOUT + 60, f"killed rank: over in {time.time() - t0:.0f} s")
    check(not os.path.exists(f"{run}/summary.json"), "killed rank: the run is not finished")
    one = os.path.join(tmp, "killed_w1")
    shutil.copytree(run, one)
    unfit = os.path.join(tmp, "unfit_rank1")
    shutil.copytree(run, unfit)
    r = wavg("train", "--resume", run, "--nproc", "2")
    check(r.returncode == 0, f"resume with 2 ranks succeeds ({r.stderr[-400:]})")
    if r.returncode == 0:
        same_run(run, ref, "killed and resumed with 2 ranks")
    check(not any(c["key"] == "world_size" for c in changes_of(run)), "resume 2 -> 2: no change recorded")
    r = wavg("train", "--resume", one)
    check(r.returncode == 0, f"resume with 1 rank succeeds ({r.stderr[-400:]})")
    if r.returncode == 0:
        for f in AVERAGES:
            d = rel_diff(tensors(f"{ref}/{f}.safetensors"), tensors(f"{one}/{f}.safetensors"))
            check(d < 1e-4, f"resumed with 1 rank: {f} within 1e-4 relative of 2 ranks ({d:.2e})")
    warned = [l for l in r.stderr.splitlines() if "warning" in l and "world_size (run: 2, now: 1)" in l]
    check(len(warned) == 1, f"resume 2 -> 1: warned once ({r.stderr[-400:]!r})")
    got = [c for c in changes_of(one) if c["key"] == "world_size"]
    check(got == [{"step": 10, "key": "world_size", "old": "2", "new": "1"}], f"resume 2 -> 1 recorded: {got}")
    summary = json.load(open(f"{one}/summary.json"))
    check(summary.get("config_changes") == changes_of(one), "resume 2 -> 1: summary.json lists the changes")
    unfit_rank_part(unfit, ref)


def unfit_rank_part(run, ref):
    """Rank 1's bank shard of the only intact state has a negative ring count: both ranks see it
    (one all-reduce), both fall back, to step 0 here, and the run ends bit-identical to the
    uninterrupted 2-rank run."""
    state = f"{run}/state/step_00000010"
    bank = f"{state}/bank.rank1.safetensors"
    t, meta = read_safetensors(bank)
    meta["ring.0.count"] = "-1"
    write_safetensors(bank, t, meta)
    data = open(bank, "rb").read()
    manifest = json.load(open(f"{state}/manifest.json"))
    manifest["files"]["bank.rank1.safetensors"] = {"bytes": len(data), "crc32": zlib.crc32(data)}
    json.dump(manifest, open(f"{state}/manifest.json", "w"))
    r = wavg_group("train", "--resume", run, "--nproc", "2", timeout=TIMEOUT + 60)
    check(r.returncode == 0, f"unfit rank-1 shard: both ranks fall back and finish ({r.stderr[-400:]!r})")
    check("bank.rank1.safetensors" in r.stderr and "ring.0.count" in r.stderr,
          f"unfit rank-1 shard: the file and the field are named ({r.stderr[-400:]!r})")
    if r.returncode == 0:
        same_run(run, ref, "unfit rank-1 shard, resumed from step 0")


def early_stop(tmp, cfg):
    """early_stop = true with 2 ranks: every rank stops after the same step (rank 0's decision, one
    all-reduce), summary.json says early_stop, well within dist_timeout."""
    out, limit = os.path.join(tmp, "early"), 120  # a deadlock would last until dist_timeout
    t0 = time.time()
    r = wavg_group("train", "--config", cfg, "--set", f"out={out}", "--set", "early_stop=true",
                   "--set", "target=10.0", "--set", f"dist_timeout={limit}", "--nproc", "2",
                   timeout=limit * 3 // 4)
    took = time.time() - t0
    check(r.returncode == 0, f"early stop with 2 ranks: exit 0 ({r.returncode}, {r.stderr[-400:]!r})")
    s = json.load(open(f"{out}/summary.json")) if os.path.exists(f"{out}/summary.json") else {}
    check(s.get("stop_reason") == "early_stop" and s.get("steps_done") == 20,
          f"early stop with 2 ranks: stop_reason {s.get('stop_reason')!r} after {s.get('steps_done')} steps")
    check(took < limit / 2, f"early stop with 2 ranks: over in {took:.1f} s (dist_timeout {limit} s)")


def resumed_on_more_ranks(tmp, cfg, one_ref):
    """A 1-process run killed while writing its state of step 20 resumes with 2 ranks: the change of
    the number of ranks is warned about once and recorded; the result is within 1e-4 of 1 process."""
    run = os.path.join(tmp, "grow")
    r = wavg("train", "--config", cfg, "--set", f"out={run}", "--set", "threads=1",
             env=dict(os.environ, WAVG_TEST_KILL_IN_STATE_WRITE="20"))
    check(r.returncode == -signal.SIGKILL, f"1 process killed at state 20 (rc {r.returncode})")
    r = wavg_group("train", "--resume", run, "--nproc", "2", timeout=TIMEOUT + 60)
    check(r.returncode == 0, f"resume 1 -> 2 ranks succeeds ({r.stderr[-400:]!r})")
    warned = [l for l in r.stderr.splitlines() if "warning" in l and "world_size (run: 1, now: 2)" in l]
    check(len(warned) == 1, f"resume 1 -> 2: warned once ({r.stderr[-400:]!r})")
    got = [c for c in changes_of(run) if c["key"] == "world_size"]
    check(got == [{"step": 10, "key": "world_size", "old": "1", "new": "2"}], f"resume 1 -> 2 recorded: {got}")
    if r.returncode == 0:
        for f in AVERAGES:
            d = rel_diff(tensors(f"{one_ref}/{f}.safetensors"), tensors(f"{run}/{f}.safetensors"))
            check(d < 1e-4, f"resumed with 2 ranks: {f} within 1e-4 relative of 1 process ({d:.2e})")


def lost_rank_one(tmp, cfg):
    """Rank 1 SIGKILLed mid-run: rank 0 fails within the timeout naming rank 1."""
    out, port = os.path.join(tmp, "lost1"), free_port()
    cmd = [WAVG, "train", "--config", cfg, "--set", f"out={out}", "--set", "steps=100000",
           "--set", "eval_every=100000", "--set", "ckpt_every=0", "--set", "state_every=0"]
    p0 = subprocess.Popen(cmd, env=env_of(0, 2, port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    p1 = subprocess.Popen(cmd, env=env_of(1, 2, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not os.path.exists(f"{out}/metrics.jsonl"):
            time.sleep(0.2)
        time.sleep(1.0)  # training by now
        p1.send_signal(signal.SIGKILL)
        t0 = time.time()
        _, err = p0.communicate(timeout=TIMEOUT + 30)
        check(p0.returncode == 2 and "lost rank 1" in err, f"rank 1 killed: rank 0 names it ({err[-300:]})")
        check(time.time() - t0 < TIMEOUT + 10, f"rank 1 killed: rank 0 fails in {time.time() - t0:.0f} s")
    finally:
        for p in (p0, p1):
            if p.poll() is None:
                p.kill()
            p.wait()


def interrupted(tmp, cfg):
    """SIGINT to the --nproc launcher reaches every rank: they stop after the same step, write a
    state together and the launcher exits with 130."""
    out = os.path.join(tmp, "sigint")
    p = subprocess.Popen([WAVG, "train", "--config", cfg, "--set", f"out={out}", "--set", "steps=100000",
                          "--set", "eval_every=100000", "--set", "ckpt_every=0", "--set", "state_every=0",
                          "--nproc", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not os.path.exists(f"{out}/metrics.jsonl"):
            time.sleep(0.2)
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=TIMEOUT + 30)
        states = sorted(os.listdir(f"{out}/state")) if os.path.isdir(f"{out}/state") else []
        world = json.load(open(f"{out}/state/{states[-1]}/manifest.json")).get("world_size") if states else None
        check(p.returncode == 130 and world == 2 and "error" not in err,
              f"SIGINT to --nproc: exit 130, a 2-rank state, no error ({p.returncode}, {states}, {err[-200:]})")
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()


with tempfile.TemporaryDirectory() as tmp:
    cfg = os.path.join(tmp, "c.toml")
    with open(cfg, "w") as f:
        f.write(CONFIG)
    one, two = os.path.join(tmp, "one"), os.path.join(tmp, "two")
    r = wavg("train", "--config", cfg, "--set", f"out={one}", "--set", "threads=1")
    check(r.returncode == 0, f"1 process trains ({r.stderr[-300:]})")
    r = wavg("train", "--config", cfg, "--set", f"out={two}", "--nproc", "2")
    check(r.returncode == 0, f"--nproc 2 trains ({r.stderr[-300:]})")
    check(r.stdout.count("wavg train: synth_ctr") == 1, "--nproc 2: only rank 0 prints")
    for f in AVERAGES:
        d = rel_diff(tensors(f"{one}/{f}.safetensors"), tensors(f"{two}/{f}.safetensors"))
        check(d < 1e-4, f"2 ranks vs 1 process: {f} within 1e-4 relative ({d:.2e})")
    manifest = json.load(open(f"{two}/state/step_00000040/manifest.json"))
    check(manifest.get("world_size") == 2 and "bank.rank1.safetensors" in manifest["files"],
          "2-rank state: manifest records world_size 2 and each rank's bank shard")
    # One bank fed the same trajectory: `wavg sweep` replays the 2-rank run's checkpoints.
    r = wavg("sweep", two, "--lawa", "window=3", "every=5", "--ema", "beta=0.9", "every=5",
             "--save-averages", "all", "--quiet")
    check(r.returncode == 0, f"sweep replays the checkpoints ({r.stderr[-300:]})")
    for name in ("lawa_L3_nu5", "ema_b0.9_nu5"):
        check(same_bits(tensors(f"{two}/final_{name}.safetensors"), tensors(f"{two}/sweep_{name}.safetensors")),
              f"sharded bank == one bank replaying the trajectory, to the last bit: {name}")
    ck = [tensors(f"{two}/checkpoints/model_{s:08d}.safetensors") for s in (30, 35, 40)]
    lawa = tensors(f"{two}/final_lawa_L3_nu5.safetensors")
    ok = all(np.allclose(lawa[k], np.mean([c[k].astype(np.float64) for c in ck], axis=0), rtol=1e-6, atol=1e-7)
             for k in lawa)
    check(ok, "sharded LAWA == numpy mean of the last 3 checkpoints")
    # Launched by hand with the torchrun variables: exactly --nproc 2.
    hand, port = os.path.join(tmp, "hand"), free_port()
    res = two_ranks([([WAVG, "train", "--config", cfg, "--set", f"out={hand}"], env_of(r, 2, port)) for r in (0, 1)])
    check(all(rc == 0 for rc, _, _ in res), f"hand launch: both ranks succeed ({[x[2][-200:] for x in res]})")
    if all(rc == 0 for rc, _, _ in res):
        same_run(hand, two, "hand launch")
    early_stop(tmp, cfg)
    killed_and_resumed(tmp, cfg, two)
    resumed_on_more_ranks(tmp, cfg, one)
    two_hosts(tmp, cfg, two)
    bad_launches(tmp, cfg)
    lost_rank_one(tmp, cfg)
    interrupted(tmp, cfg)
finish()
