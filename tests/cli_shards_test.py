#!/usr/bin/env python3
"""CLI tests of checkpoints as practitioners have them (issue 15 §1-3, DESIGN.md §9) through
`wavg average`: sharded checkpoints (Hugging Face's index + shards) in and out, re-sharding, mixed
and directory inputs, Hugging Face cache symlinks, bad indexes (exit 2, one line, nothing written),
total_size warnings, wrapper prefixes and --strip-prefix, --weights against numpy float64, --overwrite
by exchange-rename, and SIGTERM during a sharded write. Shards are written with the `safetensors`
reference library (pinned in scripts/requirements-test.txt; run by the project's .venv/bin/python);
outputs are read back by the independent reader below.
Usage: .venv/bin/python cli_shards_test.py PATH_TO_WAVG"""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wavg_testlib import check, finish, runner  # noqa: E402

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file as reference_save_file

WAVG = sys.argv[1]
TIMEOUT = 120
run = runner(WAVG, timeout=TIMEOUT)
NP = {"F32": np.float32, "F64": np.float64, "I64": np.int64}
SHARDS = [["emb.w", "l0.w"], ["l0.b", "l1.w"], ["l1.b", "step"]]
SHAPES = {"emb.w": (6, 4), "l0.w": (4, 4), "l0.b": (4,), "l1.w": (4, 3), "l1.b": (3,), "step": (1,)}


def write_st(path, tensors, metadata=None):
    """tensors: name -> numpy array (float32/float64/int64)."""
    reference_save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, path,
                        metadata=metadata)


def read_st(path):
    """-> (name -> float64 or int64 array, metadata, name -> dtype, names in data order)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    out, dtypes = {}, {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[8 + n + b:8 + n + e], NP[info["dtype"]]).reshape(info["shape"])
        out[name] = arr.astype(np.int64 if info["dtype"] == "I64" else np.float64)
        dtypes[name] = info["dtype"]
    order = sorted(header, key=lambda k: header[k]["data_offsets"][0])
    return out, meta, dtypes, order


def model(seed, prefix=""):
    rng = np.random.default_rng(seed)
    t = {prefix + k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items() if k != "step"}
    t[prefix + "step"] = np.array([100 * (seed + 1)], np.int64)
    return t


def split_into_shards(path, d, shards):
    """Splits a safetensors file into `shards` shard files and an index in directory d, read and
    written by the package (the single file's checksum, over its whole buffer, is left out)."""
    with safe_open(path, framework="np") as f:
        meta = {k: v for k, v in (f.metadata() or {}).items() if k != "wavg.data_crc32"}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    names = sorted(tensors)
    os.makedirs(d)
    weight_map, total = {}, 0
    for s in range(shards):
        fn = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        reference_save_file({k: tensors[k] for k in names[s::shards]}, os.path.join(d, fn), metadata=meta)
        weight_map.update({k: fn for k in names[s::shards]})
        total += sum(tensors[k].nbytes for k in names[s::shards])
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)


def write_sharded(d, tensors, shards=None, prefix="", total_size=True, base="model"):
    """A Hugging Face sharded checkpoint in directory d; returns the index path."""
    shards = shards or SHARDS
    os.makedirs(d, exist_ok=True)
    weight_map = {}
    for s, names in enumerate(shards):
        fn = f"{base}-{s + 1:05d}-of-{len(shards):05d}.safetensors"
        write_st(os.path.join(d, fn), {prefix + k: tensors[prefix + k] for k in names}, {"format": "pt"})
        for k in names:
            weight_map[prefix + k] = fn
    index = {"weight_map": weight_map}
    if total_size:
        index["metadata"] = {"total_size": int(sum(v.nbytes for v in tensors.values()))}
    path = os.path.join(d, f"{base}.safetensors.index.json")
    with open(path, "w") as f:
        json.dump(index, f, indent=2)
    return path


def read_checkpoint(path):
    """A checkpoint (file or directory with an index) -> (tensors, index or None, shard metadata)."""
    if os.path.isfile(path):
        t, meta, _, _ = read_st(path)
        return t, None, meta
    [idx] = [f for f in os.listdir(path) if f.endswith(".safetensors.index.json")]
    with open(os.path.join(path, idx)) as f:
        index = json.load(f)
    tensors, meta = {}, None
    for shard in sorted(set(index["weight_map"].values())):
        t, meta, _, _ = read_st(os.path.join(path, shard))
        for k in t:
            check(index["weight_map"].get(k) == shard, f"{path}: {k} in the shard its index names")
        tensors.update(t)
    return tensors, index, meta


