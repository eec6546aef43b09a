"""Shared helpers of the Python CLI tests: soft checks that collect failures and the closing line
'N passed, N failed' that CTest's log and CI read; running the CLI; the one-line error contract
(exit 2, one line 'wavg: error: ...'); and a safetensors reader and writer written from the format's
specification with numpy (Debian has no python3-safetensors), independent of the code under test."""
import json
import os
import struct
import subprocess
import sys

import numpy as np

failures = []
checks = 0


def check(cond, what):
    """Records one check; prints it when it fails."""
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def finish():
    print(f"{checks - len(failures)} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


def runner(exe, timeout=None, unset=()):
    """A function run(*args, env=None) that runs `exe args...` with stdout and stderr captured as
    text, in this process's environment without the variables `unset` and with `env` added."""
    def run(*args, env=None):
        e = dict(os.environ)
        for k in unset:
            e.pop(k, None)
        e.update(env or {})
        return subprocess.run([exe, *args], capture_output=True, text=True, env=e, timeout=timeout)
    return run


def one_error_line(r, what, needles, out=None):
    """Exit 2 and exactly one stderr line starting with 'wavg: error: ' that contains every needle;
    with `out`, also that nothing was written there."""
    lines = r.stderr.splitlines()
    check(r.returncode == 2, f"{what}: exit code {r.returncode}, want 2 ({r.stderr.strip()!r})")
    check(len(lines) == 1 and lines[0].startswith("wavg: error: "),
          f"{what}: want one line 'wavg: error: ...', got {lines}")
    for n in needles:
        check(n in r.stderr, f"{what}: message {r.stderr.strip()!r} lacks {n!r}")
    if out is not None:
        check(not os.path.exists(out), f"{what}: wrote {out}")


ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
             "I32": np.int32, "U8": np.uint8}


def read_safetensors(path):
    """-> (name -> numpy array in its stored dtype, __metadata__ dict)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + b:8 + n + e], ST_DTYPES[info["dtype"]]).reshape(
            info["shape"])
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    """tensors: name -> numpy array of a dtype in ST_DTYPES; header padded to 8 bytes."""
    names = {np.dtype(v): k for k, v in ST_DTYPES.items()}
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = metadata
    for name, arr in tensors.items():
        header[name] = {"dtype": names[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for arr in tensors.values():
            f.write(np.ascontiguousarray(arr).tobytes())


def split_into_shards(path, d, shards):
    """Splits a safetensors file into `shards` shard files and an index in directory d, bytes
    copied as they are (the single file's checksum, over its whole buffer, is left out)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = {k: v for k, v in header.pop("__metadata__", {}).items() if k != "wavg.data_crc32"}
    names = sorted(header, key=lambda k: header[k]["data_offsets"][0])
    os.makedirs(d)
    weight_map = {}
    for s in range(shards):
        part, h, off = names[s::shards], {"__metadata__": meta}, 0
        blobs = []
        for k in part:
            b, e = header[k]["data_offsets"]
            h[k] = dict(header[k], data_offsets=[off, off + e - b])
            blobs.append(data[8 + n + b:8 + n + e])
            off += e - b
        fn = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        hb = json.dumps(h).encode()
        with open(os.path.join(d, fn), "wb") as f:
            f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))
        weight_map.update({k: fn for k in part})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": len(data) - 8 - n}, "weight_map": weight_map}, f)


# ---- the study's counts, recomputed from run directories (lower is better) ----------------------

INF = float("inf")


def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def first_reaching(curve, target):
    """AlgoPerf: the first evaluation at or past the target (lower is better here)."""
    return next((step for step, value in curve if value <= target), INF)


def interpolated(curve, target):
    """The crossing of the straight line between the last miss and the first hit."""
    for i, (step, value) in enumerate(curve):
        if value <= target:
            if i == 0:
                return float(step)
            s0, v0 = curve[i - 1]
            return s0 + (step - s0) * (v0 - target) / (v0 - value)
    return INF


def as_steps(v):
    return INF if v == "inf" else v


def metrics(path):
    return [json.loads(line) for line in open(os.path.join(path, "metrics.jsonl"))]


def curve_of(rows, model):
    return [[r["step"], r["value"]] for r in rows if r["model"] == model]


def check_steps(entry, curves, seeds, target, name):
    """steps_to_target of one protocol recomputed from its curves; returns the AlgoPerf medians."""
    times = {}
    for method, e in entry.items():
        model = e["model"]
        algo = [first_reaching(curves[s][model], target) for s in seeds]
        interp = [interpolated(curves[s][model], target) for s in seeds]
        got = [as_steps(v) for v in e["per_seed"]]
        check(got == algo, f"{name} {method}: AlgoPerf steps {got} vs {algo} from the curves")
        got_i = [as_steps(v) for v in e["interpolated_per_seed"]]
        check(all(a == b or abs(a - b) < 1e-9 for a, b in zip(got_i, interp)),
              f"{name} {method}: interpolated steps {got_i} vs {interp}")
        check(all(i <= a for i, a in zip(interp, algo)), f"{name} {method}: interpolated <= AlgoPerf")
        check(as_steps(e["median"]) == median(algo), f"{name} {method}: median")
        mi = median(interp)
        check(as_steps(e["interpolated_median"]) == mi or abs(as_steps(e["interpolated_median"]) - mi) < 1e-9,
              f"{name} {method}: interpolated median")
        check(e["pre_registered"] == (method != "selected"), f"{name} {method}: pre-registered flag")
        times[method] = median(algo)
    return times
