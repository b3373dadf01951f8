use super::*;

const REFS: [&str; 3] = [
    r#"{"kind":"health","connections":64,"accepted_per_s":40000.0,"latency":{},"procs":{}}"#,
    r#"{"kind":"nats","stream":"BENCH_REF","dup":0.0,"acked_per_s":50000.0,"latency":{},"procs":{}}"#,
    r#"{"kind":"pg","batch":500,"rows_per_s":100000.0,"procs":{}}"#,
];

fn closed(conns: u32, acc: f64, p99: f64, workers: u32) -> String {
    format!(
        r#"{{"kind":"webhook","mode":"closed","connections":{conns},"accepted_per_s":{acc},"latency":{{"p99_ms":{p99}}},"statuses":{{"200":10}},"e2e":{{"missing":0,"latency":{{}}}},"workers_on_box":{workers},"procs":{{"gateway":{{"rss_max_mib":30.0}}}}}}"#
    )
}

fn has(md: &str, row: &str) {
    assert!(md.contains(row), "no {row:?} in:\n{md}");
}

#[test]
fn each_target_is_one_row_with_its_figure_and_verdict() {
    let lines = [
        REFS.join("\n"),
        closed(64, 25000.0, 12.5, 1),
        closed(64, 30000.0, 8.31, 0),
        r#"{"kind":"drain","workers":1,"rows":10,"rows_per_s":40000.0,"procs":{}}"#.into(),
    ]
    .join("\n");
    let md = render(&lines).unwrap();
    assert!(
        md.starts_with("| measure | target | current | met |\n|---|---|---|---|\n"),
        "{md}"
    );
    has(
        &md,
        "| ceilings: `GET /health/live` (64 conns); raw JetStream publish + PubAck; the worker's insert alone (raw UNNEST) | | 40,000 req/s; 50,000 msg/s; 100,000 rows/s | |",
    );
    // 30,000 of 40,000 health; the case with a worker gets rows of its own.
    has(
        &md,
        "| accepted/s, no worker on the box (best: 64 conns) | ≥ 20,000/s | **30,000/s** | yes |\n| the same against `/health/live` at the same conns | ≥ 50% | 75% | yes |",
    );
    has(
        &md,
        "| accepted/s with a worker on the box (best: 64 conns) | ≥ 20,000/s | 25,000/s | yes |\n| the same against `/health/live` at the same conns | ≥ 50% | 62% | yes |",
    );
    has(
        &md,
        "| request p99 at 64 conns, with a worker | ≤ 50 ms | 12.5 ms (8.3 ms without) | yes |",
    );
    has(
        &md,
        "| worker drain, 1 worker, against raw UNNEST | ≥ 50% | 40,000 rows/s: 40% | **no** |",
    );
    has(
        &md,
        "| open loop 5,000/s: request p99 | ≤ 20 ms | - | not measured |",
    );
    has(
        &md,
        "| RSS max over every case, gateway / worker | ≤ 64 / 128 MiB | 30.0 / - MiB | yes |",
    );
    has(
        &md,
        "| accepted messages missing as rows, every case | 0 | 0 | yes |",
    );
    // The run's context (headings, commit, date, load) stays out of the table.
    assert!(md.lines().all(|l| l.starts_with('|')), "{md}");
}

#[test]
fn a_missed_target_and_an_unmeasured_one_say_so() {
    let open = |rate: u32, p99: f64, e2e: f64, missing: u32| {
        format!(
            r#"{{"kind":"webhook","mode":"open","rate":{rate},"connections":128,"accepted_per_s":{rate},"latency":{{"p50_ms":2.62,"p99_ms":{p99}}},"statuses":{{"200":10}},"e2e":{{"missing":{missing},"latency":{{"p99_ms":{e2e}}}}},"workers_on_box":1,"procs":{{}}}}"#
        )
    };
    let lines = [
        REFS.join("\n"),
        closed(64, 12000.0, 60.0, 1),
        open(5000, 128.4, 204.0, 0),
        open(10000, 329.0, 14623.0, 2),
    ]
    .join("\n");
    let md = render(&lines).unwrap();
    has(
        &md,
        "| accepted/s, no worker on the box | ≥ 20,000/s | - | not measured |",
    );
    has(
        &md,
        "| accepted/s with a worker on the box (best: 64 conns) | ≥ 20,000/s | 12,000/s | **no** |",
    );
    has(
        &md,
        "| request p99 at 64 conns, with a worker | ≤ 50 ms | 60.0 ms | **no** |",
    );
    has(
        &md,
        "| open loop 5,000/s: request p99 | ≤ 20 ms | 128 ms (p50 2.6 ms) | **no** |",
    );
    has(
        &md,
        "| open loop 5,000/s: e2e p99 | ≤ 250 ms | 204 ms (at 10,000/s: 14.6 s) | yes |",
    );
    has(
        &md,
        "| worker drain against raw UNNEST | ≥ 50% | - | not measured |",
    );
    has(
        &md,
        "| accepted messages missing as rows, every case | 0 | 2 | **no** |",
    );
}
