//! `messages` partitioned by time: exactly-once through `message_ids` (a re-send with another ts
//! is stored once, the first version winning, within a batch, across batches and partitions, and
//! between two workers), the default partition for outliers, partitions created ahead by the
//! worker under its lock, retention dropping a whole expired partition with `/stats` exact, and
//! the live migration of a million rows from the unpartitioned table.

use std::collections::BTreeMap;
use std::time::Duration;

use integration_tests::{Running, TestEnv, eventually, metric_value, scrape_metrics};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

const WAIT: Duration = Duration::from_secs(60);

/// A message body; `ts` as the sender wrote it.
fn body(id: &str, from: &str, ts: &str) -> String {
    json!({
        "message_id": id,
        "from": from,
        "to": "+14155550100",
        "ts": ts,
        "text": format!("text of {id}"),
    })
    .to_string()
}

/// `now() + offset_secs` as a sender writes it (UTC, microseconds), from Postgres's clock.
async fn ts_in(db: &PgPool, offset_secs: f64) -> String {
    sqlx::query_scalar(
        "SELECT to_char((now() + make_interval(secs => $1)) AT TIME ZONE 'UTC', \
                        'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
    .bind(offset_secs)
    .fetch_one(db)
    .await
    .unwrap()
}

const DAY: f64 = 86_400.0;

/// Straight to the stream, without `Nats-Msg-Id`: JetStream cannot drop a repeat, so every copy
/// reaches the worker and only Postgres can make it one row.
async fn publish(env: &TestEnv, body: String) {
    env.js
        .publish(env.subject.clone(), body.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

async fn get(env: &TestEnv, app: &Running, path: &str) -> Value {
    let response = env.http.get(app.url(path)).send().await.expect("GET");
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("JSON")
}

/// The stored row of `id`: its ts (as the sender wrote it) and the partition holding it.
async fn stored(db: &PgPool, id: &str) -> Vec<(String, String)> {
    sqlx::query_as("SELECT ts_raw, tableoid::regclass::text FROM messages WHERE message_id = $1")
        .bind(id)
        .fetch_all(db)
        .await
        .unwrap()
}

/// Every row's id is in `message_ids` with the row's ts, and nothing else is.
async fn assert_ids_match_rows(db: &PgPool) {
    let (rows, ids, matched): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM message_ids), \
                (SELECT count(*) FROM messages m JOIN message_ids i \
                 ON i.message_id = m.message_id AND i.ts = m.ts)",
    )
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!((ids, matched), (rows, rows), "message_ids against messages");
}

/// `/stats` and `/stats/timeseries?bucket=day` against counts over `messages`.
async fn assert_stats_exact(env: &TestEnv, gateway: &Running) {
    let stats = get(env, gateway, "/stats").await;
    let (total, senders, recipients): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT from_msisdn), count(DISTINCT to_msisdn) FROM messages",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(stats["total_messages"], total, "{stats}");
    assert_eq!(stats["senders_count"], senders, "{stats}");
    assert_eq!(stats["recipients_count"], recipients, "{stats}");
    let per_sender: BTreeMap<String, i64> =
        sqlx::query_as("SELECT from_msisdn, count(*) FROM messages GROUP BY 1")
            .fetch_all(&env.db)
            .await
            .unwrap()
            .into_iter()
            .collect();
    for sender in stats["messages_per_sender"].as_array().unwrap() {
        let from = sender["from"].as_str().unwrap();
        assert_eq!(sender["count"], per_sender[from], "{from}");
    }
    let series = get(env, gateway, "/stats/timeseries?bucket=day").await;
    let by_day: Vec<i64> = sqlx::query_scalar(
        "SELECT count(*) FROM messages GROUP BY date_trunc('day', ts, 'UTC') \
         ORDER BY date_trunc('day', ts, 'UTC')",
    )
    .fetch_all(&env.db)
    .await
    .unwrap();
    let served: Vec<i64> = series["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_i64().unwrap())
        .collect();
    assert_eq!(served, by_day, "{series}");
}

async fn partitions(db: &PgPool) -> Vec<(String, Option<String>, Option<String>)> {
    sqlx::query_as(
        "SELECT name, to_char(lower_bound AT TIME ZONE 'UTC', 'YYYY-MM-DD'), \
                to_char(upper_bound AT TIME ZONE 'UTC', 'YYYY-MM-DD') \
         FROM message_partitions() WHERE NOT is_default ORDER BY lower_bound NULLS FIRST",
    )
    .fetch_all(db)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_with_another_ts_is_stored_once_and_the_first_version_wins() {
    let env = TestEnv::new().await;
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    env.wait_stream_ready().await;
    let (now, past, future) = (
        ts_in(&env.db, 0.0).await,
        "2001-02-03T04:05:06Z".to_owned(),
        ts_in(&env.db, 400.0 * DAY).await,
    );

    // Both versions in one batch: published before the worker starts, taken in one pull.
    publish(&env, body("same-batch", "+1", &past)).await;
    publish(&env, body("same-batch", "+1", &now)).await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    env.wait_drained().await;
    let first = stored(&env.db, "same-batch").await;
    assert_eq!(first, [(past.clone(), "messages_default".to_owned())]);

    // Across batches and partitions: the current interval's partition, then the default one.
    eventually(WAIT, "the current partition", || async {
        (partitions(&env.db).await.len() >= 3).then_some(())
    })
    .await;
    publish(&env, body("across", "+2", &now)).await;
    env.wait_drained().await;
    let current = stored(&env.db, "across").await;
    assert_eq!(current.len(), 1);
    assert!(current[0].1.starts_with("messages_p"), "{current:?}");
    for ts in [&past, &future, &now] {
        publish(&env, body("across", "+2", ts)).await;
        publish(&env, body("same-batch", "+1", ts)).await;
    }
    env.wait_drained().await;
    assert_eq!(stored(&env.db, "across").await, current);
    assert_eq!(stored(&env.db, "same-batch").await, first);
    assert_eq!(env.row_count().await, 2);
    assert_ids_match_rows(&env.db).await;
    assert_stats_exact(&env, &gateway).await;

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_racing_on_the_same_ids_store_each_once() {
    let env = TestEnv::new().await;
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    env.wait_stream_ready().await;
    let config = [("BATCH_SIZE", "20"), ("BATCHES_IN_FLIGHT", "4")];
    let (a, b) = (
        env.start_worker(env.worker_config(&config)).await,
        env.start_worker(env.worker_config(&config)).await,
    );
    let (now, past) = (
        ts_in(&env.db, 0.0).await,
        ts_in(&env.db, -3000.0 * DAY).await,
    );
    // Each id three times, with two different ts, spread so that the copies of one id fall into
    // different batches taken by either worker.
    let ids = 300;
    for round in 0..3 {
        for i in 0..ids {
            let ts = if (i + round) % 2 == 0 { &now } else { &past };
            publish(&env, body(&format!("race-{i:03}"), "+3", ts)).await;
        }
    }
    env.wait_drained().await;
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT message_id) FROM messages")
            .fetch_one(&env.db)
            .await
            .unwrap();
    assert_eq!((rows, distinct), (ids, ids));
    assert_ids_match_rows(&env.db).await;
    assert_stats_exact(&env, &gateway).await;

    a.stop().await.unwrap();
    b.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_outside_every_partition_land_in_the_default_one_are_readable_and_move_when_theirs_is_created()
 {
    let env = TestEnv::new().await;
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    let worker = env
        .start_worker(env.worker_config(&[("PARTITIONS_AHEAD", "1")]))
        .await;
    env.wait_stream_ready().await;
    let ahead = ts_in(&env.db, 100.0 * DAY).await;
    for (id, ts) in [
        ("ancient", "1999-12-31T23:59:59Z"),
        ("far-future", "2199-01-01T00:00:00Z"),
        ("ahead", ahead.as_str()),
    ] {
        assert_eq!(
            env.post_signed(&gateway, &body(id, "+4", ts))
                .await
                .status(),
            200
        );
    }
    env.wait_for_rows(3).await;
    for id in ["ancient", "far-future", "ahead"] {
        assert_eq!(stored(&env.db, id).await[0].1, "messages_default", "{id}");
    }
    let page = get(&env, &gateway, "/messages?limit=10").await;
    let listed: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["ancient", "ahead", "far-future"], "{page}");
    let stats = get(&env, &gateway, "/stats").await;
    assert_eq!(stats["first_message_ts"], "1999-12-31T23:59:59Z");
    assert_eq!(stats["last_message_ts"], "2199-01-01T00:00:00Z");

    // A worker keeping more partitions ahead creates the one `ahead` belongs to: the row moves
    // there, and reads and /stats see the same.
    worker.stop().await.unwrap();
    let worker = env
        .start_worker(env.worker_config(&[("PARTITIONS_AHEAD", "6")]))
        .await;
    let moved = eventually(WAIT, "the row moved into its partition", || async {
        let at = stored(&env.db, "ahead").await;
        (at[0].1 != "messages_default").then(|| at[0].1.clone())
    })
    .await;
    assert!(moved.starts_with("messages_p"), "{moved}");
    assert_eq!(
        get(&env, &gateway, "/messages?limit=10").await["data"],
        page["data"]
    );
    assert_eq!(env.row_count().await, 3);
    assert_ids_match_rows(&env.db).await;
    assert_stats_exact(&env, &gateway).await;

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_ahead_exist_after_the_worker_starts_for_each_interval() {
    for (interval, days) in [("day", [1, 1]), ("week", [7, 7]), ("month", [28, 31])] {
        let env = TestEnv::new().await;
        let config = [("PARTITION_INTERVAL", interval), ("PARTITIONS_AHEAD", "3")];
        // Two workers at once: each partition is created once, under the lock.
        let (a, b) = (
            env.start_worker(env.worker_config(&config)).await,
            env.start_worker(env.worker_config(&config)).await,
        );
        let made = eventually(WAIT, &format!("{interval} partitions"), || async {
            let made = partitions(&env.db).await;
            (made.len() == 4).then_some(made)
        })
        .await;
        let (lo, hi): (String, String) = sqlx::query_as(
            "SELECT to_char(date_trunc($1, now(), 'UTC') AT TIME ZONE 'UTC', 'YYYY-MM-DD'), \
                    to_char((date_trunc($1, now(), 'UTC') + 4 * ('1 ' || $1)::interval) \
                            AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        )
        .bind(interval)
        .fetch_one(&env.db)
        .await
        .unwrap();
        assert_eq!(made[0].1.as_deref(), Some(lo.as_str()), "{made:?}");
        assert_eq!(made[3].2.as_deref(), Some(hi.as_str()), "{made:?}");
        for (name, from, to) in &made {
            let from = from.as_deref().unwrap();
            assert_eq!(name, &format!("messages_p{}", from.replace('-', "")));
            // Contiguous, each one interval wide.
            let width: i32 = sqlx::query_scalar("SELECT ($2::date - $1::date)")
                .bind(from)
                .bind(to.as_deref().unwrap())
                .fetch_one(&env.db)
                .await
                .unwrap();
            assert!((days[0]..=days[1]).contains(&width), "{interval}: {made:?}");
        }
        for pair in made.windows(2) {
            assert_eq!(pair[0].2, pair[1].1, "{made:?}");
        }
        let metrics = scrape_metrics(&env.http, &a).await;
        // One recorder for the whole test process: the series adds up every worker started here.
        assert!(
            metric_value(&metrics, "worker_partitions_created_total").unwrap_or(0.0) >= 4.0,
            "{metrics}"
        );
        a.stop().await.unwrap();
        b.stop().await.unwrap();
        // Once more with nothing to do: nothing is created twice.
        let again: Vec<String> = sqlx::query_scalar("SELECT ensure_message_partitions($1, 3)")
            .bind(interval)
            .fetch_all(&env.db)
            .await
            .unwrap();
        assert!(again.is_empty(), "{again:?}");
    }
}

/// Publishes `count` messages `<prefix><i>` from `senders` senders, the i-th stamped
/// `offset_secs + i` minutes from now.
async fn publish_run(env: &TestEnv, prefix: &str, count: usize, offset_secs: f64, senders: usize) {
    for i in 0..count {
        let ts = ts_in(&env.db, offset_secs + 60.0 * i as f64).await;
        let from = format!("+77{}", i % senders);
        publish(env, body(&format!("{prefix}{i:04}"), &from, &ts)).await;
    }
}

async fn count_prefix(db: &PgPool, table: &str, prefix: &str) -> i64 {
    let sql = match table {
        "messages" => "SELECT count(*) FROM messages WHERE message_id LIKE $1 || '%'",
        _ => "SELECT count(*) FROM message_ids WHERE message_id LIKE $1 || '%'",
    };
    sqlx::query_scalar(sql)
        .bind(prefix)
        .fetch_one(db)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_a_whole_expired_partition_and_the_stats_stay_exact() {
    let env = TestEnv::new().await;
    // Before any worker: an expired partition and one straddling the cutoff (RETENTION_DAYS=30),
    // which the worker's own partitions then fit around.
    sqlx::raw_sql(
        "DO $$ BEGIN \
           EXECUTE format('CREATE TABLE messages_expired PARTITION OF messages \
                           FOR VALUES FROM (%L) TO (%L)', \
                          now() - interval '120 days', now() - interval '60 days'); \
           EXECUTE format('CREATE TABLE messages_straddling PARTITION OF messages \
                           FOR VALUES FROM (%L) TO (%L)', \
                          now() - interval '60 days', now() - interval '1 day'); \
         END $$",
    )
    .execute(&env.db)
    .await
    .unwrap();
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    env.wait_stream_ready().await;
    publish_run(&env, "exp-", 300, -90.0 * DAY, 5).await;
    publish_run(&env, "str-old-", 120, -45.0 * DAY, 3).await;
    publish_run(&env, "str-new-", 80, -10.0 * DAY, 3).await;
    publish_run(&env, "cur-", 50, -3600.0, 2).await;
    publish(&env, body("out-old", "+78", "2001-01-01T00:00:00Z")).await;
    publish(&env, body("out-new", "+78", "2199-01-01T00:00:00Z")).await;
    env.wait_drained().await;
    assert_eq!(env.row_count().await, 552);
    assert_eq!(stored(&env.db, "exp-0000").await[0].1, "messages_expired");
    assert_eq!(
        stored(&env.db, "str-new-0000").await[0].1,
        "messages_straddling"
    );
    assert_stats_exact(&env, &gateway).await;
    worker.stop().await.unwrap();

    // Retention on, with ingestion going on meanwhile; small batches, so the partition leaves the
    // aggregates in several chunks and the straddling rows go in several batches.
    let worker = env
        .start_worker(env.worker_config(&[
            ("RETENTION_DAYS", "30"),
            ("RETENTION_BATCH_SIZE", "40"),
            ("RETENTION_BATCH_PAUSE_MS", "1"),
        ]))
        .await;
    publish_run(&env, "live-", 150, -60.0, 4).await;
    eventually(WAIT, "the expired partition dropped", || async {
        let gone: bool = sqlx::query_scalar("SELECT to_regclass('messages_expired') IS NULL")
            .fetch_one(&env.db)
            .await
            .unwrap();
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM messages WHERE ts < now() - interval '30 days'",
        )
        .fetch_one(&env.db)
        .await
        .unwrap();
        (gone && left == 0).then_some(())
    })
    .await;
    env.wait_drained().await;

    for (prefix, kept) in [
        ("exp-", 0),
        ("str-old-", 0),
        ("str-new-", 80),
        ("cur-", 50),
        ("out-old", 0),
        ("out-new", 1),
        ("live-", 150),
    ] {
        assert_eq!(
            count_prefix(&env.db, "messages", prefix).await,
            kept,
            "{prefix}"
        );
        assert_eq!(
            count_prefix(&env.db, "message_ids", prefix).await,
            kept,
            "{prefix} ids"
        );
    }
    assert_ids_match_rows(&env.db).await;
    assert_stats_exact(&env, &gateway).await;
    let metrics = scrape_metrics(&env.http, &worker).await;
    assert!(
        metric_value(&metrics, "worker_partitions_dropped_total").unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );
    assert!(
        metric_value(&metrics, "worker_partition_drop_readers_blocked_ms_count").unwrap_or(0.0)
            >= 1.0,
        "{metrics}"
    );
    // An id whose row retention removed is a new message when it comes again.
    publish(&env, body("exp-0000", "+79", &ts_in(&env.db, 0.0).await)).await;
    env.wait_drained().await;
    assert_eq!(count_prefix(&env.db, "messages", "exp-0000").await, 1);

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

/// What `/stats` and the time series are made of, as the read model keeps it.
async fn read_model(db: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT 'totals ' || total_messages || ' ' || senders_count || ' ' || recipients_count \
           FROM message_totals \
         UNION ALL SELECT 'first ' || (SELECT ts_raw FROM messages ORDER BY ts, message_id LIMIT 1) \
         UNION ALL SELECT 'last ' || (SELECT ts_raw FROM messages \
                                      ORDER BY ts DESC, message_id DESC LIMIT 1) \
         UNION ALL (SELECT 'sender ' || from_msisdn || ' ' || count FROM sender_stats \
                    ORDER BY from_msisdn) \
         UNION ALL (SELECT 'recipient ' || to_msisdn || ' ' || count FROM recipient_stats \
                    ORDER BY to_msisdn) \
         UNION ALL (SELECT 'hour ' || hour || ' ' || count FROM message_hours ORDER BY hour) \
         UNION ALL (SELECT 'day ' || day || ' ' || count FROM message_days ORDER BY day)",
    )
    .fetch_all(db)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_migration_of_a_million_rows_keeps_every_row_id_and_stat() {
    let env = TestEnv::new().await;
    // A database at the schema before partitioning, with a million rows in it.
    let name = format!("{}_mig", env.database_name);
    let admin = integration_tests::admin_database_url();
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&admin)
        .await
        .unwrap();
    let url = env.database_url.replace(&env.database_name, &name);
    let db = PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .unwrap();
    ingest_shared::db::MIGRATOR
        .run_to(20261203000006, &db)
        .await
        .expect("the migrations before partitioning");
    let is_partitioned = || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT relkind = 'p' FROM pg_class WHERE oid = 'messages'::regclass",
        )
        .fetch_one(&db)
        .await
        .unwrap()
    };
    assert!(!is_partitioned().await);
    let rows: i64 = 1_000_000;
    sqlx::raw_sql(
        "DROP INDEX messages_text_trgm_idx; \
         INSERT INTO messages (message_id, from_msisdn, to_msisdn, ts, ts_raw, text) \
         SELECT 'm' || g, '+1555' || (g % 5000), '+1666' || (g % 300), \
                now() - interval '300 days' + g * interval '25 seconds', 'raw' || g, \
                'order ' || g || ' shipped' \
         FROM generate_series(1, 999999) g; \
         INSERT INTO messages (message_id, from_msisdn, to_msisdn, ts, ts_raw, text) \
         VALUES ('clock-ahead', '+1555', '+1666', '2199-01-01T00:00:00Z', 'ahead', 'ahead'); \
         CREATE INDEX messages_text_trgm_idx ON messages USING gin (text gin_trgm_ops); \
         SELECT rebuild_message_stats(); \
         ANALYZE messages",
    )
    .execute(&db)
    .await
    .unwrap();
    let before = read_model(&db).await;

    let started = std::time::Instant::now();
    ingest_shared::db::migrate(&db).await.expect("migrate");
    println!("migrated {rows} rows in {:?}", started.elapsed());
    assert!(is_partitioned().await);
    assert_eq!(read_model(&db).await, before);
    let by_partition: Vec<(String, i64)> = sqlx::query_as(
        "SELECT tableoid::regclass::text, count(*) FROM messages GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(
        by_partition,
        [
            ("messages_default".to_owned(), 1),
            ("messages_legacy".to_owned(), rows - 1)
        ]
    );
    assert_ids_match_rows(&db).await;
    // The repair tool works on the partitioned table and finds the same.
    sqlx::query("SELECT rebuild_message_stats()")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(read_model(&db).await, before);
    // The search index came along: valid, its legacy part attached without a rebuild.
    assert_eq!(
        ingest_shared::search_index::state(&db).await.unwrap(),
        Some(ingest_shared::search_index::IndexState::Trigram)
    );

    // The services on the migrated database: the same /stats, an old id still deduplicated, a
    // new message stored in a partition the worker created.
    let gateway = env
        .start_gateway(env.gateway_config(&[("DATABASE_URL", &url)]))
        .await;
    let worker = env
        .start_worker(env.worker_config(&[("DATABASE_URL", &url)]))
        .await;
    env.wait_stream_ready().await;
    let stats = get(&env, &gateway, "/stats").await;
    assert_eq!(stats["total_messages"], rows, "{stats}");
    assert_eq!(stats["senders_count"], 5001, "{stats}");
    assert_eq!(stats["first_message_ts"], "raw1");
    assert_eq!(stats["last_message_ts"], "ahead");
    let next_month = ts_in(&db, 40.0 * DAY).await;
    publish(&env, body("m5", "+1999", &next_month)).await;
    publish(&env, body("new-1", "+1999", &next_month)).await;
    env.wait_drained().await;
    assert_eq!(
        stored(&db, "m5").await,
        [("raw5".to_owned(), "messages_legacy".to_owned())]
    );
    let new = stored(&db, "new-1").await;
    assert!(new[0].1.starts_with("messages_p"), "{new:?}");
    let stats = get(&env, &gateway, "/stats").await;
    assert_eq!(stats["total_messages"], rows + 1, "{stats}");

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
    db.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .unwrap();
}

/// The drop that ends a partition's retirement drops only an empty partition of messages: a row
/// that arrived after retention emptied it (a late message dated inside the expired range) keeps
/// the partition, for the next pass to count and empty; one already gone is NULL; anything but a
/// partition of messages is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retirement_drops_a_partition_only_when_it_is_empty() {
    let env = TestEnv::new().await;
    for statement in [
        "CREATE TABLE messages_p20200101 (LIKE messages INCLUDING DEFAULTS)",
        "ALTER TABLE messages ATTACH PARTITION messages_p20200101 \
         FOR VALUES FROM ('2020-01-01') TO ('2020-02-01')",
        "INSERT INTO messages (message_id, from_msisdn, to_msisdn, ts, ts_raw) \
         VALUES ('late', '+15550001', '+15550002', '2020-01-05T00:00:00Z', '2020-01-05T00:00:00Z')",
    ] {
        sqlx::query(statement).execute(&env.db).await.unwrap();
    }
    let drop = || async {
        sqlx::query_scalar::<_, Option<bool>>("SELECT drop_message_partition('messages_p20200101')")
            .fetch_one(&env.db)
            .await
    };
    let exists = || async {
        sqlx::query_scalar::<_, bool>("SELECT to_regclass('messages_p20200101') IS NOT NULL")
            .fetch_one(&env.db)
            .await
            .unwrap()
    };
    assert_eq!(drop().await.unwrap(), Some(false), "a late row keeps it");
    assert!(exists().await);
    sqlx::query("DELETE FROM messages WHERE message_id = 'late'")
        .execute(&env.db)
        .await
        .unwrap();
    assert_eq!(drop().await.unwrap(), Some(true), "empty: dropped");
    assert!(!exists().await);
    assert_eq!(drop().await.unwrap(), None, "gone already");
    let refused = sqlx::query("SELECT drop_message_partition('message_ids')")
        .execute(&env.db)
        .await;
    assert!(refused.is_err(), "not a partition of messages");
}
