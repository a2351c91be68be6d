#!/usr/bin/python3
"""tests/ref/llama_ref.py: an independent numeric reference for the engine (test-only).

Owns: a self-contained GGUF v2/v3 reader (header, every metadata type, tensor infos,
alignment; every length, count and offset checked against the file size) and a Llama
forward pass in float64 numpy. It imports no project code and shares no code with the
C engine, so agreement between the two means something.

The forward pass (positions 0..T-1 of one sequence, or continued through a KV cache):
    x = token_embd[tokens]                                  (dequantized exactly)
    per layer:  h = rmsnorm(x) * attn_norm
                q, k, v = h Wq^T, h Wk^T, h Wv^T            (+ biases when the file has them)
                RoPE on q, k: NORM rotates (x[2i], x[2i+1]); NEOX (bool key
                orthod.rope.neox, or --rope neox) rotates (x[i], x[i+n_rot/2]);
                theta = pos * freq_scale * base^(-2i/n_rot)
                causal softmax attention, scale 1/sqrt(head_dim), GQA: head h uses kv
                head h // (n_head / n_head_kv)
                x += attn Wo^T
                h = rmsnorm(x) * ffn_norm;  x += (silu(h Wg^T) * (h Wu^T)) Wd^T
    logits = (rmsnorm(x) * output_norm) Wout^T      (Wout = output.weight, else token_embd)

Activation rounding (--act-quant) simulates what llama.cpp's CPU matmuls do to their
input before a dot product, so a quantized model can be compared tightly:
    none   every matmul sees the float64 activations (the exact math of the stored weights)
    ggml   llama.cpp's vec_dot_type rule: F16 weights see F16-rounded activations, BF16
           weights BF16-rounded ones, Q8_0 and Q4_0 weights Q8_0-quantized ones
           (quantize_row_q8_0_ref: per 32 values d = amax/127, q = roundf(x/d), scale fp16(d))
    orthod the same as ggml except F16 weights, which see the F32 activations (what the
           orthod CPU engine does at its AVX-512 kernel level: it converts F16 weights
           exactly and multiplies in F32; BF16 goes through vdpbf16ps)
    orthod-avx2  orthod's scalar and AVX2 levels: only Q8_0/Q4_0 weights round (to Q8_0);
           BF16 weights, like F16, meet the F32 activations exactly
    a map  "q8_0=q8_0,q4_0=q8_0,bf16=bf16" (weight dtype = activation format, others none)
--kv f16 rounds K and V to F16 when they enter the cache (as an F16 KV cache stores them).

Command line:
    llama_ref.py MODEL --tokens 1,403,407 --out logits.npy   # (T, n_vocab) float64, all positions
    llama_ref.py MODEL --tokens 1,403,407,261,378 --greedy 10   # prints the greedy ids (JSON list)
    llama_ref.py MODEL --info                                 # hyperparameters and tensors
Run it with /usr/bin/python3 (Debian's numpy).
"""

import argparse
import json
import math
import mmap
import os
import struct
import sys

import numpy as np

# ---------------------------------------------------------------------------------------
# GGUF reader
# ---------------------------------------------------------------------------------------

GGUF_MAGIC = b"GGUF"
GGUF_DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
MAX_NAME = 63            # ggml's GGML_MAX_NAME - 1
MAX_KEY = 65535

# metadata value types: id -> (name, struct format or None)
T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, \
    T_ARRAY, T_UINT64, T_INT64, T_FLOAT64 = range(13)
SCALAR_FMT = {
    T_UINT8: "<B", T_INT8: "<b", T_UINT16: "<H", T_INT16: "<h", T_UINT32: "<I",
    T_INT32: "<i", T_FLOAT32: "<f", T_BOOL: "<B", T_UINT64: "<Q", T_INT64: "<q",
    T_FLOAT64: "<d",
}
SCALAR_NP = {
    T_UINT8: "<u1", T_INT8: "<i1", T_UINT16: "<u2", T_INT16: "<i2", T_UINT32: "<u4",
    T_INT32: "<i4", T_FLOAT32: "<f4", T_BOOL: "<u1", T_UINT64: "<u8", T_INT64: "<i8",
    T_FLOAT64: "<f8",
}
INT_TYPES = (T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_UINT64, T_INT64)

# tensor dtypes (ggml numbering): id -> (name, elements per block, bytes per block)
DTYPES = {
    0: ("f32", 1, 4), 1: ("f16", 1, 2), 2: ("q4_0", 32, 18), 3: ("q4_1", 32, 20),
    6: ("q5_0", 32, 22), 7: ("q5_1", 32, 24), 8: ("q8_0", 32, 34), 9: ("q8_1", 32, 36),
    10: ("q2_k", 256, 84), 11: ("q3_k", 256, 110), 12: ("q4_k", 256, 144),
    13: ("q5_k", 256, 176), 14: ("q6_k", 256, 210), 15: ("q8_k", 256, 292),
    24: ("i8", 1, 1), 25: ("i16", 1, 2), 26: ("i32", 1, 4), 27: ("i64", 1, 8),
    28: ("f64", 1, 8), 30: ("bf16", 1, 2),
}
DEQUANT_OK = ("f32", "f16", "bf16", "q8_0", "q4_0", "f64")


class GGUFError(Exception):
    """A malformed or unsupported file; the message names what is wrong."""


class Tensor:
    __slots__ = ("name", "ne", "dtype", "offset", "nbytes")

    def __init__(self, name, ne, dtype, offset, nbytes):
        self.name, self.ne, self.dtype, self.offset, self.nbytes = name, ne, dtype, offset, nbytes

    @property
    def dtype_name(self):
        return DTYPES[self.dtype][0]

    def __repr__(self):
        return "Tensor(%r, ne=%s, %s)" % (self.name, list(self.ne), self.dtype_name)


