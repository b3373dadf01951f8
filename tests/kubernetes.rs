//! The Kubernetes manifests (deploy/k8s) as `kubectl kustomize` renders them, for what a schema
//! cannot check (scripts/check-k8s.sh validates the schemas): the worker autoscaler watches the
//! stream and consumer the worker really uses, the containers are locked down, the probes ask
//! paths the binaries serve on the ports they listen on, the grace periods outlast the drain,
//! and the Ingress keeps the operators' paths inside the cluster.
//! Where kubectl is not installed each test says so and passes without checking.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use integration_tests::{TestEnv, eventually};
use serde::Deserialize;
use serde_yaml_ng::Value;

const OVERLAYS: &[&str] = &["single", "production"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace root")
        .to_path_buf()
}

/// The objects `kubectl kustomize` renders for an overlay; `None` without kubectl.
fn render(overlay: &str) -> Option<Vec<Value>> {
    let dir = repo_root().join("deploy/k8s/overlays").join(overlay);
    let output = match std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipped: kubectl is not installed, so {overlay} was not rendered");
            return None;
        }
        Err(e) => panic!("run kubectl: {e}"),
    };
    assert!(
        output.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("kustomize prints UTF-8");
    let objects: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect();
    assert!(!objects.is_empty(), "{overlay} rendered nothing");
    Some(objects)
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(value, path)?.as_str()
}

fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

fn list<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    at(value, path)
        .and_then(Value::as_sequence)
        .map_or(&[], Vec::as_slice)
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| {
            str_at(o, &["kind"]) == Some(kind) && str_at(o, &["metadata", "name"]) == Some(name)
        })
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn of_kind<'a>(objects: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> {
    objects
        .iter()
        .filter(move |o| str_at(o, &["kind"]) == Some(kind))
}

fn name(object: &Value) -> &str {
    str_at(object, &["metadata", "name"]).expect("every object has a name")
}

/// A Deployment's only container: each runs one binary.
fn container(deployment: &Value) -> &Value {
    let containers = list(deployment, &["spec", "template", "spec", "containers"]);
    assert_eq!(containers.len(), 1, "{}: one container", name(deployment));
    &containers[0]
}

/// The environment the container starts with: its ConfigMaps' data, then its own `env`, which
/// wins, as in Kubernetes.
fn container_env(objects: &[Value], container: &Value) -> HashMap<String, String> {
    let mut env = HashMap::new();
    for source in list(container, &["envFrom"]) {
        let map = str_at(source, &["configMapRef", "name"]).expect("envFrom names a ConfigMap");
        let data = at(find(objects, "ConfigMap", map), &["data"]).expect("ConfigMap data");
        for (k, v) in data.as_mapping().expect("data is a map") {
            env.insert(
                k.as_str().unwrap().to_owned(),
                v.as_str().unwrap().to_owned(),
            );
        }
    }
    for var in list(container, &["env"]) {
        let key = str_at(var, &["name"]).unwrap().to_owned();
        env.insert(key, str_at(var, &["value"]).unwrap_or_default().to_owned());
    }
    env
}

/// Which binary of the image a container runs.
fn binary(container: &Value) -> &str {
    let command = list(container, &["command"])
        .first()
        .and_then(Value::as_str)
        .expect("each container names its binary");
    command.rsplit('/').next().unwrap()
}

/// `env` with each `*_FILE` pointing at a file of a stand-in for the mounted Secret, as in the
/// pod: the binaries read those files at start. A URL key gets a URL, any other a plain value.
fn with_mounted_secrets(
    env: &HashMap<String, String>,
) -> (integration_tests::procs::TempDir, HashMap<String, String>) {
    let dir = integration_tests::procs::TempDir::new("k8s-secrets");
    let mut env = env.clone();
    for (var, path) in env.iter_mut().filter(|(k, _)| k.ends_with("_FILE")) {
        let file = dir
            .path()
            .join(Path::new(path.as_str()).file_name().unwrap());
        let value = if var.contains("_URL_") {
            "postgres://ingest@db:5432/ingest"
        } else {
            "stand-in-secret"
        };
        std::fs::write(&file, format!("{value}\n")).unwrap();
        *path = file.to_string_lossy().into_owned();
    }
    (dir, env)
}

