#!/usr/bin/env python3
"""Every dtype of safetensors 0.8.0 (the release pinned in scripts/requirements-test.txt) through
`wavg average` (issue 21 §2, README "Averaging checkpoints"): files written by the `safetensors`
package (raw bytes through `serialize_file` for the dtypes no framework here has; F6 by hand, as the
package cannot write it, after checking that the package reads it), outputs read back by the
package. FP8 (E4M3FN, E5M2 and the FNUZ pair) against ml_dtypes' values: every code read back
unchanged, every midpoint of neighbouring codes rounded to nearest even as ml_dtypes rounds it,
random weighted means against a nearest-even search over the format's values (and ml_dtypes where
its float32 detour is exact); C64 against
numpy complex128, component-wise; integers, BOOL and unsigned ones copied from the newest;
microscaling dtypes (F4, F6_*, F8_E8M0) and FP8 tensors with scale tensors refused in one line.
Usage: .venv/bin/python cli_dtypes_test.py PATH_TO_WAVG"""
import ctypes
import json
import os
import struct
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wavg_testlib import check, finish, one_error_line, runner  # noqa: E402

import ml_dtypes
import numpy as np
import safetensors
from safetensors import TensorSpec

WAVG = sys.argv[1]
run = runner(WAVG, timeout=120)

# file dtype -> (the package's name, numpy storage type)
FP8 = {"F8_E4M3": ml_dtypes.float8_e4m3fn, "F8_E5M2": ml_dtypes.float8_e5m2,
       "F8_E4M3FNUZ": ml_dtypes.float8_e4m3fnuz, "F8_E5M2FNUZ": ml_dtypes.float8_e5m2fnuz}
PACKAGE_NAME = {"F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "F8_E4M3FNUZ": "float8_e4m3fnuz",
                "F8_E5M2FNUZ": "float8_e5m2fnuz", "F8_E8M0": "float8_e8m0fnu", "C64": "complex64",
                "U16": "uint16", "U32": "uint32", "U64": "uint64", "U8": "uint8", "I8": "int8",
                "I16": "int16", "I32": "int32", "I64": "int64", "BOOL": "bool", "F32": "float32",
                "F16": "float16", "BF16": "bfloat16", "F64": "float64"}
FILE_NAME = {v: k for k, v in PACKAGE_NAME.items()}


def save(path, tensors, metadata=None):
    """tensors: name -> (file dtype, shape, raw bytes); written by safetensors.serialize_file."""
    keep, specs = [], {}
    for name, (dt, shape, raw) in tensors.items():
        buf = ctypes.create_string_buffer(raw, max(len(raw), 1))
        keep.append(buf)
        specs[name] = TensorSpec(dtype=PACKAGE_NAME.get(dt, dt), shape=list(shape),
                                 data_ptr=ctypes.addressof(buf), data_len=len(raw))
    safetensors.serialize_file(specs, path, metadata=metadata)


def load(path):
    """-> name -> (file dtype, shape, raw bytes), as the package reads the file."""
    with open(path, "rb") as f:
        data = f.read()
    return {k: (FILE_NAME.get(v["dtype"], v["dtype"]), list(v["shape"]), bytes(v["data"]))
            for k, v in safetensors.deserialize(data)}


def finite_codes(dt):
    """Every byte that is a finite value of FP8 format dt, as uint8."""
    codes = np.arange(256, dtype=np.uint8)
    return codes[np.isfinite(codes.view(FP8[dt]).astype(np.float64))]


def nearest_even(want, dt):
    """float64 array -> FP8 codes of dt: each value rounded to the nearest finite value of the format
    (the values ml_dtypes decodes), ties to the even code, zero keeping its sign where the format
    has -0. The correctly rounded reference: ml_dtypes' own float64 cast rounds through float32
    first (double rounding: -832.0000305 becomes -768 in E5M2, not -896), so it is the reference
    only where a value is exact in float32 (checked separately)."""
    codes = finite_codes(dt)
    vals = codes.view(FP8[dt]).astype(np.float64)
    order = np.argsort(vals, kind="stable")
    u, first = np.unique(vals[order], return_index=True)  # +0 before -0: the +0 code is kept
    uc = codes[order][first]
    i = np.clip(np.searchsorted(u, want), 1, len(u) - 1)
    lo, hi = u[i - 1], u[i]
    dlo, dhi = want - lo, hi - want
    pick_hi = (dhi < dlo) | ((dhi == dlo) & (uc[i] % 2 == 0))
    out = np.where(pick_hi, uc[i], uc[i - 1]).astype(np.uint8)
    if "FNUZ" not in dt:
        out = np.where((np.where(pick_hi, hi, lo) == 0) & np.signbit(want), np.uint8(0x80), out)
    return out


