#!/usr/bin/env python3
"""The device check's report: JSON lines of gemm_bench / torch_baselines /
other benches plus gtest JSON files -> one table (printed last) and one
results file.

    report.py --bench FILE [--bench FILE ...] [--gtest FILE ...] [--out FILE]

Table: kernel, shape, M, ours us, ours % of HBM, cuBLAS bf16 us, torch
int4 us, ratio (cuBLAS us / ours us: above 1 means faster than cuBLAS),
and the issue's bars:
  W4A16 at M = 1 and 16: >= 80 % of the HBM read bandwidth measured in
  the same run; at M = 256: >= 0.9x cuBLAS bf16 (ratio >= 0.9).
Before it:
  - decode attention (attention_bench's paged_decode, torch SDPA's decode):
    bars paged bf16 on contiguous tables >= 90 % of SDPA's GB/s, and fp8
    KV >= 1.7x faster than bf16 KV (same tables);
  - prefill attention: attention_bench's paged_prefill lines (each kernel,
    KV type, batch x tokens) beside torch SDPA's causal time at the same
    shape (vs SDPA = SDPA us / ours us: above 1 means faster);
  - the Llama-3-8B-shaped INT4 decode curve (decode_bench's decode_step
    lines, e2e.sh): tokens/s per batch, GB/s over weights + KV read, % of
    the HBM bandwidth measured in the same run; bar at batch 1: >= 75 %
    (tokens/s >= 0.75 x bandwidth / bytes per token).
"""
import argparse
import json
import sys

BW_BAR_PCT = 80.0
CUBLAS_BAR = 0.9
SDPA_BW_BAR = 0.9
FP8_SPEEDUP_BAR = 1.7
DECODE_BAR_PCT = 75.0


