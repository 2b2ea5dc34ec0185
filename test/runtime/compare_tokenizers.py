#!/usr/bin/env python3
"""Compares qopt's C++ tokenizer (via the qopt-tokenize CLI) with HF tokenizers.

For each tokenizer below, every text file under <shared>/data/text and a set
of seeded random Unicode strings are encoded by both implementations, and the
ids must be identical. Decoding is compared too (HF ids decoded by both, with
and without skip_special_tokens, plus random id sequences), the C++ streaming
decoder must reproduce the C++ decode, and decode(encode(x)) == x must hold in
C++ wherever it holds in HF.

Tokenizers:
  austen-bytelevel   <shared>/models/austen-llama-7m/tokenizer.json as is
  austen-trunc-pad   the same with a RobertaProcessing post-processor,
                     truncation (left, 7) and padding (12, rounded up to a
                     multiple of 5)
  stories-sp         SentencePiece-style byte-fallback BPE built from
                     stories260K/llama2c_vocab.json (merges derived from the
                     piece scores), Llama-2 normalizer/decoder, <s> template,
                     normalized and lstrip/rstrip added tokens
  stories-metaspace  the same model with a Metaspace pre-tokenizer
                     (prepend_scheme "first", split false), as newer
                     Llama/Mistral conversions do
  stories-ms-always  Metaspace split=true, prepend "always", Metaspace decoder
  llama3-style       BPE trained here with Llama-3's exact Split regex,
                     ByteLevel without regex, ignore_merges, special and
                     non-special added tokens (lstrip/rstrip/single_word/
                     normalized), ByteLevel+Template post-processor
  gpt2-style         ByteLevel pre-tokenizer (GPT-2 regex, add_prefix_space)
  qwen2-style        NFC normalizer + Qwen2's Split regex + ByteLevel
  misc-pretok        NFKC+Lowercase+Strip normalizers, WhitespaceSplit,
                     Punctuation, Digits, unk with fuse_unk, no decoder
  split-behaviors    every Split behavior (and invert), regex Replace, NFD,
                     Strip, contiguous Digits
  whitespace-pretok  Whitespace pre-tokenizer, NFKD, ByteLevel prefix space

Exit status: 0 all identical, 1 a difference (details printed), 77 skipped
(shared data or the `tokenizers` package missing).
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

SKIP = 77

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|"
                r"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|"
               r"\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SP_SPACE = "\u2581"


def repo_root():
    return Path(__file__).resolve().parent.parent.parent


# --------------------------------------------------------------------------
# Building the test tokenizers (with HF's own API, saved as tokenizer.json)
# --------------------------------------------------------------------------

def build_stories(shared, out_dir, variant):
    from tokenizers import (AddedToken, Tokenizer, decoders, models,
                            normalizers, pre_tokenizers, processors)
    data = json.loads((shared / "models/stories260K/llama2c_vocab.json")
                      .read_text(encoding="utf-8"))
    pieces = data["pieces"]
    renamed = {0: "<unk>", 1: "<s>", 2: "</s>"}  # llama2.c spells "\n<s>\n"
    vocab, score = {}, {}
    for i, (piece, s) in enumerate(pieces):
        p = renamed.get(i, piece.replace(" ", SP_SPACE))
        if p in vocab:
            continue
        vocab[p] = i
        score[p] = s

    def is_byte(p):
        return len(p) == 6 and p.startswith("<0x") and p.endswith(">")
    mergeable = {p for p in vocab if p not in renamed.values() and not is_byte(p)}
    # As HF's SentencePiece extractor: every split of a piece into two pieces
    # is a merge, ordered by the merged piece's score (then ids).
    merges = []
    for p in mergeable:
        for k in range(1, len(p)):
            left, right = p[:k], p[k:]
            if left in mergeable and right in mergeable:
                merges.append((-score[p], vocab[p], vocab[left], vocab[right],
                               left, right))
    merges.sort()
    bpe = models.BPE(vocab=vocab, merges=[(m[4], m[5]) for m in merges],
                     unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    tok = Tokenizer(bpe)
    llama_decoder = decoders.Sequence([
        decoders.Replace(SP_SPACE, " "), decoders.ByteFallback(),
        decoders.Fuse(), decoders.Strip(content=" ", left=1, right=0)])
    if variant == "sp":
        tok.normalizer = normalizers.Sequence([
            normalizers.Prepend(SP_SPACE), normalizers.Replace(" ", SP_SPACE)])
        tok.decoder = llama_decoder
    elif variant == "metaspace":
        tok.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement=SP_SPACE, prepend_scheme="first", split=False)
        tok.decoder = llama_decoder
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement=SP_SPACE, prepend_scheme="always", split=True)
        tok.decoder = decoders.Metaspace(replacement=SP_SPACE,
                                         prepend_scheme="always", split=True)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ("<unk>", "<s>", "</s>")])
    # A normalized added token (HF normalizes its pattern too, so with the
    # Prepend normalizer it becomes "▁Mr.▁Darcy") and a stripping one.
    tok.add_tokens([AddedToken("Mr. Darcy", normalized=True),
                    AddedToken("<tool>", normalized=False, lstrip=True,
                               rstrip=True)])
    # Special but normalized: decodes as "▁<sp▁x>", which skip_special_tokens
    # then no longer recognizes (HF compares token texts).
    tok.add_special_tokens([AddedToken("<sp x>", special=True,
                                       normalized=True)])
    path = out_dir / f"stories-{variant}.json"
    tok.save(str(path))
    return path


def train_bytelevel(shared, out_dir, name, corpus, pre_tokenizer, normalizer,
                    specials, ignore_merges, template, added=()):
    from tokenizers import (AddedToken, Tokenizer, decoders, models,
                            pre_tokenizers, processors, trainers)
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=3000, min_frequency=2, show_progress=False,
        special_tokens=[AddedToken(s, special=True, normalized=False)
                        for s in specials],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([str(shared / "data/text" / corpus)], trainer)
    if template:
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{template} $A",
                special_tokens=[(template, tok.token_to_id(template))])])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=True)
    if added:
        tok.add_tokens(list(added))
    spec = json.loads(tok.to_str())
    spec["model"]["ignore_merges"] = ignore_merges
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return path


def build_misc(shared, out_dir):
    from tokenizers import (AddedToken, Tokenizer, models, normalizers,
                            pre_tokenizers, trainers)
    tok = Tokenizer(models.BPE(unk_token="[UNK]", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([
        normalizers.NFKC(), normalizers.Lowercase(), normalizers.Strip()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(),
        pre_tokenizers.Digits(individual_digits=True)])
    trainer = trainers.BpeTrainer(
        vocab_size=2000, min_frequency=2, show_progress=False,
        special_tokens=["[UNK]", "[CLS]"], end_of_word_suffix="</w>")
    tok.train([str(shared / "data/text/austen/sensesensibility.txt")], trainer)
    tok.add_tokens([AddedToken("elinor", single_word=True)])
    path = out_dir / "misc-pretok.json"
    tok.save(str(path))
    return path


def build_trunc_pad(shared, out_dir):
    from tokenizers import Tokenizer, processors
    tok = Tokenizer.from_file(
        str(shared / "models/austen-llama-7m/tokenizer.json"))
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    tok.enable_truncation(max_length=7, direction="left")
    tok.enable_padding(length=12, pad_id=1, pad_token="</s>",
                       direction="right", pad_to_multiple_of=5)
    path = out_dir / "austen-trunc-pad.json"
    tok.save(str(path))
    return path


def build_all(shared, out_dir, only):
    from tokenizers import AddedToken, Regex, normalizers, pre_tokenizers
    builders = {
        "austen-bytelevel":
            lambda: shared / "models/austen-llama-7m/tokenizer.json",
        "austen-trunc-pad": lambda: build_trunc_pad(shared, out_dir),
        "stories-sp": lambda: build_stories(shared, out_dir, "sp"),
        "stories-metaspace": lambda: build_stories(shared, out_dir,
                                                   "metaspace"),
        "stories-ms-always": lambda: build_stories(shared, out_dir, "always"),
        "llama3-style": lambda: train_bytelevel(
            shared, out_dir, "llama3-style", "austen/prideprejudice.txt",
            pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated",
                                     invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False,
                                         use_regex=False)]),
            None, ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"],
            True, "<|begin_of_text|>",
            added=[AddedToken("<|tool|>", lstrip=True, normalized=False),
                   AddedToken("[MASK]", single_word=True, rstrip=True,
                              normalized=False),
                   AddedToken("Mr. Darcy", normalized=True)]),
        "gpt2-style": lambda: train_bytelevel(
            shared, out_dir, "gpt2-style", "tinystories_val.txt",
            pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
            None, ["<|endoftext|>"], False, None),
        "qwen2-style": lambda: train_bytelevel(
            shared, out_dir, "qwen2-style", "wikitext2_test.raw",
            pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated",
                                     invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False,
                                         use_regex=False)]),
            normalizers.NFC(), ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            False, None),
        "misc-pretok": lambda: build_misc(shared, out_dir),
        "split-behaviors": lambda: train_bytelevel(
            shared, out_dir, "split-behaviors", "austen/persuasion.txt",
            pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(r"\s+"), "merged_with_previous"),
                pre_tokenizers.Split("e", "contiguous"),
                pre_tokenizers.Split(Regex(r"[,;]"), "removed"),
                pre_tokenizers.Split(Regex(r"\p{Lu}"), "merged_with_next"),
                pre_tokenizers.Split(Regex(r"[aeiou]{2}"), "isolated",
                                     invert=True),
                pre_tokenizers.Digits(individual_digits=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False,
                                         use_regex=False)]),
            normalizers.Sequence([
                normalizers.Replace(Regex(r"\s*\n"), "\n"),
                normalizers.NFD(),
                normalizers.Strip(left=False, right=True)]),
            ["<|endoftext|>"], False, None),
        "whitespace-pretok": lambda: train_bytelevel(
            shared, out_dir, "whitespace-pretok", "tinystories_val.txt",
            pre_tokenizers.Sequence([
                pre_tokenizers.Whitespace(),
                pre_tokenizers.ByteLevel(add_prefix_space=True,
                                         use_regex=False)]),
            normalizers.NFKD(), ["<|endoftext|>"], False, None),
    }
    return {name: build() for name, build in builders.items()
            if not only or name in only}


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------

def assigned(cp):
    """Scalar values Unicode 14 (Python's and PCRE2's tables) assigns."""
    if 0xD800 <= cp <= 0xDFFF:
        return False
    return unicodedata.category(chr(cp)) != "Cn"


def random_strings(n, seed, specials):
    rng = random.Random(seed)
    spaces = [" ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", " \n", "\u00a0",
              "\u3000", "\u0085", "\u2028", "\u200b", "\x0b", "\x0c", "\r"]
    contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL",
                    "'Re", "'\u017f", "'x", "''"]
    ranges = [(0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x600, 0x6FF),
              (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF),
              (0xAC00, 0xD7A3), (0x3040, 0x30FF), (0x4E00, 0x9FFF),
              (0x1F300, 0x1FAFF), (0x300, 0x36F), (0xFF00, 0xFFEF),
              (0xFB00, 0xFB4F), (0x2150, 0x218F), (0x2070, 0x209F),
              (0x1D400, 0x1D7FF), (0x2000, 0x206F), (0x0, 0x1F)]

    def uni():
        while True:
            if rng.random() < 0.25:
                cp = rng.randint(0, 0x10FFFF)
            else:
                lo, hi = rng.choice(ranges)
                cp = rng.randint(lo, hi)
            if assigned(cp):
                return chr(cp)

    def piece():
        r = rng.random()
        if r < 0.25:
            letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
            return "".join(rng.choice(letters) for _ in range(rng.randint(1, 9)))
        if r < 0.35:
            return rng.choice(spaces)
        if r < 0.42:
            return rng.choice(contractions)
        if r < 0.50:
            return "".join(rng.choice("0123456789")
                           for _ in range(rng.randint(1, 8)))
        if r < 0.58:
            return "".join(rng.choice("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
                           for _ in range(rng.randint(1, 4)))
        if r < 0.80:
            return "".join(uni() for _ in range(rng.randint(1, 4)))
        if r < 0.88:
            return rng.choice(specials)
        if r < 0.92:
            # Decomposed / composable sequences exercise NFC and NFKC.
            return rng.choice(["e\u0301", "A\u030a", "\u1100\u1161\u11a8",
                               "\ufb01", "\u2163", "\u00bd", "K\u0327"])
        if r < 0.96:
            return rng.choice([SP_SPACE, SP_SPACE * 2, "<0x41>", "<0xZZ>",
                               "<unk>", "\ufffd"])
        return " " * rng.randint(2, 12)

    out = ["", " ", "  ", "\n", "a", " a", "a ", "Hello world",
           "I'M HERE, you'LL see", "x" * 3000, " " * 50 + "x",
           "\u00e9t\u00e9 \u65e5\u672c\u8a9e \U0001F600!"]
    while len(out) < n:
        k = rng.randint(1, 25)
        out.append("".join(piece() for _ in range(k)))
    return out


def all_codepoint_strings(chunk=400):
    """Every code point assigned in Unicode 14, each in a few contexts
    (inside a word, doubled, after a digit, after a space), in chunks: an
    exhaustive check of the Unicode tables behind regex classes,
    normalization, lowercasing and punctuation."""
    cps = [chr(c) for c in range(0x110000) if assigned(c)]
    out = []
    for i in range(0, len(cps), chunk):
        out.append("".join(f"a{c}b {c}{c} 1{c}2 '{c}\n"
                           for c in cps[i:i + chunk]))
    return out


def random_id_lists(n, seed, vocab_size):
    rng = random.Random(seed)
    return [[rng.randrange(0, vocab_size + 5) for _ in range(rng.randint(0, 24))]
            for _ in range(n)]


# --------------------------------------------------------------------------
# Running the C++ side
# --------------------------------------------------------------------------

class Cpp:
    def __init__(self, binary, tmp):
        self.binary = binary
        self.tmp = tmp

    def run(self, *args, stdin_path=None):
        res = subprocess.run([self.binary, *map(str, args)],
                             capture_output=True, timeout=600)
        if res.returncode != 0:
            raise RuntimeError(f"qopt-tokenize {' '.join(map(str, args))} "
                               f"failed ({res.returncode}): "
                               f"{res.stderr.decode(errors='replace')}")
        return res

    def encode_file(self, tok, path, add_special=False):
        args = ["encode", tok, path, "--time"]
        if add_special:
            args.append("--add-special")
        res = self.run(*args)
        ids = [int(x) for x in res.stdout.split()]
        return ids, res.stderr.decode().strip()

    def decode_ids(self, tok, ids, skip=False):
        p = self.tmp / "ids.txt"
        p.write_text(" ".join(map(str, ids)))
        args = ["decode", tok, p] + (["--skip-special"] if skip else [])
        return self.run(*args).stdout.decode("utf-8")

    def encode_json(self, tok, strings, add_special=False):
        p = self.tmp / "strings.json"
        p.write_text(json.dumps(strings), encoding="utf-8")
        args = ["encode-json", tok, p] + (["--add-special"] if add_special
                                          else [])
        return json.loads(self.run(*args).stdout)

    def decode_json(self, tok, id_lists, skip=False):
        p = self.tmp / "idlists.json"
        p.write_text(json.dumps(id_lists))
        args = ["decode-json", tok, p] + (["--skip-special"] if skip else [])
        return json.loads(self.run(*args).stdout)


# --------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------

class Failures:
    def __init__(self, limit=5):
        self.count = 0
        self.limit = limit

    def report(self, msg):
        self.count += 1
        if self.count <= self.limit:
            print("  MISMATCH " + msg)
        elif self.count == self.limit + 1:
            print("  (further mismatches not shown)")


def describe_id_diff(hf_tok, text, want, got):
    i = next((k for k in range(min(len(want), len(got)))
              if want[k] != got[k]), min(len(want), len(got)))
    tokens = lambda ids: [hf_tok.id_to_token(x) for x in ids]
    enc = hf_tok.encode(text, add_special_tokens=False)
    ctx = ""
    if i < len(enc.offsets):
        a, b = enc.offsets[max(0, i - 2)][0], enc.offsets[min(len(enc.offsets) - 1, i + 2)][1]
        ctx = f" text around it: {text[a:b]!r}"
    return (f"first difference at id #{i} (hf {len(want)} ids, c++ "
            f"{len(got)}): hf {tokens(want[max(0, i - 3):i + 4])} vs c++ "
            f"{tokens(got[max(0, i - 3):i + 4])}{ctx}")


def compare_tokenizer(name, path, cpp, texts, n_random, seed, fails,
                      all_cps):
    from tokenizers import Tokenizer
    hf = Tokenizer.from_file(str(path))
    vocab = hf.get_vocab_size(with_added_tokens=True)
    specials = [t.content for t in hf.get_added_tokens_decoder().values()]
    stats = {"files": 0, "file_tokens": 0, "strings": 0, "roundtrip": 0,
             "decodes": 0, "codepoint_chunks": 0}

    # Whole files, as bytes exactly (CRLF kept).
    for tpath in texts:
        text = tpath.read_bytes().decode("utf-8")
        t0 = time.perf_counter()
        want = hf.encode(text, add_special_tokens=False).ids
        hf_ms = (time.perf_counter() - t0) * 1000
        got, timing = cpp.encode_file(path, tpath)
        stats["files"] += 1
        stats["file_tokens"] += len(want)
        if got != want:
            fails.report(f"{name} {tpath.name}: " +
                         describe_id_diff(hf, text, want, got))
            continue
        print(f"  {tpath.name}: {len(want)} ids identical "
              f"(c++ {timing.split(' in ')[-1]}, hf {hf_ms:.0f} ms)")
        if cpp.decode_ids(path, got) != hf.decode(want,
                                                  skip_special_tokens=False):
            fails.report(f"{name} {tpath.name}: decode differs")
        stats["decodes"] += 1

    # Random strings, with and without the template's special tokens.
    strings = random_strings(n_random, seed, specials + ["<s>", "</s>"])
    for add in (False, True):
        got_all = cpp.encode_json(path, strings, add_special=add)
        for s, got in zip(strings, got_all):
            want = hf.encode(s, add_special_tokens=add).ids
            stats["strings"] += 1
            if got != want:
                fails.report(f"{name} string {s!r} add_special={add}: " +
                             describe_id_diff(hf, s, want, got))

    # Every assigned code point.
    if all_cps:
        got_all = cpp.encode_json(path, all_cps)
        for s, got in zip(all_cps, got_all):
            want = hf.encode(s, add_special_tokens=False).ids
            stats["codepoint_chunks"] += 1
            if got != want:
                fails.report(f"{name} code point chunk: " +
                             describe_id_diff(hf, s, want, got))

    # Decoding: HF ids of the random strings, and random id sequences.
    id_lists = [hf.encode(s, add_special_tokens=True).ids for s in strings]
    id_lists += random_id_lists(n_random // 2, seed + 1, vocab)
    for skip in (False, True):
        res = cpp.decode_json(path, id_lists, skip=skip)
        for ids, got, streamed in zip(id_lists, res["decoded"],
                                      res["streamed"]):
            want = hf.decode(ids, skip_special_tokens=skip)
            stats["decodes"] += 1
            if got != want:
                fails.report(f"{name} decode({ids}, skip={skip}): hf "
                             f"{want!r} vs c++ {got!r}")
            if streamed != got:
                fails.report(f"{name} stream decode({ids}, skip={skip}): "
                             f"{streamed!r} vs decode {got!r}")

    # decode(encode(x)) == x wherever HF round-trips.
    plain_ids = cpp.encode_json(path, strings)
    back = cpp.decode_json(path, plain_ids)["decoded"]
    for s, ids, got in zip(strings, plain_ids, back):
        hf_back = hf.decode(hf.encode(s, add_special_tokens=False).ids,
                            skip_special_tokens=False)
        if hf_back == s:
            stats["roundtrip"] += 1
            if got != s:
                fails.report(f"{name} round trip of {s!r} gave {got!r}")
    return stats


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenize-bin", required=True,
                    help="path to the qopt-tokenize executable")
    ap.add_argument("--shared", help="shared data dir (default <repo>/../shared)")
    ap.add_argument("--random", type=int, default=1500,
                    help="random strings per tokenizer")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--only", nargs="*", help="tokenizer names to run")
    ap.add_argument("--quick", action="store_true",
                    help="only the two smallest text files")
    args = ap.parse_args()

    shared = Path(args.shared) if args.shared else repo_root().parent / "shared"
    if not (shared / "models/austen-llama-7m/tokenizer.json").is_file():
        print(f"SKIP: shared data not found at {shared}")
        return SKIP
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        print("SKIP: the Python package `tokenizers` is not installed "
              "(pip install tokenizers)")
        return SKIP
    if not os.access(args.tokenize_bin, os.X_OK):
        print(f"error: {args.tokenize_bin} is not an executable")
        return 1

    texts = sorted(p for p in (shared / "data/text").rglob("*") if p.is_file())
    if args.quick:
        texts = sorted(texts, key=lambda p: p.stat().st_size)[:2]
    print(f"tokenizers {tokenizers.__version__}; {len(texts)} text files; "
          f"{args.random} random strings per tokenizer")

    all_cps = [] if args.quick else all_codepoint_strings()
    fails = Failures()
    totals = {}
    with tempfile.TemporaryDirectory(prefix="qopt-tok-") as tmp:
        tmp = Path(tmp)
        cpp = Cpp(args.tokenize_bin, tmp)
        t0 = time.time()
        paths = build_all(shared, tmp, args.only)
        print(f"built {len(paths)} tokenizers in {time.time() - t0:.1f} s")
        for name, path in paths.items():
            print(f"[{name}]")
            before = fails.count
            stats = compare_tokenizer(name, path, cpp, texts, args.random,
                                      args.seed, fails, all_cps)
            totals[name] = stats
            status = "OK" if fails.count == before else \
                f"{fails.count - before} MISMATCHES"
            print(f"  {status}: {stats['files']} files ({stats['file_tokens']}"
                  f" ids), {stats['strings']} string encodings, "
                  f"{stats['codepoint_chunks']} all-code-point chunks, "
                  f"{stats['decodes']} decodes, {stats['roundtrip']} round "
                  f"trips checked")
    if fails.count:
        print(f"FAILED: {fails.count} mismatches")
        return 1
    n_files = sum(s["files"] for s in totals.values())
    n_str = sum(s["strings"] for s in totals.values())
    n_dec = sum(s["decodes"] for s in totals.values())
    print(f"PASSED: {len(totals)} tokenizers, {n_files} file encodings, "
          f"{n_str} string encodings, {n_dec} decodes identical to HF")
    return 0


if __name__ == "__main__":
    sys.exit(main())
