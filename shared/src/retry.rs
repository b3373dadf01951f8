//! Waiting out an outage: the one retry schedule every loop that waits for NATS or Postgres
//! uses, and its cancellation.
//!
//! The policy: the first retry after [`FIRST_DELAY`], each later one after twice the previous
//! delay up to [`MAX_DELAY`], each delay plus a random part of up to itself, never giving up.
//! - A short first delay, because most failures are blips (a restart, a leader election) that
//!   are over before the second attempt.
//! - Doubling, so a long outage costs a few attempts a minute rather than ten a second.
//! - The cap, so a service that comes back is noticed within seconds.
//! - The random part, so the many workers and gateways that lost the same server do not all
//!   come back to it at the same instant.
//! - No limit on attempts: a service runs until it is stopped, and stopping is what the
//!   [`CancellationToken`] is for; every wait here ends when it fires.
//!
//! [`until_ok`] is the whole loop for an attempt that needs nothing between tries. A loop that
//! does more between tries (the worker's batch store keeps its messages from being redelivered)
//! takes its delays from a [`Backoff`] and waits with [`Backoff::sleep`].

use std::future::Future;
use std::time::Duration;

use backon::BackoffBuilder;
use tokio_util::sync::CancellationToken;

pub const FIRST_DELAY: Duration = Duration::from_millis(100);
pub const MAX_DELAY: Duration = Duration::from_secs(5);
const FACTOR: f32 = 2.0;

/// The cancellation token fired while waiting to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

/// The delays of one run of attempts; start a new one after a success.
#[derive(Debug)]
pub struct Backoff {
    delays: backon::ExponentialBackoff,
    cap: Option<Duration>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    pub fn new() -> Self {
        let delays = backon::ExponentialBuilder::default()
            .with_min_delay(FIRST_DELAY)
            .with_factor(FACTOR)
            .with_max_delay(MAX_DELAY)
            .with_jitter()
            .without_max_times()
            .build();
        Self { delays, cap: None }
    }

    /// The same schedule with no delay longer than `cap`, for a loop whose normal period is
    /// shorter than the schedule's longest delay.
    pub fn at_most(cap: Duration) -> Self {
        Self {
            cap: Some(cap),
            ..Self::new()
        }
    }

    /// How long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        // Without a limit on attempts the schedule never ends; the fallback only satisfies the
        // type.
        let delay = self.delays.next().unwrap_or(MAX_DELAY);
        self.cap.map_or(delay, |cap| delay.min(cap))
    }

    /// Sleeps `delay`, or less when `cancel` fires first.
    pub async fn sleep(delay: Duration, cancel: &CancellationToken) -> Result<(), Cancelled> {
        tokio::select! {
            () = cancel.cancelled() => Err(Cancelled),
            () = tokio::time::sleep(delay) => Ok(()),
        }
    }
}

/// Runs `attempt` until it succeeds, waiting the schedule of `backoff` between attempts;
/// `on_failure` hears of each failure and the wait that follows it (to log it, with the wait as
/// `retry_in_ms`). `None` when `cancel` fires during a wait.
pub async fn until_ok<T, E, Fut>(
    mut backoff: Backoff,
    cancel: &CancellationToken,
    mut attempt: impl FnMut() -> Fut,
    mut on_failure: impl FnMut(&E, Duration),
) -> Option<T>
where
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        match attempt().await {
            Ok(value) => return Some(value),
            Err(error) => {
                let delay = backoff.next_delay();
                on_failure(&error, delay);
                Backoff::sleep(delay, cancel).await.ok()?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_plus_jitter_and_never_end() {
        let mut backoff = Backoff::new();
        let first = backoff.next_delay();
        assert!(
            first >= FIRST_DELAY && first <= 2 * FIRST_DELAY,
            "{first:?}"
        );
        let later: Vec<Duration> = (0..100).map(|_| backoff.next_delay()).collect();
        assert!(later.iter().all(|d| *d <= 2 * MAX_DELAY));
        assert!(later[50..].iter().all(|d| *d >= MAX_DELAY));
    }

    #[test]
    fn a_cap_bounds_every_delay() {
        let cap = Duration::from_millis(300);
        let mut backoff = Backoff::at_most(cap);
        assert!((0..20).all(|_| backoff.next_delay() <= cap));
    }

    #[tokio::test]
    async fn cancelling_ends_the_retries() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let result: Option<()> = until_ok(
            Backoff::new(),
            &cancel,
            || async { Err::<(), _>("down") },
            |_, _| {},
        )
        .await;
        assert_eq!(result, None);
    }

    #[tokio::test]
    async fn a_success_after_failures_is_returned() {
        let cancel = CancellationToken::new();
        let mut failures = 2;
        let mut heard = 0;
        let result = until_ok(
            Backoff::at_most(Duration::from_millis(1)),
            &cancel,
            || {
                let fail = failures > 0;
                failures -= 1;
                async move { if fail { Err("down") } else { Ok(7) } }
            },
            |_, _| heard += 1,
        )
        .await;
        assert_eq!((result, heard), (Some(7), 2));
    }
}
