//! `GET /stats/timeseries` over HTTP against the running gateway, on rows written by the real
//! worker from real JetStream: every series equals a direct `date_trunc` count, its sum equals
//! the `/messages` total of the same filters, and bucket edges fall where UTC says.

use futures::StreamExt;
use integration_tests::{Running, TestEnv};
use serde_json::{Value, json};

async fn get(env: &TestEnv, gateway: &Running, path_and_query: &str) -> (u16, Value) {
    let response = env
        .http
        .get(gateway.url(path_and_query))
        .send()
        .await
        .expect("GET");
    let status = response.status().as_u16();
    let value = response.json::<Value>().await.expect("a JSON body");
    (status, value)
}

async fn post_all(env: &TestEnv, gateway: &Running, bodies: &[String]) {
    let statuses: Vec<u16> = futures::stream::iter(bodies)
        .map(|b| async move { env.post_signed(gateway, b).await.status().as_u16() })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

/// The series as a direct count over `messages` would give it.
async fn direct(
    env: &TestEnv,
    unit: &str,
    filters: &[(&str, Option<String>)],
) -> Vec<(String, i64)> {
    let get = |name: &str| {
        filters
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.clone())
    };
    sqlx::query_as(
        "SELECT to_char(date_trunc($1, ts, 'UTC') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                count(*)
         FROM messages
         WHERE ($2::text IS NULL OR from_msisdn = $2) AND ($3::text IS NULL OR to_msisdn = $3)
           AND ($4::text IS NULL OR ts >= $4::timestamptz) AND ($5::text IS NULL OR ts < $5::timestamptz)
         GROUP BY 1 ORDER BY 1",
    )
    .bind(unit)
    .bind(get("from"))
    .bind(get("to"))
    .bind(get("since"))
    .bind(get("until"))
    .fetch_all(&env.db)
    .await
    .unwrap()
}

