#!/usr/bin/env python3
"""Builds Llama-style decoder ONNX graphs in the styles real exporters write.

Usage: make_graphs.py OUT_DIR

For every graph NAME it writes OUT_DIR/NAME/model.onnx (plus external data
where the style has it) and OUT_DIR/NAME/expected.json + expected.bin: the
config the importer must recover and every canonical weight as fp32 in its
logical [out, in] layout (what WeightStore::readF32 must return).

Styles (no torch here; the node patterns follow what torch.onnx emits):
  ts14_cos_cache  TorchScript exporter, opset 14, small constants as Constant
                  nodes: cos/sin cache initializers
                  sliced and gathered by position, ReduceMean axes attribute,
                  Div(1, Sqrt), Trilu mask, Div by sqrt(head_dim), MHA.
  ts17_gqa_bias   TorchScript, opset 17: inv_freq initializer times positions,
                  Where(LessOrEqual) mask, GQA 6/2 with Expand/Reshape
                  repeat_kv, q/k/v biases (Qwen2), lm_head a transposed copy
                  of the embedding (tied by content), theta 500000.
  fp16_dynamo     dynamo exporter, opset 18, fp16 weights: Casts to fp32 around
                  the norms and the softmax, fp16 rotary tables, logits cast
                  to fp32, sqrt(scale) on q and k as inexact fp16 constants
                  (head_dim 32), the final norm in fp16 with an fp16 epsilon.
  ext_data        TorchScript opset 17 with every tensor in an external file.
  mqa_tied        dynamo, opset 20, one KV head (MQA), lm_head = Transpose of
                  the embedding table (tied), batch fixed to 1, o_proj as a
                  Gemm between 2-D Reshapes.
  rope_linear     dynamo opset 20 with linear RoPE scaling (factor 4).
  bf16_cast       TorchScript opset 17, every weight stored bf16 and cast to
                  fp32 on use (mixed-precision export), MQA 3/1.
Bad inputs: bad_tanh (ts14 with one Sigmoid replaced by Tanh),
ext_missing (ext_data without its data file).

Every graph is run with onnxruntime and its logits compared with an
independent numpy implementation of the Llama forward pass, so the expected
files describe what the graph really computes.
"""
import json
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INT64_MAX = np.iinfo(np.int64).max
F32_MIN = float(np.finfo(np.float32).min)


class Graph:
    """Accumulates nodes and initializers with generated names."""

    def __init__(self, opset, float_type=np.float32, constant_nodes=False):
        self.opset = opset
        # TorchScript writes small constants as Constant nodes, not initializers.
        self.constant_nodes = constant_nodes
        self.nodes, self.inits = [], []
        self.counter = 0
        self.ft = float_type

    def name(self, prefix):
        self.counter += 1
        return f"{prefix}_{self.counter}"

    def init(self, array, prefix="val"):
        # Hugging Face style names ("model.norm.weight") are kept as given,
        # like the TorchScript exporter keeps parameter names.
        n = prefix if "." in prefix and "::" not in prefix else self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(array), n))
        return n

    def const(self, array, prefix="const"):
        if not self.constant_nodes:
            return self.init(array, prefix)
        n = self.name(prefix)
        self.nodes.append(helper.make_node("Constant", [], [n], name=self.name("node_Constant"),
                                           value=numpy_helper.from_array(np.asarray(array))))
        return n

    def i64(self, values):
        return self.const(np.array(values, dtype=np.int64), "const")

    def scalar(self, value, dtype=None):
        return self.const(np.array(value, dtype=dtype or self.ft), "scalar")

    def op(self, op_type, inputs, n_out=1, **attrs):
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name("node_" + op_type), **attrs))
        return outs[0] if n_out == 1 else outs

    def unsqueeze(self, x, axes):
        if self.opset >= 13:
            return self.op("Unsqueeze", [x, self.i64(axes)])
        return self.op("Unsqueeze", [x], axes=axes)

    def reduce_mean_last(self, x):
        if self.opset >= 18:
            return self.op("ReduceMean", [x, self.i64([-1])], keepdims=1)
        return self.op("ReduceMean", [x], axes=[-1], keepdims=1)

    def slice_last(self, x, start, end):
        return self.op("Slice", [x, self.i64([start]), self.i64([end]), self.i64([-1]), self.i64([1])])

    def cast(self, x, to):
        return self.op("Cast", [x], to=to)


