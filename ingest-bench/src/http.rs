//! The HTTP load: one keep-alive HTTP/1.1 connection per simulated sender, requests written as
//! pre-rendered bytes and responses parsed with httparse. Leaner than any client library, so the
//! generator leaves as much of this 2-core box as possible to the system under test.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stats;

/// A request exactly as it goes on the wire.
pub fn render_post(host: &str, path: &str, body: &[u8], signature: &str) -> Bytes {
    let mut wire = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nX-Signature: {signature}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    wire.extend_from_slice(body);
    Bytes::from(wire)
}

pub fn render_get(host: &str, path: &str) -> Bytes {
    Bytes::from(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"))
}

struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: BytesMut,
}

/// A status code, or 0 when the connection failed.
pub type Status = u16;

impl Conn {
    async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    async fn send(&mut self, wire: &[u8]) -> Status {
        match self.try_send(wire).await {
            Ok(status) => status,
            Err(_) => {
                // The next request opens a fresh connection, as a real sender would.
                self.stream = None;
                self.buf.clear();
                0
            }
        }
    }

    async fn try_send(&mut self, wire: &[u8]) -> std::io::Result<Status> {
        if self.stream.is_none() {
            self.stream = Some(Self::connect(self.addr).await?);
        }
        let stream = self.stream.as_mut().expect("just set");
        stream.write_all(wire).await?;
        loop {
            if let Some((status, len, close)) = parse_response(&self.buf)? {
                self.buf.advance(len);
                if close {
                    self.stream = None;
                    self.buf.clear();
                }
                return Ok(status);
            }
            if stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

/// (status, bytes of the whole response, server closes) once a full response is buffered.
fn parse_response(buf: &[u8]) -> std::io::Result<Option<(Status, usize, bool)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
    };
    let mut length = None;
    let mut close = false;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = h.value.eq_ignore_ascii_case(b"close");
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "chunked responses are not expected from the gateway",
            ));
        }
    }
    let length = length.unwrap_or(0);
    let status = response.code.unwrap_or(0);
    Ok((buf.len() >= head + length).then_some((status, head + length, close)))
}

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Each connection sends its next request as soon as the previous answer arrived.
    Closed,
    /// Requests are due at a fixed rate whatever the answers do.
    Open { rate: f64 },
}

pub struct Outcome {
    pub latency: Histogram<u64>,
    pub statuses: BTreeMap<Status, u64>,
    pub elapsed: Duration,
    /// Per request sent, in index order: (index into `order`, status, when it was sent, i.e.
    /// its intended time in open loop, from the start).
    pub sent: Vec<(usize, Status, Duration)>,
    pub started_unix_us: i64,
}

/// Sends `order.len()` requests (`wires[order[i]]`) over `connections` connections, stopping
/// early at `max_duration`. Every connection is open before the clock starts.
pub async fn drive(
    addr: SocketAddr,
    wires: Arc<Vec<Bytes>>,
    order: Arc<Vec<u32>>,
    connections: usize,
    mode: Mode,
    max_duration: Option<Duration>,
) -> anyhow::Result<Outcome> {
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(Conn {
            addr,
            stream: Some(Conn::connect(addr).await?),
            buf: BytesMut::with_capacity(4096),
        });
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let started_unix_us = chrono::Utc::now().timestamp_micros();
    let deadline = max_duration.map(|d| started + d);
    let mut tasks = Vec::with_capacity(connections);
    for mut conn in conns {
        let (wires, order, next) = (wires.clone(), order.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latency = stats::histogram();
            let mut sent = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= order.len() {
                    break;
                }
                let due = match mode {
                    Mode::Closed => Instant::now(),
                    Mode::Open { rate } => {
                        let due = started + stats::intended_offset(i as u64, rate);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                };
                if deadline.is_some_and(|d| due >= d) {
                    break;
                }
                let status = conn.send(&wires[order[i] as usize]).await;
                stats::record(&mut latency, due.elapsed());
                sent.push((i, status, due - started));
            }
            (latency, sent)
        }));
    }
    let mut latency = stats::histogram();
    let mut by_index = Vec::new();
    for task in tasks {
        let (h, sent) = task.await?;
        latency.add(&h).expect("same bounds");
        by_index.extend(sent);
    }
    let elapsed = started.elapsed();
    by_index.sort_unstable_by_key(|(i, _, _)| *i);
    let mut statuses = BTreeMap::new();
    for (_, status, _) in &by_index {
        *statuses.entry(*status).or_insert(0) += 1;
    }
    Ok(Outcome {
        latency,
        statuses,
        elapsed,
        sent: by_index,
        started_unix_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_framed_by_content_length() {
        let one = b"HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n{\"status\":\"ok\"}";
        assert_eq!(parse_response(one).unwrap(), Some((200, one.len(), false)));
        assert_eq!(parse_response(&one[..one.len() - 1]).unwrap(), None);
        let mut two = one.to_vec();
        two.extend_from_slice(b"HTTP/1.1 503 Service Unavailable\r\n");
        assert_eq!(parse_response(&two).unwrap(), Some((200, one.len(), false)));
        let closing =
            b"HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            parse_response(closing).unwrap(),
            Some((401, closing.len(), true))
        );
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }
}
