//! The streamed `GET /messages?format=ndjson|csv` over HTTP against the running gateway: the
//! same rows as the paged list for the same filters, across many round trips; CSV quoting and
//! formula neutralisation; the 422s; `MAX_CONCURRENT_EXPORTS`; read-your-writes. A client that
//! goes away: export_disconnect.rs.

use std::time::Duration;

use futures::StreamExt;
use integration_tests::{Running, TestEnv, eventually, post_signed};
use serde_json::{Value, json};

/// Rows per round trip in these tests, so a few dozen messages take several.
const BATCH: &str = "7";

/// Messages with every kind of cell CSV has to take care of.
fn fixtures() -> Vec<Value> {
    let texts = [
        Some("Hello, world"),
        Some("say \"hi\""),
        Some("two\nlines\r\nthree"),
        Some("=HYPERLINK(\"http://evil\",\"x\")"),
        Some("+1 call me"),
        Some("-5 degrees"),
        Some("@SUM(A1)"),
        Some("\tindented"),
        None,
        Some(""),
        Some("hello again"),
        Some("100% sure"),
    ];
    (0..36)
        .map(|i| {
            let id = if i == 3 {
                "=id-3".to_owned()
            } else {
                format!("e{i:02}")
            };
            json!({
                "message_id": id,
                "from": format!("+91{}", i % 3),
                "to": format!("+14{}", i % 2),
                "ts": format!("2025-01-{:02}T{:02}:00:00Z", 15 + i / 12, i % 12),
                "text": texts[i % texts.len()],
            })
        })
        .collect()
}

/// Every item of `/messages?{filters}`, page after page by cursor.
async fn paged(env: &TestEnv, gateway: &Running, filters: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor = String::new();
    loop {
        let url = gateway.url(&format!("/messages?{filters}&limit=10{cursor}"));
        let page: Value = env
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        items.extend(page["data"].as_array().expect("data").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return items,
        }
    }
}

async fn export(env: &TestEnv, gateway: &Running, query: &str) -> reqwest::Response {
    env.http
        .get(gateway.url(&format!("/messages?{query}")))
        .send()
        .await
        .expect("GET export")
}

