//! Observability end to end: counters, gauges, the JSON log lines of both binaries, and the
//! dashboard and alerts checked against what the binaries really export.
//!
//! The log subscriber and the Prometheus recorder are process-wide, and every app in this
//! process writes to both. So this file is a test binary of its own, its tests take turns
//! (`SERIAL`), and counters are compared as deltas between two scrapes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use integration_tests::{Running, SECRET, TestEnv, eventually};
use serde_json::{Value, json};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

// ---------------------------------------------------------------------------------------------
// Captured logs

/// Every log line of this process, as the apps wrote it. Echoed to stdout when `TEST_LOG` is set.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        if std::env::var_os("TEST_LOG").is_some() {
            std::io::stdout().write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("logs are UTF-8")
    }

    /// Every line, parsed; a line that is not a JSON object fails the test.
    fn lines(&self) -> Vec<serde_json::Map<String, Value>> {
        self.text()
            .lines()
            .map(|line| match serde_json::from_str(line) {
                Ok(Value::Object(map)) => map,
                _ => panic!("log line is not a JSON object: {line}"),
            })
            .collect()
    }
}

/// Installs the capturing subscriber before any app starts (and before `TestEnv::new`, which
/// would install the stdout one when `TEST_LOG` is set).
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        assert!(
            ingest_shared::telemetry::init_logging_with_writer("info", move || writer.clone()),
            "another log subscriber was installed first"
        );
        captured
    })
}

fn str_field<'a>(line: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a str> {
    line.get(name).and_then(Value::as_str)
}

fn listed(line: &serde_json::Map<String, Value>, field: &str, id: &str) -> bool {
    str_field(line, field).is_some_and(|ids| ids.split(',').any(|x| x == id))
}

// ---------------------------------------------------------------------------------------------
// Prometheus text

#[derive(Debug, Default)]
struct Scrape {
    /// `name{a="x",b="y"}` with labels sorted -> value.
    samples: HashMap<String, f64>,
    /// Names of the sample lines (`x_bucket`, `x_sum`, … for a histogram).
    sample_names: HashSet<String>,
    /// `# TYPE` lines: metric name -> type.
    types: HashMap<String, String>,
}

fn series_key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    labels.sort();
    if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{}}}", labels.join(","))
    }
}

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut scrape = Scrape::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
                scrape.types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad sample value: {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series, Vec::new()),
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
            };
            let labels: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            scrape.sample_names.insert(name.to_owned());
            scrape.samples.insert(series_key(name, &labels), value);
        }
        scrape
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples.get(&series_key(name, labels)).copied()
    }

    /// The value of a series that must exist.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no series {}", series_key(name, labels)))
    }

    /// Whether PromQL can select `name` from this scrape: a sample name (so `x_bucket` only
    /// exists for a real histogram, not a summary), or a declared metric family.
    fn has(&self, name: &str) -> bool {
        self.sample_names.contains(name) || self.types.contains_key(name)
    }

    fn merge(mut self, other: Scrape) -> Scrape {
        self.samples.extend(other.samples);
        self.sample_names.extend(other.sample_names);
        self.types.extend(other.types);
        self
    }
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let name = name.trim().trim_start_matches(',').trim().to_owned();
        if name.is_empty() {
            return labels;
        }
        assert_eq!(chars.next(), Some('"'), "label {name} has a quoted value");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.push(chars.next().unwrap_or('\\')),
                '"' => break,
                c => value.push(c),
            }
        }
        labels.push((name, value));
    }
}

async fn scrape(env: &TestEnv, app: &Running) -> Scrape {
    let response = env.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    Scrape::parse(&response.text().await.unwrap())
}

// ---------------------------------------------------------------------------------------------
// PromQL, dashboard and alerts

/// Words that are PromQL syntax, never a metric: aggregations (which may be followed by
/// `by (...)` before their parenthesis) and binary/modifier keywords.
const PROMQL_KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
];
/// Keywords whose parenthesis holds label names, not an expression.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Index just past the `close` that ends the group opened at `open`; quoted strings inside are
/// skipped whole.
fn skip_group(chars: &[char], open: usize, close: char) -> usize {
    let mut i = open + 1;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(chars, i),
            c if c == close => return i + 1,
            _ => i += 1,
        }
    }
    i
}