def temporaries(d):
    return [n for n in os.listdir(d) if ".tmp." in n]


def refused(d, what, args, needle, out):
    r = run(*args)
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 2, f"{what}: exit 2 (got {r.returncode}: {r.stderr.strip()})")
    check(len(lines) == 1 and lines[0].startswith("wavg: error:"), f"{what}: one error line ({r.stderr!r})")
    check(needle in r.stderr, f"{what}: message names {needle!r} ({r.stderr.strip()})")
    check(not os.path.exists(out) and not temporaries(d), f"{what}: nothing written")


def mean64(models, weights=None):
    weights = np.ones(len(models)) if weights is None else np.asarray(weights, np.float64)
    weights = weights / weights.sum()
    return {k: sum(w * m[k].astype(np.float64) for w, m in zip(weights, models))
            for k in models[-1] if k != "step"}


def close(got, want, what, prefix=""):
    ok = all(np.allclose(got[prefix + k], want[k], rtol=1e-6, atol=1e-6) for k in want)
    check(ok, f"{what}: averages equal numpy float64")


def test_sharded_same_layout(d):
    models = [model(s) for s in range(3)]
    dirs = [os.path.join(d, f"ck{s}") for s in range(3)]
    for m, c in zip(models, dirs):
        write_sharded(c, m)
    out = os.path.join(d, "avg")
    # The three forms of argument: a directory, an index, a directory.
    r = run("average", "--swa", "-o", out, dirs[0], os.path.join(dirs[1], "model.safetensors.index.json"),
            dirs[2])
    check(r.returncode == 0, f"sharded average runs ({r.stderr.strip()})")
    got, index, meta = read_checkpoint(out)
    close(got, mean64(models), "sharded in, sharded out")
    want_map = {k: f"model-{s + 1:05d}-of-00003.safetensors" for s, names in enumerate(SHARDS) for k in names}
    check(index["weight_map"] == want_map, "same shard layout as the newest input")
    check(index["metadata"]["total_size"] == sum(v.nbytes for v in models[0].values()),
          "output index total_size is the tensors' bytes")
    check(got["step"][0] == 300, "non-floating tensor from the newest")
    check(meta.get("format") == "pt" and "wavg.average" in meta, "shard metadata kept and recorded")
    check(sorted(os.listdir(out)) == sorted(set(want_map.values()) | {"model.safetensors.index.json"}),
          "output directory holds exactly the shards and the index")
    check(not temporaries(d), "no temporary left")
    return models, dirs


def test_reshard(d, models, dirs):
    out = os.path.join(d, "resharded")
    # emb.w 96 B, l0.w 64, l0.b 16, l1.w 48, l1.b 12, step 8: at most 112 bytes a shard.
    r = run("average", "--last", "2", "--max-shard-size", "112B", "-o", out + "/", *dirs)
    check(r.returncode == 0, f"--max-shard-size runs ({r.stderr.strip()})")
    got, index, _ = read_checkpoint(out)
    close(got, mean64(models[1:]), "re-sharded")
    shards = sorted(set(index["weight_map"].values()))
    # Greedy in the newest's order: [emb.w], [l0.w, l0.b], [l1.w, l1.b, step].
    check(shards == [f"model-{i:05d}-of-00003.safetensors" for i in range(1, 4)],
          f"re-sharded into 3 shards by size ({shards})")
    check([k for k, v in sorted(index["weight_map"].items()) if v.startswith("model-00002")] == ["l0.b", "l0.w"],
          "shard 2 holds l0.w and l0.b")
    for s in shards:
        t, _, _, _ = read_st(os.path.join(out, s))
        check(sum(v.size * (8 if k == "step" else 4) for k, v in t.items()) <= 112 or len(t) == 1,
              f"{s} within 112 bytes")
    for bad in ("5XB", "", "-1GB", "0", "1.2.3MB", "GB"):
        refused(d, f"--max-shard-size {bad!r}", ["average", "--swa", "--max-shard-size", bad, "-o",
                                                os.path.join(d, "x"), *dirs], "--max-shard-size",
                os.path.join(d, "x"))
    r = run("average", "--swa", "--max-shard-size", "1GiB", "-o", os.path.join(d, "one"), *dirs)
    got, index, _ = read_checkpoint(os.path.join(d, "one"))
    check(r.returncode == 0 and len(set(index["weight_map"].values())) == 1, "1GiB: one shard")


