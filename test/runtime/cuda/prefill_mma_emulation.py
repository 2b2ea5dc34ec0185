#!/usr/bin/env python3
"""Lane-level emulation of the tensor-core prefill kernel's index math
(runtime/cuda/src/attention/PrefillAttentionMma.cu) against numpy attention.

Runs without a GPU: it models ldmatrix (.x4, with and without .trans),
mma.sync.m16n8k16 fragments (A row-major 16x16, B column-major 16x8, C/D
16x8 fp32) as the PTX ISA defines them, and replays the kernel's address
formulas, block-table gather, causal mask, quad reductions and P -> A
fragment reuse with the same constants. A wrong lane / row / column formula
in the kernel shows up here as a wrong output. Exit 77 (ctest skip) without
numpy.
"""
import sys

try:
    import numpy as np
except ImportError:
    print("prefill_mma_emulation: skipped, no numpy")
    sys.exit(77)

BQ, BK, WARPS, BS = 64, 64, 4, 16


def bf16(x):
    """Round float32 values to bf16 (nearest even), returned as float32."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def ldmatrix_x4(smem, addr, trans):
    """addr[lane]: element offset of the row lane % 8 of matrix lane // 8.
    Returns r[lane][i] = (lo, hi) of matrix i."""
    r = [[None] * 4 for _ in range(32)]
    for lane in range(32):
        for i in range(4):
            if not trans:  # row lane/4, columns 2(lane%4), +1
                base = addr[8 * i + lane // 4] + 2 * (lane % 4)
                r[lane][i] = (smem[base], smem[base + 1])
            else:  # rows 2(lane%4), +1 at column lane/4
                r[lane][i] = tuple(smem[addr[8 * i + 2 * (lane % 4) + e] + lane // 4]
                                   for e in range(2))
    return r


def mma(d, a, b0, b1):
    """d[lane][4] += A B with A from a[lane][4 pairs], B from b0/b1[lane]."""
    A = np.zeros((16, 16))
    B = np.zeros((16, 8))
    C = np.zeros((16, 8))
    for lane in range(32):
        g, t = lane // 4, lane % 4
        for e in range(2):
            A[g][2 * t + e] = a[lane][0][e]
            A[g + 8][2 * t + e] = a[lane][1][e]
            A[g][2 * t + 8 + e] = a[lane][2][e]
            A[g + 8][2 * t + 8 + e] = a[lane][3][e]
            B[2 * t + e][g] = b0[lane][e]
            B[2 * t + 8 + e][g] = b1[lane][e]
            C[g][2 * t + e] = d[lane][e]
            C[g + 8][2 * t + e] = d[lane][2 + e]
    D = A @ B + C
    for lane in range(32):
        g, t = lane // 4, lane % 4
        for e in range(2):
            d[lane][e] = D[g][2 * t + e]
            d[lane][2 + e] = D[g + 8][2 * t + e]


def quad_reduce(vals, op):
    """__shfl_xor_sync over 1 then 2 of a per-lane list."""
    for off in (1, 2):
        vals = [op(vals[l], vals[l ^ off]) for l in range(32)]
    return vals


def run_block(D, q_rows, pool_k, pool_v, table, kv_heads, kvh, ctx, qlen, tile):
    """One block: returns {row: output vector} for its valid rows."""
    LD = D + 8
    tile_start = tile * BQ
    nq = min(BQ, qlen - tile_start)
    first_pos = ctx - qlen
    kend = min(ctx, first_pos + tile_start + nq)
    ntiles = (kend + BK - 1) // BK if kend > 0 else 0
    scale_log2 = np.float32(1.0 / np.sqrt(D)) * np.float32(1.4426950408889634)

    Qs = np.zeros(BQ * LD)
    for r in range(nq):
        Qs[r * LD:r * LD + D] = q_rows[tile_start + r]
    Ks = [np.full(BK * LD, np.nan) for _ in range(2)]  # padding columns stay NaN
    Vs = [np.full(BK * LD, np.nan) for _ in range(2)]

    def load_tile(t, buf):
        pieces = D // 8
        for i in range(BK * pieces):
            key, part = i // pieces, i % pieces
            pos = t * BK + key
            dst = key * LD + part * 8
            if pos < kend:
                blk = table[pos // BS]
                src = ((blk * BS + pos % BS) * kv_heads + kvh) * D + part * 8
                Ks[buf][dst:dst + 8] = pool_k[src:src + 8]
                Vs[buf][dst:dst + 8] = pool_v[src:src + 8]
            else:
                Ks[buf][dst:dst + 8] = 0
                Vs[buf][dst:dst + 8] = 0

    out = {}
    for warp in range(WARPS):
        qf = []
        for ks in range(D // 16):
            addr = [(warp * 16 + l % 8 + (l // 8) % 2 * 8) * LD + ks * 16 + l // 16 * 8
                    for l in range(32)]
            qf.append(ldmatrix_x4(Qs, addr, False))
        o = [[[0.0] * 4 for _ in range(32)] for _ in range(D // 8)]
        m = [[-np.inf] * 2 for _ in range(32)]
        lsum = [[0.0] * 2 for _ in range(32)]
        for t in range(ntiles):
            buf = t & 1
            load_tile(t, buf)
            s = [[[0.0] * 4 for _ in range(32)] for _ in range(BK // 8)]
            for ks in range(D // 16):
                for np_ in range(BK // 16):
                    addr = [(np_ * 16 + l % 8 + l // 16 * 8) * LD + ks * 16 + (l // 8) % 2 * 8
                            for l in range(32)]
                    b = ldmatrix_x4(Ks[buf], addr, False)
                    a = [qf[ks][l] for l in range(32)]
                    mma(s[2 * np_], a, [b[l][0] for l in range(32)], [b[l][1] for l in range(32)])
                    mma(s[2 * np_ + 1], a, [b[l][2] for l in range(32)],
                        [b[l][3] for l in range(32)])
            for lane in range(32):
                qc = lane % 4
                row0 = warp * 16 + lane // 4
                qpos = [first_pos + tile_start + row0, first_pos + tile_start + row0 + 8]
                for j in range(BK // 8):
                    for e in range(4):
                        pos = t * BK + 8 * j + 2 * qc + e % 2
                        s[j][lane][e] = (-np.inf if (pos > qpos[e // 2] or pos >= kend)
                                         else float(np.float32(s[j][lane][e]) * scale_log2))
            for r in range(2):
                mx = [max(max(s[j][l][2 * r], s[j][l][2 * r + 1]) for j in range(BK // 8))
                      for l in range(32)]
                mx = quad_reduce(mx, max)
                for l in range(32):
                    mnew = max(m[l][r], mx[l])
                    base = 0.0 if mnew == -np.inf else mnew
                    corr = 2.0 ** (m[l][r] - base)
                    m[l][r] = mnew
                    lsum[l][r] *= corr
                    for j in range(D // 8):
                        o[j][l][2 * r] *= corr
                        o[j][l][2 * r + 1] *= corr
                    for j in range(BK // 8):
                        for e in (2 * r, 2 * r + 1):
                            s[j][l][e] = 2.0 ** (s[j][l][e] - base)
                            lsum[l][r] += s[j][l][e]
            for kk in range(BK // 16):
                a = [[tuple(bf16([s[2 * kk + h][l][2 * w], s[2 * kk + h][l][2 * w + 1]]))
                      for h in (0, 1) for w in (0, 1)] for l in range(32)]
                # order a0 = (tile 2kk, row), a1 = (2kk, row+8), a2 = (2kk+1, row), a3
                a = [[x[0], x[1], x[2], x[3]] for x in a]
                for dp in range(D // 16):
                    addr = [(kk * 16 + l % 8 + (l // 8) % 2 * 8) * LD + dp * 16 + l // 16 * 8
                            for l in range(32)]
                    b = ldmatrix_x4(Vs[buf], addr, True)
                    mma(o[2 * dp], a, [b[l][0] for l in range(32)], [b[l][1] for l in range(32)])
                    mma(o[2 * dp + 1], a, [b[l][2] for l in range(32)],
                        [b[l][3] for l in range(32)])
        for r in range(2):
            sums = quad_reduce([lsum[l][r] for l in range(32)], lambda x, y: x + y)
            for l in range(32):
                row = warp * 16 + l // 4 + 8 * r
                if row >= nq:
                    continue
                inv = 1.0 / sums[l] if sums[l] > 0 else 0.0
                vec = out.setdefault(row, np.full(D, np.nan))
                for j in range(D // 8):
                    vec[8 * j + 2 * (l % 4)] = o[j][l][2 * r] * inv
                    vec[8 * j + 2 * (l % 4) + 1] = o[j][l][2 * r + 1] * inv
    return out


def check(D, kv_heads, kvh, ctx, qlen, seed):
    rng = np.random.default_rng(seed)
    nblocks = (ctx + BS - 1) // BS + 2
    table = rng.permutation(nblocks)[:(ctx + BS - 1) // BS]
    n = nblocks * BS * kv_heads * D
    pool_k = bf16(rng.uniform(-1, 1, n).astype(np.float32)).astype(np.float64)
    pool_v = bf16(rng.uniform(-1, 1, n).astype(np.float32)).astype(np.float64)
    q = bf16(rng.uniform(-3, 3, (qlen, D)).astype(np.float32)).astype(np.float64)
    kk = np.array([[pool_k[((table[p // BS] * BS + p % BS) * kv_heads + kvh) * D + d]
                    for d in range(D)] for p in range(ctx)])
    vv = np.array([[pool_v[((table[p // BS] * BS + p % BS) * kv_heads + kvh) * D + d]
                    for d in range(D)] for p in range(ctx)])
    worst = 0.0
    for tile in range((qlen + BQ - 1) // BQ):
        got = run_block(D, q, pool_k, pool_v, table, kv_heads, kvh, ctx, qlen, tile)
        nq = min(BQ, qlen - tile * BQ)
        if sorted(got) != list(range(nq)):
            return "tile %d wrote rows %s" % (tile, sorted(got))
        for r, vec in got.items():
            pos = ctx - qlen + tile * BQ + r
            sc = kk[:pos + 1] @ q[tile * BQ + r] / np.sqrt(D)
            w = np.exp(sc - sc.max())
            w /= w.sum()
            want = w @ vv[:pos + 1]
            # P rounded to bf16 before P V: |err| <= 2^-8 sum w |v| (+ fp32 noise).
            bound = 2.0 ** -8 * (w @ np.abs(vv[:pos + 1])) + 1e-5
            err = np.abs(vec - want)
            if not np.all(err <= bound):
                d = int(np.argmax(err - bound))
                return "tile %d row %d d %d: got %r want %r" % (tile, r, d, vec[d], want[d])
            worst = max(worst, float(np.max(err / bound)))
    return None


def main():
    cases = [  # (head_dim, kv heads, kv head, context, new tokens)
        (64, 2, 1, 150, 70),   # chunk starting mid-block, two query tiles
        (64, 1, 0, 17, 17),    # fresh prompt, one partial key tile
        (128, 2, 0, 130, 1),   # one token after a longer context
        (64, 3, 2, 200, 130),  # three query tiles, four key tiles
    ]
    failures = []
    for i, c in enumerate(cases):
        err = check(*c, seed=i)
        print("case %s: %s" % (c, err or "ok"))
        if err:
            failures.append(err)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
