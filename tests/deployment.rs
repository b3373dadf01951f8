//! Deployment: what can be checked of the container files without a Docker engine, retention on
//! a real Postgres, and the pipeline on a real 3-node JetStream cluster that loses a node.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use integration_tests::{TestEnv, eventually, message_body};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace root")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The variables the binaries read, found by scanning their sources for the names passed to the
/// config helpers (`parse_or(env, "NAME", ..)`, `string_or(env, "NAME", ..)`, ...) and to direct
/// reads (`env.get("NAME")`, `std::env::var("NAME")`). Scanning rather than listing means a
/// variable added to the code without documentation fails the test.
mod env_scan {
    use super::*;
    use regex::Regex;

    /// Crates whose binaries ship in the image.
    pub const SOURCE_DIRS: &[&str] = &[
        "shared/src",
        "ingest-gateway/src",
        "ingest-worker/src",
        "healthcheck/src",
    ];

    pub fn names_in(source: &str) -> BTreeSet<String> {
        // Unit tests name made-up variables; they are not configuration.
        let source = source.split("#[cfg(test)]").next().unwrap_or("");
        // `helper(env, "NAME", ..)`: any call whose first argument is a plain variable (the
        // `&dyn Env`, whatever it is called) and whose second is an upper-case name.
        let helper =
            Regex::new(r#"\(\s*&?[a-z_][a-z0-9_]*\s*,\s*"([A-Z][A-Z0-9_]*[A-Z0-9])""#).unwrap();
        // `env.get("NAME")`, `std::env::var("NAME")`, `dotenvy::var("NAME")`.
        let direct =
            Regex::new(r#"(?:\.get|\bvar|\bvar_os)\s*\(\s*"([A-Z][A-Z0-9_]*[A-Z0-9])""#).unwrap();
        helper
            .captures_iter(source)
            .chain(direct.captures_iter(source))
            .map(|c| c[1].to_owned())
            .collect()
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    pub fn variables_read() -> BTreeSet<String> {
        let mut files = Vec::new();
        for dir in SOURCE_DIRS {
            rust_files(&repo_root().join(dir), &mut files);
        }
        files
            .iter()
            .flat_map(|f| names_in(&std::fs::read_to_string(f).unwrap()))
            .collect()
    }

    #[test]
    fn the_scanner_finds_helper_calls_even_split_over_lines() {
        let source = r#"
            let a = parse_in_range(
                env,
                "SOME_NEW_KNOB",
                8192,
                1..=10,
            )?;
            let b = string_or(env, "OTHER", "x");
            let g = parse_or(&vars, "RENAMED_ENV", 1);
            let h = dotenvy::var("FROM_DOTENV");
            let i = counter!("worker_total", "label" => "x");
            let c = env.get("WEBHOOK_SECRET");
            let d = std::env::var("RUST_LOG");
            let e = headers.get("X-Signature");
            #[cfg(test)]
            mod tests { fn f() { parse_or(env, "ONLY_IN_TESTS", 1); } }
        "#;
        let found: Vec<String> = names_in(source).into_iter().collect();
        assert_eq!(
            found,
            [
                "FROM_DOTENV",
                "OTHER",
                "RENAMED_ENV",
                "RUST_LOG",
                "SOME_NEW_KNOB",
                "WEBHOOK_SECRET"
            ]
        );
    }

    #[test]
    fn the_scan_of_the_real_sources_finds_the_known_variables() {
        let found = variables_read();
        for known in [
            "WEBHOOK_SECRET",
            "DATABASE_URL",
            "NATS_URL",
            "NATS_REPLICAS",
            "MAX_INFLIGHT_PUBLISHES",
            "MAX_DELIVER",
            "RETENTION_DAYS",
            "RETENTION_BATCH_SIZE",
            "RUST_LOG",
            "LOG_LEVEL",
        ] {
            assert!(found.contains(known), "scanner missed {known}: {found:?}");
        }
        assert!(found.len() >= 25, "suspiciously few variables: {found:?}");
    }
}

mod compose {
    use super::*;
    use serde_yaml_ng::Value;

    fn compose() -> Value {
        let mut doc: Value =
            serde_yaml_ng::from_str(&read("docker-compose.yml")).expect("docker-compose.yml");
        // The app services share settings through `<<: *app` anchors.
        doc.apply_merge().expect("merge keys");
        for service in services(&doc).values_mut() {
            service.apply_merge().expect("merge keys");
        }
        doc
    }

    fn services(doc: &Value) -> HashMap<String, Value> {
        doc["services"]
            .as_mapping()
            .expect("services")
            .iter()
            .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.clone()))
            .collect()
    }

    fn service(name: &str) -> Value {
        services(&compose())
            .remove(name)
            .unwrap_or_else(|| panic!("no service {name}"))
    }

    fn strings(value: &Value) -> Vec<String> {
        match value {
            Value::Sequence(items) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    other => panic!("not a string: {other:?}"),
                })
                .collect(),
            Value::String(s) => vec![s.clone()],
            Value::Null => vec![],
            other => panic!("not a list: {other:?}"),
        }
    }

    fn environment(service: &Value) -> HashMap<String, String> {
        match &service["environment"] {
            Value::Mapping(map) => map
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Null => String::new(),
                        other => panic!("odd env value {other:?}"),
                    };
                    (k.as_str().unwrap().to_owned(), v)
                })
                .collect(),
            Value::Null => HashMap::new(),
            other => panic!("use the mapping form of environment: {other:?}"),
        }
    }

    /// `NAME=...` and `# NAME=...` lines of .env.example.
    fn documented_variables() -> BTreeSet<String> {
        let line = regex::Regex::new(r"^#?\s*([A-Z][A-Z0-9_]*)=").unwrap();
        read(".env.example")
            .lines()
            .filter_map(|l| line.captures(l).map(|c| c[1].to_owned()))
            .collect()
    }

    #[test]
    fn every_service_has_a_health_check_and_a_restart_policy() {
        let services = services(&compose());
        let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            BTreeSet::from([
                "alertmanager",
                "gateway",
                "grafana",
                "nats",
                "postgres",
                "postgres-exporter",
                "prometheus",
                "worker"
            ])
        );
        for (name, service) in &services {
            let test = strings(&service["healthcheck"]["test"]);
            assert!(
                test.len() >= 2 && ["CMD", "CMD-SHELL"].contains(&test[0].as_str()),
                "{name}: healthcheck.test must be a CMD or CMD-SHELL list, got {test:?}"
            );
            let restart = service["restart"].as_str().unwrap_or("no");
            assert!(
                ["always", "unless-stopped", "on-failure"].contains(&restart),
                "{name}: restart policy {restart:?}"
            );
        }
    }

    #[test]
    fn the_apps_wait_for_healthy_dependencies_and_read_dot_env() {
        for name in ["gateway", "worker"] {
            let service = service(name);
            for dep in ["nats", "postgres"] {
                assert_eq!(
                    service["depends_on"][dep]["condition"].as_str(),
                    Some("service_healthy"),
                    "{name} must wait for a healthy {dep}"
                );
            }
            assert!(
                strings(&service["env_file"]).contains(&".env".to_owned()),
                "{name} must read .env"
            );
        }
        assert_eq!(
            service("worker")["deploy"]["replicas"].as_u64(),
            Some(2),
            "two workers share the consumer"
        );
        let nats = strings(&service("nats")["command"]).join(" ");
        assert!(nats.contains("--jetstream") && nats.contains("--store_dir"));
        let volumes = strings(&service("nats")["volumes"]).join(" ");
        assert!(volumes.contains(":/data"), "JetStream data on a volume");
        assert!(
            strings(&service("postgres")["healthcheck"]["test"])
                .join(" ")
                .contains("pg_isready")
        );
    }

    #[test]
    fn ports_match_the_contract_and_the_code_defaults() {
        // The contract: gateway 8000, worker 8001, as the binaries default to.
        let gateway_default = ingest_gateway::Config::from_env(&HashMap::new()).unwrap();
        let worker_default = ingest_worker::Config::from_env(&HashMap::new()).unwrap();
        assert_eq!(gateway_default.addr.port(), 8000);
        assert_eq!(worker_default.addr.port(), 8001);

        let gateway = service("gateway");
        assert_eq!(strings(&gateway["ports"]), ["8000:8000"]);
        assert!(environment(&gateway)["GATEWAY_ADDR"].ends_with(":8000"));
        assert!(strings(&gateway["healthcheck"]["test"]).contains(&"127.0.0.1:8000".to_owned()));

        let worker = service("worker");
        assert!(
            worker["ports"].is_null(),
            "replicas cannot share a host port"
        );
        assert_eq!(strings(&worker["expose"]), ["8001"]);
        assert!(environment(&worker)["WORKER_ADDR"].ends_with(":8001"));
        assert!(strings(&worker["healthcheck"]["test"]).contains(&"127.0.0.1:8001".to_owned()));
    }

    #[test]
    fn no_secret_is_written_in_the_compose_file() {
        let credential_in_url = regex::Regex::new(r"://[^:/@]+:([^@]*)@").unwrap();
        let interpolation = regex::Regex::new(r"\$\{[^}]*\}").unwrap();
        let mut checked_urls = 0;
        for (name, service) in services(&compose()) {
            for (key, value) in environment(&service) {
                if key.contains("SECRET") || key.contains("PASS") {
                    assert!(
                        value.starts_with("${"),
                        "{name}: {key} is written in the compose file; interpolate it from .env"
                    );
                }
                // Each `${...}` (which may hold `:` and `@` itself) stands for one opaque token.
                let shape = interpolation.replace_all(&value, "<from-env>");
                if let Some(password) = credential_in_url.captures(&shape) {
                    checked_urls += 1;
                    assert!(
                        &password[1] == "<from-env>",
                        "{name}: {key} carries a literal password; interpolate it from .env"
                    );
                }
            }
        }
        // gateway and worker each get DATABASE_URL through the shared `<<: *app-env` block; if
        // the merge were not applied, nothing above would have been checked.
        assert_eq!(checked_urls, 2, "DATABASE_URL of gateway and worker");
    }

    /// `./host/path:/container/path[:ro]` entries of a service's volumes.
    fn bind_mounts(service: &Value) -> Vec<(String, String)> {
        strings(&service["volumes"])
            .into_iter()
            .filter(|v| v.starts_with("./"))
            .map(|v| {
                let mut parts = v.split(':');
                let host = parts.next().unwrap().to_owned();
                (host, parts.next().expect("a container path").to_owned())
            })
            .collect()
    }

    #[test]
    fn every_file_compose_mounts_is_in_the_repository() {
        let mut mounts = 0;
        for (name, service) in services(&compose()) {
            for (host, _) in bind_mounts(&service) {
                mounts += 1;
                assert!(
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("..")
                        .join(&host)
                        .exists(),
                    "{name} mounts {host}, which does not exist"
                );
            }
        }
        assert!(mounts >= 3, "prometheus and grafana mount their files");
    }

    #[test]
    fn prometheus_scrapes_every_app_with_the_shipped_rules() {
        let prometheus = service("prometheus");
        let mounts = bind_mounts(&prometheus);
        assert!(
            mounts.contains(&("./deploy/prometheus".into(), "/etc/prometheus".into())),
            "{mounts:?}"
        );
        assert!(
            strings(&prometheus["command"])
                .contains(&"--config.file=/etc/prometheus/prometheus.yml".to_owned())
        );
        let config: Value =
            serde_yaml_ng::from_str(&read("deploy/prometheus/prometheus.yml")).unwrap();
        assert_eq!(strings(&config["rule_files"]), ["alerts.yml"]);
        let jobs: HashMap<String, Value> = config["scrape_configs"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|job| (job["job_name"].as_str().unwrap().to_owned(), job.clone()))
            .collect();
        // The job names alerts.yml's target-down rule names.
        let gateway_port = environment(&service("gateway"))["GATEWAY_ADDR"]
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(
            strings(&jobs["ingest-gateway"]["static_configs"][0]["targets"]),
            [format!("gateway:{gateway_port}")]
        );
        // Every worker replica, found by the service name.
        let workers = &jobs["ingest-worker"]["dns_sd_configs"][0];
        assert_eq!(strings(&workers["names"]), ["worker"]);
        assert_eq!(
            workers["port"].as_u64().map(|p| p.to_string()),
            Some(strings(&service("worker")["expose"])[0].clone())
        );
        let alerts = read("deploy/prometheus/alerts.yml");
        for job in jobs.keys() {
            assert!(
                alerts.contains(job.as_str()),
                "alerts.yml does not know job {job}"
            );
        }
    }

    #[test]
    fn grafana_is_provisioned_with_prometheus_and_the_dashboard() {
        let grafana = service("grafana");
        let mounts = bind_mounts(&grafana);
        assert!(mounts.contains(&(
            "./deploy/grafana/provisioning".into(),
            "/etc/grafana/provisioning".into()
        )));
        let dashboard = mounts
            .iter()
            .find(|(host, _)| host == "./deploy/grafana/ingest-dashboard.json")
            .map(|(_, container)| container.clone())
            .expect("the dashboard is mounted");
        let providers: Value =
            serde_yaml_ng::from_str(&read("deploy/grafana/provisioning/dashboards/ingest.yml"))
                .unwrap();
        let folder = providers["providers"][0]["options"]["path"]
            .as_str()
            .unwrap();
        assert_eq!(Path::new(&dashboard).parent(), Some(Path::new(folder)));
        let sources: Value = serde_yaml_ng::from_str(&read(
            "deploy/grafana/provisioning/datasources/prometheus.yml",
        ))
        .unwrap();
        assert_eq!(
            sources["datasources"][0]["url"].as_str(),
            Some("http://prometheus:9090")
        );
        assert!(
            environment(&grafana)["GF_SECURITY_ADMIN_PASSWORD"].starts_with("${"),
            "the admin password comes from .env"
        );
    }

    #[test]
    fn every_variable_the_binaries_read_is_documented() {
        let read_by_code = env_scan::variables_read();
        let documented = documented_variables();
        let missing: Vec<&String> = read_by_code.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            ".env.example does not document {missing:?}: add each with its default and meaning"
        );
        let readme = read("docs/configuration.md");
        let not_in_readme: Vec<&String> = read_by_code
            .iter()
            .filter(|v| !readme.contains(&format!("`{v}`")))
            .collect();
        assert!(
            not_in_readme.is_empty(),
            "docs/configuration.md lacks {not_in_readme:?}"
        );
        // Whatever compose sets for the apps must be something they read (or compose's own).
        for name in ["gateway", "worker"] {
            for key in environment(&service(name)).keys() {
                assert!(
                    read_by_code.contains(key),
                    "{name}: compose sets {key}, which no binary reads"
                );
            }
        }
    }
}

