//! Secrets from files (`NAME_FILE`), a database password apart from its URL, and NATS over TLS
//! with an nkey user: the real binaries as child processes, the secrets only in files.
//!
//! Every test kills and reaps the processes it started before its `TestEnv` drops, so no child
//! still holds a connection to the database that the clean-up drops.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use integration_tests::procs::{NatsServer, Postgres, ServiceProcess, TempDir, free_port};
use integration_tests::{SECRET, TestEnv, eventually, message_body, post_signed};
use sqlx::{Connection, PgConnection};

/// Certificates and NATS credentials made at test time.
#[path = "secret_files/nats_auth.rs"]
mod nats_auth;

use nats_auth::{certificates, operator_mode};

const READY: Duration = Duration::from_secs(60);

/// Writes `contents` to `dir/name`; its path.
pub fn write(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write secret file");
    path.to_string_lossy().into_owned()
}

fn spawn_gateway(vars: &HashMap<String, String>, dir: &Path, name: &str) -> ServiceProcess {
    ServiceProcess::spawn(
        "ingest-gateway",
        name,
        vars,
        "GATEWAY_ADDR",
        free_port(),
        dir,
    )
}

fn spawn_worker(vars: &HashMap<String, String>, dir: &Path, name: &str) -> ServiceProcess {
    ServiceProcess::spawn("ingest-worker", name, vars, "WORKER_ADDR", free_port(), dir)
}

fn log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