fn skip_string(chars: &[char], open: usize) -> usize {
    let quote = chars[open];
    let mut i = open + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// The metric names a PromQL expression selects: every identifier that is not a function, a
/// keyword, a label (in `{...}`, `by (...)`, …), a duration, a number or a Grafana variable.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&chars, i);
        } else if c == '{' {
            i = skip_group(&chars, i, '}');
        } else if c == '[' {
            i = skip_group(&chars, i, ']');
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = skip_group(&chars, i, '}');
            } else {
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let called = chars.get(next) == Some(&'(');
            let lower = word.to_ascii_lowercase();
            if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                if called {
                    i = skip_group(&chars, next, ')');
                }
            } else if !called && !PROMQL_KEYWORDS.contains(&lower.as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Every `expr` string anywhere in a Grafana dashboard.
fn dashboard_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// The `expr:` values of a Prometheus rules file: plain, quoted, or a `|`/`>` block.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let Some(rest) = trimmed
            .strip_prefix("expr:")
            .or_else(|| trimmed.strip_prefix("- expr:"))
        else {
            continue;
        };
        let indent = line.len() - trimmed.len();
        let rest = rest.trim();
        if rest.starts_with('|') || rest.starts_with('>') {
            let block: Vec<&str> = lines[n + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect();
            exprs.push(block.join(" ").trim().to_owned());
        } else {
            let unquoted = rest
                .strip_prefix('"')
                .and_then(|r| r.strip_suffix('"'))
                .or_else(|| rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
                .unwrap_or(rest);
            exprs.push(unquoted.to_owned());
        }
    }
    exprs
}

/// Series the binaries do not export: `up`, which Prometheus adds to every target, and those of
/// the Postgres exporter docker-compose.yml runs (docs/operations.md, "Postgres and NATS").
const PROMETHEUS_SYNTHETIC: &[&str] = &[
    "up",
    "pg_up",
    "pg_stat_database_numbackends",
    "pg_settings_max_connections",
    "pg_database_size_bytes",
];

/// The names used by `exprs` that `scrape` does not have.
fn unknown_metrics(exprs: &[String], scrape: &Scrape) -> BTreeSet<String> {
    exprs
        .iter()
        .flat_map(|e| metric_names(e))
        .filter(|name| !scrape.has(name) && !PROMETHEUS_SYNTHETIC.contains(&name.as_str()))
        .collect()
}

fn repo_file(path: &str) -> String {
    let full = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {full}: {e}"))
}

/// `(name, type)` of every row of the documented metrics table (docs/operations.md, the
/// "Observability" section).
fn readme_metrics() -> Vec<(String, String)> {
    let readme = repo_file("docs/operations.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Observability"))
        .expect("docs/operations.md has an Observability section");
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let kind = cells.get(2)?;
            ["counter", "gauge", "histogram"]
                .contains(kind)
                .then(|| (name.to_owned(), (*kind).to_owned()))
        })
        .collect()
}

#[test]
fn the_promql_reader_finds_metrics_and_only_metrics() {
    let expr = r#"histogram_quantile(0.99, sum by (le, path) (rate(request_latency_ms_bucket{path="/webhook",status=~"5.."}[$__rate_interval])))
        > 1e-3 and on(instance) group_left(job) max without (pod) (worker_ready offset 5m) / ignoring(state) sum(x:recorded:rate5m) + count(bool_metric) unless ${ds}"#;
    assert_eq!(
        metric_names(expr),
        [
            "bool_metric",
            "request_latency_ms_bucket",
            "worker_ready",
            "x:recorded:rate5m"
        ]
        .into_iter()
        .map(String::from)
        .collect::<BTreeSet<_>>()
    );
    let yaml = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: foo > 1\n      - alert: B\n        expr: |\n          sum(bar)\n            > 2\n        for: 1m\n      - alert: C\n        expr: \"baz == 0\"\n";
    assert_eq!(rule_exprs(yaml), ["foo > 1", "sum(bar) > 2", "baz == 0"]);
    let scrape = Scrape::parse(
        "# TYPE foo counter\nfoo 1\n# TYPE lat histogram\nlat_bucket{le=\"+Inf\"} 0\nlat_sum 0\nlat_count 0\n",
    );
    assert_eq!(
        unknown_metrics(
            &["foo + lat_count + lat_bucket + up + nope_bucket + lat_total".into()],
            &scrape
        ),
        ["lat_total", "nope_bucket"]
            .into_iter()
            .map(String::from)
            .collect::<BTreeSet<_>>()
    );
}

// ---------------------------------------------------------------------------------------------
// The tests

