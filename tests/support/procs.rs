//! Real processes for the fault tests: a private nats-server and a private Postgres per test (so a
//! test can SIGKILL or stop them without touching anyone else's), and the gateway and worker
//! binaries as child processes (so they can be SIGKILLed and SIGTERMed for real).
//!
//! Everything is cleaned up on drop, also when the test panics: children are killed and reaped,
//! temp dirs removed. Children also get SIGKILL if the test process itself dies
//! (`PR_SET_PDEATHSIG`), so a killed test run leaves no servers behind.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::eventually;

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let path = std::env::temp_dir().join(format!("ingest-{tag}-{}", &id[..12]));
        std::fs::create_dir_all(&path).expect("create temp dir");
        // Postgres runs as its own user and must reach its data dir below this one.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port that was free a moment ago. Servers that restart keep it, which is the point.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Makes the child die with the test process. The signal follows the spawning *thread*, so
/// children are spawned only from the test's own threads, which live as long as the test.
fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches nothing of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn log_file(path: &Path) -> (Stdio, Stdio) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log file");
    let err = file.try_clone().expect("clone log file");
    (Stdio::from(file), Stdio::from(err))
}

/// The last lines of a log, printed when a test fails so the cause is in the test output.
fn print_tail(what: &str, path: &Path, lines: usize) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    eprintln!(
        "----- last {} lines of {what} ({}) -----",
        all.len() - start,
        path.display()
    );
    for line in &all[start..] {
        eprintln!("{line}");
    }
}

pub fn send_signal(pid: u32, signal: libc::c_int) {
    // SAFETY: plain kill(2) on a pid we spawned and have not reaped yet.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
}

async fn wait_port(port: u16, what: &str) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    eventually(Duration::from_secs(30), what, || async move {
        tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
    })
    .await;
}

async fn reap(child: &mut Child, what: &str) -> ExitStatus {
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap_or_else(|_| panic!("{what} did not exit"))
        .expect("wait for child")
}

// ---------------------------------------------------------------------------------------------
// nats-server

pub struct NatsServer {
    pub port: u16,
    store: PathBuf,
    log: PathBuf,
    /// A config file to start from instead of the plain JetStream flags.
    config: Option<PathBuf>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts nats-server with JetStream, its store under `dir`.
    pub async fn start(dir: &Path) -> Self {
        let mut server = Self {
            port: free_port(),
            store: dir.join("nats"),
            log: dir.join("nats.log"),
            config: None,
            child: None,
        };
        server.spawn().await;
        server
    }

    /// Starts nats-server from `config` (written to `dir/nats.conf`), which must make it
    /// listen on 127.0.0.1:`port`: for TLS and users, which have no command-line flags.
    pub async fn start_with_config(dir: &Path, port: u16, config: &str) -> Self {
        let path = dir.join("nats.conf");
        std::fs::write(&path, config).expect("write nats.conf");
        let mut server = Self {
            port,
            store: dir.join("nats"),
            log: dir.join("nats.log"),
            config: Some(path),
            child: None,
        };
        server.spawn().await;
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn binary() -> String {
        std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| {
            ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
                .into_iter()
                .find(|p| Path::new(p).exists())
                .unwrap_or("nats-server")
                .to_owned()
        })
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "nats-server already running");
        let (out, err) = log_file(&self.log);
        let mut command = Command::new(Self::binary());
        match &self.config {
            Some(config) => command.arg("-c").arg(config),
            None => command
                .args([
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-js",
                    "-sd",
                ])
                .arg(&self.store),
        };
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        die_with_parent(&mut command);
        self.child = Some(
            command
                .spawn()
                .expect("start nats-server (is it installed?)"),
        );
        wait_port(self.port, "nats-server listening").await;
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("nats-server running");
        child.start_kill().expect("SIGKILL nats-server");
        reap(&mut child, "nats-server").await;
    }

    /// Starts again on the same port and the same store.
    pub async fn restart(&mut self) {
        self.spawn().await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_tail("nats-server", &self.log, 20);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.try_wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Postgres

pub struct Postgres {
    pub port: u16,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

fn pg_bindir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BINDIR") {
        return dir.into();
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Postgres is installed under /usr/lib/postgresql (or set PG_BINDIR)")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().expect("a Postgres version with initdb").1
}

/// Postgres refuses to run as root: as root, its processes run as the `postgres` user.
fn postgres_user() -> Option<(libc::uid_t, libc::gid_t)> {
    // SAFETY: geteuid has no preconditions; getpwnam's result is read at once, before any
    // other call could overwrite its static buffer (tests take this path under a lock).
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        static LOCK: Mutex<()> = Mutex::new(());
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let pw = libc::getpwnam(c"postgres".as_ptr());
        assert!(!pw.is_null(), "running as root needs a `postgres` user");
        Some(((*pw).pw_uid, (*pw).pw_gid))
    }
}

