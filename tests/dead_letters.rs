//! Dead letters (issue #18) on the real services: what the worker keeps, the admin API that lists,
//! shows, redrives and deletes them, and their retention. Access to /admin is in access.rs.

use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt as _;
use integration_tests::{Running, TestEnv, eventually, message_body, metric_value, scrape_metrics};
use serde_json::Value;

const ADMIN: &str = "admin-token-for-tests";

/// A gateway whose admin API is on, with the given duplicate window (seconds).
async fn gateway(env: &TestEnv, window: &str) -> Running {
    let gateway = env
        .start_gateway(env.gateway_config(&[
            ("ADMIN_TOKENS", ADMIN),
            ("NATS_DUPLICATE_WINDOW_SECS", window),
        ]))
        .await;
    gateway.wait_ready(&env.http, Duration::from_secs(30)).await;
    gateway
}

async fn worker(env: &TestEnv, window: &str) -> Running {
    env.start_worker(env.worker_config(&[
        ("NATS_DUPLICATE_WINDOW_SECS", window),
        ("LAG_POLL_SECS", "1"),
    ]))
    .await
}

/// An admin request: status and JSON body (Null when there is none).
async fn admin(
    env: &TestEnv,
    gateway: &Running,
    method: reqwest::Method,
    path: &str,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let response = env
        .http
        .request(method, gateway.url(path))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("admin request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
    };
    (status, body, headers)
}

async fn get(env: &TestEnv, gateway: &Running, path: &str) -> (u16, Value) {
    let (status, body, _) = admin(env, gateway, reqwest::Method::GET, path).await;
    (status, body)
}

async fn post(env: &TestEnv, gateway: &Running, path: &str) -> (u16, Value) {
    let (status, body, _) = admin(env, gateway, reqwest::Method::POST, path).await;
    (status, body)
}

async fn delete(env: &TestEnv, gateway: &Running, path: &str) -> (u16, Value) {
    let (status, body, _) = admin(env, gateway, reqwest::Method::DELETE, path).await;
    (status, body)
}

async fn sql_i64(env: &TestEnv, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&env.db)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn execute(env: &TestEnv, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&env.db)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Waits until the list shows exactly `n` dead letters (one page of up to 100).
async fn wait_listed(env: &TestEnv, gateway: &Running, n: usize) -> Vec<Value> {
    eventually(
        Duration::from_secs(30),
        &format!("{n} dead letters listed"),
        || async {
            let (status, body) = get(env, gateway, "/admin/dead-letters?limit=100").await;
            assert_eq!(status, 200, "{body}");
            let data = body["data"].as_array().unwrap().clone();
            (data.len() == n).then_some(data)
        },
    )
    .await
}

