#!/usr/bin/env python3
"""What qopt reads from safetensors vs the reference `safetensors` library.

Independent reference: the PyPI `safetensors` package (Rust) reads the
files, `ml_dtypes`/numpy upcast bf16/fp16; qopt's side is
WeightStore::readF32 through hf-tensor-dump. Parts:
  synth   qopt-synth directories (bf16/fp16/fp32, odd shapes, qwen2 biases,
          shards): every tensor bit-exact; the reference library accepts the
          files qopt writes; weights are deterministic and distributed as
          documented; the tokenizer.json loads in `tokenizers` and round-trips.
  python  files written by the reference library (every dtype, odd shapes,
          NaN/inf/subnormals): qopt reads them bit-exact.
  shared  the shared real models (skips with 77 when ../shared is absent).
"""
import argparse
import hashlib
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy)
    from safetensors import safe_open
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer
except ImportError as e:  # pragma: no cover
    print(f"SKIP: missing Python package: {e}")
    sys.exit(77)

ARGS = None
FAILURES = []


def check(cond, msg):
    if not cond:
        FAILURES.append(msg)
        print(f"FAIL: {msg}")


def synth(out, *args):
    subprocess.run([ARGS.synth, "-o", out, *args], check=True, stderr=subprocess.DEVNULL)