fn gateway_config(env: &HashMap<String, String>) -> ingest_gateway::Config {
    let (_secrets, env) = with_mounted_secrets(env);
    ingest_gateway::Config::from_env(&env).expect("the gateway accepts the rendered configuration")
}

fn worker_config(env: &HashMap<String, String>) -> ingest_worker::Config {
    let (_secrets, env) = with_mounted_secrets(env);
    ingest_worker::Config::from_env(&env).expect("the worker accepts the rendered configuration")
}

#[test]
fn the_worker_scaled_object_follows_the_consumer_the_worker_uses() {
    let Some(objects) = render("production") else {
        return;
    };
    let scaled = find(&objects, "ScaledObject", "ingest-worker");

    // It scales the workers' Deployment, the one that runs the consumer.
    let target = at(scaled, &["spec", "scaleTargetRef"]).expect("scaleTargetRef");
    assert_eq!(
        str_at(target, &["kind"]).unwrap_or("Deployment"),
        "Deployment"
    );
    let deployment = find(&objects, "Deployment", str_at(target, &["name"]).unwrap());
    let worker = container(deployment);
    assert_eq!(
        binary(worker),
        "ingest-worker",
        "the ScaledObject targets the worker"
    );

    // The stream and consumer the worker reads from the environment it is given.
    let env = container_env(&objects, worker);
    let config = worker_config(&env);
    let triggers = list(scaled, &["spec", "triggers"]);
    assert_eq!(triggers.len(), 1, "one trigger: the consumer's lag");
    let trigger = &triggers[0];
    assert_eq!(str_at(trigger, &["type"]), Some("nats-jetstream"));
    let metadata = at(trigger, &["metadata"]).expect("trigger metadata");
    assert_eq!(
        str_at(metadata, &["stream"]),
        Some(config.nats.stream.as_str())
    );
    assert_eq!(
        str_at(metadata, &["consumer"]),
        Some(config.consumer.durable.as_str())
    );

    // KEDA reads the NATS the workers connect to: the monitoring Service sits in the same
    // namespace as the client Service of NATS_URL.
    let endpoint = str_at(metadata, &["natsServerMonitoringEndpoint"]).expect("endpoint");
    let nats_host = config
        .nats
        .url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split([':', '/']).next())
        .expect("NATS_URL has a host");
    let domain = |host: &str| host.split_once('.').map(|(_, d)| d.to_owned());
    let endpoint_host = endpoint.split(':').next().unwrap();
    assert_eq!(
        domain(endpoint_host),
        domain(nats_host),
        "{endpoint} vs {nats_host}"
    );
    assert!(
        endpoint.ends_with(":8222"),
        "the monitoring port: {endpoint}"
    );
    let threshold: u64 = str_at(metadata, &["lagThreshold"])
        .and_then(|t| t.parse().ok())
        .expect("lagThreshold is a number, as a string");
    assert!(threshold > 0, "lagThreshold");
}

