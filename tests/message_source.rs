//! The source a message came in through, over HTTP against the running gateway, on rows written
//! by the real worker from real JetStream: stored for each built-in endpoint, returned only when
//! the gateway has `SOURCES_FILE`, filtered by `?source=` on the page, its total, the export
//! and the time series, and kept by a dead letter and the redrive that stores it.
//! Longer than most test files: its tests share the sources file and the two gateways' set-up,
//! and one source path, from the post to the stored row, reads best in one place.

use std::time::Duration;

use integration_tests::{
    Running, SECRET, TestEnv, eventually, message_body, post_signed, whatsapp,
};
use serde_json::{Value, json};

const APP_SECRET: &str = "wa-app-secret";
const ADMIN: &str = "admin-token-for-tests";

async fn get(env: &TestEnv, gateway: &Running, path: &str) -> (u16, Value) {
    let response = env.http.get(gateway.url(path)).send().await.expect("GET");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"));
    (status, body)
}

async fn text(env: &TestEnv, gateway: &Running, path: &str) -> String {
    let response = env.http.get(gateway.url(path)).send().await.expect("GET");
    assert_eq!(response.status().as_u16(), 200, "{path}");
    response.text().await.expect("body")
}

/// A sources file declaring the two built-in sources with the secrets the tests sign with.
fn sources_file(env: &TestEnv) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("sources-{}.toml", env.id));
    std::fs::write(
        &path,
        format!(
            "[[source]]\nid = \"default\"\nkind = \"x-signature\"\nsecrets = [\"{SECRET}\"]\n\n\
             [[source]]\nid = \"whatsapp\"\nkind = \"whatsapp\"\nsecrets = [\"{APP_SECRET}\"]\n"
        ),
    )
    .expect("write the sources file");
    path
}