class _Cursor:
    """Bounds-checked little-endian reads over a bytes-like object."""

    def __init__(self, buf, size):
        self.buf, self.size, self.pos = buf, size, 0

    def need(self, n, what):
        if n < 0 or self.pos + n > self.size:
            raise GGUFError("%s: %d bytes needed at offset %d, past end of file (%d bytes)"
                            % (what, n, self.pos, self.size))

    def remaining(self):
        return self.size - self.pos

    def scalar(self, t, what):
        fmt = SCALAR_FMT[t]
        n = struct.calcsize(fmt)
        self.need(n, what)
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += n
        if t == T_BOOL:
            if v > 1:
                raise GGUFError("%s: bool value %d is neither 0 nor 1" % (what, v))
            v = bool(v)
        return v

    def u32(self, what):
        return self.scalar(T_UINT32, what)

    def u64(self, what):
        return self.scalar(T_UINT64, what)

    def string(self, what, max_len=None):
        n = self.u64(what + " length")
        if max_len is not None and n > max_len:
            raise GGUFError("%s: length %d over the limit %d" % (what, n, max_len))
        self.need(n, what)
        s = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return s.decode("utf-8", errors="surrogateescape")

    def value(self, t, what, depth=0):
        if t in SCALAR_FMT:
            return self.scalar(t, what)
        if t == T_STRING:
            return self.string(what)
        if t == T_ARRAY:
            if depth > 8:
                raise GGUFError("%s: arrays nested deeper than 8" % what)
            et = self.u32(what + " element type")
            n = self.u64(what + " element count")
            if et in SCALAR_NP:
                esz = np.dtype(SCALAR_NP[et]).itemsize
                if n > self.remaining() // esz:
                    raise GGUFError("%s: %d elements of %d bytes run past end of file"
                                    % (what, n, esz))
                a = np.frombuffer(self.buf, dtype=SCALAR_NP[et], count=n, offset=self.pos)
                self.pos += n * esz
                if et == T_BOOL:
                    if n and a.max() > 1:
                        raise GGUFError("%s: bool element is neither 0 nor 1" % what)
                    return a.astype(bool)
                return a.copy()
            if et == T_STRING:
                if n > self.remaining() // 8:
                    raise GGUFError("%s: %d strings run past end of file" % (what, n))
                return [self.string("%s[%d]" % (what, i)) for i in range(n)]
            if et == T_ARRAY:
                if n > self.remaining() // 12:
                    raise GGUFError("%s: %d arrays run past end of file" % (what, n))
                return [self.value(T_ARRAY, "%s[%d]" % (what, i), depth + 1) for i in range(n)]
            raise GGUFError("%s: unknown array element type %d" % (what, et))
        raise GGUFError("%s: unknown value type %d" % (what, t))


class GGUF:
    """A GGUF v2/v3 file: .version, .kv (key -> value), .kv_type (key -> type id),
    .tensors (name -> Tensor, file order kept), .alignment, .data_start, .size."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.size = os.fstat(f.fileno()).st_size
            if self.size == 0:
                raise GGUFError("%s: empty file" % path)
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            self._parse()
        except GGUFError as e:
            raise GGUFError("%s: %s" % (path, e)) from None

    def _parse(self):
        c = _Cursor(self._map, self.size)
        c.need(4, "magic")
        if bytes(self._map[0:4]) != GGUF_MAGIC:
            raise GGUFError("not a GGUF file (magic %r)" % bytes(self._map[0:4]))
        c.pos = 4
        self.version = c.u32("version")
        if self.version not in (2, 3):
            if self.version in (2 << 24, 3 << 24):
                raise GGUFError("big-endian GGUF is not supported")
            raise GGUFError("GGUF version %d is not supported (2 or 3)" % self.version)
        n_tensors = c.u64("tensor count")
        n_kv = c.u64("metadata count")
        # each KV is at least 8 (key len) + 4 (type) + 1 bytes; each tensor info at least
        # 8 + 4 + 4 + 8 bytes: a count that could not fit in the file is rejected up front
        if n_kv > c.remaining() // 13:
            raise GGUFError("metadata count %d cannot fit in the file" % n_kv)
        if n_tensors > c.remaining() // 24:
            raise GGUFError("tensor count %d cannot fit in the file" % n_tensors)
        self.kv, self.kv_type = {}, {}
        for i in range(n_kv):
            key = c.string("metadata key #%d" % i, MAX_KEY)
            if key in self.kv:
                raise GGUFError("metadata key '%s' appears twice" % key)
            t = c.u32("metadata '%s' type" % key)
            self.kv[key] = c.value(t, "metadata '%s'" % key)
            self.kv_type[key] = t
        self.n_kv, self.kv_end = n_kv, c.pos     # the metadata is bytes [24, kv_end)
        self.alignment = GGUF_DEFAULT_ALIGNMENT
        if "general.alignment" in self.kv:
            a = self.kv["general.alignment"]
            if self.kv_type["general.alignment"] not in INT_TYPES or a <= 0 or a & (a - 1):
                raise GGUFError("general.alignment %r is not a power of two" % (a,))
            self.alignment = int(a)
        self.tensors = {}
        for i in range(n_tensors):
            name = c.string("tensor #%d name" % i, MAX_NAME)
            where = "tensor '%s'" % name
            if name in self.tensors:
                raise GGUFError("%s appears twice" % where)
            n_dims = c.u32(where + " n_dims")
            if n_dims < 1 or n_dims > MAX_DIMS:
                raise GGUFError("%s: n_dims %d not in 1..%d" % (where, n_dims, MAX_DIMS))
            ne = [c.u64(where + " dim") for _ in range(n_dims)]
            t = c.u32(where + " type")
            off = c.u64(where + " offset")
            if t not in DTYPES:
                raise GGUFError("%s: unknown tensor type %d" % (where, t))
            _, blk, bsz = DTYPES[t]
            nel = 1
            for d in ne:
                if d < 1 or d > 2**62:
                    raise GGUFError("%s: dimension %d out of range" % (where, d))
                nel *= d
                if nel > 2**62:
                    raise GGUFError("%s: element count overflows" % where)
            if ne[0] % blk:
                raise GGUFError("%s: ne[0]=%d is not a multiple of the %s block size %d"
                                % (where, ne[0], DTYPES[t][0], blk))
            if off % self.alignment:
                raise GGUFError("%s: offset %d is not aligned to %d" % (where, off, self.alignment))
            self.tensors[name] = Tensor(name, tuple(ne), t, off, nel // blk * bsz)
        self.data_start = -(-c.pos // self.alignment) * self.alignment
        for t in self.tensors.values():
            if self.data_start + t.offset + t.nbytes > self.size:
                raise GGUFError("tensor '%s': offset past end of file" % t.name)
        spans = sorted((t.offset, t.offset + t.nbytes, t.name) for t in self.tensors.values())
        for (a0, a1, an), (b0, _, bn) in zip(spans, spans[1:]):
            if b0 < a1:
                raise GGUFError("tensor '%s' overlaps tensor '%s'" % (bn, an))

    def raw(self, name):
        t = self.tensors[name]
        p = self.data_start + t.offset
        return np.frombuffer(self._map, dtype=np.uint8, count=t.nbytes, offset=p)

    def array(self, name):
        """The tensor dequantized exactly to float64, numpy shape reversed(ne)
        (a weight with ne = {K, N} becomes an (N, K) array, row n = output n)."""
        t = self.tensors[name]
        return dequantize(self.raw(name), t.dtype_name, t.ne, name)

    def close(self):
        self._map.close()


# ---------------------------------------------------------------------------------------
# dtypes: exact dequantization, and the ggml reference rounding/quantizers
# ---------------------------------------------------------------------------------------

Q8_0_BLOCK = np.dtype([("d", "<f2"), ("qs", "i1", 32)])
Q4_0_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", 16)])
assert Q8_0_BLOCK.itemsize == 34 and Q4_0_BLOCK.itemsize == 18


def bf16_bits_to_f32(u16):
    return (u16.astype(np.uint32) << 16).view(np.float32)


def dequantize(raw, dtype, ne, what="tensor"):
    """raw bytes of one tensor -> float64 array of shape reversed(ne)."""
    shape = tuple(reversed(ne))
    if dtype == "f32":
        v = raw.view("<f4").astype(np.float64)
    elif dtype == "f64":
        v = raw.view("<f8").astype(np.float64)
    elif dtype == "f16":
        v = raw.view("<f2").astype(np.float64)
    elif dtype == "bf16":
        v = bf16_bits_to_f32(raw.view("<u2")).astype(np.float64)
    elif dtype == "q8_0":
        b = raw.view(Q8_0_BLOCK)
        v = (b["d"].astype(np.float64)[:, None] * b["qs"].astype(np.float64)).reshape(-1)
    elif dtype == "q4_0":
        b = raw.view(Q4_0_BLOCK)
        lo = (b["qs"] & 0x0F).astype(np.float64) - 8.0     # elements 0..15
        hi = (b["qs"] >> 4).astype(np.float64) - 8.0       # elements 16..31
        v = (b["d"].astype(np.float64)[:, None] * np.concatenate([lo, hi], axis=1)).reshape(-1)
    else:
        raise GGUFError("%s: dtype %s is not supported by the reference (it reads %s)"
                        % (what, dtype, ", ".join(DEQUANT_OK)))
    return v.reshape(shape)


def round_f16(x):
    """float -> nearest IEEE binary16 (round to nearest even) -> float64."""
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float64)


def round_bf16(x):
    """float -> bfloat16 as ggml_compute_fp32_to_bf16 (round to nearest even) -> float64."""
    w = np.ascontiguousarray(np.asarray(x, dtype=np.float32)).view(np.uint32).astype(np.uint64)
    nan = (w & 0x7FFFFFFF) > 0x7F800000
    r = ((w + (0x7FFF + ((w >> 16) & 1))) >> 16).astype(np.uint32)
    r = np.where(nan, ((w >> 16) | 64).astype(np.uint32), r)
    return bf16_bits_to_f32((r & 0xFFFF).astype(np.uint16)).astype(np.float64)


def _roundf(x):
    """C roundf (half away from zero) of float32 values, computed exactly in float64."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def quantize_q8_0(x):
    """ggml quantize_row_q8_0_ref over the last axis (a multiple of 32), in float32.
    Returns (d as float16, qs as int8) with shapes (..., nb) and (..., nb, 32)."""
    x = np.asarray(x, dtype=np.float32)
    xb = x.reshape(x.shape[:-1] + (x.shape[-1] // 32, 32))
    amax = np.abs(xb).max(axis=-1)
    d = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        idv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, np.float32(1)), np.float32(0))
    idv = idv.astype(np.float32)
    x0 = (xb * idv[..., None]).astype(np.float32)
    qs = _roundf(x0).astype(np.int8)
    return d.astype(np.float16), qs