#[test]
fn every_container_runs_as_the_image_user_locked_down() {
    // The uid the image runs as: the pod must not ask for another, or the mounted secrets
    // (group-readable by fsGroup) and the binaries' view of the filesystem differ.
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .and_then(|u| u.split(':').next())
        .and_then(|uid| uid.trim().parse::<u64>().ok())
        .expect("the Dockerfile's USER is a numeric uid");
    for overlay in OVERLAYS {
        let Some(objects) = render(overlay) else {
            return;
        };
        let deployments: Vec<_> = of_kind(&objects, "Deployment").collect();
        assert_eq!(deployments.len(), 2, "{overlay}: gateway and worker");
        for deployment in deployments {
            let what = format!("{overlay}: {}", name(deployment));
            let pod = at(deployment, &["spec", "template", "spec"]).unwrap();
            let pod_security = at(pod, &["securityContext"]).expect("pod securityContext");
            assert_eq!(pod_security["runAsNonRoot"], Value::Bool(true), "{what}");
            assert_eq!(pod_security["runAsUser"].as_u64(), Some(user), "{what}");
            assert_eq!(pod_security["fsGroup"].as_u64(), Some(user), "{what}");
            assert_eq!(
                str_at(pod_security, &["seccompProfile", "type"]),
                Some("RuntimeDefault"),
                "{what}"
            );
            assert_eq!(
                pod["automountServiceAccountToken"],
                Value::Bool(false),
                "{what}"
            );

            let c = container(deployment);
            let security = at(c, &["securityContext"]).expect("container securityContext");
            assert_eq!(
                security["allowPrivilegeEscalation"],
                Value::Bool(false),
                "{what}"
            );
            assert_eq!(
                security["readOnlyRootFilesystem"],
                Value::Bool(true),
                "{what}"
            );
            let dropped: Vec<_> = list(security, &["capabilities", "drop"])
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(dropped, ["ALL"], "{what}");
            for (kind, resource) in [
                ("requests", "cpu"),
                ("requests", "memory"),
                ("limits", "memory"),
            ] {
                assert!(
                    at(c, &["resources", kind, resource]).is_some(),
                    "{what}: resources.{kind}.{resource}"
                );
            }

            // A read-only root: every *_FILE the binaries read lies in a mounted volume.
            let mounts: Vec<_> = list(c, &["volumeMounts"])
                .iter()
                .filter_map(|m| str_at(m, &["mountPath"]))
                .collect();
            let env = container_env(&objects, c);
            let files: Vec<_> = env.iter().filter(|(k, _)| k.ends_with("_FILE")).collect();
            assert!(!files.is_empty(), "{what}: the secrets come as files");
            for (var, path) in files {
                assert!(
                    mounts
                        .iter()
                        .any(|m| Path::new(path).parent() == Some(Path::new(m))),
                    "{what}: {var}={path} is in none of the mounts {mounts:?}"
                );
            }
        }
    }
}