def average(d, name, files, *flags):
    out = os.path.join(d, name)
    r = run("average", *flags, "--overwrite", "-o", out, *files)
    check(r.returncode == 0, f"{name}: wavg average {' '.join(flags)}: {r.stderr.strip()}")
    return load(out) if r.returncode == 0 else None


def test_fp8_identity(d, dt):
    """--last 1 of a file of every finite code: each decodes and encodes back to itself."""
    codes = finite_codes(dt)
    src = os.path.join(d, f"id_{dt}.safetensors")
    save(src, {"w": (dt, [len(codes)], codes.tobytes())})
    out = average(d, f"id_{dt}_out.safetensors", [src], "--last", "1")
    if out:
        check(out["w"] == (dt, [len(codes)], codes.tobytes()), f"{dt}: every finite code reads back unchanged")


def test_fp8_midpoints(d, dt):
    """--swa of neighbouring codes: every midpoint (a tie) rounds to nearest even as ml_dtypes does."""
    codes = finite_codes(dt)
    vals = codes.view(FP8[dt]).astype(np.float64)
    order = np.argsort(vals, kind="stable")
    lo, hi = codes[order[:-1]], codes[order[1:]]
    keep = vals[order[:-1]] != vals[order[1:]]  # +0 and -0 are one value
    lo, hi = lo[keep], hi[keep]
    a, b = os.path.join(d, f"lo_{dt}.safetensors"), os.path.join(d, f"hi_{dt}.safetensors")
    save(a, {"w": (dt, [len(lo)], lo.tobytes())})
    save(b, {"w": (dt, [len(hi)], hi.tobytes())})
    want = (0.5 * lo.view(FP8[dt]).astype(np.float64) + 0.5 * hi.view(FP8[dt]).astype(np.float64))
    want_bytes = nearest_even(want, dt).tobytes()
    check(want_bytes == want.astype(FP8[dt]).tobytes(), f"{dt}: the midpoints' reference agrees with ml_dtypes")
    out = average(d, f"mid_{dt}_out.safetensors", [a, b], "--swa")
    if out:
        got = np.frombuffer(out["w"][2], np.uint8)
        bad = np.flatnonzero(got != np.frombuffer(want_bytes, np.uint8))
        check(out["w"][0] == dt and bad.size == 0,
              f"{dt}: {len(lo)} midpoints round to nearest even like ml_dtypes (first differences at {bad[:5]})")


def test_fp8_weighted(d, dt, rng):
    """--weights 1,1,2 of three files of random finite codes (weights exact in binary: the fp64 sum
    is exact), rounded to nearest even (and as ml_dtypes rounds where the sum is exact in float32);
    --dtype f32 of the same against numpy."""
    codes = finite_codes(dt)
    xs = [rng.choice(codes, size=(64, 33)) for _ in range(3)]
    files = []
    for i, x in enumerate(xs):
        files.append(os.path.join(d, f"r{i}_{dt}.safetensors"))
        save(files[-1], {"w": (dt, list(x.shape), x.tobytes()), "step": ("I64", [1], struct.pack("<q", i))})
    v = [x.view(FP8[dt]).astype(np.float64) for x in xs]
    want = 0.25 * v[0] + 0.25 * v[1] + 0.5 * v[2]
    out = average(d, f"wm_{dt}_out.safetensors", files, "--weights", "1,1,2")
    if out:
        got = np.frombuffer(out["w"][2], np.uint8).reshape(64, 33)
        check(out["w"][0] == dt and np.array_equal(got, nearest_even(want, dt)),
              f"{dt}: weighted mean rounded to nearest even")
        exact32 = want.astype(np.float32).astype(np.float64) == want
        ml = want.astype(FP8[dt]).view(np.uint8)
        check(exact32.sum() > 1000 and np.array_equal(got[exact32], ml[exact32]),
              f"{dt}: as ml_dtypes rounds, on the {exact32.sum()} means exact in float32")
        check(out["step"] == ("I64", [1], struct.pack("<q", 2)), f"{dt}: I64 copied from the newest")
    out = average(d, f"wm32_{dt}_out.safetensors", files, "--weights", "1,1,2", "--dtype", "f32")
    if out:
        check(out["w"] == ("F32", [64, 33], want.astype(np.float32).tobytes()),
              f"{dt} --dtype f32: the fp64 mean rounded to F32")


