#!/usr/bin/env python3
"""qopt -target=sm90 artifacts and qrun --device cuda (docs/cuda.md, "Model
executor").

Without a GPU (every CI run), from ../shared austen-llama-7m:
  - the manifest of an sm90 artifact names the target (isa sm90, device cuda,
    compute capability [9, 0]) and GPU layout ids for the int4 linears;
  - a GPU-packed blob, decoded here from the documented layout (codes as
    nibbles, fp16 scales and zeros at 256-byte aligned offsets), gives back
    the model's safetensors weights within half a quantization step (RTN);
  - qrun refuses the artifact for the CPU in one line ("run it with qrun
    --device cuda"), and --device cuda says why it cannot run here;
  - the int4 artifact carries generated CUDA kernels for sm_90a (when nvcc
    is here), the bf16 one none;
  - the FP8 W8A8 artifact (-wquant=fp8 -method=smoothquant) passes the
    loader: qrun --device cuda stops only at the missing GPU.
With a GPU (exit 77 otherwise):
  - the unquantized (bf16) sm90 artifact reproduces reference.json's greedy
    ids;
  - the int4, W8A8 (per-token int8) and FP8 W8A8 (per-token E4M3, sm90)
    artifacts' qrun --perplexity is within 0.5% of qopt -eval-ppl;
  - decode steps replayed as CUDA graphs give the same greedy ids as the
    same steps run kernel by kernel (--no-cuda-graphs), at concurrency 8
    and 3 with requests finishing one after another, so batches hit a
    bucket exactly (8, 4, 2, 1) and need padding (7, 6, 5, 3), over
    contexts that cross block boundaries;
  - greedy ids sampled on the GPU (the default) equal those sampled on the
    host from copied-back logits (--host-sampling), in the same runs;
  - qrun runs the int4 artifact's generated GEMMs (kernels/sm_90a.so) for
    every packed weight, and QRT_NO_CODEGEN=1 (the generic kernels) gives
    the same greedy ids.

The GPU machine has no qopt (no LLVM/MLIR): --make-bundle DIR writes the
artifacts and the expected numbers here; --bundle DIR checks them there
(bench/gpu/prepare_e2e.sh and bench/gpu/e2e.sh).
"""
import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

SKIP = 77


def run(cmd, check=True, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {p.returncode}:\n{p.stderr}")
    return p


def ppl_of(stdout):
    for line in stdout.splitlines():
        if line.startswith("perplexity:"):
            return float(line.split()[1])
    for line in stdout.splitlines():  # qopt -wquant: the quantized row of its table
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] != "float" and cells[2][:1].isdigit():
            return float(cells[2])
    sys.exit(f"FAIL: no perplexity in:\n{stdout}")


def safetensors_f32(path, name):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        e = header[name]
        f.seek(8 + n + e["data_offsets"][0])
        raw = f.read(e["data_offsets"][1] - e["data_offsets"][0])
    if e["dtype"] == "BF16":
        return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(e["shape"])
    return np.frombuffer(raw, np.float32).reshape(e["shape"])


