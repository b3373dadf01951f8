//! `ingest-bench`: the load generator and the reference measurements of BENCHMARKS.md.
//!
//! ```text
//! ingest-bench http   --target http://127.0.0.1:8000 [--path /webhook] --secret S --requests N
//!                     [--dup 0.2] [--connections 64] [--rate R --duration SECS]
//!                     [--e2e-db URL] [--watch label=PID | label=comm:NAME | label=db:NAME]...
//!                     [--out results.jsonl]
//!                     [--workers-on-box N]   # recorded: how many workers drained during the load
//! ingest-bench nats   --requests N [--dup F] [--inflight 1024] [--stream S --subject S] [--scratch]
//! ingest-bench pg     --requests N [--batch 500]
//! ingest-bench upkeep --requests N [--batch 500] [--repeat 3]   # the aggregates' cost per row
//! ingest-bench drain  --expect N [--timeout SECS]
//!                     [--metrics HOST:PORT,...  --ts-from UNIX_SECS]  # growth: see below
//! ingest-bench reset  --stream S [--purge 1]             # deletes (or empties) a stream (bench runs only)
//! ingest-bench report --results results.jsonl            # markdown tables on stdout
//! ingest-bench unstore         --ts-from UNIX_SECS --ts-to UNIX_SECS  # delete, out of the aggregates
//! ingest-bench count-in        --ts-from UNIX_SECS --ts-to UNIX_SECS  # SQL-loaded rows into them
//! ingest-bench retention-probe --cutoff UNIX_SECS [--timeout SECS]     # how long the table blocks
//! ```
//! `nats` also takes `--ts-base UNIX_SECS` (the first message's ts) and `--ids hashed` (ids spread
//! over the whole index like real senders'). `drain --metrics` waits on the workers' own count
//! instead of counting `messages`, and with `--ts-from` finds the drained rows by their ts, so
//! neither costs Postgres anything that grows with the table; it also reports each watched
//! process's CPU per stored row. The last three serve scripts/bench-growth.sh.
//!
//! `http`, `nats`, `pg` and `upkeep` build their messages with `--text chat|short` (or `BENCH_TEXT`;
//! default chat: the mix of BENCHMARKS.md; short: every text 5-160 characters).
//! Every measuring command prints one JSON object and appends it to `--out` when given.
//! `scripts/bench.sh` runs the whole matrix.

const USAGE: &str = "usage: ingest-bench http|nats|pg|upkeep|drain|reset|report|unstore|count-in|retention-probe \
    --option value ...; \
    every option is in the header of ingest-bench/src/main.rs, and scripts/bench.sh runs them all";

mod e2e;
mod growth;
mod http;
mod procmon;
mod refs;
mod report;
mod stats;
mod upkeep;
mod workload;

use std::collections::HashMap;
use std::io::Write as _;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::procmon::Monitor;
use crate::stats::Summary;
use crate::workload::Spec;

struct Args {
    command: String,
    values: HashMap<String, Vec<String>>,
}

impl Args {
    fn parse() -> anyhow::Result<Self> {
        let mut it = std::env::args().skip(1);
        let command = it.next().unwrap_or_else(|| "help".into());
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        while let Some(key) = it.next() {
            if key == "--help" || key == "-h" {
                return Ok(Self {
                    command: "help".into(),
                    values,
                });
            }
            let Some(name) = key.strip_prefix("--") else {
                bail!("unexpected argument {key:?}");
            };
            let value = it
                .next()
                .with_context(|| format!("--{name} needs a value"))?;
            values.entry(name.to_owned()).or_default().push(value);
        }
        Ok(Self { command, values })
    }

    fn str(&self, name: &str) -> Option<&str> {
        self.values.get(name)?.last().map(String::as_str)
    }

    fn str_or(&self, name: &str, default: &str) -> String {
        self.str(name).unwrap_or(default).to_owned()
    }