fn series(body: &Value) -> Vec<(String, i64)> {
    body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data: {body}"))
        .iter()
        .map(|b| {
            (
                b["start"].as_str().unwrap().to_owned(),
                b["count"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn query(filters: &[(&str, Option<String>)]) -> String {
    filters
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", v.replace('+', "%2B"))))
        .collect::<Vec<_>>()
        .join("&")
}

/// A small deterministic generator: the same "random" ranges on every run, so a failure repeats.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_equal_direct_counts_and_message_totals() {
    let env = TestEnv::new().await;
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    env.wait_stream_ready().await;

    // Four days of messages at hour and day edges and inside hours, from three senders to two
    // recipients; every message sent twice (stored once).
    let times = [
        "00:00:00Z",
        "00:00:00.001Z",
        "09:59:59.999Z",
        "10:00:00Z",
        "10:30:00Z",
        "10:59:59.999Z",
        "11:00:00Z",
        "23:59:59.999Z",
    ];
    let mut bodies = Vec::new();
    for day in 14..=17 {
        for (i, time) in times.iter().enumerate() {
            for copy in 0..(1 + (day + i) % 3) {
                bodies.push(
                    json!({
                        "message_id": format!("s{day}-{i}-{copy}"),
                        "from": format!("+91{}", (i + copy) % 3),
                        "to": format!("+14{}", copy % 2),
                        "ts": format!("2025-01-{day}T{time}"),
                        "text": "x",
                    })
                    .to_string(),
                );
            }
        }
    }
    let unique = bodies.len() as i64;
    bodies.extend(bodies.clone());
    post_all(&env, &gateway, &bodies).await;
    env.wait_for_rows(unique).await;
    env.wait_drained().await;

    // The edges, by hand: :59:59.999 is the hour before, :00:00 the hour it starts; the last
    // millisecond of a day is that day.
    let (status, hours) = get(
        &env,
        &gateway,
        "/stats/timeseries?bucket=hour&since=2025-01-14T09:00:00Z&until=2025-01-14T12:00:00Z",
    )
    .await;
    assert_eq!(status, 200, "{hours}");
    assert_eq!(hours["bucket"], "hour");
    let expect_hours = |n09: i64, n10: i64, n11: i64| {
        vec![
            ("2025-01-14T09:00:00Z".to_owned(), n09),
            ("2025-01-14T10:00:00Z".to_owned(), n10),
            ("2025-01-14T11:00:00Z".to_owned(), n11),
        ]
    };
    // Day 14: copies per time index i are 1 + (14 + i) % 3, i.e. 3,1,2,3,1,2,3,1.
    assert_eq!(series(&hours), expect_hours(2, 3 + 1 + 2, 3));
    let (_, days) = get(&env, &gateway, "/stats/timeseries?bucket=day").await;
    assert_eq!(days["bucket"], "day");
    assert!(days.get("truncated").is_none(), "{days}");
    assert_eq!(series(&days), direct(&env, "day", &[]).await);
    assert_eq!(series(&days)[0], ("2025-01-14T00:00:00Z".to_owned(), 16));

    // Random ranges (on edges, on milliseconds around them, and inside hours) and filters, per
    // hour and per day: each equals the direct count, and adds up to the /messages total.
    let instants: Vec<String> = (13..=18)
        .flat_map(|day| {
            [
                "00:00:00Z",
                "00:00:00.001Z",
                "09:59:59.999Z",
                "10:00:00Z",
                "10:45:00Z",
                "23:59:59.999Z",
            ]
            .map(|t| format!("2025-01-{day}T{t}"))
        })
        .collect();
    let mut rng = Lcg(19);
    let mut non_empty = 0;
    for round in 0..120 {
        let mut pick = |n: usize| {
            let i = rng.below(n as u64 + 1) as usize;
            (i < n).then_some(i)
        };
        // Mostly since <= until (the instants are in order); an empty range now and then.
        let (mut a, mut b) = (pick(instants.len()), pick(instants.len()));
        if round % 8 != 0 && a.zip(b).is_some_and(|(a, b)| a > b) {
            std::mem::swap(&mut a, &mut b);
        }
        let since = a.map(|i| instants[i].clone());
        let until = b.map(|i| instants[i].clone());
        let from = pick(4).map(|i| format!("+91{i}"));
        let to = pick(3).map(|i| format!("+14{i}"));
        let unit = if round % 2 == 0 { "hour" } else { "day" };
        let filters = [
            ("from", from),
            ("to", to),
            ("since", since),
            ("until", until),
        ];
        let q = query(&filters);
        let (status, body) = get(
            &env,
            &gateway,
            &format!("/stats/timeseries?bucket={unit}&{q}"),
        )
        .await;
        assert_eq!(status, 200, "{q}: {body}");
        let got = series(&body);
        assert_eq!(got, direct(&env, unit, &filters).await, "{unit} {q}");
        assert!(
            got.windows(2).all(|w| w[0].0 < w[1].0),
            "ascending: {got:?}"
        );
        assert!(got.iter().all(|(_, n)| *n > 0), "non-empty only: {got:?}");
        let total = env
            .http
            .get(gateway.url(&format!("/messages?limit=1&{q}")))
            .header("prefer", "count=exact")
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["total"]
            .as_i64()
            .unwrap();
        assert_eq!(got.iter().map(|(_, n)| n).sum::<i64>(), total, "{unit} {q}");
        non_empty += usize::from(total > 0);
    }
    assert!(non_empty > 40, "only {non_empty} non-empty ranges");

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_422_and_reads_need_the_token() {
    let env = TestEnv::new().await;
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    for (q, field, kind) in [
        ("", "bucket", "missing"),
        ("bucket=week", "bucket", "enum"),
        ("bucket=HOUR", "bucket", "enum"),
        ("bucket=hour&since=yesterday", "since", "datetime_parsing"),
        ("bucket=day&until=2025-02-30", "until", "datetime_parsing"),
        ("bucket=day&from=911", "from", "string_pattern_mismatch"),
        ("bucket=day&to=%2Babc", "to", "string_pattern_mismatch"),
    ] {
        let (status, body) = get(&env, &gateway, &format!("/stats/timeseries?{q}")).await;
        assert_eq!(status, 422, "{q}: {body}");
        assert_eq!(body["detail"][0]["loc"], json!(["query", field]), "{q}");
        assert_eq!(body["detail"][0]["type"], kind, "{q}");
    }
    // An empty database: an empty series, with its consistency said.
    let response = env
        .http
        .get(gateway.url("/stats/timeseries?bucket=hour"))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("consistency"));
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"bucket": "hour", "data": []})
    );
    gateway.stop().await.unwrap();

    let gateway = env
        .start_gateway(env.gateway_config(&[("READ_TOKENS", "tok-1")]))
        .await;
    let (status, body) = get(&env, &gateway, "/stats/timeseries?bucket=day").await;
    assert_eq!(
        (status, body),
        (401, json!({"detail": "not authenticated"}))
    );
    let status = env
        .http
        .get(gateway.url("/stats/timeseries?bucket=day"))
        .bearer_auth("tok-1")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    gateway.stop().await.unwrap();
}

/// More non-empty buckets than one answer holds: the first 10,000, `truncated`, and `next_since`
/// continues exactly where the answer stopped; the same for a sender's series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_past_the_cap_is_cut_and_says_where_to_go_on() {
    let env = TestEnv::new().await;
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    // One message per hour for 10,005 hours, written directly and the aggregates rebuilt from
    // them (posting ten thousand webhooks would test the ingest path, not the cap).
    sqlx::query(
        "INSERT INTO messages (message_id, from_msisdn, to_msisdn, ts, ts_raw, text)
         SELECT 'c' || i, '+911', '+141', t,
                to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), NULL
         FROM generate_series(0, 10004) i,
              LATERAL (SELECT timestamptz '2020-01-01 00:30:00+00' + i * interval '1 hour' AS t) x",
    )
    .execute(&env.db)
    .await
    .unwrap();
    sqlx::query("SELECT rebuild_message_stats()")
        .execute(&env.db)
        .await
        .unwrap();
    for filter in ["", "&from=%2B911"] {
        let (status, first) = get(
            &env,
            &gateway,
            &format!("/stats/timeseries?bucket=hour{filter}"),
        )
        .await;
        assert_eq!(status, 200);
        let data = series(&first);
        assert_eq!(data.len(), 10_000, "{filter}");
        assert_eq!(first["truncated"], true);
        let next = first["next_since"].as_str().unwrap();
        assert_eq!(next, "2021-02-20T16:00:00Z", "{filter}");
        assert!(data.last().unwrap().0.as_str() < next);
        let (_, rest) = get(
            &env,
            &gateway,
            &format!("/stats/timeseries?bucket=hour{filter}&since={next}"),
        )
        .await;
        assert_eq!(series(&rest).len(), 5, "{filter}");
        assert!(rest.get("truncated").is_none());
        let (_, days) = get(
            &env,
            &gateway,
            &format!("/stats/timeseries?bucket=day{filter}"),
        )
        .await;
        assert!(days.get("truncated").is_none());
        assert_eq!(series(&days).iter().map(|(_, n)| n).sum::<i64>(), 10_005);
    }
    gateway.stop().await.unwrap();
}