def dequant_q8_0_parts(d, qs):
    v = d.astype(np.float64)[..., None] * qs.astype(np.float64)
    return v.reshape(v.shape[:-2] + (v.shape[-2] * 32,))


def quantize_q4_0(x):
    """ggml quantize_row_q4_0_ref over the last axis, in float32. Returns (d float16,
    nibbles uint8 shaped (..., nb, 32) holding values 0..15 in element order)."""
    x = np.asarray(x, dtype=np.float32)
    xb = x.reshape(x.shape[:-1] + (x.shape[-1] // 32, 32))
    idx = np.abs(xb).argmax(axis=-1)        # first maximum of |x|, as the C loop picks it
    mx = np.take_along_axis(xb, idx[..., None], axis=-1)[..., 0]
    d = (mx / np.float32(-8)).astype(np.float32)
    with np.errstate(divide="ignore"):
        idv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, np.float32(1)), np.float32(0))
    idv = idv.astype(np.float32)
    x0 = ((xb * idv[..., None]).astype(np.float32) + np.float32(8.5)).astype(np.float32)
    q = np.minimum(15, np.trunc(x0.astype(np.float64)).astype(np.int64)).astype(np.uint8)
    return d.astype(np.float16), q


def quantize_weights_like(w32, dtype):
    """What ggml's reference quantizer makes of float32 weights w32 (rows on the last
    axis), dequantized to float64. Used to check that a generated quantized model is
    exactly the F32 model run through the reference quantizers."""
    if dtype == "f32":
        return np.asarray(w32, dtype=np.float32).astype(np.float64)
    if dtype == "f16":
        return round_f16(w32)
    if dtype == "bf16":
        return round_bf16(w32)
    if dtype == "q8_0":
        return dequant_q8_0_parts(*quantize_q8_0(w32))
    if dtype == "q4_0":
        d, q = quantize_q4_0(w32)
        v = d.astype(np.float64)[..., None] * (q.astype(np.float64) - 8.0)
        return v.reshape(v.shape[:-2] + (v.shape[-2] * 32,))
    raise ValueError("no reference quantizer for %s" % dtype)


ACT_FORMATS = ("none", "f16", "bf16", "q8_0")
ACT_GGML = {"f16": "f16", "bf16": "bf16", "q8_0": "q8_0", "q4_0": "q8_0"}
ACT_ORTHOD = {"bf16": "bf16", "q8_0": "q8_0", "q4_0": "q8_0"}     # F16: F32 x times exact F16 w
ACT_ORTHOD_AVX2 = {"q8_0": "q8_0", "q4_0": "q8_0"}                 # BF16 too: exact