def test_mixed_and_directory(d, models, dirs):
    single = os.path.join(d, "single.safetensors")
    write_st(single, models[1])
    out = os.path.join(d, "mixed.safetensors")
    r = run("average", "--swa", "-o", out, dirs[0], single)
    check(r.returncode == 0 and os.path.isfile(out), f"newest single: a single file ({r.stderr.strip()})")
    close(read_checkpoint(out)[0], mean64(models[:2]), "sharded + single")
    out2 = os.path.join(d, "mixed2")
    r = run("average", "--swa", "-o", out2, single, dirs[2])
    check(r.returncode == 0 and os.path.isdir(out2), "newest sharded: a directory")
    close(read_checkpoint(out2)[0], mean64([models[1], models[2]]), "single + sharded")
    # A directory holding one .safetensors file and no index.
    one = os.path.join(d, "onefile")
    os.makedirs(one)
    write_st(os.path.join(one, "model.safetensors"), models[2])
    out3 = os.path.join(d, "fromdir.safetensors")
    r = run("average", "--swa", "-o", out3, single, one)
    check(r.returncode == 0 and os.path.isfile(out3), f"directory of one file ({r.stderr.strip()})")
    close(read_checkpoint(out3)[0], mean64([models[1], models[2]]), "directory input")
    two = os.path.join(d, "twofiles")
    os.makedirs(two)
    write_st(os.path.join(two, "a.safetensors"), models[2])
    write_st(os.path.join(two, "b.safetensors"), models[2])
    refused(d, "directory of two files", ["average", "--swa", "-o", os.path.join(d, "x"), single, two],
            "name one", os.path.join(d, "x"))
    shutil.rmtree(two)


def test_hf_cache(d, models):
    """The Hugging Face cache: snapshots/<rev>/<file> are symlinks into ../../blobs/<hash>."""
    repo = os.path.join(d, "models--org--net")
    blobs, snap = os.path.join(repo, "blobs"), os.path.join(repo, "snapshots", "abc123")
    staging = os.path.join(d, "staging")
    write_sharded(staging, models[0])
    os.makedirs(blobs)
    os.makedirs(snap)
    for i, name in enumerate(sorted(os.listdir(staging))):
        shutil.move(os.path.join(staging, name), os.path.join(blobs, f"{i:040x}"))
        os.symlink(f"../../blobs/{i:040x}", os.path.join(snap, name))
    os.rmdir(staging)
    out = os.path.join(d, "cache_avg")
    r = run("average", "--swa", "-o", out, snap, os.path.join(snap, "model.safetensors.index.json"))
    check(r.returncode == 0, f"HF cache symlinks followed ({r.stderr.strip()})")
    close(read_checkpoint(out)[0], mean64([models[0], models[0]]), "HF cache")
    check(all(os.path.islink(os.path.join(snap, n)) for n in os.listdir(snap)), "cache left as it was")


def test_bad_indexes(d, models, dirs):
    out = os.path.join(d, "badout")
    cases = [("'../x'", lambda wm: wm.update({"l1.b": "../x.safetensors"}), "not a plain file name"),
             ("absolute", lambda wm: wm.update({"l1.b": "/etc/passwd"}), "not a plain file name"),
             ("missing shard", lambda wm: wm.update({"l1.b": "model-00009-of-00009.safetensors"}), "cannot open"),
             ("tensor not in named shard", lambda wm: wm.update({"l1.b": "model-00001-of-00003.safetensors"}),
              "but the index names"),
             ("tensor not in the map", lambda wm: wm.pop("l1.b"), "not in the index's weight_map"),
             ("map names an absent tensor", lambda wm: wm.update({"ghost": "model-00001-of-00003.safetensors"}),
              "is not in shard")]
    for what, edit, needle in cases:
        bad = os.path.join(d, "bad")
        shutil.rmtree(bad, ignore_errors=True)
        idx = write_sharded(bad, models[0])
        with open(idx) as f:
            index = json.load(f)
        edit(index["weight_map"])
        with open(idx, "w") as f:
            json.dump(index, f)
        refused(d, what, ["average", "--swa", "-o", out, dirs[1], bad], needle, out)
    # A tensor in two shards.
    shutil.rmtree(bad)
    write_sharded(bad, models[0], shards=[["emb.w", "l0.w"], ["l0.b", "l1.w", "emb.w"], ["l1.b", "step"]])
    refused(d, "tensor in two shards", ["average", "--swa", "-o", out, dirs[1], bad], "in two shards", out)
    # An index that is not JSON, nests too deep, or repeats a tensor.
    for what, text, needle in [("not JSON", "{", "not valid JSON"), ("deep", "[" * 100000, "deeper"),
                               ("duplicate key", '{"weight_map": {"a": "x", "a": "y"}}', "twice")]:
        with open(os.path.join(bad, "model.safetensors.index.json"), "w") as f:
            f.write(text)
        refused(d, f"index {what}", ["average", "--swa", "-o", out, dirs[1], bad], needle, out)
    # A FIFO as the index is refused without blocking.
    os.remove(os.path.join(bad, "model.safetensors.index.json"))
    os.mkfifo(os.path.join(bad, "model.safetensors.index.json"))
    refused(d, "FIFO index", ["average", "--swa", "-o", out, dirs[1], bad], "not a regular file", out)
    shutil.rmtree(bad)


