//! The console (`/console`) and the API docs (`/docs`) in a real headless Chromium, driven over
//! WebDriver (chromedriver, `integration_tests::browser`), against the real gateway and worker
//! with messages posted through `/webhook`. Screenshots land in `<target>/browser-screenshots/`.

use futures::StreamExt;
use integration_tests::browser::Browser;
use integration_tests::{Running, TestEnv};
use serde_json::{Value, json};

/// `<target>/browser-screenshots`.
fn screenshots() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("browser-screenshots")
}

async fn api(env: &TestEnv, gateway: &Running, path: &str, token: Option<&str>) -> Value {
    let mut request = env.http.get(gateway.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

/// `n` messages over three days from three senders (the first sends half), one in seven with
/// the word "needle"; posted signed, and stored.
async fn seed(env: &TestEnv, gateway: &Running, n: usize) {
    let bodies: Vec<String> = (0..n)
        .map(|i| {
            let sender = if i % 2 == 0 { 1 } else { 2 + i % 3 % 2 };
            let text = if i % 7 == 0 {
                format!("needle in message {i}: a longer text that the table cuts and the detail shows whole")
            } else {
                format!("message {i}")
            };
            json!({
                "message_id": format!("b{i:04}"),
                "from": format!("+9199{sender}"),
                "to": "+14155550100",
                "ts": format!("2025-01-{:02}T{:02}:{:02}:00Z", 14 + i % 3, (i * 7 + i / 17) % 24, i % 60),
                "text": text,
            })
            .to_string()
        })
        .collect();
    let statuses: Vec<u16> = futures::stream::iter(&bodies)
        .map(|b| async move { env.post_signed(gateway, b).await.status().as_u16() })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    env.wait_for_rows(n as i64).await;
}

/// Every id of a filtered listing, by cursor, as the API gives it.
async fn all_ids(env: &TestEnv, gateway: &Running, query: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = api(
            env,
            gateway,
            &format!("/messages?limit=100&{query}&cursor={cursor}"),
            None,
        )
        .await;
        for m in page["data"].as_array().unwrap() {
            ids.push(m["message_id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return ids,
        }
    }
}

/// The series chart as drawn: `[start, count]` of every bar.
const CHART_BARS: &str = "return [...document.querySelectorAll('#series-chart rect.bucket')]
    .map(r => [r.dataset.start, Number(r.dataset.count)])";
const ROW_IDS: &str =
    "return [...document.querySelectorAll('#messages tbody tr')].map(r => r.dataset.id)";

fn series_pairs(series: &Value) -> Value {
    Value::Array(
        series["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| json!([b["start"], b["count"]]))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_and_the_docs_work_in_a_browser() {
    let env = TestEnv::new().await;
    let gateway = env.start_gateway(env.gateway_config(&[])).await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    env.wait_stream_ready().await;
    seed(&env, &gateway, 240).await;
    let browser = Browser::start(&env.http).await;
    let b = &browser;

    b.client.goto(&gateway.url("/console")).await.unwrap();
    b.console_loaded().await;
    // Totals, top senders and the day series equal the API's.
    let stats = api(&env, &gateway, "/stats", None).await;
    let total = b
        .js("return document.querySelector('[data-stat=total]').textContent")
        .await;
    assert_eq!(total, json!(stats["total_messages"].to_string()));
    let senders = b
        .js("return [...document.querySelectorAll('#senders-chart .bar')].map(g => [g.dataset.label, Number(g.dataset.count)])")
        .await;
    let expected: Vec<Value> = stats["messages_per_sender"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!([s["from"], s["count"]]))
        .collect();
    assert_eq!(senders, json!(expected));
    let day = api(&env, &gateway, "/stats/timeseries?bucket=day", None).await;
    assert_eq!(b.js(CHART_BARS).await, series_pairs(&day));
    assert_eq!(b.js(ROW_IDS).await.as_array().unwrap().len(), 50);
    // A timestamp shows in the viewer's zone, with UTC on hover.
    let first_title = b
        .js("return document.querySelector('#messages tbody td').title")
        .await;
    assert!(
        first_title.as_str().unwrap().starts_with("UTC 2025-01-"),
        "{first_title}"
    );

    // Per hour: the chart follows, and the URL says so.
    b.client
        .execute("const s = document.querySelector('select[name=bucket]'); s.value = 'hour'; s.dispatchEvent(new Event('change'));", vec![])
        .await
        .unwrap();
    b.until("hour chart", "return document.querySelector('#series-chart').dataset.bucket === 'hour' && document.body.dataset.loaded === 'true'").await;
    let hour = api(&env, &gateway, "/stats/timeseries?bucket=hour", None).await;
    assert_eq!(b.js(CHART_BARS).await, series_pairs(&hour));
    assert!(
        b.client
            .current_url()
            .await
            .unwrap()
            .query()
            .unwrap()
            .contains("bucket=hour")
    );
    b.screenshot(&screenshots(), "console.png").await;

    // Search: the URL carries it, a reload restores it.
    b.type_into("input[name=q]", "needle").await;
    b.click("#filters button[type=submit]").await;
    b.until(
        "search applied",
        "return location.search.includes('q=needle') && document.body.dataset.loaded === 'true'",
    )
    .await;
    let needles = all_ids(&env, &gateway, "q=needle").await;
    assert_eq!(b.js(ROW_IDS).await, json!(needles));
    b.client.refresh().await.unwrap();
    b.console_loaded().await;
    assert_eq!(
        b.js("return document.querySelector('input[name=q]').value")
            .await,
        json!("needle")
    );
    assert_eq!(b.js(ROW_IDS).await, json!(needles));
    // A message's full text on click.
    b.click("#messages tbody tr").await;
    let detail = b.until("detail open", "const d = document.getElementById('detail'); return d.open && document.getElementById('detail-text').textContent").await;
    assert!(
        detail.as_str().unwrap().ends_with("the detail shows whole"),
        "{detail}"
    );
    b.click("#detail button").await;

    // Filter by sender and page to the end: every row once, in the API's order.
    b.client
        .goto(&gateway.url("/console?from=%2B91991&since=2025-01-14"))
        .await
        .unwrap();
    b.console_loaded().await;
    assert_eq!(
        b.js("return document.querySelector('input[name=from]').value")
            .await,
        json!("+91991")
    );
    let expected = all_ids(&env, &gateway, "from=%2B91991&since=2025-01-14").await;
    assert!(expected.len() > 100, "{}", expected.len());
    let sender_day = api(
        &env,
        &gateway,
        "/stats/timeseries?bucket=day&from=%2B91991&since=2025-01-14",
        None,
    )
    .await;
    assert_eq!(b.js(CHART_BARS).await, series_pairs(&sender_day));
    for clicks in 1.. {
        if b.js("return document.getElementById('page-status').dataset.complete")
            .await
            == json!("true")
        {
            break;
        }
        assert!(clicks < 10, "Load more never reached the end");
        let shown = b.js(ROW_IDS).await.as_array().unwrap().len();
        b.click("#more").await;
        b.until(
            "the next page",
            &format!("return document.querySelectorAll('#messages tbody tr').length > {shown}"),
        )
        .await;
    }
    assert_eq!(b.js(ROW_IDS).await, json!(expected));
    assert_eq!(
        b.js("return document.getElementById('more').hidden").await,
        json!(true)
    );
    b.screenshot(&screenshots(), "console-sender.png").await;

    // The source filter reaches the page and the series: every seeded message came through
    // `/webhook` (source `default`), none through a source named `nobody`.
    b.client
        .goto(&gateway.url("/console?source=nobody&since=2025-01-14"))
        .await
        .unwrap();
    b.console_loaded().await;
    assert_eq!(
        b.js("return document.querySelector('input[name=source]').value")
            .await,
        json!("nobody")
    );
    assert_eq!(b.js(ROW_IDS).await, json!([]));
    assert_eq!(b.js(CHART_BARS).await, json!([]));
    b.client
        .goto(&gateway.url("/console?source=default&from=%2B91991&since=2025-01-14"))
        .await
        .unwrap();
    b.console_loaded().await;
    assert_eq!(b.js(CHART_BARS).await, series_pairs(&sender_day));

    // A bad filter: the field and the API's message, not an empty table.
    b.client
        .goto(&gateway.url("/console?since=yesterday"))
        .await
        .unwrap();
    let invalid = b
        .until(
            "422 notice",
            "const n = document.querySelector('[data-kind=invalid]'); return n && n.textContent",
        )
        .await;
    assert!(
        invalid
            .as_str()
            .unwrap()
            .starts_with("since: Input should be a valid datetime"),
        "{invalid}"
    );

    // The docs: every route rendered, and "Try it out" on GET /stats answers 200.
    try_it_out_on_stats(b, &gateway).await;
    b.screenshot(&screenshots(), "docs.png").await;

    browser.close().await;
    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

async fn try_it_out_on_stats(b: &Browser, gateway: &Running) {
    b.client.goto(&gateway.url("/docs")).await.unwrap();
    let paths = b
        .until("operations rendered", "const p = [...document.querySelectorAll('.opblock-summary-path')].map(e => e.dataset.path); return p.length >= 10 && p")
        .await;
    for path in [
        "/messages",
        "/stats",
        "/stats/timeseries",
        "/webhook",
        "/openapi.json",
    ] {
        assert!(
            paths.as_array().unwrap().contains(&json!(path)),
            "{path} in {paths}"
        );
    }
    b.click("#operations-read-stats .opblock-summary-control")
        .await;
    b.until(
        "try it out button",
        "return document.querySelector('#operations-read-stats .try-out__btn')",
    )
    .await;
    b.click("#operations-read-stats .try-out__btn").await;
    b.until(
        "execute button",
        "return document.querySelector('#operations-read-stats .execute')",
    )
    .await;
    b.click("#operations-read-stats .execute").await;
    let status = b
        .until("a live response", "const s = document.querySelector('#operations-read-stats .live-responses-table tr.response .response-col_status'); return s && s.textContent.trim()")
        .await;
    assert_eq!(status, json!("200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_read_tokens_the_pages_ask_once_and_then_work() {
    let env = TestEnv::new().await;
    let gateway = env
        .start_gateway(env.gateway_config(&[("READ_TOKENS", "tok-browser")]))
        .await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    env.wait_stream_ready().await;
    seed(&env, &gateway, 30).await;
    // The shells are open; the data is not.
    for path in [
        "/console",
        "/docs",
        "/assets/console.js",
        "/assets/swagger-ui-bundle.js",
    ] {
        let r = env.http.get(gateway.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert!(
            r.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        // Revalidation: the same file again costs a 304.
        let etag = r.headers()["etag"].clone();
        let again = env
            .http
            .get(gateway.url(path))
            .header("if-none-match", etag)
            .send();
        assert_eq!(again.await.unwrap().status(), 304, "{path}");
    }
    for (path, status) in [
        ("/messages", 401),
        ("/stats/timeseries?bucket=day", 401),
        ("/openapi.json", 401),
    ] {
        let r = env.http.get(gateway.url(path)).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
    }
    let browser = Browser::start(&env.http).await;
    let b = &browser;

    b.client.goto(&gateway.url("/console")).await.unwrap();
    b.until(
        "the token form",
        "return document.getElementById('token-form')",
    )
    .await;
    b.type_into("#token-form input", "wrong").await;
    b.click("#token-form button").await;
    let refused = b.until("asked again", "const f = document.getElementById('token-form'); return f && f.textContent.includes('refused')").await;
    assert_eq!(refused, json!(true));
    b.type_into("#token-form input", "tok-browser").await;
    b.click("#token-form button").await;
    b.console_loaded().await;
    assert_eq!(b.js(ROW_IDS).await.as_array().unwrap().len(), 30);
    assert_eq!(
        b.js("return document.querySelectorAll('#token-form').length")
            .await,
        json!(0)
    );
    let day = api(
        &env,
        &gateway,
        "/stats/timeseries?bucket=day",
        Some("tok-browser"),
    )
    .await;
    assert_eq!(b.js(CHART_BARS).await, series_pairs(&day));

    // The docs in the same tab use the token the console was given, without asking.
    try_it_out_on_stats(b, &gateway).await;
    assert_eq!(
        b.js("return document.querySelectorAll('#token-form').length")
            .await,
        json!(0)
    );
    b.screenshot(&screenshots(), "docs-with-token.png").await;

    browser.close().await;
    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

/// A read the gateway could not confirm as caught up (no worker yet) says so on the page; once a
/// worker has stored the message, a reload shows it without the notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_read_shows_a_notice() {
    let env = TestEnv::new().await;
    let gateway = env
        .start_gateway(env.gateway_config(&[("READ_CONSISTENCY_TIMEOUT_MS", "200")]))
        .await;
    env.wait_stream_ready().await;
    let body = integration_tests::message_body("stale-1");
    assert_eq!(env.post_signed(&gateway, &body).await.status(), 200);
    let browser = Browser::start(&env.http).await;
    let b = &browser;

    b.client.goto(&gateway.url("/console")).await.unwrap();
    let notice = b
        .until(
            "the stale notice",
            "const n = document.querySelector('[data-kind=stale]'); return n && n.textContent",
        )
        .await;
    assert!(
        notice.as_str().unwrap().contains("Consistency: stale"),
        "{notice}"
    );

    let worker = env.start_worker(env.worker_config(&[])).await;
    env.wait_for_rows(1).await;
    b.client.refresh().await.unwrap();
    b.console_loaded().await;
    assert_eq!(b.js(ROW_IDS).await, json!(["stale-1"]));
    assert_eq!(
        b.js("return document.querySelectorAll('[data-kind=stale]').length")
            .await,
        json!(0)
    );

    browser.close().await;
    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

/// The files Chromium finished downloading into `dir` (not the `.crdownload` in progress).
fn downloaded(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "csv" || e == "ndjson"));
    files.sort();
    files
}

/// The console's downloads, behind a read token, hold exactly the rows `/messages` lists for the
/// same filters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_downloads_what_messages_lists() {
    let env = TestEnv::new().await;
    let gateway = env
        .start_gateway(env.gateway_config(&[("READ_TOKENS", "tok-dl")]))
        .await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    env.wait_stream_ready().await;
    seed(&env, &gateway, 60).await;
    let dir =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("downloads-{}", env.id));
    std::fs::create_dir_all(&dir).unwrap();
    let browser = Browser::downloading_to(&env.http, &dir).await;
    let b = &browser;

    let filters = "from=%2B91991&since=2025-01-15";
    b.client
        .goto(&gateway.url(&format!("/console?{filters}")))
        .await
        .unwrap();
    b.until(
        "the token form",
        "return document.getElementById('token-form')",
    )
    .await;
    b.type_into("#token-form input", "tok-dl").await;
    b.click("#token-form button").await;
    b.console_loaded().await;

    // The same filters through the API, page by page.
    let mut expected = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = api(
            &env,
            &gateway,
            &format!("/messages?limit=7&{filters}{cursor}"),
            Some("tok-dl"),
        )
        .await;
        expected.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert!(expected.len() > 7, "{expected:?}");

    b.click("#download-csv").await;
    let csv_file = integration_tests::eventually(
        std::time::Duration::from_secs(30),
        "the CSV download",
        || async {
            downloaded(&dir)
                .into_iter()
                .find(|p| p.extension().unwrap() == "csv")
        },
    )
    .await;
    let name = csv_file.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.starts_with("messages-20250115T000000Z-"), "{name}");
    let mut reader = csv::Reader::from_path(&csv_file).unwrap();
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    let wanted: Vec<Vec<String>> = expected
        .iter()
        .map(|m| {
            ["message_id", "from", "to", "ts", "text"]
                .iter()
                .map(|k| m[*k].as_str().unwrap_or("").to_owned())
                .chain([String::new()])
                .collect()
        })
        .collect();
    assert_eq!(rows, wanted);

    b.click("#download-ndjson").await;
    let ndjson_file = integration_tests::eventually(
        std::time::Duration::from_secs(30),
        "the NDJSON download",
        || async {
            downloaded(&dir)
                .into_iter()
                .find(|p| p.extension().unwrap() == "ndjson")
        },
    )
    .await;
    let lines: Vec<Value> = std::fs::read_to_string(&ndjson_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, expected);
    assert_eq!(
        b.js("return document.getElementById('download-link').dataset.format")
            .await,
        json!("ndjson")
    );
    b.screenshot(&screenshots(), "console-downloads.png").await;

    browser.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}