def test_fp8_not_finite(d):
    """A NaN code (E4M3FN 0x7f, E4M3FNUZ 0x80) or E5M2's Inf in an input is refused naming the
    element, as for the 16-bit floats."""
    out = os.path.join(d, "nan_out.safetensors")
    for dt, code in (("F8_E4M3", 0x7F), ("F8_E4M3FNUZ", 0x80), ("F8_E5M2", 0x7C)):
        p = os.path.join(d, f"nan_{dt}.safetensors")
        save(p, {"w": (dt, [3], bytes([0x30, code, 0x31]))})
        r = run("average", "--swa", "-o", out, p, p)
        one_error_line(r, f"{dt} code {code:#x}", ["'w' element 1 is not finite"], out)


def test_fp8_output(d, rng):
    """--dtype f8_*: F64 values of every magnitude (exact in float32, so that ml_dtypes' float32
    detour rounds once; and not, against the nearest-even search) rounded to each FP8 format; beyond
    its range refused in one line, or with --saturate the largest finite value of that sign where
    ml_dtypes overflows to Inf or NaN."""
    v32 = (rng.standard_normal(4000) * 10.0 ** rng.integers(-12, 7, 4000)).astype(np.float32).astype(np.float64)
    v64 = rng.standard_normal(4000) * 10.0 ** rng.integers(-9, 4, 4000)
    src = os.path.join(d, "f64.safetensors")
    save(src, {"a": ("F64", [4000], v32.tobytes()), "b": ("F64", [4000], v64.tobytes())})
    for dt, t in FP8.items():
        out = os.path.join(d, "f8out.safetensors")
        r = run("average", "--last", "1", "--dtype", dt.lower(), "--overwrite", "-o", out, src)
        one_error_line(r, f"--dtype {dt.lower()} beyond its range", ["'a' element", "out of the range of " + dt,
                                                                      "--saturate"])
        got = average(d, "f8out.safetensors", [src], "--last", "1", "--dtype", dt.lower(), "--saturate")
        if not got:
            continue
        ref = v32.astype(t)
        over = ~np.isfinite(ref.astype(np.float64))
        top = np.float64(ml_dtypes.finfo(t).max)
        want = np.where(over, np.copysign(top, v32), v32).astype(t).view(np.uint8)
        a = np.frombuffer(got["a"][2], np.uint8)
        check(got["a"][0] == dt and np.array_equal(a, want) and 100 < over.sum() < 3900,
              f"--dtype {dt.lower()} --saturate: as ml_dtypes rounds, {over.sum()} clamped")
        b = np.frombuffer(got["b"][2], np.uint8)
        inrange = np.abs(v64) <= top
        check(np.array_equal(b[inrange], nearest_even(v64[inrange], dt)),
              f"--dtype {dt.lower()}: values not exact in float32 rounded to nearest even")


def test_complex(d, rng):
    """C64: averaged component-wise in fp64 (numpy complex128 as the reference), written as C64;
    --dtype does not apply to it."""
    xs = [(rng.standard_normal((5, 7)) + 1j * rng.standard_normal((5, 7))).astype(np.complex64)
          for _ in range(2)]
    files = []
    for i, x in enumerate(xs):
        files.append(os.path.join(d, f"c{i}.safetensors"))
        save(files[-1], {"z": ("C64", [5, 7], x.tobytes())})
    want = (0.5 * xs[0].astype(np.complex128) + 0.5 * xs[1].astype(np.complex128)).astype(np.complex64)
    for flags in (["--swa"], ["--swa", "--dtype", "f16"]):
        out = average(d, "c_out.safetensors", files, *flags)
        if out:
            check(out["z"] == ("C64", [5, 7], want.tobytes()),
                  f"C64 {' '.join(flags)}: component-wise mean, written as C64")


def test_copied(d, rng):
    """Integers (signed and unsigned) and BOOL: copied from the newest file, whatever the weights."""
    types = {"U8": np.uint8, "I8": np.int8, "U16": np.uint16, "I16": np.int16, "U32": np.uint32,
             "I32": np.int32, "U64": np.uint64, "I64": np.int64, "BOOL": np.bool_}
    files, newest = [], None
    for i in range(3):
        t = {}
        for dt, np_t in types.items():
            x = rng.integers(0, 2 if dt == "BOOL" else 100, size=(3, 4)).astype(np_t)
            t[dt.lower()] = (dt, [3, 4], x.tobytes())
        t["f"] = ("F32", [2], np.array([i, -i], np.float32).tobytes())
        files.append(os.path.join(d, f"int{i}.safetensors"))
        save(files[-1], t)
        newest = t
    out = average(d, "int_out.safetensors", files, "--weights", "5,3,1")
    if out:
        for dt in types:
            check(out[dt.lower()] == newest[dt.lower()], f"{dt}: copied from the newest file")
        want = np.array([3 / 9 + 2 / 9, -(3 / 9 + 2 / 9)]).astype(np.float32)
        check(np.allclose(np.frombuffer(out["f"][2], np.float32), want, rtol=1e-6, atol=0),
              "the F32 beside them is averaged")