fn as_postgres(command: &mut Command) {
    if let Some((uid, gid)) = postgres_user() {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

/// An empty data directory `dir/name` that Postgres accepts: its own, mode 0700.
fn data_dir(dir: &Path, name: &str) -> PathBuf {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).expect("create pg data dir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))
        .expect("chmod pg data dir");
    if let Some((uid, gid)) = postgres_user() {
        std::os::unix::fs::chown(&data, Some(uid), Some(gid)).expect("chown pg data dir");
    }
    data
}

impl Postgres {
    /// Initialises a cluster under `dir` and starts it on a free port.
    pub async fn start(dir: &Path) -> Self {
        let data = data_dir(dir, "pg");
        let mut initdb = Command::new(pg_bindir().join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .current_dir(dir);
        as_postgres(&mut initdb);
        let out = initdb.output().await.expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Self {
            port: free_port(),
            data,
            log: dir.join("postgres.log"),
            child: None,
        };
        pg.spawn().await;
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A streaming replica of this server (`pg_basebackup -R`: a standby that follows it),
    /// under `dir`, on a port of its own, replaying each commit no earlier than `apply_delay`
    /// after the primary made it (`recovery_min_apply_delay`): real replication lag, on demand.
    /// initdb's pg_hba.conf already trusts replication connections from loopback.
    pub async fn start_replica(&self, dir: &Path, apply_delay: Duration) -> Self {
        let data = data_dir(dir, "replica");
        let mut backup = Command::new(pg_bindir().join("pg_basebackup"));
        backup
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-R", "-X", "stream", "--no-sync"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .current_dir(dir);
        as_postgres(&mut backup);
        let out = backup.output().await.expect("run pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Appended to the file -R wrote (owned by postgres), which is read after postgresql.conf.
        let mut auto = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.auto.conf"))
            .expect("open postgresql.auto.conf");
        std::io::Write::write_all(
            &mut auto,
            format!(
                "recovery_min_apply_delay = '{}ms'\n",
                apply_delay.as_millis()
            )
            .as_bytes(),
        )
        .expect("write recovery_min_apply_delay");
        let mut replica = Self {
            port: free_port(),
            data,
            log: dir.join("replica.log"),
            child: None,
        };
        replica.spawn().await;
        replica
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "postgres already running");
        let (out, err) = log_file(&self.log);
        let mut command = Command::new(pg_bindir().join("postgres"));
        command
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.data.display()))
            // A killed process loses nothing with fsync off (the kernel has the pages); only
            // a machine crash would, and the tests do not crash machines.
            .args(["-c", "fsync=off", "-c", "max_connections=50"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .current_dir(&self.data)
            .kill_on_drop(true);
        as_postgres(&mut command);
        die_with_parent(&mut command);
        self.child = Some(command.spawn().expect("start postgres"));
        let url = self.url();
        eventually(Duration::from_secs(30), "postgres accepting", || {
            let url = url.clone();
            async move {
                use sqlx::Connection;
                let conn = sqlx::PgConnection::connect(&url).await.ok()?;
                conn.close().await.ok()
            }
        })
        .await;
    }

    /// Immediate shutdown (SIGQUIT): every connection dies at once and the next start runs
    /// crash recovery, as after a crash of the database process.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("postgres running");
        send_signal(child.id().expect("postgres pid"), libc::SIGQUIT);
        reap(&mut child, "postgres").await;
    }

    /// Starts again on the same port and data.
    pub async fn restart(&mut self) {
        self.spawn().await;
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_tail("postgres", &self.log, 20);
        }
        if let Some(child) = self.child.take()
            && let Some(pid) = child.id()
        {
            // SIGQUIT lets the postmaster take its backends down with it; SIGKILL would orphan
            // them. kill_on_drop then reaps.
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGQUIT);
            }
            let mut child = child;
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The service binaries

/// Path of the test suite's build of `ingest-gateway` / `ingest-worker` (tests/bin: the same
/// `main`), which cargo builds next to the test executables before it runs them.
pub fn service_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/test-<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable in target/<profile>/deps");
    let path = profile_dir.join(format!("test-{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing (it is built by `cargo test -p integration-tests`)",
        path.display()
    );
    path
}

/// A gateway or worker running as a child process.
pub struct ServiceProcess {
    pub name: String,
    pub addr: SocketAddr,
    log: PathBuf,
    child: Option<Child>,
}

impl ServiceProcess {
    /// Starts `binary` ("ingest-gateway" or "ingest-worker") with exactly `vars` (plus PATH),
    /// listening on `addr_var` = 127.0.0.1:`port`.
    pub fn spawn(
        binary: &str,
        name: &str,
        vars: &HashMap<String, String>,
        addr_var: &str,
        port: u16,
        log_dir: &Path,
    ) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = log_dir.join(format!("{name}.log"));
        let (out, err) = log_file(&log);
        let mut command = Command::new(service_binary(binary));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(vars)
            .env(addr_var, addr.to_string())
            // No .env file of the developer's may leak in.
            .current_dir(log_dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}"));
        Self {
            name: name.to_owned(),
            addr,
            log,
            child: Some(child),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(Child::id)
            .expect("process running")
    }

    pub fn signal(&self, signal: libc::c_int) {
        send_signal(self.pid(), signal);
    }

    /// Resident memory of the process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits for the process to exit, at most `deadline`.
    pub async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("process was started");
        let status = tokio::time::timeout(deadline, child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit within {deadline:?}", self.name))
            .expect("wait for child");
        self.child = None;
        status
    }

    /// SIGKILL and reap.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("process running");
        child.start_kill().expect("SIGKILL");
        reap(&mut child, &self.name).await;
    }

    /// Waits until `GET /health/ready` answers 200.
    pub async fn wait_ready(&self, http: &reqwest::Client, timeout: Duration) {
        let url = self.url("/health/ready");
        eventually(timeout, &format!("{} ready", self.name), || async {
            let response = http.get(&url).send().await.ok()?;
            (response.status() == 200).then_some(())
        })
        .await;
    }

    pub fn print_log_tail(&self, lines: usize) {
        print_tail(&self.name, &self.log, lines);
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_log_tail(15);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.try_wait();
        }
    }
}
