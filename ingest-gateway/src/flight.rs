//! Single flight: one request at a time to a shared source, its answer shared by every caller
//! that asked before it was sent. Read-your-writes asks two sources this way: JetStream's
//! stream state (consistency.rs) and the primary's WAL position (replica.rs).
//!
//! A caller takes a ticket and waits for an answer to a ticket at least as high. The server
//! sends one request for every ticket handed out so far, so the request was sent after each of
//! those callers arrived: a caller that arrives while a request is in flight waits for the next.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy)]
struct Answer<T> {
    /// The highest ticket this answer serves.
    ticket: u64,
    /// `None`: the request failed.
    value: Option<T>,
}

pub struct Flights<T> {
    /// The last ticket handed out.
    tickets: AtomicU64,
    wake: Notify,
    answers: watch::Sender<Answer<T>>,
}

impl<T: Copy + Send + Sync> Flights<T> {
    pub fn new() -> Self {
        let (answers, _) = watch::channel(Answer {
            ticket: 0,
            value: None,
        });
        Self {
            tickets: AtomicU64::new(0),
            wake: Notify::new(),
            answers,
        }
    }

    /// The answer of a request sent after this call began; `None` when that request failed.
    pub async fn next(&self) -> Option<T> {
        let mut answers = self.answers.subscribe();
        let ticket = self.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        self.wake.notify_one();
        let answer = *answers.wait_for(|a| a.ticket >= ticket).await.ok()?;
        answer.value
    }

    /// For the server: waits until a caller holds a ticket no answer serves yet and returns the
    /// highest one; `None` once `cancel` fires. The request for it must be sent after this.
    pub async fn pending(&self, cancel: &CancellationToken) -> Option<u64> {
        loop {
            let ticket = self.tickets.load(Ordering::SeqCst);
            if ticket != self.answers.borrow().ticket {
                return Some(ticket);
            }
            // A caller that took its ticket after the load has left a permit: no lost wake-up.
            tokio::select! {
                () = cancel.cancelled() => return None,
                () = self.wake.notified() => {}
            }
        }
    }

    /// For the server: the answer to every ticket up to `ticket`.
    pub fn answer(&self, ticket: u64, value: Option<T>) {
        self.answers.send_replace(Answer { ticket, value });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    use super::*;

    /// Callers that arrive while a request is in flight share the next request, not that one.
    #[tokio::test]
    async fn callers_share_one_request_sent_after_they_arrived() {
        let flights = Arc::new(Flights::<u32>::new());
        let sent = Arc::new(AtomicU32::new(0));
        let cancel = CancellationToken::new();
        let server = {
            let (flights, sent, cancel) = (flights.clone(), sent.clone(), cancel.clone());
            tokio::spawn(async move {
                while let Some(ticket) = flights.pending(&cancel).await {
                    // The value is the number of requests sent so far, this one included.
                    let value = sent.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    flights.answer(ticket, Some(value));
                }
            })
        };
        assert_eq!(flights.next().await, Some(1));
        let first = tokio::spawn({
            let flights = flights.clone();
            async move { flights.next().await }
        });
        // Wait until the first request is in flight, then ask twice more during it.
        while sent.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        let (a, b) = tokio::join!(flights.next(), flights.next());
        assert_eq!(first.await.unwrap(), Some(2));
        assert_eq!((a, b), (Some(3), Some(3)), "one request serves both");
        assert_eq!(sent.load(Ordering::SeqCst), 3);
        cancel.cancel();
        server.await.unwrap();
    }
}
