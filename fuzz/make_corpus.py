#!/usr/bin/env python3
"""Writes the fuzz seed corpus: small valid and near-valid safetensors files (format of
huggingface/safetensors: u64 LE header length, JSON header, data). Run once; the files are committed."""
import json, os, struct, sys

here = os.path.dirname(os.path.abspath(__file__))

def st(tensors, metadata=None, pad=True):
    header, data, off = {}, b"", 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        data += raw
        off += len(raw)
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data

f32 = lambda *v: struct.pack("<%df" % len(v), *v)
cases = {
    "valid_f32": st([("w", "F32", [2, 2], f32(1, 2, 3, 4)), ("b", "F32", [2], f32(0.5, -1))]),
    "valid_meta": st([("w", "F32", [3], f32(1, 2, 3))], {"format": "pt", "step": "10"}),
    "valid_mixed": st([("e", "BF16", [2], b"\x80\x3f\x00\x40"), ("h", "F16", [1], b"\x00\x3c"),
                       ("i", "I64", [1], struct.pack("<q", 7)), ("m", "BOOL", [2], b"\x01\x00")]),
    "valid_empty_tensor": st([("z", "F32", [0, 3], b""), ("s", "F32", [], f32(2))]),
    "valid_no_tensors": st([], {"a": "b"}),
    "bad_overlap": st([("a", "F32", [1], f32(1))])[:-4] + f32(1, 2),
    "bad_nested_shape": struct.pack("<Q", 48) + b'{"a":{"dtype":"F32","shape":[[[[1]]]],"data_offsets":[0,4]}}'[:48],
    "bad_name_ff": st([("QQ", "F32", [1], f32(1))]).replace(b'"QQ"', b'"\xffQ"'),
    "nan_value": st([("n", "F32", [1], struct.pack("<I", 0x7FC00000))]),
    # issue 11: nesting past the depth bound (small here; the tests generate 70 000 levels), a shape
    # whose product overflows int64 before a 0, and a string as a shape entry.
    "bad_deep_nesting": (lambda h: struct.pack("<Q", len(h)) + h + f32(1))(
        b'{"a":{"dtype":"F32","shape":' + b"[" * 100 + b"]" * 100 + b',"data_offsets":[0,4]}}'),
    "bad_numel_int64": st([("a", "F32", [4294967296, 4294967295, 0], b"")]),
    "bad_shape_string": st([("a", "F32", ["x" * 100], f32(1))]),
}
out = os.path.join(here, "corpus", "header")
os.makedirs(out, exist_ok=True)
for name, blob in cases.items():
    with open(os.path.join(out, name + ".safetensors"), "wb") as f:
        f.write(blob)
# The averaging target reads one option byte first.
out = os.path.join(here, "corpus", "average")
os.makedirs(out, exist_ok=True)
for i, (name, blob) in enumerate(cases.items()):
    with open(os.path.join(out, name + ".bin"), "wb") as f:
        f.write(bytes([i * 7 % 32]) + blob)
print("wrote", len(cases), "cases into", os.path.join(here, "corpus"))