def rand_weights(cfg, rng):
    """Canonical (Hugging Face) weights, fp32, logical [out, in] layout."""
    D, I, V = cfg["hidden"], cfg["inter"], cfg["vocab"]
    H, KV, d = cfg["heads"], cfg["kv"], cfg["head_dim"]
    W = {}

    def lin(o, i):
        return (rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)

    W["model.embed_tokens.weight"] = (rng.standard_normal((V, D)) * 0.5).astype(np.float32)
    for l in range(cfg["layers"]):
        p = f"model.layers.{l}."
        W[p + "input_layernorm.weight"] = (1 + 0.1 * rng.standard_normal(D)).astype(np.float32)
        W[p + "post_attention_layernorm.weight"] = (1 + 0.1 * rng.standard_normal(D)).astype(np.float32)
        W[p + "self_attn.q_proj.weight"] = lin(H * d, D)
        W[p + "self_attn.k_proj.weight"] = lin(KV * d, D)
        W[p + "self_attn.v_proj.weight"] = lin(KV * d, D)
        W[p + "self_attn.o_proj.weight"] = lin(D, H * d)
        if cfg["bias"]:
            for n, o in (("q_proj", H * d), ("k_proj", KV * d), ("v_proj", KV * d)):
                W[p + f"self_attn.{n}.bias"] = (0.1 * rng.standard_normal(o)).astype(np.float32)
        W[p + "mlp.gate_proj.weight"] = lin(I, D)
        W[p + "mlp.up_proj.weight"] = lin(I, D)
        W[p + "mlp.down_proj.weight"] = lin(D, I)
    W["model.norm.weight"] = (1 + 0.1 * rng.standard_normal(D)).astype(np.float32)
    if not cfg["tie"]:
        W["lm_head.weight"] = lin(V, D)
    if cfg.get("fp16"):
        W = {k: v.astype(np.float16).astype(np.float32) for k, v in W.items()}
    if cfg.get("bf16_stored"):
        import ml_dtypes
        W = {k: v.astype(ml_dtypes.bfloat16).astype(np.float32) for k, v in W.items()}
    return W


def inv_freq(cfg):
    d = cfg["head_dim"]
    # As transformers computes it: in float32.
    exps = np.arange(0, d, 2, dtype=np.int64).astype(np.float32) / np.float32(d)
    inv = (np.float32(1.0) / (np.float32(cfg["theta"]) ** exps)).astype(np.float32)
    return (inv / np.float32(cfg.get("rope_factor", 1.0))).astype(np.float32)


