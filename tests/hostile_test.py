#!/usr/bin/env python3
"""Hostile inputs through `wavg average` and `wavg train` (issue 11): each case with its expected outcome. Bad input:
exit 2, one line on stderr, no file changed or left behind. Valid but large input (a 200 000-tensor
header, a 95 MB metadata value): accepted. SIGINT/SIGTERM: exit 130/143 and no temporary left.
Every run is bounded in time. Files are written by an independent writer (struct + json), results
checked with numpy. Usage: hostile_test.py PATH_TO_WAVG"""
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wavg_testlib import check, finish  # noqa: E402

import numpy as np

WAVG = sys.argv[1]
TIMEOUT = 120


def st_bytes(header, data=b""):
    h = json.dumps(header, separators=(",", ":")).encode() if isinstance(header, dict) else header
    return struct.pack("<Q", len(h)) + h + data


def write(path, blob):
    with open(path, "wb") as f:
        f.write(blob)


def f32_file(path, values, name="w", metadata=None):
    raw = np.asarray(values, np.float32).tobytes()
    header = {name: {"dtype": "F32", "shape": [len(values)], "data_offsets": [0, len(raw)]}}
    if metadata is not None:
        header["__metadata__"] = metadata
    write(path, st_bytes(header, raw))


def read_st(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    return header, data[8 + n :]


def run(*args, timeout=TIMEOUT):
    try:
        return subprocess.run([WAVG, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def snapshot(d):
    """name -> bytes of every file in d (to check that nothing changed or appeared)."""
    out = {}
    for name in sorted(os.listdir(d)):
        p = os.path.join(d, name)
        if os.path.islink(p):
            out[name] = "link:" + os.readlink(p)
        elif os.path.isfile(p):
            with open(p, "rb") as f:
                out[name] = f.read()
        else:
            out[name] = "other"
    return out


def refused(d, what, args, needle):
    """A bad input: exit 2, one line naming the problem, and the directory exactly as before."""
    before = snapshot(d)
    r = run(*args)
    check(r is not None, f"{what}: finishes within {TIMEOUT} s")
    if r is None:
        return None
    lines = r.stderr.splitlines()
    check(r.returncode == 2, f"{what}: exit 2, got {r.returncode} ({r.stderr[:200]!r})")
    check(len(lines) == 1 and len(r.stderr) < 1000, f"{what}: one short line, got {r.stderr[:300]!r}")
    check(needle in r.stderr, f"{what}: message names {needle!r}: {r.stderr[:300]!r}")
    check(snapshot(d) == before, f"{what}: no file changed or left behind")
    return r


def test_nested_json(d):
    """§1: 70 000 nested '[' in shape (and in data_offsets) crashed with a stack overflow."""
    for key in ("shape", "data_offsets"):
        deep = b"[" * 70000 + b"]" * 70000
        entry = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
        h = json.dumps({"a": entry}, separators=(",", ":")).encode()
        h = h.replace(json.dumps(entry[key], separators=(",", ":")).encode(), deep, 1)
        p = os.path.join(d, f"nested_{key}.safetensors")
        write(p, st_bytes(h, b"\0" * 4))
        refused(d, f"nested {key}", ["average", "--last", "1", "-o", os.path.join(d, "o.st"), p],
                "nests deeper than 64")
        os.remove(p)
    # A wide (not deep) array in shape: refused with a bounded message, not the array's dump.
    p = os.path.join(d, "wide.safetensors")
    write(p, st_bytes({"a": {"dtype": "F32", "shape": [["x" * 1000] * 1000], "data_offsets": [0, 4]}},
                      b"\0" * 4))
    refused(d, "array as a shape entry", ["average", "--last", "1", "-o", os.path.join(d, "o.st"), p],
            "non-negative integers")
    os.remove(p)


def test_output_is_input(d):
    """§2: the output given under another spelling (./a, a symlink, a hard link) is an input."""
    a, b = os.path.join(d, "a.safetensors"), os.path.join(d, "b.safetensors")
    f32_file(a, [1, 2])
    f32_file(b, [3, 4])
    os.symlink("a.safetensors", os.path.join(d, "link.safetensors"))
    os.link(a, os.path.join(d, "hard.safetensors"))
    for out in (os.path.join(d, ".", "a.safetensors"), os.path.join(d, "link.safetensors"),
                os.path.join(d, "hard.safetensors")):
        refused(d, f"output {out}", ["average", "--last", "2", "-o", out, a, b], "same file")
    for name in ("a", "b", "link", "hard"):
        os.remove(os.path.join(d, name + ".safetensors"))


def test_planted_symlink(d):
    """§2: a symlink planted at the old predictable temporary name is not followed."""
    a = os.path.join(d, "a.safetensors")
    f32_file(a, [1, 2])
    victim = os.path.join(d, "victim")
    write(victim, b"precious")
    out = os.path.join(d, "out.safetensors")
    env = dict(os.environ)
    for mode in ("auto", "named"):
        env["WAVG_TMPFILE"] = mode
        p = subprocess.Popen([WAVG, "average", "--last", "1", "--overwrite", "-o", out, a],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        # The name the old code used (its pid is known only now: plant quickly, and also plant for
        # the next few pids).
        for pid in range(p.pid, p.pid + 4):
            try:
                os.symlink(victim, f"{out}.tmp.{pid}")
            except FileExistsError:
                pass
        p.communicate(timeout=TIMEOUT)
        check(p.returncode == 0, f"planted symlink ({mode}): average succeeds")
        with open(victim, "rb") as f:
            check(f.read() == b"precious", f"planted symlink ({mode}): its target is untouched")
        check(not os.path.islink(out), f"planted symlink ({mode}): the output is a file")
        for name in os.listdir(d):
            if ".tmp." in name:
                os.remove(os.path.join(d, name))
    for name in os.listdir(d):
        os.remove(os.path.join(d, name))


def big_inputs(d, mb):
    paths = []
    n = mb * (1 << 20) // 4
    for k in range(2):
        p = os.path.join(d, f"big{k}.safetensors")
        header = {"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}
        with open(p, "wb") as f:
            f.write(st_bytes(header))
            chunk = np.full(1 << 20, k + 1, np.float32).tobytes()
            for _ in range(n // (1 << 20)):
                f.write(chunk)
        paths.append(p)
    return paths


def writing(pid, d):
    """Whether process pid holds a file of directory d open for writing (not an input)."""
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith(d + "/") and not target.endswith(".safetensors"):
                return True
    except OSError:
        pass
    return False


def test_signals(d):
    """§2: SIGINT/SIGTERM during a large average exit 130/143 and leave no temporary; SIGKILL leaves
    nothing either with O_TMPFILE."""
    ins = big_inputs(d, 200)
    out = os.path.join(d, "avg.safetensors")
    cases = [("auto", signal.SIGINT, 130), ("auto", signal.SIGTERM, 143), ("named", signal.SIGINT, 130),
             ("named", signal.SIGTERM, 143), ("auto", signal.SIGKILL, -9)]
    for mode, sig, code in cases:
        env = dict(os.environ, WAVG_TMPFILE=mode)
        p = subprocess.Popen([WAVG, "average", "--dtype", "f64", "--last", "2", "-o", out, *ins],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        # Wait until it writes: a descriptor of the process opened on a file of d (the unnamed
        # temporary shows as "d/#NNN (deleted)").
        t0 = time.time()
        while time.time() - t0 < 10 and p.poll() is None and not writing(p.pid, d):
            time.sleep(0.002)
        running = p.poll() is None
        check(running, f"{mode} {sig.name}: still running when signalled (the test needs it)")
        p.send_signal(sig)
        p.communicate(timeout=TIMEOUT)
        if running:
            check(p.returncode == code, f"{mode} {sig.name}: exit {code}, got {p.returncode}")
        left = sorted(n for n in os.listdir(d) if n not in ("big0.safetensors", "big1.safetensors"))
        check(left == [], f"{mode} {sig.name}: nothing left in the directory, found {left}")
        for n in left:
            os.remove(os.path.join(d, n))
    for p in ins:
        os.remove(p)


def test_fifo(d):
    """§2: a FIFO as an input hung forever in open()."""
    fifo = os.path.join(d, "fifo.safetensors")
    os.mkfifo(fifo)
    refused(d, "FIFO input", ["average", "--last", "1", "-o", os.path.join(d, "o.st"), fifo],
            "not a regular file")
    os.remove(fifo)


def test_many_tensors(d):
    """§3: 200 000 tensors parse and average (the parser was quadratic: this took hours)."""
    n = 200000
    vals = [np.arange(n, dtype=np.float32) * k for k in (1, 3)]
    paths = []
    for k, v in enumerate(vals):
        header = {f"t{i}": {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}
                  for i in range(n)}
        p = os.path.join(d, f"many{k}.safetensors")
        write(p, st_bytes(header, v.tobytes()))
        paths.append(p)
    out = os.path.join(d, "many_avg.safetensors")
    r = run("average", "--last", "2", "-o", out, *paths)
    check(r is not None and r.returncode == 0, f"200 000 tensors: accepted ({r and r.stderr[:200]!r})")
    if r is not None and r.returncode == 0:
        header, data = read_st(out)
        check(len(header) == n + 1, "200 000 tensors: all written")
        got = np.array([np.frombuffer(data[header[f"t{i}"]["data_offsets"][0]:][:4], np.float32)[0]
                        for i in range(0, n, 997)])
        want = ((vals[0].astype(np.float64) + vals[1]) / 2)[::997]
        check(np.array_equal(got, want.astype(np.float32)), "200 000 tensors: the mean")
    for p in paths + [out]:
        if os.path.exists(p):
            os.remove(p)


def test_large_metadata(d):
    """§3: a 95 MB __metadata__ value is valid and accepted; the newest input's metadata is kept."""
    a, b = os.path.join(d, "ma.safetensors"), os.path.join(d, "mb.safetensors")
    f32_file(a, [1, 2], metadata={"big": "a" * (95 << 20)})
    f32_file(b, [3, 4], metadata={"big": "b" * (95 << 20), "step": "2"})
    out = os.path.join(d, "meta_avg.safetensors")
    r = run("average", "--last", "2", "-o", out, a, b)
    check(r is not None and r.returncode == 0, f"95 MB metadata: accepted ({r and r.stderr[:200]!r})")
    if r is not None and r.returncode == 0:
        header, data = read_st(out)
        meta = header["__metadata__"]
        check(meta.get("big") == "b" * (95 << 20) and meta.get("step") == "2",
              "95 MB metadata: the newest input's metadata is kept")
        check(np.array_equal(np.frombuffer(data, np.float32), [2, 3]), "95 MB metadata: the mean")
    # Memory does not multiply with the inputs: six such inputs peak about as high as two (before:
    # each open input kept its parsed metadata, +95 MB or more per input).
    more = [os.path.join(d, f"mc{k}.safetensors") for k in range(4)]
    for k, p in enumerate(more):
        f32_file(p, [k, k], metadata={"big": str(k) * (95 << 20)})
    rss2 = peak_rss_mb(["average", "--last", "2", "--overwrite", "-o", out, a, b])
    rss6 = peak_rss_mb(["average", "--last", "6", "--overwrite", "-o", out, *more, a, b])
    print(f"peak memory, 95 MB metadata: 2 inputs {rss2} MB, 6 inputs {rss6} MB")
    check(rss2 is not None and rss6 is not None and rss6 < rss2 + 150,
          f"95 MB metadata: peak memory with 6 inputs {rss6} MB vs 2 inputs {rss2} MB")
    for p in more:
        os.remove(p)
    # A 95 MB string as a shape entry (invalid): refused with a short message.
    p = os.path.join(d, "bigshape.safetensors")
    write(p, st_bytes({"a": {"dtype": "F32", "shape": ["x" * (95 << 20)], "data_offsets": [0, 4]}},
                      b"\0" * 4))
    for f in (a, b, out):
        os.remove(f)
    refused(d, "95 MB string as a shape entry", ["average", "--last", "1", "-o",
                                                 os.path.join(d, "o.st"), p], "non-negative")
    os.remove(p)


def peak_rss_mb(args):
    """Peak resident memory (MB) of `wavg ARGS`, run from a fresh Python so that ru_maxrss of its
    children is this run's alone; None if it fails."""
    code = ("import resource, subprocess, sys\n"
            "r = subprocess.run(sys.argv[1:], capture_output=True)\n"
            "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    r = subprocess.run([sys.executable, "-c", code, WAVG, *args], capture_output=True, text=True,
                       timeout=TIMEOUT)
    rc, kb = r.stdout.split()
    return int(kb) / 1024 if rc == "0" else None


def test_numel_overflow(d):
    """§4: shape [2^32, 2^32 - 1, 0] passed the uint64 check and overflowed int64 in numel(). The
    reference multiplies in uint64, so it is a valid empty tensor (issue 21: agree with it,
    safetensors_reference_test.py); [2^32, 2^32, 2] overflows uint64 and is refused."""
    p = os.path.join(d, "ovf.safetensors")
    write(p, st_bytes({"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 2],
                             "data_offsets": [0, 0]}}))
    refused(d, "numel overflow", ["average", "--last", "1", "-o", os.path.join(d, "o.st"), p],
            "overflows")
    write(p, st_bytes({"a": {"dtype": "F32", "shape": [4294967296, 4294967295, 0],
                             "data_offsets": [0, 0]}}))
    out = os.path.join(d, "o.st")
    r = run("average", "--last", "1", "-o", out, p)
    check(r is not None and r.returncode == 0, f"empty tensor after a large prefix: accepted ({r and r.stderr})")
    if r is not None and r.returncode == 0:
        (n,) = struct.unpack("<Q", open(out, "rb").read(8))
        h = json.loads(open(out, "rb").read()[8:8 + n])
        check(h["a"]["shape"] == [4294967296, 4294967295, 0], "empty tensor: shape written back")
        os.remove(out)
    os.remove(p)


def test_narrowing(d):
    """§4: --dtype f16 of F32 70000 wrote inf silently; --saturate clamps to 65504."""
    a, b = os.path.join(d, "na.safetensors"), os.path.join(d, "nb.safetensors")
    f32_file(a, [70000, 1], name="big.weight")
    f32_file(b, [70000, 3], name="big.weight")
    out = os.path.join(d, "n_avg.safetensors")
    refused(d, "f16 overflow", ["average", "--last", "2", "--dtype", "f16", "-o", out, a, b],
            "big.weight")
    r = run("average", "--last", "2", "--dtype", "f16", "--saturate", "-o", out, a, b)
    check(r is not None and r.returncode == 0, "f16 --saturate: accepted")
    if r is not None and r.returncode == 0:
        _, data = read_st(out)
        got = np.frombuffer(data, np.float16)
        check(got[0] == np.finfo(np.float16).max and got[1] == 2, f"f16 --saturate: {got}")
        os.remove(out)
    r = run("average", "--last", "2", "--dtype", "bf16", "-o", out, a, b)
    check(r is not None and r.returncode == 0, "bf16 holds 70000: accepted")
    for f in (a, b, out):
        if os.path.exists(f):
            os.remove(f)


def test_out_of_range_flags(d):
    """§4: --last 99999999999999999999 was clamped to INT64_MAX."""
    a = os.path.join(d, "a.safetensors")
    f32_file(a, [1])
    for flag in ("--last", "--lawa"):
        refused(d, f"{flag} out of range",
                ["average", flag, "99999999999999999999", "-o", os.path.join(d, "o.st"), a],
                "99999999999999999999")
    refused(d, "--every out of range", ["average", "--swa", "--every", "-99999999999999999999", "-o",
                                        os.path.join(d, "o.st"), a], "--every")
    seed = "99999999999999999999"
    refused(d, "eval --seed out of range",
            ["eval", a, "--workload", "synth_ctr", "--seed", seed], seed)
    refused(d, "eval --seed out of range (negative)",
            ["eval", a, "--workload", "synth_ctr", "--seed", "-" + seed], "--seed")
    refused(d, "sweep grid value out of range",
            ["sweep", d, "--lawa", "window=" + seed], "window must be a 64-bit integer")
    cfg = os.path.join(d, "c.toml")
    write(cfg, b'workload = "synth_ctr"\n')
    refused(d, "train --set integer out of range",
            ["train", "--config", cfg, "--set", "batch_size=" + seed], "'batch_size' must be an integer")
    os.remove(cfg)
    os.remove(a)


def test_resource_limits(d):
    """§3: batch_size = 10^9 or a LAWA window of 10^12 allocated for 50 s, then 'out of memory' with
    exit 3. Refused when the config is read: exit 2, the key and the bytes, no run directory."""
    cfg = os.path.join(d, "c.toml")
    run_dir = os.path.join(d, "run")
    write(cfg, f'workload = "synth_ctr"\nout = "{run_dir}"\nsteps = 20\n'.encode())
    base = ["train", "--config", cfg, "--quiet"]
    cases = [
        ("batch_size = 10^9", ["--set", "batch_size=1000000000"],
         "'batch_size' = 1000000000 needs about "),
        ("a LAWA window of 10^12", ["--set", "lawa=[{window = 1000000000000}]"],
         "'lawa[0].window' = 1000000000000 needs about "),
        # horizon = ν·L/T: a whole run of 10^12 steps at ν = 1 resolves to L = 10^12.
        ("a horizon resolving to 10^12 samples",
         ["--set", "steps=1000000000000", "--set", "lawa=[{horizon = 1.0, every = 1}]"],
         "'lawa[0].window' = 1000000000000 needs about "),
    ]
    for what, sets, needle in cases:
        r = refused(d, what, base + sets, needle)
        check(r is not None and " bytes" in r.stderr and "available (MemAvailable)" in r.stderr,
              f"{what}: the bytes needed and available: {r and r.stderr[:300]!r}")
        check(not os.path.exists(run_dir), f"{what}: no run directory")
    # fmnist_cnn's training split holds 55 000 images (refused before its data is read).
    write(cfg, f'workload = "fmnist_cnn"\nout = "{run_dir}"\n'.encode())
    refused(d, "a batch larger than the training split", base + ["--set", "batch_size=55001"],
            "'batch_size' = 55001 is larger than the training split of fmnist_cnn (55000 examples)")
    os.remove(cfg)


def main():
    with tempfile.TemporaryDirectory() as d:
        for test in (test_nested_json, test_output_is_input, test_planted_symlink, test_fifo,
                     test_numel_overflow, test_narrowing, test_out_of_range_flags,
                     test_resource_limits,
                     test_many_tensors, test_large_metadata, test_signals):
            t0 = time.time()
            test(d)
            print(f"{test.__name__}: {time.time() - t0:.1f} s")
    finish()


if __name__ == "__main__":
    main()
