//! The read API (`/messages`, `/stats`, `/openapi.json`) over HTTP against the running gateway,
//! on rows written by the real worker from real JetStream.

use std::collections::{BTreeSet, HashMap};

use futures::StreamExt;
use integration_tests::{Running, TestEnv};
use serde_json::{Value, json};

struct Fixture {
    id: &'static str,
    from: &'static str,
    to: &'static str,
    ts: &'static str,
    text: Option<&'static str>,
}

const fn m(
    id: &'static str,
    from: &'static str,
    to: &'static str,
    ts: &'static str,
    text: Option<&'static str>,
) -> Fixture {
    Fixture {
        id,
        from,
        to,
        ts,
        text,
    }
}

/// Posted in this (shuffled) order; listed by the API as `ORDER`.
const FIXTURES: [Fixture; 13] = [
    m(
        "m07",
        "+911",
        "+143",
        "2025-01-16T00:00:00Z",
        Some("it's fine"),
    ),
    m(
        "m02",
        "+911",
        "+142",
        "2025-01-15T10:00:00Z",
        Some("hello again"),
    ),
    m(
        "m13",
        "+915",
        "+144",
        "2025-01-18T00:00:00Z",
        Some("backslash"),
    ),
    m(
        "m03",
        "+912",
        "+141",
        "2025-01-15T10:00:00.5Z",
        Some("100% sure"),
    ),
    m(
        "m11",
        "+919876543210",
        "+14155550100",
        "2024-12-31T23:59:59Z",
        Some("new year"),
    ),
    m("m05", "+913", "+142", "2025-01-15T11:00:00Z", Some("a_b")),
    m("m09", "+914", "+141", "2025-01-17T00:00:00Z", None),
    m(
        "m01",
        "+911",
        "+141",
        "2025-01-15T10:00:00Z",
        Some("Hello world"),
    ),
    m(
        "m12",
        "+915",
        "+144",
        "2025-01-18T00:00:00Z",
        Some("its fine"),
    ),
    m(
        "m04",
        "+912",
        "+141",
        "2025-01-15T10:00:01.250000Z",
        Some("100 sure"),
    ),
    m("m06", "+913", "+143", "2025-01-15T12:00:00Z", Some("axb")),
    m(
        "m10",
        "+919876543210",
        "+14155550100",
        "2025-01-17T08:00:00Z",
        Some("HELLO caps"),
    ),
    m(
        "m08",
        "+914",
        "+141",
        "2025-01-16T09:30:00.123456789Z",
        Some("back\\slash"),
    ),
];

const ORDER: [&str; 13] = [
    "m11", "m01", "m02", "m03", "m04", "m05", "m06", "m07", "m08", "m09", "m10", "m12", "m13",
];

fn body(f: &Fixture) -> String {
    json!({"message_id": f.id, "from": f.from, "to": f.to, "ts": f.ts, "text": f.text}).to_string()
}

fn item(f: &Fixture) -> Value {
    json!({"message_id": f.id, "from": f.from, "to": f.to, "ts": f.ts, "text": f.text})
}

struct Api<'a> {
    env: &'a TestEnv,
    gateway: &'a Running,
}

impl Api<'_> {
    /// `query` goes on the wire exactly as written (no encoding), as curl would send it.
    async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let response = self
            .env
            .http
            .get(self.gateway.url(path_and_query))
            .send()
            .await
            .expect("GET");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let value = response.json::<Value>().await.unwrap_or_else(|e| {
            panic!("{path_and_query}: not JSON ({e}); content-type {content_type:?}")
        });
        (status, value)
    }

    async fn page(&self, query: &str) -> Value {
        let (status, value) = self.get(&format!("/messages?{query}")).await;
        assert_eq!(status, 200, "{query}: {value}");
        value
    }

    async fn ids(&self, query: &str) -> (Vec<String>, i64) {
        let page = self.page(query).await;
        let ids = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message_id"].as_str().unwrap().to_owned())
            .collect();
        (ids, page["total"].as_i64().unwrap())
    }

    async fn post_all(&self, bodies: &[String]) {
        let statuses: Vec<u16> = futures::stream::iter(bodies)
            .map(|b| async move {
                self.env
                    .post_signed(self.gateway, b)
                    .await
                    .status()
                    .as_u16()
            })
            .buffer_unordered(16)
            .collect()
            .await;
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
}

async fn start(
    env: &TestEnv,
    workers: usize,
    worker_overrides: &[(&str, &str)],
) -> (Running, Vec<Running>) {
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    let mut started = Vec::new();
    for _ in 0..workers {
        started.push(env.start_worker(env.worker_config(worker_overrides)).await);
    }
    env.wait_stream_ready().await;
    (gateway, started)
}

async fn stop(gateway: Running, workers: Vec<Running>) {
    for worker in workers {
        worker.stop().await.unwrap();
    }
    gateway.stop().await.unwrap();
}

