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
  - FP8 (-wquant=fp8 -method=smoothquant) for sm90 and sm89: every decoder
    linear has the layout cuda_w8a8_f8_pc, format fp8_e4m3 per channel
    symmetric, act_quant type fp8_e4m3 per token; the o_proj blob, its E4M3
    codes decoded here from the format (sign, 4-bit exponent with bias 7,
    3-bit mantissa, no infinities, 0x7f / 0xff NaN), equals the reference
    fake quantization of the safetensors weight exactly: scale max|w| / 448
    in fp32, w / scale rounded to the nearest E4M3 value (ties to even,
    saturating at 448), as the compiler's quantizer and the reference
    executor do;
  - refused in one line, nothing written: FP8 for sm80 (no FP8 tensor
    cores; the error names the target), and weight-only fp8 (-method=rtn,
    no act_quant) for sm90.
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
FP8_LAYOUT = "cuda_w8a8_f8_pc"


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


def decode_e4m3(codes):
    """E4M3 ("fn") bytes to float32, from the format: sign bit 7, exponent
    bits 6..3 (bias 7), mantissa bits 2..0; exponent 0 is subnormal
    (mantissa * 2^-9); no infinities; 0x7f / 0xff are NaN."""
    c = codes.astype(np.int32)
    sign = np.where(c & 0x80, -1.0, 1.0)
    e = (c >> 3) & 0xF
    m = c & 0x7
    mag = np.where(e == 0, m * 2.0 ** -9, (8 + m) * np.exp2(e - 10.0))
    out = sign * mag
    out[(c & 0x7F) == 0x7F] = np.nan
    return out.astype(np.float32)


def round_e4m3(y):
    """Nearest E4M3 value of float32 y (ties to even), saturating at +-448:
    the spacing is 2^(e-3) for |y| in [2^e, 2^(e+1)), 2^-9 below 2^-6, so
    rint of y / spacing (exact: a power of two) is the format's rounding."""
    a = np.abs(y)
    _, e = np.frexp(a)
    step = np.exp2(np.maximum(e - 1, -6) - 3.0).astype(np.float32)
    r = np.minimum(np.rint(a / step) * step, np.float32(448))
    return np.copysign(r, y).astype(np.float32)


def check_fp8_artifact(art, isa, cc, model):
    man = json.load(open(os.path.join(art, "manifest.json")))
    t = man["target"]
    if t.get("isa") != isa or t.get("device") != "cuda" or t.get("compute_capability") != cc:
        sys.exit(f"FAIL: {art}: target {t}")
    for li, layer in enumerate(man["model"]["layers"]):
        for key in ("qkv", "o", "gate_up", "down"):
            lin = layer.get(key)
            if lin is None:
                sys.exit(f"FAIL: {isa} fp8 layers[{li}] has no fused '{key}': {sorted(layer)}")
            aq = lin.get("act_quant") or {}
            if (lin["layout"] != FP8_LAYOUT or lin["format"] != "fp8_e4m3" or lin["bits"] != 8 or
                    lin["group_size"] != 0 or not lin["symmetric"] or aq.get("type") != "fp8_e4m3" or
                    aq.get("mode") != "per_token"):
                sys.exit(f"FAIL: {isa} fp8 layers[{li}].{key}: {lin}")
    if man["model"]["lm_head"]["layout"] != "row_major":
        sys.exit(f"FAIL: {isa} fp8 lm_head {man['model']['lm_head']}")

    tensors = {t["name"]: t for t in man["tensors"]}
    o = man["model"]["layers"][0]["o"]
    t = tensors[o["weight"]]
    if t["layout"] != FP8_LAYOUT or t["dtype"] != "u8" or t["offset"] % 256 != 0:
        sys.exit(f"FAIL: {isa} fp8 tensor {t}")
    with open(os.path.join(art, "weights.bin"), "rb") as f:
        f.seek(t["offset"])
        blob = f.read(t["nbytes"])
    n, k = o["out_features"], o["in_features"]
    so = (n * k + 255) // 256 * 256
    if so + 4 * n != t["nbytes"]:
        sys.exit(f"FAIL: {o['weight']}: {t['nbytes']} bytes, the documented layout needs {so + 4 * n}")
    codes = np.frombuffer(blob[:n * k], np.uint8).reshape(n, k)
    scales = np.frombuffer(blob[so:so + 4 * n], np.float32)
    if ((codes & 0x7F) == 0x7F).any():
        sys.exit(f"FAIL: {o['weight']}: a NaN E4M3 code")
    w = safetensors_f32(os.path.join(model, "model.safetensors"), o["weight"]).astype(np.float32)
    amax = np.abs(w).max(axis=1)
    ref_scales = np.where(amax > 0, amax / np.float32(448), np.float32(1)).astype(np.float32)
    if not np.array_equal(scales, ref_scales):
        i = int(np.argmax(scales != ref_scales))
        sys.exit(f"FAIL: {o['weight']} scale[{i}] {scales[i]} vs reference {ref_scales[i]}")
    ref = round_e4m3(w / ref_scales[:, None])
    got = decode_e4m3(codes)
    if not np.array_equal(got, ref):
        i = tuple(int(v) for v in np.argwhere(got != ref)[0])
        sys.exit(f"FAIL: {o['weight']}{list(i)}: code 0x{codes[i]:02x} = {got[i]}, reference "
                 f"{ref[i]} (w / scale = {w[i] / ref_scales[i[0]]})")
    if not np.array_equal(got * scales[:, None], ref * ref_scales[:, None]):
        sys.exit(f"FAIL: {o['weight']}: dequantized weights differ from the reference")
    return f"fp8 {isa}: {o['weight']} E4M3 codes and scales equal the reference"


def check_refused(p, what, needle):
    err = p.stderr.strip()
    if p.returncode == 0 or len(err.splitlines()) != 1 or needle not in err:
        sys.exit(f"FAIL: {what}: exit {p.returncode}, stderr:\n{p.stderr}")


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
        fp8 = ["-wquant=fp8", "-method=smoothquant", f"-calib={calib}", "-calib-samples=4"]
        for isa, cc in (("sm90", [9, 0]), ("sm89", [8, 9])):
            art = os.path.join(tmp, f"fp8-{isa}.qopt")
            run([args.qopt, model, *fp8, f"-target={isa}", "-o", art])
            summary.append(check_fp8_artifact(art, isa, cc, model))
        out = os.path.join(tmp, "fp8-sm80.qopt")
        check_refused(run([args.qopt, model, *fp8, "-target=sm80", "-o", out], check=False),
                      "fp8 W8A8 for sm80", "-target=sm80")
        rtn = os.path.join(tmp, "fp8-rtn.qopt")
        check_refused(run([args.qopt, model, "-wquant=fp8", "-method=rtn", "-target=sm90", "-o", rtn],
                          check=False), "weight-only fp8 for sm90", "fp8_e4m3")
        if os.path.exists(out) or os.path.exists(rtn):
            sys.exit("FAIL: a refused compile left an artifact behind")
    print("; ".join(summary) + "; fp8 for sm80 and weight-only fp8 refused")


if __name__ == "__main__":
    main()
