#!/usr/bin/env python3
"""test_quantizer_vs_numpy.py - the reference quantizer against numpy / ml_dtypes.

Random matrices at odd shapes go through quant_tool (qopt's quantizeRTN ->
storeQuantized -> loadQuantized -> dequantize); this script re-implements
each format in numpy from its definition and requires the same codes,
scales, zero points, packed bytes and dequantized values:
  - int asym: min/max (with 0 in the range), scale (max-min)/(2^b-1) rounded
    to fp16, zero round(-min/scale); sym: absmax/(2^(b-1)-1), midpoint zero;
  - NF4: bitsandbytes' table (rebuilt here from the normal quantiles),
    blocks of 64 (short last block per row), absmax double-quantized to 8
    bits per 256 blocks;
  - FP8 E4M3: ml_dtypes.float8_e4m3fn bit patterns, saturated at +-448.
"""
import argparse
import os
import subprocess
import sys
import tempfile
from statistics import NormalDist

import numpy as np

F32 = np.float32


def groups_of(cols, g):
    g = cols if g == -1 else g
    return [(b, min(b + g, cols)) for b in range(0, cols, g)]


def f16(x):
    return np.float32(np.float16(x))


def int_ref(w, bits, g, sym):
    rows, cols = w.shape
    qmax = F32(2 ** bits - 1)
    gr = groups_of(cols, g)
    codes = np.zeros_like(w, dtype=np.uint8)
    scales = np.zeros((rows, len(gr)), F32)
    zeros = np.zeros((rows, len(gr)), F32)
    for r in range(rows):
        for j, (b, e) in enumerate(gr):
            x = w[r, b:e]
            mn = min(F32(x.min()), F32(0))
            mx = max(F32(x.max()), F32(0))
            if sym:
                amax = max(-mn, mx)
                s = f16(amax / F32(2 ** (bits - 1) - 1)) if amax > 0 else F32(1)
                z = F32(2 ** (bits - 1))
            else:
                s = f16((mx - mn) / qmax) if mx > mn else F32(1)
                z = F32(np.clip(np.round(-mn / s), 0, qmax))
            if s == 0:
                s = F32(2.0 ** -24)
            q = np.clip(np.round(x / s) + z, 0, qmax)
            codes[r, b:e] = q.astype(np.uint8)
            scales[r, j] = s
            zeros[r, j] = z
    deq = np.zeros_like(w)
    for r in range(rows):
        for j, (b, e) in enumerate(gr):
            deq[r, b:e] = (codes[r, b:e].astype(F32) - zeros[r, j]) * scales[r, j]
    return codes, scales, (None if sym else zeros), deq


def nf4_table():
    """bitsandbytes' create_normal_map(offset=0.9677083), from the quantiles."""
    nd = NormalDist()
    off = 0.9677083
    pos = [nd.inv_cdf(p) for p in np.linspace(off, 0.5, 9)[:-1]]
    neg = [-nd.inv_cdf(p) for p in np.linspace(off, 0.5, 8)[:-1]]
    v = np.array(sorted(pos + [0.0] + neg))
    return (v / v.max()).astype(F32)


