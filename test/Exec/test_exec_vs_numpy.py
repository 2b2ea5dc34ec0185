#!/usr/bin/env python3
"""test_exec_vs_numpy.py - the reference executor against numpy_llama.py.

Synthesizes small random Hugging Face models (GQA, MQA, tied embeddings,
Qwen2 q/k/v biases, llama3 and linear rope scaling, bf16 weights) as
config.json + model.safetensors, runs each through
`qopt DIR -token-ids=... -logits-out=out.npy`, and compares with the numpy
re-implementation of transformers' forward on the same random ids.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy_llama as nl  # noqa: E402

BASE = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "vocab_size": 301, "hidden_size": 96, "intermediate_size": 172,
    "num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 2,
    "head_dim": 16, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "max_position_embeddings": 4096, "tie_word_embeddings": False,
    "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2,
}

VARIANTS = {
    "gqa": {},
    "mqa": {"num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 32},
    "tied": {"tie_word_embeddings": True},
    "qwen2-bias": {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"},
    "llama3-rope": {"num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 64,
                    "rope_theta": 500000.0,
                    "rope_scaling": {"rope_type": "llama3", "factor": 32.0,
                                     "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 8192}},
    "linear-rope": {"rope_scaling": {"rope_type": "linear", "factor": 4.0}},
    "bf16": {},
}


def random_weights(cfg, rng, bias):
    D, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    H, Hkv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    f32 = np.float32

    def mat(o, i):
        return (rng.standard_normal((o, i)) / np.sqrt(i)).astype(f32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(f32)

    w = {"model.embed_tokens.weight": rng.standard_normal((V, D)).astype(f32),
         "model.norm.weight": norm(D)}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = norm(D)
        w[p + "post_attention_layernorm.weight"] = norm(D)
        for name, o in (("q_proj", H * d), ("k_proj", Hkv * d), ("v_proj", Hkv * d)):
            w[p + f"self_attn.{name}.weight"] = mat(o, D)
            if bias:
                w[p + f"self_attn.{name}.bias"] = (0.1 * rng.standard_normal(o)).astype(f32)
        w[p + "self_attn.o_proj.weight"] = mat(D, H * d)
        w[p + "mlp.gate_proj.weight"] = mat(I, D)
        w[p + "mlp.up_proj.weight"] = mat(I, D)
        w[p + "mlp.down_proj.weight"] = mat(D, I)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = mat(V, D)
    return w


def run_variant(qopt, name, overrides, tmp, rng):
    from safetensors.numpy import save_file
    cfg = dict(BASE, **overrides)
    model_dir = os.path.join(tmp, name)
    os.makedirs(model_dir)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(cfg, f)
    w = random_weights(cfg, rng, cfg["model_type"] == "qwen2")
    path = os.path.join(model_dir, "model.safetensors")
    if name == "bf16":
        nl.save_safetensors_bf16(path, w)
        w = {k: nl.bf16_round(v) for k, v in w.items()}
    else:
        save_file(w, path)
    # Long enough for rope at positions where scaling matters.
    seq = 200 if "rope" in name else 37
    ids = rng.integers(0, cfg["vocab_size"], size=seq)
    out = os.path.join(model_dir, "logits.npy")
    cmd = [qopt, model_dir, "-token-ids=" + ",".join(map(str, ids)), "-logits-out=" + out]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"FAIL {name}: {' '.join(cmd[:2])} exited {r.returncode}: {r.stderr.strip()}")
        return False
    got = np.load(out)
    expected = nl.forward(nl.Config(cfg), w, ids[None, :])[0]
    if got.shape != expected.shape:
        print(f"FAIL {name}: logits shape {got.shape}, expected {expected.shape}")
        return False
    err = float(np.max(np.abs(got - expected)))
    scale = float(np.max(np.abs(expected)))
    ok = err <= 1e-4 * scale
    print(f"{'ok  ' if ok else 'FAIL'} {name}: max |exec - numpy| = {err:.3g} "
          f"(logits up to {scale:.3g}, bound {1e-4 * scale:.3g})")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qopt", required=True, help="the qopt driver")
    ap.add_argument("--shared", help="unused; accepted for symmetry with the other tests")
    args = ap.parse_args()
    if not os.path.exists(args.qopt):
        print(f"SKIP: {args.qopt} not built")
        return 77
    np.seterr(over="ignore")
    rng = np.random.default_rng(2024)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in VARIANTS.items():
            failures += not run_variant(args.qopt, name, overrides, tmp, rng)
    print("PASS" if failures == 0 else f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