/// Two gateways on one database, one without `SOURCES_FILE` and one with it, and a worker; a
/// message posted through each built-in endpoint (and one more on `/webhook`).
async fn start(env: &TestEnv) -> (Running, Running, Running) {
    let file = sources_file(env);
    let plain = env
        .start_gateway(env.gateway_config(&[("WHATSAPP_APP_SECRET", APP_SECRET)]))
        .await;
    let sourced = env
        .start_gateway(env.gateway_config(&[
            ("WHATSAPP_APP_SECRET", APP_SECRET),
            ("SOURCES_FILE", file.to_str().unwrap()),
        ]))
        .await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    env.wait_stream_ready().await;
    for (id, ts) in [
        ("plain-1", "2025-01-15T10:00:00Z"),
        ("plain-2", "2025-01-16T10:00:00Z"),
    ] {
        let body = json!({"message_id": id, "from": "+911", "to": "+142", "ts": ts, "text": "hi"});
        assert_eq!(
            post_signed(&env.http, plain.url("/webhook"), body.to_string()).await,
            200
        );
    }
    assert_eq!(
        whatsapp::post(
            env,
            &plain,
            APP_SECRET,
            whatsapp::text_notification("wamid.S1", "typed")
        )
        .await,
        200
    );
    (plain, sourced, worker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_is_stored_with_its_source_and_returned_only_with_sources_file() {
    let env = TestEnv::new().await;
    let (plain, sourced, worker) = start(&env).await;

    // Read-your-writes: every message answered 200 is there.
    let (status, page) = get(&env, &plain, "/messages").await;
    assert_eq!(status, 200, "{page}");
    let items = page["data"].as_array().expect("data");
    assert_eq!(items.len(), 3, "{page}");
    for item in items {
        assert!(
            item.get("source").is_none(),
            "no source without SOURCES_FILE: {item}"
        );
    }
    let (_, one) = get(&env, &plain, "/messages/plain-1").await;
    assert!(one.get("source").is_none(), "{one}");

    let stored: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT message_id, source FROM messages ORDER BY message_id")
            .fetch_all(&env.db)
            .await
            .unwrap();
    let expected = [
        ("plain-1", Some("default")),
        ("plain-2", Some("default")),
        ("wamid.S1", Some("whatsapp")),
    ];
    let expected: Vec<(String, Option<String>)> = expected
        .iter()
        .map(|(id, s)| (id.to_string(), s.map(str::to_owned)))
        .collect();
    assert_eq!(stored, expected);

    let (_, page) = get(&env, &sourced, "/messages").await;
    let sources: Vec<(&str, &str)> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["message_id"].as_str().unwrap(),
                i["source"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(sources.contains(&("plain-1", "default")), "{page}");
    assert!(sources.contains(&("wamid.S1", "whatsapp")), "{page}");
    let (_, one) = get(&env, &sourced, "/messages/wamid.S1").await;
    assert_eq!(one["source"], "whatsapp", "{one}");

    // A message published without the header (by an older gateway) is stored without a
    // source, and with SOURCES_FILE its items say so with null rather than leaving the key out.
    let older = json!({"message_id": "older-1", "from": "+911", "to": "+142",
                       "ts": "2025-01-17T10:00:00Z", "text": "from before sources"});
    env.js
        .publish(env.subject.clone(), older.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    env.wait_for_rows(4).await;
    let source: Option<String> =
        sqlx::query_scalar("SELECT source FROM messages WHERE message_id = 'older-1'")
            .fetch_one(&env.db)
            .await
            .unwrap();
    assert_eq!(source, None);
    let (_, one) = get(&env, &sourced, "/messages/older-1").await;
    assert_eq!(one.get("source"), Some(&Value::Null), "{one}");
    let (_, page) = get(&env, &sourced, "/messages?source=default").await;
    assert_eq!(page["total"], 2, "not known is not `default`: {page}");

    let ndjson = text(&env, &sourced, "/messages?format=ndjson").await;
    assert!(ndjson.contains(r#""source":"whatsapp""#), "{ndjson}");
    let ndjson = text(&env, &plain, "/messages?format=ndjson").await;
    assert!(!ndjson.contains(r#""source":"#), "{ndjson}");
    let csv = text(&env, &sourced, "/messages?format=csv").await;
    assert!(
        csv.starts_with("message_id,from,to,ts,text,msg_type,source\r\n"),
        "{csv}"
    );
    let csv = text(&env, &plain, "/messages?format=csv").await;
    assert!(
        csv.starts_with("message_id,from,to,ts,text,msg_type\r\n"),
        "{csv}"
    );

    plain.stop().await.unwrap();
    sourced.stop().await.unwrap();
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_filters_the_page_the_total_the_export_and_the_series() {
    let env = TestEnv::new().await;
    let (plain, sourced, worker) = start(&env).await;

    let ids = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["message_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, page) = get(&env, &plain, "/messages?source=default").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), ["plain-1", "plain-2"]);
    assert_eq!(page["total"], 2);
    let (_, page) = get(&env, &plain, "/messages?source=whatsapp").await;
    assert_eq!(ids(&page), ["wamid.S1"]);
    assert_eq!(page["total"], 1);
    // With another filter, and a source nothing came through.
    let (_, page) = get(
        &env,
        &plain,
        "/messages?source=default&since=2025-01-16T00:00:00Z&limit=1",
    )
    .await;
    assert_eq!(
        (ids(&page), &page["total"]),
        (vec!["plain-2".into()], &json!(1))
    );
    let (_, page) = get(&env, &plain, "/messages?source=nobody").await;
    assert_eq!((ids(&page).len(), &page["total"]), (0, &json!(0)));

    let ndjson = text(&env, &plain, "/messages?format=ndjson&source=whatsapp").await;
    let lines: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{ndjson}");
    assert_eq!(lines[0]["message_id"], "wamid.S1");
    let csv = text(&env, &sourced, "/messages?format=csv&source=default").await;
    assert_eq!(csv.lines().count(), 3, "a header and two rows: {csv}");
    assert!(
        csv.lines().skip(1).all(|l| l.ends_with(",default")),
        "{csv}"
    );

    let (status, series) = get(&env, &plain, "/stats/timeseries?bucket=day&source=default").await;
    assert_eq!(status, 200, "{series}");
    assert_eq!(
        series["data"],
        json!([
            {"start": "2025-01-15T00:00:00Z", "count": 1},
            {"start": "2025-01-16T00:00:00Z", "count": 1},
        ])
    );
    let (_, series) = get(&env, &plain, "/stats/timeseries?bucket=day&source=nobody").await;
    assert_eq!(series["data"], json!([]));

    for path in [
        "/messages?source=Default",
        "/messages?source=",
        "/messages?source=a_b",
        "/messages?format=csv&source=a%20b",
        "/stats/timeseries?bucket=day&source=UPPER",
    ] {
        let (status, body) = get(&env, &plain, path).await;
        assert_eq!(status, 422, "{path}: {body}");
        assert_eq!(
            body["detail"][0]["loc"],
            json!(["query", "source"]),
            "{body}"
        );
    }
    let long = format!("/messages?source={}", "a".repeat(65));
    assert_eq!(get(&env, &plain, &long).await.0, 422);

    plain.stop().await.unwrap();
    sourced.stop().await.unwrap();
    worker.stop().await.unwrap();
}

/// An admin request: status and JSON body.
async fn admin(
    env: &TestEnv,
    gateway: &Running,
    method: reqwest::Method,
    path: &str,
) -> (u16, Value) {
    let response = env
        .http
        .request(method, gateway.url(path))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("admin request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"));
    (status, body)
}

/// The dead letters listed, once there are `n`.
async fn wait_dead_letters(env: &TestEnv, gateway: &Running, n: usize) -> Vec<Value> {
    eventually(
        Duration::from_secs(30),
        &format!("{n} dead letters listed"),
        || async {
            let (status, body) =
                admin(env, gateway, reqwest::Method::GET, "/admin/dead-letters").await;
            assert_eq!(status, 200, "{body}");
            let data = body["data"].as_array().unwrap().clone();
            (data.len() == n).then_some(data)
        },
    )
    .await
}

/// A message posted to `/webhook` that Postgres refuses is a dead letter of source `default`
/// (named in the list only with `SOURCES_FILE`, like a message's source), and once redriven it
/// is stored with that source; bytes published without the header are a dead letter whose
/// source is null.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_keeps_its_source_and_its_redrive_stores_it() {
    let env = TestEnv::new().await;
    sqlx::query("ALTER TABLE messages ADD CONSTRAINT refuse_one CHECK (message_id <> 'poison-s')")
        .execute(&env.db)
        .await
        .unwrap();
    let file = sources_file(&env);
    let common = [("ADMIN_TOKENS", ADMIN), ("NATS_DUPLICATE_WINDOW_SECS", "1")];
    let plain = env.start_gateway(env.gateway_config(&common)).await;
    let sourced = env
        .start_gateway(env.gateway_config(&[
            common[0],
            common[1],
            ("WHATSAPP_APP_SECRET", APP_SECRET),
            ("SOURCES_FILE", file.to_str().unwrap()),
        ]))
        .await;
    let worker = env
        .start_worker(env.worker_config(&[("NATS_DUPLICATE_WINDOW_SECS", "1")]))
        .await;
    env.wait_stream_ready().await;

    let poison = message_body("poison-s");
    assert_eq!(env.post_signed(&plain, &poison).await.status(), 200);
    let listed = wait_dead_letters(&env, &sourced, 1).await;
    assert_eq!(listed[0]["message_id"], "poison-s", "{listed:?}");
    assert_eq!(listed[0]["source"], "default", "{listed:?}");
    let id = listed[0]["id"].as_i64().unwrap();
    let (status, one) = admin(
        &env,
        &sourced,
        reqwest::Method::GET,
        &format!("/admin/dead-letters/{id}"),
    )
    .await;
    assert_eq!((status, &one["source"]), (200, &json!("default")), "{one}");
    let document: Value = env
        .http
        .get(sourced.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let schema = &document["components"]["schemas"]["DeadLetterItem"];
    assert!(
        schema["properties"]["source"]["type"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("string")) && t.contains(&json!("null"))),
        "{schema}"
    );
    assert!(
        !schema["required"]
            .as_array()
            .unwrap()
            .contains(&json!("source")),
        "{schema}"
    );
    let listed = wait_dead_letters(&env, &plain, 1).await;
    assert!(
        listed[0].get("source").is_none(),
        "no source without SOURCES_FILE: {listed:?}"
    );

    // Bytes published without the header (by an older gateway): not known, null.
    env.js
        .publish(env.subject.clone(), "not a message".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let listed = wait_dead_letters(&env, &sourced, 2).await;
    let unknown = listed.iter().find(|i| i["id"] != id).unwrap();
    assert_eq!(unknown.get("source"), Some(&Value::Null), "{unknown}");

    sqlx::query("ALTER TABLE messages DROP CONSTRAINT refuse_one")
        .execute(&env.db)
        .await
        .unwrap();
    // The post's id may still be inside the 1 s duplicate window: 409 until it is not.
    let path = format!("/admin/dead-letters/{id}/redrive");
    let (status, body) = eventually(Duration::from_secs(15), "redrive accepted", || async {
        let answer = admin(&env, &plain, reqwest::Method::POST, &path).await;
        (answer.0 != 409).then_some(answer)
    })
    .await;
    assert_eq!((status, &body["removed"]), (200, &json!(true)), "{body}");
    env.wait_for_rows(1).await;
    let source: Option<String> =
        sqlx::query_scalar("SELECT source FROM messages WHERE message_id = 'poison-s'")
            .fetch_one(&env.db)
            .await
            .unwrap();
    assert_eq!(source.as_deref(), Some("default"));

    plain.stop().await.unwrap();
    sourced.stop().await.unwrap();
    worker.stop().await.unwrap();
}