fn strs(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_filters_and_pagination_match_the_contract() {
    let env = TestEnv::new().await;
    let (gateway, workers) = start(&env, 1, &[]).await;
    let api = Api {
        env: &env,
        gateway: &gateway,
    };
    api.post_all(&FIXTURES.iter().map(body).collect::<Vec<_>>())
        .await;
    env.wait_for_rows(FIXTURES.len() as i64).await;
    env.wait_drained().await;

    // Everything, in order, every item with exactly its five keys and ts byte for byte as sent.
    let by_id: HashMap<&str, &Fixture> = FIXTURES.iter().map(|f| (f.id, f)).collect();
    let all: Vec<Value> = ORDER.iter().map(|id| item(by_id[id])).collect();
    assert_eq!(
        api.page("").await,
        json!({"data": all, "total": 13, "limit": 50, "offset": 0, "next_cursor": null})
    );
    let (status, default) = api.get("/messages").await;
    assert_eq!(status, 200);
    assert_eq!(default["data"], json!(all));

    let page = api.page("limit=2&offset=3").await;
    assert_eq!(page["data"], json!(all[3..5]));
    assert_eq!(
        (
            page["total"].clone(),
            page["limit"].clone(),
            page["offset"].clone()
        ),
        (json!(13), json!(2), json!(3))
    );
    assert!(page["next_cursor"].is_string());
    let page = api.page("limit=100&offset=11").await;
    assert_eq!(page["data"], json!(all[11..]));
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(api.ids("offset=13").await, (vec![], 13));
    assert_eq!(api.ids("offset=1000000").await, (vec![], 13));

    let cases: &[(&str, &[&str])] = &[
        // Sender: a raw `+` (curl does not encode it), the encoded form and the alias.
        ("from=+911", &["m01", "m02", "m07"]),
        ("from=%2B911", &["m01", "m02", "m07"]),
        ("from_msisdn=+911", &["m01", "m02", "m07"]),
        ("from_msisdn=%2B911", &["m01", "m02", "m07"]),
        ("from=+919876543210", &["m11", "m10"]),
        ("from=+999", &[]),
        ("to=+141", &["m01", "m03", "m04", "m08", "m09"]),
        ("to=+14155550100", &["m11", "m10"]),
        ("from=+912&to=+141", &["m03", "m04"]),
        ("from=+912&to=+142", &[]),
        // since inclusive, until exclusive, in each accepted format.
        (
            "since=2025-01-15T10:00:00.5Z",
            &[
                "m03", "m04", "m05", "m06", "m07", "m08", "m09", "m10", "m12", "m13",
            ],
        ),
        ("until=2025-01-15T10:00:00.5Z", &["m11", "m01", "m02"]),
        ("until=2025-01-15T10:00:00.500Z", &["m11", "m01", "m02"]),
        (
            "since=2025-01-16",
            &["m07", "m08", "m09", "m10", "m12", "m13"],
        ),
        (
            "since=2025-01-16T05:00:00+05:00",
            &["m07", "m08", "m09", "m10", "m12", "m13"],
        ),
        (
            "since=2025-01-16T05:00:00%2B05:00",
            &["m07", "m08", "m09", "m10", "m12", "m13"],
        ),
        (
            "since=2025-01-15T23:00:00-01:00",
            &["m07", "m08", "m09", "m10", "m12", "m13"],
        ),
        (
            "since=2025-01-15T11:00:00Z&until=2025-01-17T00:00:00Z",
            &["m05", "m06", "m07", "m08"],
        ),
        ("since=2025-01-17T00:00:00Z&until=2025-01-17T00:00:00Z", &[]),
        // Ranges inside one hour, across hour edges and open-ended (the total is computed from
        // hourly buckets plus the partial hours at the edges).
        (
            "since=2025-01-15T10:00:00.5Z&until=2025-01-15T10:30:00Z",
            &["m03", "m04"],
        ),
        (
            "since=2025-01-15T10:00:00Z&until=2025-01-15T11:00:00Z",
            &["m01", "m02", "m03", "m04"],
        ),
        (
            "since=2025-01-15T10:00:01Z&until=2025-01-16T09:30:00.2Z",
            &["m04", "m05", "m06", "m07", "m08"],
        ),
        (
            "until=2025-01-16T09:30:00.123Z",
            &["m11", "m01", "m02", "m03", "m04", "m05", "m06", "m07"],
        ),
        ("since=2024-01-01&until=2030-01-01", &ORDER),
        ("since=2026-01-01", &[]),
        // q: case-insensitive substring; wildcards, quote and backslash match literally.
        ("q=hello", &["m01", "m02", "m10"]),
        ("q=HeLLo", &["m01", "m02", "m10"]),
        ("q=100%25", &["m03"]),
        ("q=100", &["m03", "m04"]),
        ("q=a_b", &["m05"]),
        ("q=_", &["m05"]),
        ("q=%25", &["m03"]),
        ("q=it%27s", &["m07"]),
        ("q=it's", &["m07"]),
        ("q=%5C", &["m08"]),
        ("q=back%5Cslash", &["m08"]),
        ("q=slash", &["m08", "m13"]),
        ("q=fine", &["m07", "m12"]),
        ("q=nothing+like+this", &[]),
        ("q=", &ORDER),
        // Filters combine with AND.
        ("q=sure&from=+912&since=2025-01-15T10:00:01Z", &["m04"]),
        ("q=hello&to=+142", &["m02"]),
        ("q=fine&since=2025-01-17", &["m12"]),
        ("from=+914&until=2025-01-17", &["m08"]),
    ];
    for (query, expected) in cases {
        let (ids, total) = api.ids(query).await;
        assert_eq!(ids, strs(expected), "{query}");
        assert_eq!(total, expected.len() as i64, "total of {query}");
    }

    // total ignores limit and offset whichever way it is computed (aggregate or count).
    for (query, total) in [
        ("limit=1", 13),
        ("limit=1&from=+911", 3),
        ("limit=1&to=+141", 5),
        ("limit=1&offset=1&q=hello", 3),
        ("limit=1&offset=2&since=2025-01-16", 6),
    ] {
        let page = api.page(query).await;
        assert_eq!(page["total"], json!(total), "{query}");
        assert_eq!(page["data"].as_array().unwrap().len(), 1, "{query}");
    }
    let null_text = api.page("from=+914&since=2025-01-17").await;
    assert_eq!(
        null_text["data"][0],
        json!({"message_id": "m09", "from": "+914", "to": "+141", "ts": "2025-01-17T00:00:00Z", "text": null})
    );

    // Every bad value: 422, FastAPI's shape, the parameter named.
    let bad: &[(&str, &[(&str, &str)])] = &[
        ("limit=0", &[("limit", "greater_than_equal")]),
        ("limit=101", &[("limit", "less_than_equal")]),
        ("limit=-1", &[("limit", "greater_than_equal")]),
        ("limit=abc", &[("limit", "int_parsing")]),
        ("limit=", &[("limit", "int_parsing")]),
        ("limit=1.5", &[("limit", "int_parsing")]),
        ("limit=99999999999999999999", &[("limit", "int_parsing")]),
        ("offset=-1", &[("offset", "greater_than_equal")]),
        ("offset=x", &[("offset", "int_parsing")]),
        ("since=yesterday", &[("since", "datetime_parsing")]),
        (
            "since=2025-01-15T10:00:00",
            &[("since", "datetime_parsing")],
        ),
        ("since=2025-02-30", &[("since", "datetime_parsing")]),
        ("until=2025-13-01", &[("until", "datetime_parsing")]),
        ("from=919876543210", &[("from", "string_pattern_mismatch")]),
        (
            "from_msisdn=abc",
            &[("from_msisdn", "string_pattern_mismatch")],
        ),
        ("to=+1x", &[("to", "string_pattern_mismatch")]),
        ("cursor=not-a-cursor", &[("cursor", "value_error")]),
        ("cursor=00", &[("cursor", "value_error")]),
        (
            "limit=0&offset=-1&since=x",
            &[
                ("limit", "greater_than_equal"),
                ("offset", "greater_than_equal"),
                ("since", "datetime_parsing"),
            ],
        ),
    ];
    for (query, expected) in bad {
        let (status, value) = api.get(&format!("/messages?{query}")).await;
        assert_eq!(status, 422, "{query}: {value}");
        let detail = value["detail"]
            .as_array()
            .unwrap_or_else(|| panic!("{query}: {value}"));
        let got: Vec<(String, String)> = detail
            .iter()
            .map(|e| {
                assert_eq!(e["loc"][0], "query", "{query}: {value}");
                assert!(e["msg"].as_str().is_some_and(|m| !m.is_empty()), "{value}");
                (
                    e["loc"][1].as_str().unwrap().to_owned(),
                    e["type"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
        assert_eq!(got, expected, "{query}");
    }
    // A real cursor with an offset (even 0) is refused: the two would disagree.
    let cursor = api.page("limit=2").await["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, value) = api
        .get(&format!("/messages?cursor={cursor}&offset=0"))
        .await;
    assert_eq!(status, 422, "{value}");
    assert_eq!(value["detail"][0]["loc"], json!(["query", "cursor"]));

    stop(gateway, workers).await;
}

/// A since/until-only total is a sum of day buckets, hour buckets and the rows of the partial
/// hours at its edges: for every pair of bounds (open, on a day, on an hour, inside an hour, a
/// half-second before midnight) it equals a direct count, with two workers and re-sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_range_totals_equal_direct_counts_at_every_boundary() {
    let env = TestEnv::new().await;
    let (gateway, workers) = start(&env, 2, &[]).await;
    let api = Api {
        env: &env,
        gateway: &gateway,
    };
    // 96 messages over five days: on midnights, on hours, just before both, inside hours.
    let times = [
        "00:00:00Z",
        "00:30:00Z",
        "09:59:59.999Z",
        "10:00:00Z",
        "10:20:00Z",
        "10:40:00.5Z",
        "23:00:00Z",
        "23:59:59.5Z",
    ];
    let mut bodies = Vec::new();
    for day in 13..=17 {
        for (i, time) in times.iter().enumerate() {
            for copy in 0..(1 + (day + i) % 3) {
                bodies.push(
                    json!({
                        "message_id": format!("t{day}-{i}-{copy}"),
                        "from": format!("+91{}", i % 3),
                        "to": "+141",
                        "ts": format!("2025-01-{day}T{time}"),
                    })
                    .to_string(),
                );
            }
        }
    }
    let unique = bodies.len() as i64;
    bodies.extend(bodies.clone()); // every message twice: stored once
    api.post_all(&bodies).await;
    env.wait_for_rows(unique).await;
    env.wait_drained().await;

    let bounds = [
        None,
        Some("2025-01-13"),
        Some("2025-01-14T00:00:00Z"),
        Some("2025-01-14T23:00:00Z"),
        Some("2025-01-14T23:59:59.5Z"),
        Some("2025-01-15T00:00:00Z"),
        Some("2025-01-15T00:30:00Z"),
        Some("2025-01-15T10:00:00Z"),
        Some("2025-01-15T10:20:00Z"),
        Some("2025-01-15T10:40:00Z"),
        Some("2025-01-16T00:00:00Z"),
        Some("2025-01-16T10:40:00.5Z"),
        Some("2025-01-17T23:59:59.5Z"),
        Some("2025-02-01"),
    ];
    let mut checked = 0;
    for since in bounds {
        for until in bounds {
            let mut query = Vec::new();
            query.extend(since.map(|s| format!("since={s}")));
            query.extend(until.map(|u| format!("until={u}")));
            let query = query.join("&");
            // A bare date is midnight UTC; every other bound carries its `Z`.
            let instant = |s: Option<&str>| {
                s.map(|s| match s.len() {
                    10 => format!("{s}T00:00:00Z"),
                    _ => s.to_owned(),
                })
            };
            let direct: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM messages
                 WHERE ($1::text IS NULL OR ts >= $1::timestamptz)
                   AND ($2::text IS NULL OR ts < $2::timestamptz)",
            )
            .bind(instant(since))
            .bind(instant(until))
            .fetch_one(&env.db)
            .await
            .unwrap();
            let (_, total) = api.ids(&query).await;
            assert_eq!(total, direct, "{query}");
            checked += usize::from(direct > 0);
        }
    }
    assert!(checked > 60, "only {checked} non-empty ranges");

    // The buckets the workers kept are the ones the repair function rebuilds from the rows.
    let buckets = || async {
        sqlx::query_as::<_, (String, i64)>(
            "SELECT 'h' || hour::text, count FROM message_hours
             UNION ALL SELECT 'd' || day::text, count FROM message_days ORDER BY 1",
        )
        .fetch_all(&env.db)
        .await
        .unwrap()
    };
    let kept = buckets().await;
    assert_eq!(kept.iter().filter(|(k, _)| k.starts_with('d')).count(), 5);
    sqlx::query("SELECT rebuild_message_stats()")
        .execute(&env.db)
        .await
        .unwrap();
    assert_eq!(kept, buckets().await);

    stop(gateway, workers).await;
}

async fn cursor_walk(
    api: &Api<'_>,
    query: &str,
    limit: usize,
    mut between_pages: impl AsyncFnMut(usize),
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for page_no in 0.. {
        let q = match &cursor {
            None => format!("limit={limit}&{query}"),
            Some(c) => format!("limit={limit}&cursor={c}&{query}"),
        };
        let page = api.page(&q).await;
        assert_eq!(page["offset"], 0);
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= limit);
        ids.extend(
            data.iter()
                .map(|m| m["message_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => {
                assert_eq!(data.len(), limit, "a page before the last is full");
                cursor = Some(next.to_owned());
            }
            None => break,
        }
        between_pages(page_no).await;
        assert!(page_no < 1000, "cursor walk does not end");
    }
    ids
}

async fn offset_walk(api: &Api<'_>, query: &str, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let (page, _) = api
            .ids(&format!("limit={limit}&offset={}&{query}", ids.len()))
            .await;
        let done = page.len() < limit;
        ids.extend(page);
        if done {
            return ids;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_walk_equals_offset_walk_and_stays_correct_while_rows_arrive() {
    let env = TestEnv::new().await;
    let (gateway, workers) = start(&env, 1, &[]).await;
    let api = Api {
        env: &env,
        gateway: &gateway,
    };

    // 40 messages, three to a timestamp, ids scrambled so the message_id tie-break matters.
    let mut expected: Vec<(String, String)> = Vec::new();
    let mut bodies = Vec::new();
    for i in 0..40u32 {
        let id = format!("c{:02}", (i * 17) % 40);
        let ts = format!("2025-03-01T00:00:{:02}Z", i / 3);
        let from = if i % 4 == 0 { "+100" } else { "+200" };
        bodies.push(json!({"message_id": id, "from": from, "to": "+300", "ts": ts, "text": format!("row {i}")}).to_string());
        expected.push((ts, id));
    }
    expected.sort();
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
    api.post_all(&bodies).await;
    env.wait_for_rows(40).await;
    env.wait_drained().await;

    for limit in [1, 7, 40, 100] {
        let by_cursor = cursor_walk(&api, "", limit, async |_| {}).await;
        assert_eq!(by_cursor, expected, "cursor walk, limit {limit}");
        assert_eq!(
            offset_walk(&api, "", limit).await,
            expected,
            "offset walk, limit {limit}"
        );
    }
    // With a filter too: the cursor continues within the filtered rows.
    let from_100: Vec<String> = cursor_walk(&api, "from=+100", 3, async |_| {}).await;
    assert_eq!(from_100, offset_walk(&api, "from=+100", 3).await);
    assert_eq!(from_100.len(), 10);

    // Rows arriving mid-walk: one before the cursor (not seen, and nothing seen twice or
    // skipped), one after it (seen).
    let early =
        json!({"message_id": "early", "from": "+100", "to": "+300", "ts": "2025-02-01T00:00:00Z"})
            .to_string();
    let late =
        json!({"message_id": "late", "from": "+100", "to": "+300", "ts": "2025-04-01T00:00:00Z"})
            .to_string();
    let walked = cursor_walk(&api, "", 7, async |page_no| {
        if page_no == 1 {
            api.post_all(&[early.clone(), late.clone()]).await;
            env.wait_for_rows(42).await;
        }
    })
    .await;
    let mut with_late = expected.clone();
    with_late.push("late".to_owned());
    assert_eq!(walked, with_late);

    stop(gateway, workers).await;
}

async fn expected_stats(env: &TestEnv) -> Value {
    let count = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&env.db)
            .await
            .unwrap()
    };
    let top: Vec<(String, i64)> = sqlx::query_as(
        "SELECT from_msisdn, count(*) FROM messages GROUP BY from_msisdn ORDER BY 2 DESC, 1 LIMIT 10",
    )
    .fetch_all(&env.db)
    .await
    .unwrap();
    let first: Option<String> =
        sqlx::query_scalar("SELECT ts_raw FROM messages ORDER BY ts, message_id LIMIT 1")
            .fetch_optional(&env.db)
            .await
            .unwrap();
    let last: Option<String> =
        sqlx::query_scalar("SELECT ts_raw FROM messages ORDER BY ts DESC, message_id DESC LIMIT 1")
            .fetch_optional(&env.db)
            .await
            .unwrap();
    json!({
        "total_messages": count("SELECT count(*) FROM messages").await,
        "senders_count": count("SELECT count(DISTINCT from_msisdn) FROM messages").await,
        "recipients_count": count("SELECT count(DISTINCT to_msisdn) FROM messages").await,
        "messages_per_sender": top.into_iter().map(|(from, count)| json!({"from": from, "count": count})).collect::<Vec<_>>(),
        "first_message_ts": first,
        "last_message_ts": last,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_equal_direct_counts_with_two_workers_and_duplicates() {
    let env = TestEnv::new().await;
    let (gateway, workers) = start(&env, 2, &[("BATCH_SIZE", "16")]).await;
    let api = Api {
        env: &env,
        gateway: &gateway,
    };

    let (status, empty) = api.get("/stats").await;
    assert_eq!(status, 200);
    assert_eq!(
        empty,
        json!({"total_messages": 0, "senders_count": 0, "recipients_count": 0,
               "messages_per_sender": [], "first_message_ts": null, "last_message_ts": null})
    );

    // 300 messages from 14 senders with uneven (and tied) counts, to 6 recipients.
    let bodies: Vec<String> = (0..300u32)
        .map(|i| {
            // Counts 24,24,24,24,24,23,23,23,22,21 | 21,...: ties inside and across the top 10.
            let sender = ((i * 7) % 13 + i % 3 + u32::from(i % 11 == 0)) % 14;
            json!({
                "message_id": format!("s{i:03}"),
                "from": format!("+9100{sender:02}"),
                "to": format!("+1400{:02}", i % 6),
                "ts": format!("2025-05-{:02}T{:02}:00:00.{}Z", 1 + i % 28, i % 24, 100 + i),
                "text": "stats"
            })
            .to_string()
        })
        .collect();
    // Every message reaches the workers at least twice: once through the gateway, and once
    // published without Nats-Msg-Id (JetStream cannot drop that copy), interleaved so both
    // workers see copies of the same ids at the same time.
    let direct = async {
        for b in bodies.iter().rev() {
            env.js
                .publish(env.subject.clone(), b.clone().into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    tokio::join!(api.post_all(&bodies), direct);
    api.post_all(&bodies[..50]).await;
    env.wait_for_rows(300).await;
    env.wait_drained().await;

    let expected = expected_stats(&env).await;
    assert_eq!(expected["total_messages"], 300);
    assert_eq!(expected["senders_count"], 14);
    assert_eq!(expected["recipients_count"], 6);
    let (status, stats) = api.get("/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats, expected);

    // The /messages totals answered from the same aggregates agree with counting.
    assert_eq!(api.page("limit=1").await["total"], 300);
    for sender in ["+910000", "+910004", "+910013"] {
        let direct: i64 =
            sqlx::query_scalar("SELECT count(*) FROM messages WHERE from_msisdn = $1")
                .bind(sender)
                .fetch_one(&env.db)
                .await
                .unwrap();
        assert_eq!(
            api.page(&format!("limit=1&from={sender}")).await["total"],
            direct
        );
    }
    let direct: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE to_msisdn = '+140003'")
            .fetch_one(&env.db)
            .await
            .unwrap();
    assert_eq!(api.page("limit=1&to=+140003").await["total"], direct);

    // The repair function agrees with what the workers maintained.
    sqlx::query("SELECT rebuild_message_stats()")
        .execute(&env.db)
        .await
        .unwrap();
    assert_eq!(api.get("/stats").await.1, expected);

    stop(gateway, workers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_parses_and_lists_every_route_served() {
    let env = TestEnv::new().await;
    // With ADMIN_TOKENS set the admin routes exist (401 without a token, not 404).
    let gateway = env
        .start_gateway(env.gateway_config(&[("ADMIN_TOKENS", "admin")]))
        .await;
    let api = Api {
        env: &env,
        gateway: &gateway,
    };

    let (status, doc) = api.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let methods = ["get", "post", "put", "patch", "delete"];
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            methods
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| (m.to_string(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let served: BTreeSet<(String, String)> = [
        ("post", "/webhook"),
        ("get", "/webhook/whatsapp"),
        ("post", "/webhook/whatsapp"),
        ("get", "/webhook/{source}"),
        ("post", "/webhook/{source}"),
        ("get", "/admin/sources"),
        ("get", "/health/live"),
        ("get", "/health/ready"),
        ("get", "/metrics"),
        ("get", "/messages"),
        ("get", "/messages/{message_id}"),
        ("get", "/stats"),
        ("get", "/stats/timeseries"),
        ("get", "/openapi.json"),
        ("get", "/admin/dead-letters"),
        ("delete", "/admin/dead-letters"),
        ("get", "/admin/dead-letters/{id}"),
        ("delete", "/admin/dead-letters/{id}"),
        ("post", "/admin/dead-letters/{id}/redrive"),
        ("post", "/admin/dead-letters/redrive"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(documented, served);
    // The pages for people (/docs, /console and their static files) are served but not in the
    // document on purpose: it describes the API, and they carry no data (tests/browser.rs).
    for page in ["/docs", "/console", "/assets/console.js"] {
        assert!(doc["paths"].get(page).is_none(), "{page}");
        let status = env
            .http
            .get(gateway.url(page))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{page}");
    }

    // The document and the router agree: each documented operation is routed, and every other
    // method on a documented path is 405 (so the document misses no method the router serves).
    let client = &env.http;
    for path in doc["paths"].as_object().unwrap().keys() {
        for method in methods {
            let request = client.request(method.to_uppercase().parse().unwrap(), gateway.url(path));
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            if documented.contains(&(method.to_owned(), path.clone())) {
                // A routed path can still answer 404 for its own reason (no message has the id
                // `{message_id}`), never the router's "Not Found".
                let body: Value = response.json().await.unwrap_or(Value::Null);
                let unrouted = status == 404 && body["detail"] == "Not Found";
                assert!(
                    !unrouted && status != 405,
                    "{method} {path}: {status} {body}"
                );
            } else {
                assert_eq!(status, 405, "{method} {path}");
            }
        }
    }

    // Every operation documents its answers, and every error is a schema'd JSON body.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            // 200, or 204 for a DELETE that answers no body.
            assert!(
                responses.contains_key("200") || responses.contains_key("204"),
                "{method} {path}"
            );
            for (code, response) in responses {
                if code.starts_with('4') || code.starts_with('5') {
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    assert!(schema.is_string(), "{method} {path} {code}: {response}");
                }
            }
        }
    }
    let messages = &doc["paths"]["/messages"]["get"];
    let params_in = |place: &str| -> BTreeSet<&str> {
        messages["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == place)
            .map(|p| p["name"].as_str().unwrap())
            .collect()
    };
    assert_eq!(params_in("header"), BTreeSet::from(["Prefer"]));
    assert_eq!(
        params_in("query"),
        BTreeSet::from([
            "limit",
            "offset",
            "from",
            "from_msisdn",
            "to",
            "since",
            "until",
            "format",
            "include",
            "q",
            "source",
            "cursor"
        ])
    );
    for schema in [
        "MessagesPage",
        "MessageItem",
        "Stats",
        "ValidationErrorBody",
        "DetailBody",
        "WebhookMessage",
    ] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "{schema}"
        );
    }

    gateway.stop().await.unwrap();
}

/// Retention removes rows in the same statement that takes them out of the aggregates, so
/// `/stats` and the since/until totals stay equal to direct counts; a sender whose every message
/// expired stops counting, and counts again when it sends once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_stay_exact_through_retention() {
    use ingest_worker::retention::{RetentionSettings, run_pass};

    let env = TestEnv::new().await;
    let (gateway, workers) = start(&env, 1, &[]).await;
    let api = Api {
        env: &env,
        gateway: &gateway,
    };
    let post = |id: String, from: &str, to: &str, ts: &str| {
        json!({"message_id": id, "from": from, "to": to, "ts": ts, "text": "r"}).to_string()
    };
    let mut bodies = Vec::new();
    // +9101 and recipient +1401 only ever have expired messages; +9102 has both kinds.
    for i in 0..30 {
        let ts = format!("2020-03-{:02}T{:02}:30:00Z", 1 + i % 3, i % 24);
        bodies.push(post(format!("old-a{i}"), "+9101", "+1401", &ts));
        bodies.push(post(format!("old-b{i}"), "+9102", "+1402", &ts));
    }
    for i in 0..12 {
        let ts = format!("2099-01-01T{:02}:15:00Z", i % 5);
        bodies.push(post(format!("new-b{i}"), "+9102", "+1402", &ts));
        bodies.push(post(format!("new-c{i}"), "+9103", "+1402", &ts));
    }
    for body in &bodies {
        assert_eq!(env.post_signed(&gateway, body).await.status(), 200);
    }
    env.wait_for_rows(bodies.len() as i64).await;
    assert_eq!(api.get("/stats").await.1, expected_stats(&env).await);

    let settings = RetentionSettings {
        days: 1,
        batch_size: 7,
        batch_pause: std::time::Duration::from_millis(1),
        interval: std::time::Duration::from_secs(3600),
    };
    let outcome = run_pass(
        &env.db,
        &settings,
        &tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.deleted, 60);
    let (_, stats) = api.get("/stats").await;
    assert_eq!(stats, expected_stats(&env).await);
    assert_eq!(stats["total_messages"], 24);
    assert_eq!(stats["senders_count"], 2, "{stats}");
    assert_eq!(stats["recipients_count"], 1, "{stats}");
    // The hourly buckets lost the expired rows too: a since/until total is a bucket sum.
    let (_, page) = api.get("/messages?since=2000-01-01&until=2100-01-01").await;
    assert_eq!(page["total"], 24, "{page}");
    let (_, page) = api.get("/messages?since=2020-01-01&until=2021-01-01").await;
    assert_eq!(page["total"], 0, "{page}");
    let (_, page) = api.get("/messages?from=%2B9101").await;
    assert_eq!(page["total"], 0, "{page}");

    // The emptied sender and recipient come back.
    let back = post("back-a".into(), "+9101", "+1401", "2099-02-01T00:00:00Z");
    assert_eq!(env.post_signed(&gateway, &back).await.status(), 200);
    env.wait_for_rows(25).await;
    let (_, stats) = api.get("/stats").await;
    assert_eq!(stats, expected_stats(&env).await);
    assert_eq!(stats["senders_count"], 3, "{stats}");
    assert_eq!(stats["recipients_count"], 2, "{stats}");

    stop(gateway, workers).await;
}

/// `total` (the contract's "Counting"): exact and unmarked up to the bound, Postgres's estimate
/// and marked past it, exact at any size with `Prefer: count=exact`; the same on every cursor
/// page. Rows are inserted directly: the bound needs more than 10,000 matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_past_the_bound_are_estimated_and_say_so() {
    let env = TestEnv::new().await;
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    env.wait_stream_ready().await;
    sqlx::query(
        "INSERT INTO messages (message_id, from_msisdn, to_msisdn, ts, ts_raw, text)
         SELECT 'b' || lpad(i::text, 6, '0'), '+1555' || (i % 7), '+14155550100',
                timestamptz '2025-01-15T00:00:00Z' + i * interval '1 second',
                to_char((timestamptz '2025-01-15T00:00:00Z' + i * interval '1 second')
                        AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                CASE WHEN i <= 10050 THEN 'please refund order ' || i
                     ELSE 'hello there ' || i END
         FROM generate_series(1, 10550) AS i",
    )
    .execute(&env.db)
    .await
    .unwrap();
    sqlx::query("ANALYZE messages")
        .execute(&env.db)
        .await
        .unwrap();

    let get = |query: &'static str, prefer: Option<&'static str>| {
        let request = env.http.get(gateway.url(&format!("/messages?{query}")));
        let request = match prefer {
            Some(p) => request.header("prefer", p),
            None => request,
        };
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200, "{query}");
            let applied: Vec<String> = response
                .headers()
                .get_all("preference-applied")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            (response.json::<Value>().await.unwrap(), applied)
        }
    };

    // Under the bound: exact, and the body is the older one (no total_estimated key).
    let (page, applied) = get("q=hello&limit=5", None).await;
    assert_eq!(page["total"], 500, "{page}");
    assert!(page.get("total_estimated").is_none(), "{page}");
    assert!(applied.is_empty(), "{applied:?}");
    let (page, applied) = get("q=hello&limit=5", Some("count=estimated")).await;
    assert_eq!(page["total"], 500);
    assert!(page.get("total_estimated").is_none(), "{page}");
    assert_eq!(applied, ["count=estimated"]);
    // Over the lower bound of count=estimated: estimated, at least what was counted.
    let (page, _) = get("q=hello&limit=5", Some("count=estimated, count=exact")).await;
    assert_eq!(page["total"], 500, "500 is under 1,000: {page}");
    let (page, _) = get("q=order+1&limit=5", Some("count=estimated")).await;
    assert_eq!(page["total_estimated"], true, "1,162 matches: {page}");
    assert!(page["total"].as_i64().unwrap() > 1_000, "{page}");

    // Over the default bound: estimated and marked, the page itself unchanged.
    let (page, applied) = get("q=REFUND&limit=3", None).await;
    assert_eq!(page["total_estimated"], true, "{page}");
    assert!(page["total"].as_i64().unwrap() > 10_000, "{page}");
    assert!(applied.is_empty());
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["b000001", "b000002", "b000003"]);

    // Prefer: count=exact, on every cursor page; the estimate is the same on every page too.
    let estimate = page["total"].clone();
    for (prefer, expect_total, marked) in [
        (Some("count=exact"), json!(10_050), false),
        (None, estimate, true),
    ] {
        let mut query = "q=refund&limit=100".to_owned();
        let mut seen = 0;
        for _ in 0..4 {
            let mut request = env.http.get(gateway.url(&format!("/messages?{query}")));
            if let Some(p) = prefer {
                request = request.header("prefer", p);
            }
            let response = request.send().await.unwrap();
            let applied = response.headers().get("preference-applied").cloned();
            let page: Value = response.json().await.unwrap();
            assert_eq!(page["total"], expect_total, "{prefer:?}: {}", page["total"]);
            assert_eq!(page.get("total_estimated").is_some(), marked, "{prefer:?}");
            assert_eq!(
                applied.as_ref().map(|v| v.to_str().unwrap()),
                prefer,
                "Preference-Applied"
            );
            seen += page["data"].as_array().unwrap().len();
            query = format!(
                "q=refund&limit=100&cursor={}",
                page["next_cursor"].as_str().unwrap()
            );
        }
        assert_eq!(seen, 400);
    }
    gateway.stop().await.unwrap();
}

/// The filters are SQL functions (migrations/…_filters.sql) that must be inlined into the
/// statements using them: a function Postgres runs as such (declared STRICT, VOLATILE, with a
/// SET clause, ...) still answers right, but through a scan of every partition instead of the
/// filters' indexes. Inlined, the function's name is gone from the plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filter_functions_are_inlined_into_the_plans() {
    let env = TestEnv::new().await;
    for (function, statement) in [
        (
            "messages_matching",
            "SELECT m.ts, m.message_id FROM messages_matching('+1', NULL, now(), NULL, '%a%', 'web') m \
             ORDER BY m.ts, m.message_id LIMIT 10",
        ),
        (
            "dead_letter_matches",
            "DELETE FROM dead_letters d WHERE dead_letter_matches(d, '%a%', now(), NULL)",
        ),
    ] {
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "EXPLAIN (VERBOSE, COSTS OFF) {statement}"
        )))
        .fetch_all(&env.db)
        .await
        .unwrap();
        let plan = plan.join("\n");
        assert!(!plan.contains(function), "{function} not inlined:\n{plan}");
        assert!(
            plan.contains("~~*"),
            "the pattern filter is in the plan:\n{plan}"
        );
    }
}
