#!/usr/bin/env python3
"""The qopt driver against transformers' ground truth in ../shared.

For austen-llama-7m, from both model.safetensors and model.onnx: logits of
prompt 0 within 1e-3 of prompt0_logits.npy, greedy continuations of the four
reference prompts equal to greedy_ids, perplexity on Persuasion and the
TinyStories tail within 0.02 of reference.json. For stories260K (no
tokenizer.json, tied embeddings, hidden 172): greedy ids from BOS.
Exits 77 (skipped) when ../shared is absent.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    return p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qopt", required=True)
    ap.add_argument("--shared", required=True)
    args = ap.parse_args()
    austen = os.path.join(args.shared, "models", "austen-llama-7m")
    if not os.path.isdir(austen):
        print(f"SKIP: {args.shared} not present (shared models are needed)")
        return 77
    ref = json.load(open(os.path.join(austen, "reference", "reference.json")))
    ref_logits = np.load(os.path.join(austen, "reference", "prompt0_logits.npy"))
    failures = []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            failures.append(what)

    sources = {"safetensors": austen, "onnx": os.path.join(austen, "model.onnx")}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, model in sources.items():
            # Logits of prompt 0.
            ids = ",".join(map(str, ref["prompts"][0]["ids"]))
            out = os.path.join(tmp, f"{kind}.npy")
            run([args.qopt, model, f"-token-ids={ids}", f"-logits-out={out}", "-max-new-tokens=0"])
            got = np.load(out)
            err = float(np.abs(got - ref_logits).max()) if got.shape == ref_logits.shape else float("inf")
            check(err < 1e-3, f"{kind}: prompt 0 logits max abs error {err:.2e} (< 1e-3), shape {got.shape}")
            # Greedy continuations.
            for i, p in enumerate(ref["prompts"]):
                ids = ",".join(map(str, p["ids"]))
                text = run([args.qopt, model, f"-token-ids={ids}", "-print-ids",
                            f"-max-new-tokens={len(p['greedy_ids'])}"])
                got_ids = json.loads(text.splitlines()[0])
                check(got_ids == p["greedy_ids"], f"{kind}: greedy ids of prompt {i}")
            # Perplexity under the shared protocol.
            texts = {"austen_persuasion": "austen/persuasion.txt",
                     "tinystories_eval": "tinystories_eval_split.txt"}
            for key, rel in texts.items():
                path = os.path.join(args.shared, "data", "text", rel)
                line = run([args.qopt, model, f"-eval-ppl={path}"])
                m = re.search(r"perplexity: ([0-9.]+)", line)
                want = ref["ppl"][key]["fp32"]
                got = float(m.group(1)) if m else float("nan")
                check(abs(got - want) <= 0.02, f"{kind}: perplexity on {rel} = {got:.4f} (want {want} +- 0.02)")

    stories = os.path.join(args.shared, "models", "stories260K")
    sref = json.load(open(os.path.join(stories, "reference", "reference.json")))
    text = run([args.qopt, stories, f"-token-ids={sref['bos_id']}", "-print-ids",
                f"-max-new-tokens={len(sref['greedy_ids'])}"])
    got_ids = json.loads(text.splitlines()[0])
    check(got_ids == sref["greedy_ids"], "stories260K: greedy ids from BOS")

    print(f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