def test_total_size_warning(d, models, dirs):
    ws = os.path.join(d, "wrongsize")
    idx = write_sharded(ws, models[2])
    with open(idx) as f:
        index = json.load(f)
    index["metadata"]["total_size"] = 12345
    with open(idx, "w") as f:
        json.dump(index, f)
    out = os.path.join(d, "ws_out")
    r = run("average", "--swa", "-o", out, dirs[0], ws)
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 0 and os.path.isdir(out), f"total_size mismatch is not an error ({r.stderr.strip()})")
    check(len(lines) == 1 and lines[0].startswith("wavg: warning:") and "12345" in lines[0],
          f"total_size mismatch: one warning line ({r.stderr!r})")
    r = run("average", "--swa", "-o", os.path.join(d, "nots"), dirs[0],
            os.path.dirname(write_sharded(os.path.join(d, "nototal"), models[2], total_size=False)))
    check(r.returncode == 0 and r.stderr == "", "no total_size: no warning")


def test_prefixes(d, models):
    wrapped = {"module." + k: v for k, v in models[0].items()}
    ddp = os.path.join(d, "ddp")
    write_sharded(ddp, wrapped, prefix="module.")
    plain = os.path.join(d, "plain.safetensors")
    write_st(plain, models[1])
    out = os.path.join(d, "pref.safetensors")
    refused(d, "wrapper prefix", ["average", "--swa", "-o", out, ddp, plain], "--strip-prefix module.", out)
    r = run("average", "--swa", "-o", out, ddp, plain)
    check("'module.emb.w'" in r.stderr and "'emb.w'" in r.stderr, f"mismatches listed ({r.stderr.strip()})")
    r = run("average", "--swa", "--strip-prefix", "module.", "-o", out, ddp, plain)
    check(r.returncode == 0, f"--strip-prefix module. works ({r.stderr.strip()})")
    got = read_checkpoint(out)[0]
    check(sorted(got) == sorted(models[1]), "output names are the newest's (unprefixed)")
    close(got, mean64(models[:2]), "prefixed + plain")
    # The other way round, and two wrappers (torch.compile of a DDP module): names of the newest.
    compiled = os.path.join(d, "compiled.safetensors")
    write_st(compiled, {"_orig_mod.module." + k: v for k, v in models[2].items()})
    out2 = os.path.join(d, "pref2")
    refused(d, "two wrapper prefixes", ["average", "--swa", "-o", out2, plain, compiled],
            "--strip-prefix _orig_mod.module.", out2)
    r = run("average", "--swa", "--strip-prefix", "module.", "--strip-prefix", "_orig_mod.", "-o", out2,
            plain, compiled)
    check(r.returncode == 0, f"repeated --strip-prefix ({r.stderr.strip()})")
    got = read_checkpoint(out2)[0]
    check(sorted(got) == sorted("_orig_mod.module." + k for k in models[2]), "names of the newest (prefixed)")
    close(got, mean64(models[1:]), "two prefixes", prefix="_orig_mod.module.")
    # Names that differ otherwise: listed, no prefix suggested.
    other = os.path.join(d, "other.safetensors")
    write_st(other, {("x." + k if k == "l0.b" else k): v for k, v in models[2].items()})
    r = run("average", "--swa", "-o", out2, plain, other)
    check(r.returncode == 2 and "'l0.b'" in r.stderr and "--strip-prefix" in r.stderr, "one prefix explains it")
    write_st(other, {("x." + k if k == "l0.b" else k + ".y" if k == "l1.b" else k): v
                     for k, v in models[2].items()})
    r = run("average", "--swa", "-o", out2, plain, other)
    check(r.returncode == 2 and "--strip-prefix" not in r.stderr and "'l1.b.y'" in r.stderr,
          f"no prefix explains it: none suggested ({r.stderr.strip()})")