def reference_logits(cfg, W, ids):
    """Independent float64 Llama forward (transformers' semantics)."""
    B, S = ids.shape
    H, KV, d, eps = cfg["heads"], cfg["kv"], cfg["head_dim"], cfg["eps"]
    W = {k: v.astype(np.float64) for k, v in W.items()}

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    inv = inv_freq(cfg).astype(np.float64)
    ang = np.arange(S)[:, None] * inv[None, :]
    emb = np.concatenate([ang, ang], -1)
    cos, sin = np.cos(emb), np.sin(emb)

    def rope(x):
        x1, x2 = x[..., : d // 2], x[..., d // 2:]
        return x * cos + np.concatenate([-x2, x1], -1) * sin

    mask = np.triu(np.full((S, S), -np.inf), 1)
    x = W["model.embed_tokens.weight"][ids]
    for l in range(cfg["layers"]):
        p = f"model.layers.{l}."
        h = rms(x, W[p + "input_layernorm.weight"])

        def proj(n, heads):
            y = h @ W[p + f"self_attn.{n}.weight"].T
            if cfg["bias"]:
                y = y + W[p + f"self_attn.{n}.bias"]
            return y.reshape(B, S, heads, d).transpose(0, 2, 1, 3)

        q, k, v = rope(proj("q_proj", H)), rope(proj("k_proj", KV)), proj("v_proj", KV)
        k, v = np.repeat(k, H // KV, 1), np.repeat(v, H // KV, 1)
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = (s @ v).transpose(0, 2, 1, 3).reshape(B, S, H * d)
        x = x + o @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ W[p + "mlp.down_proj.weight"].T
    x = rms(x, W["model.norm.weight"])
    head = W["model.embed_tokens.weight"] if cfg["tie"] else W["lm_head.weight"]
    return x @ head.T


# ---------------------------------------------------------------------------
# TorchScript-style graph (opset 14 / 17)
# ---------------------------------------------------------------------------
def build_torchscript(cfg, W, variant):
    g = Graph(cfg["opset"], constant_nodes=cfg.get("constant_nodes", False))
    D, H, KV, d = cfg["hidden"], cfg["heads"], cfg["kv"], cfg["head_dim"]
    rep = H // KV
    embed = g.init(W["model.embed_tokens.weight"], "model.embed_tokens.weight")
    ids = "input_ids"
    x = g.op("Gather", [embed, ids], axis=0)
    shape_ids = g.op("Shape", [ids])
    seq = g.op("Gather", [shape_ids, g.const(np.array(1, np.int64))], axis=0)
    batch = g.op("Gather", [shape_ids, g.const(np.array(0, np.int64))], axis=0)
    pos = g.op("Range", [g.const(np.array(0, np.int64)), seq, g.const(np.array(1, np.int64))])
    pos_ids = g.unsqueeze(pos, [0])  # [1, S]
    seq1, batch1 = g.unsqueeze(seq, [0]), g.unsqueeze(batch, [0])

    if variant == "cos_cache":
        # Old transformers: cos_cached [max_pos, d] sliced to S, gathered by position ids.
        inv = inv_freq(cfg)
        t = np.arange(cfg["max_pos"], dtype=np.float32)
        freqs = np.outer(t, inv).astype(np.float32)
        emb = np.concatenate([freqs, freqs], -1)
        tabs = []
        for fn, nm in ((np.cos, "cos_cached"), (np.sin, "sin_cached")):
            cache = g.init(fn(emb).astype(np.float32), nm)
            sl = g.op("Slice", [cache, g.i64([0]), seq1, g.i64([0])])
            tabs.append(g.unsqueeze(g.op("Gather", [sl, pos_ids], axis=0), [1]))  # [1,1,S,d]
        cos, sin = tabs
    else:
        inv = g.init(inv_freq(cfg), "inv_freq")
        t = g.unsqueeze(g.cast(pos, TensorProto.FLOAT), [1])  # [S, 1]
        freqs = g.op("Mul", [t, g.unsqueeze(inv, [0])])  # [S, d/2]
        emb = g.op("Concat", [freqs, freqs], axis=-1)
        cos = g.unsqueeze(g.op("Cos", [emb]), [0, 1])
        sin = g.unsqueeze(g.op("Sin", [emb]), [0, 1])

    # Causal mask [S, S].
    if cfg["mask"] == "trilu":
        ss = g.op("Concat", [seq1, seq1], axis=0)
        full = g.op("ConstantOfShape", [ss], value=numpy_helper.from_array(np.array([F32_MIN], np.float32)))
        mask = g.op("Trilu", [full, g.const(np.array(cfg.get("mask_k", 1), np.int64))], upper=1)
        apply_mask = lambda s: g.op("Add", [s, mask])
    else:
        rows, cols = g.unsqueeze(pos, [1]), g.unsqueeze(pos, [0])
        keep = g.op("LessOrEqual", [cols, rows])
        ninf = g.scalar(-np.inf)
        apply_mask = lambda s: g.op("Where", [keep, s, ninf])

    def rms(x, wname):
        w = g.init(W[wname], wname)
        p = g.op("Pow", [x, g.scalar(2.0)])
        m = g.reduce_mean_last(p)
        r = g.op("Div", [g.scalar(1.0), g.op("Sqrt", [g.op("Add", [m, g.scalar(cfg["eps"])])])])
        return g.op("Mul", [w, g.op("Mul", [x, r])])

    def linear(x, wname, bname=None):
        # TorchScript folds weight.t() into a new [in, out] initializer.
        y = g.op("MatMul", [x, g.init(np.ascontiguousarray(W[wname].T), "onnx::MatMul")])
        if bname:
            y = g.op("Add", [y, g.init(W[bname], bname)])
        return y

    def dyn_shape(*parts):
        return g.op("Concat", list(parts), axis=0)

    def heads(y, n):
        shp = dyn_shape(batch1, seq1, g.i64([n]), g.i64([d]))
        return g.op("Transpose", [g.op("Reshape", [y, shp])], perm=[0, 2, 1, 3])

    def rope(t):
        x1 = g.slice_last(t, 0, d // 2)
        x2 = g.slice_last(t, d // 2, INT64_MAX)
        rot = g.op("Concat", [g.op("Neg", [x2]), x1], axis=-1)
        return g.op("Add", [g.op("Mul", [t, cos]), g.op("Mul", [rot, sin])])

    def repeat_kv(t):
        if rep == 1:
            return t
        u = g.unsqueeze(t, [2])
        e = g.op("Expand", [u, dyn_shape(batch1, g.i64([KV]), g.i64([rep]), seq1, g.i64([d]))])
        return g.op("Reshape", [e, dyn_shape(batch1, g.i64([H]), seq1, g.i64([d]))])

    sqrt_d = g.scalar(np.sqrt(d))
    for l in range(cfg["layers"]):
        p = f"model.layers.{l}."
        h = rms(x, p + "input_layernorm.weight")
        b = (lambda n: p + f"self_attn.{n}.bias") if cfg["bias"] else (lambda n: None)
        q = rope(heads(linear(h, p + "self_attn.q_proj.weight", b("q_proj")), H))
        k = repeat_kv(rope(heads(linear(h, p + "self_attn.k_proj.weight", b("k_proj")), KV)))
        v = repeat_kv(heads(linear(h, p + "self_attn.v_proj.weight", b("v_proj")), KV))
        s = g.op("Div", [g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])]), sqrt_d])
        probs = g.op("Softmax", [apply_mask(s)], axis=3 if cfg["opset"] < 13 else -1)
        o = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        o = g.op("Reshape", [o, dyn_shape(batch1, seq1, g.i64([H * d]))])
        x = g.op("Add", [x, linear(o, p + "self_attn.o_proj.weight")])
        h = rms(x, p + "post_attention_layernorm.weight")
        gate = linear(h, p + "mlp.gate_proj.weight")
        act = cfg.get("act", "Sigmoid") if l == cfg["layers"] - 1 else "Sigmoid"
        silu = g.op("Mul", [g.op(act, [gate]), gate])
        up = linear(h, p + "mlp.up_proj.weight")
        x = g.op("Add", [x, linear(g.op("Mul", [silu, up]), p + "mlp.down_proj.weight")])
    h = rms(x, "model.norm.weight")
    if cfg["tie"]:
        # A transposed copy of the embedding: tied only by content.
        head = g.init(np.ascontiguousarray(W["model.embed_tokens.weight"].T), "onnx::MatMul")
    else:
        head = g.init(np.ascontiguousarray(W["lm_head.weight"].T), "onnx::MatMul")
    g.nodes.append(helper.make_node("MatMul", [h, head], ["logits"], name="node_lm_head"))
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "sequence", cfg["vocab"]])]
    return g, inputs, outputs