def parse_act_quant(s):
    """'none' | 'ggml' | 'orthod' | 'orthod-avx2' | 'q8_0=q8_0,q4_0=q8_0,...' -> {weight dtype:
    activation format}."""
    if s in (None, "", "none"):
        return {}
    if s == "ggml":
        return dict(ACT_GGML)
    if s == "orthod":
        return dict(ACT_ORTHOD)
    if s == "orthod-avx2":
        return dict(ACT_ORTHOD_AVX2)
    out = {}
    for item in s.split(","):
        k, sep, v = item.partition("=")
        k, v = k.strip().lower(), v.strip().lower()
        if not sep or k not in ("f32", "f16", "bf16", "q8_0", "q4_0") or v not in ACT_FORMATS:
            raise ValueError("--act-quant: bad item %r (want WEIGHT=ACT, WEIGHT in f32|f16|bf16|"
                             "q8_0|q4_0, ACT in %s)" % (item, "|".join(ACT_FORMATS)))
        if v != "none":
            out[k] = v
    return out


def round_activations(x, fmt):
    if fmt == "f16":
        return round_f16(x)
    if fmt == "bf16":
        return round_bf16(x)
    if fmt == "q8_0":
        if x.shape[-1] % 32:
            raise ValueError("q8_0 activations need a row length that is a multiple of 32")
        return dequant_q8_0_parts(*quantize_q8_0(x))
    return x


# ---------------------------------------------------------------------------------------
# writing a re-quantized copy of a GGUF file (test inputs made from a trained model)
# ---------------------------------------------------------------------------------------

DTYPE_ID = {v[0]: k for k, v in DTYPES.items()}


def encode_weights(w32, dtype, q4_interleaved=False):
    """float32 weights (rows on the last axis) -> the bytes of a `dtype` tensor, made with
    ggml's reference quantizers (quantize_weights_like reads them back). q4_interleaved
    packs Q4_0 nibbles in the wrong order (element 2i low, 2i+1 high), for negative
    controls."""
    w32 = np.asarray(w32, dtype=np.float32)
    if dtype == "f32":
        return w32.tobytes()
    if dtype == "f16":
        return w32.astype(np.float16).tobytes()
    if dtype == "bf16":
        w = np.ascontiguousarray(w32).view(np.uint32).astype(np.uint64)
        r = ((w + (0x7FFF + ((w >> 16) & 1))) >> 16).astype(np.uint16)
        return r.tobytes()
    if dtype == "q8_0":
        d, qs = quantize_q8_0(w32)
        blk = np.zeros(d.size, dtype=Q8_0_BLOCK)
        blk["d"], blk["qs"] = d.reshape(-1), qs.reshape(-1, 32)
        return blk.tobytes()
    if dtype == "q4_0":
        d, q = quantize_q4_0(w32)
        q = q.reshape(-1, 32)
        if q4_interleaved:
            qs = q[:, 0::2] | (q[:, 1::2] << 4)
        else:
            qs = q[:, :16] | (q[:, 16:] << 4)
        blk = np.zeros(d.size, dtype=Q4_0_BLOCK)
        blk["d"], blk["qs"] = d.reshape(-1), qs
        return blk.tobytes()
    raise ValueError("cannot write %s" % dtype)


