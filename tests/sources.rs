//! Sources (`SOURCES_FILE`): each source's own keys, its 404 for an unknown id, its rate limit
//! and allowlist, the file's checks at start, reload without a request lost, and the admin view.
//! Longer than most test files: one scenario per part of the issue, each with the source file it
//! runs on, read best side by side.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use integration_tests::procs::{ServiceProcess, TempDir, free_port};
use integration_tests::{Running, TestEnv, eventually, message_body, metric_value, scrape_metrics};
use serde_json::Value;

const ADMIN: &str = "admin-token";

fn write_file(dir: &Path, text: &str) -> String {
    let path = dir.join("sources.toml");
    // Renamed into place, so a reader sees the old file or the new one, never half of one.
    let tmp = dir.join("sources.toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path.to_string_lossy().into_owned()
}

async fn post(
    http: &reqwest::Client,
    url: String,
    key: &str,
    body: String,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let signature = ingest_shared::signature::sign(key.as_bytes(), body.as_bytes());
    let mut request = http
        .post(url)
        .header("content-type", "application/json")
        .header("x-signature", signature)
        .body(body);
    if let Some(xff) = forwarded_for {
        request = request.header("x-forwarded-for", xff);
    }
    request.send().await.expect("POST")
}

async fn status(gateway: &Running, env: &TestEnv, path: &str, key: &str, id: &str) -> u16 {
    post(&env.http, gateway.url(path), key, message_body(id), None)
        .await
        .status()
        .as_u16()
}

const TWO: &str = r#"
[[source]]
id = "partner-a"
kind = "x-signature"
secrets = ["a-new", "a-old"]

[[source]]
id = "partner-b"
kind = "x-signature"
secrets_file = ["b.key"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_source_accepts_its_own_keys_only_and_an_unknown_id_is_404() {
    let env = TestEnv::new().await;
    let dir = TempDir::new("sources");
    std::fs::write(dir.path().join("b.key"), "b-key\n").unwrap();
    let file = write_file(dir.path(), TWO);
    let gateway = env
        .start_gateway(env.gateway_config(&[("SOURCES_FILE", &file), ("ADMIN_TOKENS", ADMIN)]))
        .await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    env.wait_stream_ready().await;

    // Rotation: both of A's keys; B's key from its secrets_file.
    assert_eq!(
        status(&gateway, &env, "/webhook/partner-a", "a-new", "a1").await,
        200
    );
    assert_eq!(
        status(&gateway, &env, "/webhook/partner-a", "a-old", "a2").await,
        200
    );
    assert_eq!(
        status(&gateway, &env, "/webhook/partner-b", "b-key", "b1").await,
        200
    );
    // One source's key on the other's path.
    assert_eq!(
        status(&gateway, &env, "/webhook/partner-b", "a-new", "x1").await,
        401
    );
    assert_eq!(
        status(&gateway, &env, "/webhook/partner-a", "b-key", "x2").await,
        401
    );
    // With a file, only its sources exist: no built-in `default`.
    assert_eq!(status(&gateway, &env, "/webhook", "a-new", "x3").await, 404);
    let unknown = post(
        &env.http,
        gateway.url("/webhook/partner-z"),
        "a-new",
        message_body("x4"),
        None,
    )
    .await;
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["detail"], "unknown source");
    env.wait_for_rows(3).await;

    let text = scrape_metrics(&env.http, &gateway).await;
    let series = |source: &str, result: &str| {
        metric_value(
            &text,
            &format!(r#"source_requests_total{{source="{source}",result="{result}"}}"#),
        )
    };
    assert_eq!(series("partner-a", "created"), Some(2.0));
    // Both of partner-a's key slots exist from start-up, whether or not a key was used.
    for slot in ["0", "1"] {
        assert!(
            metric_value(
                &text,
                &format!(r#"webhook_signature_key_slot_total{{endpoint="webhook",slot="{slot}"}}"#),
            )
            .is_some(),
            "slot {slot}"
        );
    }
    assert_eq!(series("partner-b", "created"), Some(1.0));
    assert_eq!(series("partner-a", "invalid_signature"), Some(1.0));
    assert_eq!(
        series("partner-a", "rate_limited"),
        Some(0.0),
        "at 0 from start"
    );
    assert!(
        !text.contains("partner-z"),
        "an unknown id is never a label"
    );

    let admin: Value = env
        .http
        .get(gateway.url("/admin/sources"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shown = admin.to_string();
    for key in ["a-new", "a-old", "b-key"] {
        assert!(!shown.contains(key), "{key} shown by /admin/sources");
    }
    let a = &admin["data"][0];
    assert_eq!(a["id"], "partner-a");
    assert_eq!(a["kind"], "x-signature");
    assert_eq!(a["keys"], 2);
    assert_eq!(a["counters"]["accepted"], 2);
    assert_eq!(a["counters"]["invalid_signature"], 1);
    assert_eq!(admin["data"][1]["keys"], 1);
    let document = env
        .http
        .get(gateway.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for path in ["/webhook/{source}", "/admin/sources"] {
        assert!(
            document.contains(path),
            "{path} missing from the OpenAPI document"
        );
    }
    let anonymous = env
        .http
        .get(gateway.url("/admin/sources"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

#[test]
fn a_bad_file_refuses_to_start_naming_the_source_and_the_field() {
    let dir = TempDir::new("sources-bad");
    let cases = [
        (
            "[[source]]\nid = \"a\"\nkind = \"x-signature\"\nsecrets = [\"k\"]\n\n\
             [[source]]\nid = \"a\"\nkind = \"x-signature\"\nsecrets = [\"k\"]\n",
            &["\"a\"", "id", "duplicate"][..],
        ),
        (
            "[[source]]\nid = \"a\"\nkind = \"carrier-pigeon\"\nsecrets = [\"k\"]\n",
            &["\"a\"", "kind", "carrier-pigeon"],
        ),
        (
            "[[source]]\nid = \"a\"\nkind = \"x-signature\"\nsecrets = [\"k\"]\n\
             allow_cidrs = [\"10.0.0/8\"]\n",
            &["\"a\"", "allow_cidrs", "10.0.0/8"],
        ),
        (
            "[[source]]\nid = \"a\"\nkind = \"x-signature\"\nsecrets = []\n",
            &["\"a\"", "secrets"],
        ),
        (
            "[[source]]\nid = \"A_b\"\nkind = \"x-signature\"\nsecrets = [\"k\"]\n",
            &["id", "A_b"],
        ),
        (
            "[[source]]\nid = \"a\"\nkind = \"x-signature\"\nsecrets = [\"k\"]\nrate_per_sec = 0\n",
            &["\"a\"", "rate_per_sec"],
        ),
        (
            "[[source]]\nid = \"a\"\nkind = \"x-signature\"\nsecrets_file = [\"missing.key\"]\n",
            &["\"a\"", "secrets_file"],
        ),
    ];
    for (text, expected) in cases {
        let file = write_file(dir.path(), text);
        let env: HashMap<String, String> = [("SOURCES_FILE".to_owned(), file)].into();
        let error = ingest_gateway::Config::from_env(&env)
            .expect_err(&format!("accepted:\n{text}"))
            .to_string();
        assert!(error.contains("SOURCES_FILE"), "{error}");
        for part in expected {
            assert!(error.contains(part), "{error:?} does not name {part}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_one_source_gets_it_429s_and_leaves_the_other_alone() {
    let env = TestEnv::new().await;
    let dir = TempDir::new("sources-flood");
    let file = write_file(
        dir.path(),
        r#"
[[source]]
id = "noisy"
kind = "x-signature"
secrets = ["noisy-key"]
rate_per_sec = 2
burst = 5

[[source]]
id = "quiet"
kind = "x-signature"
secrets = ["quiet-key"]
"#,
    );
    let gateway = env
        .start_gateway(env.gateway_config(&[("SOURCES_FILE", &file)]))
        .await;
    env.wait_stream_ready().await;

    // The quiet source alone, then while the noisy one floods: every request 200, and its p99
    // holds.
    let quiet_round = |round: &'static str| {
        let (http, url) = (env.http.clone(), gateway.url("/webhook/quiet"));
        async move {
            let mut took = Vec::new();
            for i in 0..30 {
                let started = Instant::now();
                let response = post(
                    &http,
                    url.clone(),
                    "quiet-key",
                    message_body(&format!("{round}{i}")),
                    None,
                )
                .await;
                took.push(started.elapsed());
                assert_eq!(response.status(), 200, "the quiet source was refused");
            }
            took.sort();
            took[took.len() * 99 / 100]
        }
    };
    let alone = quiet_round("qa").await;

    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let (stop, http, url) = (
            stop.clone(),
            env.http.clone(),
            gateway.url("/webhook/noisy"),
        );
        tokio::spawn(async move {
            let (mut passed, mut limited, mut i) = (0u64, 0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let batch = (0..8).map(|k| {
                    post(
                        &http,
                        url.clone(),
                        "noisy-key",
                        message_body(&format!("n{i}-{k}")),
                        None,
                    )
                });
                for response in futures::future::join_all(batch).await {
                    match response.status().as_u16() {
                        200 => passed += 1,
                        429 => {
                            limited += 1;
                            let retry: u64 = response.headers()["retry-after"]
                                .to_str()
                                .unwrap()
                                .parse()
                                .unwrap();
                            assert!(retry >= 1);
                            let body: Value = response.json().await.unwrap();
                            assert!(body["detail"].is_string());
                        }
                        other => panic!("noisy answered {other}"),
                    }
                }
                i += 1;
            }
            (passed, limited)
        })
    };
    let flooded = quiet_round("qf").await;
    stop.store(true, Ordering::Relaxed);
    let (passed, limited) = flood.await.unwrap();
    assert!(
        limited > passed,
        "the bucket let {passed} through and limited only {limited}"
    );
    assert!(
        // Generous: the flood's client runs in this same process, on the same cores.
        flooded <= alone * 5 + Duration::from_millis(250),
        "the quiet source's p99 went from {alone:?} alone to {flooded:?} under the flood"
    );
    let text = scrape_metrics(&env.http, &gateway).await;
    assert_eq!(
        metric_value(
            &text,
            r#"source_requests_total{source="noisy",result="rate_limited"}"#
        ),
        Some(limited as f64)
    );
    assert_eq!(
        metric_value(
            &text,
            r#"source_requests_total{source="quiet",result="rate_limited"}"#
        ),
        Some(0.0)
    );
    gateway.stop().await.unwrap();
}

const FENCED: &str = r#"
[[source]]
id = "fenced"
kind = "x-signature"
secrets = ["fenced-key"]
allow_cidrs = ["10.1.0.0/16"]

[[source]]
id = "local"
kind = "x-signature"
secrets = ["local-key"]
allow_cidrs = ["127.0.0.1"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allowlist_trusts_forwarded_for_only_from_a_trusted_proxy() {
    let env = TestEnv::new().await;
    let dir = TempDir::new("sources-allow");
    let file = write_file(dir.path(), FENCED);
    let url = |g: &Running| g.url("/webhook/fenced");

    // The test connects from 127.0.0.1, not a trusted proxy: its X-Forwarded-For is ignored.
    let direct = env
        .start_gateway(env.gateway_config(&[("SOURCES_FILE", &file)]))
        .await;
    env.wait_stream_ready().await;
    let forged = post(
        &env.http,
        url(&direct),
        "fenced-key",
        message_body("f1"),
        Some("10.1.2.3"),
    );
    assert_eq!(forged.await.status(), 403);
    // Before the signature: outside the list is 403 even with a wrong key.
    let outside = post(&env.http, url(&direct), "wrong", message_body("f2"), None);
    assert_eq!(outside.await.status(), 403);
    assert_eq!(
        status(&direct, &env, "/webhook/local", "local-key", "l1").await,
        200
    );
    direct.stop().await.unwrap();

    let proxied = env
        .start_gateway(
            env.gateway_config(&[("SOURCES_FILE", &file), ("TRUSTED_PROXIES", "127.0.0.0/8")]),
        )
        .await;
    let inside = post(
        &env.http,
        url(&proxied),
        "fenced-key",
        message_body("f3"),
        Some("10.1.2.3"),
    );
    assert_eq!(inside.await.status(), 200);
    // The client named left of an untrusted address is not believed.
    let spoofed = post(
        &env.http,
        url(&proxied),
        "fenced-key",
        message_body("f4"),
        Some("10.1.2.3, 192.0.2.1"),
    );
    assert_eq!(spoofed.await.status(), 403);
    let wrong_key = post(
        &env.http,
        url(&proxied),
        "wrong",
        message_body("f5"),
        Some("10.1.9.9"),
    );
    assert_eq!(wrong_key.await.status(), 401);
    // Both gateways count into the test process's one recorder: the direct one's two refusals
    // and the proxied one's.
    let text = scrape_metrics(&env.http, &proxied).await;
    assert_eq!(
        metric_value(
            &text,
            r#"source_requests_total{source="fenced",result="forbidden"}"#
        ),
        Some(3.0)
    );
    proxied.stop().await.unwrap();
}

const ONE: &str = r#"
[[source]]
id = "steady"
kind = "x-signature"
secrets = ["steady-key"]
"#;

const ONE_MORE: &str = r#"
[[source]]
id = "steady"
kind = "x-signature"
secrets = ["steady-key"]

[[source]]
id = "late"
kind = "x-signature"
secrets = ["late-key"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_loses_and_refuses_nothing_and_an_invalid_file_keeps_the_set() {
    let env = TestEnv::new().await;
    let dir = TempDir::new("sources-reload");
    let file = write_file(dir.path(), ONE);
    let mut vars = env.vars();
    vars.insert("SOURCES_FILE".into(), file.clone());
    let gateway = ServiceProcess::spawn(
        "ingest-gateway",
        "gateway",
        &vars,
        "GATEWAY_ADDR",
        free_port(),
        dir.path(),
    );
    let worker = env.start_worker(env.worker_config(&[])).await;
    let http = env.http.clone();
    let live = gateway.url("/health/live");
    eventually(Duration::from_secs(30), "gateway up", || async {
        let r = http.get(&live).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    env.wait_stream_ready().await;

    // A steady sender for the whole test: every request must be 200.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, sent, http, url) = (
            stop.clone(),
            sent.clone(),
            env.http.clone(),
            gateway.url("/webhook/steady"),
        );
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch = (0..4).map(|k| {
                    post(
                        &http,
                        url.clone(),
                        "steady-key",
                        message_body(&format!("s{i}-{k}")),
                        None,
                    )
                });
                for response in futures::future::join_all(batch).await {
                    assert_eq!(response.status(), 200, "refused during a reload");
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        })
    };

    assert_eq!(
        post(
            &env.http,
            gateway.url("/webhook/late"),
            "late-key",
            message_body("late0"),
            None
        )
        .await
        .status(),
        404
    );
    write_file(dir.path(), ONE_MORE);
    gateway.signal(libc::SIGHUP);
    eventually(Duration::from_secs(20), "the new source served", || async {
        let r = post(
            &env.http,
            gateway.url("/webhook/late"),
            "late-key",
            message_body("late1"),
            None,
        )
        .await;
        (r.status() == 200).then_some(())
    })
    .await;

    write_file(dir.path(), "[[source]]\nid = \"steady\"\nkind = \"nope\"\n");
    gateway.signal(libc::SIGHUP);
    let metrics = gateway.url("/metrics");
    eventually(
        Duration::from_secs(20),
        "the invalid reload counted",
        || async {
            let text = env
                .http
                .get(&metrics)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let n = metric_value(&text, r#"sources_reload_total{result="invalid"}"#)?;
            (n >= 1.0).then_some(())
        },
    )
    .await;
    // The set in use is kept.
    assert_eq!(
        post(
            &env.http,
            gateway.url("/webhook/late"),
            "late-key",
            message_body("late2"),
            None
        )
        .await
        .status(),
        200
    );

    stop.store(true, Ordering::Relaxed);
    load.await.expect("every steady request answered 200");
    let sent = sent.load(Ordering::Relaxed) as i64;
    assert!(sent > 0);
    // Every 200 is a row: the steady ones and late1, late2.
    env.wait_for_rows(sent + 2).await;
    worker.stop().await.unwrap();

    // The access log names the source and the client; the refused reload says why.
    let log = std::fs::read_to_string(dir.path().join("gateway.log")).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        lines.iter().any(|l| l["msg"] == "request"
            && l["source"] == "steady"
            && l["client_addr"] == "127.0.0.1"
            && l["result"] == "created"),
        "no access log line with source and client_addr"
    );
    assert!(
        lines.iter().any(
            |l| l["level"] == "WARN" && l["error"].as_str().is_some_and(|e| e.contains("kind"))
        ),
        "no WARN line naming the invalid file's error"
    );
    drop(gateway);
}