fn body(id: &str, marker: &str) -> String {
    json!({
        "message_id": id,
        "from": "+919876543210",
        "to": "+14155550100",
        "ts": "2025-01-15T10:00:00Z",
        "text": marker,
    })
    .to_string()
}

fn sign(secret: &str, body: &str) -> String {
    ingest_shared::signature::sign(secret.as_bytes(), body.as_bytes())
}

struct Sent {
    request_id: String,
    status: u16,
    result: &'static str,
    message_id: Option<&'static str>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_sequence_shows_in_the_counters_and_in_both_binaries_logs() {
    let _serial = SERIAL.lock().await;
    let logs = logs();
    let env = TestEnv::new().await;
    let gateway = env
        .start_gateway(env.gateway_config(&[("MAX_BODY_BYTES", "1024")]))
        .await;
    let worker = env
        .start_worker(env.worker_config(&[("LAG_POLL_SECS", "1")]))
        .await;
    env.wait_stream_ready().await;
    let (gw_before, wk_before) = (scrape(&env, &gateway).await, scrape(&env, &worker).await);

    let marker = format!("body-marker-{}", env.id);
    let mut signatures = Vec::new();
    let mut sent = Vec::new();
    let mut post = async |body: String,
                          signature: String,
                          headers: &[(&str, &str)],
                          result: &'static str,
                          message_id: Option<&'static str>| {
        let mut request = env
            .http
            .post(gateway.url("/webhook"))
            .header("content-type", "application/json")
            .header("x-signature", &signature)
            .body(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let status = response.status().as_u16();
        signatures.push(signature);
        sent.push(Sent {
            request_id: request_id.clone(),
            status,
            result,
            message_id,
        });
        (status, request_id)
    };

    let caller_id = format!("caller-{}.a:1", env.id);
    let a = body("obs-a", &marker);
    let (status, id_a) = post(
        a.clone(),
        sign(SECRET, &a),
        &[
            ("x-request-id", caller_id.as_str()),
            ("traceparent", TRACEPARENT),
        ],
        "created",
        Some("obs-a"),
    )
    .await;
    assert_eq!((status, id_a.as_str()), (200, caller_id.as_str()));

    let b = body("obs-b", &marker);
    let (status, id_b) = post(b.clone(), sign(SECRET, &b), &[], "created", Some("obs-b")).await;
    assert_eq!(status, 200);
    assert!(uuid::Uuid::parse_str(&id_b).is_ok(), "generated id: {id_b}");

    let (status, _) = post(a.clone(), sign(SECRET, &a), &[], "duplicate", Some("obs-a")).await;
    assert_eq!(status, 200);

    let c = body("obs-c", &marker);
    let insane = "has spaces; and = signs";
    let (status, id_c) = post(
        c.clone(),
        sign("wrong-secret", &c),
        &[("x-request-id", insane)],
        "invalid_signature",
        None,
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        uuid::Uuid::parse_str(&id_c).is_ok() && !id_c.contains(' '),
        "an insane X-Request-Id ({insane:?}) is replaced: {id_c}"
    );

    let invalid = json!({"message_id": "obs-d", "from": "12345", "to": "+14155550100",
        "ts": "2025-01-15T10:00:00Z", "text": marker})
    .to_string();
    let (status, _) = post(
        invalid.clone(),
        sign(SECRET, &invalid),
        &[],
        "validation_error",
        None,
    )
    .await;
    assert_eq!(status, 422);

    let large = body("obs-e", &marker.repeat(60));
    assert!(large.len() > 1024);
    let (status, _) = post(large.clone(), sign(SECRET, &large), &[], "too_large", None).await;
    assert_eq!(status, 413);

    env.wait_for_rows(2).await;
    env.wait_drained().await;