def hand_file(path, header, data):
    """A file the package cannot write (F6): JSON header and bytes by the format's specification."""
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def test_refused(d):
    """Microscaling dtypes: refused in one line naming the tensor and dtype, nothing written."""
    out = os.path.join(d, "refused.safetensors")
    cases = {"F8_E8M0": ("float8_e8m0fnu", [4], bytes([127, 128, 126, 130]), "block scale"),
             "F4": ("float4_e2m1fn_x2", [2, 2], bytes([0x21, 0x43, 0x65, 0x07]), "4-bit")}
    for dt, (pkg, shape, raw, needle) in cases.items():
        p = os.path.join(d, f"ms_{dt}.safetensors")
        save(p, {"blocks": (pkg, shape, raw), "w": ("F32", [1], b"\0\0\0\0")})
        check(load(p)["blocks"][0] in (pkg, dt), f"{dt}: written by the package")
        r = run("average", "--last", "1", "-o", out, p)
        one_error_line(r, f"{dt} refused", ["'blocks'", dt, needle, "refused"], out)
    for dt in ("F6_E2M3", "F6_E3M2"):
        p = os.path.join(d, f"ms_{dt}.safetensors")
        hand_file(p, {"blocks": {"dtype": dt, "shape": [4], "data_offsets": [0, 3]}}, b"\x01\x02\x03")
        with open(p, "rb") as f:
            pkg = safetensors.deserialize(f.read())
        check([k for k, _ in pkg] == ["blocks"], f"{dt}: the package reads the hand-written file")
        r = run("average", "--last", "1", "-o", out, p)
        one_error_line(r, f"{dt} refused", ["'blocks'", dt, "6-bit", "refused"], out)


def test_scaled_fp8(d):
    """FP8 tensors with scale tensors (DeepSeek-V3's `weight_scale_inv`, compressed-tensors'
    `.weight_scale`): refused naming the tensor and its scale."""
    out = os.path.join(d, "scaled.safetensors")
    w = bytes(range(16))
    for scale in ("layers.0.mlp.weight_scale_inv", "layers.0.mlp.weight_scale"):
        p = os.path.join(d, "fp8_scaled.safetensors")
        save(p, {"layers.0.mlp.weight": ("F8_E4M3", [4, 4], w),
                 scale: ("F32", [1, 1], struct.pack("<f", 0.5)),
                 "norm.weight": ("BF16", [4], bytes(8))})
        r = run("average", "--swa", "-o", out, p, p)
        one_error_line(r, f"FP8 with {scale}", ["'layers.0.mlp.weight'", "F8_E4M3", f"'{scale}'", "refused"], out)


def test_mixed(d, rng):
    """One checkpoint of several kinds, as an FP8 model has them: each tensor treated by its dtype."""
    files = []
    xs = []
    for i in range(2):
        e5 = rng.choice(finite_codes("F8_E5M2"), size=8)
        x32 = rng.standard_normal(8).astype(np.float32)
        xs.append((e5, x32))
        files.append(os.path.join(d, f"mixed{i}.safetensors"))
        save(files[-1], {"a": ("F8_E5M2", [8], e5.tobytes()), "b": ("F32", [8], x32.tobytes()),
                         "c": ("U32", [2], struct.pack("<II", i, 7)), "d": ("BOOL", [1], bytes([i]))},
             metadata={"format": "pt", "i": str(i)})
    out = average(d, "mixed_out.safetensors", files, "--swa")
    if out:
        v = [e.view(ml_dtypes.float8_e5m2).astype(np.float64) for e, _ in xs]
        check(out["a"][2] == nearest_even(0.5 * v[0] + 0.5 * v[1], "F8_E5M2").tobytes(), "mixed: F8_E5M2")
        want32 = (0.5 * xs[0][1].astype(np.float64) + 0.5 * xs[1][1].astype(np.float64)).astype(np.float32)
        check(out["b"][2] == want32.tobytes(), "mixed: F32")
        check(out["c"][2] == struct.pack("<II", 1, 7) and out["d"][2] == bytes([1]), "mixed: U32, BOOL copied")


def main():
    rng = np.random.default_rng(21)
    with tempfile.TemporaryDirectory() as d:
        for dt in FP8:
            test_fp8_identity(d, dt)
            test_fp8_midpoints(d, dt)
            test_fp8_weighted(d, dt, rng)
        test_fp8_not_finite(d)
        test_fp8_output(d, rng)
        test_complex(d, rng)
        test_copied(d, rng)
        test_refused(d)
        test_scaled_fp8(d)
        test_mixed(d, rng)
    finish()


if __name__ == "__main__":
    main()