def test_weights(d, models, dirs):
    out = os.path.join(d, "w.safetensors")
    files = []
    for i, m in enumerate(models):
        files.append(os.path.join(d, f"w{i}.safetensors"))
        write_st(files[-1], m)
    r = run("average", "--weights", "1,2,5", "-o", out, *files)
    check(r.returncode == 0, f"--weights alone ({r.stderr.strip()})")
    got, _, meta = read_checkpoint(out)
    close(got, mean64(models, [1, 2, 5]), "--weights 1,2,5")
    rec = json.loads(meta["wavg.average"])
    check([round(w, 12) for _, w in rec["inputs"]] == [0.125, 0.25, 0.625] and rec["weights"] == [1, 2, 5],
          f"record lists each file's weight ({rec})")
    # With --last 2: the weights of the two newest, renormalised; sharded inputs likewise.
    out2 = os.path.join(d, "w2")
    r = run("average", "--last", "2", "--weights", "9,1,3", "-o", out2, *dirs)
    check(r.returncode == 0, f"--weights with --last ({r.stderr.strip()})")
    close(read_checkpoint(out2)[0], mean64(models[1:], [1, 3]), "--last 2 --weights 9,1,3")
    r = run("average", "--swa", "--weights", "0,1,1", "--overwrite", "-o", out, *files)
    close(read_checkpoint(out)[0], mean64(models[1:]), "--swa --weights 0,1,1")
    bad = [("-1,1,1", ">= 0"), ("nan,1,1", ">= 0"), ("0,0,0", "all zero"), ("1,2", "2 values for 3"),
           ("1,x,2", "comma-separated"), ("inf,1,1", ">= 0")]
    for w, needle in bad:
        refused(d, f"--weights {w}", ["average", "--weights", w, "-o", os.path.join(d, "n"), *files], needle,
                os.path.join(d, "n"))
    refused(d, "--weights with --ema", ["average", "--ema", "0.9", "--weights", "1,1,1", "-o",
                                        os.path.join(d, "n"), *files], "--ema", os.path.join(d, "n"))
    refused(d, "--weights zero on the selection", ["average", "--last", "1", "--weights", "1,1,0", "-o",
                                                   os.path.join(d, "n"), *files], "selects", os.path.join(d, "n"))


def test_overwrite(d, models, dirs):
    out = os.path.join(d, "ow")
    r = run("average", "--swa", "--max-shard-size", "100B", "-o", out, *dirs)
    check(r.returncode == 0, "first output")
    before = sorted(os.listdir(out))
    r = run("average", "--swa", "-o", out, *dirs)
    check(r.returncode == 2 and "--overwrite" in r.stderr and sorted(os.listdir(out)) == before,
          "existing output refused without --overwrite, left as it was")
    ino = os.stat(out).st_ino
    r = run("average", "--last", "1", "--overwrite", "-o", out, *dirs)
    check(r.returncode == 0, f"--overwrite replaces ({r.stderr.strip()})")
    check(os.stat(out).st_ino != ino, "replaced by a new directory (exchange-rename)")
    got, index, _ = read_checkpoint(out)
    check(len(set(index["weight_map"].values())) == 3 and len(os.listdir(out)) == 4,
          "the old shards are gone (no stale shard of the old layout)")
    close(got, mean64(models[2:]), "overwritten")
    check(not temporaries(d), "no temporary left after the exchange")
    # A directory holding anything but checkpoint files is never replaced.
    with open(os.path.join(out, "notes.txt"), "w") as f:
        f.write("mine")
    r = run("average", "--swa", "--overwrite", "-o", out, *dirs)
    check(r.returncode == 2 and "notes.txt" in r.stderr and os.path.exists(os.path.join(out, "notes.txt")),
          "a directory with other files is not replaced")
    # The output may not be an input, nor a directory that holds one.
    refused_same = run("average", "--swa", "--overwrite", "-o", dirs[0], *dirs)
    check(refused_same.returncode == 2 and "same file" in refused_same.stderr, "output is an input directory")
    r = run("average", "--swa", "--overwrite", "-o", d, *dirs)
    check(r.returncode == 2 and "holds the input" in r.stderr, f"output holds the inputs ({r.stderr.strip()})")
    # A single-file output over a single file, with --overwrite.
    single = os.path.join(d, "ow.safetensors")
    write_st(single, models[0])
    r = run("average", "--swa", "-o", single, os.path.join(dirs[0], "model-00001-of-00003.safetensors"))
    check(r.returncode == 2 and "--overwrite" in r.stderr, "existing single output refused")