/// `GET /health/ready`: the status and the body.
async fn readiness(http: &reqwest::Client, process: &ServiceProcess) -> (u16, String) {
    let response = http
        .get(process.url("/health/ready"))
        .send()
        .await
        .expect("GET /health/ready");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Waits until `process`'s log shows `needle` at least `times` times.
async fn wait_for_log(dir: &Path, process: &ServiceProcess, needle: &str, times: usize) {
    let name = process.name.clone();
    eventually(READY, &format!("{name} logs {needle:?} {times}x"), || {
        let count = log(dir, &name).matches(needle).count();
        async move { (count >= times).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn the_binaries_take_the_webhook_secret_read_tokens_and_database_url_from_files() {
    let env = TestEnv::new().await;
    let dir = TempDir::new("secret-files");
    let mut vars = env.vars();
    vars.remove("WEBHOOK_SECRET");
    // Unset, the binaries would use their default database, not the test's.
    vars.remove("DATABASE_URL");
    for (name, contents) in [
        ("WEBHOOK_SECRET_FILE", format!("{SECRET}\n")),
        ("READ_TOKENS_FILE", "reader-token\r\n".to_owned()),
        ("DATABASE_URL_FILE", format!("{}\n", env.database_url)),
    ] {
        vars.insert(name.into(), write(dir.path(), name, &contents));
    }
    let mut gateway = spawn_gateway(&vars, dir.path(), "gateway");
    let mut worker = spawn_worker(&vars, dir.path(), "worker");
    gateway.wait_ready(&env.http, READY).await;
    worker.wait_ready(&env.http, READY).await;

    let status = post_signed(&env.http, gateway.url("/webhook"), message_body("file-1")).await;
    assert_eq!(status, 200, "a webhook signed with the file's secret");
    let forged = env
        .http
        .post(gateway.url("/webhook"))
        .header("content-type", "application/json")
        .header(
            "x-signature",
            ingest_shared::signature::sign(b"another key", message_body("forged").as_bytes()),
        )
        .body(message_body("forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    env.wait_for_rows(1).await;
    assert_eq!(env.message_ids().await, ["file-1"]);

    let messages = gateway.url("/messages");
    let read = env
        .http
        .get(&messages)
        .bearer_auth("reader-token")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "a read with the file's token");
    let body: serde_json::Value = read.json().await.unwrap();
    assert_eq!(body["data"][0]["message_id"], "file-1", "{body}");
    let anonymous = env.http.get(&messages).send().await.unwrap();
    assert_eq!(anonymous.status(), 401, "a read without the token");
    let wrong = env
        .http
        .get(&messages)
        .bearer_auth("reader-token-2")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401, "a read with another token");

    gateway.kill().await;
    worker.kill().await;
}

#[tokio::test]
async fn a_bad_secret_file_setting_stops_the_binary_at_start_naming_the_variable() {
    let dir = TempDir::new("secret-files-bad");
    let secret = write(dir.path(), "secret", "from-the-file\n");
    let cert = write(dir.path(), "cert.pem", "-----BEGIN CERTIFICATE-----\n");
    // (tag, variables, what the error must say)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case; 5] = [
        (
            "both",
            &[
                ("WEBHOOK_SECRET", "from-the-environment"),
                ("WEBHOOK_SECRET_FILE", &secret),
            ],
            &["WEBHOOK_SECRET and WEBHOOK_SECRET_FILE"],
        ),
        (
            "missing",
            &[("READ_TOKENS_FILE", "/nonexistent/read_tokens")],
            &["READ_TOKENS_FILE", "/nonexistent/read_tokens"],
        ),
        (
            "creds",
            &[("NATS_CREDS_FILE", "/nonexistent/user.creds")],
            &["NATS_CREDS_FILE", "/nonexistent/user.creds"],
        ),
        (
            "cert-alone",
            &[("NATS_TLS_CERT_FILE", &cert)],
            &["NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE"],
        ),
        (
            "password-twice",
            &[
                ("DATABASE_URL", "postgres://app:in-url@127.0.0.1:9/x"),
                ("DATABASE_PASSWORD_FILE", &secret),
            ],
            &["DATABASE_URL and DATABASE_PASSWORD"],
        ),
    ];
    for (tag, vars, expected) in cases {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let name = format!("gateway-{tag}");
        let mut gateway = spawn_gateway(&vars, dir.path(), &name);
        let status = gateway.wait_exit(Duration::from_secs(30)).await;
        let output = log(dir.path(), &name);
        assert_eq!(status.code(), Some(2), "{tag}: {output}");
        for needle in expected {
            assert!(output.contains(needle), "{tag}: {needle} not in {output}");
        }
        for secret in ["from-the-file", "from-the-environment", "in-url"] {
            assert!(!output.contains(secret), "{tag} printed a secret: {output}");
        }
    }
}

#[tokio::test]
async fn help_lists_each_file_variant_beside_its_variable() {
    for binary in ["ingest-gateway", "ingest-worker"] {
        let output = std::process::Command::new(integration_tests::procs::service_binary(binary))
            .arg("--help")
            .env_clear()
            .output()
            .expect("run --help");
        let help = String::from_utf8_lossy(&output.stdout);
        let mut expected = vec![
            "DATABASE_URL_FILE",
            "DATABASE_PASSWORD",
            "DATABASE_PASSWORD_FILE",
            "NATS_CREDS_FILE",
            "NATS_NKEY_FILE",
            "NATS_TLS_CA_FILE",
            "NATS_TLS_CERT_FILE",
            "NATS_TLS_KEY_FILE",
        ];
        if binary == "ingest-gateway" {
            expected.extend([
                "WEBHOOK_SECRET_FILE",
                "WHATSAPP_APP_SECRET_FILE",
                "WHATSAPP_VERIFY_TOKEN_FILE",
                "READ_TOKENS_FILE",
                "ADMIN_TOKENS_FILE",
                "DATABASE_READ_URL_FILE",
            ]);
        }
        for name in expected {
            assert!(
                help.contains(&format!("[env: {name}]")),
                "{binary} --help lacks {name}"
            );
        }
    }
}

/// A private Postgres that checks the password of role `ingest_app` (scram-sha-256): the
/// shared test server trusts every local connection, so a password sent there proves nothing.
async fn postgres_with_password(dir: &Path, password: &str) -> Postgres {
    let pg = Postgres::start(dir).await;
    let mut admin = PgConnection::connect(&pg.url()).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE ingest_app LOGIN SUPERUSER PASSWORD '{password}'"
    )))
    .execute(&mut admin)
    .await
    .expect("create role");
    let hba: String = sqlx::query_scalar("SHOW hba_file")
        .fetch_one(&mut admin)
        .await
        .expect("hba_file");
    let rules = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    std::fs::write(
        &hba,
        format!("host all ingest_app 127.0.0.1/32 scram-sha-256\n{rules}"),
    )
    .expect("write pg_hba.conf");
    let _: bool = sqlx::query_scalar("SELECT pg_reload_conf()")
        .fetch_one(&mut admin)
        .await
        .expect("reload");
    admin.close().await.ok();
    pg
}

#[tokio::test]
async fn the_database_password_comes_from_its_file_and_is_checked() {
    let env = TestEnv::new().await;
    let dir = TempDir::new("secret-files-pg");
    let pg = postgres_with_password(dir.path(), "pg-secret-in-a-file").await;
    let url = format!("postgres://ingest_app@127.0.0.1:{}/postgres", pg.port);
    // Without its password the role is refused: the server really checks it.
    eventually(READY, "the password rule in force", || {
        let url = url.clone();
        async move { PgConnection::connect(&url).await.is_err().then_some(()) }
    })
    .await;

    let mut vars = env.vars();
    vars.insert("DATABASE_URL".into(), url);
    vars.insert(
        "DATABASE_PASSWORD_FILE".into(),
        write(dir.path(), "password", "pg-secret-in-a-file\n"),
    );
    let mut worker = spawn_worker(&vars, dir.path(), "worker");
    worker.wait_ready(&env.http, READY).await;

    vars.insert(
        "DATABASE_PASSWORD_FILE".into(),
        write(dir.path(), "wrong-password", "not-the-password\n"),
    );
    vars.insert("NATS_CONSUMER".into(), format!("{}-wrong", env.consumer));
    let mut refused = spawn_worker(&vars, dir.path(), "worker-wrong-password");
    wait_for_log(dir.path(), &refused, "password authentication failed", 2).await;
    let (status, body) = readiness(&env.http, &refused).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("database"), "{body}");
    let output = log(dir.path(), "worker-wrong-password") + &log(dir.path(), "worker");
    assert!(!output.contains("pg-secret-in-a-file") && !output.contains("not-the-password"));

    worker.kill().await;
    refused.kill().await;
    drop(pg);
}

