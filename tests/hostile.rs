//! Hostile and malformed input at the HTTP edge, and overload. Requests are written byte by byte
//! over raw TCP where a polite client library would refuse to send them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use integration_tests::procs::{ServiceProcess, TempDir, free_port};
use integration_tests::{SECRET, TestEnv, eventually, message_body};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn sign(body: &[u8]) -> String {
    ingest_shared::signature::sign(SECRET.as_bytes(), body)
}

#[derive(Debug)]
struct Answer {
    status: u16,
    version: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Parses the responses in `bytes` (as many as there are), using Content-Length.
fn parse_answers(mut bytes: &[u8]) -> Vec<Answer> {
    let mut answers = Vec::new();
    while !bytes.is_empty() {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("incomplete head: {:?}", String::from_utf8_lossy(bytes)));
        let head = std::str::from_utf8(&bytes[..end]).expect("ASCII head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let mut parts = status_line.split(' ');
        let version = parts.next().unwrap().to_owned();
        let status: u16 = parts.next().unwrap().parse().unwrap();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .get("content-length")
            .map(|v| v.parse().unwrap())
            .unwrap_or(0);
        let body = bytes[end + 4..end + 4 + length].to_vec();
        bytes = &bytes[end + 4 + length..];
        answers.push(Answer {
            status,
            version,
            headers,
            body,
        });
    }
    answers
}

/// Writes `request` and reads until the server closes the connection.
async fn raw(addr: SocketAddr, request: &[u8]) -> Vec<Answer> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut bytes))
        .await
        .expect("the server answers and closes in time")
        .expect("read answer");
    parse_answers(&bytes)
}

