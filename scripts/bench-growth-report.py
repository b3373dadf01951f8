#!/usr/bin/env python3
"""The table of BENCHMARKS.md's "Growth" section from .data/bench/growth.jsonl (written by
scripts/bench-growth.sh): for the schema of the latest run, the latest result of each size,
search mode and read case, the largest size against the smallest, and whether the largest meets
the target. Commits, dates, load averages and p99s stay in the results file."""
import json
import sys

RATIO = 1.2  # the largest size against the smallest
BLOCKED_MS = 1000.0
READ_GROUPS = [["all", "from", "since", "since_until"], ["cursor", "offset", "stats"],
               ["series_day", "series_hour", "series_from"], ["q", "q_estimated", "q_from"]]
# `q=` grows with its matches, not the table: its target is only that it keeps answering.
NO_ERRORS_ONLY = {"q", "q_estimated", "q_from"}


def human(n):
    n = int(n)
    for unit, div in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return f"{n:,}"


def ms(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def verdict(measured, why):
    """"yes", or "**no**" with why (the cases that missed), or "not measured"."""
    if not measured:
        return "not measured"
    if not why:
        return "yes"
    return "**no**" + ("" if why is True else " (" + ", ".join(why) + ")")


def line(cells):
    return "|" + "".join(f" {c} |" if c else " |" for c in cells)


def span(ratios):
    if not ratios:
        return ""
    lo, hi = f"{min(ratios):.2f}", f"{max(ratios):.2f}"
    return f"{lo}×" if lo == hi else f"{lo}-{hi}×"


def main(path):
    records = [json.loads(text) for text in open(path) if text.strip()]
    if not records:
        return
    schema = records[-1]["schema"]
    latest = {}
    for r in records:
        if r.get("schema") == schema:
            latest[(r["size"], r["phase"], r.get("search"), r.get("case"))] = r
    sizes = sorted({size for size, *_ in latest})
    small, large = sizes[0], sizes[-1]
    out = [f"| measure ({schema}) | target, 100M against 1M | "
           + " | ".join(human(s) for s in sizes)
           + f" | {human(large)} / {human(small)} | met at {human(large)} |",
           "|---|---|" + "---:|" * len(sizes) + "---:|---|"]

    def row(measure, target, cells, ratio, met):
        out.append(line([measure, target, *cells, ratio, met]))

    modes = sorted({k[2] for k in latest if k[1] == "drain"}, key=lambda m: (m != "trigram", m))
    for mode in modes:
        d = {s: latest.get((s, "drain", mode, None)) for s in sizes}
        us = {s: r["cpu_us_per_row"].get("pg_db", 0.0) for s, r in d.items() if r}
        ratio = us[large] / us[small] if large in us and us.get(small) else None
        row(f"drain, {mode}: rows/s, Postgres µs/row", f"µs/row ≤ {RATIO}×",
            [f"{r['rows_per_s']:,.0f}, **{us[s]:.0f}**" if r else "-" for s, r in d.items()],
            "" if ratio is None else f"{ratio:.2f}×",
            verdict(ratio is not None, ratio is not None and ratio > RATIO))

    kept = {s: latest.get((s, "retention", None, None)) for s in sizes}
    if any(kept.values()):
        blocked = lambda s: kept[s]["blocked"]
        row("retention: table blocked (longest read); month emptied in", f"< {BLOCKED_MS / 1000:.0f} s",
            [f"**{blocked(s)['probe_max_ms']:.0f} ms**; {blocked(s)['gone_after_s']:.1f} s"
             if kept[s] else "-" for s in sizes], "",
            verdict(kept[large] is not None,
                    kept[large] is not None and blocked(large)["probe_max_ms"] >= BLOCKED_MS))

    reads = {(k[0], k[3]): r for k, r in latest.items() if k[1] == "reads"}
    cases = list(dict.fromkeys(case for _, case in reads))
    grouped = {c for g in READ_GROUPS for c in g}
    others = [c for c in cases if c not in grouped]
    for group in READ_GROUPS + ([others] if others else []):
        group = [c for c in group if c in cases]
        if not group:
            continue
        p50 = lambda s, c: float(reads[s, c]["p50_ms"]) if (s, c) in reads else None
        ratios, missed = [], []
        for c in group:
            a, b = p50(small, c), p50(large, c)
            if a and b is not None:
                ratios.append(b / a)
                if c not in NO_ERRORS_ONLY and b / a > RATIO:
                    missed.append(f"`{c}` {b / a:.2f}×")
            r = reads.get((large, c))
            failed = int(r["errors"]) + int(r["non2xx"]) if r else 0
            if failed:
                missed.append(f"`{c}` {failed} failed")
        target = "no errors" if set(group) <= NO_ERRORS_ONLY else f"≤ {RATIO}×"
        row("reads p50 ms: " + " / ".join(f"`{c}`" for c in group), target,
            [" / ".join(ms(p50(s, c)) if p50(s, c) is not None else "-" for c in group)
             for s in sizes], span(ratios),
            verdict(any((large, c) in reads for c in group), missed))
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
