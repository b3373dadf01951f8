#!/usr/bin/env python3
"""The tables of BENCHMARKS.md's "Growth" section from .data/bench/growth.jsonl (written by
scripts/bench-growth.sh): the latest result of each schema, size, search mode and read case."""
import json
import sys


def human(n):
    n = int(n)
    for unit, div in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return f"{n:,}"


def main(path):
    latest = {}
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        r = json.loads(line)
        key = (r.get("schema"), r.get("size"), r.get("phase"), r.get("search"),
               r.get("case"), r.get("consistency"))
        latest[key] = r
    rows = sorted(latest.values(), key=lambda r: (r["schema"] != "unpartitioned", r["size"]))
    out = []
    w = out.append

    drains = [r for r in rows if r["phase"] == "drain"]
    base = {(r["schema"], r["search"]): r for r in drains if r["size"] == min(
        d["size"] for d in drains if d["schema"] == r["schema"] and d["search"] == r["search"])}
    w("### Drain: one worker, a backlog of chat-mix messages into a pre-filled table\n")
    w("| schema | rows in the table | search index | stored rows/s | Postgres µs per row "
      "(this database) | vs smallest | worker µs per row | all Postgres µs per row | "
      "load average before / after | commit, date |")
    w("|---|---:|---|---:|---:|---:|---:|---:|---|---|")
    for r in sorted(drains, key=lambda r: (r["schema"] != "unpartitioned", r["search"] != "trigram", r["size"])):
        us = r.get("cpu_us_per_row", {})
        b = base.get((r["schema"], r["search"]))
        ratio = us.get("pg_db", 0) / b["cpu_us_per_row"]["pg_db"] if b and b["cpu_us_per_row"].get("pg_db") else 0
        label = r["schema"] + (" (baseline)" if r["schema"] == "unpartitioned" else "")
        w(f"| {label} | {human(r['size'])} | {r['search']} | **{r['rows_per_s']:,.0f}** | "
          f"**{us.get('pg_db', 0):.0f}** | {ratio:.2f}x | {us.get('worker', 0):.0f} | "
          f"{us.get('postgres', 0):.0f} | {r.get('load_before', '')} / {r.get('load', '')} | "
          f"`{r.get('commit', '')}`, {r.get('at', '')[:16]} |")

    reads = [r for r in rows if r["phase"] == "reads"]
    if reads:
        sizes = sorted({(r["schema"], r["size"]) for r in reads},
                       key=lambda s: (s[0] != "unpartitioned", s[1]))
        cases = []
        for r in reads:
            if r["case"] not in cases:
                cases.append(r["case"])
        w("\n### Reads: scripts/bench-read.sh's matrix on the same databases (trigram index on, "
          "idle, `Prefer: consistency=eventual`)\n")
        w("p50 / p99 ms; errors and non-2xx answers in brackets when any.\n")
        w("| case | " + " | ".join(f"{s[0]} {human(s[1])}" for s in sizes) + " |")
        w("|---|" + "---:|" * len(sizes))
        by = {(r["schema"], r["size"], r["case"]): r for r in reads}
        for c in cases:
            cells = []
            for s in sizes:
                r = by.get((s[0], s[1], c))
                if r is None:
                    cells.append("-")
                    continue
                bad = int(r["errors"]) + int(r["non2xx"])
                cells.append(f"{float(r['p50_ms']):.1f} / {float(r['p99_ms']):.1f}"
                             + (f" ({bad} failed)" if bad else ""))
            w(f"| `{c}` | " + " | ".join(cells) + " |")

    retention = [r for r in rows if r["phase"] == "retention"]
    w("\n### Retention: dropping an expired month\n")
    if not retention:
        w("Not measured: the unpartitioned schema deletes expired rows in batches and has no "
          "partition to drop.")
    else:
        w("| schema | rows in the table | expired month gone after s | table blocked: longest "
          "read ms | read p99 ms | reads probed | total_messages after |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        for r in retention:
            b = r["blocked"]
            w(f"| {r['schema']} | {human(r['size'])} | {b['gone_after_s']:.1f} | "
              f"**{b['probe_max_ms']:.0f}** | {b['probe']['p99_ms']:.1f} | {b['probes']} | "
              f"{r.get('total_after', '')} |")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