mod dockerfile {
    use super::*;

    /// Instructions with line continuations joined and comments dropped.
    fn instructions() -> Vec<(String, String)> {
        let text = read("Dockerfile");
        let mut joined = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
                continue;
            }
            if let Some(head) = trimmed.strip_suffix('\\') {
                current.push_str(head);
                current.push(' ');
                continue;
            }
            current.push_str(trimmed);
            joined.push(std::mem::take(&mut current));
        }
        joined
            .into_iter()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (op, rest) = l.split_once(char::is_whitespace).unwrap_or((&l, ""));
                (op.to_uppercase(), rest.trim().to_owned())
            })
            .collect()
    }

    /// Packages and binaries of the workspace, as cargo sees them.
    fn workspace_targets() -> (BTreeSet<String>, BTreeSet<String>) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = std::process::Command::new(cargo)
            .args([
                "metadata",
                "--no-deps",
                "--format-version",
                "1",
                "--offline",
            ])
            .current_dir(repo_root())
            .output()
            .expect("cargo metadata");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut packages = BTreeSet::new();
        let mut bins = BTreeSet::new();
        for package in meta["packages"].as_array().unwrap() {
            packages.insert(package["name"].as_str().unwrap().to_owned());
            for target in package["targets"].as_array().unwrap() {
                if target["kind"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k == "bin")
                {
                    bins.insert(target["name"].as_str().unwrap().to_owned());
                }
            }
        }
        (packages, bins)
    }

    fn flag_values(args: &str, flags: &[&str]) -> Vec<String> {
        let words: Vec<&str> = args.split_whitespace().collect();
        words
            .windows(2)
            .filter(|w| flags.contains(&w[0]))
            .map(|w| w[1].to_owned())
            .collect()
    }

    #[test]
    fn copies_only_what_exists_and_is_in_the_build_context() {
        let ignored: Vec<String> = read(".dockerignore")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
            .map(|l| l.trim_end_matches('/').to_owned())
            .collect();
        let mut copies = 0;
        for (op, args) in instructions() {
            if op != "COPY" || args.contains("--from=") {
                continue;
            }
            let words: Vec<&str> = args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let (_, sources) = words.split_last().expect("COPY has a destination");
            for source in sources {
                copies += 1;
                let path = repo_root().join(source);
                assert!(
                    path.exists(),
                    "Dockerfile copies {source}, which does not exist"
                );
                let name = source.trim_end_matches('/');
                assert!(
                    !ignored.iter().any(|i| i == name),
                    "Dockerfile copies {source}, which .dockerignore leaves out"
                );
            }
        }
        assert!(copies >= 5, "expected the workspace to be copied");
        for secret in [".env", "target", ".git"] {
            assert!(
                ignored.iter().any(|i| i == secret),
                ".dockerignore must leave out {secret}"
            );
        }
    }

    #[test]
    fn builds_and_ships_the_binaries_that_exist() {
        let (packages, bins) = workspace_targets();
        let all = instructions();
        let runs: Vec<&String> = all
            .iter()
            .filter(|(op, _)| op == "RUN")
            .map(|(_, a)| a)
            .collect();
        let cook = runs
            .iter()
            .find(|r| r.contains("cargo chef cook"))
            .expect("dependencies cooked in their own layer (cargo-chef)");
        assert!(cook.contains("--release"));
        for package in flag_values(cook, &["-p", "--package"]) {
            assert!(
                packages.contains(&package),
                "cook names unknown package {package}"
            );
        }
        assert!(runs.iter().any(|r| r.contains("cargo chef prepare")));
        let build = runs
            .iter()
            .find(|r| r.contains("cargo build"))
            .expect("a cargo build");
        assert!(build.contains("--release") && build.contains("--locked"));
        let built = flag_values(build, &["--bin"]);
        for bin in &built {
            assert!(
                bins.contains(bin),
                "Dockerfile builds {bin}, not a binary of the workspace {bins:?}"
            );
        }
        for needed in ["ingest-gateway", "ingest-worker", "ingest-healthcheck"] {
            assert!(built.contains(&needed.to_owned()), "{needed} is not built");
        }

        // The final stage: from the last FROM on.
        let last_from = all.iter().rposition(|(op, _)| op == "FROM").unwrap();
        assert!(
            all.iter().filter(|(op, _)| op == "FROM").count() >= 3,
            "multi-stage"
        );
        let runtime = &all[last_from..];
        let shipped: Vec<String> = runtime
            .iter()
            .filter(|(op, a)| op == "COPY" && a.contains("--from=builder"))
            .map(|(_, a)| {
                let words: Vec<&str> = a.split_whitespace().collect();
                let source = words[words.len() - 2];
                assert!(
                    built
                        .iter()
                        .any(|b| source.ends_with(&format!("/release/{b}"))),
                    "ships {source}, which the build stage does not build"
                );
                words[words.len() - 1].to_owned()
            })
            .collect();
        let user = runtime
            .iter()
            .find(|(op, _)| op == "USER")
            .map(|(_, a)| a.clone())
            .expect("the final stage sets a USER");
        assert!(
            !["root", "0", "0:0"].contains(&user.as_str()),
            "runs as root: {user}"
        );
        let stop = runtime.iter().find(|(op, _)| op == "STOPSIGNAL");
        assert_eq!(stop.map(|(_, a)| a.as_str()), Some("SIGTERM"));
        let health = runtime
            .iter()
            .find(|(op, _)| op == "HEALTHCHECK")
            .expect("HEALTHCHECK");
        let cmd = runtime.iter().rfind(|(op, _)| op == "CMD").expect("CMD");
        // Exec form only: the runtime image has no shell. Every program the image or compose
        // starts must be a binary the image ships.
        let mut programs = vec![
            health.1.split("CMD").nth(1).unwrap().to_owned(),
            cmd.1.clone(),
        ];
        let compose: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&read("docker-compose.yml")).unwrap();
        for name in ["gateway", "worker"] {
            let service = &compose["services"][name];
            programs.push(serde_json::to_string(&service["command"]).unwrap());
            programs.push(serde_json::to_string(&service["healthcheck"]["test"]).unwrap());
        }
        for program in programs {
            let first = program
                .split('"')
                .map(str::trim)
                .find(|w| w.starts_with('/'))
                .unwrap_or_else(|| panic!("not an exec-form absolute path: {program}"));
            assert!(
                shipped.iter().any(|s| s == first),
                "{first} is started but the image ships only {shipped:?}"
            );
        }
    }
}

