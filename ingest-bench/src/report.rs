//! The results file as BENCHMARKS.md's ingest table: one row per target, the figure against it.
//! The run's context (commit, date, load) and the per-case detail stay in the results file.

use serde_json::Value;

const MET: &str = "yes";
const MISSED: &str = "**no**";
const UNMEASURED: &str = "not measured";

pub fn render(jsonl: &str) -> anyhow::Result<String> {
    let results: Vec<Value> = jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let of = |kind: &str| -> Vec<&Value> { results.iter().filter(|r| r["kind"] == kind).collect() };
    let health = of("health");
    // The scratch stream is the reference; the drain's backlog is published to the real one.
    let nats: Vec<&Value> = of("nats")
        .into_iter()
        .filter(|n| n["stream"] == "BENCH_REF")
        .collect();
    let pg = of("pg");
    let drain = of("drain");
    let webhook = of("webhook");
    let mode =
        |m: &str| -> Vec<&Value> { webhook.iter().copied().filter(|r| r["mode"] == m).collect() };
    // A case run with no worker on the box measures the accept path alone: the rows wait in
    // JetStream, as they would for a store path on other cores or machines.
    let (alone, closed): (Vec<&Value>, Vec<&Value>) = mode("closed")
        .into_iter()
        .partition(|r| r["workers_on_box"] == 0);
    let open = mode("open");

    let health_at = |conns: &Value| {
        health
            .iter()
            .find(|h| h["connections"] == *conns)
            .map(|h| f(&h["accepted_per_s"]))
    };
    let pg_ref = pg.first().map(|p| f(&p["rows_per_s"]));

    let mut t = Table::default();
    let conns: Vec<f64> = health.iter().map(|h| f(&h["connections"])).collect();
    let rates =
        |rows: &[&Value], key: &str| -> Vec<f64> { rows.iter().map(|r| f(&r[key])).collect() };
    t.row(
        format!(
            "ceilings: `GET /health/live` ({} conns); raw JetStream publish + PubAck; the worker's insert alone (raw UNNEST)",
            span(&conns, |v| format!("{v:.0}"))
        ),
        "",
        format!(
            "{} req/s; {} msg/s; {} rows/s",
            span(&rates(&health, "accepted_per_s"), rate),
            span(&rates(&nats, "acked_per_s"), rate),
            span(&rates(&pg, "rows_per_s"), rate),
        ),
        "",
    );

    for (rows, setting, headline) in [
        (&alone, ", no worker on the box", true),
        (&closed, " with a worker on the box", false),
    ] {
        let best = rows
            .iter()
            .max_by(|a, b| f(&a["accepted_per_s"]).total_cmp(&f(&b["accepted_per_s"])));
        let Some(best) = best else {
            t.row(
                format!("accepted/s{setting}"),
                "≥ 20,000/s",
                "-",
                UNMEASURED,
            );
            continue;
        };
        let acc = f(&best["accepted_per_s"]);
        let figure = format!("{}/s", rate(acc));
        t.row(
            format!("accepted/s{setting} (best: {} conns)", best["connections"]),
            "≥ 20,000/s",
            if headline {
                format!("**{figure}**")
            } else {
                figure
            },
            met(Some(acc >= 20_000.0)),
        );
        let h = health_at(&best["connections"]);
        t.row(
            "the same against `/health/live` at the same conns",
            "≥ 50%",
            ratio(acc, h),
            met(h.map(|h| acc >= 0.5 * h)),
        );
    }

    let p99_at_64 = |rows: &[&Value]| -> Vec<f64> {
        rows.iter()
            .filter(|r| r["connections"] == 64)
            .map(|r| f(&r["latency"]["p99_ms"]))
            .collect()
    };
    let (with, without) = (p99_at_64(&closed), p99_at_64(&alone));
    let worst = |v: &[f64]| v.iter().copied().reduce(f64::max);
    let mut p99 = worst(&with).map_or("-".into(), |w| ms(&[w]));
    if !without.is_empty() {
        p99 += &format!(" ({} without)", ms(&without));
    }
    t.row(
        "request p99 at 64 conns, with a worker",
        "≤ 50 ms",
        p99,
        met(worst(&[with, without].concat()).map(|w| w <= 50.0)),
    );

    let o5 = open.iter().find(|r| f(&r["rate"]) == 5000.0);
    t.row(
        "open loop 5,000/s: request p99",
        "≤ 20 ms",
        o5.map_or("-".into(), |r| {
            format!(
                "{} (p50 {})",
                ms(&[f(&r["latency"]["p99_ms"])]),
                ms(&[f(&r["latency"]["p50_ms"])])
            )
        }),
        met(o5.map(|r| f(&r["latency"]["p99_ms"]) <= 20.0 && ok_only(r))),
    );
    let e2e_p99 = |r: &Value| f(&r["e2e"]["latency"]["p99_ms"]);
    let others: Vec<String> = open
        .iter()
        .filter(|r| f(&r["rate"]) != 5000.0)
        .map(|r| format!("at {}/s: {}", rate(f(&r["rate"])), ms(&[e2e_p99(r)])))
        .collect();
    let mut e2e = o5.map_or("-".into(), |r| ms(&[e2e_p99(r)]));
    if !others.is_empty() {
        e2e += &format!(" ({})", others.join("; "));
    }
    t.row(
        "open loop 5,000/s: e2e p99",
        "≤ 250 ms",
        e2e,
        met(o5.map(|r| e2e_p99(r) <= 250.0 && r["e2e"]["missing"] == 0)),
    );

    if drain.is_empty() {
        t.row("worker drain against raw UNNEST", "≥ 50%", "-", UNMEASURED);
    } else {
        let slash = |each: &dyn Fn(&Value) -> String| {
            drain
                .iter()
                .map(|d| each(d))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let best = rates(&drain, "rows_per_s").into_iter().reduce(f64::max);
        let workers = slash(&|d| d["workers"].to_string());
        let noun = if workers == "1" { "worker" } else { "workers" };
        t.row(
            format!("worker drain, {workers} {noun}, against raw UNNEST"),
            "≥ 50%",
            format!(
                "{} rows/s: {}",
                slash(&|d| rate(f(&d["rows_per_s"]))),
                slash(&|d| ratio(f(&d["rows_per_s"]), pg_ref))
            ),
            met(best.zip(pg_ref).map(|(d, p)| d >= 0.5 * p)),
        );
    }

    let max_rss = |label: &str| {
        results
            .iter()
            .filter_map(|r| r["procs"][label]["rss_max_mib"].as_f64())
            .reduce(f64::max)
    };
    let (gateway, worker) = (max_rss("gateway"), max_rss("worker"));
    let mib = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
    t.row(
        "RSS max over every case, gateway / worker",
        "≤ 64 / 128 MiB",
        format!("{} / {} MiB", mib(gateway), mib(worker)),
        met(match (gateway, worker) {
            (None, None) => None,
            _ => Some(gateway.is_none_or(|g| g <= 64.0) && worker.is_none_or(|w| w <= 128.0)),
        }),
    );

    let missing: Vec<u64> = webhook
        .iter()
        .filter_map(|r| r["e2e"]["missing"].as_u64())
        .collect();
    let total = (!missing.is_empty()).then(|| missing.iter().sum::<u64>());
    t.row(
        "accepted messages missing as rows, every case",
        "0",
        total.map_or("-".into(), |n| n.to_string()),
        met(total.map(|n| n == 0)),
    );
    Ok(t.markdown())
}

#[derive(Default)]
struct Table(Vec<[String; 4]>);

impl Table {
    fn row(
        &mut self,
        measure: impl Into<String>,
        target: impl Into<String>,
        current: impl Into<String>,
        met: impl Into<String>,
    ) {
        self.0
            .push([measure.into(), target.into(), current.into(), met.into()]);
    }

    fn markdown(&self) -> String {
        let mut out = String::from("| measure | target | current | met |\n|---|---|---|---|\n");
        for cells in &self.0 {
            out.push('|');
            for cell in cells {
                out += &if cell.is_empty() {
                    " |".to_owned()
                } else {
                    format!(" {cell} |")
                };
            }
            out.push('\n');
        }
        out
    }
}

fn met(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => MET,
        Some(false) => MISSED,
        None => UNMEASURED,
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// "lo-hi" of the figures (one figure when they agree), "-" when there are none.
fn span(values: &[f64], fmt: impl Fn(f64) -> String) -> String {
    let lo = values.iter().copied().reduce(f64::min);
    let hi = values.iter().copied().reduce(f64::max);
    match (lo, hi) {
        (Some(lo), Some(hi)) if fmt(lo) != fmt(hi) => format!("{}-{}", fmt(lo), fmt(hi)),
        (Some(lo), _) => fmt(lo),
        _ => "-".into(),
    }
}

/// Milliseconds with one unit for the span: seconds from a second, whole ms from 100.
fn ms(values: &[f64]) -> String {
    let hi = values.iter().copied().reduce(f64::max).unwrap_or(f64::NAN);
    if hi.is_nan() {
        return "-".into();
    }
    if hi >= 1000.0 {
        format!("{} s", span(values, |v| format!("{:.1}", v / 1000.0)))
    } else if hi >= 100.0 {
        format!("{} ms", span(values, |v| format!("{v:.0}")))
    } else {
        format!("{} ms", span(values, |v| format!("{v:.1}")))
    }
}

fn rate(v: f64) -> String {
    if v.is_nan() {
        return "-".into();
    }
    let s = (v.round() as i64).to_string();
    let mut grouped = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    grouped
}

fn ratio(v: f64, ceiling: Option<f64>) -> String {
    match ceiling {
        Some(c) if c > 0.0 && !v.is_nan() => format!("{:.0}%", v / c * 100.0),
        _ => "-".into(),
    }
}

fn ok_only(r: &Value) -> bool {
    r["statuses"]
        .as_object()
        .is_some_and(|m| m.keys().all(|k| k == "200"))
}

#[cfg(test)]
mod tests;
