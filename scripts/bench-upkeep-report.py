#!/usr/bin/env python3
"""The table of BENCHMARKS.md's "Aggregate upkeep" from scripts/bench-upkeep.sh's results: per
search mode, the Postgres CPU per stored row of this database's processes with and without the
upkeep in each pair of passes, their difference (the upkeep's cost), and its median against the
target."""
import json
import statistics
import sys

TARGET_US = 10.0


def pg_us(r):
    return r["cpu_us_per_row"].get("pg_db", 0.0)


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    w = print
    w("| search index | Postgres µs/row with the upkeep, per pair | without | upkeep (with - without), "
      "per pair | **upkeep, median** | target | drain rows/s with / without (median) | "
      "HOT share of the aggregates' updates | load average before the passes |")
    w("|---|---|---|---|---:|---:|---:|---:|---|")
    for mode in dict.fromkeys(r["search"] for r in rows):
        of = [r for r in rows if r["search"] == mode]
        pairs = sorted({r["pair"] for r in of})
        by = {(r["pair"], r["variant"]): r for r in of}
        complete = [p for p in pairs if (p, "with") in by and (p, "without") in by]
        with_us = [pg_us(by[p, "with"]) for p in complete]
        without_us = [pg_us(by[p, "without"]) for p in complete]
        diff = [a - b for a, b in zip(with_us, without_us)]
        if not diff:
            continue
        median = statistics.median(diff)
        upd = sum(t["upd"] for p in complete for t in (by[p, "with"]["hot"] or {}).values())
        hot = sum(t["hot"] for p in complete for t in (by[p, "with"]["hot"] or {}).values())
        rate_with = statistics.median(by[p, "with"]["rows_per_s"] for p in complete)
        rate_without = statistics.median(by[p, "without"]["rows_per_s"] for p in complete)
        loads = sorted(float(r["load_before"].split()[0]) for r in of)
        fmt = lambda xs: ", ".join(f"{x:.1f}" for x in xs)
        verdict = "met" if median <= TARGET_US else "missed"
        w(f"| `{mode}` | {fmt(with_us)} | {fmt(without_us)} | {fmt(diff)} | **{median:.1f}** "
          f"| ≤ {TARGET_US:.0f} ({verdict}) | {rate_with:,.0f} / {rate_without:,.0f} "
          f"| {100 * hot / upd if upd else 0:.0f}% of {upd:,} | {loads[0]:.1f}-{loads[-1]:.1f} |")
    first = rows[0]
    mism = sum(r["mismatches"] or 0 for r in rows)
    w()
    w(f"Commit `{first['commit']}`, {first['backlog']:,} messages per pass (chat mix), one worker; "
      f"every pass with the upkeep exact ({mism} mismatches against a direct count).")


if __name__ == "__main__":
    main(sys.argv[1])