/// Retention on a real Postgres: expired rows go, in batches; newer rows stay.
mod retention {
    use super::*;
    use ingest_worker::retention::{PassOutcome, RetentionSettings, run_pass};
    use tokio_util::sync::CancellationToken;

    /// Rows straight into the table, `age` before now.
    async fn insert_aged(env: &TestEnv, prefix: &str, count: usize, age_hours: i64) {
        sqlx::query(
            "INSERT INTO messages (message_id, from_msisdn, to_msisdn, ts, ts_raw, text)
             SELECT $1 || g, '+15550000000', '+15550000001',
                    now() - make_interval(hours => $3), 'raw', 'old'
             FROM generate_series(1, $2) g",
        )
        .bind(prefix)
        .bind(count as i32)
        .bind(age_hours as i32)
        .execute(&env.db)
        .await
        .expect("insert aged rows");
    }

    async fn count_prefix(env: &TestEnv, prefix: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE message_id LIKE $1 || '%'")
            .bind(prefix)
            .fetch_one(&env.db)
            .await
            .unwrap()
    }

    #[test]
    fn retention_is_off_unless_asked_and_zero_is_refused() {
        let vars = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let off = ingest_worker::Config::from_env(&vars(&[])).unwrap();
        assert_eq!(off.retention, None);
        let empty = ingest_worker::Config::from_env(&vars(&[("RETENTION_DAYS", "")])).unwrap();
        assert_eq!(empty.retention, None);
        let on = ingest_worker::Config::from_env(&vars(&[("RETENTION_DAYS", "30")])).unwrap();
        assert_eq!(
            on.retention,
            Some(RetentionSettings {
                days: 30,
                batch_size: 5000,
                batch_pause: Duration::from_millis(100),
                interval: Duration::from_secs(3600),
            })
        );
        let zero_days = ingest_worker::Config::from_env(&vars(&[("RETENTION_DAYS", "0")]));
        let err = zero_days.expect_err("RETENTION_DAYS=0 accepted");
        assert!(err.to_string().contains("RETENTION_DAYS"), "{err}");
        // Checked even while retention is off, so a typo shows before it is switched on.
        let zero_batch = ingest_worker::Config::from_env(&vars(&[("RETENTION_BATCH_SIZE", "0")]));
        let err = zero_batch.expect_err("RETENTION_BATCH_SIZE=0 accepted");
        assert!(err.to_string().contains("RETENTION_BATCH_SIZE"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pass_deletes_expired_rows_in_batches_and_keeps_the_rest() {
        let env = TestEnv::new().await;
        insert_aged(&env, "old-", 25, 3 * 24).await;
        insert_aged(&env, "new-", 4, 1).await;
        insert_aged(&env, "edge-", 2, 23).await;
        let settings = RetentionSettings {
            days: 1,
            batch_size: 10,
            batch_pause: Duration::from_millis(1),
            interval: Duration::from_secs(3600),
        };
        let outcome = run_pass(&env.db, &settings, &CancellationToken::new())
            .await
            .unwrap();
        // 10 + 10 + 5: the short third batch ends the pass.
        assert_eq!(
            outcome,
            PassOutcome {
                deleted: 25,
                batches: 3
            }
        );
        assert_eq!(count_prefix(&env, "old-").await, 0);
        assert_eq!(count_prefix(&env, "new-").await, 4);
        assert_eq!(count_prefix(&env, "edge-").await, 2);
        let again = run_pass(&env.db, &settings, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(
            again,
            PassOutcome {
                deleted: 0,
                batches: 1
            }
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_worker_enforces_retention_days_pass_after_pass() {
        let env = TestEnv::new().await;
        insert_aged(&env, "old-", 30, 2 * 24).await;
        insert_aged(&env, "new-", 5, 2).await;
        let worker = env
            .start_worker(env.worker_config(&[
                ("RETENTION_DAYS", "1"),
                ("RETENTION_BATCH_SIZE", "7"),
                ("RETENTION_BATCH_PAUSE_MS", "10"),
                ("RETENTION_INTERVAL_SECS", "1"),
            ]))
            .await;
        eventually(Duration::from_secs(20), "expired rows deleted", || async {
            (count_prefix(&env, "old-").await == 0).then_some(())
        })
        .await;
        assert_eq!(count_prefix(&env, "new-").await, 5);

        // A later pass catches rows that expire (or arrive already expired) after the first.
        insert_aged(&env, "later-", 3, 3 * 24).await;
        eventually(Duration::from_secs(20), "next pass deletes", || async {
            (count_prefix(&env, "later-").await == 0).then_some(())
        })
        .await;
        assert_eq!(count_prefix(&env, "new-").await, 5);

        let metrics = integration_tests::scrape_metrics(&env.http, &worker).await;
        let deleted: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("worker_retention_deleted_total "))
            .unwrap_or_else(|| panic!("no retention metric in:\n{metrics}"))
            .trim()
            .parse()
            .unwrap();
        // The recorder is process-wide, so other tests' passes may add to it.
        assert!(
            deleted >= 33.0,
            "worker_retention_deleted_total = {deleted}"
        );
        worker.stop().await.unwrap();
    }
}

/// Three `nats-server` processes on loopback as one JetStream cluster, the stream at R3, the
/// pipeline under load, one node SIGKILLed mid-load: every message accepted with a 200 must be in
/// Postgres exactly once.
mod cluster {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use async_nats::jetstream;

    struct Node {
        name: String,
        client_port: u16,
        monitor_port: u16,
        child: Option<Child>,
    }

    struct NatsCluster {
        nodes: Vec<Node>,
        dir: PathBuf,
    }

    fn nats_server_binary() -> String {
        std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| {
            // Debian installs it in /usr/sbin, which is not on every user's PATH.
            if Path::new("/usr/sbin/nats-server").exists() {
                "/usr/sbin/nats-server".into()
            } else {
                "nats-server".into()
            }
        })
    }

    /// Ports the kernel says are free. All listeners are held until every port is chosen, so the
    /// same port is not handed out twice.
    fn free_ports(n: usize) -> Vec<u16> {
        let listeners: Vec<std::net::TcpListener> = (0..n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect();
        listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect()
    }

    impl NatsCluster {
        fn start(size: usize) -> Self {
            let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
            let dir = std::env::temp_dir().join(format!("ingest-nats-cluster-{id}"));
            std::fs::create_dir_all(&dir).unwrap();
            let ports = free_ports(size * 3);
            let route = |i: usize| format!("nats://127.0.0.1:{}", ports[size + i]);
            let mut cluster = NatsCluster {
                nodes: Vec::new(),
                dir,
            };
            for i in 0..size {
                let name = format!("n{}-{id}", i + 1);
                let routes: Vec<String> = (0..size).filter(|j| *j != i).map(route).collect();
                let log = std::fs::File::create(cluster.dir.join(format!("{name}.log"))).unwrap();
                let mut command = Command::new(nats_server_binary());
                command
                    .args(["-n", &name, "-a", "127.0.0.1"])
                    .args(["-p", &ports[i].to_string()])
                    .args(["-m", &ports[2 * size + i].to_string()])
                    .arg("-js")
                    .arg("-sd")
                    .arg(cluster.dir.join(&name))
                    .args(["--cluster_name", &format!("ingest-test-{id}")])
                    .args(["--cluster", &route(i)])
                    .args(["--routes", &routes.join(",")])
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log);
                // SAFETY: prctl is async-signal-safe and touches no memory of ours. It makes the
                // kernel SIGKILL the server when the test process dies without running Drop
                // (Ctrl-C, a killed CI job), so no stray servers outlive a run.
                unsafe {
                    command.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                let child = command.spawn().unwrap_or_else(|e| {
                    panic!(
                        "start {}: {e} (scripts/test.sh installs nats-server; or set \
                             NATS_SERVER_BIN)",
                        nats_server_binary()
                    )
                });
                cluster.nodes.push(Node {
                    name,
                    client_port: ports[i],
                    monitor_port: ports[2 * size + i],
                    child: Some(child),
                });
            }
            cluster
        }

        /// Every server, comma-separated, as NATS_URL takes it.
        fn url(&self) -> String {
            self.nodes
                .iter()
                .map(|n| format!("nats://127.0.0.1:{}", n.client_port))
                .collect::<Vec<_>>()
                .join(",")
        }

        /// Waits until every node sees the same meta leader and all peers.
        async fn wait_for_meta_leader(&self, http: &reqwest::Client) -> String {
            eventually(Duration::from_secs(30), "JetStream meta leader", || async {
                let mut leaders = BTreeSet::new();
                for node in &self.nodes {
                    let url = format!("http://127.0.0.1:{}/jsz", node.monitor_port);
                    let jsz: serde_json::Value =
                        http.get(url).send().await.ok()?.json().await.ok()?;
                    let meta = &jsz["meta_cluster"];
                    let leader = meta["leader"].as_str().filter(|l| !l.is_empty())?;
                    if meta["cluster_size"].as_u64()? < self.nodes.len() as u64 {
                        return None;
                    }
                    leaders.insert(leader.to_owned());
                }
                (leaders.len() == 1).then(|| leaders.into_iter().next().unwrap())
            })
            .await
        }

        fn kill(&mut self, name: &str) {
            let node = self.nodes.iter_mut().find(|n| n.name == name).unwrap();
            let mut child = node.child.take().expect("node running");
            child.kill().expect("SIGKILL"); // std sends SIGKILL
            child.wait().unwrap();
        }
    }

    impl Drop for NatsCluster {
        fn drop(&mut self) {
            for node in &mut self.nodes {
                if let Some(mut child) = node.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            if std::thread::panicking() {
                // The servers' own account of a failed run.
                for node in &self.nodes {
                    let log = std::fs::read_to_string(self.dir.join(format!("{}.log", node.name)))
                        .unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(30).collect();
                    eprintln!("--- {} (last lines, newest first)", node.name);
                    for line in tail {
                        eprintln!("{line}");
                    }
                }
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    const MESSAGES: usize = 1200;
    const SENDERS: usize = 16;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_three_node_cluster_loses_a_node_under_load_and_loses_no_accepted_message() {
        let started = std::time::Instant::now();
        let env = TestEnv::new().await;
        let mut cluster = NatsCluster::start(3);
        let meta_leader = cluster.wait_for_meta_leader(&env.http).await;

        let nats_url = cluster.url();
        let overrides = [
            ("NATS_URL", nats_url.as_str()),
            ("NATS_REPLICAS", "3"),
            ("PUBLISH_TIMEOUT_MS", "2000"),
        ];
        let gateway = env.start_gateway(env.gateway_config(&overrides)).await;
        let worker = env.start_worker(env.worker_config(&overrides)).await;

        let client = async_nats::ConnectOptions::new()
            .connect(ingest_shared::nats::server_list(&nats_url))
            .await
            .expect("connect to the cluster");
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(2))
            .build(client);
        let stream_leader = eventually(Duration::from_secs(30), "R3 stream with a leader", || {
            let js = js.clone();
            let stream = env.stream.clone();
            async move {
                let mut stream = js.get_stream(&stream).await.ok()?;
                let info = stream.info().await.ok()?;
                let cluster = info.cluster.clone()?;
                (info.config.num_replicas == 3 && cluster.replicas.len() == 2)
                    .then_some(cluster.leader?)
            }
        })
        .await;
        gateway.wait_ready(&env.http, Duration::from_secs(20)).await;

        let accepted = Arc::new(AtomicUsize::new(0));
        let unavailable = Arc::new(AtomicUsize::new(0));
        // When the last refusal was seen, in ms since `started`: the end of the failover.
        let last_refusal_ms = Arc::new(AtomicU64::new(0));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
        let senders: Vec<_> = (0..SENDERS)
            .map(|k| {
                let (http, url) = (env.http.clone(), gateway.url("/webhook"));
                let (accepted, unavailable) = (accepted.clone(), unavailable.clone());
                let last_refusal_ms = last_refusal_ms.clone();
                tokio::spawn(async move {
                    let mut ok = Vec::new();
                    for i in (k..MESSAGES).step_by(SENDERS) {
                        let id = format!("cluster-{i}");
                        let body = message_body(&id);
                        let signature = ingest_shared::signature::sign(
                            integration_tests::SECRET.as_bytes(),
                            body.as_bytes(),
                        );
                        // A sender that honours the contract: retry until 200 (bounded).
                        while tokio::time::Instant::now() < deadline {
                            let sent = http
                                .post(&url)
                                .header("content-type", "application/json")
                                .header("x-signature", &signature)
                                .timeout(Duration::from_secs(10))
                                .body(body.clone())
                                .send()
                                .await;
                            match sent.map(|r| r.status().as_u16()) {
                                Ok(200) => {
                                    accepted.fetch_add(1, Ordering::SeqCst);
                                    ok.push(id);
                                    break;
                                }
                                Ok(503) | Err(_) => {
                                    unavailable.fetch_add(1, Ordering::SeqCst);
                                    last_refusal_ms.fetch_max(
                                        started.elapsed().as_millis() as u64,
                                        Ordering::SeqCst,
                                    );
                                    // Back-off of a polite sender, not synchronisation.
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                }
                                Ok(other) => panic!("{id}: unexpected status {other}"),
                            }
                        }
                    }
                    ok
                })
            })
            .collect();

        eventually(
            Duration::from_secs(30),
            "a third of the load accepted",
            || async { (accepted.load(Ordering::SeqCst) >= MESSAGES / 3).then_some(()) },
        )
        .await;
        let accepted_at_kill = accepted.load(Ordering::SeqCst);
        let killed_at = started.elapsed();
        cluster.kill(&stream_leader);

        let mut accepted_ids = BTreeSet::new();
        for sender in senders {
            accepted_ids.extend(sender.await.expect("sender task"));
        }
        let load_done = started.elapsed();
        assert!(
            accepted_at_kill < MESSAGES,
            "the load ended before the kill; nothing was tested"
        );
        // A 3-node cluster that lost one node still has a quorum: it must keep accepting.
        assert_eq!(
            accepted_ids.len(),
            MESSAGES,
            "only {} of {MESSAGES} accepted within the deadline ({} before the kill)",
            accepted_ids.len(),
            accepted_at_kill
        );

        eventually(
            Duration::from_secs(30),
            "every accepted message stored",
            || async { (env.row_count().await >= accepted_ids.len() as i64).then_some(()) },
        )
        .await;
        // Lost acks are redelivered after ACK_WAIT_SECS; let those land before counting.
        eventually(Duration::from_secs(30), "consumer drained", || async {
            let stream = js.get_stream(&env.stream).await.ok()?;
            let info = stream.consumer_info(&env.consumer).await.ok()?;
            (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
        })
        .await;
        let stored = env.message_ids().await;
        let stored_set: BTreeSet<String> = stored.iter().cloned().collect();
        assert_eq!(stored.len(), stored_set.len(), "a message stored twice");
        assert_eq!(
            stored_set, accepted_ids,
            "stored set differs from accepted set"
        );
        eprintln!(
            "cluster: meta leader {meta_leader}, killed stream leader {stream_leader} at {killed_at:?} \
             after {accepted_at_kill} accepted; last refusal at {:?}; {MESSAGES} accepted by \
             {load_done:?} with {} retried attempts; all stored once; total {:?}",
            Duration::from_millis(last_refusal_ms.load(Ordering::SeqCst)),
            unavailable.load(Ordering::SeqCst),
            started.elapsed()
        );

        worker.stop().await.unwrap();
        gateway.stop().await.unwrap();
    }
}