# ---------------------------------------------------------------------------
# dynamo-style graph (opset 18-20), optionally fp16
# ---------------------------------------------------------------------------
def build_dynamo(cfg, W):
    fp16 = cfg.get("fp16", False)
    ft = np.float16 if fp16 else np.float32
    onnx_ft = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    g = Graph(cfg["opset"], ft)
    D, H, KV, d = cfg["hidden"], cfg["heads"], cfg["kv"], cfg["head_dim"]
    rep = H // KV
    B = cfg.get("batch", 1)  # dynamo fixes the batch it traced with
    wt = lambda a: a.astype(ft)
    embed = g.init(wt(W["model.embed_tokens.weight"]), "m.model.embed_tokens.weight")
    ids = "input_ids"
    x = g.op("Gather", [embed, ids], axis=0)
    seq_v = g.op("Shape", [ids], start=1, end=2)  # [1]
    seq = g.op("Squeeze", [seq_v])
    pos = g.op("Range", [g.init(np.array(0, np.int64)), seq, g.init(np.array(1, np.int64))])

    # inv_freq expanded [1, d/2, 1] @ positions [1, 1, S], computed in fp32.
    invx = g.init(inv_freq(cfg).reshape(1, d // 2, 1), "expand")
    posf = g.cast(g.unsqueeze(g.unsqueeze(pos, [0]), [1]), TensorProto.FLOAT)
    fr = g.op("Transpose", [g.op("MatMul", [invx, posf])], perm=[0, 2, 1])
    emb = g.op("Concat", [fr, fr], axis=-1)
    cos, sin = g.op("Cos", [emb]), g.op("Sin", [emb])
    if fp16:
        cos, sin = g.cast(cos, onnx_ft), g.cast(sin, onnx_ft)
    cos, sin = g.unsqueeze(cos, [1]), g.unsqueeze(sin, [1])

    # Mask: Where(j <= i, 0, min) built from the positions, added to the scores.
    i_ = g.unsqueeze(pos, [0, 1, 3])
    j_ = g.unsqueeze(pos, [0, 1, 2])
    keep = g.op("And", [g.init(np.array(True)), g.op("LessOrEqual", [j_, i_])])
    minv = float(np.finfo(ft).min)
    mask = g.op("Where", [keep, g.scalar(0.0), g.scalar(minv)])

    def rms(x, wname, in_fp16=False):
        # fp16 models compute norms in fp32 (transformers casts); in_fp16
        # keeps one in fp16 with an fp16 epsilon, as a cruder export would.
        w = g.init(wt(W[wname]), "m." + wname)
        cast = fp16 and not in_fp16
        et = ft if in_fp16 else np.float32
        x32 = g.cast(x, TensorProto.FLOAT) if cast else x
        m = g.reduce_mean_last(g.op("Pow", [x32, g.init(np.array(2.0, et))]))
        r = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [m, g.init(np.array(cfg["eps"], et))])])])
        y = g.op("Mul", [x32, r])
        if cast:
            y = g.cast(y, onnx_ft)
        return g.op("Mul", [w, y])

    def linear(x, wname):
        return g.op("MatMul", [x, g.init(np.ascontiguousarray(wt(W[wname]).T))])

    def heads(y, n):
        return g.op("Transpose", [g.op("Reshape", [y, g.i64([B, -1, n, d])], allowzero=1)], perm=[0, 2, 1, 3])

    def rope(t):
        x1 = g.slice_last(t, 0, d // 2)
        x2 = g.slice_last(t, d // 2, INT64_MAX)
        rot = g.op("Concat", [g.op("Neg", [x2]), x1], axis=-1)
        return g.op("Add", [g.op("Mul", [t, cos]), g.op("Mul", [rot, sin])])

    def repeat_kv(t):
        u = g.unsqueeze(t, [2])
        shp = g.op("Concat", [g.i64([B]), g.i64([KV]), g.i64([rep]), seq_v, g.i64([d])], axis=0)
        return g.op("Reshape", [g.op("Expand", [u, shp]), g.i64([B, H, -1, d])], allowzero=1)

    def transpose_last2(t):
        # torch.onnx's dynamo spelling of k.transpose(-2, -1) inside SDPA.
        shp = g.op("Shape", [t])
        last = g.op("Slice", [shp, g.i64([-1]), g.i64([INT64_MAX])])
        mid = g.op("Slice", [shp, g.i64([-2]), g.i64([-1])])
        lead = g.op("Slice", [shp, g.i64([np.iinfo(np.int64).min]), g.i64([-2])])
        r = g.op("Reshape", [t, g.op("Concat", [g.i64([-1]), mid, last], axis=0)])
        tt = g.op("Transpose", [r], perm=[0, 2, 1])
        return g.op("Reshape", [tt, g.op("Concat", [lead, last, mid], axis=0)])

    half_scale = g.scalar(np.sqrt(1.0 / np.sqrt(d)))
    for l in range(cfg["layers"]):
        p = f"model.layers.{l}."
        h = rms(x, p + "input_layernorm.weight")
        q = rope(heads(linear(h, p + "self_attn.q_proj.weight"), H))
        k = repeat_kv(rope(heads(linear(h, p + "self_attn.k_proj.weight"), KV)))
        v = repeat_kv(heads(linear(h, p + "self_attn.v_proj.weight"), KV))
        s = g.op("MatMul", [g.op("Mul", [q, half_scale]), g.op("Mul", [transpose_last2(k), half_scale])])
        s = g.op("Add", [s, mask])
        if fp16:
            s = g.cast(s, TensorProto.FLOAT)
        pr = g.op("Softmax", [s], axis=-1)
        pr = g.op("Where", [g.op("IsNaN", [pr]), g.init(np.array(0.0, np.float32)), pr])
        if fp16:
            pr = g.cast(pr, onnx_ft)
        o = g.op("Transpose", [g.op("MatMul", [pr, v])], perm=[0, 2, 1, 3])
        o = g.op("Reshape", [o, g.i64([B, -1, H * d])], allowzero=1)
        if cfg.get("gemm_o"):
            # The 2-D Gemm spelling of a linear, weight [out, in] with transB.
            flat = g.op("Reshape", [o, g.i64([-1, H * d])])
            y = g.op("Gemm", [flat, g.init(wt(W[p + "self_attn.o_proj.weight"]))], transB=1)
            o_out = g.op("Reshape", [y, g.i64([B, -1, D])])
        else:
            o_out = linear(o, p + "self_attn.o_proj.weight")
        x = g.op("Add", [x, o_out])
        h = rms(x, p + "post_attention_layernorm.weight")
        gate = linear(h, p + "mlp.gate_proj.weight")
        silu = g.op("Mul", [gate, g.op("Sigmoid", [gate])])
        x = g.op("Add", [x, linear(g.op("Mul", [silu, linear(h, p + "mlp.up_proj.weight")]),
                                   p + "mlp.down_proj.weight")])
    h = rms(x, "model.norm.weight", in_fp16=fp16)
    if cfg["tie"]:
        head = g.op("Transpose", [embed], perm=[1, 0])
    else:
        head = g.init(np.ascontiguousarray(wt(W["lm_head.weight"]).T))
    if fp16:
        logits16 = g.op("MatMul", [h, head])
        g.nodes.append(helper.make_node("Cast", [logits16], ["logits"], to=TensorProto.FLOAT, name="node_logits"))
    else:
        g.nodes.append(helper.make_node("MatMul", [h, head], ["logits"], name="node_lm_head"))
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [B, "sequence"])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [B, "sequence", cfg["vocab"]])]
    return g, inputs, outputs


