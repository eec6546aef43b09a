#!/usr/bin/env python3
"""CLI tests of `wavg average`: results against numpy float64 computations on files written by an
independent safetensors writer (struct + json), exit codes and one-line messages for bad flags and
files, and no output left behind on failure. Usage: cli_average_test.py PATH_TO_WAVG"""
import json
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wavg_testlib import check, finish, runner  # noqa: E402

import numpy as np

WAVG = sys.argv[1]
run = runner(WAVG)
NP_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64}


def bf16_bits(a):
    """float32 array -> bf16 bit patterns (round to nearest even)."""
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def bf16_values(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def write_st(path, tensors, metadata=None):
    """tensors: name -> (dtype string, numpy array of raw storage)."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, (dt, arr) in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_st(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        raw = data[8 + n + b : 8 + n + e]
        if info["dtype"] == "BF16":
            arr = bf16_values(np.frombuffer(raw, np.uint16))
        else:
            arr = np.frombuffer(raw, NP_DTYPES[info["dtype"]])
        out[name] = (info["dtype"], arr.reshape(info["shape"]))
    return out, meta


def reference(values, scheme, param=None, every=1, start=0):
    """values: list of float64 arrays, file i = step i (DESIGN.md §2)."""
    xs = [v for i, v in enumerate(values) if i >= start and i % every == 0]
    if scheme == "ema":
        e = xs[0]
        for x in xs[1:]:
            e = param * e + (1 - param) * x
        return e
    if scheme == "lawa":
        xs = xs[-param:]
    return np.mean(xs, axis=0)


with tempfile.TemporaryDirectory() as tmp:
    rng = np.random.default_rng(0)
    for dt in ["F32", "F16", "BF16"]:
        files, vals = [], []
        for i in range(12):
            w = rng.normal(0, 1, size=(17, 5)).astype(np.float32)
            if dt == "BF16":
                raw = bf16_bits(w)
                val = bf16_values(raw).reshape(w.shape)
            else:
                raw = w.astype(NP_DTYPES[dt])
                val = raw.astype(np.float64)
            path = os.path.join(tmp, f"{dt}_{i:02d}.safetensors")
            write_st(path, {"net.w": (dt, raw), "step": ("I64", np.array([i * 10], np.int64))}, {"epoch": str(i)})
            files.append(path)
            vals.append(val)
        cases = [
            (["--last", "4"], "lawa", 4, 1, 0),
            (["--lawa", "3", "--every", "2", "--start", "1"], "lawa", 3, 2, 1),
            (["--ema", "0.8"], "ema", 0.8, 1, 0),
            (["--ema", "0.5", "--every", "3"], "ema", 0.5, 3, 0),
            (["--swa", "--start", "6"], "swa", None, 1, 6),
        ]
        for flags, scheme, param, every, start in cases:
            out = os.path.join(tmp, "out.safetensors")
            r = run("average", *flags, "--dtype", "f64", "--overwrite", "-o", out, *files)
            check(r.returncode == 0, f"{dt} {flags}: exit {r.returncode} {r.stderr}")
            if r.returncode:
                continue
            got, meta = read_st(out)
            want = reference(vals, scheme, param, every, start)
            err = np.max(np.abs(got["net.w"][1] - want) / np.maximum(1.0, np.abs(want)))
            check(err < 1e-6, f"{dt} {flags}: max relative error {err}")
            check(got["step"][1][0] == 110, f"{dt} {flags}: non-floating tensor copied from the newest file")
            check(meta.get("epoch") == "11" and "wavg.average" in meta, f"{dt} {flags}: metadata kept and recorded")
        # Default output dtype is the input's; the value is the reference rounded once.
        out = os.path.join(tmp, "same.safetensors")
        r = run("average", "--last", "3", "--overwrite", "-o", out, *files)
        check(r.returncode == 0, f"{dt} default dtype: {r.stderr}")
        got, _ = read_st(out)
        check(got["net.w"][0] == dt, f"{dt}: default output dtype is the input's, got {got['net.w'][0]}")
        want = reference(vals, "lawa", 3)
        tol = {"F32": 1e-6, "F16": 1e-3, "BF16": 8e-3}[dt]
        err = np.max(np.abs(got["net.w"][1] - want) / np.maximum(1.0, np.abs(want)))
        check(err < tol, f"{dt}: rounded average error {err}")

    # ---- errors: exit code 2, one line naming the problem, no output file ----
    good = os.path.join(tmp, "F32_00.safetensors")
    good2 = os.path.join(tmp, "F32_01.safetensors")
    bad_shape = os.path.join(tmp, "bad_shape.safetensors")
    write_st(bad_shape, {"net.w": ("F32", np.zeros((5, 17), np.float32)), "step": ("I64", np.zeros(1, np.int64))})
    truncated = os.path.join(tmp, "truncated.safetensors")
    with open(good2, "rb") as f:
        blob = f.read()
    with open(truncated, "wb") as f:
        f.write(blob[:-7])
    garbage = os.path.join(tmp, "garbage.safetensors")
    with open(garbage, "wb") as f:
        f.write(b"\xff" * 64)
    nan_file = os.path.join(tmp, "nan.safetensors")
    w = np.zeros((17, 5), np.float32)
    w[3, 2] = np.nan
    write_st(nan_file, {"net.w": ("F32", w), "step": ("I64", np.zeros(1, np.int64))})

    out = os.path.join(tmp, "never.safetensors")
    error_cases = [
        (["--ema", "1.5", good, good2], "beta must be in [0, 1), got 1.5"),
        (["--lawa", "0", good, good2], "window (L) must be >= 1, got 0"),
        (["--last", "0", good, good2], "--last must be >= 1, got 0"),
        (["--last", "2", "--ema", "0.5", good, good2], "exactly one of"),
        ([good, good2], "exactly one of"),
        (["--swa", "--every", "0", good, good2], "every (nu) must be >= 1, got 0"),
        (["--swa", "--dtype", "i32", good, good2], "--dtype must be one of"),
        (["--last", "2", "--every", "2", good, good2], "do not apply to --last"),
        (["--ema", "abc", good, good2], "abc"),
        (["--swa", "--bogus", good, good2], "bogus"),
        (["--swa", good, bad_shape], "tensor 'net.w' has a different shape"),
        (["--swa", good, truncated], "truncated"),
        (["--swa", garbage, good], "garbage.safetensors"),
        (["--swa", nan_file, good], "element 17 is not finite"),
        (["--swa", os.path.join(tmp, "missing.safetensors"), good], "cannot open"),
        (["--lawa", "2", "--start", "5", good, good2], "no input is sampled"),
    ]
    for args, needle in error_cases:
        r = run("average", "-o", out, *args)
        lines = r.stderr.strip().splitlines()
        check(r.returncode == 2, f"{args}: exit code {r.returncode}, want 2 ({r.stderr.strip()})")
        check(len(lines) == 1, f"{args}: want one line on stderr, got {lines}")
        check(needle in r.stderr, f"{args}: message {r.stderr.strip()!r} lacks {needle!r}")
        check(not os.path.exists(out), f"{args}: output file left behind")
        check(not any(".tmp." in f for f in os.listdir(tmp)), f"{args}: temporary file left behind")
    # Names from a file never reach the terminal raw (issue 10 §2): a 0xFF byte (invalid UTF-8, so
    # invalid JSON) and an ESC byte (valid JSON "\u001b") in tensor names come back as \xNN.
    raw_ff = os.path.join(tmp, "raw_ff.safetensors")
    h = b'{"net\xff.w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    with open(raw_ff, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"\0" * 4)
    esc = os.path.join(tmp, "esc.safetensors")
    write_st(esc, {"net.w\x1b[2J": ("F32", np.zeros((17, 5), np.float32)), "step": ("I64", np.zeros(1, np.int64))})
    for args, needle in [([raw_ff, good], b"net\\xff"), ([esc, good], b"only in the first ('net.w\\x1b[2J')")]:
        r = subprocess.run([WAVG, "average", "--swa", "-o", out, *args], capture_output=True)
        lines = r.stderr.strip().splitlines()
        check(r.returncode == 2, f"{args}: exit code {r.returncode}, want 2 ({r.stderr!r})")
        check(len(lines) == 1, f"{args}: want one line on stderr, got {lines}")
        check(needle in r.stderr, f"{args}: message {r.stderr!r} lacks {needle!r}")
        check(all(0x20 <= c < 0x7F for c in r.stderr.strip()), f"{args}: raw bytes in {r.stderr!r}")
        check(not os.path.exists(out), f"{args}: output file left behind")

    # Issue 21 bug 5: weights whose sum overflows (1e308 + 1e308 = Inf) gave every input weight 0
    # and an all-zero average; normalised by the largest first, they are the plain mean.
    a = read_st(good)[0]["net.w"][1].astype(np.float64)
    b = read_st(good2)[0]["net.w"][1].astype(np.float64)
    for weights, want in [("1e308,1e308", 0.5 * a + 0.5 * b), ("1.7976931348623157e308,0", a),
                          ("1e308,1e-308", a)]:
        huge = os.path.join(tmp, "huge.safetensors")
        r = run("average", "--weights", weights, "--dtype", "f64", "--overwrite", "-o", huge, good, good2)
        check(r.returncode == 0, f"--weights {weights}: exit {r.returncode} {r.stderr.strip()}")
        if r.returncode == 0:
            got = read_st(huge)[0]["net.w"][1]
            check(np.array_equal(got, want), f"--weights {weights}: the weighted mean (max error "
                  f"{np.max(np.abs(got - want))})")

    r = run("average", "--swa", "-o", good, good, good2)
    check(r.returncode == 2 and "same file" in r.stderr, "refuses to overwrite an input")
    r = run("--help")
    check(r.returncode == 0 and "average" in r.stdout, "--help works")

finish()