def read_lines(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def gtest_summary(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        return {"file": path, "error": "unreadable: %s" % e}
    total = failed = skipped = 0
    failures = []
    for suite in data.get("testsuites", []):
        for t in suite.get("testsuite", []):
            total += 1
            if t.get("failures"):
                failed += 1
                failures.append(suite.get("name", "") + "." + t.get("name", ""))
            elif t.get("result") == "SKIPPED" or t.get("status") == "NOTRUN":
                skipped += 1
    return {"file": path, "tests": total, "failed": failed, "skipped": skipped,
            "failures": failures[:20]}


def build(bench_rows):
    hbm = next((r["GBps"] for r in bench_rows if r.get("bench") == "hbm_read"), None)
    gemm = [r for r in bench_rows if r.get("bench") == "gemm" and "time_us" in r]

    def best(name, N, K, M):
        rows = [r for r in gemm if r["name"] == name and (r["N"], r["K"], r["M"]) == (N, K, M)]
        return min(rows, key=lambda r: r["time_us"]) if rows else None

    keys = sorted({(r["N"], r["K"], r["M"]) for r in gemm if r["name"] == "w4a16_g128"})
    table, bars = [], []
    for N, K, M in keys:
        ours = best("w4a16_g128", N, K, M)
        cub = best("cublas_bf16", N, K, M) or best("torch_bf16", N, K, M)
        tiny = best("torch_int4_tinygemm", N, K, M)
        pct = 100.0 * ours["GBps"] / hbm if hbm else None
        ratio = cub["time_us"] / ours["time_us"] if cub else None
        row = {"kernel": "w4a16_g128/" + ours.get("kernel", "?"), "N": N, "K": K, "M": M,
               "ours_us": ours["time_us"], "ours_pct_hbm": pct,
               "cublas_bf16_us": cub["time_us"] if cub else None,
               "torch_int4_us": tiny["time_us"] if tiny else None, "ratio": ratio}
        if M in (1, 16):
            met = pct is not None and pct >= BW_BAR_PCT
            row["bar"] = ">= %d%% HBM: %s" % (BW_BAR_PCT, "met" if met else (
                "not met" if pct is not None else "n/a (no bandwidth measured)"))
            bars.append({"N": N, "K": K, "M": M, "bar": "bw_pct>=80", "value": pct, "met": met})
        elif M == 256:
            met = ratio is not None and ratio >= CUBLAS_BAR
            row["bar"] = ">= 0.9x cuBLAS: %s" % ("met" if met else (
                "not met" if ratio is not None else "n/a (no cuBLAS time)"))
            bars.append({"N": N, "K": K, "M": M, "bar": "vs_cublas>=0.9", "value": ratio,
                         "met": met})
        else:
            row["bar"] = ""
        table.append(row)
    return hbm, table, bars


def prefill_rows(bench_rows):
    att = [r for r in bench_rows if r.get("bench") == "attention" and "time_us" in r]
    shape = lambda r: (r.get("batch"), r.get("tokens"), r.get("heads"), r.get("kv_heads"),
                       r.get("head_dim"))
    sdpa = {shape(r): r for r in att if r.get("name") == "torch_sdpa_prefill"}
    out = []
    for r in att:
        if r.get("name") != "paged_prefill":
            continue
        ref = sdpa.get(shape(r))
        out.append({"kernel": r.get("kernel", "?"), "kv": r.get("kv", "?"),
                    "batch": r.get("batch"), "tokens": r.get("tokens"),
                    "heads": "%s/%s" % (r.get("heads"), r.get("kv_heads")),
                    "head_dim": r.get("head_dim"), "ours_us": r["time_us"],
                    "TFLOPs": r.get("TFLOPs"), "sdpa_us": ref["time_us"] if ref else None,
                    "vs_sdpa": ref["time_us"] / r["time_us"] if ref else None})
    return out


def decode_attention(bench_rows):
    """paged_decode vs SDPA decode: (rows, bars)."""
    att = [r for r in bench_rows if r.get("bench") == "attention" and "time_us" in r]
    sdpa = next((r for r in att if r.get("name") == "torch_sdpa_decode"), None)
    ours = {(r.get("kv"), r.get("tables")): r for r in att if r.get("name") == "paged_decode"}
    rows, bars = [], []
    for (kv, tables), r in sorted(ours.items()):
        rows.append({"kv": kv, "tables": tables, "batch": r.get("batch"),
                     "context": r.get("context"), "ours_us": r["time_us"],
                     "GBps": r.get("GBps"), "pct_of_read": r.get("pct_of_read")})
    bf16 = ours.get(("bf16", "contiguous"))
    fp8 = ours.get(("fp8_e4m3", "contiguous"))
    if bf16 is not None:
        value = bf16["GBps"] / sdpa["GBps"] if sdpa and sdpa.get("GBps") else None
        bars.append({"bar": "paged_decode_bf16_vs_sdpa_GBps>=0.9", "value": value,
                     "met": value is not None and value >= SDPA_BW_BAR,
                     "sdpa_us": sdpa["time_us"] if sdpa else None})
    if bf16 is not None and fp8 is not None:
        value = bf16["time_us"] / fp8["time_us"]
        bars.append({"bar": "fp8_kv_speedup>=1.7", "value": value,
                     "met": value >= FP8_SPEEDUP_BAR})
    return rows, bars


def decode_curve(bench_rows, hbm):
    """decode_bench's decode_step lines: (rows by batch, bar at batch 1)."""
    steps = [r for r in bench_rows if r.get("name") == "decode_step" and "time_us" in r]
    rows = []
    for r in sorted(steps, key=lambda r: (not r.get("graphs", True), r.get("batch", 0))):
        gbps = r.get("GB/s")
        rows.append({"shape": r.get("shape"), "batch": r.get("batch"),
                     "graphs": r.get("graphs", True), "time_us": r["time_us"],
                     "tokens_per_s": r.get("tokens_per_s"), "GBps": gbps,
                     "pct_hbm": 100.0 * gbps / hbm if hbm and gbps is not None else None})
    bars = []
    one = next((r for r in rows if r["batch"] == 1 and r["graphs"]), None)
    if one is not None:
        bars.append({"bar": "decode_batch1_pct_hbm>=75", "value": one["pct_hbm"],
                     "met": one["pct_hbm"] is not None and one["pct_hbm"] >= DECODE_BAR_PCT})
    return rows, bars


def verdict(b):
    if b["value"] is None:
        return "n/a"
    return "met" if b["met"] else "not met"


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def render(hbm, table, tests, prefill=(), decode_att=((), ()), decode=((), ())):
    lines = []
    for t in tests:
        if "error" in t:
            lines.append("tests %s: %s" % (t["file"], t["error"]))
        else:
            lines.append("tests %s: %d run, %d failed, %d skipped%s" % (
                t["file"], t["tests"], t["failed"], t["skipped"],
                (": " + ", ".join(t["failures"])) if t["failures"] else ""))
    if prefill:
        lines.append("prefill attention (paged_prefill vs torch SDPA causal):")
        for r in prefill:
            lines.append("  %-12s %-9s %dx%d heads %s d%s: %s us, %s TFLOP/s, SDPA %s us, "
                         "vs SDPA %s" % (r["kernel"], r["kv"], r["batch"] or 0, r["tokens"] or 0,
                                         r["heads"], r["head_dim"], fmt(r["ours_us"], ".1f"),
                                         fmt(r["TFLOPs"], ".1f"), fmt(r["sdpa_us"], ".1f"),
                                         fmt(r["vs_sdpa"], ".2f")))
    att_rows, att_bars = decode_att
    if att_rows:
        lines.append("decode attention (paged_decode; torch SDPA on contiguous bf16):")
        for r in att_rows:
            lines.append("  %-9s %-10s %sx%s: %s us, %s GB/s (%s %% of read)" % (
                r["kv"], r["tables"], r["batch"], r["context"], fmt(r["ours_us"], ".1f"),
                fmt(r["GBps"], ".0f"), fmt(r["pct_of_read"], ".1f")))
        for b in att_bars:
            lines.append("  bar %s: %s (%s)" % (b["bar"], fmt(b["value"], ".2f"), verdict(b)))
    dec_rows, dec_bars = decode
    if dec_rows:
        lines.append("Llama-3-8B-shaped INT4 decode steps (decode_bench):")
        for r in dec_rows:
            lines.append("  batch %3s%s: %s us, %s tokens/s, %s GB/s, %s %% of HBM" % (
                r["batch"], "" if r["graphs"] else " (no graphs)", fmt(r["time_us"], ".1f"),
                fmt(r["tokens_per_s"], ".1f"), fmt(r["GBps"], ".0f"), fmt(r["pct_hbm"], ".1f")))
        for b in dec_bars:
            lines.append("  bar %s: %s (%s)" % (b["bar"], fmt(b["value"], ".1f"), verdict(b)))
    lines.append("HBM read bandwidth measured: %s GB/s" % fmt(hbm, ".0f"))
    head = "%-24s %-12s %5s %10s %7s %12s %11s %7s  %s" % (
        "kernel", "N x K", "M", "ours us", "% HBM", "cuBLAS us", "int4 us", "ratio", "bar")
    lines += [head, "-" * len(head)]
    for r in table:
        lines.append("%-24s %-12s %5d %10s %7s %12s %11s %7s  %s" % (
            r["kernel"], "%dx%d" % (r["N"], r["K"]), r["M"], fmt(r["ours_us"], ".2f"),
            fmt(r["ours_pct_hbm"], ".1f"), fmt(r["cublas_bf16_us"], ".2f"),
            fmt(r["torch_int4_us"], ".2f"), fmt(r["ratio"], ".2f"), r["bar"]))
    if not table:
        lines.append("(no W4A16 results)")
    return "\n".join(lines)


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", action="append", default=[])
    ap.add_argument("--gtest", action="append", default=[])
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    rows = []
    for path in args.bench:
        try:
            rows += read_lines(path)
        except OSError as e:
            print("report: cannot read %s: %s" % (path, e), file=sys.stderr)
    tests = [gtest_summary(p) for p in args.gtest]
    hbm, table, bars = build(rows)
    prefill = prefill_rows(rows)
    att_rows, att_bars = decode_attention(rows)
    dec_rows, dec_bars = decode_curve(rows, hbm)
    print(render(hbm, table, tests, prefill, (att_rows, att_bars), (dec_rows, dec_bars)))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"hbm_read_GBps": hbm, "table": table, "bars": bars + att_bars + dec_bars,
                       "tests": tests, "prefill_attention": prefill,
                       "decode_attention": att_rows, "decode": dec_rows, "raw": rows},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
