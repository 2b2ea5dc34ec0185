#!/usr/bin/env python3
"""GPTQ against round-to-nearest on a model and text the issue does not
name: karpathy's stories260K (hidden 64, intermediate 172: down_proj has
K = 172, which no group size of 32/64/128 divides), calibrated on the
TinyStories training part and evaluated on the held-out tail, through the
qopt driver's quality table (-eval-ppl), so the numbers come from executing
the stored quantized weights.

The model ships a llama2.c vocabulary, not a tokenizer.json: one is built
here with the `tokenizers` package (SentencePiece-style BPE with byte
fallback; merges ordered by the merged piece's score, as HF's converter
does).

Exit status: 0 pass, 1 fail, 77 skipped (shared data or `tokenizers`
missing).
"""
import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

SKIP = 77
SP_SPACE = "\u2581"


def build_tokenizer(shared, out_path):
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors
    data = json.loads((shared / "models/stories260K/llama2c_vocab.json").read_text("utf-8"))
    special = {0: "<unk>", 1: "<s>", 2: "</s>"}
    vocab, score = {}, {}
    for i, (piece, s) in enumerate(data["pieces"]):
        p = special.get(i, piece.replace(" ", SP_SPACE))
        if p not in vocab:
            vocab[p], score[p] = i, s

    def is_byte(p):
        return len(p) == 6 and p.startswith("<0x") and p.endswith(">")

    pieces = {p for p in vocab if p not in special.values() and not is_byte(p)}
    merges = sorted((-score[p], vocab[p], vocab[p[:k]], vocab[p[k:]], p[:k], p[k:])
                    for p in pieces for k in range(1, len(p))
                    if p[:k] in pieces and p[k:] in pieces)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[(m[4], m[5]) for m in merges],
                               unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend(SP_SPACE),
                                           normalizers.Replace(" ", SP_SPACE)])
    tok.decoder = decoders.Sequence([decoders.Replace(SP_SPACE, " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(content=" ", left=1,
                                                                     right=0)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 1)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in special.values()])
    tok.save(str(out_path))


def quality(qopt, model, tokenizer, args):
    """The quantized row of the driver's quality table: (KLD, top-1 %)."""
    cmd = [qopt, str(model), f"-tokenizer={tokenizer}"] + args
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    rows = [line for line in r.stdout.splitlines()
            if line.startswith("|") and "float" not in line and "---" not in line
            and "weights" not in line]
    if len(rows) != 1:
        sys.exit(f"FAIL: no single quantized row in the table:\n{r.stdout}")
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    return float(cells[3]), float(cells[4].rstrip("%"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qopt", required=True)
    ap.add_argument("--shared", required=True)
    a = ap.parse_args()
    shared = Path(a.shared)
    model = shared / "models/stories260K"
    train = shared / "data/text/tinystories_val.txt"
    held_out = shared / "data/text/tinystories_eval_split.txt"
    if not (model / "model.safetensors").exists() or not held_out.exists():
        print(f"SKIP: {model} or the TinyStories texts are absent")
        return SKIP
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        print("SKIP: the tokenizers package is missing")
        return SKIP
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tokenizer = tmp / "tokenizer.json"
        build_tokenizer(shared, tokenizer)
        # The training part of the TinyStories sample (its first 80%).
        calib = tmp / "calib.txt"
        calib.write_text(train.read_text("utf-8")[:634613], "utf-8")
        common = [f"-eval-ppl={held_out}", "-eval-ctx=256", "-eval-chunks=40"]
        failed = False
        for wq, group in (("int4", 32), ("int4", 128), ("int3", 64)):
            fmt = [f"-wquant={wq}", f"-group-size={group}"]
            k_rtn, t_rtn = quality(a.qopt, model, tokenizer, fmt + common)
            gptq = fmt + common + ["-method=gptq", f"-calib={calib}", "-calib-samples=64",
                                   "-calib-seqlen=256"]
            k_gptq, t_gptq = quality(a.qopt, model, tokenizer, gptq)
            k_act, t_act = quality(a.qopt, model, tokenizer, gptq + ["-act-order"])
            print(f"{wq} g{group}: KLD rtn {k_rtn:.5f} (top-1 {t_rtn}%), gptq {k_gptq:.5f} "
                  f"({t_gptq}%), gptq act-order {k_act:.5f} ({t_act}%)")
            # The margin for the named model, asked of this one too.
            if not (k_gptq < 0.7 * k_rtn and k_act < 0.7 * k_rtn):
                print(f"FAIL: {wq} g{group}: GPTQ is not 30% below RTN")
                failed = True
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