def decode_gpu_blob(blob, n, k, bits, group, symmetric):
    """docs/artifact.md: codes [N][K*bits/32] u32 (4-bit: columns 8j+0,2,4,6
    in nibbles 0..3, 8j+1,3,5,7 in nibbles 4..7; 8-bit: column 4j+i in byte
    i), scales [G][N] f16, zeros [G][N] f16, each at a 256-byte aligned
    offset."""
    align = lambda x: (x + 255) // 256 * 256
    g = k if group == 0 else group
    groups = (k + g - 1) // g
    codes_bytes = n * k * bits // 8
    words = np.frombuffer(blob[:codes_bytes], np.uint32).reshape(n, k * bits // 32)
    per = 32 // bits
    shifts = (np.arange(per, dtype=np.uint32) * bits)
    slots = ((words[:, :, None] >> shifts) & ((1 << bits) - 1))  # [n, words, slot]
    if bits == 4:  # slot p holds column 2p (p < 4) or 2(p-4)+1: back to column order
        slots = slots[:, :, [0, 4, 1, 5, 2, 6, 3, 7]]
    codes = slots.reshape(n, k).astype(np.float32)
    so = align(codes_bytes)
    scales = np.frombuffer(blob[so:so + groups * n * 2], np.float16).reshape(groups, n).T.astype(np.float32)
    if symmetric:
        zeros = np.full_like(scales, 2 ** (bits - 1))
        end = so + groups * n * 2
    else:
        zo = align(so + groups * n * 2)
        zeros = np.frombuffer(blob[zo:zo + groups * n * 2], np.float16).reshape(groups, n).T.astype(np.float32)
        end = zo + groups * n * 2
    col_group = np.arange(k) // g
    w = (codes - zeros[:, col_group]) * scales[:, col_group]
    return w, scales[:, col_group], end


def make_bundle(args, out):
    """Artifacts and the numbers the GPU run is checked against."""
    model = os.path.join(args.shared, "models", "austen-llama-7m")
    text = os.path.join(args.shared, "data", "text", "austen", "persuasion.txt")
    os.makedirs(out, exist_ok=True)
    bf16 = os.path.join(out, "austen-bf16.sm90.qopt")
    int4 = os.path.join(out, "austen-int4.sm90.qopt")
    run([args.qopt, model, "-target=sm90", "-o", bf16])
    q = ["-wquant=int4", "-method=rtn", "-group-size=128"]
    run([args.qopt, model, *q, "-target=sm90", "-o", int4])
    want = ppl_of(run([args.qopt, model, *q, f"-eval-ppl={text}"]).stdout)
    # W8A8 (SmoothQuant, per-token int8 activations): the GPU path of
    # fused quantizing producers + cuBLASLt.
    calib = os.path.join(args.shared, "data", "text", "austen", "emma.txt")
    w8 = ["-wquant=w8a8", "-act-quant=per-token", f"-calib={calib}", "-calib-samples=4"]
    run([args.qopt, model, *w8, "-target=sm90", "-o", os.path.join(out, "austen-w8a8.sm90.qopt")])
    want_w8 = ppl_of(run([args.qopt, model, *w8, f"-eval-ppl={text}"]).stdout)
    # FP8 W8A8 (per-token E4M3 activations, E4M3 weights): the same path
    # with cuBLASLt's FP8 GEMM (sm89+; the GPU machine is sm90).
    f8 = ["-wquant=fp8", "-method=smoothquant", f"-calib={calib}", "-calib-samples=4"]
    run([args.qopt, model, *f8, "-target=sm90", "-o", os.path.join(out, "austen-fp8.sm90.qopt")])
    want_f8 = ppl_of(run([args.qopt, model, *f8, f"-eval-ppl={text}"]).stdout)
    shutil.copy(text, os.path.join(out, "persuasion.txt"))
    ref = json.load(open(os.path.join(model, "reference", "reference.json")))
    json.dump({"prompts": [{"ids": p["ids"], "greedy_ids": p["greedy_ids"]} for p in ref["prompts"]],
               "int4_ppl_qopt": want, "w8a8_ppl_qopt": want_w8, "fp8_ppl_qopt": want_f8},
              open(os.path.join(out, "expected.json"), "w"))
    return model, bf16, int4


def check_artifacts(args, model, bf16, int4):
    """The GPU-free checks: manifest, packed bytes, refusals."""
    for art in (bf16, int4):
        t = json.load(open(os.path.join(art, "manifest.json")))["target"]
        if t.get("isa") != "sm90" or t.get("device") != "cuda" or t.get("compute_capability") != [9, 0]:
            sys.exit(f"FAIL: {art}: target {t}")
        # Generated kernels of a GPU artifact: CUDA only (nvcc, sm_90a), for
        # the packed weights; the bf16 artifact has none.
        kernels = json.load(open(os.path.join(art, "manifest.json"))).get("kernels")
        libs = sorted((kernels or {}).get("libraries", {}))
        if art == bf16 and kernels:
            sys.exit(f"FAIL: {art}: an unquantized artifact carries generated kernels {libs}")
        if art == int4:
            nvcc_here = shutil.which("nvcc") or os.path.exists("/usr/local/cuda/bin/nvcc")
            if (kernels or nvcc_here) and libs != ["sm_90a"]:
                sys.exit(f"FAIL: {art}: generated kernels {libs}, expected sm_90a (nvcc: {nvcc_here})")
            if kernels and not os.path.isfile(os.path.join(art, kernels["libraries"]["sm_90a"])):
                sys.exit(f"FAIL: {art}: the generated CUDA library is missing")
    man = json.load(open(os.path.join(int4, "manifest.json")))
    tensors = {t["name"]: t for t in man["tensors"]}
    layer = man["model"]["layers"][0]
    o = layer["o"]
    if o["layout"] != "cuda_i4_g128" or o["format"] != "int4":
        sys.exit(f"FAIL: layers[0].o layout {o['layout']} format {o['format']}")
    for key in ("qkv", "gate_up", "down"):
        if not layer.get(key, {}).get("layout", "").startswith("cuda_i4_g128"):
            sys.exit(f"FAIL: layers[0].{key} is not GPU-packed: {layer.get(key)}")
    t = tensors[o["weight"]]
    with open(os.path.join(int4, "weights.bin"), "rb") as f:
        f.seek(t["offset"])
        blob = f.read(t["nbytes"])
    n, k = o["out_features"], o["in_features"]
    deq, step, end = decode_gpu_blob(blob, n, k, 4, 128, o["symmetric"])
    if end != t["nbytes"]:
        sys.exit(f"FAIL: {o['weight']}: {t['nbytes']} bytes, the documented layout needs {end}")
    w = safetensors_f32(os.path.join(model, "model.safetensors"), o["weight"])
    err = np.abs(deq - w) - 0.5 * step
    if not (err <= 1e-6 + 1e-3 * step).all():
        i = np.unravel_index(np.argmax(err), err.shape)
        sys.exit(f"FAIL: {o['weight']}{list(i)}: dequantized {deq[i]} vs weight {w[i]}, "
                 f"step {step[i]}: more than half a step apart")
    p = run([args.qrun, bf16, "--token-ids", "1,2,3", "-n", "1", "--device", "cpu"], check=False)
    if p.returncode == 0 or "artifact targets sm90 (CUDA); run it with qrun --device cuda" not in p.stderr:
        sys.exit(f"FAIL: qrun --device cpu on an sm90 artifact: exit {p.returncode}, {p.stderr!r}")
    # A manifest whose compute capability disagrees with its isa, and a GPU
    # layout id in a CPU artifact, are refused naming the field.
    bad = os.path.join(os.path.dirname(int4), "bad.qopt")
    shutil.copytree(int4, bad)
    m = json.load(open(os.path.join(int4, "manifest.json")))
    m["target"]["compute_capability"] = [8, 0]
    json.dump(m, open(os.path.join(bad, "manifest.json"), "w"))
    p = run([args.qrun, bad, "--token-ids", "1", "-n", "1"], check=False)
    if p.returncode == 0 or "target.compute_capability does not match target 'sm90'" not in p.stderr:
        sys.exit(f"FAIL: mismatched compute capability: exit {p.returncode}, {p.stderr!r}")
    m = json.load(open(os.path.join(int4, "manifest.json")))
    m["target"] = {"isa": "x86-64-v3", "features": []}
    json.dump(m, open(os.path.join(bad, "manifest.json"), "w"))
    p = run([args.qrun, bad, "--token-ids", "1", "-n", "1"], check=False)
    if p.returncode == 0 or "cuda_i4_g128" not in p.stderr or p.stderr.count("\n") > 1:
        sys.exit(f"FAIL: GPU layout in a CPU artifact: exit {p.returncode}, {p.stderr!r}")
    shutil.rmtree(bad)
    # The FP8 W8A8 artifact passes the loader (which runs before the device
    # is looked for): without a GPU, qrun stops only at the missing device.
    fp8 = os.path.join(os.path.dirname(int4), "austen-fp8.sm90.qopt")
    p = run([args.qrun, fp8, "--token-ids", "1", "-n", "1", "--device", "cuda"], check=False)
    if p.returncode != 0 and "no CUDA device" not in p.stderr and "built without CUDA" not in p.stderr:
        sys.exit(f"FAIL: the FP8 W8A8 sm90 artifact: exit {p.returncode}, {p.stderr!r}")
    print("cpu: sm90 manifests, GPU-packed int4 blob = weights within half a step, refusals, "
          "FP8 W8A8 artifact loads")


def gpu_available(qrun, art):
    if shutil.which("nvidia-smi") is None:
        return False, "nvidia-smi is absent"
    p = run([qrun, art, "--token-ids", "1", "-n", "1", "--device", "cuda"], check=False)
    if p.returncode != 0 and ("no CUDA device" in p.stderr or "built without CUDA" in p.stderr):
        return False, p.stderr.strip()
    return True, ""


def check_gpu(qrun, bundle):
    bf16 = os.path.join(bundle, "austen-bf16.sm90.qopt")
    int4 = os.path.join(bundle, "austen-int4.sm90.qopt")
    ok, why = gpu_available(qrun, bf16)
    if not ok:
        print(f"SKIP: GPU checks: {why}")
        return SKIP
    exp = json.load(open(os.path.join(bundle, "expected.json")))
    for i, pr in enumerate(exp["prompts"]):
        out = run([qrun, bf16, "--device", "cuda", "--token-ids", ",".join(map(str, pr["ids"])),
                   "-n", str(len(pr["greedy_ids"])), "--ignore-eos", "--print-ids"]).stdout
        got = json.loads(out.strip().splitlines()[-1])
        same = next((j for j, (a, b) in enumerate(zip(got, pr["greedy_ids"])) if a != b), len(got))
        if got != pr["greedy_ids"]:
            sys.exit(f"FAIL: GPU bf16 prompt {i}: first {same} of {len(pr['greedy_ids'])} greedy ids "
                     f"match the reference; got {got}, want {pr['greedy_ids']}")
    ppl = ppl_of(run([qrun, int4, "--device", "cuda", "--perplexity",
                      os.path.join(bundle, "persuasion.txt")]).stdout)
    want = exp["int4_ppl_qopt"]
    if abs(ppl - want) > 0.005 * want:
        sys.exit(f"FAIL: GPU int4 perplexity {ppl:.4f}, qopt -eval-ppl {want:.4f} (> 0.5% apart)")
    print(f"gpu: {len(exp['prompts'])} greedy prompts match reference.json; "
          f"int4 perplexity {ppl:.4f} vs qopt {want:.4f}")
    w8 = os.path.join(bundle, "austen-w8a8.sm90.qopt")
    if "w8a8_ppl_qopt" in exp and os.path.isdir(w8):
        ppl = ppl_of(run([qrun, w8, "--device", "cuda", "--perplexity",
                          os.path.join(bundle, "persuasion.txt")]).stdout)
        want = exp["w8a8_ppl_qopt"]
        if abs(ppl - want) > 0.005 * want:
            sys.exit(f"FAIL: GPU W8A8 perplexity {ppl:.4f}, qopt -eval-ppl {want:.4f} "
                     f"(> 0.5% apart)")
        print(f"gpu: W8A8 (per-token int8) perplexity {ppl:.4f} vs qopt {want:.4f}")
    f8 = os.path.join(bundle, "austen-fp8.sm90.qopt")
    if "fp8_ppl_qopt" in exp and os.path.isdir(f8):
        ppl = ppl_of(run([qrun, f8, "--device", "cuda", "--perplexity",
                          os.path.join(bundle, "persuasion.txt")]).stdout)
        want = exp["fp8_ppl_qopt"]
        if abs(ppl - want) > 0.005 * want:
            sys.exit(f"FAIL: GPU FP8 W8A8 perplexity {ppl:.4f}, qopt -eval-ppl {want:.4f} "
                     f"(> 0.5% apart)")
        print(f"gpu: FP8 W8A8 (per-token E4M3) perplexity {ppl:.4f} vs qopt {want:.4f}")
    check_graphs(qrun, bf16, int4, exp)
    check_generated_kernels(qrun, int4, exp)
    return 0


def check_generated_kernels(qrun, int4, exp):
    """The int4 artifact's generated GEMMs (kernels/sm_90a.so) are used
    for every packed weight and give what the generic ones give."""
    man = json.load(open(os.path.join(int4, "manifest.json")))
    if not man.get("kernels"):
        print("gpu: the int4 artifact has no generated kernels (no nvcc where it was written)")
        return
    pr = exp["prompts"][0]
    cmd = [qrun, int4, "--device", "cuda", "--token-ids", ",".join(map(str, pr["ids"])),
           "-n", "24", "--ignore-eos", "--print-ids"]
    gen = run(cmd)
    m = re.search(r"kernels: CUDA on .*: generated for sm_90a, (\d+) of (\d+) packed weights",
                  gen.stderr)
    if not m or m.group(1) != m.group(2) or m.group(1) == "0":
        sys.exit(f"FAIL: qrun does not run the generated kernels for every packed weight:\n"
                 f"{gen.stderr}")
    generic = run(cmd, env=dict(os.environ, QRT_NO_CODEGEN="1"))
    if "generic (QRT_NO_CODEGEN is set)" not in generic.stderr:
        sys.exit(f"FAIL: QRT_NO_CODEGEN=1 did not turn the generated kernels off:\n{generic.stderr}")
    a = json.loads(gen.stdout.strip().splitlines()[-1])
    b = json.loads(generic.stdout.strip().splitlines()[-1])
    if a != b:
        sys.exit(f"FAIL: greedy ids with generated kernels {a} differ from the generic ones {b}")
    print(f"gpu: generated kernels on {m.group(1)} packed weights; greedy ids equal the generic "
          f"kernels'")


def check_graphs(qrun, bf16, int4, exp):
    """Greedy ids with and without CUDA graphs, many requests at once."""
    prompts = [pr["ids"] for pr in exp["prompts"]]
    fd, jobs = tempfile.mkstemp(prefix="qrun-graph-jobs-", suffix=".jsonl")
    with os.fdopen(fd, "w") as f:
        for i, n in enumerate([40, 33, 25, 18, 12, 9, 5, 3]):
            ids = prompts[i % len(prompts)][: 3 + 2 * i]
            f.write(json.dumps({"prompt_ids": ids, "max_tokens": n, "ignore_eos": True}) + "\n")
    for art in (bf16, int4):
        for conc in ("8", "3"):
            got = {}
            for flag in ("", "--no-cuda-graphs", "--host-sampling"):
                out = run([qrun, art, "--device", "cuda", "--prompts", jobs,
                           "--concurrency", conc] + ([flag] if flag else [])).stdout
                got[flag] = [json.loads(l)["token_ids"] for l in out.strip().splitlines()]
            for flag in ("--no-cuda-graphs", "--host-sampling"):
                if got[flag] != got[""]:
                    sys.exit(f"FAIL: {os.path.basename(art)} concurrency {conc}: greedy ids by "
                             f"default {got['']} differ from {flag} {got[flag]}")
            if [len(ids) for ids in got[""]] != [40, 33, 25, 18, 12, 9, 5, 3]:
                sys.exit(f"FAIL: {os.path.basename(art)} concurrency {conc}: wrong lengths "
                         f"{[len(ids) for ids in got['']]}")
    os.unlink(jobs)
    print("gpu: greedy ids with CUDA graphs = without = host sampling, bf16 and int4, "
          "concurrency 8 and 3")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qrun", required=True)
    ap.add_argument("--qopt")
    ap.add_argument("--shared")
    ap.add_argument("--make-bundle", help="write the artifacts + expected numbers here and stop")
    ap.add_argument("--bundle", help="check a bundle made by --make-bundle (GPU machine)")
    ap.add_argument("--part", choices=["cpu", "gpu"], default="cpu",
                    help="cpu: the GPU-free checks; gpu: the GPU ones (exit 77 without a GPU)")
    args = ap.parse_args()
    if args.bundle:
        return check_gpu(args.qrun, args.bundle)
    if not args.shared or not os.path.isdir(os.path.join(args.shared, "models", "austen-llama-7m")):
        print("SKIP: ../shared/models/austen-llama-7m is absent")
        return SKIP
    if args.make_bundle:
        model, bf16, int4 = make_bundle(args, args.make_bundle)
        check_artifacts(args, model, bf16, int4)
        return 0
    if args.part == "gpu" and shutil.which("nvidia-smi") is None:
        print("SKIP: GPU checks: nvidia-smi is absent")
        return SKIP
    tmp = tempfile.mkdtemp(prefix="qrun-cuda-")
    try:
        model, bf16, int4 = make_bundle(args, tmp)
        if args.part == "cpu":
            check_artifacts(args, model, bf16, int4)
            return 0
        return check_gpu(args.qrun, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