    // Counters: exactly the sequence above.
    let gw = scrape(&env, &gateway).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        gw.value(name, labels) - gw_before.value(name, labels)
    };
    for (result, n) in [
        ("created", 2.0),
        ("duplicate", 1.0),
        ("invalid_signature", 1.0),
        ("validation_error", 1.0),
        ("too_large", 1.0),
        ("unavailable", 0.0),
    ] {
        assert_eq!(
            delta("webhook_requests_total", &[("result", result)]),
            n,
            "webhook_requests_total{{result={result}}}"
        );
    }
    for (status, n) in [("200", 3.0), ("401", 1.0), ("422", 1.0), ("413", 1.0)] {
        assert_eq!(
            delta(
                "http_requests_total",
                &[("path", "/webhook"), ("status", status)]
            ),
            n,
            "http_requests_total{{status={status}}}"
        );
    }
    assert_eq!(
        delta("request_latency_ms_count", &[("path", "/webhook")]),
        6.0
    );
    let bounds: BTreeSet<String> = gw
        .samples
        .keys()
        .filter(|k| k.starts_with("request_latency_ms_bucket{") && k.contains("/webhook"))
        .filter_map(|k| k.split("le=\"").nth(1)?.split('"').next().map(String::from))
        .collect();
    for le in ["1", "5", "10", "50", "100", "500", "+Inf"] {
        assert!(bounds.contains(le), "bucket le={le} in {bounds:?}");
    }
    assert_eq!(
        delta(
            "request_latency_ms_bucket",
            &[("path", "/webhook"), ("le", "+Inf")]
        ),
        6.0
    );
    // Published three times: two new, one that JetStream recognised as a duplicate.
    assert_eq!(delta("gateway_publish_latency_ms_count", &[]), 3.0);
    // This scrape itself is in flight.
    assert!(gw.value("http_requests_in_flight", &[]) >= 1.0);

    let wk = eventually(Duration::from_secs(10), "worker counters", || async {
        let wk = scrape(&env, &worker).await;
        let d = |name: &str| wk.value(name, &[]) - wk_before.value(name, &[]);
        (d("worker_end_to_end_latency_ms_count") >= 2.0).then_some(wk)
    })
    .await;
    let d = |name: &str| wk.value(name, &[]) - wk_before.value(name, &[]);
    assert_eq!(d("worker_messages_consumed_total"), 2.0);
    assert_eq!(d("worker_rows_inserted_total"), 2.0);
    assert_eq!(d("worker_duplicates_skipped_total"), 0.0);
    assert_eq!(d("worker_redeliveries_total"), 0.0);
    assert_eq!(d("worker_dead_letters_total"), 0.0);
    assert_eq!(d("worker_end_to_end_latency_ms_count"), 2.0);
    assert_eq!(d("worker_batch_size_sum"), 2.0);
    let batches = d("worker_batches_total");
    assert!((1.0..=2.0).contains(&batches), "batches: {batches}");
    assert_eq!(d("worker_commit_latency_ms_count"), batches);
    assert_eq!(d("worker_batch_size_count"), batches);

    // Logs: one JSON line per request with every field, and the result in the same line.
    let lines = logs.lines();
    for s in &sent {
        let mine: Vec<_> = lines
            .iter()
            .filter(|l| {
                str_field(l, "msg") == Some("request")
                    && str_field(l, "request_id") == Some(&s.request_id)
            })
            .collect();
        assert_eq!(mine.len(), 1, "one access line for {}", s.request_id);
        let line = mine[0];
        let ts = str_field(line, "ts").expect("ts");
        assert!(
            ts.len() >= 20 && ts.as_bytes()[10] == b'T' && ts.ends_with('Z'),
            "ts is ISO-8601 UTC: {ts}"
        );
        assert_eq!(str_field(line, "level"), Some("INFO"));
        assert_eq!(str_field(line, "method"), Some("POST"));
        assert_eq!(str_field(line, "path"), Some("/webhook"));
        assert_eq!(line["status"], json!(s.status));
        assert!(line["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
        assert_eq!(str_field(line, "result"), Some(s.result));
        assert_eq!(line["dup"], json!(s.result == "duplicate"));
        assert_eq!(str_field(line, "message_id"), s.message_id);
        let traced = s.request_id == id_a;
        assert_eq!(
            str_field(line, "trace_id"),
            traced.then_some(TRACE_ID),
            "trace_id on {}",
            s.request_id
        );
    }

    // The same request (and trace) in the worker's line for the message it committed.
    let worker_line = |id: String| {
        let lines = logs.lines();
        async move {
            lines.into_iter().find(|l| {
                str_field(l, "target") == Some("ingest_worker::consume")
                    && listed(l, "request_ids", &id)
            })
        }
    };
    for id in [&id_a, &id_b] {
        let line = eventually(Duration::from_secs(10), "worker line", || {
            worker_line(id.clone())
        })
        .await;
        assert_eq!(str_field(&line, "level"), Some("INFO"));
        assert!(
            str_field(&line, "msg").is_some_and(|m| m.starts_with("batch committed")),
            "{line:?}"
        );
        assert!(line.contains_key("ts"));
        if str_field(&line, "msg") == Some("batch committed") {
            for field in ["size", "inserted", "duplicates", "commit_ms"] {
                assert!(line[field].is_number(), "{field} in {line:?}");
            }
        }
        if *id == id_a {
            assert!(listed(&line, "trace_ids", TRACE_ID), "{line:?}");
        }
    }

    // Never the secret, a signature or a body.
    let text = logs.text();
    assert!(!text.contains(SECRET), "the secret is in the logs");
    assert!(!text.contains("wrong-secret"));
    assert!(!text.contains(&marker), "a message body is in the logs");
    for signature in &signatures {
        assert!(
            !text.contains(signature.as_str()),
            "a signature is in the logs"
        );
    }

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_metric_is_exported_and_the_dashboard_and_alerts_use_only_those() {
    let _serial = SERIAL.lock().await;
    logs();
    let env = TestEnv::new().await;
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    env.wait_stream_ready().await;
    // Nothing sent: whatever docs/operations.md promises must be there from start-up.
    let scrape = scrape(&env, &gateway)
        .await
        .merge(scrape(&env, &worker).await);
    let build = [
        ("version", env!("CARGO_PKG_VERSION")),
        ("git_sha", ingest_shared::build_info::GIT_SHA),
    ];
    assert_eq!(scrape.get("build_info", &build), Some(1.0), "build_info");

    for result in ingest_gateway::WEBHOOK_RESULTS {
        assert!(
            scrape
                .get("webhook_requests_total", &[("result", result)])
                .is_some(),
            "webhook_requests_total{{result={result}}} at start-up"
        );
    }
    for state in ["in_use", "idle"] {
        assert!(
            scrape
                .get("worker_db_pool_connections", &[("state", state)])
                .is_some()
        );
    }
    assert!(
        scrape
            .get(
                "request_latency_ms_bucket",
                &[("path", "/webhook"), ("le", "+Inf")]
            )
            .is_some()
    );

    let documented = readme_metrics();
    assert!(
        documented.len() >= 20,
        "documented metrics table: {documented:?}"
    );
    for (name, kind) in &documented {
        assert_eq!(
            scrape.types.get(name),
            Some(kind),
            "docs/operations.md documents {name} as a {kind}"
        );
    }
    let documented_names: HashSet<&str> = documented.iter().map(|(n, _)| n.as_str()).collect();
    let undocumented: BTreeSet<&String> = scrape
        .types
        .keys()
        .filter(|n| !documented_names.contains(n.as_str()))
        .collect();
    assert!(
        undocumented.is_empty(),
        "exported but not in docs/operations.md: {undocumented:?}"
    );

    let dashboard: Value =
        serde_json::from_str(&repo_file("deploy/grafana/ingest-dashboard.json")).unwrap();
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 7, "dashboard queries: {exprs:?}");
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    for needed in [
        "webhook_requests_total",
        "request_latency_ms_bucket",
        "worker_consumer_pending",
        "worker_end_to_end_latency_ms_bucket",
        "worker_dead_letters_total",
        "http_requests_total",
        "gateway_ready",
        "worker_ready",
    ] {
        assert!(used.contains(needed), "the dashboard shows {needed}");
    }
    assert_eq!(
        unknown_metrics(&exprs, &scrape),
        BTreeSet::new(),
        "the dashboard uses metrics nobody exports"
    );

    let alerts = repo_file("deploy/prometheus/alerts.yml");
    let exprs = rule_exprs(&alerts);
    assert_eq!(
        exprs.len(),
        alerts.matches("- alert:").count(),
        "one expr per alert"
    );
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    for needed in [
        "worker_consumer_pending",
        "worker_dead_letters_total",
        "http_requests_total",
        "gateway_ready",
        "worker_ready",
        "worker_end_to_end_latency_ms_bucket",
    ] {
        assert!(used.contains(needed), "an alert watches {needed}");
    }
    assert_eq!(
        unknown_metrics(&exprs, &scrape),
        BTreeSet::new(),
        "an alert uses metrics nobody exports"
    );

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_follow_the_consumer_and_redelivered_and_dead_messages_name_their_request() {
    let _serial = SERIAL.lock().await;
    let logs = logs();
    let env = TestEnv::new().await;
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    let mut crashing = env.worker_config(&[("LAG_POLL_SECS", "1")]);
    crashing.faults.stop_after_commit_before_ack = true;
    let crashing = env.start_worker(crashing).await;
    env.wait_stream_ready().await;

    // Readiness and connection state as gauges, for alerts.
    for (app, ready, connected) in [
        (&gateway, "gateway_ready", "gateway_nats_connected"),
        (&crashing, "worker_ready", "worker_nats_connected"),
    ] {
        eventually(Duration::from_secs(15), ready, || async {
            let _ = env.http.get(app.url("/health/ready")).send().await;
            let s = scrape(&env, app).await;
            (s.value(ready, &[]) == 1.0 && s.value(connected, &[]) == 1.0).then_some(())
        })
        .await;
    }
    let before = scrape(&env, &crashing).await;

    // Committed, never acked: the worker "crashes" and its lag poller sees it ack-pending.
    let first = integration_tests::message_body("lag-1");
    let response = env
        .http
        .post(gateway.url("/webhook"))
        .header("x-signature", sign(SECRET, &first))
        .header("x-request-id", format!("req-lag-1-{}", env.id))
        .header("traceparent", TRACEPARENT)
        .body(first)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    env.wait_for_rows(1).await;
    let second = integration_tests::message_body("lag-2");
    assert_eq!(env.post_signed(&gateway, &second).await.status(), 200);
    eventually(Duration::from_secs(15), "lag gauges", || async {
        let s = scrape(&env, &crashing).await;
        let lag =
            s.value("worker_consumer_pending", &[]) + s.value("worker_consumer_ack_pending", &[]);
        (s.value("worker_consumer_ack_pending", &[]) >= 1.0 && lag >= 2.0).then_some(())
    })
    .await;
    crashing.stop().await.unwrap();

    // A healthy worker gets the unacked message again after ACK_WAIT_SECS.
    let worker = env
        .start_worker(env.worker_config(&[("LAG_POLL_SECS", "1")]))
        .await;
    env.wait_for_rows(2).await;
    env.wait_drained().await;
    let request_id = format!("req-lag-1-{}", env.id);
    let redelivered = eventually(Duration::from_secs(15), "redelivery line", || async {
        logs.lines().into_iter().find(|l| {
            str_field(l, "msg") == Some("redelivered message")
                && str_field(l, "request_id") == Some(&request_id)
        })
    })
    .await;
    assert_eq!(str_field(&redelivered, "level"), Some("WARN"));
    assert_eq!(str_field(&redelivered, "message_id"), Some("lag-1"));
    assert_eq!(str_field(&redelivered, "trace_id"), Some(TRACE_ID));

    // A payload that can never be stored: dead-lettered, with its request in the error line.
    let poison_id = format!("req-poison-{}", env.id);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-Request-Id", poison_id.as_str());
    headers.insert("traceparent", TRACEPARENT);
    let payload = format!("poison-payload-{}", env.id);
    env.js
        .publish_with_headers(env.subject.clone(), headers, payload.clone().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let dead = eventually(Duration::from_secs(15), "dead-letter line", || async {
        logs.lines().into_iter().find(|l| {
            str_field(l, "request_id") == Some(&poison_id)
                && str_field(l, "msg").is_some_and(|m| m.contains("dead-letter"))
        })
    })
    .await;
    assert_eq!(str_field(&dead, "level"), Some("ERROR"));
    assert_eq!(str_field(&dead, "trace_id"), Some(TRACE_ID));
    assert!(!logs.text().contains(&payload), "the payload is logged");
    env.wait_drained().await;

    let after = eventually(Duration::from_secs(15), "lag back to 0", || async {
        let s = scrape(&env, &worker).await;
        let idle = s.value("worker_consumer_pending", &[]) == 0.0
            && s.value("worker_consumer_ack_pending", &[]) == 0.0;
        let dead = s.value("worker_dead_letters_total", &[])
            - before.value("worker_dead_letters_total", &[]);
        (idle && dead == 1.0).then_some(s)
    })
    .await;
    let d = |name: &str| after.value(name, &[]) - before.value(name, &[]);
    assert!(d("worker_redeliveries_total") >= 1.0);
    // lag-1 was already stored when it came back.
    assert!(d("worker_duplicates_skipped_total") >= 1.0);
    assert_eq!(d("worker_rows_inserted_total"), 2.0);
    let pool = after.value("worker_db_pool_connections", &[("state", "idle")])
        + after.value("worker_db_pool_connections", &[("state", "in_use")]);
    assert!(pool >= 1.0, "the pool gauges report connections: {pool}");

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}