#[test]
fn the_grace_period_outlasts_the_drain() {
    for overlay in OVERLAYS {
        let Some(objects) = render(overlay) else {
            return;
        };
        for deployment in of_kind(&objects, "Deployment") {
            let what = format!("{overlay}: {}", name(deployment));
            let pod = at(deployment, &["spec", "template", "spec"]).unwrap();
            let grace = Duration::from_secs(
                pod["terminationGracePeriodSeconds"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{what}: terminationGracePeriodSeconds")),
            );
            let c = container(deployment);
            let pause = Duration::from_secs(
                at(c, &["lifecycle", "preStop", "sleep", "seconds"])
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
            );
            let env = container_env(&objects, c);
            // What the binary waits for once SIGTERM comes, after the pre-stop pause.
            let drain = match binary(c) {
                "ingest-gateway" => {
                    // Load balancers stop sending only after the pause has begun.
                    assert!(pause > Duration::ZERO, "{what}: a pre-stop pause");
                    gateway_config(&env).request_timeout
                }
                "ingest-worker" => worker_config(&env).consumer.ack_wait,
                other => panic!("{what}: unknown binary {other}"),
            };
            assert!(
                grace > pause + drain,
                "{what}: grace {grace:?} <= pause {pause:?} + drain {drain:?}"
            );
        }
    }
}

#[test]
fn the_service_monitors_scrape_the_jobs_the_alerts_name() {
    let Some(objects) = render("production") else {
        return;
    };
    let rule = find(&objects, "PrometheusRule", "ingest-webhooks");
    let target_down = list(rule, &["spec", "groups"])
        .iter()
        .flat_map(|g| list(g, &["rules"]))
        .find(|r| str_at(r, &["alert"]) == Some("IngestTargetDown"))
        .and_then(|r| str_at(r, &["expr"]))
        .expect("the target-down alert");
    let monitors: Vec<_> = of_kind(&objects, "ServiceMonitor").collect();
    assert_eq!(monitors.len(), 2, "gateway and worker");
    for monitor in monitors {
        // The job label is the name of the Service the monitor selects.
        let selector = at(monitor, &["spec", "selector", "matchLabels"]).expect("matchLabels");
        let services: Vec<_> =
            of_kind(&objects, "Service")
                .filter(|s| {
                    selector.as_mapping().unwrap().iter().all(|(k, v)| {
                        at(s, &["metadata", "labels"]).and_then(|l| l.get(k)) == Some(v)
                    })
                })
                .collect();
        assert_eq!(services.len(), 1, "{}: one Service", name(monitor));
        let job = name(services[0]);
        assert!(target_down.contains(job), "{job} is not in {target_down}");
        let port = list(monitor, &["spec", "endpoints"])
            .first()
            .and_then(|e| str_at(e, &["port"]))
            .expect("endpoint port");
        assert!(
            list(services[0], &["spec", "ports"])
                .iter()
                .any(|p| str_at(p, &["name"]) == Some(port)),
            "{job} has no port {port}"
        );
    }
}

/// Whether an Ingress rule sends `path` on: Prefix matches whole path elements, Exact the path.
fn routed(ingress: &Value, path: &str) -> bool {
    list(ingress, &["spec", "rules"])
        .iter()
        .flat_map(|rule| list(rule, &["http", "paths"]))
        .any(|p| {
            let rule_path = str_at(p, &["path"]).unwrap_or("/");
            match str_at(p, &["pathType"]) {
                Some("Exact") => rule_path == path,
                _ => {
                    let prefix = rule_path.trim_end_matches('/');
                    path == prefix || path.starts_with(&format!("{prefix}/"))
                }
            }
        })
}

#[test]
fn the_ingress_routes_the_senders_and_readers_but_not_the_operators_paths() {
    let Some(objects) = render("production") else {
        return;
    };
    let ingress = find(&objects, "Ingress", "ingest-gateway");
    for path in [
        "/webhook",
        "/webhook/whatsapp",
        "/messages",
        "/messages/m1",
        "/stats/timeseries",
    ] {
        assert!(routed(ingress, path), "{path} is not routed");
    }
    for path in ["/metrics", "/health/ready", "/admin/dead-letters", "/"] {
        assert!(!routed(ingress, path), "{path} is routed from outside");
    }
    let backends: Vec<_> = list(ingress, &["spec", "rules"])
        .iter()
        .flat_map(|rule| list(rule, &["http", "paths"]))
        .filter_map(|p| str_at(p, &["backend", "service", "name"]))
        .collect();
    assert!(
        backends.iter().all(|b| *b == "ingest-gateway"),
        "{backends:?}"
    );
}

/// Each probe of each Deployment, asked of the binary it names running for real: the path must
/// be one the binary serves, on the port it listens on; liveness answers 200 while it runs, and
/// readiness 200 once NATS and Postgres are there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probes_ask_paths_the_binaries_serve() {
    let Some(objects) = render("production") else {
        return;
    };
    let env = TestEnv::new().await;
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    for deployment in of_kind(&objects, "Deployment") {
        let c = container(deployment);
        let rendered_env = container_env(&objects, c);
        // The port the binary listens on, as it reads it from the rendered environment.
        let (running, listen, listen_port) = match binary(c) {
            "ingest-gateway" => (&gateway, "GATEWAY_ADDR", gateway_config(&rendered_env).addr),
            "ingest-worker" => (&worker, "WORKER_ADDR", worker_config(&rendered_env).addr),
            other => panic!("unknown binary {other}"),
        };
        let listen_port = u64::from(listen_port.port());
        let probes = ["readinessProbe", "livenessProbe", "startupProbe"];
        let mut seen = 0;
        for probe in probes {
            let Some(get) = at(c, &[probe, "httpGet"]) else {
                continue;
            };
            seen += 1;
            let what = format!("{} {probe}", name(deployment));
            let port = match &get["port"] {
                Value::Number(n) => n.as_u64().unwrap(),
                Value::String(port_name) => list(c, &["ports"])
                    .iter()
                    .find(|p| str_at(p, &["name"]) == Some(port_name))
                    .and_then(|p| p["containerPort"].as_u64())
                    .unwrap_or_else(|| panic!("{what}: no port named {port_name}")),
                other => panic!("{what}: port {other:?}"),
            };
            assert_eq!(port, listen_port, "{what}: the port {listen} listens on");
            let path = str_at(get, &["path"]).expect("probe path");
            let url = running.url(path);
            // Served at all: readiness may answer 503 while the binary starts, never 404.
            let first = env.http.get(&url).send().await.expect("GET the probe path");
            assert_ne!(
                first.status(),
                404,
                "{what}: {path} is not a route of {listen}'s binary"
            );
            eventually(
                Duration::from_secs(30),
                &format!("{what}: 200 from {url}"),
                || {
                    let request = env.http.get(&url).send();
                    async move { (request.await.ok()?.status() == 200).then_some(()) }
                },
            )
            .await;
        }
        assert!(seen >= 2, "{}: readiness and liveness", name(deployment));
    }
    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}
