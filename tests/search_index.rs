//! `SEARCH_INDEX=trigram|none`: switching the trigram index on a live database while messages
//! flow, what `q=` answers in either mode, `/health/ready`'s `search_index`, an INVALID index
//! left by an interrupted build, a build started elsewhere, and the advisory lock.
//!
//! `messages` is partitioned: the index is the partitioned index on `messages`, valid once every
//! partition has its part; the builds "by hand" below are a partition's part.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use ingest_shared::search_index::{
    self, IndexState, LOCK_KEY, ReconcileError, Reconciled, SearchIndex,
};
use integration_tests::{Running, SECRET, TestEnv, eventually};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

const WAIT: Duration = Duration::from_secs(60);
const SENDERS: u32 = 7;
const WORDS: [&str; 4] = ["Shipped", "delayed", "DELIVERED", "returned to 50%_sender"];

/// Message `i` of the load: its id, sender, time and text are all functions of `i`.
fn body(i: u32) -> String {
    let ts = chrono_like_ts(i);
    serde_json::json!({
        "message_id": format!("m{i:06}"),
        "from": format!("+9190000000{:02}", i % SENDERS),
        "to": format!("+1415555{:04}", i % 3),
        "ts": ts,
        "text": text(i),
    })
    .to_string()
}

fn text(i: u32) -> String {
    format!("Order {i} was {}", WORDS[(i % 4) as usize])
}

/// `2025-01-01T00:00:00Z` plus `i` times 7 minutes, as RFC 3339.
fn chrono_like_ts(i: u32) -> String {
    let minutes = u64::from(i) * 7;
    let (days, rest) = (minutes / 1440, minutes % 1440);
    // January has 31 days, and so on: stay within a simple calendar by spilling into months
    // of 28 days' worth at most (the load stays below ~100 days).
    let (month, day) = month_day(days);
    format!(
        "2025-{month:02}-{day:02}T{:02}:{:02}:00Z",
        rest / 60,
        rest % 60
    )
}

fn month_day(days: u64) -> (u64, u64) {
    let lengths = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut left = days;
    for (m, len) in lengths.iter().enumerate() {
        if left < *len {
            return (m as u64 + 1, left + 1);
        }
        left -= len;
    }
    panic!("the load spans more than a year: {days} days");
}