    fn env_or(&self, name: &str, env: &str, default: &str) -> String {
        self.str(name)
            .map(str::to_owned)
            .or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| default.to_owned())
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.str(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|e| anyhow::anyhow!("--{name} {v:?}: {e}")),
        }
    }

    fn all(&self, name: &str) -> &[String] {
        self.values.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    fn spec(&self) -> anyhow::Result<Spec> {
        Ok(Spec {
            requests: self.num("requests", 100_000)?,
            dup_fraction: self.num("dup", 0.0)?,
            senders: self.num("senders", 10_000)?,
            sender_skew: self.num("sender-skew", 1.0)?,
            seed: self.num("seed", 42)?,
            run_id: self.str_or("run-id", &format!("bench{}", std::process::id())),
            text: self
                .env_or("text", "BENCH_TEXT", "chat")
                .parse()
                .map_err(|e| anyhow::anyhow!("--text: {e}"))?,
            ts_base: self.num("ts-base", workload::DEFAULT_TS_BASE)?,
            ids: self
                .str_or("ids", "sequential")
                .parse()
                .map_err(|e| anyhow::anyhow!("--ids: {e}"))?,
        })
    }

    fn monitor(&self) -> anyhow::Result<Monitor> {
        let targets = self
            .all("watch")
            .iter()
            .map(|w| procmon::parse_watch(w))
            .collect::<anyhow::Result<_>>()?;
        Ok(Monitor::start(targets, Duration::from_millis(250)))
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    if args.command == "report" {
        let path = args.str("results").context("--results FILE")?;
        print!("{}", report::render(&std::fs::read_to_string(path)?)?);
        return Ok(());
    }
    // One thread by default: the generator shares the box with the system under test, and one
    // core's worth of raw sockets outruns the gateway on the other.
    let threads: usize = args.num("threads", 1)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    let mut result = runtime.block_on(async {
        match args.command.as_str() {
            "http" => run_http(&args).await,
            "nats" => run_nats(&args).await,
            "pg" => run_pg(&args).await,
            "upkeep" => run_upkeep(&args).await,
            "drain" => run_drain(&args).await,
            "reset" => run_reset(&args).await,
            "unstore" => run_unstore(&args).await,
            "count-in" => run_count_in(&args).await,
            "retention-probe" => run_retention_probe(&args).await,
            command => {
                eprintln!("{USAGE}");
                let asked = matches!(command, "help" | "--help" | "-h");
                std::process::exit(if asked { 0 } else { 2 })
            }
        }
    })?;
    result["label"] = json!(args.str_or("label", &args.command));
    let line = serde_json::to_string(&result)?;
    println!("{line}");
    if let Some(out) = args.str("out") {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)?;
        writeln!(file, "{line}")?;
    }
    Ok(())
}

/// A pool with the services' own connection settings (`TCP_NODELAY` above all), so what the
/// bench measures through it is the database, not sqlx's socket defaults.
pub(crate) async fn database(url: &str, max_connections: u32) -> anyhow::Result<sqlx::PgPool> {
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    Ok(ingest_shared::db::pool_options(&options)
        .max_connections(max_connections)
        .connect_with(options)
        .await?)
}

