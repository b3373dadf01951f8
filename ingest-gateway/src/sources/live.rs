//! The set of sources in use, swapped whole on reload (`SIGHUP`, or a change of the file seen by
//! polling), so a request runs to its end with the set it started with and none is refused
//! while the swap happens. An invalid new file keeps the set in use.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::Sources;
use crate::Config;
use crate::metrics;

/// How often the file is looked at for a change.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

pub struct LiveSources {
    current: ArcSwap<Sources>,
    config: Config,
}

impl LiveSources {
    pub fn new(config: &Config) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::new(config.sources.clone()),
            config: config.clone(),
        })
    }

    pub fn load(&self) -> Arc<Sources> {
        self.current.load_full()
    }

    /// Reads the file again; true when the new set is in use.
    pub fn reload(&self) -> bool {
        let current = self.current.load();
        match Sources::load(&self.config, Some(&current)) {
            Ok(sources) => {
                metrics::register_sources(&sources);
                self.current.store(Arc::new(sources));
                metrics::sources_reload("ok");
                tracing::info!("sources reloaded");
                true
            }
            Err(error) => {
                metrics::sources_reload("invalid");
                tracing::warn!(%error, "sources file invalid; the sources in use are kept");
                false
            }
        }
    }

    /// Reloads on `SIGHUP` and when the file's content changes, until `cancel`.
    pub fn watch(self: Arc<Self>, cancel: CancellationToken) {
        let Some(path) = self.config.sources_file.clone() else {
            return;
        };
        // Installed before the gateway serves, so a SIGHUP from then on is never the default
        // action (which ends the process).
        let mut hangup = signal_hangup();
        tokio::spawn(async move {
            let mut seen = std::fs::read(&path).ok();
            let mut tick = tokio::time::interval(POLL_INTERVAL);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    Some(()) = hangup.recv() => {
                        seen = std::fs::read(&path).ok();
                        self.reload();
                    }
                    _ = tick.tick() => {
                        let now = std::fs::read(&path).ok();
                        if now != seen {
                            seen = now;
                            self.reload();
                        }
                    }
                }
            }
        });
    }
}

/// A stream of `SIGHUP`s; closed when the handler cannot be installed.
fn signal_hangup() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    if let Ok(mut signal) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tokio::spawn(async move {
            while signal.recv().await.is_some() {
                if tx.send(()).await.is_err() {
                    return;
                }
            }
        });
    }
    rx
}