async fn post(http: &reqwest::Client, url: &str, body: String) -> u16 {
    let signature = ingest_shared::signature::sign(SECRET.as_bytes(), body.as_bytes());
    match http
        .post(url)
        .header("content-type", "application/json")
        .header("x-signature", signature)
        .body(body)
        .send()
        .await
    {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

/// Most messages the load posts: below the read API's count bound (10,000), so every total
/// below is counted, not estimated.
const LOAD_CAP: u32 = 9_500;

/// Posts messages 0, 1, 2, ... 4 at a time until `stop` is set and at least `at_least` are
/// posted (or `LOAD_CAP` are); returns every answer's status, in id order.
fn start_load(
    env: &TestEnv,
    gateway: &Running,
    at_least: u32,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<u16>> {
    let (http, url) = (env.http.clone(), gateway.url("/webhook"));
    tokio::spawn(async move {
        futures::stream::iter(0u32..)
            .take_while(move |i| {
                let go_on = *i < at_least || (!stop.load(Ordering::SeqCst) && *i < LOAD_CAP);
                std::future::ready(go_on)
            })
            .map(|i| {
                let (http, url) = (http.clone(), url.clone());
                async move { post(&http, &url, body(i)).await }
            })
            .buffered(4)
            .collect()
            .await
    })
}

/// The index as the catalog has it: `None` absent, `Some(valid)` present. On the partitioned
/// `messages` it is valid only once every partition has its part attached.
async fn catalog_index(env: &TestEnv) -> Option<bool> {
    // From pg_index itself rather than pg_indexes: pg_get_indexdef fails on an index that a
    // concurrent DROP INDEX removes meanwhile, which the switches under load do.
    sqlx::query_scalar(
        "SELECT i.indisvalid FROM pg_class c \
         JOIN pg_index i ON i.indexrelid = c.oid \
         WHERE c.relname = 'messages_text_trgm_idx' AND c.relkind IN ('i', 'I') \
           AND i.indrelid = 'messages'::regclass AND i.indnatts = 1 \
           AND i.indkey[0] = (SELECT attnum FROM pg_attribute \
                              WHERE attrelid = 'messages'::regclass AND attname = 'text') \
           AND i.indclass[0] = (SELECT oid FROM pg_opclass \
                                WHERE opcname = 'gin_trgm_ops' \
                                  AND opcmethod = (SELECT oid FROM pg_am WHERE amname = 'gin'))",
    )
    .fetch_optional(&env.db)
    .await
    .expect("read pg_index")
}

/// `GET /health/ready`: its status and body.
async fn ready(env: &TestEnv, app: &Running) -> (u16, Value) {
    let response = env
        .http
        .get(app.url("/health/ready"))
        .send()
        .await
        .expect("GET /health/ready");
    let status = response.status().as_u16();
    (status, response.json().await.expect("readiness JSON"))
}

/// Waits until the catalog has the index as `mode` asks and `app` reports it, ready.
async fn wait_in_line(env: &TestEnv, app: &Running, mode: SearchIndex) {
    let (catalog, reported) = match mode {
        SearchIndex::Trigram => (Some(true), "trigram"),
        SearchIndex::None => (None, "none"),
    };
    eventually(WAIT, &format!("index {mode} in the catalog"), || async {
        (catalog_index(env).await == catalog).then_some(())
    })
    .await;
    eventually(WAIT, &format!("/health/ready says {reported}"), || async {
        let (status, body) = ready(env, app).await;
        (status == 200 && body["search_index"] == reported).then_some(())
    })
    .await;
}

/// The ids and total `q=` (with `extra` filters) answers, walking every page by cursor.
async fn search(
    env: &TestEnv,
    gateway: &Running,
    q: &str,
    extra: &[(&str, &str)],
) -> (Vec<String>, i64) {
    let mut ids = Vec::new();
    let mut total = None;
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut query: Vec<(&str, &str)> = vec![("q", q), ("limit", "100")];
        query.extend_from_slice(extra);
        if let Some(c) = &cursor {
            query.push(("cursor", c));
        }
        let response = env
            .http
            .get(gateway.url("/messages"))
            .query(&query)
            .send()
            .await
            .expect("GET /messages");
        assert_eq!(response.status(), 200, "q={q} {extra:?}");
        let page: Value = response.json().await.expect("page JSON");
        let page_total = page["total"].as_i64().expect("total");
        assert_eq!(*total.get_or_insert(page_total), page_total, "total moves");
        ids.extend(
            page["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|m| m["message_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (ids, total.unwrap_or(0)),
        }
    }
    panic!("the cursor walk for q={q} does not end");
}

/// The searches compared across modes: a word in varying case, a pattern with `%` and `_`, a
/// 2-character pattern (never served by the index), and a search bounded by time or sender.
fn searches() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    vec![
        ("DELAYED", vec![]),
        ("shipped", vec![]),
        ("50%_s", vec![]),
        ("er 1", vec![]),
        ("wa", vec![]),
        (
            "delivered",
            vec![
                ("since", "2025-01-03T00:00:00Z"),
                ("until", "2025-01-06T00:00:00Z"),
            ],
        ),
        ("order", vec![("from", "+919000000003")]),
    ]
}

/// What each search must find among messages `0..n`, in the API's order.
fn expected(n: u32, q: &str, extra: &[(&str, &str)]) -> Vec<String> {
    let mut rows: Vec<(String, String)> = (0..n)
        .filter(|&i| text(i).to_lowercase().contains(&q.to_lowercase()))
        .filter(|&i| {
            extra.iter().all(|(k, v)| match *k {
                "since" => chrono_like_ts(i).as_str() >= *v,
                "until" => chrono_like_ts(i).as_str() < *v,
                "from" => format!("+9190000000{:02}", i % SENDERS) == *v,
                other => panic!("unexpected filter {other}"),
            })
        })
        .map(|i| (chrono_like_ts(i), format!("m{i:06}")))
        .collect();
    rows.sort();
    rows.into_iter().map(|(_, id)| id).collect()
}

fn connect_options(env: &TestEnv) -> PgConnectOptions {
    env.database_url.parse().expect("test database URL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_the_index_both_ways_under_load_loses_nothing_and_search_answers_the_same() {
    let env = TestEnv::new().await;
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    env.wait_stream_ready().await;
    gateway.wait_ready(&env.http, WAIT).await;
    wait_in_line(&env, &gateway, SearchIndex::Trigram).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(&env, &gateway, 2000, stop.clone());

    // trigram -> none: a worker restarted with SEARCH_INDEX=none drops the index while the
    // gateway keeps receiving and the new worker keeps storing.
    env.wait_for_rows(300).await;
    worker.stop().await.unwrap();
    let worker = env
        .start_worker(env.worker_config(&[("SEARCH_INDEX", "none")]))
        .await;
    wait_in_line(&env, &gateway, SearchIndex::None).await;
    wait_in_line(&env, &worker, SearchIndex::None).await;
    let at_switch = env.row_count().await;
    env.wait_for_rows(at_switch + 100).await;

    // none -> trigram: built CONCURRENTLY while rows keep arriving.
    worker.stop().await.unwrap();
    let worker = env.start_worker(env.worker_config(&[])).await;
    wait_in_line(&env, &gateway, SearchIndex::Trigram).await;
    let at_switch = env.row_count().await;
    env.wait_for_rows(at_switch + 100).await;

    stop.store(true, Ordering::SeqCst);
    let statuses = load.await.unwrap();
    let n = statuses.len() as u32;
    assert!(n >= 2000, "{n} posted");
    let refused: Vec<(usize, u16)> = statuses
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, s)| *s != 200)
        .collect();
    assert!(refused.is_empty(), "answers other than 200: {refused:?}");
    env.wait_drained().await;
    env.wait_for_rows(i64::from(n)).await;

    // Nothing lost, nothing twice.
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT message_id) FROM messages")
            .fetch_one(&env.db)
            .await
            .unwrap();
    assert_eq!((rows, distinct), (i64::from(n), i64::from(n)));
    let posted: BTreeSet<String> = (0..n).map(|i| format!("m{i:06}")).collect();
    assert_eq!(
        env.message_ids().await.into_iter().collect::<BTreeSet<_>>(),
        posted
    );

    // /stats stays exact.
    let stats: Value = env
        .http
        .get(gateway.url("/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["total_messages"], i64::from(n));
    assert_eq!(stats["senders_count"], i64::from(SENDERS));
    assert_eq!(stats["recipients_count"], 3);
    let per_sender: i64 = stats["messages_per_sender"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["count"].as_i64().unwrap())
        .sum();
    assert_eq!(per_sender, i64::from(n));

    // q= on the same data: with the index, then without (a gateway restarted with
    // SEARCH_INDEX=none switches it), then with it again; each answer equal to the others and
    // to what the texts say.
    let mut answers = Vec::new();
    for q in searches() {
        let found = search(&env, &gateway, q.0, &q.1).await;
        let want = expected(n, q.0, &q.1);
        assert!(!want.is_empty(), "{q:?} matches something");
        assert_eq!(found.0, want, "trigram: {q:?}");
        assert_eq!(found.1, want.len() as i64, "trigram total: {q:?}");
        answers.push(found);
    }
    gateway.stop().await.unwrap();
    let gateway = env
        .start_gateway(env.gateway_config(&[("SEARCH_INDEX", "none")]))
        .await;
    wait_in_line(&env, &gateway, SearchIndex::None).await;
    for (q, with_index) in searches().iter().zip(&answers) {
        assert_eq!(
            &search(&env, &gateway, q.0, &q.1).await,
            with_index,
            "none: {q:?}"
        );
    }
    gateway.stop().await.unwrap();
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    wait_in_line(&env, &gateway, SearchIndex::Trigram).await;
    for (q, with_index) in searches().iter().zip(&answers) {
        assert_eq!(
            &search(&env, &gateway, q.0, &q.1).await,
            with_index,
            "trigram again: {q:?}"
        );
    }

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

/// The partition that rows stamped now land in: the default one until a worker has created the
/// current interval's.
async fn current_partition(env: &TestEnv) -> String {
    sqlx::query_scalar(
        "SELECT coalesce((SELECT name FROM message_partitions() \
                          WHERE lower_bound <= now() AND upper_bound > now()), \
                         'messages_default')",
    )
    .fetch_one(&env.db)
    .await
    .expect("a partition holds now")
}

/// The statement that builds `partition`'s part of the index by hand, named as the service names
/// the parts it builds.
async fn build_part_by_hand(env: &TestEnv, partition: &str) -> String {
    sqlx::query_scalar(
        "SELECT format('CREATE INDEX CONCURRENTLY %I ON %I USING gin (text gin_trgm_ops)', \
                       $1 || '_text_trgm_idx', $1::text)",
    )
    .bind(partition)
    .fetch_one(&env.db)
    .await
    .unwrap()
}

/// No index, then the partitioned index on `messages` alone, without any part: what the service
/// itself starts a build with (search_index/create.sql).
async fn parent_index_without_parts(env: &TestEnv) {
    sqlx::raw_sql(
        "DROP INDEX IF EXISTS messages_text_trgm_idx; \
         CREATE INDEX messages_text_trgm_idx ON ONLY messages USING gin (text gin_trgm_ops)",
    )
    .execute(&env.db)
    .await
    .unwrap();
}

/// Leaves `messages_text_trgm_idx` INVALID as a build interrupted on a partition does: the part of
/// the current partition INVALID, as a CREATE INDEX CONCURRENTLY interrupted after its first phase
/// leaves it (`holder` keeps an insert open, so the build waits for it, and a statement timeout
/// ends the build there), and no other part.
async fn leave_an_invalid_index(env: &TestEnv) {
    parent_index_without_parts(env).await;
    let build = build_part_by_hand(env, &current_partition(env).await).await;
    let mut holder = PgConnection::connect(&env.database_url).await.unwrap();
    let mut tx = holder.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO messages (message_id, from_msisdn, to_msisdn, ts, ts_raw, text) \
         VALUES ('held', '+1', '+2', now(), 'now', 'held open')",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    let mut builder = PgConnection::connect(&env.database_url).await.unwrap();
    sqlx::query("SET statement_timeout = '300ms'")
        .execute(&mut builder)
        .await
        .unwrap();
    let interrupted = sqlx::raw_sql(sqlx::AssertSqlSafe(build))
        .execute(&mut builder)
        .await;
    assert!(interrupted.is_err(), "the build was not interrupted");
    tx.rollback().await.unwrap();
    assert_eq!(catalog_index(env).await, Some(false));
    // The interrupted backend sends the error before it clears its progress row, so for a
    // moment the build still shows as under way.
    eventually(WAIT, "the interrupted build shows as invalid", || async {
        let state = search_index::state(&env.db).await.unwrap();
        (state == Some(IndexState::Invalid)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_index_left_by_an_interrupted_build_is_rebuilt_or_dropped() {
    let env = TestEnv::new().await;

    // A gateway starting with SEARCH_INDEX=trigram drops and rebuilds it.
    leave_an_invalid_index(&env).await;
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    wait_in_line(&env, &gateway, SearchIndex::Trigram).await;
    gateway.stop().await.unwrap();

    // The reconcile step itself, with SEARCH_INDEX=none: dropped.
    leave_an_invalid_index(&env).await;
    let reconciled = search_index::reconcile(&connect_options(&env), SearchIndex::None)
        .await
        .unwrap();
    assert_eq!(reconciled.found, IndexState::Invalid);
    assert!(reconciled.switched_in.is_some());
    assert_eq!(catalog_index(&env).await, None);

    // And with trigram, from INVALID again, rebuilt valid.
    leave_an_invalid_index(&env).await;
    let reconciled = search_index::reconcile(&connect_options(&env), SearchIndex::Trigram)
        .await
        .unwrap();
    assert_eq!(reconciled.found, IndexState::Invalid);
    assert_eq!(catalog_index(&env).await, Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_under_way_reports_building_and_keeps_the_gateway_ready() {
    let env = TestEnv::new().await;
    parent_index_without_parts(&env).await;
    let build = build_part_by_hand(&env, &current_partition(&env).await).await;
    // A build started by hand that waits on an open insert: "building" until it is let go.
    let mut holder = PgConnection::connect(&env.database_url).await.unwrap();
    let mut tx = holder.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO messages (message_id, from_msisdn, to_msisdn, ts, ts_raw, text) \
         VALUES ('held', '+1', '+2', now(), 'now', 'held open')",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    let url = env.database_url.clone();
    let build = tokio::spawn(async move {
        let mut builder = PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(build))
            .execute(&mut builder)
            .await
            .map(|_| ())
    });
    eventually(WAIT, "the build shows as building", || async {
        (search_index::state(&env.db).await.unwrap() == Some(IndexState::Building)).then_some(())
    })
    .await;

    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    env.wait_stream_ready().await;
    gateway.wait_ready(&env.http, WAIT).await;
    let (status, body) = ready(&env, &gateway).await;
    assert_eq!(
        (status, &body["search_index"]),
        (200, &Value::from("building")),
        "{body}"
    );
    assert_eq!(body["status"], "ready");
    // Neither SEARCH_INDEX=trigram nor none touches a build it did not start.
    let busy = search_index::reconcile(&connect_options(&env), SearchIndex::None).await;
    assert!(
        matches!(
            busy,
            Err(ReconcileError::BuildingElsewhere | ReconcileError::Busy)
        ),
        "{busy:?}"
    );
    assert_eq!(
        search_index::state(&env.db).await.unwrap(),
        Some(IndexState::Building)
    );

    tx.commit().await.unwrap();
    build.await.unwrap().expect("the build finishes");
    wait_in_line(&env, &gateway, SearchIndex::Trigram).await;
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_advisory_lock_lets_one_process_at_a_time_switch_the_index() {
    let env = TestEnv::new().await;
    let options = connect_options(&env);

    // Held elsewhere: the attempt changes nothing and says so.
    let mut other = PgConnection::connect(&env.database_url).await.unwrap();
    let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert!(taken);
    let busy = search_index::reconcile(&options, SearchIndex::None).await;
    assert!(matches!(busy, Err(ReconcileError::Busy)), "{busy:?}");
    assert_eq!(catalog_index(&env).await, Some(true));
    other.close().await.unwrap();

    let dropped = search_index::reconcile(&options, SearchIndex::None)
        .await
        .unwrap();
    assert_eq!(dropped.found, IndexState::Trigram);
    assert!(dropped.switched_in.is_some());
    assert_eq!(catalog_index(&env).await, None);

    // Two at once: one builds, the other finds it busy or already built; the lock is free after.
    let (a, b) = tokio::join!(
        search_index::reconcile(&options, SearchIndex::Trigram),
        search_index::reconcile(&options, SearchIndex::Trigram)
    );
    let switched = [&a, &b]
        .iter()
        .filter(|r| {
            matches!(
                r,
                Ok(Reconciled {
                    switched_in: Some(_),
                    ..
                })
            )
        })
        .count();
    for result in [&a, &b] {
        assert!(
            matches!(result, Ok(_) | Err(ReconcileError::Busy)),
            "{result:?}"
        );
    }
    assert_eq!(switched, 1, "{a:?} {b:?}");
    assert_eq!(catalog_index(&env).await, Some(true));
    let again = search_index::reconcile(&options, SearchIndex::Trigram)
        .await
        .unwrap();
    assert_eq!(
        again,
        Reconciled {
            found: IndexState::Trigram,
            switched_in: None
        }
    );
}
