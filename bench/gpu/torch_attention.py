#!/usr/bin/env python3
"""Torch baselines for attention_bench.cu's paged decode and prefill, one
JSON line each.

    python3 bench/gpu/torch_attention.py

F.scaled_dot_product_attention on contiguous bf16 KV at the decode shape of
the issue (batch 32 x context 4096, 32 query / 8 KV heads, head_dim 128), GQA
through enable_gqa=True (repeat_interleave of K/V where that is missing,
which adds the copy's traffic and says so in the line). Timed with CUDA
events; bytes = the K/V read once, so GBps compares directly with
attention_bench's paged_decode lines (the bar: paged >= 90% of this).
A streaming read of the same run gives pct_of_read.

Prefill: causal SDPA (is_causal=True) at attention_bench's prefill shape,
batch 4 x 2048 new tokens, 32 / 8 heads, head_dim 128, bf16, contiguous;
flops counted as there (half the score matrix), so TFLOPs compare directly
with the paged_prefill lines.
"""
import json
import sys


def timed_us(torch, fn, iters=50):
    for _ in range(3):
        fn()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1000.0 / iters


def read_gbps(torch):
    x = torch.empty(1 << 29, dtype=torch.float32, device="cuda")  # 2 GiB
    x.fill_(1.0)
    us = timed_us(torch, lambda: x.sum(), iters=20)
    return x.numel() * 4 / (us * 1e3)


def sdpa_decode(torch, batch, context, heads, kv_heads, head_dim, read):
    F = torch.nn.functional
    q = torch.randn(batch, heads, 1, head_dim, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(batch, kv_heads, context, head_dim, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    how = "enable_gqa"
    try:
        F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        fn = lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    except (TypeError, RuntimeError):
        how = "repeat_interleave"
        group = heads // kv_heads
        fn = lambda: F.scaled_dot_product_attention(
            q, k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1))
    us = timed_us(torch, fn)
    nbytes = 2 * batch * context * kv_heads * head_dim * 2
    flops = 4 * batch * heads * context * head_dim
    return {"bench": "attention", "name": "torch_sdpa_decode", "kv": "bf16", "gqa": how,
            "batch": batch, "context": context, "heads": heads, "kv_heads": kv_heads,
            "head_dim": head_dim, "time_us": round(us, 2), "bytes": nbytes, "flops": flops,
            "GBps": round(nbytes / (us * 1e3), 1), "TFLOPs": round(flops / (us * 1e6), 3),
            "pct_of_read": round(100.0 * nbytes / (us * 1e3) / read, 1)}


def sdpa_prefill(torch, batch, tokens, heads, kv_heads, head_dim):
    F = torch.nn.functional
    q = torch.randn(batch, heads, tokens, head_dim, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(batch, kv_heads, tokens, head_dim, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    how = "enable_gqa"
    try:
        F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    except (TypeError, RuntimeError):
        how = "repeat_interleave"
        group = heads // kv_heads
        fn = lambda: F.scaled_dot_product_attention(
            q, k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1),
            is_causal=True)
    us = timed_us(torch, fn, iters=10)
    flops = 2 * batch * heads * tokens * tokens * head_dim
    return {"bench": "attention", "name": "torch_sdpa_prefill", "kv": "bf16", "gqa": how,
            "batch": batch, "tokens": tokens, "heads": heads, "kv_heads": kv_heads,
            "head_dim": head_dim, "time_us": round(us, 2), "flops": flops,
            "TFLOPs": round(flops / (us * 1e6), 3)}


def main():
    try:
        import torch
    except ImportError:
        print(json.dumps({"bench": "skipped", "reason": "no torch"}))
        return 0
    if not torch.cuda.is_available():
        print(json.dumps({"bench": "skipped", "reason": "no CUDA device"}))
        return 0
    read = read_gbps(torch)
    print(json.dumps({"bench": "torch_hbm_read", "GBps": round(read, 1)}))
    try:
        print(json.dumps(sdpa_decode(torch, 32, 4096, 32, 8, 128, read)))
    except Exception as e:  # report, do not hide the other lines
        print(json.dumps({"bench": "attention", "name": "torch_sdpa_decode", "error": str(e)}))
    try:
        print(json.dumps(sdpa_prefill(torch, 4, 2048, 32, 8, 128)))
    except Exception as e:
        print(json.dumps({"bench": "attention", "name": "torch_sdpa_prefill", "error": str(e)}))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