fn post_request(body: &[u8], extra_headers: &str, connection: &str) -> Vec<u8> {
    let mut request = format!(
        "POST /webhook HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n\
         X-Signature: {}\r\nContent-Length: {}\r\n{extra_headers}Connection: {connection}\r\n\r\n",
        sign(body),
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

async fn one(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut answers = raw(addr, request).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    answers.pop().unwrap()
}

fn assert_json_4xx(what: &str, answer: &Answer, status: u16) {
    assert_eq!(answer.status, status, "{what}: {answer:?}");
    assert!(
        answer.json()["detail"].is_string() || answer.json()["detail"].is_array(),
        "{what}: {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corpus_of_hostile_requests_gets_json_4xx_and_stores_nothing() {
    let env = TestEnv::new().await;
    let gateway = env
        .start_gateway(env.gateway_config(&[
            ("BODY_TIMEOUT_MS", "1000"),
            ("HEADER_READ_TIMEOUT_MS", "1000"),
        ]))
        .await;
    let worker = env.start_worker(env.worker_config(&[])).await;
    env.wait_stream_ready().await;
    let addr = gateway.addr;
    let valid = message_body("hostile-valid");
    let with = |field: &str, json: &str| -> Vec<u8> {
        valid
            .replacen(
                &format!(
                    "\"{field}\":{}",
                    serde_json::to_string(&serde_json::from_str::<Value>(&valid).unwrap()[field])
                        .unwrap()
                ),
                &format!("\"{field}\":{json}"),
                1,
            )
            .into_bytes()
    };

    // 10 MiB, declared: refused from the head, before a byte of the body is read.
    {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /webhook HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n\
             X-Signature: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            "0".repeat(64),
            10 << 20
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let writer = tokio::spawn(async move {
            let chunk = vec![b'x'; 64 << 10];
            for _ in 0..160 {
                if write.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        });
        let mut bytes = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut bytes)).await;
        writer.abort();
        let answer = parse_answers(&bytes).pop().expect("an answer to 10 MiB");
        assert_json_4xx("10 MiB body", &answer, 413);
    }

    // A body that never finishes: the gateway gives up after BODY_TIMEOUT_MS.
    {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /webhook HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n\
             X-Signature: {}\r\nContent-Length: 300\r\nConnection: close\r\n\r\n{{\"message_id\":",
            "0".repeat(64)
        );
        let started = Instant::now();
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut bytes = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
            .await
            .expect("slow sender cut off")
            .unwrap();
        let answer = parse_answers(&bytes)
            .pop()
            .expect("an answer to a slow body");
        assert_json_4xx("slow body", &answer, 408);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    // A head that never finishes (slowloris): no request yet to answer, so the connection is
    // simply closed after HEADER_READ_TIMEOUT_MS.
    {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"POST /webhook HTTP/1.1\r\nHost: g\r\nX-Slow: ")
            .await
            .unwrap();
        let mut bytes = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes)).await;
        assert!(closed.is_ok(), "a never-ending head is cut off");
    }

    let mut deep = b"{\"message_id\":".to_vec();
    deep.extend(std::iter::repeat_n(b'[', 100_000));
    deep.extend(std::iter::repeat_n(b']', 100_000));
    deep.push(b'}');
    // The body is stored whole as jsonb, so what jsonb cannot hold is refused even in a field the
    // service does not know.
    let extra =
        |json: &str| format!("{},\"extra\":{json}}}", valid.trim_end_matches('}')).into_bytes();
    let mut raw_nul = valid.clone().into_bytes();
    let at = raw_nul.windows(5).position(|w| w == b"Hello").unwrap();
    raw_nul[at + 2] = 0;
    let mut invalid_utf8 = valid.clone().into_bytes();
    invalid_utf8[at + 1] = 0xff;
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("invalid UTF-8", invalid_utf8, 422),
        ("escaped NUL in text", with("text", r#""a\u0000b""#), 422),
        ("escaped NUL in message_id", with("message_id", r#""a\u0000""#), 422),
        ("raw NUL inside a string", raw_nul, 422),
        ("escaped NUL in an extra field", extra(r#""a\u0000b""#), 422),
        ("lone surrogate in an extra field", extra(r#""\ud800""#), 422),
        (
            "deeply nested extra field",
            extra(&format!("{}{}", "[".repeat(50_000), "]".repeat(50_000))),
            422,
        ),
        ("deeply nested JSON", deep, 422),
        (
            "duplicate keys",
            br#"{"message_id":"a","message_id":"b","from":"+1","to":"+2","ts":"2025-01-15T10:00:00Z"}"#
                .to_vec(),
            422,
        ),
        ("number for a string", with("from", "919876543210"), 422),
        ("object for a string", with("to", r#"{"n":1}"#), 422),
        ("array body", b"[1,2,3]".to_vec(), 422),
        (
            "100 KB message_id",
            with("message_id", &format!("\"{}\"", "m".repeat(100_000))),
            422,
        ),
        ("empty body", Vec::new(), 422),
    ];
    for (what, body, status) in &cases {
        let answer = one(addr, &post_request(body, "", "close")).await;
        assert_json_4xx(what, &answer, *status);
        // The input is never echoed.
        assert!(answer.body.len() < 4096, "{what}: answer echoes the input?");
    }

    // Wrong content type, correctly signed.
    let text_plain = String::from_utf8(post_request(valid.as_bytes(), "", "close"))
        .unwrap()
        .replace("application/json", "text/plain");
    let answer = one(addr, text_plain.as_bytes()).await;
    assert_json_4xx("wrong content type", &answer, 415);

    // A thousand headers, and one header over 64 KB: a JSON 431, not the parser's bare one.
    let many: String = (0..1000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = one(addr, &post_request(valid.as_bytes(), &many, "close")).await;
    assert_json_4xx("a thousand headers", &answer, 431);
    let huge = format!("X-Huge: {}\r\n", "h".repeat(65 << 10));
    let answer = one(addr, &post_request(valid.as_bytes(), &huge, "close")).await;
    assert_json_4xx("a 65 KiB header", &answer, 431);
    let huge_signature = format!("X-Signature: {}\r\n", "a".repeat(65 << 10));
    let answer = one(
        addr,
        &post_request(valid.as_bytes(), &huge_signature, "close"),
    )
    .await;
    assert_json_4xx("a 65 KiB signature", &answer, 431);

    // HTTP/1.0, no Host, bad signature: answered in JSON, connection closed.
    let request = format!(
        "POST /webhook HTTP/1.0\r\nContent-Type: application/json\r\nX-Signature: {}\r\n\
         Content-Length: {}\r\n\r\n{valid}",
        "0".repeat(64),
        valid.len()
    );
    let answer = one(addr, request.as_bytes()).await;
    assert_json_4xx("HTTP/1.0", &answer, 401);
    assert!(answer.version.starts_with("HTTP/1."), "{answer:?}");

    // Pipelined: three requests in one write, three answers in order.
    let mut pipelined = Vec::new();
    let bad_signature = valid.replace("Hello", "Hellp");
    pipelined.extend(
        format!(
            "POST /webhook HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n\
             X-Signature: {}\r\nContent-Length: {}\r\n\r\n{bad_signature}",
            sign(valid.as_bytes()),
            bad_signature.len()
        )
        .as_bytes(),
    );
    pipelined.extend(post_request(b"{not json", "", "keep-alive"));
    pipelined.extend(b"GET /nope HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n");
    let answers = raw(addr, &pipelined).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [401, 422, 404], "{answers:?}");
    for answer in &answers {
        assert_json_4xx("pipelined", answer, answer.status);
    }

    // A garbage request line gets the parser's 400 and a closed connection; nothing breaks.
    let answers = raw(addr, b"\x00\x01\x02 nonsense\r\n\r\n").await;
    assert!(answers.iter().all(|a| a.status == 400), "{answers:?}");

    // Still alive, nothing published, nothing stored.
    let live = env
        .http
        .get(gateway.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let ok = env.post_signed(&gateway, &valid).await;
    assert_eq!(ok.status(), 200, "a valid message still goes through");
    env.wait_for_rows(1).await;
    env.wait_drained().await;
    let ids = env.message_ids().await;
    assert_eq!(ids, ["hostile-valid"], "only the valid message was stored");
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
        .fetch_one(&env.db)
        .await
        .unwrap();
    assert_eq!(dead, 0);
    worker.stop().await.unwrap();
    gateway.stop().await.unwrap();
}

/// Starts a request and waits until the gateway has asked for its body (100 Continue): from
/// then on it holds a concurrency slot.
async fn hold_slot(addr: SocketAddr, id: &str) -> BufReader<TcpStream> {
    let body = message_body(id);
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n\
         X-Signature: {}\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        sign(body.as_bytes()),
        body.len()
    );
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
        .await
        .expect("100 Continue")
        .unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "{line:?}");
    line.clear();
    reader.read_line(&mut line).await.unwrap();
    reader
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_sheds_fast_with_503_and_memory_stays_bounded() {
    const BOUND: usize = 8;
    let env = TestEnv::new().await;
    let dir = TempDir::new("overload");
    let mut vars = env.vars();
    for (k, v) in [
        ("MAX_CONCURRENT_REQUESTS", BOUND.to_string()),
        ("REQUEST_TIMEOUT_MS", "15000".to_owned()),
        ("BODY_TIMEOUT_MS", "60000".to_owned()),
        ("LOG_LEVEL", "warn".to_owned()),
    ] {
        vars.insert(k.to_owned(), v);
    }
    let gateway = ServiceProcess::spawn(
        "ingest-gateway",
        "gateway",
        &vars,
        "GATEWAY_ADDR",
        free_port(),
        dir.path(),
    );
    gateway.wait_ready(&env.http, Duration::from_secs(60)).await;
    let addr = gateway.addr;

    // Fill every slot with a request whose body has not arrived yet.
    let held_at = Instant::now();
    let mut held = Vec::new();
    for i in 0..BOUND {
        held.push(hold_slot(addr, &format!("held-{i}")).await);
    }
    let rss_before = gateway.rss_kib();

    // A flood far past the bound: every request answered at once with 503 + Retry-After.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let flood_started = Instant::now();
    let results: Vec<(u16, Duration, bool)> = futures::stream::iter(0..1500)
        .map(|i| {
            // Valid and signed: only the bound stands between them and JetStream.
            let body = message_body(&format!("flood-{i}"));
            let (client, signature) = (client.clone(), sign(body.as_bytes()));
            let url = gateway.url("/webhook");
            async move {
                let started = Instant::now();
                let response = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header("x-signature", signature)
                    .body(body)
                    .send()
                    .await
                    .expect("an answer, not a dropped connection");
                let status = response.status().as_u16();
                let retry_after = response.headers().contains_key("retry-after");
                let json: Value = response.json().await.expect("JSON body");
                assert!(json["detail"].is_string());
                (status, started.elapsed(), retry_after)
            }
        })
        .buffer_unordered(100)
        .collect()
        .await;
    let flood_time = flood_started.elapsed();
    let rss_after = gateway.rss_kib();
    let mut latencies: Vec<Duration> = results.iter().map(|r| r.1).collect();
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    println!(
        "overload: {} requests in {flood_time:?}, p50={:?} p99={p99:?} max={:?}; \
         RSS {rss_before} KiB -> {rss_after} KiB",
        results.len(),
        latencies[latencies.len() / 2],
        latencies.last().unwrap()
    );
    assert!(
        results
            .iter()
            .all(|(status, _, retry)| *status == 503 && *retry),
        "every request past the bound is a 503 with Retry-After"
    );
    assert!(
        p99 < Duration::from_secs(2),
        "shedding is fast: p99 {p99:?}"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory bounded: {rss_before} KiB -> {rss_after} KiB"
    );

    // Probes are outside the bound.
    for path in ["/health/live", "/health/ready", "/metrics"] {
        let response = client.get(gateway.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path} under overload");
    }

    // The held requests hit the request deadline: 503 + Retry-After, slots freed.
    for reader in &mut held {
        let mut bytes = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut bytes))
            .await
            .expect("request deadline")
            .unwrap();
        let answer = parse_answers(&bytes).pop().unwrap();
        assert_eq!(answer.status, 503, "{answer:?}");
        assert!(answer.headers.contains_key("retry-after"));
        answer.json();
    }
    let waited = held_at.elapsed();
    assert!(
        waited >= Duration::from_secs(14),
        "the deadline, not something else, ended them: {waited:?}"
    );

    // And the gateway serves normally again.
    let valid = message_body("after-overload");
    let status = eventually(Duration::from_secs(10), "a 200 after overload", || async {
        let response = client
            .post(gateway.url("/webhook"))
            .header("x-signature", sign(valid.as_bytes()))
            .body(valid.clone())
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(200)
    })
    .await;
    assert_eq!(status, 200);
}