BASE = dict(bias=False, tie=False, eps=1e-5, theta=10000.0, max_pos=128, layers=2)
CONFIGS = {
    "ts14_cos_cache": dict(BASE, style="ts", variant="cos_cache", opset=14, mask="trilu", vocab=97,
                           hidden=64, inter=96, heads=4, kv=4, head_dim=16, eps=1e-6,
                           constant_nodes=True),
    "ts17_gqa_bias": dict(BASE, style="ts", variant="inv_freq", opset=17, mask="where", vocab=61,
                          hidden=48, inter=80, heads=6, kv=2, head_dim=8, layers=3, bias=True,
                          tie=True, theta=500000.0),
    "fp16_dynamo": dict(BASE, style="dynamo", opset=18, fp16=True, vocab=101, hidden=64, inter=128,
                        heads=2, kv=1, head_dim=32),
    "ext_data": dict(BASE, style="ts", variant="inv_freq", opset=17, mask="where", vocab=50,
                     hidden=32, inter=64, heads=2, kv=2, head_dim=16, theta=1000000.0, external=True),
    "mqa_tied": dict(BASE, style="dynamo", opset=20, vocab=89, hidden=64, inter=112, heads=4, kv=1,
                     head_dim=16, tie=True, gemm_o=True),
    "rope_linear": dict(BASE, style="dynamo", opset=20, vocab=64, hidden=32, inter=48, heads=2, kv=1,
                        head_dim=16, rope_factor=4.0),
    "bf16_cast": dict(BASE, style="ts", variant="inv_freq", opset=17, mask="where", vocab=71,
                      hidden=48, inter=64, heads=3, kv=1, head_dim=16, bf16_stored=True),
}