#[tokio::test]
async fn a_message_goes_through_nats_over_tls_as_an_nkey_user() {
    let env = TestEnv::new().await;
    let dir = TempDir::new("secret-files-nats");
    let (ca, cert, key) = certificates(dir.path());
    let user = nkeys::KeyPair::new_user();
    let port = free_port();
    let store = dir.path().join("jetstream");
    let config = format!(
        r#"
listen: "127.0.0.1:{port}"
jetstream {{ store_dir: "{store}" }}
tls {{ cert_file: "{cert}", key_file: "{key}", ca_file: "{ca}", timeout: 2 }}
authorization {{ users = [ {{ nkey: "{public}" }} ] }}
"#,
        store = store.display(),
        public = user.public_key(),
    );
    let nats = NatsServer::start_with_config(dir.path(), port, &config).await;
    let url = format!("tls://127.0.0.1:{port}");
    // The server refuses a client without the nkey, so getting through below proves it was used.
    let anonymous = async_nats::ConnectOptions::new()
        .add_root_certificates(ca.clone().into())
        .connect(url.as_str())
        .await;
    assert!(
        anonymous.is_err(),
        "the server must refuse a client without the nkey"
    );

    let mut vars = env.vars();
    vars.insert("NATS_URL".into(), url);
    vars.insert("NATS_TLS_CA_FILE".into(), ca);
    vars.insert(
        "NATS_NKEY_FILE".into(),
        write(
            dir.path(),
            "user.nk",
            &format!("{}\n", user.seed().unwrap()),
        ),
    );
    let mut gateway = spawn_gateway(&vars, dir.path(), "gateway");
    let mut worker = spawn_worker(&vars, dir.path(), "worker");
    gateway.wait_ready(&env.http, READY).await;
    worker.wait_ready(&env.http, READY).await;
    let status = post_signed(&env.http, gateway.url("/webhook"), message_body("tls-1")).await;
    assert_eq!(status, 200);
    env.wait_for_rows(1).await;
    assert_eq!(env.message_ids().await, ["tls-1"]);

    // A seed the server does not know: the gateway runs, says why, and stays not ready.
    let stranger = nkeys::KeyPair::new_user().seed().unwrap();
    vars.insert(
        "NATS_NKEY_FILE".into(),
        write(dir.path(), "stranger.nk", &format!("{stranger}\n")),
    );
    let mut refused = spawn_gateway(&vars, dir.path(), "gateway-wrong-nkey");
    // Refused twice: the gateway keeps trying, and says why each time.
    wait_for_log(dir.path(), &refused, "nats connection failed", 2).await;
    let output = log(dir.path(), "gateway-wrong-nkey");
    assert!(output.contains("authorization violation"), "{output}");
    let (status, body) = readiness(&env.http, &refused).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("nats"), "{body}");
    let status = post_signed(&env.http, refused.url("/webhook"), message_body("tls-2")).await;
    assert_ne!(status, 200);
    assert!(refused.is_running());
    assert!(!output.contains(&stranger), "the seed was printed");

    gateway.kill().await;
    worker.kill().await;
    refused.kill().await;
    drop(nats);
}

#[tokio::test]
async fn a_message_goes_through_nats_with_a_creds_file() {
    let env = TestEnv::new().await;
    let dir = TempDir::new("secret-files-creds");
    let (accounts, creds) = operator_mode(dir.path());
    let port = free_port();
    let config = format!(
        "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: \"{}\" }}\n{accounts}",
        dir.path().join("jetstream").display()
    );
    let nats = NatsServer::start_with_config(dir.path(), port, &config).await;
    let anonymous = async_nats::ConnectOptions::new().connect(nats.url()).await;
    assert!(
        anonymous.is_err(),
        "the server must refuse a client without credentials"
    );

    let mut vars = env.vars();
    vars.insert("NATS_URL".into(), nats.url());
    vars.insert("NATS_CREDS_FILE".into(), creds);
    let mut gateway = spawn_gateway(&vars, dir.path(), "gateway");
    let mut worker = spawn_worker(&vars, dir.path(), "worker");
    gateway.wait_ready(&env.http, READY).await;
    worker.wait_ready(&env.http, READY).await;
    let status = post_signed(&env.http, gateway.url("/webhook"), message_body("creds-1")).await;
    assert_eq!(status, 200);
    env.wait_for_rows(1).await;
    assert_eq!(env.message_ids().await, ["creds-1"]);

    gateway.kill().await;
    worker.kill().await;
    drop(nats);
}
