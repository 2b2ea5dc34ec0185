#!/usr/bin/env python3
"""End-to-end: logits of ONNX models run by qopt vs onnxruntime.

Usage: test_onnx_vs_ort.py --qopt QOPT --graphs DIR [--shared SHARED]

For every graph make_graphs.py wrote to DIR, runs
  qopt DIR/NAME/model.onnx -token-ids=... -logits-out=OUT.npy
for a few prompts of odd lengths and compares with onnxruntime on the same
file: max |qopt - ort| / max(1, max |ort|) must stay below 1e-3. fp16 graphs
run in fp16 under onnxruntime but in fp32 (fp16 weights upcast) under qopt,
so they are held to 1e-3 against the numpy fp32 reference of make_graphs.py
instead, and to 5e-2 against onnxruntime. With --shared, the austen-llama-7m
export is checked too, against onnxruntime and against transformers'
logits in reference/prompt0_logits.npy.

Exit 77 (skip) when the graphs, qopt or onnxruntime are missing.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # importing make_graphs must not litter the source tree

STYLES = ["ts14_cos_cache", "ts17_gqa_bias", "fp16_dynamo", "ext_data", "mqa_tied", "rope_linear",
          "bf16_cast"]


def run_qopt(qopt, model, ids, tmp):
    out = os.path.join(tmp, "logits.npy")
    if os.path.exists(out):
        os.remove(out)
    cmd = [qopt, model, "-token-ids=" + ",".join(str(int(i)) for i in ids), "-logits-out=" + out]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return np.load(out)


def rel_err(got, want):
    return float(np.abs(got - want).max() / max(1.0, float(np.abs(want).max())))


def expected_weights(d):
    with open(os.path.join(d, "expected.json")) as f:
        exp = json.load(f)
    blob = np.fromfile(os.path.join(d, "expected.bin"), dtype=np.float32)
    W = {}
    for name, w in exp["weights"].items():
        n = int(np.prod(w["shape"]))
        W[name] = blob[w["offset"] // 4: w["offset"] // 4 + n].reshape(w["shape"])
    c = exp["config"]
    cfg = dict(vocab=c["vocab_size"], hidden=c["hidden_size"], inter=c["intermediate_size"],
               layers=c["num_hidden_layers"], heads=c["num_attention_heads"], kv=c["num_key_value_heads"],
               head_dim=c["head_dim"], eps=c["rms_norm_eps"], theta=c["rope_theta"],
               rope_factor=c["rope_factor"], tie=c["tie_word_embeddings"], bias=c["attention_bias"])
    return cfg, W


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qopt", required=True)
    ap.add_argument("--graphs", required=True)
    ap.add_argument("--shared")
    args = ap.parse_args()
    try:
        import onnxruntime as ort
        from make_graphs import reference_logits
    except ImportError as e:
        print(f"SKIP: {e}")
        return 77
    if not os.path.exists(args.qopt):
        print(f"SKIP: no qopt driver at {args.qopt}")
        return 77
    if not os.path.exists(os.path.join(args.graphs, STYLES[0], "model.onnx")):
        print(f"SKIP: no generated graphs in {args.graphs} (run make_graphs.py)")
        return 77

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    rng = np.random.default_rng(99)
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in STYLES:
            d = os.path.join(args.graphs, name)
            model = os.path.join(d, "model.onnx")
            sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
            cfg, W = expected_weights(d)
            fp16 = name.startswith("fp16")
            for length in (1, 7, 13):
                ids = rng.integers(0, cfg["vocab"], size=length)
                want = sess.run(["logits"], {"input_ids": ids[None, :].astype(np.int64)})[0][0]
                try:
                    got = run_qopt(args.qopt, model, ids, tmp)
                except RuntimeError as e:
                    failures.append(str(e))
                    continue
                if got.shape != want.shape:
                    failures.append(f"{name} len {length}: shape {got.shape} vs {want.shape}")
                    continue
                e_ort = rel_err(got, want)
                e_ref = rel_err(got, reference_logits(cfg, W, ids[None, :])[0])
                limit_ort = 5e-2 if fp16 else 1e-3
                print(f"{name} len {length}: vs onnxruntime {e_ort:.2e}, vs numpy fp32 {e_ref:.2e}")
                if not (e_ort < limit_ort and e_ref < 1e-3):
                    failures.append(f"{name} len {length}: error {e_ort:.2e} / {e_ref:.2e}")

        if args.shared:
            mdir = os.path.join(args.shared, "models", "austen-llama-7m")
            ref = os.path.join(mdir, "reference", "reference.json")
            if os.path.exists(os.path.join(mdir, "model.onnx")) and os.path.exists(ref):
                with open(ref) as f:
                    ids = np.array(json.load(f)["prompts"][0]["ids"], dtype=np.int64)
                model = os.path.join(mdir, "model.onnx")
                sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
                want = sess.run(["logits"], {"input_ids": ids[None, :]})[0][0]
                try:
                    got = run_qopt(args.qopt, model, ids, tmp)
                    hf = np.load(os.path.join(mdir, "reference", "prompt0_logits.npy"))
                    e_ort, e_hf = rel_err(got, want), rel_err(got, hf)
                    print(f"austen-llama-7m model.onnx: vs onnxruntime {e_ort:.2e}, vs transformers {e_hf:.2e}")
                    if not (e_ort < 1e-3 and e_hf < 1e-3):
                        failures.append(f"austen-llama-7m: error {e_ort:.2e} / {e_hf:.2e}")
                except RuntimeError as e:
                    failures.append(str(e))
            else:
                print("shared austen-llama-7m not found: skipped that part")
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
