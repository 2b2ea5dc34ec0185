#!/usr/bin/env python3
"""Writes a GPU artifact (-target=sm90 format, docs/artifact.md "GPU targets")
with random weights of a model's shapes, on the GPU machine, for
decode_bench: a Llama-3-8B INT4 artifact is ~5 GB, too big to carry there,
and qopt (LLVM/MLIR) does not run there. Weights are a random 16 MiB pattern
tiled (their values do not change memory-bound timings): int4 g128
asymmetric linears (codes random, fp16 scales 0.0025, zeros 8), bf16
embedding and lm_head, f32 norms of ones. No tokenizer.

  synth_gpu_artifact.py --preset llama3-8b --out /tmp/l3-8b.sm90.qopt [--layers N]
"""
import argparse
import json
import os

import numpy as np

PRESETS = {
    # hidden, intermediate, layers, heads, kv_heads, head_dim, vocab
    "llama3-8b": (4096, 14336, 32, 32, 8, 128, 128256),
    "llama3-1b": (2048, 8192, 16, 32, 8, 64, 128256),
}
ALIGN = 4096


def gpu_blob_bytes(n, k, group=128):
    """qrt::gpuBlobLayout for int4 asymmetric: codes, scales, zeros at
    256-byte aligned offsets."""
    a = lambda x: (x + 255) // 256 * 256
    codes = n * k // 2
    groups = (k + group - 1) // group
    scales = a(codes)
    zeros = a(scales + groups * n * 2)
    return codes, scales, zeros, zeros + groups * n * 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="llama3-8b")
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=0, help="fewer layers (0: the preset's)")
    ap.add_argument("--isa", default="sm90", choices=["sm80", "sm89", "sm90"])
    args = ap.parse_args()
    H, I, L, NH, NKV, D, V = PRESETS[args.preset]
    L = args.layers or L
    rng = np.random.default_rng(0)
    pattern = rng.integers(0, 256, size=16 << 20, dtype=np.uint8).tobytes()

    tensors = []  # (name, dtype, shape, layout, nbytes, writer)

    def random_bytes(n):
        def w(f):
            left = n
            while left:
                c = min(left, len(pattern))
                f.write(pattern[:c])
                left -= c
        return w

    def const_bytes(arr):
        data = arr.tobytes()
        return lambda f: f.write(data)

    def bf16_matrix(name, rows, cols):
        # Random bf16 of magnitude ~0.02: sign and mantissa random, exponent fixed.
        base = (rng.integers(0, 1 << 7, size=1 << 20, dtype=np.uint16) | 0x3CA0) \
            ^ (rng.integers(0, 2, size=1 << 20, dtype=np.uint16) << 15)
        chunk = base.tobytes()
        n = rows * cols * 2

        def w(f):
            left = n
            while left:
                c = min(left, len(chunk))
                f.write(chunk[:c])
                left -= c
        tensors.append((name, "bf16", [rows, cols], "row_major", n, w))

    def norm(name):
        tensors.append((name, "f32", [H], "row_major", H * 4, const_bytes(np.ones(H, np.float32))))

    def int4_linear(name, n, k):
        codes, so, zo, total = gpu_blob_bytes(n, k)
        groups = k // 128
        scales = np.full(groups * n, 0.0025, np.float16).tobytes()
        zeros = np.full(groups * n, 8.0, np.float16).tobytes()

        def w(f):
            random_bytes(codes)(f)
            f.write(b"\0" * (so - codes))
            f.write(scales)
            f.write(b"\0" * (zo - so - len(scales)))
            f.write(zeros)
        tensors.append((name, "u8", [total], "cuda_i4_g128", total, w))
        return {"weight": name, "out_features": n, "in_features": k, "format": "int4",
                "layout": "cuda_i4_g128", "bits": 4, "group_size": 128, "symmetric": False,
                "bias": None, "act_quant": None}

    bf16_matrix("model.embed_tokens.weight", V, H)
    bf16_matrix("lm_head.weight", V, H)
    norm("model.norm.weight")
    layers = []
    for i in range(L):
        p = f"model.layers.{i}."
        norm(p + "input_layernorm.weight")
        norm(p + "post_attention_layernorm.weight")
        qkv = int4_linear(p + "self_attn.qkv_proj.weight", (NH + 2 * NKV) * D, H)
        qkv["parts"] = [NH * D, NKV * D, NKV * D]
        gu = int4_linear(p + "mlp.gate_up_proj.weight", 2 * I, H)
        gu["parts"] = [I, I]
        layers.append({"input_norm": p + "input_layernorm.weight",
                       "post_attention_norm": p + "post_attention_layernorm.weight",
                       "qkv": qkv, "o": int4_linear(p + "self_attn.o_proj.weight", H, NH * D),
                       "gate_up": gu, "down": int4_linear(p + "mlp.down_proj.weight", H, I)})

    os.makedirs(args.out, exist_ok=True)
    table, offset = [], 0
    with open(os.path.join(args.out, "weights.bin"), "wb") as f:
        for name, dtype, shape, layout, nbytes, writer in sorted(tensors, key=lambda t: t[0]):
            f.write(b"\0" * (offset - f.tell()))
            writer(f)
            assert f.tell() == offset + nbytes, name
            table.append({"name": name, "dtype": dtype, "shape": shape, "layout": layout,
                          "offset": offset, "nbytes": nbytes})
            offset = (offset + nbytes + ALIGN - 1) // ALIGN * ALIGN
        total = f.tell()
    major, minor = {"sm80": (8, 0), "sm89": (8, 9), "sm90": (9, 0)}[args.isa]
    manifest = {
        "format": "qopt-artifact", "version": 2, "producer": "synth_gpu_artifact.py",
        "target": {"isa": args.isa, "features": [], "device": "cuda",
                   "compute_capability": [major, minor]},
        "config": {"architecture": "LlamaForCausalLM", "vocab_size": V, "hidden_size": H,
                   "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": NH,
                   "num_key_value_heads": NKV, "head_dim": D, "max_position_embeddings": 8192,
                   "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
                   "rope_scaling": {"rope_type": "default", "factor": 1.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 8192},
                   "tie_word_embeddings": False, "attention_bias": False,
                   "bos_token_id": None, "eos_token_id": None},
        "files": {"weights": "weights.bin", "tokenizer": None, "generation_config": None,
                  "ir": None, "report": None},
        "alignment": ALIGN, "weights_bytes": total, "tensors": table,
        "model": {"embedding": "model.embed_tokens.weight", "final_norm": "model.norm.weight",
                  "lm_head": {"weight": "lm_head.weight", "out_features": V, "in_features": H,
                              "format": "bf16", "layout": "row_major", "bits": 0,
                              "group_size": 0, "symmetric": False, "bias": None,
                              "act_quant": None},
                  "layers": layers},
        "kernels": None,
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"synth_gpu_artifact: {args.out}: {args.preset} x {L} layers, {total / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
