"""numpy_llama.py - transformers' LlamaForCausalLM / Qwen2ForCausalLM forward in numpy.

An independent float32 re-implementation (no qopt code) of what
transformers 5.x computes, written from its modeling_llama.py /
modeling_rope_utils.py definitions: the oracle the reference executor is
checked against on synthetic models. test_numpy_llama.py checks this file
itself against transformers' logits stored in ../shared.
"""
import json
import math
import os

import numpy as np

F32 = np.float32


# ---------------------------------------------------------------- safetensors

_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}


def load_safetensors(path):
    """name -> float32 array; bf16 is widened bit-exactly (no ml_dtypes)."""
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        arr = np.frombuffer(raw[base + begin:base + end], dtype=_DTYPES[info["dtype"]])
        if info["dtype"] == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = arr.astype(F32).reshape(info["shape"])
    return out


def save_safetensors_bf16(path, tensors):
    """Writes float32 arrays as BF16 (round to nearest even)."""
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype=F32)
        bits = a.view(np.uint32).astype(np.uint64)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
        data = rounded.tobytes()
        header[name] = {"dtype": "BF16", "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for c in chunks:
            f.write(c)


def bf16_round(a):
    """float32 -> nearest bf16 value, as float32."""
    bits = np.ascontiguousarray(a, dtype=F32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return rounded.astype(np.uint32).view(F32)


# ---------------------------------------------------------------- config

class Config:
    def __init__(self, d):
        self.model_type = d.get("model_type", "llama")
        self.vocab = d["vocab_size"]
        self.hidden = d["hidden_size"]
        self.inter = d["intermediate_size"]
        self.layers = d["num_hidden_layers"]
        self.heads = d["num_attention_heads"]
        self.kv_heads = d.get("num_key_value_heads") or self.heads
        self.head_dim = d.get("head_dim") or self.hidden // self.heads
        self.eps = d.get("rms_norm_eps", 1e-6)
        self.tied = d.get("tie_word_embeddings", False)
        self.qkv_bias = self.model_type == "qwen2" or d.get("attention_bias", False)
        rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
        self.theta = rope.get("rope_theta", d.get("rope_theta", 10000.0))
        self.rope_type = rope.get("rope_type", rope.get("type", "default"))
        self.rope = rope
        self.partial = d.get("partial_rotary_factor", 1.0)


def load_model(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = Config(json.load(f))
    return cfg, load_safetensors(os.path.join(model_dir, "model.safetensors"))


# ---------------------------------------------------------------- the forward

def inv_freq(cfg):
    """modeling_rope_utils: default, linear and llama3, float32 throughout."""
    dim = int(cfg.head_dim * cfg.partial)
    exponent = np.arange(0, dim, 2, dtype=np.int64).astype(F32) / F32(dim)
    inv = F32(1.0) / np.power(F32(cfg.theta), exponent)
    if cfg.rope_type == "linear":
        inv = inv / F32(cfg.rope["factor"])
    elif cfg.rope_type == "llama3":
        factor = F32(cfg.rope["factor"])
        low = cfg.rope["low_freq_factor"]
        high = cfg.rope["high_freq_factor"]
        old = cfg.rope["original_max_position_embeddings"]
        low_wavelen = F32(old / low)
        high_wavelen = F32(old / high)
        wavelen = F32(2 * math.pi) / inv
        llama = np.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (F32(old) / wavelen - F32(low)) / F32(high - low)
        smoothed = (F32(1) - smooth) * llama / factor + smooth * llama
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        inv = np.where(medium, smoothed, llama)
    return inv.astype(F32)


def rms_norm(x, w, eps):
    var = np.mean(x * x, axis=-1, keepdims=True, dtype=F32)
    return w * (x / np.sqrt(var + F32(eps))).astype(F32)


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def apply_rope(x, cos, sin, rot_dim):
    """x [B, H, S, d]; the first rot_dim dims rotate, the rest pass."""
    r, p = x[..., :rot_dim], x[..., rot_dim:]
    r = r * cos + rotate_half(r) * sin
    return np.concatenate([r, p], axis=-1)


def softmax(x):
    m = np.max(x, axis=-1, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=-1, keepdims=True)


def forward(cfg, w, ids):
    """ids [B, S] ints -> logits [B, S, vocab] float32."""
    ids = np.asarray(ids)
    B, S = ids.shape
    H, Hkv, d = cfg.heads, cfg.kv_heads, cfg.head_dim
    h = w["model.embed_tokens.weight"][ids]
    freqs = np.arange(S, dtype=F32)[:, None] * inv_freq(cfg)[None, :]
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb).astype(F32), np.sin(emb).astype(F32)
    rot_dim = emb.shape[-1]
    mask = np.triu(np.full((S, S), -np.inf, dtype=F32), k=1)
    scaling = F32(d ** -0.5)

    def lin(x, name, bias=False):
        y = x @ w[name + ".weight"].T
        if bias:
            y = y + w[name + ".bias"]
        return y.astype(F32)

    for l in range(cfg.layers):
        p = f"model.layers.{l}."
        x = rms_norm(h, w[p + "input_layernorm.weight"], cfg.eps)
        q = lin(x, p + "self_attn.q_proj", cfg.qkv_bias).reshape(B, S, H, d).transpose(0, 2, 1, 3)
        k = lin(x, p + "self_attn.k_proj", cfg.qkv_bias).reshape(B, S, Hkv, d).transpose(0, 2, 1, 3)
        v = lin(x, p + "self_attn.v_proj", cfg.qkv_bias).reshape(B, S, Hkv, d).transpose(0, 2, 1, 3)
        q = apply_rope(q, cos, sin, rot_dim)
        k = apply_rope(k, cos, sin, rot_dim)
        k = np.repeat(k, H // Hkv, axis=1)  # repeat_kv: head h reads kv h // (H/Hkv)
        v = np.repeat(v, H // Hkv, axis=1)
        scores = (q @ k.transpose(0, 1, 3, 2)) * scaling + mask
        a = softmax(scores.astype(F32)) @ v
        a = a.transpose(0, 2, 1, 3).reshape(B, S, H * d)
        h = h + lin(a, p + "self_attn.o_proj")
        x = rms_norm(h, w[p + "post_attention_layernorm.weight"], cfg.eps)
        g = lin(x, p + "mlp.gate_proj")
        u = lin(x, p + "mlp.up_proj")
        silu = g / (F32(1) + np.exp(-g))
        h = h + lin((silu * u).astype(F32), p + "mlp.down_proj")
    x = rms_norm(h, w["model.norm.weight"], cfg.eps)
    head = w["model.embed_tokens.weight"] if cfg.tied else w["lm_head.weight"]
    return (x @ head.T).astype(F32)


def greedy(cfg, w, prompt, n, eos=None):
    seq, out = list(prompt), []
    for _ in range(n):
        t = int(np.argmax(forward(cfg, w, np.array([seq]))[0, -1]))
        out.append(t)
        seq.append(t)
        if eos is not None and t == eos:
            break
    return out
