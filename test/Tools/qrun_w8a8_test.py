#!/usr/bin/env python3
"""W8A8 (SmoothQuant int8) artifacts in qrun against qopt's reference executor.

On ../shared austen-llama-7m, for -act-quant=per-token and per-tensor:
  - qrun --perplexity on Persuasion is within 0.5% of qopt -eval-ppl with
    the same quantization (qopt fake-quantizes the activations; qrun runs
    the integer kernels with the same rounding);
  - the first greedy tokens of reference.json's prompts equal qopt's.
An artifact whose act_quant says fp8_e4m3 is refused in one line naming the
weight. Exit 77 when the shared data is absent.

Why only a prefix of the greedy ids: int8 rounding is a step function. The
runtime computes the norms, attention and GEMMs in another fp32 summation
order than the reference, so now and then an activation lands on the other
side of a rounding boundary and its code differs by one; the logits then
differ by scale * w instead of by fp32 noise, and on austen's repetitive
continuations a near-tied argmax flips after some 20-30 tokens (measured:
per-token 3 of 4 prompts equal over all 48 tokens, the 4th for 29;
per-tensor, whose coarser scales make each flip larger, 17-30). The
perplexity bound is the logits-level check.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

GREEDY_PREFIX = 8


def run(cmd, check=True):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}:\n{p.stderr}")
    return p


def perplexity(stdout, label=None):
    """qrun's "perplexity: X" line, or the row `label` of qopt's quality table."""
    for line in stdout.splitlines():
        if label is None and line.startswith("perplexity:"):
            return float(line.split()[1])
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if label is not None and len(cells) >= 3 and cells[0] == label:
            return float(cells[2])
    sys.exit(f"FAIL: no perplexity ({label or 'qrun'}) in:\n{stdout}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qopt", required=True)
    ap.add_argument("--qrun", required=True)
    ap.add_argument("--shared", required=True)
    args = ap.parse_args()
    model = os.path.join(args.shared, "models", "austen-llama-7m")
    text = os.path.join(args.shared, "data", "text", "austen", "persuasion.txt")
    calib = os.path.join(args.shared, "data", "text", "austen", "emma.txt")
    if not os.path.isdir(model) or not os.path.isfile(text) or not os.path.isfile(calib):
        print(f"SKIP: {model} or the austen texts not found")
        sys.exit(77)
    ref = json.load(open(os.path.join(model, "reference", "reference.json")))
    tmp = tempfile.mkdtemp(prefix="qrun-w8a8-")
    summary = []
    try:
        for mode in ("per-token", "per-tensor"):
            flags = ["-wquant=w8a8", f"-act-quant={mode}", f"-calib={calib}",
                     "-calib-samples=8"]
            art = os.path.join(tmp, f"w8a8-{mode}.qopt")
            run([args.qopt, model, *flags, "-o", art])
            got = perplexity(run([args.qrun, art, "--perplexity", text]).stdout)
            want = perplexity(run([args.qopt, model, *flags, f"-eval-ppl={text}"]).stdout,
                              label=f"w8a8 smoothquant {mode}")
            if abs(got / want - 1) > 0.005:
                sys.exit(f"FAIL: W8A8 {mode} perplexity: qrun {got} vs qopt {want}")
            matched = []
            for i, p in enumerate(ref["prompts"]):
                n = len(p["greedy_ids"])
                out = run([args.qopt, model, *flags,
                           f"-token-ids={','.join(map(str, p['ids']))}",
                           f"-max-new-tokens={n}", "-print-ids"]).stdout
                want_ids = json.loads(next(l for l in out.splitlines() if l.startswith("[")))
                out = run([args.qrun, art, "--token-ids", ",".join(map(str, p["ids"])),
                           "-n", str(n), "--print-ids", "--ignore-eos"]).stdout
                got_ids = json.loads(out.strip().splitlines()[-1])
                k = GREEDY_PREFIX
                if got_ids[:k] != want_ids[:k]:
                    sys.exit(f"FAIL: W8A8 {mode} prompt {i}: qrun {got_ids[:k]} != qopt "
                             f"{want_ids[:k]}")
                same = next((j for j, (a, b) in enumerate(zip(got_ids, want_ids)) if a != b),
                            min(len(got_ids), len(want_ids)))
                matched.append(f"{same}/{n}")
            summary.append(f"{mode}: ppl qrun {got:.4f} qopt {want:.4f} "
                           f"({100 * (got / want - 1):+.3f}%), greedy equal for "
                           f"{', '.join(matched)} tokens")

        # fp8 activations: refused in one line that names the weight.
        src = os.path.join(tmp, "w8a8-per-token.qopt")
        fp8 = os.path.join(tmp, "w8a8-fp8.qopt")
        shutil.copytree(src, fp8)
        mpath = os.path.join(fp8, "manifest.json")
        manifest = json.load(open(mpath))
        layer0 = manifest["model"]["layers"][0]
        key = "qkv" if "qkv" in layer0 else "q"
        layer0[key]["act_quant"]["type"] = "fp8_e4m3"
        json.dump(manifest, open(mpath, "w"), sort_keys=True)
        p = run([args.qrun, fp8, "--token-ids", "1,2", "-n", "2"], check=False)
        err = p.stderr.strip()
        if (p.returncode == 0 or len(err.splitlines()) != 1 or
                "fp8 activations are not implemented" not in err or
                layer0[key]["weight"] not in err):
            sys.exit(f"FAIL: fp8 act_quant: rc {p.returncode}, stderr:\n{p.stderr}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("; ".join(summary) + "; fp8 activations refused")


if __name__ == "__main__":
    main()
