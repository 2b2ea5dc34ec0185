#!/usr/bin/env python3
"""Runs capi_test and capi_example on austen-llama-7m: compiles the unquantized artifact with
qopt, writes the reference (../shared's reference.json and config.json) in
a line format a C program reads easily, and runs the test binary on both.

Cases file (texts hex-encoded, so any byte survives):
  vocab N / bos N / eos N / context N       from config.json
  prompt HEX / ids I I ... / greedy I I ... / text HEX   per reference prompt
Exit 77 (skip) when the shared model is absent.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qopt", required=True)
    ap.add_argument("--capi-test", required=True)
    ap.add_argument("--capi-example", required=True)
    ap.add_argument("--shared", required=True)
    args = ap.parse_args()
    model = os.path.join(args.shared, "models", "austen-llama-7m")
    ref_path = os.path.join(model, "reference", "reference.json")
    text = os.path.join(args.shared, "data", "text", "austen", "persuasion.txt")
    if not (os.path.isfile(ref_path) and os.path.isfile(text)):
        print(f"SKIP: {model} or {text} is absent")
        return 77
    ref = json.load(open(ref_path))
    cfg = json.load(open(os.path.join(model, "config.json")))
    with tempfile.TemporaryDirectory() as tmp:
        art = os.path.join(tmp, "austen.qopt")
        p = subprocess.run([args.qopt, model, "-o", art], capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"FAIL: qopt -o {art}: {p.stderr}")
        cases = os.path.join(tmp, "cases.txt")
        with open(cases, "w") as f:
            for key, cfg_key in (("vocab", "vocab_size"), ("bos", "bos_token_id"),
                                 ("eos", "eos_token_id"), ("context", "max_position_embeddings")):
                f.write(f"{key} {int(cfg[cfg_key])}\n")
            for pr in ref["prompts"]:
                f.write("prompt " + pr["text"].encode().hex() + "\n")
                f.write("ids " + " ".join(map(str, pr["ids"])) + "\n")
                f.write("greedy " + " ".join(map(str, pr["greedy_ids"])) + "\n")
                f.write("text " + pr["greedy_text"].encode().hex() + "\n")
        ppl = ref["ppl"]["austen_persuasion"]["fp32"]
        rc = subprocess.run([args.capi_test, art, cases, text, str(ppl)]).returncode
        if rc != 0:
            return rc
        # The documented example runs and streams to its finish line.
        p = subprocess.run([args.capi_example, art, ref["prompts"][0]["text"]],
                           capture_output=True, text=True)
        if p.returncode != 0 or not p.stdout.strip().endswith(("[length]", "[stop]")):
            sys.exit(f"FAIL: capi_example: {p.returncode} {p.stdout!r} {p.stderr}")
        print("capi_example:", p.stdout.strip().splitlines()[0][:60])
        return 0


if __name__ == "__main__":
    sys.exit(main())
