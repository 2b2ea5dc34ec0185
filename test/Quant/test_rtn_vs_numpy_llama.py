#!/usr/bin/env python3
"""test_rtn_vs_numpy_llama.py - the whole RTN chain against numpy, on austen-llama-7m.

`qopt MODEL -wquant=... -eval-ppl=persuasion.txt -eval-chunks=4 -report=R.json`
quantizes with the RTN pass, runs the quantized weights in the reference
executor next to the float model, and reports float / quantized perplexity,
mean KL divergence and top-1 agreement. Here the same numbers come from
numpy only: the formats re-implemented in test_quantizer_vs_numpy.py
applied to the checkpoint's decoder linears, test/Exec/numpy_llama.py's
forward, log-softmax in float64. Skips (77) without ../shared.
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
sys.path.insert(0, os.path.join(HERE, "..", "Exec"))
import numpy_llama as nl  # noqa: E402
import test_quantizer_vs_numpy as qref  # noqa: E402

CTX, CHUNKS = 256, 4


def quantize_weights(w, fmt, group, sym):
    out = dict(w)
    table = qref.nf4_table()
    for name, W in w.items():
        if not (name.startswith("model.layers.") and name.endswith("_proj.weight")):
            continue
        if fmt == "nf4":
            codes, scales, _, _ = qref.nf4_ref(W, group, table)
            widths = [e - b for b, e in qref.groups_of(W.shape[1], group)]
            out[name] = table[codes] * np.repeat(scales, widths, axis=1)
        elif fmt == "fp8":
            out[name] = qref.fp8_ref(W)[2]
        else:
            out[name] = qref.int_ref(W, int(fmt[3:]), group, sym)[3]
    return out


def log_softmax(x):
    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qopt", required=True)
    ap.add_argument("--shared", required=True)
    args = ap.parse_args()
    model = os.path.join(args.shared, "models", "austen-llama-7m")
    text = os.path.join(args.shared, "data", "text", "austen", "persuasion.txt")
    if not os.path.isdir(model) or not os.path.exists(text):
        print("SKIP: %s not found" % model)
        return 77
    try:
        from tokenizers import Tokenizer
    except ImportError:
        print("SKIP: the tokenizers package is missing")
        return 77
    tok = Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
    with open(text, encoding="utf-8") as f:
        ids = tok.encode(f.read(), add_special_tokens=False).ids
    windows = np.array(ids[:CTX * CHUNKS]).reshape(CHUNKS, CTX)
    cfg, w = nl.load_model(model)
    float_lp = log_softmax(nl.forward(cfg, w, windows))
    targets = windows[:, 1:]

    def nll(lp):
        return -np.take_along_axis(lp[:, :-1], targets[..., None], -1).mean()

    configs = [("int4", 128, False, ["-wquant=int4"]),
               ("int3", 32, False, ["-wquant=int3", "-group-size=32"]),
               ("int8", -1, True, ["-wquant=int8", "-group-size=-1", "-wquant-sym"]),
               ("int2", 64, True, ["-wquant=int2", "-group-size=64", "-wquant-sym"]),
               ("nf4", 64, True, ["-wquant=nf4"]),
               ("fp8", -1, True, ["-wquant=fp8"])]
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, group, sym, flags in configs:
            report = os.path.join(tmp, "r.json")
            subprocess.run([args.qopt, model, *flags, "-eval-ppl=" + text,
                            "-eval-chunks=%d" % CHUNKS, "-report=" + report, "-threads=2"],
                           check=True, stdout=subprocess.DEVNULL)
            with open(report) as f:
                got = json.load(f)["quality"]
            lp = log_softmax(nl.forward(cfg, quantize_weights(w, fmt, group, sym), windows))
            p = np.exp(float_lp[:, :-1])
            kld = (p * (float_lp[:, :-1] - lp[:, :-1])).sum(-1).mean()
            top1 = (float_lp[:, :-1].argmax(-1) == lp[:, :-1].argmax(-1)).mean()
            want = {"float_perplexity": np.exp(nll(float_lp)), "perplexity": np.exp(nll(lp)),
                    "mean_kld": kld, "top1_agreement": top1}
            # fp32 executor vs numpy fp32: logits agree to ~1e-5, so the
            # perplexities to ~1e-5 and the KL divergence to well under 1%.
            tol = {"float_perplexity": 1e-4, "perplexity": 1e-4, "mean_kld": 1e-2,
                   "top1_agreement": 2.0 / targets.size}
            for key, value in want.items():
                diff = abs(got[key] - value)
                ok = diff <= tol[key] * (abs(value) if key != "top1_agreement" else 1)
                print("%-5s %-16s qopt %.6g numpy %.6g %s" % (fmt, key, got[key], value,
                                                          "ok" if ok else "FAIL"))
                failures += not ok
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
