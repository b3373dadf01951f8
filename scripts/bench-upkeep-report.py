#!/usr/bin/env python3
"""The table of BENCHMARKS.md's "Aggregate upkeep" from scripts/bench-upkeep.sh's results: per
search mode, the median Postgres CPU per stored row of this database's processes with and without
the upkeep, the median of the pairs' differences (the upkeep's cost) against the target, the
drain rates and the HOT share. The per-pass figures, commit and load stay in the results file;
bench-upkeep.sh stops before writing when a pass with the upkeep is not exact."""
import json
import statistics
import sys

TARGET_US = 10.0


def pg_us(r):
    return r["cpu_us_per_row"].get("pg_db", 0.0)


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    lines = []
    counts = set()
    for mode in dict.fromkeys(r["search"] for r in rows):
        of = [r for r in rows if r["search"] == mode]
        by = {(r["pair"], r["variant"]): r for r in of}
        complete = [p for p in sorted({r["pair"] for r in of})
                    if (p, "with") in by and (p, "without") in by]
        if not complete:
            continue
        counts.add(len(complete))
        with_us = [pg_us(by[p, "with"]) for p in complete]
        without_us = [pg_us(by[p, "without"]) for p in complete]
        median = statistics.median(a - b for a, b in zip(with_us, without_us))
        hot_by_table = [t for p in complete for t in (by[p, "with"]["hot"] or {}).values()]
        upd = sum(t["upd"] for t in hot_by_table)
        hot = sum(t["hot"] for t in hot_by_table)
        rate = lambda variant: statistics.median(by[p, variant]["rows_per_s"] for p in complete)
        verdict = "met" if median <= TARGET_US else "missed"
        lines.append(
            f"| `{mode}` | {statistics.median(with_us):.1f} / {statistics.median(without_us):.1f} "
            f"| **{median:.1f}** | ≤ {TARGET_US:.0f} ({verdict}) "
            f"| {rate('with'):,.0f} / {rate('without'):,.0f} "
            f"| {f'{100 * hot / upd:.0f}%' if upd else '-'} |")
    n = counts.pop() if len(counts) == 1 else None
    pairs = "its pairs" if n is None else f"{n} pair" + ("s" if n != 1 else "")
    print("| search index | Postgres µs/row with / without the upkeep (median) "
          f"| **upkeep, median of {pairs}** | target | drain rows/s with / without "
          "| HOT share of the aggregates' updates |")
    print("|---|---:|---:|---:|---:|---:|")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main(sys.argv[1])
