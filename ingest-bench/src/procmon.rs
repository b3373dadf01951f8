//! CPU and memory of the processes under test, sampled from /proc while a case runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What to watch: `label=PID[,PID...]`, or `label=comm:NAME` for every process named NAME
/// (Postgres forks a backend per connection, so its set changes during a run), or `label=db:NAME`
/// for the Postgres processes working for database NAME only: its backends and autovacuum
/// workers carry the database's name in their process title, so a server shared with other
/// databases' clients can still be measured for one database.
#[derive(Debug, Clone)]
pub enum Target {
    Pids(Vec<u32>),
    Comm(String),
    Database(String),
}

pub fn parse_watch(spec: &str) -> anyhow::Result<(String, Target)> {
    let (label, what) = spec
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("--watch wants label=PID[,PID] or label=comm:NAME"))?;
    let target = if let Some(name) = what.strip_prefix("comm:") {
        Target::Comm(name.to_owned())
    } else if let Some(name) = what.strip_prefix("db:") {
        Target::Database(name.to_owned())
    } else {
        Target::Pids(
            what.split(',')
                .filter(|s| !s.is_empty())
                .map(str::parse)
                .collect::<Result<_, _>>()?,
        )
    };
    Ok((label.to_owned(), target))
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Average over the case, in % of one core (200% = both cores of this box).
    pub cpu_pct: f64,
    pub rss_start_mib: f64,
    pub rss_max_mib: f64,
    pub rss_end_mib: f64,
}

pub struct Monitor {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<BTreeMap<String, Usage>>,
}

impl Monitor {
    /// Samples every `period`; the generator itself is always watched as `bench`.
    pub fn start(mut targets: Vec<(String, Target)>, period: Duration) -> Self {
        targets.push(("bench".into(), Target::Pids(vec![std::process::id()])));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || sample_until(&targets, period, &flag));
        Self { stop, handle }
    }

    pub fn finish(self) -> BTreeMap<String, Usage> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

struct Acc {
    first_ticks: HashMap<u32, u64>,
    last_ticks: HashMap<u32, u64>,
    rss_start: Option<u64>,
    rss_max: u64,
    rss_end: u64,
}

fn sample_until(
    targets: &[(String, Target)],
    period: Duration,
    stop: &AtomicBool,
) -> BTreeMap<String, Usage> {
    let started = Instant::now();
    let mut accs: Vec<Acc> = targets
        .iter()
        .map(|_| Acc {
            first_ticks: HashMap::new(),
            last_ticks: HashMap::new(),
            rss_start: None,
            rss_max: 0,
            rss_end: 0,
        })
        .collect();
    loop {
        let done = stop.load(Ordering::Relaxed);
        for ((_, target), acc) in targets.iter().zip(&mut accs) {
            let mut rss = 0;
            for pid in resolve(target) {
                let Some((ticks, rss_kib)) = read_pid(pid) else {
                    continue;
                };
                acc.first_ticks.entry(pid).or_insert(ticks);
                acc.last_ticks.insert(pid, ticks);
                rss += rss_kib;
            }
            acc.rss_start.get_or_insert(rss);
            acc.rss_max = acc.rss_max.max(rss);
            acc.rss_end = rss;
        }
        if done {
            break;
        }
        std::thread::sleep(period);
    }
    let wall = started.elapsed().as_secs_f64().max(1e-3);
    // USER_HZ is 100 on every Linux this runs on.
    let tick = 0.01;
    targets
        .iter()
        .zip(accs)
        .map(|((label, _), acc)| {
            let ticks: u64 = acc
                .last_ticks
                .iter()
                .map(|(pid, last)| last - acc.first_ticks.get(pid).copied().unwrap_or(*last))
                .sum();
            let mib = |kib: u64| kib as f64 / 1024.0;
            (
                label.clone(),
                Usage {
                    cpu_pct: ticks as f64 * tick / wall * 100.0,
                    rss_start_mib: mib(acc.rss_start.unwrap_or(0)),
                    rss_max_mib: mib(acc.rss_max),
                    rss_end_mib: mib(acc.rss_end),
                },
            )
        })
        .collect()
}

fn resolve(target: &Target) -> Vec<u32> {
    let all = || {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    };
    match target {
        Target::Pids(pids) => pids.clone(),
        Target::Comm(name) => all()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim_end() == name)
            })
            .collect(),
        Target::Database(name) => all()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim_end() == "postgres")
                    && std::fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| serves_database(&String::from_utf8_lossy(&c), name))
            })
            .collect(),
    }
}

/// CPU time so far of the processes `target` names, in nanoseconds (/proc/PID/schedstat: finer
/// than the ticks of /proc/PID/stat, for a figure per stored row).
pub fn cpu_ns(target: &Target) -> u64 {
    resolve(target)
        .into_iter()
        .filter_map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Whether a Postgres process title names `database` as a whole word
/// (`postgres: 15/main: user db 127.0.0.1(5432) idle`, `postgres: autovacuum worker db`).
fn serves_database(title: &str, database: &str) -> bool {
    title
        .split(|c: char| c.is_whitespace() || c == '\0')
        .any(|word| word == database)
}

/// (utime + stime in ticks, VmRSS in KiB).
fn read_pid(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = parse_stat_ticks(&stat)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Some((ticks, rss))
}

/// Fields 14 and 15 of /proc/PID/stat, counted after the `(comm)` field, which may hold spaces.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 2..];
    let mut fields = after.split(' ');
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_survive_a_command_name_with_spaces_and_parens() {
        let stat = "4242 (tokio (rt) 1) S 1 4242 4242 0 -1 4194560 500 0 0 0 123 45 0 0 20 0 9 0 1000 1000000 300 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(168));
    }

    #[test]
    fn watch_specs() {
        let (label, t) = parse_watch("worker=12,13").unwrap();
        assert_eq!(label, "worker");
        assert!(matches!(t, Target::Pids(p) if p == [12, 13]));
        assert!(
            matches!(parse_watch("pg=comm:postgres").unwrap().1, Target::Comm(n) if n == "postgres")
        );
        assert!(parse_watch("nolabel").is_err());
        assert!(matches!(parse_watch("d=db:x").unwrap().1, Target::Database(n) if n == "x"));
    }

    #[test]
    fn a_database_matches_its_own_backends_only() {
        let backend = "postgres: 15/main: postgres ingest_growth_1000000 127.0.0.1(5432) idle";
        assert!(serves_database(backend, "ingest_growth_1000000"));
        assert!(!serves_database(backend, "ingest_growth_100000"));
        assert!(!serves_database(
            "postgres: 15/main: postgres ingest_growth_10000000 127.0.0.1(1) idle",
            "ingest_growth_1000000"
        ));
        assert!(serves_database(
            "postgres: 15/main: autovacuum worker ingest_growth_1000000",
            "ingest_growth_1000000"
        ));
    }
}