fn secret(args: &Args) -> String {
    args.env_or("secret", "WEBHOOK_SECRET", "dev-secret-change-me")
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

async fn run_http(args: &Args) -> anyhow::Result<Value> {
    let target = args.str_or("target", "http://127.0.0.1:8000");
    let host = target
        .strip_prefix("http://")
        .context("--target must be http://host:port")?
        .trim_end_matches('/')
        .to_owned();
    let addr = host
        .to_socket_addrs()?
        .next()
        .context("--target resolves to nothing")?;
    let path = args.str_or("path", "/webhook");
    let connections: usize = args.num("connections", 64)?;
    let workers_on_box: Option<usize> = args.str("workers-on-box").map(str::parse).transpose()?;
    let rate: Option<f64> = args.str("rate").map(str::parse).transpose()?;
    let duration: Option<f64> = args.str("duration").map(str::parse).transpose()?;
    let mut spec = args.spec()?;
    if let (Some(rate), Some(secs)) = (rate, duration) {
        spec.requests = (rate * secs).round() as usize;
    }

    let workload = workload::build(&spec, secret(args).as_bytes());
    let is_webhook = path == "/webhook";
    let wires: Vec<bytes::Bytes> = if is_webhook {
        workload
            .bodies
            .iter()
            .zip(&workload.signatures)
            .map(|(b, s)| http::render_post(&host, &path, b, s))
            .collect()
    } else {
        vec![http::render_get(&host, &path); workload.unique()]
    };
    let db = match args.str("e2e-db") {
        Some(url) if is_webhook => Some(database(url, 2).await?),
        _ => None,
    };
    let baseline = match &db {
        Some(db) => e2e::row_count(db).await?,
        None => 0,
    };
    let mode = match rate {
        Some(rate) => http::Mode::Open { rate },
        None => http::Mode::Closed,
    };

    let monitor = args.monitor()?;
    let outcome = http::drive(
        addr,
        Arc::new(wires),
        Arc::new(workload.order.clone()),
        connections,
        mode,
        duration.map(|d| Duration::from_secs_f64(d + 1.0)),
    )
    .await?;
    let load_end_us = outcome.started_unix_us + outcome.elapsed.as_micros() as i64;

    let e2e = match &db {
        Some(db) => {
            let mut sent_us = vec![None; workload.unique()];
            for &(i, status, at) in &outcome.sent {
                if status == 200 {
                    let slot = &mut sent_us[workload.order[i] as usize];
                    let at = outcome.started_unix_us + at.as_micros() as i64;
                    *slot = Some(slot.map_or(at, |s: i64| s.min(at)));
                }
            }
            let timeout = Duration::from_secs(args.num("e2e-timeout", 180)?);
            Some(
                e2e::wait_for_rows(db, &spec.run_id, &sent_us, baseline, load_end_us, timeout)
                    .await?,
            )
        }
        None => None,
    };
    let procs = monitor.finish();

    let ok = outcome.statuses.get(&200).copied().unwrap_or(0);
    let secs = outcome.elapsed.as_secs_f64();
    Ok(json!({
        "kind": if is_webhook { "webhook" } else { "health" },
        "path": path,
        "mode": if rate.is_some() { "open" } else { "closed" },
        "rate": rate,
        "connections": connections,
        "dup": spec.dup_fraction,
        "requests": outcome.sent.len(),
        "unique": workload.unique(),
        "elapsed_s": secs,
        "accepted_per_s": ok as f64 / secs,
        "sent_per_s": outcome.sent.len() as f64 / secs,
        "statuses": outcome.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "latency": Summary::of(&outcome.latency),
        "e2e": e2e,
        "workers_on_box": workers_on_box,
        "procs": procs,
    }))
}

async fn run_nats(args: &Args) -> anyhow::Result<Value> {
    let url = args.env_or("nats-url", "NATS_URL", "nats://127.0.0.1:4222");
    let spec = args.spec()?;
    let inflight: usize = args.num("inflight", 1024)?;
    let scratch = args.str("scratch").is_some_and(|v| v == "1" || v == "true");
    let workload = workload::build(&spec, secret(args).as_bytes());
    let client = async_nats::connect(&url).await?;
    let js = async_nats::jetstream::new(client.clone());
    let mut settings =
        ingest_shared::nats::StreamSettings::from_env(&ingest_shared::config::ProcessEnv)?;
    if scratch {
        // A stream of its own, configured like the real one, that no consumer drains.
        settings.stream = "BENCH_REF".into();
        settings.subject = "bench.ref".into();
        let _ = js.delete_stream(&settings.stream).await;
    }
    settings.stream = args.str_or("stream", &settings.stream);
    settings.subject = args.str_or("subject", &settings.subject);
    ingest_shared::nats::ensure_stream(&js, &settings).await?;

    let monitor = args.monitor()?;
    let published = refs::publish(&js, &settings.subject, &workload, inflight).await?;
    let procs = monitor.finish();
    if scratch {
        js.delete_stream(&settings.stream).await?;
    }
    let secs = published.elapsed.as_secs_f64();
    Ok(json!({
        "kind": "nats",
        "stream": settings.stream,
        "inflight": inflight,
        "dup": spec.dup_fraction,
        "requests": workload.order.len(),
        "unique": workload.unique(),
        "elapsed_s": secs,
        "acked_per_s": published.acked as f64 / secs,
        "acked": published.acked,
        "duplicates": published.duplicates,
        "errors": published.errors,
        "latency": Summary::of(&published.latency),
        "procs": procs,
    }))
}

async fn run_pg(args: &Args) -> anyhow::Result<Value> {
    let url = database_url(args);
    let mut spec = args.spec()?;
    spec.dup_fraction = 0.0;
    let batch: usize = args.num("batch", 500)?;
    let workload = workload::build(&spec, secret(args).as_bytes());
    let monitor = args.monitor()?;
    let upserted = refs::upsert(&url, &workload, batch).await?;
    let procs = monitor.finish();
    let secs = upserted.elapsed.as_secs_f64();
    Ok(json!({
        "kind": "pg",
        "batch": batch,
        "rows": upserted.rows,
        "inserted": upserted.inserted,
        "batches": upserted.batches,
        "elapsed_s": secs,
        "rows_per_s": upserted.rows as f64 / secs,
        "procs": procs,
    }))
}

/// Needs a database of its own: it empties `messages` and the aggregates before each pass and
/// at the end.
async fn run_upkeep(args: &Args) -> anyhow::Result<Value> {
    let url = args.env_or(
        "database-url",
        "DATABASE_URL",
        ingest_shared::config::DEFAULT_DATABASE_URL,
    );
    let mut spec = args.spec()?;
    spec.dup_fraction = 0.0;
    let batch: usize = args.num("batch", 500)?;
    let repeat: usize = args.num("repeat", 3)?;
    let workload = workload::build(&spec, secret(args).as_bytes());
    let passes = upkeep::measure(&url, &workload, batch, repeat).await?;
    let median = |mode: upkeep::Mode, of: fn(&upkeep::Pass) -> f64| {
        let mut v: Vec<f64> = passes.iter().filter(|p| p.mode == mode).map(of).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let (bare, kept) = (upkeep::Mode::InsertOnly, upkeep::Mode::WithUpkeep);
    Ok(json!({
        "kind": "upkeep",
        "batch": batch,
        "rows": workload.unique(),
        "repeat": repeat,
        "insert_rows_per_s": median(bare, |p| p.rows_per_s),
        "upkeep_rows_per_s": median(kept, |p| p.rows_per_s),
        "insert_backend_us": median(bare, |p| p.backend_us_per_row),
        "upkeep_backend_us": median(kept, |p| p.backend_us_per_row),
        "insert_postgres_us": median(bare, |p| p.postgres_us_per_row),
        "upkeep_postgres_us": median(kept, |p| p.postgres_us_per_row),
        "mismatches": passes.iter().filter_map(|p| p.mismatches).sum::<i64>(),
        "passes": passes,
    }))
}

async fn run_drain(args: &Args) -> anyhow::Result<Value> {
    let url = database_url(args);
    let expect: i64 = args.num("expect", 500_000)?;
    let baseline: i64 = args.num("baseline", 0)?;
    let since_us: i64 = args.num("since-us", chrono::Utc::now().timestamp_micros())?;
    let timeout = Duration::from_secs(args.num("timeout", 600)?);
    let workers: Vec<String> = args
        .str("metrics")
        .map(|m| m.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let db = database(&url, 1).await?;
    let monitor = args.monitor()?;
    let (rows, rows_per_s, wall_s, procs) = if workers.is_empty() {
        let drained = e2e::wait_for_drain(&db, baseline, expect, since_us, timeout).await?;
        let procs = monitor.finish();
        (drained.rows, drained.rows_per_s, drained.wall_s, procs)
    } else {
        let ts_from = unix_arg(args, "ts-from")?;
        let wall_s = growth::wait_for_workers(&workers, expect as u64, timeout).await?;
        // Stopped before the rows are read back: that query is the bench's, not the drain's.
        let procs = monitor.finish();
        let drained = growth::drained_since(&db, ts_from, wall_s).await?;
        (drained.rows, drained.rows_per_s, drained.wall_s, procs)
    };
    // CPU time per stored row: the average share of a core over the wait, times the wait.
    let us_per_row: serde_json::Map<String, Value> = procs
        .iter()
        .map(|(label, usage)| {
            let us = usage.cpu_pct / 100.0 * wall_s * 1e6 / rows.max(1) as f64;
            (label.clone(), json!(us))
        })
        .collect();
    Ok(json!({
        "kind": "drain",
        "workers": args.num("workers", 1u32)?,
        "expect": expect,
        "rows": rows,
        "rows_per_s": rows_per_s,
        "wall_s": wall_s,
        "cpu_us_per_row": us_per_row,
        "procs": procs,
    }))
}

fn database_url(args: &Args) -> String {
    args.env_or(
        "database-url",
        "DATABASE_URL",
        ingest_shared::config::DEFAULT_DATABASE_URL,
    )
}

/// A `--name UNIX_SECS` option as a timestamp.
fn unix_arg(args: &Args, name: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    let secs: i64 = args
        .str(name)
        .with_context(|| format!("--{name} UNIX_SECS"))?
        .parse()
        .map_err(|e| anyhow::anyhow!("--{name}: {e}"))?;
    chrono::DateTime::from_timestamp(secs, 0).with_context(|| format!("--{name} out of range"))
}

async fn run_unstore(args: &Args) -> anyhow::Result<Value> {
    let (from, to) = (unix_arg(args, "ts-from")?, unix_arg(args, "ts-to")?);
    let db = database(&database_url(args), 1).await?;
    let started = std::time::Instant::now();
    let removed = growth::unstore(&db, from, to).await?;
    Ok(json!({"kind": "unstore", "rows": removed, "elapsed_s": started.elapsed().as_secs_f64()}))
}

async fn run_count_in(args: &Args) -> anyhow::Result<Value> {
    let (from, to) = (unix_arg(args, "ts-from")?, unix_arg(args, "ts-to")?);
    let db = database(&database_url(args), 1).await?;
    let started = std::time::Instant::now();
    let added = growth::count_in(&db, from, to, chrono::Duration::days(1)).await?;
    Ok(json!({"kind": "count-in", "rows": added, "elapsed_s": started.elapsed().as_secs_f64()}))
}

async fn run_retention_probe(args: &Args) -> anyhow::Result<Value> {
    let cutoff = unix_arg(args, "cutoff")?;
    let timeout = Duration::from_secs(args.num("timeout", 1800)?);
    let db = database(&database_url(args), 2).await?;
    let blocked = growth::probe_until_expired(&db, cutoff, timeout).await?;
    Ok(json!({"kind": "retention", "blocked": blocked}))
}

/// A run starts from an empty stream, so a backlog left by an earlier run cannot inflate it.
async fn run_reset(args: &Args) -> anyhow::Result<Value> {
    let url = args.env_or("nats-url", "NATS_URL", "nats://127.0.0.1:4222");
    let stream = args.str("stream").context("--stream NAME")?;
    let js = async_nats::jetstream::new(async_nats::connect(&url).await?);
    if args.str("purge").is_some_and(|v| v == "1" || v == "true") {
        // Empties the stream but keeps it and its consumer, for processes that hold both.
        let purged = js.get_stream(stream).await?.purge().await?.purged;
        return Ok(json!({"kind": "reset", "stream": stream, "purged": purged}));
    }
    let deleted = js.delete_stream(stream).await.is_ok();
    Ok(json!({"kind": "reset", "stream": stream, "deleted": deleted}))
}
