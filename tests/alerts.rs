//! The alerts reach someone and say what to do: every rule of deploy/prometheus/alerts.yml has a
//! severity Alertmanager routes on and a runbook that exists in docs/operations.md, and compose
//! wires Prometheus to an Alertmanager that has its route file; the dashboard has a row for each
//! dependency the alerts watch. promtool and amtool (scripts/check-deploy.sh) check the files'
//! syntax; this checks that they agree.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

/// What `severity` may be; docs/operations.md, "Alerts", says what each asks of an operator.
const SEVERITIES: [&str; 3] = ["page", "warning", "info"];
const RUNBOOK_PAGE: &str = "docs/operations.md";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn yaml(relative: &str) -> Value {
    serde_yaml_ng::from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Every alerting rule of alerts.yml, across its groups.
fn rules() -> Vec<Value> {
    yaml("deploy/prometheus/alerts.yml")["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_sequence().expect("rules").clone())
        .filter(|rule| rule["alert"].is_string())
        .collect()
}

/// The anchor GitHub (and most Markdown renderers) gives a heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of every heading of a Markdown page, outside code blocks.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut found = BTreeSet::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            found.insert(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

#[test]
fn headings_become_the_anchors_a_renderer_links_to() {
    assert_eq!(anchor(" IngestStreamNearlyFull"), "ingeststreamnearlyfull");
    assert_eq!(
        anchor("Messages JetStream gave up on (`MAX_DELIVER`)"),
        "messages-jetstream-gave-up-on-max_deliver"
    );
    let page = "# Top\n```sh\n# not a heading\n```\n#### PostgresDown\n";
    assert_eq!(
        anchors(page),
        BTreeSet::from(["top".to_owned(), "postgresdown".to_owned()])
    );
}

#[test]
fn every_rule_has_a_severity_and_a_runbook_section_that_exists() {
    let rules = rules();
    assert!(rules.len() >= 14, "alerts.yml rules: {}", rules.len());
    let sections = anchors(&read(RUNBOOK_PAGE));
    let mut runbooks = BTreeSet::new();
    for rule in &rules {
        let name = rule["alert"].as_str().unwrap();
        let severity = rule["labels"]["severity"].as_str().unwrap_or("(none)");
        assert!(
            SEVERITIES.contains(&severity),
            "{name}: severity {severity:?} is not one of {SEVERITIES:?}"
        );
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no runbook_url annotation"));
        let (page, section) = url
            .split_once('#')
            .unwrap_or_else(|| panic!("{name}: {url} names no section"));
        assert_eq!(page, RUNBOOK_PAGE, "{name}: runbook on another page");
        assert!(
            sections.contains(section),
            "{name}: {RUNBOOK_PAGE} has no heading with anchor #{section}"
        );
        assert!(
            runbooks.insert(section.to_owned()),
            "{name}: shares #{section} with another rule; each rule gets its own section"
        );
    }
}

#[test]
fn alertmanager_routes_on_the_severities_the_rules_use() {
    let config = yaml("deploy/alertmanager/alertmanager.yml");
    let receivers: BTreeSet<String> = config["receivers"]
        .as_sequence()
        .expect("receivers")
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    let route = &config["route"];
    assert!(receivers.contains(route["receiver"].as_str().unwrap()));
    assert_eq!(strings(&route["group_by"]), ["alertname", "severity"]);
    let page_route = route["routes"]
        .as_sequence()
        .expect("child routes")
        .iter()
        .find(|r| strings(&r["matchers"]).contains(&r#"severity="page""#.to_owned()))
        .expect("a route for severity=\"page\"");
    let pager = page_route["receiver"].as_str().unwrap();
    assert!(receivers.contains(pager), "receiver {pager} is defined");
    assert_ne!(
        pager,
        route["receiver"].as_str().unwrap(),
        "pages go elsewhere"
    );

    // Inhibition names real alerts, or it silently inhibits nothing.
    let alerts: BTreeSet<String> = rules()
        .iter()
        .map(|r| r["alert"].as_str().unwrap().to_owned())
        .collect();
    let alertname = regex::Regex::new(r#"alertname=~?"([^"]+)""#).unwrap();
    let inhibit = config["inhibit_rules"]
        .as_sequence()
        .expect("inhibit_rules");
    assert!(!inhibit.is_empty());
    for rule in inhibit {
        for side in ["source_matchers", "target_matchers"] {
            for matcher in strings(&rule[side]) {
                let names = &alertname.captures(&matcher).expect("an alertname matcher")[1];
                for name in names.split('|') {
                    assert!(alerts.contains(name), "{side}: no rule named {name}");
                }
            }
        }
    }
}

#[test]
fn compose_sends_prometheus_alerts_to_an_alertmanager_with_its_routes() {
    let compose = yaml("docker-compose.yml");
    let alertmanager = &compose["services"]["alertmanager"];
    let config_flag = strings(&alertmanager["command"])
        .into_iter()
        .find_map(|arg| arg.strip_prefix("--config.file=").map(str::to_owned))
        .expect("alertmanager --config.file");
    let mounted = strings(&alertmanager["volumes"]).into_iter().any(|v| {
        let parts: Vec<&str> = v.split(':').collect();
        parts.len() == 3
            && parts[0] == "./deploy/alertmanager"
            && Path::new(&config_flag).parent() == Some(Path::new(parts[1]))
            && parts[2] == "ro"
    });
    assert!(
        mounted,
        "deploy/alertmanager is mounted read-only where {config_flag} is"
    );
    assert!(
        repo_root()
            .join("deploy/alertmanager/alertmanager.yml")
            .exists()
    );
    assert_eq!(strings(&alertmanager["ports"]), ["127.0.0.1:9093:9093"]);

    let prometheus = yaml("deploy/prometheus/prometheus.yml");
    let targets: Vec<String> = prometheus["alerting"]["alertmanagers"]
        .as_sequence()
        .expect("prometheus.yml alerting.alertmanagers")
        .iter()
        .flat_map(|am| strings(&am["static_configs"][0]["targets"]))
        .collect();
    assert_eq!(targets, ["alertmanager:9093"]);
    let depends = strings(&compose["services"]["prometheus"]["depends_on"]);
    assert!(depends.contains(&"alertmanager".to_owned()), "{depends:?}");
}

#[test]
fn prometheus_scrapes_the_postgres_exporter_on_loopback_with_the_services_credentials() {
    let compose = yaml("docker-compose.yml");
    let exporter = &compose["services"]["postgres-exporter"];
    assert_eq!(strings(&exporter["ports"]), ["127.0.0.1:9187:9187"]);
    let env = &exporter["environment"];
    let postgres = &compose["services"]["postgres"]["environment"];
    assert_eq!(env["DATA_SOURCE_USER"], postgres["POSTGRES_USER"]);
    assert_eq!(env["DATA_SOURCE_PASS"], postgres["POSTGRES_PASSWORD"]);
    assert!(
        env["DATA_SOURCE_URI"]
            .as_str()
            .unwrap()
            .starts_with("postgres:5432/"),
        "the compose network's postgres"
    );
    assert_eq!(
        exporter["depends_on"]["postgres"]["condition"].as_str(),
        Some("service_healthy")
    );

    let prometheus = yaml("deploy/prometheus/prometheus.yml");
    let job = prometheus["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|j| j["job_name"].as_str() == Some("postgres-exporter"))
        .expect("a postgres-exporter scrape job")
        .clone();
    assert_eq!(
        strings(&job["static_configs"][0]["targets"]),
        ["postgres-exporter:9187"]
    );
}

/// The queries of each row of the dashboard, by row title (panels follow their row).
fn dashboard_rows() -> Vec<(String, Vec<String>)> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/ingest-dashboard.json")).unwrap();
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        if panel["type"] == "row" {
            rows.push((panel["title"].as_str().unwrap().to_owned(), Vec::new()));
        } else if let Some((_, exprs)) = rows.last_mut() {
            let targets = panel["targets"].as_array().into_iter().flatten();
            exprs.extend(targets.filter_map(|t| t["expr"].as_str().map(str::to_owned)));
        }
    }
    rows
}

#[test]
fn the_dashboard_has_a_row_for_nats_and_one_for_postgres() {
    let rows = dashboard_rows();
    for (title, metrics) in [
        (
            "NATS",
            &[
                "worker_stream_bytes",
                "worker_stream_max_bytes",
                "worker_stream_messages",
                "worker_stream_max_messages",
                "worker_consumer_pending",
                "worker_consumer_redelivered",
            ][..],
        ),
        (
            "Postgres",
            &[
                "pg_up",
                "pg_stat_database_numbackends",
                "pg_settings_max_connections",
                "pg_database_size_bytes",
                "read_replica_lag_seconds",
            ][..],
        ),
    ] {
        let (_, exprs) = rows
            .iter()
            .find(|(t, _)| t == title)
            .unwrap_or_else(|| panic!("no {title} row in the dashboard"));
        let metric = |name: &str| regex::Regex::new(&format!(r"\b{name}\b")).unwrap();
        for name in metrics {
            assert!(
                exprs.iter().any(|e| metric(name).is_match(e)),
                "the {title} row shows no {name}"
            );
        }
    }
}
