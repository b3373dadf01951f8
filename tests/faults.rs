//! Fault tests: the real gateway and worker binaries against a private nats-server and a private
//! Postgres, which the tests kill, stop and restart for real while a steady stream of signed
//! posts (about 20% of them re-sends of earlier ids) goes on. Each ends by checking, in Postgres,
//! that every id that ever got a 200 is there exactly once and nothing else is, and prints the
//! figures.
//!
//! The tests take a process-wide lock and run one at a time: each starts its own servers, and
//! two at once on two cores would measure the machine rather than the service.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use integration_tests::procs::{NatsServer, Postgres, ServiceProcess, TempDir, free_port};
use integration_tests::{SECRET, eventually, message_body};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Mutex, RwLock};
use tokio::task::JoinHandle;

static SERIAL: Mutex<()> = Mutex::const_new(());

// ---------------------------------------------------------------------------------------------
// The world of one test

struct World {
    dir: TempDir,
    nats: NatsServer,
    pg: Postgres,
    db: PgPool,
    js: jetstream::Context,
    http: reqwest::Client,
    stream: String,
    consumer: String,
    next: u32,
}

impl World {
    async fn start(tag: &str) -> Self {
        let dir = TempDir::new(tag);
        let (nats, pg) = tokio::join!(NatsServer::start(dir.path()), Postgres::start(dir.path()));
        let db = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy(&pg.url())
            .expect("pool");
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(nats.url())
            .await
            .expect("connect nats");
        Self {
            js: jetstream::new(client),
            dir,
            nats,
            pg,
            db,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("http client"),
            stream: "FAULTS".into(),
            consumer: "ingest-worker".into(),
            next: 0,
        }
    }