/// What the CSV says a cell is: the value, with a `'` before one a spreadsheet would take for a
/// formula, unless it is `+` then digits only.
fn csv_cell(value: &Value) -> String {
    let text = value.as_str().unwrap_or("");
    let number = text.len() > 1 && text[1..].bytes().all(|b| b.is_ascii_digit());
    let risky = matches!(
        text.bytes().next(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    );
    if risky && !(text.starts_with('+') && number) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_hold_exactly_the_paged_rows_for_the_same_filters() {
    let env = TestEnv::new().await;
    let gateway = env
        .start_gateway(env.gateway_config(&[("EXPORT_BATCH_ROWS", BATCH)]))
        .await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    env.wait_stream_ready().await;
    let messages = fixtures();
    for m in &messages {
        assert_eq!(
            post_signed(&env.http, gateway.url("/webhook"), m.to_string()).await,
            200
        );
    }
    env.wait_for_rows(messages.len() as i64).await;

    // Each filter, and the second says whether it matches more rows than one round trip.
    for (filters, several_trips) in [
        ("", true),
        ("from=%2B911", true),
        ("to=%2B140&since=2025-01-16", true),
        ("q=hello", false),
        ("q=L", true),
        ("q=%25", false),
        (
            "since=2025-01-15T06:00:00Z&until=2025-01-17T03:00:00Z",
            true,
        ),
        ("from=%2B910&q=e&until=2025-01-17", false),
        ("from=%2B999", false),
    ] {
        let expected = paged(&env, &gateway, filters).await;
        assert_eq!(expected.len() > 7, several_trips, "{filters}: {expected:?}");
        assert!(
            !expected.is_empty() || filters == "from=%2B999",
            "{filters}"
        );

        let response = export(&env, &gateway, &format!("{filters}&format=ndjson")).await;
        assert_eq!(response.status(), 200, "{filters}");
        assert_eq!(response.headers()["content-type"], "application/x-ndjson");
        let disposition = response.headers()["content-disposition"].to_str().unwrap();
        assert!(
            disposition.starts_with("attachment; filename=\"messages-")
                && disposition.ends_with(".ndjson\""),
            "{disposition}"
        );
        let body = response.text().await.unwrap();
        let lines: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(lines, expected, "ndjson, {filters}");

        let response = export(&env, &gateway, &format!("{filters}&format=csv")).await;
        assert_eq!(response.status(), 200, "{filters}");
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(content_type.starts_with("text/csv"), "{content_type}");
        let body = response.text().await.unwrap();
        let mut reader = csv::Reader::from_reader(body.as_bytes());
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(
            header,
            ["message_id", "from", "to", "ts", "text", "msg_type"]
        );
        let rows: Vec<Vec<String>> = reader
            .records()
            .map(|r| r.expect("a CSV record").iter().map(String::from).collect())
            .collect();
        let expected_rows: Vec<Vec<String>> = expected
            .iter()
            .map(|item| {
                ["message_id", "from", "to", "ts", "text", "msg_type"]
                    .iter()
                    .map(|k| csv_cell(&item[*k]))
                    .collect()
            })
            .collect();
        assert_eq!(rows, expected_rows, "csv, {filters}");
    }

    // The bytes themselves, for the cells CSV has to quote and the formulas it must defuse.
    let body = export(
        &env,
        &gateway,
        "format=csv&from=%2B910&until=2025-01-15T10:00:00Z",
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(
        body.starts_with("message_id,from,to,ts,text,msg_type\r\n"),
        "{body}"
    );
    for line in [
        "e00,+910,+140,2025-01-15T00:00:00Z,\"Hello, world\",\r\n",
        "'=id-3,+910,+141,2025-01-15T03:00:00Z,\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",\r\n",
        "e06,+910,+140,2025-01-15T06:00:00Z,'@SUM(A1),\r\n",
    ] {
        assert!(body.contains(line), "{line:?} in {body:?}");
    }
    let body = export(&env, &gateway, "format=csv&q=lines")
        .await
        .text()
        .await
        .unwrap();
    assert!(body.contains(",\"two\nlines\r\nthree\",\r\n"), "{body:?}");

    // `include=raw`: each line the list item and the payload (set here directly, as the worker
    // stores it).
    sqlx::query("UPDATE messages SET raw = '{\"k\": [1, \"x\"]}' WHERE message_id = 'e00'")
        .execute(&env.db)
        .await
        .unwrap();
    let body = export(
        &env,
        &gateway,
        "format=ndjson&include=raw&from=%2B910&until=2025-01-15T04:00:00Z",
    )
    .await
    .text()
    .await
    .unwrap();
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut first = messages[0].clone();
    first["raw"] = json!({"k": [1, "x"]});
    assert_eq!(lines[0], first);
    assert_eq!(lines[1]["message_id"], "=id-3");
    assert!(lines[1].as_object().unwrap().contains_key("raw"), "{body}");
    assert_eq!(lines.len(), 2, "{body}");

    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_acknowledged_before_the_export_is_in_it() {
    let env = TestEnv::new().await;
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    env.wait_stream_ready().await;
    for i in 0..5 {
        let body = json!({"message_id": format!("ryw-{i}"), "from": "+911", "to": "+142",
                          "ts": "2025-01-15T10:00:00Z", "text": "just now"});
        assert_eq!(
            post_signed(&env.http, gateway.url("/webhook"), body.to_string()).await,
            200
        );
        // No wait for the worker: the export itself waits for what was acknowledged.
        for format in ["ndjson", "csv"] {
            let response = export(&env, &gateway, &format!("format={format}")).await;
            assert_eq!(response.headers()["consistency"], "fresh");
            let body = response.text().await.unwrap();
            assert!(body.contains(&format!("ryw-{i}")), "{format}: {body}");
        }
    }
    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_formats_refuse_page_parameters_and_unknown_values() {
    let env = TestEnv::new().await;
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    env.wait_stream_ready().await;
    let refused = |query: &'static str| {
        let response = export(&env, &gateway, query);
        async move {
            let response = response.await;
            assert_eq!(response.status(), 422, "{query}");
            let body: Value = response.json().await.unwrap();
            body["detail"]
                .as_array()
                .expect("a list of errors")
                .iter()
                .map(|e| (e["loc"][1].as_str().unwrap().to_owned(), e["msg"].clone()))
                .collect::<Vec<_>>()
        }
    };
    let errors = refused("format=xml").await;
    assert_eq!(errors[0].0, "format");
    assert_eq!(errors[0].1, "Input should be 'json', 'ndjson' or 'csv'");
    let errors = refused("format=csv&limit=5&offset=0&cursor=00").await;
    let names: Vec<&str> = errors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["limit", "offset", "cursor"], "{errors:?}");
    assert_eq!(refused("format=ndjson&limit=5").await[0].0, "limit");
    assert_eq!(refused("format=csv&include=raw").await[0].0, "include");
    assert_eq!(refused("include=raw").await[0].0, "include");
    assert_eq!(refused("format=ndjson&include=all").await[0].0, "include");
    // Filters are checked exactly as for a page.
    assert_eq!(refused("format=ndjson&from=abc").await[0].0, "from");
    assert_eq!(refused("format=csv&since=yesterday").await[0].0, "since");
    // `format=json` is the page, which takes them.
    let page = export(&env, &gateway, "format=json&limit=5").await;
    assert_eq!(page.status(), 200);
    gateway.stop().await.unwrap();
}

const SEEDED: i64 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_past_the_limit_are_refused_until_one_ends() {
    let env = TestEnv::new().await;
    let gateway = env
        .start_gateway(env.gateway_config(&[
            ("MAX_CONCURRENT_EXPORTS", "1"),
            ("EXPORT_BATCH_ROWS", "1000"),
        ]))
        .await;
    env.wait_stream_ready().await;
    integration_tests::seed_messages(&env, SEEDED).await;

    let mut holding = export(&env, &gateway, "format=ndjson").await;
    assert_eq!(holding.status(), 200);
    assert!(holding.chunk().await.unwrap().is_some());
    for format in ["ndjson", "csv"] {
        let refused = export(&env, &gateway, &format!("format={format}")).await;
        assert_eq!(refused.status(), 503, "{format}");
        assert_eq!(refused.headers()["retry-after"], "1");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(
            body["detail"],
            "too many exports in progress (MAX_CONCURRENT_EXPORTS), retry later"
        );
    }
    // Pages are not exports.
    assert_eq!(export(&env, &gateway, "limit=1").await.status(), 200);

    // Read to the end: the slot is free again.
    let mut lines = 0;
    let mut stream = holding.bytes_stream();
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    lines += rest.iter().filter(|b| **b == b'\n').count();
    assert!(lines > 0);
    let after = eventually(Duration::from_secs(10), "a free export slot", || async {
        let response = export(&env, &gateway, "format=csv&until=2025-01-15T00:00:10Z").await;
        (response.status() == 200).then_some(response)
    })
    .await;
    let csv = after.text().await.unwrap();
    assert_eq!(csv.lines().count(), 1 + 9, "{csv}");
    gateway.stop().await.unwrap();
}
