//! The results file as the markdown tables of BENCHMARKS.md, every figure next to its ceiling.

use std::fmt::Write as _;

use serde_json::Value;

pub fn render(jsonl: &str) -> anyhow::Result<String> {
    let results: Vec<Value> = jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let of = |kind: &str| -> Vec<&Value> { results.iter().filter(|r| r["kind"] == kind).collect() };
    let health = of("health");
    let nats = of("nats");
    let pg = of("pg");
    let webhook = of("webhook");
    let drain = of("drain");
    let closed: Vec<&Value> = webhook
        .iter()
        .copied()
        .filter(|r| r["mode"] == "closed")
        .collect();
    let open: Vec<&Value> = webhook
        .iter()
        .copied()
        .filter(|r| r["mode"] == "open")
        .collect();

    let health_at = |conns: &Value| {
        health
            .iter()
            .find(|h| h["connections"] == *conns)
            .map(|h| f(&h["accepted_per_s"]))
    };
    let nats_ref = |dup: &Value| {
        nats.iter()
            .find(|n| n["dup"] == *dup && n["stream"] == "BENCH_REF")
            .or_else(|| nats.iter().find(|n| n["stream"] == "BENCH_REF"))
            .map(|n| f(&n["acked_per_s"]))
    };
    let pg_ref = pg.first().map(|p| f(&p["rows_per_s"]));

    let mut out = String::new();
    let w = &mut out;

    writeln!(w, "### References: the ceilings of this box\n")?;
    writeln!(
        w,
        "| reference | load | rate | p50 ms | p99 | p99.9 | CPU % (of one core) |"
    )?;
    writeln!(w, "|---|---|---:|---:|---:|---:|---|")?;
    for h in &health {
        writeln!(
            w,
            "| `GET /health/live` (HTTP stack, no work) | {} conns, closed loop | {} req/s | {} | {} | {} | {} |",
            h["connections"],
            rate(f(&h["accepted_per_s"])),
            ms(&h["latency"]["p50_ms"]),
            ms(&h["latency"]["p99_ms"]),
            ms(&h["latency"]["p999_ms"]),
            cpu(&h["procs"]),
        )?;
    }
    for n in nats.iter().filter(|n| n["stream"] == "BENCH_REF") {
        writeln!(
            w,
            "| raw JetStream publish + PubAck (file store, dedup) | {} in flight, {}% re-sends | {} msg/s | {} | {} | {} | {} |",
            n["inflight"],
            pct_of(f(&n["dup"])),
            rate(f(&n["acked_per_s"])),
            ms(&n["latency"]["p50_ms"]),
            ms(&n["latency"]["p99_ms"]),
            ms(&n["latency"]["p999_ms"]),
            cpu(&n["procs"]),
        )?;
    }
    for p in &pg {
        writeln!(
            w,
            "| raw UNNEST upsert, same rows and indexes | {} rows/statement, 1 connection | {} rows/s | | | | {} |",
            p["batch"],
            rate(f(&p["rows_per_s"])),
            cpu(&p["procs"]),
        )?;
    }

    for u in of("upkeep") {
        upkeep_table(w, u)?;
    }

    // A case run with no worker on the box measures the accept path alone: the rows wait in
    // JetStream, as they would for a store path on other cores or machines.
    let alone = |r: &&Value| r["workers_on_box"] == 0;
    let (closed_alone, closed): (Vec<&Value>, Vec<&Value>) = closed.into_iter().partition(alone);
    for (rows, title) in [
        (&closed, "`POST /webhook`, closed loop"),
        (
            &closed_alone,
            "`POST /webhook`, closed loop, no worker on the box (the accept path alone; the rows wait in JetStream)",
        ),
    ] {
        if rows.is_empty() {
            continue;
        }
        writeln!(w, "\n### {title}\n")?;
        writeln!(
            w,
            "| conns | re-sends | requests | accepted/s | vs `/health/live` | vs raw JetStream | p50 ms | p99 | p99.9 | statuses | e2e p50 ms | e2e p99 | rows/s e2e | missing | CPU % (of one core) | RSS max MiB |"
        )?;
        writeln!(
            w,
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---|"
        )?;
        for r in rows.iter() {
            let acc = f(&r["accepted_per_s"]);
            writeln!(
                w,
                "| {} | {}% | {} | **{}** | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r["connections"],
                pct_of(f(&r["dup"])),
                r["requests"],
                rate(acc),
                ratio(acc, health_at(&r["connections"])),
                ratio(acc, nats_ref(&r["dup"])),
                ms(&r["latency"]["p50_ms"]),
                ms(&r["latency"]["p99_ms"]),
                ms(&r["latency"]["p999_ms"]),
                statuses(&r["statuses"]),
                ms(&r["e2e"]["latency"]["p50_ms"]),
                ms(&r["e2e"]["latency"]["p99_ms"]),
                rate(f(&r["e2e"]["rows_per_s"])),
                count(&r["e2e"]["missing"]),
                cpu(&r["procs"]),
                rss(&r["procs"]),
            )?;
        }
    }

    if !open.is_empty() {
        writeln!(
            w,
            "\n### `POST /webhook`, open loop (latency from each request's intended send time)\n"
        )?;
        writeln!(
            w,
            "| target rate | conns | duration s | accepted/s | p50 ms | p99 | p99.9 | max | statuses | e2e p50 ms | e2e p99 | e2e p99.9 | missing | CPU % (of one core) | RSS start → max MiB |"
        )?;
        writeln!(
            w,
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---|"
        )?;
        for r in &open {
            writeln!(
                w,
                "| {}/s | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                rate(f(&r["rate"])),
                r["connections"],
                f(&r["elapsed_s"]),
                rate(f(&r["accepted_per_s"])),
                ms(&r["latency"]["p50_ms"]),
                ms(&r["latency"]["p99_ms"]),
                ms(&r["latency"]["p999_ms"]),
                ms(&r["latency"]["max_ms"]),
                statuses(&r["statuses"]),
                ms(&r["e2e"]["latency"]["p50_ms"]),
                ms(&r["e2e"]["latency"]["p99_ms"]),
                ms(&r["e2e"]["latency"]["p999_ms"]),
                r["e2e"]["missing"],
                cpu(&r["procs"]),
                rss_growth(&r["procs"]),
            )?;
        }
    }

    if !drain.is_empty() {
        writeln!(w, "\n### Worker drain of a backlog\n")?;
        writeln!(
            w,
            "| workers | rows | rows/s | vs raw UNNEST | wall s | CPU % (of one core) | RSS max MiB |"
        )?;
        writeln!(w, "|---:|---:|---:|---:|---:|---|---|")?;
        for d in &drain {
            let r = f(&d["rows_per_s"]);
            writeln!(
                w,
                "| {} | {} | **{}** | {} | {:.1} | {} | {} |",
                d["workers"],
                d["rows"],
                rate(r),
                ratio(r, pg_ref),
                f(&d["wall_s"]),
                cpu(&d["procs"]),
                rss(&d["procs"]),
            )?;
        }
    }

    writeln!(w, "\n### Targets\n")?;
    writeln!(w, "| target | measured | met |")?;
    writeln!(w, "|---|---|---|")?;
    let mut target = |name: &str, measured: String, met: Option<bool>| {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        writeln!(w, "| {name} | {measured} | {met} |")
    };
    for (rows, setting) in [(&closed, ""), (&closed_alone, ", no worker on the box")] {
        if rows.is_empty() && !setting.is_empty() {
            continue;
        }
        let best = rows
            .iter()
            .max_by(|a, b| f(&a["accepted_per_s"]).total_cmp(&f(&b["accepted_per_s"])));
        match best {
            Some(b) => {
                let acc = f(&b["accepted_per_s"]);
                let h = health_at(&b["connections"]);
                target(
                    &format!("accepted/s >= 50% of `/health/live` (same conns){setting}"),
                    format!(
                        "{} at {} conns: {}",
                        rate(acc),
                        b["connections"],
                        ratio(acc, h)
                    ),
                    h.map(|h| acc >= 0.5 * h),
                )?;
                target(
                    &format!("accepted/s >= 20,000/s{setting}"),
                    format!("best {}", rate(acc)),
                    Some(acc >= 20_000.0),
                )?;
            }
            None => target("accepted/s", "-".into(), None)?,
        }
    }
    let at64: Vec<&&Value> = closed
        .iter()
        .chain(&closed_alone)
        .filter(|r| r["connections"] == 64)
        .collect();
    let worst64 = at64
        .iter()
        .map(|r| f(&r["latency"]["p99_ms"]))
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    target(
        "p99 <= 50 ms at 64 conns",
        worst64.map_or("-".into(), |v| format!("worst {v:.2} ms")),
        worst64.map(|v| v <= 50.0),
    )?;
    let best_drain = drain
        .iter()
        .map(|d| f(&d["rows_per_s"]))
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    target(
        "worker drain >= 50% of raw UNNEST",
        best_drain.map_or("-".into(), |d| {
            format!("best {}: {}", rate(d), ratio(d, pg_ref))
        }),
        best_drain.zip(pg_ref).map(|(d, p)| d >= 0.5 * p),
    )?;
    let o5 = open.iter().find(|r| f(&r["rate"]) == 5000.0);
    target(
        "open loop 5,000/s: p99 <= 20 ms",
        o5.map_or("-".into(), |r| {
            format!("{} ms", ms(&r["latency"]["p99_ms"]))
        }),
        o5.map(|r| f(&r["latency"]["p99_ms"]) <= 20.0 && ok_only(r)),
    )?;
    target(
        "open loop 5,000/s: e2e p99 <= 250 ms",
        o5.map_or("-".into(), |r| {
            format!("{} ms", ms(&r["e2e"]["latency"]["p99_ms"]))
        }),
        o5.map(|r| f(&r["e2e"]["latency"]["p99_ms"]) <= 250.0 && r["e2e"]["missing"] == 0),
    )?;
    let max_rss = |label: &str| {
        results
            .iter()
            .filter_map(|r| r["procs"][label]["rss_max_mib"].as_f64())
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    for (label, limit) in [("gateway", 64.0), ("worker", 128.0)] {
        let m = max_rss(label);
        target(
            &format!("RSS {label} <= {limit} MiB (max over every case)"),
            m.map_or("-".into(), |v| format!("{v:.1} MiB")),
            m.map(|v| v <= limit),
        )?;
    }
    Ok(out)
}

/// The upkeep reference: each round's two passes, and what the upkeep adds per row.
fn upkeep_table(w: &mut String, u: &Value) -> anyhow::Result<()> {
    writeln!(
        w,
        "\n### Aggregate upkeep: the worker's insert alone and with `upkeep::apply` ({} rows, {} per transaction, 1 connection)\n",
        u["rows"], u["batch"]
    )?;
    writeln!(
        w,
        "| round | insert alone: rows/s | µs/row (backend) | µs/row (all postgres) | with upkeep: rows/s | µs/row (backend) | µs/row (all postgres) | upkeep µs/row (backend) | exact |"
    )?;
    writeln!(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---|")?;
    let passes = u["passes"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let mut added = Vec::new();
    for (round, pair) in passes.chunks(2).enumerate() {
        let [bare, kept] = pair else { continue };
        let diff = f(&kept["backend_us_per_row"]) - f(&bare["backend_us_per_row"]);
        added.push(diff);
        writeln!(
            w,
            "| {} | {} | {:.1} | {:.1} | {} | {:.1} | {:.1} | **{:.1}** | {} |",
            round + 1,
            rate(f(&bare["rows_per_s"])),
            f(&bare["backend_us_per_row"]),
            f(&bare["postgres_us_per_row"]),
            rate(f(&kept["rows_per_s"])),
            f(&kept["backend_us_per_row"]),
            f(&kept["postgres_us_per_row"]),
            diff,
            if kept["mismatches"] == 0 {
                "yes"
            } else {
                "**no**"
            },
        )?;
    }
    added.sort_by(f64::total_cmp);
    if let (Some(lo), Some(hi)) = (added.first(), added.last()) {
        writeln!(
            w,
            "\nThe upkeep adds {:.1} µs of Postgres CPU per stored row (the median of {} round(s), which range from {lo:.1} to {hi:.1}).",
            added[added.len() / 2],
            added.len()
        )?;
    }
    Ok(())
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn rate(v: f64) -> String {
    if v.is_nan() {
        return "-".into();
    }
    let n = v.round() as i64;
    let s = n.to_string();
    let mut grouped = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    grouped
}

fn ms(v: &Value) -> String {
    match v.as_f64() {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
        None => "-".into(),
    }
}

/// A count, or "-" where the case did not measure it.
fn count(v: &Value) -> String {
    v.as_u64().map_or("-".into(), |n| n.to_string())
}

fn pct_of(v: f64) -> String {
    format!("{:.0}", v * 100.0)
}

fn ratio(v: f64, ceiling: Option<f64>) -> String {
    match ceiling {
        Some(c) if c > 0.0 && !v.is_nan() => format!("{:.0}%", v / c * 100.0),
        _ => "-".into(),
    }
}

fn statuses(v: &Value) -> String {
    let Some(map) = v.as_object() else {
        return "-".into();
    };
    map.iter()
        .map(|(k, n)| {
            let k = if k == "0" { "conn-error" } else { k };
            format!("{k}: {n}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn ok_only(r: &Value) -> bool {
    r["statuses"]
        .as_object()
        .is_some_and(|m| m.keys().all(|k| k == "200"))
}

const ORDER: [&str; 6] = ["gateway", "worker", "nats", "postgres", "bench", "workers"];

fn procs_sorted(v: &Value) -> Vec<(&str, &Value)> {
    let Some(map) = v.as_object() else {
        return Vec::new();
    };
    let mut items: Vec<(&str, &Value)> = map.iter().map(|(k, v)| (k.as_str(), v)).collect();
    items.sort_by_key(|(k, _)| ORDER.iter().position(|o| o == k).unwrap_or(ORDER.len()));
    items
}

fn cpu(v: &Value) -> String {
    procs_sorted(v)
        .into_iter()
        .map(|(k, u)| format!("{k} {:.0}", f(&u["cpu_pct"])))
        .collect::<Vec<_>>()
        .join(", ")
}

fn rss(v: &Value) -> String {
    procs_sorted(v)
        .into_iter()
        .filter(|(k, _)| *k != "postgres")
        .map(|(k, u)| format!("{k} {:.0}", f(&u["rss_max_mib"])))
        .collect::<Vec<_>>()
        .join(", ")
}

fn rss_growth(v: &Value) -> String {
    procs_sorted(v)
        .into_iter()
        .filter(|(k, _)| matches!(*k, "gateway" | "worker"))
        .map(|(k, u)| {
            format!(
                "{k} {:.0} → {:.0}",
                f(&u["rss_start_mib"]),
                f(&u["rss_max_mib"])
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_reported_against_their_ceilings() {
        let lines = [
            r#"{"kind":"health","connections":64,"accepted_per_s":40000.0,"latency":{},"procs":{}}"#,
            r#"{"kind":"nats","stream":"BENCH_REF","dup":0.0,"inflight":1024,"acked_per_s":50000.0,"latency":{},"procs":{}}"#,
            r#"{"kind":"pg","batch":500,"rows_per_s":100000.0,"procs":{}}"#,
            r#"{"kind":"webhook","mode":"closed","connections":64,"dup":0.0,"requests":10,"accepted_per_s":25000.0,"latency":{"p99_ms":12.5},"statuses":{"200":10},"e2e":{"missing":0,"latency":{}},"procs":{"gateway":{"cpu_pct":90.0,"rss_max_mib":30.0}}}"#,
            r#"{"kind":"drain","workers":1,"rows":10,"rows_per_s":40000.0,"wall_s":1.0,"procs":{}}"#,
        ]
        .join("\n");
        let has = |md: &str, row: &str| assert!(md.contains(row), "no {row:?} in:\n{md}");
        let md = render(&lines).unwrap();
        // 25,000 of 40,000 health and of 50,000 raw JetStream.
        has(&md, "| **25,000** | 62% | 50% |");
        has(
            &md,
            "| accepted/s >= 50% of `/health/live` (same conns) | 25,000 at 64 conns: 62% | yes |",
        );
        has(
            &md,
            "| worker drain >= 50% of raw UNNEST | best 40,000: 40% | **no** |",
        );
        has(&md, "| p99 <= 50 ms at 64 conns | worst 12.50 ms | yes |");
        has(
            &md,
            "| open loop 5,000/s: p99 <= 20 ms | - | not measured |",
        );
        has(
            &md,
            "RSS gateway <= 64 MiB (max over every case) | 30.0 MiB | yes",
        );

        let alone = r#"{"kind":"webhook","mode":"closed","connections":64,"dup":0.0,"requests":10,"accepted_per_s":30000.0,"latency":{"p99_ms":60.0},"statuses":{"200":10},"e2e":null,"workers_on_box":0,"procs":{}}"#;
        let md = render(&format!("{lines}\n{alone}")).unwrap();
        // The case without a worker gets a table and target lines of its own: it neither
        // replaces the figures measured with a worker draining nor hides among them.
        let (with_worker, without) = md.split_once("no worker on the box (the accept").unwrap();
        assert!(
            with_worker.contains("| **25,000** |") && !with_worker.contains("30,000"),
            "{md}"
        );
        assert!(without.contains("| **30,000** | 75% | 60% |"), "{md}");
        has(&md, "| accepted/s >= 20,000/s | best 25,000 | yes |");
        has(
            &md,
            "| accepted/s >= 20,000/s, no worker on the box | best 30,000 | yes |",
        );
        has(
            &md,
            "| p99 <= 50 ms at 64 conns | worst 60.00 ms | **no** |",
        );
    }
}