    fn vars(&self, overrides: &[(&str, &str)]) -> HashMap<String, String> {
        let mut vars: HashMap<String, String> = [
            ("WEBHOOK_SECRET", SECRET.to_owned()),
            ("DATABASE_URL", self.pg.url()),
            ("NATS_URL", self.nats.url()),
            ("NATS_STREAM", self.stream.clone()),
            ("NATS_SUBJECT", "faults.messages".to_owned()),
            ("NATS_CONSUMER", self.consumer.clone()),
            ("NATS_MAX_BYTES", (64u64 << 20).to_string()),
            ("BATCH_SIZE", "100".to_owned()),
            ("BATCH_WAIT_MS", "20".to_owned()),
            ("ACK_WAIT_SECS", "3".to_owned()),
            ("PUBLISH_TIMEOUT_MS", "1000".to_owned()),
            ("LAG_POLL_SECS", "1".to_owned()),
            ("LOG_LEVEL", "info".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in overrides {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        vars
    }

    fn gateway_on(&mut self, port: u16, overrides: &[(&str, &str)]) -> ServiceProcess {
        self.next += 1;
        let name = format!("gateway-{}", self.next);
        ServiceProcess::spawn(
            "ingest-gateway",
            &name,
            &self.vars(overrides),
            "GATEWAY_ADDR",
            port,
            self.dir.path(),
        )
    }

    fn gateway(&mut self, overrides: &[(&str, &str)]) -> ServiceProcess {
        self.gateway_on(free_port(), overrides)
    }

    fn worker(&mut self, overrides: &[(&str, &str)]) -> ServiceProcess {
        self.next += 1;
        let name = format!("worker-{}", self.next);
        ServiceProcess::spawn(
            "ingest-worker",
            &name,
            &self.vars(overrides),
            "WORKER_ADDR",
            free_port(),
            self.dir.path(),
        )
    }

    async fn ready(&self, apps: &[&ServiceProcess]) {
        for app in apps {
            app.wait_ready(&self.http, Duration::from_secs(60)).await;
        }
    }

    /// (pending, ack pending) of the shared consumer.
    async fn consumer_backlog(&self) -> Option<(u64, usize)> {
        let stream = self.js.get_stream(&self.stream).await.ok()?;
        let info = stream.consumer_info(&self.consumer).await.ok()?;
        Some((info.num_pending, info.num_ack_pending))
    }

    async fn stored_ids(&self) -> Option<Vec<String>> {
        sqlx::query_scalar("SELECT message_id FROM messages")
            .fetch_all(&self.db)
            .await
            .ok()
    }

    /// Waits for every accepted id to be stored and the queue to be empty, then checks the
    /// promise and prints the figures.
    async fn verify(&self, fault: &str, load: &LoadReport) {
        eventually(
            Duration::from_secs(90),
            "every accepted message stored and the consumer drained",
            || async {
                let stored: HashSet<String> = self.stored_ids().await?.into_iter().collect();
                if !load.accepted.iter().all(|id| stored.contains(id)) {
                    return None;
                }
                let (pending, ack_pending) = self.consumer_backlog().await?;
                (pending == 0 && ack_pending == 0).then_some(())
            },
        )
        .await;
        let ids = self.stored_ids().await.expect("read stored ids");
        let rows = ids.len();
        let stored: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let doubled = rows - stored.len();
        let lost = load
            .accepted
            .iter()
            .filter(|id| !stored.contains(id.as_str()))
            .count();
        let unknown = stored.iter().filter(|id| !load.sent.contains(**id)).count();
        // Legitimate: stored by JetStream, but the 200 never reached the sender (it gave up).
        let without_200 = stored
            .iter()
            .filter(|id| load.sent.contains(**id) && !load.accepted.contains(**id))
            .count();
        let dead_letters: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
            .fetch_one(&self.db)
            .await
            .expect("count dead letters");
        println!(
            "FAULT {fault}: sent={} posts={} attempts={} accepted={} http_200={} http_503={} \
             retry_after_missing={} other_status={:?} conn_errors={} gave_up={} rows={rows} \
             lost={lost} doubled={doubled} unknown={unknown} stored_without_200={without_200} \
             dead_letters={dead_letters}",
            load.sent.len(),
            load.posts,
            load.attempts.len(),
            load.accepted.len(),
            load.ok,
            load.unavailable,
            load.retry_after_missing,
            load.other_status,
            load.conn_errors,
            load.gave_up,
        );
        assert_eq!(lost, 0, "{fault}: accepted messages missing from Postgres");
        assert_eq!(doubled, 0, "{fault}: a message stored twice");
        assert_eq!(unknown, 0, "{fault}: rows nobody sent");
        assert_eq!(dead_letters, 0, "{fault}: valid messages dead-lettered");
        assert_eq!(
            load.retry_after_missing, 0,
            "{fault}: a 503 without Retry-After"
        );
        assert!(
            load.other_status.is_empty(),
            "{fault}: answers other than 200/503: {:?}",
            load.other_status
        );
        assert!(
            load.accepted.len() >= 100,
            "{fault}: too little load to mean anything"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The load: senders that behave like real webhook senders

#[derive(Debug, Clone, Copy)]
struct Attempt {
    started: Instant,
    ended: Instant,
    /// None: the connection failed or dropped.
    status: Option<u16>,
}

#[derive(Default)]
struct Record {
    sent: HashSet<String>,
    order: Vec<String>,
    accepted: HashSet<String>,
    attempts: Vec<Attempt>,
    posts: u64,
    retry_after_missing: u64,
    other_status: BTreeMap<u16, u64>,
    gave_up: u64,
}

struct Load {
    stop: Arc<AtomicBool>,
    record: Arc<std::sync::Mutex<Record>>,
    tasks: Vec<JoinHandle<()>>,
    accepted: Arc<AtomicU64>,
}

struct LoadReport {
    sent: HashSet<String>,
    accepted: HashSet<String>,
    attempts: Vec<Attempt>,
    posts: u64,
    ok: u64,
    unavailable: u64,
    conn_errors: u64,
    retry_after_missing: u64,
    other_status: BTreeMap<u16, u64>,
    gave_up: u64,
}

impl LoadReport {
    fn count(&self, from: Instant, to: Instant, status: Option<u16>) -> usize {
        self.attempts
            .iter()
            .filter(|a| a.started >= from && a.ended <= to && a.status == status)
            .count()
    }
}

/// How long a sender keeps retrying one message (503 or dropped connection) before giving up.
const SENDER_DEADLINE: Duration = Duration::from_secs(40);
const SENDERS: u64 = 4;
/// Pause between two messages of one sender: about 4 x 60 = 240 messages a second in all.
const PACE: Duration = Duration::from_millis(16);

impl Load {
    fn start(tag: &str, target: Arc<RwLock<String>>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let record = Arc::new(std::sync::Mutex::new(Record::default()));
        let accepted = Arc::new(AtomicU64::new(0));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(SENDERS as usize)
            .build()
            .expect("http client");
        let tasks = (0..SENDERS)
            .map(|sender| {
                let (stop, record, accepted, http, target) = (
                    stop.clone(),
                    record.clone(),
                    accepted.clone(),
                    http.clone(),
                    target.clone(),
                );
                let tag = tag.to_owned();
                tokio::spawn(async move {
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((sender + 1) * 0x1234_5678_9abc));
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let resend = {
                            let r = record.lock().unwrap();
                            (rng.next().is_multiple_of(5) && !r.order.is_empty())
                                .then(|| r.order[(rng.next() as usize) % r.order.len()].clone())
                        };
                        let id = resend.unwrap_or_else(|| {
                            n += 1;
                            format!("{tag}-{sender}-{n}")
                        });
                        {
                            let mut r = record.lock().unwrap();
                            r.posts += 1;
                            if r.sent.insert(id.clone()) {
                                r.order.push(id.clone());
                            }
                        }
                        if send_until_accepted(&http, &target, &id, &record).await {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        tokio::time::sleep(PACE).await;
                    }
                })
            })
            .collect();
        Self {
            stop,
            record,
            tasks,
            accepted,
        }
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Waits until `more` further posts have been accepted, at most `timeout`.
    async fn wait_accepted(&self, more: u64, timeout: Duration, what: &str) {
        let target = self.accepted() + more;
        eventually(timeout, what, || async {
            (self.accepted() >= target).then_some(())
        })
        .await;
    }

    fn snapshot(&self) -> Vec<Attempt> {
        self.record.lock().unwrap().attempts.clone()
    }

    /// Stops starting new messages; messages being retried go on until accepted or their
    /// deadline, so the accepted set is complete.
    async fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("sender task");
        }
        let r = Arc::try_unwrap(self.record)
            .ok()
            .expect("senders done")
            .into_inner()
            .unwrap();
        let by = |s: Option<u16>| r.attempts.iter().filter(|a| a.status == s).count() as u64;
        LoadReport {
            ok: by(Some(200)),
            unavailable: by(Some(503)),
            conn_errors: by(None),
            sent: r.sent,
            accepted: r.accepted,
            posts: r.posts,
            retry_after_missing: r.retry_after_missing,
            other_status: r.other_status,
            gave_up: r.gave_up,
            attempts: r.attempts,
        }
    }
}

/// Posts one message until it gets a 200, retrying on 503 and dropped connections.
async fn send_until_accepted(
    http: &reqwest::Client,
    target: &RwLock<String>,
    id: &str,
    record: &std::sync::Mutex<Record>,
) -> bool {
    let body = message_body(id);
    let signature = ingest_shared::signature::sign(SECRET.as_bytes(), body.as_bytes());
    let deadline = Instant::now() + SENDER_DEADLINE;
    let mut pause = Duration::from_millis(50);
    loop {
        let url = format!("{}/webhook", target.read().await);
        let started = Instant::now();
        let result = http
            .post(&url)
            .header("content-type", "application/json")
            .header("x-signature", &signature)
            .body(body.clone())
            .send()
            .await;
        let ended = Instant::now();
        let status = result.as_ref().ok().map(|r| r.status().as_u16());
        {
            let mut r = record.lock().unwrap();
            r.attempts.push(Attempt {
                started,
                ended,
                status,
            });
            match &result {
                Ok(response) if response.status() == 200 => {
                    r.accepted.insert(id.to_owned());
                    return true;
                }
                Ok(response) if response.status() == 503 => {
                    if response.headers().get("retry-after").is_none() {
                        r.retry_after_missing += 1;
                    }
                }
                Ok(response) => {
                    *r.other_status
                        .entry(response.status().as_u16())
                        .or_default() += 1;
                    return false;
                }
                Err(_) => {}
            }
        }
        if Instant::now() + pause > deadline {
            record.lock().unwrap().gave_up += 1;
            return false;
        }
        // A real sender's back-off, shortened from Retry-After so the test stays short.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(400));
    }
}

/// xorshift: deterministic choices without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

async fn status_of(http: &reqwest::Client, url: &str) -> Option<u16> {
    http.get(url).send().await.ok().map(|r| r.status().as_u16())
}

// ---------------------------------------------------------------------------------------------
// The faults

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_and_restarted_mid_load_loses_and_doubles_nothing() {
    let _serial = SERIAL.lock().await;
    let mut world = World::start("nats-kill").await;
    let gateway = world.gateway(&[]);
    let worker = world.worker(&[]);
    world.ready(&[&gateway, &worker]).await;
    let load = Load::start("nk", Arc::new(RwLock::new(gateway.url(""))));
    load.wait_accepted(200, Duration::from_secs(30), "load before the fault")
        .await;

    world.nats.kill().await;
    let killed = Instant::now();
    let ready_url = gateway.url("/health/ready");
    eventually(Duration::from_secs(10), "gateway not ready", || async {
        (status_of(&world.http, &ready_url).await == Some(503)).then_some(())
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "503s while NATS is down",
        || async {
            let attempts = load.snapshot();
            (attempts
                .iter()
                .filter(|a| a.started >= killed && a.status == Some(503))
                .count()
                >= 20)
                .then_some(())
        },
    )
    .await;
    // The outage lasts a few seconds, as a crashed server restarted by its supervisor would.
    tokio::time::sleep_until((killed + Duration::from_secs(3)).into()).await;
    let restarted = Instant::now();
    world.nats.restart().await;

    // No gateway restart: it reconnects by itself and takes posts again.
    load.wait_accepted(300, Duration::from_secs(45), "load after NATS came back")
        .await;
    let report = load.finish().await;
    let ok_while_down = report.count(killed, restarted, Some(200));
    let unavailable_while_down = report.count(killed, restarted, Some(503));
    println!(
        "nats down {:?}: 200s={ok_while_down} 503s={unavailable_while_down}",
        restarted - killed
    );
    assert_eq!(ok_while_down, 0, "a 200 while NATS was down");
    assert!(unavailable_while_down > 0);
    world.verify("nats_kill", &report).await;
    world.ready(&[&gateway, &worker]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_mid_load_keeps_accepting_and_the_backlog_drains() {
    let _serial = SERIAL.lock().await;
    let mut world = World::start("pg-stop").await;
    let gateway = world.gateway(&[]);
    let worker = world.worker(&[]);
    world.ready(&[&gateway, &worker]).await;
    let load = Load::start("pg", Arc::new(RwLock::new(gateway.url(""))));
    load.wait_accepted(200, Duration::from_secs(30), "load before the fault")
        .await;

    world.pg.stop().await;
    let stopped = Instant::now();
    let worker_ready = worker.url("/health/ready");
    eventually(Duration::from_secs(10), "worker not ready", || async {
        (status_of(&world.http, &worker_ready).await == Some(503)).then_some(())
    })
    .await;
    let before = load.accepted();
    tokio::time::sleep_until((stopped + Duration::from_secs(5)).into()).await;
    let accepted_while_down = load.accepted() - before;
    let restarted = Instant::now();
    world.pg.restart().await;
    eventually(Duration::from_secs(30), "worker ready again", || async {
        (status_of(&world.http, &worker_ready).await == Some(200)).then_some(())
    })
    .await;

    load.wait_accepted(
        200,
        Duration::from_secs(30),
        "load after Postgres came back",
    )
    .await;
    let report = load.finish().await;
    let unavailable_while_down = report.count(stopped, restarted, Some(503));
    println!(
        "postgres down {:?}: accepted meanwhile={accepted_while_down} 503s={unavailable_while_down}",
        restarted - stopped
    );
    assert!(
        accepted_while_down > 0,
        "JetStream buffers: the gateway keeps accepting while Postgres is down"
    );
    assert_eq!(unavailable_while_down, 0, "a 503 although NATS was up");
    world.verify("postgres_stop", &report).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_workers_killed_mid_batch_loses_and_doubles_nothing() {
    let _serial = SERIAL.lock().await;
    let mut world = World::start("worker-kill").await;
    let gateway = world.gateway(&[]);
    // A batch that waits a little fills up, so the kill lands with messages in hand.
    let slow_batches = [("BATCH_WAIT_MS", "200")];
    let mut victim = world.worker(&slow_batches);
    let survivor = world.worker(&slow_batches);
    world.ready(&[&gateway, &victim, &survivor]).await;
    let load = Load::start("wk", Arc::new(RwLock::new(gateway.url(""))));
    load.wait_accepted(300, Duration::from_secs(30), "load before the fault")
        .await;

    // Kill while the consumer shows delivered-but-unacked messages: a batch is in hand.
    eventually(Duration::from_secs(10), "a batch in flight", || async {
        let (_, ack_pending) = world.consumer_backlog().await?;
        (ack_pending > 0).then_some(())
    })
    .await;
    victim.kill().await;
    load.wait_accepted(100, Duration::from_secs(30), "load with one worker")
        .await;
    let restarted = world.worker(&slow_batches);
    world.ready(&[&restarted]).await;
    load.wait_accepted(200, Duration::from_secs(30), "load after the restart")
        .await;
    let report = load.finish().await;
    world.verify("worker_kill", &report).await;

    let mut redeliveries = 0.0;
    for app in [&survivor, &restarted] {
        let text = world
            .http
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        redeliveries += text
            .lines()
            .find_map(|l| l.strip_prefix("worker_redeliveries_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
    }
    println!("worker_kill: redeliveries after the kill={redeliveries}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stream_answers_503_with_retry_after_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let mut world = World::start("stream-full").await;
    // Room for a few dozen messages, and no worker yet: the stream fills up.
    let tiny = [("NATS_MAX_BYTES", "16384")];
    let gateway = world.gateway(&tiny);
    world.ready(&[&gateway]).await;
    let load = Load::start("sf", Arc::new(RwLock::new(gateway.url(""))));
    let started = Instant::now();
    eventually(
        Duration::from_secs(30),
        "503s from a full stream",
        || async {
            let full = load
                .snapshot()
                .iter()
                .filter(|a| a.started >= started && a.status == Some(503))
                .count();
            (full >= 30).then_some(())
        },
    )
    .await;
    let stored = {
        let mut stream = world.js.get_stream(&world.stream).await.unwrap();
        stream.info().await.unwrap().state.clone()
    };
    println!(
        "stream full: {} messages, {} bytes of 16384",
        stored.messages, stored.bytes
    );
    assert!(stored.bytes <= 16384);

    // A worker drains it; the senders' retries get in.
    let worker = world.worker(&tiny);
    world.ready(&[&worker]).await;
    load.wait_accepted(150, Duration::from_secs(45), "load once drained")
        .await;
    let report = load.finish().await;
    assert!(report.unavailable >= 30);
    world.verify("stream_full", &report).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_work_and_exits_zero() {
    let _serial = SERIAL.lock().await;
    let mut world = World::start("sigterm").await;
    let port = free_port();
    let mut gateway = world.gateway_on(port, &[]);
    let mut worker = world.worker(&[]);
    let other_worker = world.worker(&[]);
    world.ready(&[&gateway, &worker, &other_worker]).await;
    let target = Arc::new(RwLock::new(gateway.url("")));
    let load = Load::start("st", target.clone());
    load.wait_accepted(200, Duration::from_secs(30), "load before SIGTERM")
        .await;

    // A request provably in flight: the gateway has asked for its body (100 Continue) and has
    // half of it when SIGTERM arrives.
    let body = message_body("in-flight-at-sigterm");
    let signature = ingest_shared::signature::sign(SECRET.as_bytes(), body.as_bytes());
    let mut conn = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         X-Signature: {signature}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line))
        .await
        .expect("100 Continue in time")
        .unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "{line:?}");
    let mut blank = String::new();
    reader.read_line(&mut blank).await.unwrap();
    let half = body.len() / 2;
    reader
        .get_mut()
        .write_all(&body.as_bytes()[..half])
        .await
        .unwrap();

    gateway.signal(libc::SIGTERM);
    let terminated = Instant::now();
    // The listener closes first: from then on the gateway is shutting down, and still has our
    // request in hand.
    eventually(Duration::from_secs(10), "listener closed", || async {
        tokio::net::TcpStream::connect(gateway.addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert!(
        gateway.is_running(),
        "the gateway waits for in-flight requests"
    );
    reader
        .get_mut()
        .write_all(&body.as_bytes()[half..])
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), reader.read_to_string(&mut answer))
        .await
        .expect("answer to the in-flight request")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(r#"{"status":"ok"}"#), "{answer}");
    let status = gateway.wait_exit(Duration::from_secs(15)).await;
    println!(
        "gateway exited {status} {:?} after SIGTERM",
        terminated.elapsed()
    );
    assert_eq!(status.code(), Some(0));

    // A rolling restart: a new gateway on the same address; senders retry into it.
    let gateway = world.gateway_on(port, &[]);
    *target.write().await = gateway.url("");
    world.ready(&[&gateway]).await;
    load.wait_accepted(
        100,
        Duration::from_secs(30),
        "load after the gateway restart",
    )
    .await;

    worker.signal(libc::SIGTERM);
    let terminated = Instant::now();
    let status = worker.wait_exit(Duration::from_secs(15)).await;
    println!(
        "worker exited {status} {:?} after SIGTERM",
        terminated.elapsed()
    );
    assert_eq!(status.code(), Some(0));
    load.wait_accepted(
        100,
        Duration::from_secs(30),
        "load after the worker stopped",
    )
    .await;
    let mut report = load.finish().await;
    report.sent.insert("in-flight-at-sigterm".into());
    report.accepted.insert("in-flight-at-sigterm".into());
    world.verify("sigterm", &report).await;
}