def store_weights_bf16(g):
    """Mixed-precision export: every float tensor of more than one element is
    stored as bf16 and read through a Cast to fp32 (nodes stay fp32)."""
    import ml_dtypes
    casts = []
    for t in g.inits:
        a = numpy_helper.to_array(t)
        if a.dtype != np.float32 or a.size <= 1 or t.name.startswith(("inv_freq", "cos_", "sin_", "expand")):
            continue  # weights only; the rotary tables stay fp32
        stored = t.name + "_bf16"
        b = a.astype(ml_dtypes.bfloat16)
        bt = helper.make_tensor(stored, TensorProto.BFLOAT16, a.shape, b.view(np.uint16).tobytes(), raw=True)
        t.CopyFrom(bt)
        casts.append(helper.make_node("Cast", [stored], [stored[: -len("_bf16")]], to=TensorProto.FLOAT,
                                      name="node_cast_" + stored))
    g.nodes[:0] = casts


def build(cfg, W):
    if cfg["style"] == "ts":
        g, ins, outs = build_torchscript(cfg, W, cfg["variant"])
    else:
        g, ins, outs = build_dynamo(cfg, W)
    if cfg.get("bf16_stored"):
        store_weights_bf16(g)
    graph = helper.make_graph(g.nodes, "decoder", ins, outs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", cfg["opset"])],
                              producer_name="qopt-make_graphs")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def run_ort(path, ids):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"input_ids": ids})[0]