def nf4_ref(w, g, table):
    rows, cols = w.shape
    gr = groups_of(cols, g)
    absmax = np.array([[np.abs(w[r, b:e]).max() for (b, e) in gr] for r in range(rows)], F32)
    flat = absmax.reshape(-1)
    aq = np.zeros(flat.shape, np.uint8)
    chunks = np.zeros(((flat.size + 255) // 256, 2), F32)
    deq_absmax = np.zeros_like(flat)
    for c in range(chunks.shape[0]):
        a = flat[c * 256:(c + 1) * 256]
        lo, hi = F32(a.min()), F32(a.max())
        step = F32((hi - lo) / F32(255)) if hi > lo else F32(1)
        q = np.clip(np.round((a - lo) / step), 0, 255)
        aq[c * 256:c * 256 + a.size] = q.astype(np.uint8)
        deq_absmax[c * 256:c * 256 + a.size] = lo + q.astype(F32) * step
        chunks[c] = (lo, step)
    scales = deq_absmax.reshape(rows, len(gr))
    codes = np.zeros_like(w, dtype=np.uint8)
    for r in range(rows):
        for j, (b, e) in enumerate(gr):
            s = scales[r, j]
            v = w[r, b:e] / s if s > 0 else np.zeros(e - b, F32)
            codes[r, b:e] = np.argmin(np.abs(v[:, None] - table[None, :]), axis=1)
    return codes, scales, aq.reshape(rows, len(gr)), chunks


def fp8_ref(w):
    import ml_dtypes
    amax = np.abs(w).max(axis=1)
    s = np.where(amax > 0, amax / F32(448), F32(1)).astype(F32)
    x = np.clip(w / s[:, None], -448, 448).astype(F32)
    codes = x.astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    deq = codes.view(ml_dtypes.float8_e4m3fn).astype(F32) * s[:, None]
    return codes, s[:, None], deq


def pack_ref(codes, bits):
    rows, cols = codes.shape
    bitplane = ((codes[:, :, None].astype(np.uint16) >> np.arange(bits)) & 1).astype(np.uint8)
    bitplane = bitplane.reshape(rows, cols * bits)
    pad = (-bitplane.shape[1]) % 8
    bitplane = np.pad(bitplane, ((0, 0), (0, pad)))
    return np.packbits(bitplane, axis=1, bitorder="little")


def random_weights(rng, rows, cols):
    w = rng.normal(0, 0.05, (rows, cols)).astype(F32)
    for r in range(rows):
        w[r, (r * 13) % cols] *= 25  # an outlier per row
    if rows > 1:
        w[1, :40] = 0  # an all-zero group
        w[0, 3:50] = np.abs(w[0, 3:50])  # a one-signed stretch
    return w


def run_tool(tool, w, fmt, group, sym, tmp):
    np.save(os.path.join(tmp, "w.npy"), w)
    subprocess.run([tool, os.path.join(tmp, "w.npy"), fmt, str(group), "1" if sym else "0", tmp],
                   check=True, stdout=subprocess.DEVNULL)
    load = lambda n: np.load(os.path.join(tmp, n + ".npy"))
    return load


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    failures = 0
    checked = 0

    def check(cond, what):
        nonlocal failures
        if not cond:
            failures += 1
            print("FAIL:", what)

    shapes = [(1, 4096), (7, 172), (33, 544)]
    with tempfile.TemporaryDirectory() as tmp:
        for rows, cols in shapes:
            w = random_weights(rng, rows, cols)
            for bits in range(2, 9):
                for group in (32, 64, 128, -1):
                    for sym in (False, True):
                        if rows == 1 and group == 64:
                            continue
                        load = run_tool(args.tool, w, "int%d" % bits, group, sym, tmp)
                        codes, scales, zeros, deq = int_ref(w, bits, group, sym)
                        tag = "int%d g%d %s [%d,%d]" % (bits, group, "sym" if sym else "asym",
                                                        rows, cols)
                        check(np.array_equal(load("codes"), codes), tag + " codes")
                        check(np.array_equal(load("scales"), scales), tag + " scales")
                        if zeros is not None:
                            check(np.array_equal(load("zeros"), zeros), tag + " zeros")
                        check(np.array_equal(load("deq"), deq), tag + " dequantized")
                        check(np.array_equal(load("packed"), pack_ref(codes, bits)),
                              tag + " packed bytes")
                        checked += 1

        table = nf4_table()
        # The table the kernel uses is bitsandbytes' printed one: the same
        # quantiles to float32 rounding.
        ours = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                         -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                         0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
                         0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                         0.7229568362236023, 1.0], F32)
        check(np.abs(table - ours).max() < 1e-6, "nf4 table")
        for rows, cols in shapes + [(40, 4096)]:
            w = random_weights(rng, rows, cols)
            for group in (64, 32, 128):
                load = run_tool(args.tool, w, "nf4:g%d" % group, 128, False, tmp)
                codes, scales, aq, chunks = nf4_ref(w, group, table)
                tag = "nf4 g%d [%d,%d]" % (group, rows, cols)
                check(np.array_equal(load("absmax_q"), aq), tag + " absmax codes")
                check(np.array_equal(load("absmax_scale"), chunks), tag + " absmax chunk params")
                check(np.array_equal(load("scales"), scales), tag + " block scales")
                got = load("codes")
                check((got == codes).mean() > 0.9999, tag + " codes (%d differ)" %
                      (got != codes).sum())
                deq = table[got] * np.repeat(scales, [e - b for b, e in groups_of(cols, group)],
                                             axis=1)
                check(np.abs(load("deq") - deq).max() < 1e-6, tag + " dequantized")
                check(np.array_equal(load("packed"), pack_ref(got, 4)), tag + " packed")
                checked += 1

        for rows, cols in shapes:
            w = random_weights(rng, rows, cols)
            w[0, 5] = 0.0
            w[0, 6] = -0.0
            load = run_tool(args.tool, w, "fp8", -1, True, tmp)
            codes, scales, deq = fp8_ref(w)
            tag = "fp8 [%d,%d]" % (rows, cols)
            check(np.array_equal(load("codes"), codes), tag + " codes (%d differ)" %
                  (load("codes") != codes).sum())
            check(np.array_equal(load("scales"), scales), tag + " scales")
            check(np.array_equal(load("deq"), deq), tag + " dequantized")
            checked += 1

    print("checked %d configurations, %d failures" % (checked, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