def test_stale_and_sigterm(d):
    """A temporary directory of a gone process is removed; SIGTERM while shards are written exits 143
    and leaves no temporary directory."""
    host = "".join(c if c.isalnum() or c == "-" else "-" for c in socket.gethostname()) or "localhost"
    gone = subprocess.Popen(["true"])
    gone.wait()
    out = os.path.join(d, "big")
    stale = f"{out}.tmp.{host}.{gone.pid}.0123456789abcdef"
    os.makedirs(stale)
    with open(os.path.join(stale, "model-00001-of-00002.safetensors"), "wb") as f:
        f.write(b"half")
    n = 12 << 20  # floats: 48 MB per input in the second shard
    ins = []
    for k in range(2):
        m = {"a": np.full(4, k, np.float32), "b": np.full(n, k + 1, np.float32)}
        ins.append(os.path.dirname(write_sharded(os.path.join(d, f"big{k}"), m, shards=[["a"], ["b"]])))
    p = subprocess.Popen([WAVG, "average", "--dtype", "f64", "--swa", "-o", out, *ins],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.time()
    while time.time() - t0 < 20 and p.poll() is None and not any(
            os.path.isdir(os.path.join(d, t)) and os.listdir(os.path.join(d, t))
            for t in temporaries(d) if str(p.pid) in t):
        time.sleep(0.002)
    running = p.poll() is None
    check(running, "SIGTERM: still running when signalled (the test needs it)")
    check(not os.path.exists(stale), "stale temporary directory of a gone process removed")
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=TIMEOUT)
    if running:
        check(p.returncode == 143, f"SIGTERM: exit 143 (got {p.returncode})")
        check(not temporaries(d) and not os.path.exists(out), f"SIGTERM: no temporary left ({temporaries(d)})")
    for k in range(2):
        shutil.rmtree(os.path.join(d, f"big{k}"))


def test_eval(d):
    """`wavg eval` reads the three forms: a sharded copy of a trained model evaluates to the same
    value as the file it was split from."""
    cfg = os.path.join(d, "c.toml")
    rd = os.path.join(d, "run")
    with open(cfg, "w") as f:
        f.write(f'workload = "synth_ctr"\nseed = 0\nsteps = 4\neval_every = 4\nout = "{rd}"\n')
    r = run("train", "--config", cfg, "--quiet")
    check(r.returncode == 0, f"train: {r.stderr.strip()}")
    if r.returncode:
        return
    single = os.path.join(rd, "final_raw.safetensors")
    sharded = os.path.join(d, "evalshards")
    split_into_shards(single, sharded, 3)
    values = []
    for ck in (single, sharded, os.path.join(sharded, "model.safetensors.index.json")):
        r = run("eval", ck, "--workload", "synth_ctr")
        check(r.returncode == 0, f"eval {ck}: {r.stderr.strip()}")
        values.append(r.stdout.split()[3] if r.returncode == 0 else None)
    check(values[0] is not None and values[0] == values[1] == values[2],
          f"eval: sharded copies evaluate like the single file ({values})")


def main():
    with tempfile.TemporaryDirectory() as d:
        models, dirs = test_sharded_same_layout(d)
        test_reshard(d, models, dirs)
        test_mixed_and_directory(d, models, dirs)
        test_hf_cache(d, models)
        test_bad_indexes(d, models, dirs)
        test_total_size_warning(d, models, dirs)
        test_prefixes(d, models)
        test_weights(d, models, dirs)
        test_overwrite(d, models, dirs)
        test_stale_and_sigterm(d)
        test_eval(d)
    finish()


if __name__ == "__main__":
    main()