/// The whole path: a valid message Postgres refuses becomes a `refused` dead letter holding the
/// exact bytes; once the cause is fixed, a redrive stores it exactly once and removes the dead
/// letter; redriving it again is 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_message_is_redriven_once_the_cause_is_fixed() {
    let env = TestEnv::new().await;
    execute(
        &env,
        "ALTER TABLE messages ADD CONSTRAINT refuse_one CHECK (message_id <> 'poison-1')",
    )
    .await;
    let gateway = gateway(&env, "1").await;
    let worker = worker(&env, "1").await;

    let poison = message_body("poison-1");
    assert_eq!(env.post_signed(&gateway, &poison).await.status(), 200);
    assert_eq!(
        env.post_signed(&gateway, &message_body("fine-1"))
            .await
            .status(),
        200
    );
    let listed = wait_listed(&env, &gateway, 1).await;
    let item = &listed[0];
    assert_eq!(item["kind"], "refused", "{item}");
    assert_eq!(item["message_id"], "poison-1", "{item}");
    assert_eq!(item["times"], 1, "{item}");
    assert_eq!(item["size"], poison.len(), "{item}");
    assert!(
        item["reason"].as_str().unwrap().contains("refuse_one"),
        "{item}"
    );
    assert!(item["request_id"].is_string(), "{item}");
    assert_eq!(item["first_seen"], item["last_seen"], "{item}");
    let id = item["id"].as_i64().unwrap();

    let (status, one) = get(&env, &gateway, &format!("/admin/dead-letters/{id}")).await;
    assert_eq!(status, 200, "{one}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(one["payload_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes, poison.as_bytes(), "the exact bytes posted");
    assert_eq!(one["kind"], "refused");
    assert_eq!(env.message_ids().await, ["fine-1"]);

    // The worker's gauge counts it.
    eventually(Duration::from_secs(15), "refused gauge at 1", || async {
        let text = scrape_metrics(&env.http, &worker).await;
        (metric_value(&text, r#"worker_dead_letters_stored{reason="refused"}"#) == Some(1.0))
            .then_some(())
    })
    .await;

    execute(&env, "ALTER TABLE messages DROP CONSTRAINT refuse_one").await;
    // The first publish's id may still be inside the 1 s window: that answer is 409 and keeps
    // the dead letter; past the window the redrive goes through.
    let redriven = eventually(Duration::from_secs(15), "redrive accepted", || async {
        let (status, body) =
            post(&env, &gateway, &format!("/admin/dead-letters/{id}/redrive")).await;
        match status {
            409 => None,
            _ => Some((status, body)),
        }
    })
    .await;
    assert_eq!(redriven.0, 200, "{}", redriven.1);
    assert_eq!(redriven.1["removed"], true, "{}", redriven.1);
    assert_eq!(redriven.1["message_id"], "poison-1");

    env.wait_for_rows(2).await;
    env.wait_drained().await;
    assert_eq!(
        sql_i64(
            &env,
            "SELECT count(*) FROM messages WHERE message_id = 'poison-1'"
        )
        .await,
        1
    );
    assert_eq!(sql_i64(&env, "SELECT count(*) FROM dead_letters").await, 0);
    assert_eq!(
        get(&env, &gateway, &format!("/admin/dead-letters/{id}"))
            .await
            .0,
        404
    );
    let (status, body) = post(&env, &gateway, &format!("/admin/dead-letters/{id}/redrive")).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["detail"].is_string(), "{body}");
    eventually(
        Duration::from_secs(15),
        "refused gauge back at 0",
        || async {
            let text = scrape_metrics(&env.http, &worker).await;
            (metric_value(&text, r#"worker_dead_letters_stored{reason="refused"}"#) == Some(0.0))
                .then_some(())
        },
    )
    .await;

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

/// Inside the stream's duplicate window JetStream would deliver nothing: the redrive says so
/// (409, Retry-After = the window) and the dead letter stays; the bulk redrive counts it deferred.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_inside_the_duplicate_window_is_deferred_and_keeps_the_dead_letter() {
    let env = TestEnv::new().await;
    execute(
        &env,
        "ALTER TABLE messages ADD CONSTRAINT refuse_one CHECK (message_id <> 'poison-2')",
    )
    .await;
    let gateway = gateway(&env, "120").await;
    let worker = worker(&env, "120").await;
    assert_eq!(
        env.post_signed(&gateway, &message_body("poison-2"))
            .await
            .status(),
        200
    );
    let listed = wait_listed(&env, &gateway, 1).await;
    let id = listed[0]["id"].as_i64().unwrap();
    execute(&env, "ALTER TABLE messages DROP CONSTRAINT refuse_one").await;

    let (status, body, headers) = admin(
        &env,
        &gateway,
        reqwest::Method::POST,
        &format!("/admin/dead-letters/{id}/redrive"),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("duplicate window")
    );
    assert_eq!(headers["retry-after"], "120");
    let (status, bulk) = post(&env, &gateway, "/admin/dead-letters/redrive").await;
    assert_eq!(status, 200, "{bulk}");
    assert_eq!(
        bulk,
        serde_json::json!({"redriven": 0, "deferred": 1, "failed": 0, "remaining": 1})
    );
    let (status, one) = get(&env, &gateway, &format!("/admin/dead-letters/{id}")).await;
    assert_eq!(status, 200, "kept: {one}");
    assert_eq!(one["times"], 1);
    env.wait_drained().await;
    assert_eq!(env.row_count().await, 0, "nothing was delivered");

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

/// "The database refused batches for an hour; once fixed, one loop puts them all back": 500
/// refused messages, two workers, bulk redrive until nothing remains. Every message is stored
/// exactly once, no dead letter is left, and the aggregates agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_redrive_puts_500_dead_letters_back_exactly_once() {
    const N: i64 = 500;
    let env = TestEnv::new().await;
    execute(
        &env,
        "ALTER TABLE messages ADD CONSTRAINT refuse_bulk CHECK (message_id NOT LIKE 'bulk-%')",
    )
    .await;
    let gateway = gateway(&env, "1").await;
    let workers = [worker(&env, "1").await, worker(&env, "1").await];

    let statuses: Vec<u16> = futures::stream::iter(0..N)
        .map(|i| {
            let (env, gateway) = (&env, &gateway);
            async move {
                env.post_signed(gateway, &message_body(&format!("bulk-{i:03}")))
                    .await
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    eventually(Duration::from_secs(60), "500 dead letters", || async {
        (sql_i64(
            &env,
            "SELECT count(*) FROM dead_letters WHERE kind = 'refused'",
        )
        .await
            == N)
            .then_some(())
    })
    .await;
    assert_eq!(env.row_count().await, 0);
    eventually(Duration::from_secs(15), "refused gauge at 500", || async {
        let text = scrape_metrics(&env.http, &workers[0]).await;
        (metric_value(&text, r#"worker_dead_letters_stored{reason="refused"}"#) == Some(N as f64))
            .then_some(())
    })
    .await;

    execute(&env, "ALTER TABLE messages DROP CONSTRAINT refuse_bulk").await;
    // One call after another until nothing remains; `deferred` (ids still inside the 1 s
    // window) succeed on a later call.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (mut calls, mut redriven) = (0, 0);
    loop {
        let (status, body) = post(&env, &gateway, "/admin/dead-letters/redrive?limit=200").await;
        calls += 1;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["failed"], 0, "{body}");
        redriven += body["redriven"].as_i64().unwrap();
        if body["remaining"] == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bulk redrive not done: {body}"
        );
        if body["redriven"] == 0 {
            // Only deferred ones left: poll again shortly, as `eventually` does.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(redriven, N, "each dead letter redriven once");
    assert!(
        calls >= 3,
        "limit=200 takes at least three calls, took {calls}"
    );

    env.wait_for_rows(N).await;
    env.wait_drained().await;
    let (count, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT message_id) FROM messages")
            .fetch_one(&env.db)
            .await
            .unwrap();
    assert_eq!((count, distinct), (N, N));
    assert_eq!(sql_i64(&env, "SELECT count(*) FROM dead_letters").await, 0);
    let stats: Value = env
        .http
        .get(gateway.url("/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["total_messages"], N, "{stats}");

    let [a, b] = workers;
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

/// Identical invalid bytes are one dead letter counted twice; redriving them brings them back as
/// that dead letter (the worker's normal path), and nothing loops: the stream drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_invalid_payloads_are_one_dead_letter_and_a_redrive_does_not_loop() {
    let env = TestEnv::new().await;
    let gateway = gateway(&env, "1").await;
    let worker = worker(&env, "1").await;
    for _ in 0..2 {
        env.js
            .publish(env.subject.clone(), "{not json".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let counted = || async {
        sqlx::query_as::<_, (i64, String, String, i32)>(
            "SELECT id, kind, dedup_key, times FROM dead_letters",
        )
        .fetch_all(&env.db)
        .await
        .unwrap()
    };
    eventually(Duration::from_secs(30), "counted twice", || async {
        let rows = counted().await;
        (rows.len() == 1 && rows[0].3 == 2).then_some(())
    })
    .await;
    // The same bytes in a later batch: the same row, counted again.
    env.js
        .publish(env.subject.clone(), "{not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let rows = eventually(Duration::from_secs(30), "counted thrice", || async {
        let rows = counted().await;
        (rows.len() == 1 && rows[0].3 == 3).then_some(rows)
    })
    .await;
    let (id, kind, key, _) = &rows[0];
    assert_eq!(kind, "invalid");
    let digest: String = sqlx::query_scalar("SELECT encode(sha256('{not json'::bytea), 'hex')")
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert_eq!(key, &digest);
    let (_, listed) = get(&env, &gateway, "/admin/dead-letters").await;
    assert_eq!(listed["data"][0]["message_id"], Value::Null, "{listed}");
    assert_eq!(listed["data"][0]["times"], 3, "{listed}");

    let status = eventually(Duration::from_secs(15), "redrive accepted", || async {
        let (status, _) = post(&env, &gateway, &format!("/admin/dead-letters/{id}/redrive")).await;
        (status != 409).then_some(status)
    })
    .await;
    assert_eq!(status, 200);
    // It fails again and is dead-lettered again: either the same row counted a fourth time (if
    // the worker was faster than the redrive's delete) or a new row; never more than one.
    env.wait_drained().await;
    let rows = eventually(Duration::from_secs(30), "dead-lettered again", || async {
        let rows = counted().await;
        (rows.len() == 1).then_some(rows)
    })
    .await;
    assert_eq!(rows[0].2, digest);
    assert!(
        (rows[0].0 == *id && rows[0].3 == 4) || (rows[0].0 != *id && rows[0].3 == 1),
        "{rows:?}"
    );
    env.wait_drained().await;
    assert_eq!(env.stream_messages().await, 0);
    assert_eq!(env.row_count().await, 0);

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

/// Dead letters straight into the table: `(reason, kind, last_seen age in hours)`.
async fn insert_dead(env: &TestEnv, rows: &[(&str, &str, i32)]) -> Vec<i64> {
    let mut ids = Vec::new();
    for (reason, kind, age_hours) in rows {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO dead_letters (stream_seq, subject, payload, reason, kind, dedup_key,
                                       first_seen, last_seen, times)
             VALUES (1, 's', convert_to($1, 'UTF8'), $1, $2, md5($1 || random()::text),
                     now() - make_interval(hours => $3), now() - make_interval(hours => $3), 1)
             RETURNING id",
        )
        .bind(reason)
        .bind(kind)
        .bind(age_hours)
        .fetch_one(&env.db)
        .await
        .unwrap();
        ids.push(id);
    }
    ids
}

fn ids_of(body: &Value) -> Vec<i64> {
    body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect()
}

/// Listing pages by cursor and filters by reason (literal substring) and last_seen; deleting one
/// and by filter; a bulk delete without a filter is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_pages_and_deletes() {
    let env = TestEnv::new().await;
    let gateway = gateway(&env, "120").await;
    let ids = insert_dead(
        &env,
        &[
            ("invalid message: from", "invalid", 1),
            ("refused by postgres: 50% full", "refused", 2),
            ("refused by postgres: 50 full", "refused", 30),
            ("refused by postgres: other", "refused", 50),
            ("invalid message: ts", "invalid", 100),
        ],
    )
    .await;

    // Pages of two, in id order, then the end.
    let mut seen = Vec::new();
    let mut path = "/admin/dead-letters?limit=2".to_owned();
    loop {
        let (status, body) = get(&env, &gateway, &path).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["limit"], 2);
        seen.extend(ids_of(&body));
        match body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/admin/dead-letters?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    let filtered = |query: &'static str| {
        let (env, gateway) = (&env, &gateway);
        async move {
            let (status, body) = get(env, gateway, &format!("/admin/dead-letters?{query}")).await;
            assert_eq!(status, 200, "{query}: {body}");
            ids_of(&body)
        }
    };
    assert_eq!(filtered("reason=REFUSED").await, ids[1..4]);
    assert_eq!(filtered("reason=50%25").await, [ids[1]], "% is literal");
    assert_eq!(
        filtered("reason=_").await,
        Vec::<i64>::new(),
        "_ is literal"
    );
    // last_seen between 40 and 10 hours ago.
    let (status, body) = get(
        &env,
        &gateway,
        &format!(
            "/admin/dead-letters?since={}&until={}",
            hours_ago(&env, 40).await,
            hours_ago(&env, 10).await
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids_of(&body), [ids[2]]);

    for bad in [
        "limit=0",
        "limit=101",
        "cursor=nope",
        "since=yesterday",
        "until=2025-13-01",
    ] {
        let (status, body) = get(&env, &gateway, &format!("/admin/dead-letters?{bad}")).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert_eq!(body["detail"][0]["loc"][0], "query", "{body}");
    }
    for bad in ["abc", "0", "-3"] {
        let (status, body) = get(&env, &gateway, &format!("/admin/dead-letters/{bad}")).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert_eq!(body["detail"][0]["loc"], serde_json::json!(["path", "id"]));
    }
    assert_eq!(
        get(&env, &gateway, "/admin/dead-letters/999999").await.0,
        404
    );

    // Delete one, then by filter; no filter is 422 and deletes nothing.
    assert_eq!(
        delete(&env, &gateway, &format!("/admin/dead-letters/{}", ids[0]))
            .await
            .0,
        204
    );
    assert_eq!(
        delete(&env, &gateway, &format!("/admin/dead-letters/{}", ids[0]))
            .await
            .0,
        404
    );
    for refused in ["", "?all=false", "?reason=", "?all=maybe"] {
        let (status, body) = delete(&env, &gateway, &format!("/admin/dead-letters{refused}")).await;
        assert_eq!(status, 422, "{refused}: {body}");
    }
    assert_eq!(sql_i64(&env, "SELECT count(*) FROM dead_letters").await, 4);
    let (status, body) = delete(&env, &gateway, "/admin/dead-letters?reason=refused").await;
    assert_eq!((status, body), (200, serde_json::json!({"deleted": 3})));
    assert_eq!(filtered("").await, [ids[4]]);
    let (status, body) = delete(&env, &gateway, "/admin/dead-letters?all=true").await;
    assert_eq!((status, body), (200, serde_json::json!({"deleted": 1})));
    assert_eq!(sql_i64(&env, "SELECT count(*) FROM dead_letters").await, 0);

    gateway.stop().await.unwrap();
}

/// `hours` before now as `YYYY-MM-DDTHH:MM:SSZ`, by the database's clock (which sets last_seen).
async fn hours_ago(env: &TestEnv, hours: i32) -> String {
    sqlx::query_scalar(
        "SELECT to_char((now() - make_interval(hours => $1)) AT TIME ZONE 'UTC',
                        'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
    )
    .bind(hours)
    .fetch_one(&env.db)
    .await
    .unwrap()
}

/// DEAD_LETTER_RETENTION_DAYS alone (RETENTION_DAYS unset) starts the worker's retention, which
/// deletes the dead letters last seen before the cutoff and keeps the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_retention_deletes_old_ones_even_without_message_retention() {
    use ingest_worker::retention::{PassOutcome, RetentionSettings, run_dead_letter_pass};
    use tokio_util::sync::CancellationToken;

    let env = TestEnv::new().await;
    let ids = insert_dead(
        &env,
        &[
            ("refused by postgres: a", "refused", 10 * 24),
            ("refused by postgres: b", "refused", 9 * 24),
            ("invalid message: c", "invalid", 24),
        ],
    )
    .await;
    let settings = RetentionSettings {
        days: 5,
        batch_size: 1,
        batch_pause: Duration::from_millis(1),
        interval: Duration::from_secs(3600),
    };
    let outcome = run_dead_letter_pass(&env.db, &settings, &CancellationToken::new())
        .await
        .unwrap();
    // 1 + 1 + 0: the empty third batch ends the pass.
    assert_eq!(
        outcome,
        PassOutcome {
            deleted: 2,
            batches: 3
        }
    );
    let left: Vec<i64> = sqlx::query_scalar("SELECT id FROM dead_letters")
        .fetch_all(&env.db)
        .await
        .unwrap();
    assert_eq!(left, [ids[2]]);

    // The worker runs it on its own when only DEAD_LETTER_RETENTION_DAYS is set.
    insert_dead(&env, &[("invalid message: old", "invalid", 30 * 24)]).await;
    let config = env.worker_config(&[("DEAD_LETTER_RETENTION_DAYS", "5")]);
    assert!(config.retention.is_none());
    let worker = env.start_worker(config).await;
    eventually(
        Duration::from_secs(30),
        "old dead letter deleted",
        || async {
            let left: Vec<i64> = sqlx::query_scalar("SELECT id FROM dead_letters")
                .fetch_all(&env.db)
                .await
                .unwrap();
            (left == [ids[2]]).then_some(())
        },
    )
    .await;
    worker.stop().await.unwrap();
}

#[test]
fn dead_letter_retention_is_off_unless_asked_and_checked() {
    let vars = |pairs: &[(&str, &str)]| -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let off = ingest_worker::Config::from_env(&vars(&[])).unwrap();
    assert_eq!(off.dead_letter_retention, None);
    let on =
        ingest_worker::Config::from_env(&vars(&[("DEAD_LETTER_RETENTION_DAYS", "7")])).unwrap();
    assert_eq!(on.dead_letter_retention.map(|s| s.days), Some(7));
    assert_eq!(on.retention, None);
    for bad in ["0", "36501", "x"] {
        let err = ingest_worker::Config::from_env(&vars(&[("DEAD_LETTER_RETENTION_DAYS", bad)]))
            .expect_err(bad);
        assert!(
            err.to_string().contains("DEAD_LETTER_RETENTION_DAYS"),
            "{err}"
        );
    }
}

/// The delete after the PubAck only takes a dead letter unchanged since the redrive read it: if
/// the worker dead-letters the same bytes again meanwhile (here: an update of `times` that the
/// redrive's delete has to wait for), the row survives and the answer says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_changed_during_its_redrive_is_kept() {
    let env = TestEnv::new().await;
    let gateway = gateway(&env, "120").await;
    let ids = insert_dead(&env, &[("invalid message: x", "invalid", 1)]).await;
    let id = ids[0];

    // Dead-lettered again, not yet committed: the redrive reads times = 1 and its delete waits.
    let mut again = env.db.begin().await.unwrap();
    sqlx::query("UPDATE dead_letters SET times = times + 1, last_seen = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *again)
        .await
        .unwrap();
    let redrive = {
        let (http, url) = (
            env.http.clone(),
            gateway.url(&format!("/admin/dead-letters/{id}/redrive")),
        );
        tokio::spawn(async move {
            let response = http.post(url).bearer_auth(ADMIN).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        })
    };
    eventually(
        Duration::from_secs(15),
        "the redrive's delete waits",
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'
               AND query LIKE '%DELETE FROM dead_letters%'",
            )
            .fetch_one(&env.db)
            .await
            .unwrap();
            (waiting > 0).then_some(())
        },
    )
    .await;
    again.commit().await.unwrap();

    let (status, body) = redrive.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["removed"], false, "{body}");
    let times: i32 = sqlx::query_scalar("SELECT times FROM dead_letters WHERE id = $1")
        .bind(id)
        .fetch_one(&env.db)
        .await
        .expect("the dead letter survives");
    assert_eq!(times, 2);
    assert_eq!(env.stream_messages().await, 1, "the bytes were published");
    gateway.stop().await.unwrap();
}

/// JetStream unreachable: a redrive is a 503 with Retry-After, like /webhook, and the dead letter
/// stays; the bulk redrive too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_unreachable_means_503_and_the_dead_letter_stays() {
    let env = TestEnv::new().await;
    // A port nothing listens on; the database is there (TestEnv migrated it).
    let gateway = env
        .start_gateway(
            env.gateway_config(&[("ADMIN_TOKENS", ADMIN), ("NATS_URL", "nats://127.0.0.1:9")]),
        )
        .await;
    let ids = insert_dead(&env, &[("refused by postgres: x", "refused", 1)]).await;
    let one = format!("/admin/dead-letters/{}/redrive", ids[0]);
    for path in [one.as_str(), "/admin/dead-letters/redrive"] {
        let (status, body, headers) = admin(&env, &gateway, reqwest::Method::POST, path).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(headers["retry-after"], "1", "{path}");
        assert!(body["detail"].is_string(), "{body}");
    }
    assert_eq!(sql_i64(&env, "SELECT count(*) FROM dead_letters").await, 1);
    // Listing needs no JetStream.
    assert_eq!(get(&env, &gateway, "/admin/dead-letters").await.0, 200);
    gateway.stop().await.unwrap();
}