def dump(mode, src, name, tmp):
    out = os.path.join(tmp, "t.npy")
    r = subprocess.run([ARGS.dump, mode, src, name, out], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    return np.load(out)


def ref_tensors(path):
    with safe_open(path, "np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def weight_files(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        import json
        with open(idx) as f:
            return sorted({os.path.join(d, v) for v in json.load(f)["weight_map"].values()})
    return [os.path.join(d, "model.safetensors")]


def same_bits(ours, ref):
    """Bit equality of float32 arrays (NaNs compared as NaN)."""
    if ours.shape != ref.shape:
        return False
    a, b = ours.astype(np.float32), ref.astype(np.float32)
    nan = np.isnan(a) | np.isnan(b)
    return bool(np.array_equal(np.isnan(a), np.isnan(b)) and
                np.array_equal(a[~nan].view(np.uint32), b[~nan].view(np.uint32)))


def compare_dir(d, tmp, names=None):
    n = 0
    for path in weight_files(d):
        tensors, meta = ref_tensors(path)
        check(meta == {"format": "pt"}, f"{path}: metadata {meta}")
        for name, ref in tensors.items():
            if names is not None and name not in names:
                continue
            ours = dump("-dir", d, name, tmp)
            check(same_bits(ours, ref), f"{path}: tensor {name} differs ({ref.dtype})")
            n += 1
    return n


def part_synth(tmp):
    odd = ["-hidden-size=40", "-num-heads=5", "-num-kv-heads=1", "-head-dim=12",
           "-intermediate-size=72", "-vocab-size=300", "-num-layers=2"]
    total = 0
    for extra in (["-dtype=bf16"], ["-dtype=fp16"], ["-dtype=fp32"],
                  ["-dtype=bf16", "-arch=qwen2", "-tie-word-embeddings"],
                  ["-dtype=fp16", "-shards=3", "-seed=5"]):
        d = tempfile.mkdtemp(dir=tmp)
        synth(d, *odd, *extra)
        total += compare_dir(d, tmp)
    print(f"synth: {total} tensors bit-exact vs safetensors")

    # Deterministic: same arguments, same bytes; another seed, other bytes.
    digests = []
    for seed in ("1", "1", "2"):
        d = tempfile.mkdtemp(dir=tmp)
        synth(d, "-seed=" + seed)
        with open(os.path.join(d, "model.safetensors"), "rb") as f:
            digests.append(hashlib.sha256(f.read()).hexdigest())
    check(digests[0] == digests[1], "qopt-synth is not deterministic")
    check(digests[0] != digests[2], "-seed has no effect")

    # Distribution: linear weights ~ N(0, 0.02), norms ~ 1 + N(0, 0.1).
    d = tempfile.mkdtemp(dir=tmp)
    synth(d, "-dtype=fp32", "-hidden-size=256", "-intermediate-size=512", "-num-heads=4",
          "-num-layers=1")
    t, _ = ref_tensors(os.path.join(d, "model.safetensors"))
    w = t["model.layers.0.mlp.up_proj.weight"]
    check(abs(w.mean()) < 1e-3 and abs(w.std() / 0.02 - 1) < 0.02,
          f"linear weights: mean {w.mean()}, std {w.std()}")
    check(np.abs(w).max() <= 0.02 * 2 * np.sqrt(3) * 1.0001, "linear weights out of range")
    # Roughly normal: kurtosis of the 4-uniform sum is 3 - 0.3.
    k = ((w - w.mean()) ** 4).mean() / w.var() ** 2
    check(abs(k - 2.7) < 0.05, f"kurtosis {k}")
    g = t["model.norm.weight"]
    check(abs(g.mean() - 1) < 0.03 and abs(g.std() - 0.1) < 0.03,
          f"norm weights: mean {g.mean()} std {g.std()}")

    # The tokenizer: loads, fits the model's vocabulary, round-trips.
    d = tempfile.mkdtemp(dir=tmp)
    synth(d, "-vocab-size=700")
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    check(258 <= tok.get_vocab_size() <= 700, f"tokenizer vocab {tok.get_vocab_size()}")
    check(tok.token_to_id("<s>") == 0 and tok.token_to_id("</s>") == 1, "special token ids")
    texts = ["The keeper climbed the stairs.", "  two  spaces\nand\ttabs\r\n",
             "Ünïcödé — ≠ 日本語 🙂", "numbers 1234567 and 'quotes' don't", ""]
    for s in texts:
        enc = tok.encode(s, add_special_tokens=False)
        check(tok.decode(enc.ids) == s, f"tokenizer round trip of {s!r}")
        check(all(0 <= i < 700 for i in enc.ids), "token id out of range")
    enc = tok.encode("The keeper climbed the stairs.", add_special_tokens=False)
    check(len(enc.ids) < len("The keeper climbed the stairs."), "no merges applied")
    check(tok.encode("hi").ids[0] == 0, "BOS not added by the post-processor")


def part_python(tmp):
    rng = np.random.default_rng(0)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -3e-39, 6e-8, 65504.0,
                         1e30], dtype=np.float64)
    tensors = {}
    for i, dt in enumerate([np.float32, np.float16, ml_dtypes.bfloat16, np.float64, np.int8,
                            np.uint8, np.int16, np.int32, np.int64, np.bool_]):
        for j, shape in enumerate([(), (0,), (1,), (7,), (3, 5), (2, 0, 3), (33, 1, 3)]):
            n = int(np.prod(shape))
            if dt == np.bool_:
                v = rng.integers(0, 2, n).astype(np.bool_)
            elif np.issubdtype(np.dtype(dt), np.integer):
                info = np.iinfo(dt)
                v = rng.integers(info.min, info.max, n, endpoint=True, dtype=np.int64).astype(dt)
            else:
                v = rng.standard_normal(n) * 10
                v[: min(n, len(specials))] = specials[: min(n, len(specials))]
                with np.errstate(over="ignore"):
                    v = v.astype(dt)
            tensors[f"t{i}_{j}"] = v.reshape(shape)
    path = os.path.join(tmp, "py.safetensors")
    save_file(tensors, path, metadata={"format": "np"})
    listing = subprocess.run([ARGS.dump, "-file", path, "-list"], capture_output=True,
                             text=True, check=True).stdout.split("\n")
    listed = {line.split()[0]: line.split()[1:] for line in listing if line}
    names = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
             np.dtype(ml_dtypes.bfloat16): "BF16", np.dtype(np.float64): "F64",
             np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8", np.dtype(np.int16): "I16",
             np.dtype(np.int32): "I32", np.dtype(np.int64): "I64", np.dtype(np.bool_): "BOOL"}
    for name, ref in tensors.items():
        check(listed.get(name) == [names[ref.dtype]] + [str(d) for d in ref.shape],
              f"header of {name}: {listed.get(name)}")
        ours = dump("-file", path, name, tmp)
        if ref.dtype in (np.float16, ml_dtypes.bfloat16, np.float32):
            ok = same_bits(ours, ref)
        else:
            ok = ours.dtype == ref.dtype and ours.shape == ref.shape and \
                np.array_equal(ours, ref, equal_nan=ref.dtype == np.float64)
        check(ok, f"python-written tensor {name} ({ref.dtype}, {ref.shape}) differs")
    print(f"python: {len(tensors)} tensors of 10 dtypes bit-exact")


def part_shared(tmp):
    models = os.path.join(ARGS.shared, "models")
    if not os.path.isdir(models):
        print(f"SKIP: shared models not found at {models}")
        sys.exit(77)
    n = compare_dir(os.path.join(models, "austen-llama-7m"), tmp)
    n += compare_dir(os.path.join(models, "stories260K"), tmp)
    print(f"shared: {n} tensors of austen-llama-7m and stories260K bit-exact")


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--synth", required=True)
    p.add_argument("--dump", required=True)
    p.add_argument("--shared", default="")
    p.add_argument("--part", choices=["synth", "python", "shared"], action="append")
    ARGS = p.parse_args()
    parts = ARGS.part or ["synth", "python", "shared"]
    with tempfile.TemporaryDirectory() as tmp:
        for part in parts:
            globals()["part_" + part](tmp)
    if FAILURES:
        print(f"{len(FAILURES)} failures")
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
