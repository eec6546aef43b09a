#!/usr/bin/env python3
"""huggingface/safetensors is the arbiter of what is a valid file (DESIGN.md §5, issue 21 §2). The
deserialisation cases of its own tests (safetensors/src/tensor.rs, `mod tests`, and
bindings/python/tests/test_simple.py, as of the 0.8.0 release pinned in
scripts/requirements-test.txt), byte for byte, plus one valid and two invalid files per dtype of
the release: each is given to the package (`safetensors.deserialize`) and to wavg's reader
(tests/safetensors_dump). The package must give the outcome the reference's test asserts (so the
pinned release is the one these cases describe), and wavg must agree with the package: accept what
it accepts with the same names, dtypes, shapes and bytes, refuse what it refuses. Valid files then
go through `wavg average --last 1`, whose output the package must read back. Then 400 mutations of
the fuzz seed corpus's headers, on which both readers must agree too.
Usage: .venv/bin/python safetensors_reference_test.py PATH_TO_SAFETENSORS_DUMP PATH_TO_WAVG"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import safetensors
from safetensors import SafetensorError

DUMP, WAVG = sys.argv[1], sys.argv[2]
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def header_file(header, data=b"", pad=True):
    """A file of the JSON header (compact, padded with spaces to 8 bytes) and data."""
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def raw_file(header_text, data=b""):
    """A file of the header exactly as given (for JSON that json.dumps cannot write) and data."""
    return struct.pack("<Q", len(header_text)) + header_text + data


I32_2x2 = (b'<\x00\x00\x00\x00\x00\x00\x00{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}'
           + b"\x00" * 16)
F32_0TO5 = b"".join(struct.pack("<f", v) for v in range(6))

# (case, the bytes, the reference's outcome: None = deserialises, else the SafeTensorError variant
# its test expects, which the Python package reports in its message)
CASES = [
    ("test_serialization", bytes([
        64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100,
        116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34,
        58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115,
        101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125]) + F32_0TO5, None),
    ("test_serialization_fp4", bytes([
        64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100,
        116, 121, 112, 101, 34, 58, 34, 70, 52, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58,
        91, 49, 44, 50, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115, 101, 116,
        115, 34, 58, 91, 48, 44, 49, 93, 125, 125, 32, 32, 32, 32, 0]), None),
    # TensorView::new refuses these before serialising; as files, deserialize must refuse them too.
    ("test_serialization_fp4_misaligned (as a file)",
     header_file({"attn.0": {"dtype": "F4", "shape": [1, 3], "data_offsets": [0, 2]}}, b"\x00\x01"),
     "MisalignedSlice"),
    ("test_serialization_fp4_invalid (as a file)",
     header_file({"attn.0": {"dtype": "F4", "shape": [1, 2], "data_offsets": [0, 2]}}, b"\x00\x01"),
     "TensorInvalidInfo"),
    ("test_empty", bytes([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]), None),
    ("test_empty (metadata)", bytes([
        40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95,
        95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112,
        116, 34, 125, 125, 32, 32, 32, 32, 32]), None),
    ("test_serialization_forced_alignement", bytes([
        72, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 48, 34, 58, 123, 34, 100, 116,
        121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58,
        91, 49, 44, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102,
        115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 32, 32, 32, 32, 32,
        32, 32]) + F32_0TO5, None),
    ("test_empty_shapes_allowed",
     b'8\x00\x00\x00\x00\x00\x00\x00{"test":{"dtype":"I32","shape":[],"data_offsets":[0,4]}}\x00\x00\x00\x00',
     None),
    ("test_deserialization", I32_2x2, None),
    ("test_json_attack", header_file(
        {f"weight_{i}": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]} for i in range(10)},
        b"\x00" * 16, pad=False), "InvalidOffset"),
    ("test_metadata_incomplete_buffer (extra data)", I32_2x2 + b"extra_bogus_data_for_polyglot_file",
     "MetadataIncompleteBuffer"),
    ("test_metadata_incomplete_buffer (missing data)", I32_2x2[:-2], "MetadataIncompleteBuffer"),
    ("test_header_too_large", b"<\x00\x00\x00\x00\xff\xff\xff" + I32_2x2[8:], "HeaderTooLarge"),
    ("test_header_too_small", b"", "HeaderTooSmall"),
    ("test_invalid_header_length", b"<\x00\x00\x00\x00\x00\x00\x00", "InvalidHeaderLength"),
    ("test_invalid_header_non_utf8", b"\x01\x00\x00\x00\x00\x00\x00\x00\xff", "InvalidHeader"),
    ("test_invalid_header_not_json", b"\x01\x00\x00\x00\x00\x00\x00\x00{", "InvalidHeaderDeserialization"),
    ("test_whitespace_padded_header", b"\x06\x00\x00\x00\x00\x00\x00\x00{}\x0D\x20\x09\x0A", None),
    ("test_whitespace_leading_padded_header", b"\x06\x00\x00\x00\x00\x00\x00\x00\x09\x0A{}\x0D\x20", None),
    ("test_zero_sized_tensor",
     b'<\x00\x00\x00\x00\x00\x00\x00{"test":{"dtype":"I32","shape":[2,0],"data_offsets":[0, 0]}}', None),
    ("test_invalid_info",
     b'<\x00\x00\x00\x00\x00\x00\x00{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0, 4]}}',
     "TensorInvalidInfo"),
    ("test_validation_overflow (shape)",
     b'O\x00\x00\x00\x00\x00\x00\x00{"test":{"dtype":"I32","shape":[2,18446744073709551614],'
     b'"data_offsets":[0,16]}}' + b"\x00" * 16, "ValidationOverflow"),
    ("test_validation_overflow (bytes)",
     b'N\x00\x00\x00\x00\x00\x00\x00{"test":{"dtype":"I32","shape":[2,9223372036854775807],'
     b'"data_offsets":[0,16]}}' + b"\x00" * 16, "ValidationOverflow"),
    # bindings/python/tests/test_simple.py
    ("python test_deserialization_metadata",
     b'f\x00\x00\x00\x00\x00\x00\x00{"__metadata__":{"framework":"pt"},"test1":{"dtype":"I32","shape":[2,2],'
     b'"data_offsets":[0,16]}}' + b"       " + b"\x00" * 16, None),
    # wavg's own, each once a disagreement: partial products in usize, as the reference multiplies
    # (a valid empty tensor); a name given twice keeps its last entry (serde reads the header into
    # a map); a field of an entry given twice is refused (serde's derive); "__metadata__": null is
    # no metadata (an Option); a NUL byte is not JSON (nlohmann's lexer ended the input there).
    ("empty tensor after a large prefix",
     header_file({"a": {"dtype": "F32", "shape": [4294967296, 4294967295, 0], "data_offsets": [0, 0]}}),
     None),
    ("a name given twice, same entry", raw_file(
        b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}',
        b"x"), None),
    ("a name given twice, the first one's bytes left over", raw_file(
        b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}',
        b"xy"), "InvalidOffset"),
    ("a field given twice", raw_file(b'{"a":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}}', b"x"),
     "InvalidHeaderDeserialization"),
    ("__metadata__ null", header_file({"__metadata__": None, "a": {"dtype": "U8", "shape": [1],
                                                                   "data_offsets": [0, 1]}}, b"x"), None),
    ("a NUL byte after the JSON", raw_file(b"{}\x00junk"), "InvalidHeaderDeserialization"),
    ("unknown members of an entry", header_file(
        {"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1], "x": {"y": [[None]]}}}, b"x"), None),
    ("a metadata key given twice", raw_file(b'{"__metadata__":{"k":"1","k":"2"}}'), None),
]

# Where wavg still disagrees with the reference (README): a dimension above 2^63 - 1 in an empty
# tensor (the reference's usize dimensions hold it; wavg's shapes are int64). Each is checked to
# still be a disagreement, so that a change on either side is noticed.
KNOWN_DISAGREEMENTS = [
    ("a dimension of 2^63 in an empty tensor",
     header_file({"a": {"dtype": "U8", "shape": [9223372036854775808, 0], "data_offsets": [0, 0]}})),
]

# Every dtype of the release (safetensors/src/tensor.rs `Dtype`), with its size in bits: a valid
# file of 8 elements, one with a byte too many (TensorInvalidInfo), and a lower-case spelling
# (not a dtype: the header does not deserialise).
DTYPE_BITS = {"BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8,
              "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16,
              "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64,
              "I64": 64, "U64": 64}
for name, bits in DTYPE_BITS.items():
    n = 8 * bits // 8
    data = bytes(range(n))
    CASES.append((f"dtype {name}", header_file({"t": {"dtype": name, "shape": [2, 4],
                                                      "data_offsets": [0, n]}}, data), None))
    CASES.append((f"dtype {name}, a byte too many", header_file(
        {"t": {"dtype": name, "shape": [2, 4], "data_offsets": [0, n + 1]}}, data + b"\x00"),
        "TensorInvalidInfo"))
    CASES.append((f"dtype {name.lower()}", header_file(
        {"t": {"dtype": name.lower(), "shape": [2, 4], "data_offsets": [0, n]}}, data),
        "InvalidHeaderDeserialization"))
# F4 with an odd element count does not fill whole bytes; F6 needs a multiple of 4 elements.
CASES.append(("dtype F4, 3 elements", header_file(
    {"t": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, b"\x00\x00"), "MisalignedSlice"))
CASES.append(("dtype F6_E2M3, 2 elements", header_file(
    {"t": {"dtype": "F6_E2M3", "shape": [2], "data_offsets": [0, 2]}}, b"\x00\x00"), "MisalignedSlice"))
CASES.append(("dtype F6_E3M2, 4 elements", header_file(
    {"t": {"dtype": "F6_E3M2", "shape": [4], "data_offsets": [0, 3]}}, b"\x00\x00\x00"), None))


# The reference's SafeTensorError variants as the package words them (their Display text).
VARIANT_TEXT = {"MisalignedSlice": "does not end up at a byte boundary",
                "TensorInvalidInfo": "invalid shape, data type, or offset",
                "InvalidOffset": "invalid offset for tensor",
                "MetadataIncompleteBuffer": "incomplete metadata",
                "HeaderTooLarge": "header too large",
                "HeaderTooSmall": "header too small",
                "InvalidHeaderLength": "invalid header length",
                "InvalidHeader": "invalid UTF-8 in header",
                "InvalidHeaderDeserialization": "invalid JSON in header",
                "ValidationOverflow": "overflow computing buffer size"}


def package(data):
    """-> (None, {name: (dtype, shape, bytes)}) or (error message, None)."""
    try:
        out = safetensors.deserialize(data)
    except SafetensorError as e:
        return str(e), None
    return None, {k: (v["dtype"], list(v["shape"]), bytes(v["data"])) for k, v in out}


# The package's dtype names (its `deserialize` spells them like numpy) -> the file's.
PACKAGE_DTYPE = {"bool": "BOOL", "int8": "I8", "uint8": "U8", "int16": "I16", "uint16": "U16",
                 "int32": "I32", "uint32": "U32", "int64": "I64", "uint64": "U64",
                 "float16": "F16", "float32": "F32", "float64": "F64", "bfloat16": "BF16",
                 "float8_e4m3fn": "F8_E4M3", "float8_e4m3fnuz": "F8_E4M3FNUZ",
                 "float8_e5m2": "F8_E5M2", "float8_e5m2fnuz": "F8_E5M2FNUZ",
                 "float8_e8m0fnu": "F8_E8M0", "complex64": "C64"}


def wavg_reader(path):
    r = subprocess.run([DUMP, path], capture_output=True, text=True, timeout=60)
    out = json.loads(r.stdout)
    if not out["ok"]:
        return out["error"], None
    return None, {t["name"]: (t["dtype"], t["shape"], bytes.fromhex(t["data"])) for t in out["tensors"]}


def same_tensors(pkg, ours):
    if sorted(pkg) != sorted(ours):
        return False
    for k, (dt, shape, data) in pkg.items():
        odt, oshape, odata = ours[k]
        if PACKAGE_DTYPE.get(dt, dt) != odt or odata != data:
            return False
        # F4 is read by the package as float4_e2m1fn_x2: two elements per byte, last dimension
        # halved; the file's shape is wavg's.
        if shape != oshape and not (odt == "F4" and shape[:-1] == oshape[:-1] and 2 * shape[-1] == oshape[-1]):
            return False
    return True


def main():
    print(f"safetensors {safetensors.__version__}")
    check(safetensors.__version__ == "0.8.0", "the pinned release (scripts/requirements-test.txt) is installed")
    # The release's list of dtypes, as its error for an unknown one words it: the list tested here.
    err, _ = package(header_file({"t": {"dtype": "X", "shape": [0], "data_offsets": [0, 0]}}))
    listed = err.split("expected one of ")[1].split(" at line")[0].replace("`", "").split(", ")
    check(listed == list(DTYPE_BITS), f"the release's dtypes are the ones tested ({listed})")
    with tempfile.TemporaryDirectory() as d:
        for i, (case, data, expected) in enumerate(CASES):
            path = os.path.join(d, f"case{i}.safetensors")
            with open(path, "wb") as f:
                f.write(data)
            perr, ptensors = package(data)
            if expected is None:
                check(perr is None, f"{case}: the package deserialises it ({perr})")
            else:
                check(perr is not None and VARIANT_TEXT[expected] in perr,
                      f"{case}: the package refuses it with {expected} ({perr})")
            werr, wtensors = wavg_reader(path)
            if perr is not None:
                check(werr is not None, f"{case}: wavg refuses it too ({werr})")
                continue
            check(werr is None and same_tensors(ptensors, wtensors),
                  f"{case}: wavg reads the same tensors ({werr or ''})")
            if werr is None:
                check_average(d, case, path, ptensors)
        check_mutations(d)
        for i, (case, data) in enumerate(KNOWN_DISAGREEMENTS):
            path = os.path.join(d, f"known{i}.safetensors")
            with open(path, "wb") as f:
                f.write(data)
            perr, _ = package(data)
            werr, _ = wavg_reader(path)
            check(perr is None and werr is not None and "too large" in werr,
                  f"known disagreement, {case}: the package accepts it ({perr}), wavg refuses it ({werr})")
    if failures:
        print(f"{len(failures)} FAILED")
        sys.exit(1)
    print("all ok")


# Tokens spliced into the headers of the fuzz seed corpus (fuzz/corpus/header) by check_mutations.
TOKENS = [b'"F4"', b'"F8_E4M3"', b'"C64"', b'"F6_E2M3"', b'"BOOL"', b"0", b"1", b"2", b"4", b"[", b"]",
          b"{", b"}", b",", b":", b'"', b" ", b"\n", b"null", b"true", b'"__metadata__"',
          b"18446744073709551615", b"9223372036854775808", b"-1", b"1.0", b"1e1", b'"dtype"', b'"shape"',
          b'"data_offsets"', b"\x00", b"\xff", b"\\u0000", b'"x"', b'""']


def check_mutations(d, count=400):
    """Differential check: headers of the fuzz seed corpus with a few tokens deleted, inserted or
    replaced (fixed seed; the header length kept consistent, the data sometimes a byte short or
    long), each accepted or refused by both readers alike."""
    import random
    rng = random.Random(21)
    seeds = []
    corpus = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "corpus", "header")
    for name in sorted(os.listdir(corpus)):
        with open(os.path.join(corpus, name), "rb") as f:
            b = f.read()
        n = struct.unpack("<Q", b[:8])[0] if len(b) >= 8 else None
        if n is not None and 8 + n <= len(b):
            seeds.append((b[8:8 + n], b[8 + n:]))
    disagreements, accepted = [], 0
    path = os.path.join(d, "mutant.safetensors")
    for _ in range(count):
        h, data = rng.choice(seeds)
        h = bytearray(h)
        for _ in range(rng.randint(1, 3)):
            op, pos = rng.randint(0, 2), rng.randrange(len(h) + 1)
            if op == 0:
                del h[pos:pos + rng.randint(1, 6)]
            else:
                h[pos:pos + (rng.randint(0, 5) if op == 2 else 0)] = rng.choice(TOKENS)
        if rng.random() < 0.3:
            data = data[:-1] if data and rng.random() < 0.5 else data + b"\0"
        blob = raw_file(bytes(h), data)
        with open(path, "wb") as f:
            f.write(blob)
        perr, _ = package(blob)
        werr, _ = wavg_reader(path)
        accepted += perr is None and werr is None
        if (perr is None) != (werr is None):
            disagreements.append((blob[:120], perr, werr))
    check(not disagreements and accepted > 0,
          f"{count} mutated headers: both readers agree on each ({accepted} accepted by both; "
          f"disagreements: {disagreements[:3]})")


MICROSCALE = {"F4", "F6_E2M3", "F6_E3M2", "F8_E8M0"}


def check_average(d, case, path, tensors):
    """`wavg average --last 1` of a valid file: the package reads the output back with the same
    tensors (an average of one file is the file); microscaling dtypes are refused with exit 2."""
    out = os.path.join(d, "avg.safetensors")
    r = subprocess.run([WAVG, "average", "--last", "1", "--overwrite", "-o", out, path],
                       capture_output=True, text=True, timeout=60)
    refused = any(PACKAGE_DTYPE.get(dt, dt) in MICROSCALE or dt.startswith("float4")
                  for dt, _, _ in tensors.values())
    if refused:
        check(r.returncode == 2 and r.stderr.count("\n") == 1 and "refused" in r.stderr,
              f"{case}: wavg average refuses it in one line ({r.stderr.strip()})")
        return
    if r.returncode != 0:
        check(False, f"{case}: wavg average of it ({r.stderr.strip()})")
        return
    with open(out, "rb") as f:
        perr, back = package(f.read())
    check(perr is None and back == tensors, f"{case}: the package reads wavg average's output back ({perr})")


if __name__ == "__main__":
    main()
