//! The binaries' command line and build identity: `--help` lists every documented variable with
//! its default, `--version` prints the version and commit, and each binary reports the same
//! version and commit in `build_info` and in its first log line. Neither NATS nor Postgres is
//! needed.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use integration_tests::eventually;
use integration_tests::procs::{ServiceProcess, TempDir, free_port, service_binary};
use serde_json::Value;
use tokio::process::Command;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const BINARIES: [&str; 2] = ["ingest-gateway", "ingest-worker"];

/// `(name, default)` of every variable docs/configuration.md documents for `binary`; the default
/// is the first `code` span of its cell, `None` when the cell has none ("none", "unset").
fn documented(binary: &str) -> Vec<(String, Option<String>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let doc = std::fs::read_to_string(&path).expect("read docs/configuration.md");
    let used_by = binary.trim_start_matches("ingest-");
    let rows: Vec<(String, Option<String>)> = doc
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let users = *cells.get(3)?;
            if users != used_by && users != "both" {
                return None;
            }
            let default = cells[2].split('`').nth(1).map(str::to_owned);
            Some((name.to_owned(), default))
        })
        .collect();
    assert!(rows.len() >= 15, "{binary}: documented variables {rows:?}");
    rows
}

/// Runs `binary` with `args`, no environment and no `.env`, and returns (exit code, stdout).
async fn run(binary: &str, args: &[&str]) -> (Option<i32>, String) {
    let dir = TempDir::new("cli");
    let child = Command::new(service_binary(binary))
        .args(args)
        .env_clear()
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {binary}: {e}"));
    // A binary that started serving instead of answering would never exit.
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{binary} {args:?} did not exit"))
        .expect("wait for the binary");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    (out.status.code(), stdout)
}

/// Each option's entry in a help text: its `--flag <NAME>` line and the lines under it, joined.
fn options(help: &str) -> Vec<String> {
    let mut entries: Vec<Vec<&str>> = Vec::new();
    for line in help.lines() {
        let text = line.trim();
        if text.starts_with('-') {
            entries.push(vec![text]);
        } else if let Some(entry) = entries.last_mut()
            && line.starts_with("  ")
        {
            entry.push(text);
        }
    }
    entries.into_iter().map(|e| e.join(" ")).collect()
}

#[tokio::test]
async fn version_prints_the_crate_version() {
    for binary in BINARIES {
        let (code, stdout) = run(binary, &["-V"]).await;
        assert_eq!(code, Some(0), "{binary} -V");
        assert_eq!(stdout.trim(), format!("{binary} {VERSION}"));
        let sha = version_sha(binary).await;
        assert!(!sha.is_empty(), "{binary} --version names no commit");
    }
}

/// The commit `binary --version` names: it prints `NAME VERSION (SHA)`.
async fn version_sha(binary: &str) -> String {
    let (code, stdout) = run(binary, &["--version"]).await;
    assert_eq!(code, Some(0), "{binary} --version");
    let rest = stdout
        .trim()
        .strip_prefix(&format!("{binary} {VERSION} ("))
        .unwrap_or_else(|| panic!("{binary} --version: {stdout}"));
    let sha = rest
        .strip_suffix(')')
        .unwrap_or_else(|| panic!("{binary} --version: {stdout}"));
    sha.to_owned()
}

#[tokio::test]
async fn help_lists_every_documented_variable_with_its_default() {
    for binary in BINARIES {
        let (code, help) = run(binary, &["--help"]).await;
        assert_eq!(code, Some(0), "{binary} --help");
        let options = options(&help);
        assert!(options.len() >= 15, "{binary}: options {options:?}");
        for (name, default) in documented(binary) {
            let option = format!("<{name}>");
            let Some(block) = options.iter().find(|b| b.contains(&option)) else {
                // The one variable read straight from the environment: named in the notes.
                assert_eq!(name, "RUST_LOG", "{binary} --help has no option for {name}");
                assert!(
                    help.contains(&name),
                    "{binary} --help lacks {name}:\n{help}"
                );
                continue;
            };
            assert!(
                block.contains(&format!("[env: {name}]")),
                "{binary}: {block}"
            );
            assert!(block.contains("[default: "), "{binary}: {block}");
            if let Some(default) = default {
                assert!(
                    block.contains(&default),
                    "{binary}: {name} should show the default {default}: {block}"
                );
                // Every number the binaries read is bounded.
                if default.parse::<i64>().is_ok() {
                    assert!(block.contains("[range: "), "{binary}: {block}");
                }
            }
        }
    }
}

#[tokio::test]
async fn an_unknown_flag_is_a_usage_error() {
    for binary in BINARIES {
        let (code, _) = run(binary, &["--no-such-flag"]).await;
        assert_eq!(code, Some(2), "{binary} --no-such-flag");
    }
}

#[tokio::test]
async fn each_binary_reports_its_build_in_metrics_and_its_first_log_line() {
    let http = reqwest::Client::new();
    for (binary, addr_var) in [
        ("ingest-gateway", "GATEWAY_ADDR"),
        ("ingest-worker", "WORKER_ADDR"),
    ] {
        let dir = TempDir::new("build-info");
        // Nothing listens on port 9: the binaries start without their dependencies.
        let vars = HashMap::from([
            ("NATS_URL".to_owned(), "nats://127.0.0.1:9".to_owned()),
            (
                "DATABASE_URL".to_owned(),
                "postgres://postgres@127.0.0.1:9/postgres".to_owned(),
            ),
        ]);
        let process =
            ServiceProcess::spawn(binary, binary, &vars, addr_var, free_port(), dir.path());
        let url = process.url("/metrics");
        let metrics = eventually(Duration::from_secs(15), "/metrics", || async {
            http.get(&url).send().await.ok()?.text().await.ok()
        })
        .await;
        let series = metrics
            .lines()
            .find(|l| l.starts_with("build_info{"))
            .unwrap_or_else(|| panic!("{binary}: no build_info in\n{metrics}"));
        assert!(
            series.contains(&format!("version=\"{VERSION}\"")),
            "{series}"
        );
        // --version, build_info and the first log line name the same build.
        let sha = version_sha(binary).await;
        assert!(
            series.contains(&format!("git_sha=\"{sha}\"")),
            "{binary} --version names {sha}: {series}"
        );
        assert!(series.ends_with(" 1"), "{series}");

        let log = std::fs::read_to_string(dir.path().join(format!("{binary}.log"))).unwrap();
        let first: Value = serde_json::from_str(log.lines().next().expect("a log line"))
            .unwrap_or_else(|e| panic!("{binary}: first log line is not JSON ({e}):\n{log}"));
        assert_eq!(first["version"], VERSION, "{first}");
        assert_eq!(first["git_sha"], sha.as_str(), "{first}");
        assert_eq!(first["service"], binary, "{first}");
    }
}
