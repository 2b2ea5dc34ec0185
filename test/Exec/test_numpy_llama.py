#!/usr/bin/env python3
"""test_numpy_llama.py - checks the numpy oracle (numpy_llama.py) itself.

Against transformers' own outputs in ../shared: the logits of
austen-llama-7m's prompt 0, its greedy continuation of prompt 0, and
stories260K's greedy ids from BOS. Exits 77 (skip) without ../shared.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy_llama as nl  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "../../../shared"))
    args = ap.parse_args()
    austen = os.path.join(args.shared, "models/austen-llama-7m")
    stories = os.path.join(args.shared, "models/stories260K")
    if not os.path.isdir(austen) or not os.path.isdir(stories):
        print(f"SKIP: {args.shared} has no shared models")
        return 77
    np.seterr(over="ignore")
    failures = 0

    ref = json.load(open(os.path.join(austen, "reference/reference.json")))
    cfg, w = nl.load_model(austen)
    p0 = ref["prompts"][0]
    logits = nl.forward(cfg, w, np.array([p0["ids"]]))[0]
    expected = np.load(os.path.join(austen, "reference/prompt0_logits.npy"))
    err = float(np.max(np.abs(logits - expected)))
    print(f"austen-llama-7m prompt 0: max |numpy - transformers| = {err:.3g}")
    if err > 1e-4:
        print("FAIL: numpy reference logits differ from transformers'")
        failures += 1
    got = nl.greedy(cfg, w, p0["ids"], len(p0["greedy_ids"]), eos=1)
    if got != p0["greedy_ids"]:
        print(f"FAIL: austen prompt 0 greedy {got} != {p0['greedy_ids']}")
        failures += 1

    sref = json.load(open(os.path.join(stories, "reference/reference.json")))
    cfg, w = nl.load_model(stories)
    got = nl.greedy(cfg, w, [sref["bos_id"]], len(sref["greedy_ids"]))
    if got != sref["greedy_ids"]:
        print(f"FAIL: stories260K greedy {got} != {sref['greedy_ids']}")
        failures += 1
    print("PASS" if failures == 0 else f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