def write_requantized(src, dst, dtype, q4_interleaved=False):
    """Writes GGUF dst: src's metadata byte for byte, and every 2-D tensor whose rows are
    a whole number of `dtype` blocks stored as `dtype` (the others as they are), as a
    quantizing tool would from the F32 file. Returns the names of the converted tensors."""
    g = GGUF(src)
    blk = DTYPES[DTYPE_ID[dtype]][1]
    infos, datas, done, off = [], [], [], 0
    for name, t in g.tensors.items():
        if len(t.ne) == 2 and t.ne[0] % blk == 0 and t.dtype_name == "f32":
            raw = encode_weights(g.array(name), dtype, q4_interleaved)
            tid = DTYPE_ID[dtype]
            done.append(name)
        else:
            raw, tid = bytes(g.raw(name)), t.dtype
        off = -(-off // g.alignment) * g.alignment
        infos.append((name, t.ne, tid, off))
        datas.append((off, raw))
        off += len(raw)
    with open(dst, "wb") as f:
        f.write(GGUF_MAGIC + struct.pack("<IQQ", 3, len(infos), g.n_kv))
        f.write(bytes(g._map[24:g.kv_end]))
        for name, ne, tid, o in infos:
            nb = name.encode()
            f.write(struct.pack("<Q", len(nb)) + nb + struct.pack("<I", len(ne)))
            f.write(struct.pack("<%dQ" % len(ne), *ne) + struct.pack("<IQ", tid, o))
        start = -(-f.tell() // g.alignment) * g.alignment
        for o, raw in datas:
            f.write(b"\0" * (start + o - f.tell()))
            f.write(raw)
    g.close()
    return done


# ---------------------------------------------------------------------------------------
# near ties: roundings that float32 noise may tip the other way
# ---------------------------------------------------------------------------------------

# A value closer to a rounding boundary than TIE_DELTA times the largest magnitude of its
# row (one token's activations, or one token's K or V) is a tie: the engine computes in
# float32, in another summation order, and lands up to a few 1e-7 of that scale away from
# the float64 value, so it may have rounded a tie the other way. Values whose rounding step
# is below TIE_MIN_STEP times that threshold are not ties: rounding them either way moves
# the result by no more than the engine's own noise.
TIE_DELTA = 1e-6
TIE_MIN_STEP = 16


def _bf16_neighbors(x32):
    """The two bfloat16 values around float32 x32 (toward zero, away from zero)."""
    w = np.ascontiguousarray(x32).view(np.uint32)
    t = w & np.uint32(0xFFFF0000)
    a = t + np.uint32(0x10000)
    return t.view(np.float32).astype(np.float64), a.view(np.float32).astype(np.float64)


def _grid_round_ties(x, fmt):
    """Rounding of x (float64) to bf16 or f16 as round_activations does it; returns the
    rounded values, the other neighbor of each, and each value's distance to the midpoint
    between the two (all float64, x's shape)."""
    x32 = np.asarray(x, dtype=np.float32)
    if fmt == "bf16":
        r = round_bf16(x32)
        lo, hi = _bf16_neighbors(x32)
        alt = np.where(r == lo, hi, lo)
    else:
        h = x32.astype(np.float16)
        r = h.astype(np.float64)
        toward = np.where(x32.astype(np.float64) > r, np.float16(np.inf), np.float16(-np.inf))
        alt = np.nextafter(h, toward.astype(np.float16)).astype(np.float64)
    mid = 0.5 * (r + alt)
    with np.errstate(invalid="ignore"):
        dist = np.abs(x32.astype(np.float64) - mid)
    return r, alt, np.where(np.isfinite(dist), dist, np.inf)


class TieRounding:
    """round_activations (and the F16 rounding of K/V) that records ties (TIE_DELTA) and
    rounds the ones in `flips` the other way. A tie is a key (call, kind, index): the
    call's number in this forward pass, 'e' for an element (index into the flattened
    values) or 'd' for a Q8_0 block scale (the fp16 rounding of amax/127; index of the
    block). After a forward pass, .ties lists the keys met in order and .dist their
    distances as a fraction of the tie threshold."""

    def __init__(self, delta, flips=frozenset()):
        self.delta, self.n_calls, self.ties, self.dist, self.last = delta, 0, [], {}, None
        self.flips = {}
        for c, kind, i in flips:
            self.flips.setdefault(c, []).append((kind, i))

    def _note(self, call, kind, frac, step):
        for i in np.flatnonzero((frac < 1.0) & (step >= TIE_MIN_STEP)):
            key = (call, kind, int(i))
            self.ties.append(key)
            self.dist[key] = float(frac.reshape(-1)[i])

    def __call__(self, x, fmt):
        # one input rounded for several matmuls (h for q, k and v; for gate and up) is one
        # rounding in the engine: the same call number, so a flip applies to all of them
        if self.last is not None and self.last[0] is x and self.last[1] == fmt:
            call = self.last[2]
            self.ties = [k for k in self.ties if k[0] != call]
        else:
            call = self.n_calls
            self.n_calls += 1
        self.last = (x, fmt, call)
        shape = x.shape
        x2 = np.asarray(x, np.float64).reshape(shape[0], -1)       # one row per token
        scale = np.abs(x2).max(axis=1, keepdims=True)               # the row's magnitude
        flips = self.flips.get(call, [])
        if fmt in ("bf16", "f16"):
            r, alt, dist = _grid_round_ties(x2, fmt)
            thr = self.delta * scale
            with np.errstate(invalid="ignore", divide="ignore"):
                self._note(call, "e", (dist / thr).reshape(-1), (np.abs(alt - r) / thr).reshape(-1))
            r = r.reshape(-1)
            for kind, i in flips:
                r[i] = alt.reshape(-1)[i]
            return r.reshape(shape)
        if fmt != "q8_0":
            raise ValueError("no tie rounding for %s" % fmt)
        if x2.shape[-1] % 32:
            raise ValueError("q8_0 activations need a row length that is a multiple of 32")
        # quantize_q8_0 step by step (float32, as ggml's reference quantizer)
        x32 = x2.astype(np.float32)
        xb = x32.reshape(x32.shape[0], -1, 32)
        amax = np.abs(xb).max(axis=-1)
        d32 = (amax / np.float32(127)).astype(np.float32)
        with np.errstate(divide="ignore"):
            idv = np.where(d32 != 0, np.float32(1) / np.where(d32 != 0, d32, np.float32(1)),
                           np.float32(0)).astype(np.float32)
        x0 = (xb * idv[..., None]).astype(np.float32).astype(np.float64)
        q = _roundf(x0)
        alt_q = np.where(q > x0, q - 1, q + 1)
        # element ties: x0 near a half-integer, in x0's units (127 = the block's amax)
        dist_e = np.abs(x0 - (np.floor(x0) + 0.5))
        thr_e = self.delta * scale[:, :, None] * idv[..., None].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            # one quantum, in x0's units, is 1
            self._note(call, "e", np.where(thr_e > 0, dist_e / thr_e, np.inf).reshape(-1),
                       np.broadcast_to(np.where(thr_e > 0, 1.0 / thr_e, 0.0), x0.shape).reshape(-1))
        # block ties: amax/127 near the midpoint of two fp16 values
        dh, alt_d, dist_d = _grid_round_ties(d32.astype(np.float64), "f16")
        thr_d = self.delta * scale / 127.0
        with np.errstate(invalid="ignore", divide="ignore"):
            # a scale step moves the block's largest value by |alt_d - dh| * 127
            self._note(call, "d", np.where(thr_d > 0, dist_d / thr_d, np.inf).reshape(-1),
                       np.where(thr_d > 0, np.abs(alt_d - dh) / thr_d, 0.0).reshape(-1))
        q, dh = q.reshape(-1), dh.reshape(-1)
        for kind, i in flips:
            if kind == "e":
                q[i] = alt_q.reshape(-1)[i]
            else:
                dh[i] = alt_d.reshape(-1)[i]
        v = dh.reshape(amax.shape)[..., None] * q.reshape(x0.shape)
        return v.reshape(shape)


# ---------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------

class Weight:
    """A dequantized matrix (N, K) with its stored dtype, an optional bias (N) and the
    tensor's name."""

    def __init__(self, w, dtype, bias=None, name=""):
        self.w, self.dtype, self.bias, self.name = w, dtype, bias, name


class LlamaRef:
    def __init__(self, path, act_quant=None, kv="f32", rope=None):
        g = GGUF(path)
        self.gguf = g
        self.act = parse_act_quant(act_quant) if isinstance(act_quant, (str, type(None))) \
            else dict(act_quant)
        if kv not in ("f32", "f16"):
            raise ValueError("kv must be f32 or f16")
        self.kv_round = kv == "f16"
        self.ties = None         # a TieRounding while logits_following runs a position
        arch = g.kv.get("general.architecture")
        if arch != "llama":
            raise GGUFError("%s: architecture %r is not supported (llama only)" % (path, arch))
        a = arch

        def geti(key, default=None):
            if key not in g.kv:
                if default is None:
                    raise GGUFError("%s: metadata '%s' is missing" % (path, key))
                return default
            v = g.kv[key]
            if isinstance(v, np.ndarray):
                return [int(x) for x in v]
            if g.kv_type[key] not in INT_TYPES:
                raise GGUFError("%s: metadata '%s' is not an integer" % (path, key))
            return int(v)

        def getf(key, default):
            if key not in g.kv:
                return default
            if g.kv_type[key] not in (T_FLOAT32, T_FLOAT64):
                raise GGUFError("%s: metadata '%s' is not a float" % (path, key))
            return float(g.kv[key])

        self.n_embd = geti(a + ".embedding_length")
        self.n_layer = geti(a + ".block_count")
        # every layer has at least 9 tensors: a count the file cannot back is rejected
        # before anything is sized by it
        for key, v, hi in (("embedding_length", self.n_embd, 1 << 24),
                           ("block_count", self.n_layer, len(g.tensors) // 9)):
            if not isinstance(v, int) or v < 1 or v > hi:
                raise GGUFError("%s: %s.%s = %r is out of range 1..%d" % (path, a, key, v, hi))
        nh = geti(a + ".attention.head_count")
        nkv = geti(a + ".attention.head_count_kv", nh)
        nff = geti(a + ".feed_forward_length")
        per_layer = lambda v: v if isinstance(v, list) else [v] * self.n_layer
        self.n_head_l, self.n_head_kv_l, self.n_ff_l = per_layer(nh), per_layer(nkv), per_layer(nff)
        for name, v in (("head_count", self.n_head_l), ("head_count_kv", self.n_head_kv_l),
                        ("feed_forward_length", self.n_ff_l)):
            if len(v) != self.n_layer:
                raise GGUFError("%s: %s has %d entries for %d layers" % (path, name, len(v), self.n_layer))
        for name, v in (("head_count", self.n_head_l), ("head_count_kv", self.n_head_kv_l),
                        ("feed_forward_length", self.n_ff_l)):
            if min(v) < 1 or max(v) > (1 << 24):
                raise GGUFError("%s: %s value out of range 1..%d" % (path, name, 1 << 24))
        self.n_head, self.n_head_kv = self.n_head_l[0], self.n_head_kv_l[0]
        self.head_dim = geti(a + ".attention.key_length", self.n_embd // self.n_head)
        self.head_dim_v = geti(a + ".attention.value_length", self.head_dim)
        if not (1 <= self.head_dim <= (1 << 16) and 1 <= self.head_dim_v <= (1 << 16)):
            raise GGUFError("%s: head size %d/%d out of range" % (path, self.head_dim, self.head_dim_v))
        self.n_rot = geti(a + ".rope.dimension_count", self.head_dim)
        self.rope_base = getf(a + ".rope.freq_base", 10000.0)
        self.rope_scale = 1.0
        factor = 1.0
        if a + ".rope.scale_linear" in g.kv:
            factor = getf(a + ".rope.scale_linear", 1.0)
        stype = g.kv.get(a + ".rope.scaling.type", "none")
        if stype == "linear":
            factor = getf(a + ".rope.scaling.factor", 1.0)
        elif stype != "none":
            raise GGUFError("%s: rope scaling type %r is not supported (none, linear)" % (path, stype))
        if not (factor > 0 and math.isfinite(factor)):
            raise GGUFError("%s: rope scaling factor %r must be > 0" % (path, factor))
        self.rope_scale = 1.0 / factor
        self.eps = getf(a + ".attention.layer_norm_rms_epsilon", 1e-5)
        if not (self.rope_base > 0 and self.eps >= 0):
            raise GGUFError("%s: rope.freq_base must be > 0 and the rms epsilon >= 0" % path)
        if "orthod.rope.neox" in g.kv and g.kv_type["orthod.rope.neox"] != T_BOOL:
            raise GGUFError("%s: 'orthod.rope.neox' must be a bool" % path)
        neox = bool(g.kv.get("orthod.rope.neox", False))
        if rope is not None:
            neox = rope == "neox"
        self.rope_neox = neox
        if self.n_rot % 2 or self.n_rot > self.head_dim or self.n_rot < 0:
            raise GGUFError("%s: rope dimension %d is not even and <= head_dim %d"
                            % (path, self.n_rot, self.head_dim))
        for l in range(self.n_layer):
            if self.n_head_kv_l[l] < 1 or self.n_head_l[l] % self.n_head_kv_l[l]:
                raise GGUFError("%s: layer %d: n_head %d is not a multiple of n_head_kv %d"
                                % (path, l, self.n_head_l[l], self.n_head_kv_l[l]))

        def W(name, shape, optional=False):
            if name not in g.tensors:
                if optional:
                    return None
                raise GGUFError("%s: tensor '%s' is missing" % (path, name))
            arr = g.array(name)
            if arr.shape != shape:
                raise GGUFError("%s: tensor '%s' has shape %s, expected %s"
                                % (path, name, arr.shape, shape))
            return arr

        def M(prefix, n, k):
            t = g.tensors.get(prefix + ".weight")
            w = W(prefix + ".weight", (n, k))
            return Weight(w, t.dtype_name, W(prefix + ".bias", (n,), optional=True), prefix + ".weight")

        emb = g.tensors.get("token_embd.weight")
        if emb is None:
            raise GGUFError("%s: tensor 'token_embd.weight' is missing" % path)
        self.n_vocab = emb.ne[1] if len(emb.ne) > 1 else 0
        C = self.n_embd
        self.tok_embd = W("token_embd.weight", (self.n_vocab, C))
        self.tok_embd_dtype = emb.dtype_name
        self.layers = []
        for l in range(self.n_layer):
            p = "blk.%d." % l
            H, HKV, F = self.n_head_l[l], self.n_head_kv_l[l], self.n_ff_l[l]
            self.layers.append(dict(
                attn_norm=W(p + "attn_norm.weight", (C,)),
                q=M(p + "attn_q", H * self.head_dim, C),
                k=M(p + "attn_k", HKV * self.head_dim, C),
                v=M(p + "attn_v", HKV * self.head_dim_v, C),
                o=M(p + "attn_output", C, H * self.head_dim_v),
                ffn_norm=W(p + "ffn_norm.weight", (C,)),
                gate=M(p + "ffn_gate", F, C),
                up=M(p + "ffn_up", F, C),
                down=M(p + "ffn_down", C, F),
            ))
        self.out_norm = W("output_norm.weight", (C,))
        if "output.weight" in g.tensors:
            self.output = M("output", self.n_vocab, C)
            self.tied = False
        else:
            self.output = Weight(self.tok_embd, self.tok_embd_dtype, name="token_embd.weight")
            self.tied = True
        # RoPE inverse frequencies: base^(-2i/n_rot), i = 0..n_rot/2-1
        self.inv_freq = self.rope_base ** (-np.arange(0, self.n_rot, 2, dtype=np.float64) / self.n_rot)

    # --- pieces ---
    def info(self):
        return dict(n_vocab=self.n_vocab, n_embd=self.n_embd, n_layer=self.n_layer,
                    n_head=self.n_head, n_head_kv=self.n_head_kv, head_dim=self.head_dim,
                    n_ff=self.n_ff_l[0], n_rot=self.n_rot, rope_base=self.rope_base,
                    rope_scale=self.rope_scale, rope="neox" if self.rope_neox else "norm",
                    rms_eps=self.eps, tied_output=self.tied, act_quant=self.act,
                    kv="f16" if self.kv_round else "f32")

    def rmsnorm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def mm(self, x, m):
        """x (T, K) @ W^T -> (T, N), after the activation rounding this weight's dtype gets."""
        x = self.round(x, self.act.get(m.dtype, "none"))
        y = x @ m.w.T
        if m.bias is not None:
            y = y + m.bias
        return y

    def round(self, x, fmt):
        """An activation (or K/V) rounding: the plain one, or the tie-recording one of
        logits_following."""
        if fmt == "none":
            return x
        if self.ties is not None:
            return self.ties(x, fmt)
        return round_activations(x, fmt)

    def rope(self, x, pos):
        """x (T, heads, head_dim), pos (T,) -> rotated copy."""
        if self.n_rot == 0:
            return x
        ang = (pos.astype(np.float64) * self.rope_scale)[:, None] * self.inv_freq[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]   # (T, 1, n_rot/2)
        y = x.copy()
        if self.rope_neox:
            h = self.n_rot // 2
            x0, x1 = x[..., :h], x[..., h:self.n_rot]
            y[..., :h] = x0 * cos - x1 * sin
            y[..., h:self.n_rot] = x0 * sin + x1 * cos
        else:
            x0, x1 = x[..., 0:self.n_rot:2], x[..., 1:self.n_rot:2]
            y[..., 0:self.n_rot:2] = x0 * cos - x1 * sin
            y[..., 1:self.n_rot:2] = x0 * sin + x1 * cos
        return y

    def new_cache(self):
        return dict(n=0, k=[None] * self.n_layer, v=[None] * self.n_layer)

    def forward(self, tokens, cache=None):
        """Appends tokens (positions cache.n ..) to one sequence; returns (T, n_vocab)
        float64 logits for every new position."""
        if cache is None:
            cache = self.new_cache()
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.ndim != 1 or tokens.size == 0:
            raise ValueError("tokens must be a non-empty list")
        if tokens.min() < 0 or tokens.max() >= self.n_vocab:
            raise ValueError("token id out of range 0..%d" % (self.n_vocab - 1))
        T, p0 = tokens.size, cache["n"]
        pos = np.arange(p0, p0 + T)
        x = self.tok_embd[tokens]                                   # (T, C)
        for l, L in enumerate(self.layers):
            H, HKV, D, DV = self.n_head_l[l], self.n_head_kv_l[l], self.head_dim, self.head_dim_v
            h = self.rmsnorm(x, L["attn_norm"])
            q = self.rope(self.mm(h, L["q"]).reshape(T, H, D), pos)          # (T, H, D)
            k = self.rope(self.mm(h, L["k"]).reshape(T, HKV, D), pos)        # (T, HKV, D)
            v = self.mm(h, L["v"]).reshape(T, HKV, DV)
            if self.kv_round:
                k, v = self.round(k, "f16"), self.round(v, "f16")
            K = k if cache["k"][l] is None else np.concatenate([cache["k"][l], k])
            V = v if cache["v"][l] is None else np.concatenate([cache["v"][l], v])
            cache["k"][l], cache["v"][l] = K, V                              # (p0+T, HKV, D)
            grp = H // HKV
            Kh = np.repeat(K, grp, axis=1)                                   # (S, H, D)
            Vh = np.repeat(V, grp, axis=1)
            s = np.einsum("thd,shd->hts", q, Kh) / math.sqrt(D)              # (H, T, S)
            mask = np.arange(p0 + T)[None, :] > pos[:, None]                 # (T, S)
            s = np.where(mask[None], -np.inf, s)
            s = s - s.max(axis=-1, keepdims=True)
            pr = np.exp(s)
            pr /= pr.sum(axis=-1, keepdims=True)
            att = np.einsum("hts,shd->thd", pr, Vh).reshape(T, H * DV)
            x = x + self.mm(att, L["o"])
            h = self.rmsnorm(x, L["ffn_norm"])
            g = self.mm(h, L["gate"])
            u = self.mm(h, L["up"])
            x = x + self.mm(g / (1.0 + np.exp(-g)) * u, L["down"])
        cache["n"] = p0 + T
        return self.mm(self.rmsnorm(x, self.out_norm), self.output)

    def logits(self, tokens, n_steps=None):
        """Logits of every position. n_steps=K feeds the tokens in K steps through the KV
        cache, ceil(T/K) tokens a step (the last one shorter), as dump_logits --batch-split K."""
        if not n_steps or n_steps <= 1:
            return self.forward(tokens)
        chunk = -(-len(tokens) // n_steps)
        cache, out = self.new_cache(), []
        for i in range(0, len(tokens), chunk):
            out.append(self.forward(tokens[i:i + chunk], cache))
        return np.concatenate(out)

    def _run_tie(self, cache, tok, flips, delta):
        """One token through the model from `cache` (not changed) with ties `flips` rounded
        the other way: (logits, the cache after it, the TieRounding with the ties met)."""
        c = dict(n=cache["n"], k=list(cache["k"]), v=list(cache["v"]))
        self.ties = TieRounding(delta, flips)
        try:
            lg = self.forward([tok], c)[0]
        finally:
            tr, self.ties = self.ties, None
        return lg, c, tr

    def logits_following(self, tokens, target, noise, delta=TIE_DELTA, max_runs=400,
                         lookback=8, max_back=200):
        """Logits of every position, computed one token a step, where near ties of a rounding
        (TieRounding: values within delta of a rounding boundary, which the engine's float32
        arithmetic may have put on the other side) are rounded the other way where the
        engine did. A position whose logits are within noise (relative to its largest
        target logit) of target[t] (the engine's) keeps what it has; for the others:
          1. its own ties are tried one at a time, closest to the boundary first; a flip is
             kept when it lowers the position's largest error and moves the logits toward
             target[t] by at least half the flip's own effect (L2);
          2. if that does not bring it within noise, the ties of the `lookback` positions
             before it (a flip whose effect on its own position vanished in a later
             rounding can still move later positions through the KV cache): one at a time,
             closest first, up to max_back tries, a flip is kept when it brings this
             position within noise and keeps those in between within noise.
        Only ties can change, each by one rounding step, so a real error is not explained
        away: it stays in the result. Returns (logits (T, n_vocab), stats) with stats =
        dict(ties: ties met, flips: flips kept, flip_pos: positions with a kept flip,
        max_flip_dist: the largest distance of a kept flip as a fraction of delta,
        unresolved: positions left above noise)."""
        target = np.asarray(target, np.float64)
        hist = []    # per position: dict(cache_in, flips, lg, cache_out, ties, dist)
        st = dict(ties=0, flips=0, flip_pos=0, max_flip_dist=0.0, unresolved=0)

        def err_of(t, lg):
            return np.abs(lg - target[t]).max()

        def ok_of(t):
            return noise * np.abs(target[t]).max()

        for t, tok in enumerate(tokens):
            cache = hist[-1]["cache_out"] if hist else self.new_cache()
            flips = frozenset()
            lg, c, tr = self._run_tie(cache, tok, flips, delta)
            err, ok = err_of(t, lg), ok_of(t)
            seen, tried, runs, dist = set(tr.ties), set(), 1, dict(tr.dist)
            pending = sorted(tr.ties, key=dist.get)
            while err > ok and pending and runs < max_runs:
                k = pending.pop(0)
                if k in tried:
                    continue
                tried.add(k)
                lg2, c2, tr2 = self._run_tie(cache, tok, flips | {k}, delta)
                runs += 1
                e2 = err_of(t, lg2)
                # |r - D|^2 = |r|^2 - |D|^2 when the residual r contains the flip's effect D
                if e2 < err and (np.sum((lg2 - target[t]) ** 2) <
                                 np.sum((lg - target[t]) ** 2) - 0.5 * np.sum((lg2 - lg) ** 2)):
                    flips, lg, c, err = flips | {k}, lg2, c2, e2
                    new = [q for q in tr2.ties if q not in seen]   # met only after the flip
                    seen.update(new)
                    dist.update((q, tr2.dist[q]) for q in new)
                    pending = sorted(pending + new, key=dist.get)
            hist.append(dict(tok=tok, cache_in=cache, flips=flips, lg=lg, cache_out=c,
                             ties=sorted(seen, key=dist.get), dist=dist))
            if err > ok:
                self._follow_back(hist, t, delta, err_of, ok_of, lookback, max_back)
        self.follow_hist = hist   # for inspecting a run: per position its flips and caches
        out = []
        for t, h in enumerate(hist):
            out.append(h["lg"])
            st["ties"] += len(h["ties"])
            st["flips"] += len(h["flips"])
            st["flip_pos"] += int(bool(h["flips"]))
            st["unresolved"] += int(err_of(t, h["lg"]) > ok_of(t))
            for k in h["flips"]:
                st["max_flip_dist"] = max(st["max_flip_dist"], h["dist"].get(k, 0.0))
        return np.stack(out), st

    def _follow_back(self, hist, t, delta, err_of, ok_of, lookback, max_back):
        """Step 2 of logits_following for position t: flips at earlier positions."""
        cands = []
        for s_ in range(max(0, t - lookback), t):
            cands += [(hist[s_]["dist"][k], s_, k) for k in hist[s_]["ties"]
                      if k not in hist[s_]["flips"]]
        cands.sort(key=lambda x: x[0])
        for _, s_, k in cands[:max_back]:
            cache, redo, good = hist[s_]["cache_in"], [], True
            for j in range(s_, t + 1):
                flips = hist[j]["flips"] | ({k} if j == s_ else frozenset())
                lg, c, _ = self._run_tie(cache, hist[j]["tok"], flips, delta)
                if err_of(j, lg) > ok_of(j):
                    good = False
                    break
                redo.append((j, flips, lg, c))
                cache = c
            if good:
                for j, flips, lg, c in redo:
                    hist[j].update(flips=flips, lg=lg, cache_out=c,
                                   cache_in=hist[j - 1]["cache_out"] if j else hist[j]["cache_in"])
                return True
        return False

    def greedy(self, prompt, n):
        cache = self.new_cache()
        lg = self.forward(prompt, cache)[-1]
        out = []
        for _ in range(n):
            t = int(np.argmax(lg))
            out.append(t)
            if len(out) < n:
                lg = self.forward([t], cache)[-1]
        return out


# ---------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------

def parse_tokens(s):
    try:
        toks = [int(t) for t in s.split(",") if t.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError("--tokens wants comma-separated integers, got %r" % s)
    if not toks:
        raise argparse.ArgumentTypeError("--tokens is empty")
    return toks


def main(argv=None):
    ap = argparse.ArgumentParser(description="Independent float64 Llama reference over a GGUF file.")
    ap.add_argument("model")
    ap.add_argument("--tokens", type=parse_tokens, help="comma-separated token ids")
    ap.add_argument("--out", help="write (n_tokens, n_vocab) float64 logits of every position (.npy)")
    ap.add_argument("--greedy", type=int, metavar="N", help="print N greedy ids after --tokens")
    ap.add_argument("--act-quant", default="none",
                    help="activation rounding before matmuls: none | ggml | orthod | orthod-avx2 | WEIGHT=ACT,... "
                         "(see the docstring)")
    ap.add_argument("--kv", choices=("f32", "f16"), default="f32", help="KV cache rounding")
    ap.add_argument("--rope", choices=("norm", "neox"), help="override the file's RoPE mode")
    ap.add_argument("--batch-split", type=int, metavar="K",
                    help="feed the tokens in K steps through the KV cache (ceil(T/K) a step)")
    ap.add_argument("--info", action="store_true", help="print hyperparameters and tensors")
    a = ap.parse_args(argv)
    try:
        m = LlamaRef(a.model, act_quant=a.act_quant, kv=a.kv, rope=a.rope)
    except (GGUFError, ValueError, OSError) as e:
        print("llama_ref: %s" % e, file=sys.stderr)
        return 1
    if a.info:
        print(json.dumps(m.info(), indent=1, default=str))
        for t in m.gguf.tensors.values():
            print("  %-28s %-6s %s" % (t.name, t.dtype_name, list(t.ne)))
    if (a.out or a.greedy) and not a.tokens:
        print("llama_ref: --out and --greedy need --tokens", file=sys.stderr)
        return 2
    try:
        if a.out:
            lg = m.logits(a.tokens, a.batch_split)
            np.save(a.out, lg)
            print("llama_ref: wrote %s (%d x %d)" % (a.out, lg.shape[0], lg.shape[1]), file=sys.stderr)
        if a.greedy:
            print(json.dumps(m.greedy(a.tokens, a.greedy)))
    except ValueError as e:
        print("llama_ref: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
