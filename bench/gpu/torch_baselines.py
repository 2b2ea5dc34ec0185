#!/usr/bin/env python3
"""Torch baselines for the GEMM shapes of gemm_bench.cu, one JSON line each.

    python3 bench/gpu/torch_baselines.py [--quick]

Each baseline is one function below taking (N, K, M) and returning the
per-call time in microseconds; add more by adding a function to BASELINES
(the attention baselines live in torch_attention.py, which run.sh calls
separately). A baseline whose torch API fails prints {"error": ...} instead
of stopping the others. Weights rotate over copies larger than L2 so every
call reads them from HBM, as in gemm_bench.
"""
import json
import sys

SHAPES = [(4096, 4096), (14336, 4096), (4096, 14336)]
MS = [1, 16, 32, 64, 256]
ROTATE_BYTES = 256 << 20


def timed_us(torch, fn, iters=50):
    for i in range(5):
        fn(i)
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    for i in range(iters):
        fn(i)
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1000.0 / iters


def copies_for(nbytes):
    return max(1, -(-ROTATE_BYTES // nbytes))


def bf16_matmul(torch, N, K, M):
    ws = [torch.randn(N, K, device="cuda", dtype=torch.bfloat16) for _ in range(copies_for(N * K * 2))]
    x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    return timed_us(torch, lambda i: torch.matmul(x, ws[i % len(ws)].t())), N * K * 2


def int4_tinygemm(torch, N, K, M, group=128):
    """torch._weight_int4pack_mm (tinygemm). The packer's input changed over
    releases: uint8 [N, K/2] (two nibbles a byte) in recent ones, int32
    [N, K] in older ones; both are tried."""
    inner_k_tiles = 8
    codes = torch.randint(0, 16, (N, K), device="cuda", dtype=torch.int32)
    try:
        packed_u8 = ((codes[:, ::2] << 4) | codes[:, 1::2]).to(torch.uint8)
        packed = torch._convert_weight_to_int4pack(packed_u8, inner_k_tiles)
    except Exception:
        packed = torch._convert_weight_to_int4pack(codes, inner_k_tiles)
    sz = torch.ones(K // group, N, 2, device="cuda", dtype=torch.bfloat16) * 0.01
    per_copy = N * K // 2 + sz.numel() * 2
    ws = [packed.clone() for _ in range(copies_for(per_copy))]
    x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    return timed_us(torch, lambda i: torch._weight_int4pack_mm(x, ws[i % len(ws)], group, sz)), per_copy


def fp8_scaled_mm(torch, N, K, M):
    """torch._scaled_mm with E4M3 operands, per-tensor scales, bf16 out. M is
    padded to a multiple of 16 (the FP8 kernels' requirement)."""
    Mp = -(-M // 16) * 16
    ws = [torch.randn(N, K, device="cuda").to(torch.float8_e4m3fn) for _ in range(copies_for(N * K))]
    x = torch.randn(Mp, K, device="cuda").to(torch.float8_e4m3fn)
    one = torch.tensor(1.0, device="cuda")
    return timed_us(torch, lambda i: torch._scaled_mm(
        x, ws[i % len(ws)].t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)), N * K


BASELINES = {
    "torch_bf16": bf16_matmul,
    "torch_int4_tinygemm": int4_tinygemm,
    "torch_fp8_scaled_mm": fp8_scaled_mm,
}


def main():
    try:
        import torch
    except Exception as e:  # no torch: say so, as a result
        print(json.dumps({"bench": "torch", "error": "no torch: %s" % e}))
        return 0
    if not torch.cuda.is_available():
        print(json.dumps({"bench": "torch", "error": "torch sees no CUDA device"}))
        return 0
    print(json.dumps({"bench": "torch_version", "version": torch.__version__}))
    ms = [1, 16, 256] if "--quick" in sys.argv else MS
    for name, fn in BASELINES.items():
        for N, K in SHAPES:
            for M in ms:
                row = {"bench": "gemm", "name": name, "N": N, "K": K, "M": M}
                try:
                    us, weight_bytes = fn(torch, N, K, M)
                    nbytes = weight_bytes + 2 * M * K + 2 * M * N
                    row.update(time_us=round(us, 2), bytes=nbytes, flops=2 * M * N * K,
                               GBps=round(nbytes / (us * 1e3), 1),
                               TFLOPs=round(2 * M * N * K / (us * 1e6), 2))
                except Exception as e:
                    row["error"] = ("%s: %s" % (type(e).__name__, e))[:300]
                print(json.dumps(row), flush=True)
                torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
