#!/usr/bin/env python3
"""W8A8 (SmoothQuant int8) artifacts for a GPU target (docs/artifact.md, "GPU
targets"; docs/cuda.md, "W8A8"). No GPU needed.

From ../shared austen-llama-7m with -wquant=w8a8 -target=sm90:
  - per token and per tensor: every linear of the decoder layers (fused qkv
    and gate_up too) has the layout cuda_w8a8_i8_pc, format int8 per
    channel symmetric, and the act_quant metadata the CPU artifact has
    (per_tensor with a positive scale);
  - the o_proj blob (o_proj has no norm in front, so SmoothQuant leaves its
    weight unscaled), decoded here from the documented layout (int8 codes
    [N, K], then fp32 scales [N] at a 256-byte boundary), equals the
    reference per-channel symmetric quantization of the safetensors weight:
    scale max|w| / 127 rounded to fp16 (the quantizer's scales are
    fp16-representable), code round-half-even(w / scale) clamped to +-127;
  - fp8 activations (-wquant=fp8 -method=smoothquant) are refused in one
    line.
Exit 77 when the shared data is absent.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

SKIP = 77
LAYOUT = "cuda_w8a8_i8_pc"


def run(cmd, check=True):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}:\n{p.stderr}")
    return p


def safetensors_f32(path, name):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        e = header[name]
        f.seek(8 + n + e["data_offsets"][0])
        raw = f.read(e["data_offsets"][1] - e["data_offsets"][0])
    if e["dtype"] == "BF16":
        return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(e["shape"])
    return np.frombuffer(raw, np.float32).reshape(e["shape"])


def decode_w8a8_blob(blob, n, k):
    """int8 codes [N][K] at 0, fp32 scales [N] at the next 256-byte boundary."""
    so = (n * k + 255) // 256 * 256
    codes = np.frombuffer(blob[:n * k], np.int8).reshape(n, k)
    scales = np.frombuffer(blob[so:so + 4 * n], np.float32)
    return codes, scales, so + 4 * n


def check_artifact(art, mode, model):
    man = json.load(open(os.path.join(art, "manifest.json")))
    t = man["target"]
    if t.get("isa") != "sm90" or t.get("device") != "cuda" or t.get("compute_capability") != [9, 0]:
        sys.exit(f"FAIL: {art}: target {t}")
    want_mode = mode.replace("-", "_")
    for li, layer in enumerate(man["model"]["layers"]):
        for key in ("qkv", "o", "gate_up", "down"):
            lin = layer.get(key)
            if lin is None:
                sys.exit(f"FAIL: layers[{li}] has no fused '{key}': {sorted(layer)}")
            aq = lin.get("act_quant") or {}
            if (lin["layout"] != LAYOUT or lin["format"] != "int8" or lin["group_size"] != 0 or
                    not lin["symmetric"] or aq.get("type") != "int8" or aq.get("mode") != want_mode or
                    (want_mode == "per_tensor") != (aq.get("scale", 0) > 0)):
                sys.exit(f"FAIL: layers[{li}].{key}: {lin}")
    if man["model"]["lm_head"]["layout"] != "row_major":
        sys.exit(f"FAIL: lm_head {man['model']['lm_head']}")

    tensors = {t["name"]: t for t in man["tensors"]}
    o = man["model"]["layers"][0]["o"]
    t = tensors[o["weight"]]
    if t["layout"] != LAYOUT or t["dtype"] != "u8" or t["offset"] % 256 != 0:
        sys.exit(f"FAIL: tensor {t}")
    with open(os.path.join(art, "weights.bin"), "rb") as f:
        f.seek(t["offset"])
        blob = f.read(t["nbytes"])
    n, k = o["out_features"], o["in_features"]
    codes, scales, end = decode_w8a8_blob(blob, n, k)
    if end != t["nbytes"]:
        sys.exit(f"FAIL: {o['weight']}: {t['nbytes']} bytes, the documented layout needs {end}")
    w = safetensors_f32(os.path.join(model, "model.safetensors"), o["weight"])
    # The quantizer keeps scales fp16-representable (round to nearest).
    ref_scales = (np.abs(w).max(axis=1) / np.float32(127)).astype(np.float16).astype(np.float32)
    if not np.allclose(scales, ref_scales, rtol=1e-6, atol=0):
        i = int(np.argmax(np.abs(scales - ref_scales)))
        sys.exit(f"FAIL: {o['weight']} scale[{i}] {scales[i]} vs reference {ref_scales[i]}")
    y = w / ref_scales[:, None]
    ref_codes = np.clip(np.rint(y), -127, 127).astype(np.int32)  # rint: half to even
    diff = codes.astype(np.int32) - ref_codes
    # Off by one only where w / scale is a hair from .5 (division order).
    tie = np.abs(np.abs(y) - np.floor(np.abs(y)) - 0.5) <= 1e-5 * np.maximum(np.abs(y), 1)
    bad = (diff != 0) & ~((np.abs(diff) == 1) & tie)
    if bad.any():
        i = tuple(int(v) for v in np.argwhere(bad)[0])
        sys.exit(f"FAIL: {o['weight']}{list(i)}: code {codes[i]}, reference {ref_codes[i]} "
                 f"(w / scale = {y[i]})")
    return f"{mode}: {o['weight']} codes equal ({int((diff != 0).sum())} ties off by one)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qopt", required=True)
    ap.add_argument("--shared", required=True)
    args = ap.parse_args()
    model = os.path.join(args.shared, "models", "austen-llama-7m")
    calib = os.path.join(args.shared, "data", "text", "austen", "emma.txt")
    if not os.path.isdir(model) or not os.path.isfile(calib):
        print(f"SKIP: {model} or {calib} not found")
        sys.exit(SKIP)
    summary = []
    with tempfile.TemporaryDirectory(prefix="w8a8-sm90-") as tmp:
        for mode in ("per-token", "per-tensor"):
            art = os.path.join(tmp, f"{mode}.qopt")
            run([args.qopt, model, "-wquant=w8a8", f"-act-quant={mode}", f"-calib={calib}",
                 "-calib-samples=4", "-target=sm90", "-o", art])
            summary.append(check_artifact(art, mode, model))
        p = run([args.qopt, model, "-wquant=fp8", "-method=smoothquant", f"-calib={calib}",
                 "-calib-samples=4", "-target=sm90", "-o", os.path.join(tmp, "fp8.qopt")],
                check=False)
        err = p.stderr.strip()
        if p.returncode == 0 or len(err.splitlines()) != 1 or "fp8_e4m3" not in err:
            sys.exit(f"FAIL: fp8 W8A8 for sm90: exit {p.returncode}, stderr:\n{p.stderr}")
    print("; ".join(summary) + "; fp8 activations refused")


if __name__ == "__main__":
    main()