def expected_config(cfg):
    rope_type = "linear" if cfg.get("rope_factor", 1.0) != 1.0 else "default"
    return dict(vocab_size=cfg["vocab"], hidden_size=cfg["hidden"], intermediate_size=cfg["inter"],
                num_hidden_layers=cfg["layers"], num_attention_heads=cfg["heads"],
                num_key_value_heads=cfg["kv"], head_dim=cfg["head_dim"], rms_norm_eps=cfg["eps"],
                rope_theta=cfg["theta"], rope_type=rope_type, rope_factor=cfg.get("rope_factor", 1.0),
                tie_word_embeddings=cfg["tie"], attention_bias=cfg["bias"],
                weight_dtype="f16" if cfg.get("fp16") else "bf16" if cfg.get("bf16_stored") else "f32")


def write_expected(out, cfg, W, model):
    nodes = [[n.name, n.op_type] for n in model.graph.node]
    index, blob = {}, bytearray()
    for name in sorted(W):
        a = np.ascontiguousarray(W[name], dtype=np.float32)
        index[name] = dict(shape=list(a.shape), offset=len(blob))
        blob += a.tobytes()
    with open(os.path.join(out, "expected.bin"), "wb") as f:
        f.write(blob)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(dict(config=expected_config(cfg), weights=index, nodes=nodes), f, indent=1)


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    root = sys.argv[1]
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(1234)
    worst = 0.0
    for name, cfg in CONFIGS.items():
        out = os.path.join(root, name)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        W = rand_weights(cfg, rng)
        model = build(cfg, W)
        path = os.path.join(out, "model.onnx")
        if cfg.get("external"):
            onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                            location="weights.bin", size_threshold=64)
        else:
            onnx.save_model(model, path)
        write_expected(out, cfg, W, model)
        B = cfg.get("batch", 1) if cfg["style"] == "dynamo" else 2
        ids = rng.integers(0, cfg["vocab"], size=(B, 7), dtype=np.int64)
        got = run_ort(path, ids)
        want = reference_logits(cfg, W, ids)
        tol = 5e-2 if cfg.get("fp16") else 1e-3
        err = np.abs(got - want).max() / max(1.0, np.abs(want).max())
        worst = max(worst, err if not cfg.get("fp16") else 0)
        print(f"{name}: onnxruntime vs numpy reference: max rel err {err:.2e}")
        if not err < tol:
            print(f"{name}: the graph does not compute a Llama forward pass", file=sys.stderr)
            return 1

    # Bad inputs.
    cfg = dict(CONFIGS["ts14_cos_cache"], act="Tanh")
    out = os.path.join(root, "bad_tanh")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    model = build(cfg, rand_weights(cfg, rng))
    for n in model.graph.node:
        if n.op_type == "Tanh":
            n.name = "the_tanh_node"
    onnx.save_model(model, os.path.join(out, "model.onnx"))
    out = os.path.join(root, "ext_missing")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    shutil.copy(os.path.join(root, "ext_data", "model.onnx"), os.path.join(out, "model.onnx"))
    # A mask that lets each position see one future token: not causal.
    cfg = dict(CONFIGS["ts14_cos_cache"], mask_k=2)
    out = os.path.join(root, "bad_mask")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    onnx.save_model(build(cfg, rand_weights(cfg, rng)), os.path.join(out, "model.onnx"))

    # External data pointing past the end of its file, or outside the directory.
    for name, key, value in (("ext_offset", "offset", str(1 << 40)),
                             ("ext_escape", "location", "../ext_data/weights.bin")):
        out = os.path.join(root, name)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        model = onnx.load(os.path.join(root, "ext_data", "model.onnx"), load_external_data=False)
        t = model.graph.initializer[0]
        kv = {e.key: e for e in t.external_data}
        if key in kv:
            kv[key].value = value
        else:
            t.external_data.add(key=key, value=value)
        onnx.save_model(model, os.path.join(out, "model.onnx"))
        shutil.copy(os.path.join(root, "ext_data", "weights.bin"), os.path.join(out, "weights.bin"))
    print("all graphs written to", root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
