#!/usr/bin/env python3
"""End-to-end checks of qrun (the runtime's CPU executor) against the
compiler's reference executor (qopt) and transformers' ground truth.

  --suite synth   a qopt-synth tiny model (no shared data needed): greedy ids
                  equal qopt's; a request gives the same tokens alone and
                  among 11 others (concurrency 12); a bad request fails
                  alone; a corrupt artifact is refused in one line.
  --suite austen  ../shared austen-llama-7m: the unquantized artifact
                  reproduces reference.json's greedy ids and persuasion
                  perplexity 72.22; int4 g128 and int8-KV artifacts'
                  perplexities are within 0.5% of qopt -eval-ppl's for the
                  same quantization; stories260K (tied, K=172) greedy ids
                  unquantized (reference.json) and int4 g32 (= qopt's).
                  Exit 77 when
                  the shared data is absent.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile


def run(cmd, check=True):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}:\n{p.stderr}")
    return p


def qopt_ids(args, model, ids, n):
    out = run([args.qopt, model, f"-token-ids={','.join(map(str, ids))}",
               f"-max-new-tokens={n}", "-print-ids"]).stdout
    return json.loads(next(l for l in out.splitlines() if l.startswith("[")))


def qrun_ids(args, art, ids, n, ignore_eos=True, extra=()):
    extra = (["--ignore-eos"] if ignore_eos else []) + list(extra)
    out = run([args.qrun, art, "--token-ids", ",".join(map(str, ids)), "-n", str(n),
               "--print-ids", *extra]).stdout
    return json.loads(out.strip().splitlines()[-1])


def make_artifact(args, model, out, *flags):
    run([args.qopt, model, *flags, "-o", out])
    if not os.path.isfile(os.path.join(out, "manifest.json")):
        sys.exit(f"FAIL: qopt -o {out} wrote no artifact")


def perplexity(stdout):
    for line in stdout.splitlines():
        if line.startswith("perplexity:"):
            return float(line.split()[1])
    # qopt -wquant prints a quality table instead: the quantized row.
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] != "float" and cells[2][:1].isdigit():
            return float(cells[2])
    sys.exit(f"FAIL: no perplexity line in:\n{stdout}")


def suite_synth(args, tmp):
    model = os.path.join(tmp, "tiny")
    run([args.synth, "-preset=tiny", "-o", model])
    art = os.path.join(tmp, "tiny.qopt")
    make_artifact(args, model, art)
    vocab = json.load(open(os.path.join(model, "config.json")))["vocab_size"]
    prompts = [[(7 * i + 3 * j + 1) % vocab for j in range(3 + 5 * i)] for i in range(16)]
    # Requests 0, 13, 14, 15 share a 37-token prefix (2 full blocks of 16);
    # the last three start after request 0 finished: prefix-cache hits.
    prefix = [(11 * j + 5) % vocab for j in range(37)]
    for i in (0, 13, 14, 15):
        prompts[i] = prefix + [(i + 2 * j) % vocab for j in range(1 + i % 4)]
    n = 12
    # Greedy ids equal the reference executor's (both stop at EOS).
    for p in prompts[:4]:
        want = qopt_ids(args, model, p, n)
        got = qrun_ids(args, art, p, n, ignore_eos=False, extra=["--fp32-act"])
        if got != want:
            sys.exit(f"FAIL: prompt {p}: qrun {got} != qopt {want}")
    # Alone vs among others, plus one bad request in the middle.
    # Odd requests sample (temperature, top-p, their own seed).
    def sampling(i):
        return {"temperature": 0.9, "top_p": 0.95, "seed": i} if i % 2 else {"temperature": 0}
    def flags(i):
        return ["--temperature", "0.9", "--top-p", "0.95", "--seed", str(i)] if i % 2 else []
    alone = [qrun_ids(args, art, p, n, extra=flags(i)) for i, p in enumerate(prompts)]
    jl = os.path.join(tmp, "prompts.jsonl")
    with open(jl, "w") as f:
        for i, p in enumerate(prompts):
            f.write(json.dumps({"prompt_ids": p, "max_tokens": n, "ignore_eos": True,
                                **sampling(i)}) + "\n")
            if i == 5:
                f.write(json.dumps({"prompt_ids": [vocab + 5], "max_tokens": 3}) + "\n")
                f.write("{not json\n")
    p = run([args.qrun, art, "--prompts", jl, "--concurrency", "12"])
    # (the alone runs are separate processes: no cache, no batching)
    rows = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    if len(rows) != len(prompts) + 2:
        sys.exit(f"FAIL: expected {len(prompts) + 2} results, got {len(rows)}")
    bad = [r for r in rows if r.get("error")]
    good = [r for r in rows if not r.get("error")]
    if len(bad) != 2 or len(good) != len(prompts):
        sys.exit(f"FAIL: expected 2 failed requests, got {bad}")
    for i, (r, want) in enumerate(zip(good, alone)):
        if r["token_ids"] != want:
            sys.exit(f"FAIL: request {i} among others {r['token_ids']} != alone {want}")
    if not any(r.get("cached_tokens", 0) >= 32 for r in good):
        sys.exit(f"FAIL: no request hit the prefix cache: {[r.get('cached_tokens') for r in good]}")
    for key in ("time to first token", "inter-token latency", "tokens/s"):
        if key not in p.stderr:
            sys.exit(f"FAIL: --prompts summary lacks '{key}':\n{p.stderr}")
    # A corrupt artifact: one line, non-zero exit.
    broken = os.path.join(tmp, "broken.qopt")
    shutil.copytree(art, broken)
    with open(os.path.join(broken, "manifest.json"), "w") as f:
        f.write("{ this is not a manifest")
    p = run([args.qrun, broken, "--token-ids", "1,2", "-n", "2"], check=False)
    if p.returncode == 0 or len(p.stderr.strip().splitlines()) != 1 or "error" not in p.stderr:
        sys.exit(f"FAIL: corrupt artifact: rc {p.returncode}, stderr:\n{p.stderr}")
    print("synth: greedy = qopt, alone = among 12 (with prefix hits), bad requests fail alone, corrupt refused")


def suite_austen(args, tmp):
    model = os.path.join(args.shared, "models", "austen-llama-7m")
    text = os.path.join(args.shared, "data", "text", "austen", "persuasion.txt")
    if not os.path.isdir(model):
        print(f"SKIP: {model} not found")
        sys.exit(77)
    ref = json.load(open(os.path.join(model, "reference", "reference.json")))
    art = os.path.join(tmp, "austen.qopt")
    make_artifact(args, model, art)
    for i, p in enumerate(ref["prompts"]):
        got = qrun_ids(args, art, p["ids"], len(p["greedy_ids"]))
        if got != p["greedy_ids"]:
            sys.exit(f"FAIL: austen prompt {i}: {got} != reference {p['greedy_ids']}")
    # A 700-token prompt is prefilled in two chunks (step budget 512).
    long_ids = [(37 * j + 11) % 4096 for j in range(700)]
    got = qrun_ids(args, art, long_ids, 16)
    want = qopt_ids(args, model, long_ids, 16)
    if got[:len(want)] != want:
        sys.exit(f"FAIL: 700-token prompt: qrun {got} != qopt {want}")
    ppl = perplexity(run([args.qrun, art, "--perplexity", text]).stdout)
    want = ref["ppl"]["austen_persuasion"]["fp32"]
    if abs(ppl / want - 1) > 0.005:
        sys.exit(f"FAIL: unquantized perplexity {ppl} vs reference {want}")
    art4 = os.path.join(tmp, "austen-int4.qopt")
    make_artifact(args, model, art4, "-wquant=int4", "-group-size=128")
    ppl4 = perplexity(run([args.qrun, art4, "--perplexity", text]).stdout)
    want4 = perplexity(run([args.qopt, model, "-wquant=int4", "-group-size=128",
                            f"-eval-ppl={text}"]).stdout)
    if abs(ppl4 / want4 - 1) > 0.005:
        sys.exit(f"FAIL: int4 g128 perplexity: qrun {ppl4} vs qopt {want4}")
    # int8 KV cache with the calibrated static scales (10 windows: quicker).
    calib = os.path.join(args.shared, "data", "text", "austen", "emma.txt")
    kvflags = ["-kv-cache=int8", f"-calib={calib}", "-calib-samples=16"]
    art8 = os.path.join(tmp, "austen-kv8.qopt")
    make_artifact(args, model, art8, *kvflags)
    ppl8 = perplexity(run([args.qrun, art8, "--perplexity", text, "--chunks", "10"]).stdout)
    want8 = perplexity(run([args.qopt, model, *kvflags, f"-eval-ppl={text}",
                            "-eval-chunks=10"]).stdout)
    if abs(ppl8 / want8 - 1) > 0.005:
        sys.exit(f"FAIL: int8 KV perplexity: qrun {ppl8} vs qopt {want8}")
    # stories260K: tied embeddings, intermediate 172 (not a multiple of 32).
    s260 = os.path.join(args.shared, "models", "stories260K")
    sref = json.load(open(os.path.join(s260, "reference", "reference.json")))
    sart = os.path.join(tmp, "s260.qopt")
    make_artifact(args, s260, sart)
    got = qrun_ids(args, sart, [int(sref["bos_id"])], len(sref["greedy_ids"]))
    if got != sref["greedy_ids"]:
        sys.exit(f"FAIL: stories260K greedy {got} != reference {sref['greedy_ids']}")
    sart4 = os.path.join(tmp, "s260-int4.qopt")
    make_artifact(args, s260, sart4, "-wquant=int4", "-group-size=32")
    out = run([args.qopt, s260, "-wquant=int4", "-group-size=32", "-token-ids=1",
               "-max-new-tokens=40", "-print-ids"]).stdout
    swant = json.loads(next(l for l in out.splitlines() if l.startswith("[")))
    got = qrun_ids(args, sart4, [1], 40, ignore_eos=False, extra=["--fp32-act"])
    if got != swant:
        sys.exit(f"FAIL: stories260K int4 g32: qrun {got} != qopt {swant}")
    print(f"austen: 4 greedy prompts match; ppl {ppl:.4f} (ref {want}); "
          f"int4 g128 ppl {ppl4:.4f} (qopt {want4:.4f}); "
          f"int8 KV ppl {ppl8:.4f} (qopt {want8:.4f}); chunked 700-token prompt and "
          f"stories260K greedy match")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qopt", required=True)
    ap.add_argument("--qrun", required=True)
    ap.add_argument("--synth", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--suite", choices=["synth", "austen"], required=True)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="qrun-test-")
    try:
        (suite_synth if args.suite == "synth" else suite_austen)(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
