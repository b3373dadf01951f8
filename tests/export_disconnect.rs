//! A client that goes away mid-export stops it: its slot, its round trips and its statement.
//! A test binary of its own, because it reads the process-wide export metrics, which the other
//! export tests would move while it runs.

use std::time::Duration;

use integration_tests::{Running, TestEnv, eventually, metric_value, scrape_metrics};

const SEEDED: i64 = 100_000;

async fn exports_in_progress(env: &TestEnv, gateway: &Running) -> f64 {
    metric_value(
        &scrape_metrics(&env.http, gateway).await,
        "exports_in_progress",
    )
    .expect("exports_in_progress")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_stops_the_export() {
    let env = TestEnv::new().await;
    let gateway = env
        .start_gateway(env.gateway_config(&[("EXPORT_BATCH_ROWS", "1000")]))
        .await;
    env.wait_stream_ready().await;
    integration_tests::seed_messages(&env, SEEDED).await;

    let mut response = env
        .http
        .get(gateway.url("/messages?format=ndjson"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.chunk().await.unwrap().is_some());
    assert_eq!(exports_in_progress(&env, &gateway).await, 1.0);
    drop(response);

    eventually(Duration::from_secs(10), "the export to end", || async {
        (exports_in_progress(&env, &gateway).await == 0.0).then_some(())
    })
    .await;
    // It ended early: far from every row was read.
    let metrics = scrape_metrics(&env.http, &gateway).await;
    let sent = metric_value(&metrics, r#"export_rows_total{format="ndjson"}"#).unwrap();
    assert!(sent < SEEDED as f64, "{sent} rows read");
    // And no statement of it is left running in the database.
    eventually(
        Duration::from_secs(10),
        "no export statement running",
        || async {
            let running: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND state <> 'idle'
               AND query LIKE '%One round trip of a streamed%' AND pid <> pg_backend_pid()",
            )
            .fetch_one(&env.db)
            .await
            .unwrap();
            (running == 0).then_some(())
        },
    )
    .await;
    let later = scrape_metrics(&env.http, &gateway).await;
    assert_eq!(
        metric_value(&later, r#"export_rows_total{format="ndjson"}"#).unwrap(),
        sent,
        "no round trip after the client left"
    );
    gateway.stop().await.unwrap();
}
