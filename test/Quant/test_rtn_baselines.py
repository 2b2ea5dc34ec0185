#!/usr/bin/env python3
"""test_rtn_baselines.py - RTN reproduces reference.json's naive baselines.

austen-llama-7m's reference/reference.json holds transformers' perplexities
of naive round-to-nearest quantizations (decoder linears only) under the
shared protocol (40 windows x 256 tokens). `qopt -wquant=...` must land
within 1% of each, on Persuasion and on the TinyStories held-out text; and
on Persuasion its mean KL divergence and top-1 agreement must match the
measurements of ../shared/docs/field-notes.md ("Quality on the shared
model", same protocol) to 10% / 1.5 points. Skips (77) without ../shared.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

# reference.json key -> qopt flags
CONFIGS = {
    "rtn_w8_gchannel_sym": ["-wquant=int8", "-group-size=-1", "-wquant-sym"],
    "rtn_w4_g128_asym": ["-wquant=int4", "-group-size=128"],
    "rtn_w4_g32_asym": ["-wquant=int4", "-group-size=32"],
    "rtn_w3_g128_asym": ["-wquant=int3", "-group-size=128"],
    "rtn_w3_g32_asym": ["-wquant=int3", "-group-size=32"],
}
TEXTS = {"austen_persuasion": "austen/persuasion.txt",
         "tinystories_eval": "tinystories_eval_split.txt"}
# field-notes.md, Persuasion: (mean KLD, top-1)
FIELD_NOTES = {
    "rtn_w8_gchannel_sym": (0.00005, 0.996),
    "rtn_w4_g32_asym": (0.00578, 0.940),
    "rtn_w4_g128_asym": (0.00955, 0.928),
    "rtn_w3_g128_asym": (0.04179, 0.846),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qopt", required=True)
    ap.add_argument("--shared", required=True)
    args = ap.parse_args()
    model = os.path.join(args.shared, "models", "austen-llama-7m")
    ref_path = os.path.join(model, "reference", "reference.json")
    if not os.path.exists(ref_path):
        print("SKIP: %s not found" % ref_path)
        return 77
    with open(ref_path) as f:
        ref = json.load(f)["ppl"]
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for text_key, text_rel in TEXTS.items():
            text = os.path.join(args.shared, "data", "text", text_rel)
            for key, flags in CONFIGS.items():
                report = os.path.join(tmp, "r.json")
                subprocess.run([args.qopt, model, *flags, "-eval-ppl=" + text, "-eval-ctx=256",
                                "-eval-chunks=40", "-report=" + report],
                               check=True, stdout=subprocess.DEVNULL)
                with open(report) as f:
                    q = json.load(f)["quality"]
                want = ref[text_key][key]
                rel = abs(q["perplexity"] - want) / want
                ok = rel <= 0.01
                # The float model is transformers' to the protocol's precision.
                ok_float = abs(q["float_perplexity"] - ref[text_key]["fp32"]) / \
                    ref[text_key]["fp32"] <= 1e-4
                line = "%-18s %-20s ppl %.4f (reference %.4f, %.3f%%) float %.4f KLD %.5f " \
                       "top-1 %.2f%%" % (text_key, key, q["perplexity"], want, 100 * rel,
                                         q["float_perplexity"], q["mean_kld"],
                                         100 * q["top1_agreement"])
                if text_key == "austen_persuasion" and key in FIELD_NOTES:
                    kld, top1 = FIELD_NOTES[key]
                    ok_notes = abs(q["mean_kld"] - kld) <= 0.1 * kld + 1e-5 and \
                        abs(q["top1_agreement"] - top1) <= 0.015
                    line += " (field notes: KLD %.5f, top-1 %.1f%%%s)" % (
                        kld, 100 * top1, "" if ok_notes else " MISMATCH")
                    ok = ok and ok_notes
                ok = ok and ok_float
                print(line + ("" if ok else "  FAIL"))
                failures += not ok
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
