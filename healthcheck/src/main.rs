//! `ingest-healthcheck [HOST:PORT [PATH]]`: exit 0 when a local health endpoint answers 2xx.
//!
//! The Docker `HEALTHCHECK` of the runtime image. That image is distroless: no shell, no curl, so
//! the probe is a binary of its own. It has no dependencies beyond std, so it adds a few hundred
//! kilobytes to the image and nothing to the build, and it lives outside the two services so
//! their `main`s stay free of probe plumbing.
//!
//! Without arguments it probes `/health/ready` on the gateway's port, or, when nothing listens
//! there, on the worker's (ports from `GATEWAY_ADDR` / `WORKER_ADDR`, default 8000 / 8001). One
//! image runs either binary, and only one of them listens in a container, so the image's default
//! `HEALTHCHECK` is right for both without an override (which on a distroless image could not be
//! a shell command anyway). Exit 1 on anything else, including no answer within the timeout.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(3);
const DEFAULT_PATH: &str = "/health/ready";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let targets = match args.next() {
        Some(addr) => vec![addr],
        None => default_targets(|name| std::env::var(name).ok()),
    };
    let path = args.next().unwrap_or_else(|| DEFAULT_PATH.into());
    match check(&targets, &path) {
        Ok((_, status)) if (200..300).contains(&status) => ExitCode::SUCCESS,
        Ok((addr, status)) => {
            eprintln!("{addr}{path}: HTTP {status}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("{}{path}: {error}", targets.join(" | "));
            ExitCode::FAILURE
        }
    }
}

/// Loopback on the port of `GATEWAY_ADDR`, then of `WORKER_ADDR`.
fn default_targets(var: impl Fn(&str) -> Option<String>) -> Vec<String> {
    [("GATEWAY_ADDR", 8000u16), ("WORKER_ADDR", 8001)]
        .into_iter()
        .map(|(name, default)| {
            let port = var(name)
                .and_then(|addr| addr.trim().rsplit(':').next()?.parse().ok())
                .unwrap_or(default);
            format!("127.0.0.1:{port}")
        })
        .collect()
}

/// The status of the first target that accepts a connection. A refused connection moves on to
/// the next target; any other failure (a timeout: a process that listens but hangs) is final.
fn check(targets: &[String], path: &str) -> std::io::Result<(String, u16)> {
    let mut last = std::io::Error::new(ErrorKind::InvalidInput, "no target");
    for addr in targets {
        match probe(addr, path) {
            Ok(status) => return Ok((addr.clone(), status)),
            Err(error) if error.kind() == ErrorKind::ConnectionRefused => last = error,
            Err(error) => return Err(error),
        }
    }
    Err(last)
}

fn probe(addr: &str, path: &str) -> std::io::Result<u16> {
    let target: SocketAddr = addr.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address resolved")
    })?;
    let mut stream = TcpStream::connect_timeout(&target, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    // HTTP/1.0 with Connection: close: the server ends the body by closing, so no chunked
    // decoding is needed and only the status line matters.
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < head.len() {
        let n = stream.read(&mut head[len..])?;
        if n == 0 {
            break;
        }
        len += n;
        if head[..len].contains(&b'\n') {
            break;
        }
    }
    parse_status(&head[..len])
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response"))
}

/// `HTTP/1.x NNN ...` -> NNN.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(response: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            // The whole request head first: closing with unread bytes sends a reset, which the
            // client may read instead of the answer.
            let (mut head, mut buf) = (Vec::new(), [0u8; 1024]);
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = conn.write_all(response.as_bytes());
        });
        addr
    }

    #[test]
    fn reads_the_status_of_a_real_answer() {
        let ok = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}");
        assert_eq!(probe(&ok, "/health/ready").unwrap(), 200);
        let down = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert_eq!(probe(&down, "/health/ready").unwrap(), 503);
    }

    #[test]
    fn without_arguments_it_finds_whichever_binary_listens() {
        let refused = format!("127.0.0.1:{}", free_port());
        let worker = serve_once("HTTP/1.1 200 OK\r\n\r\n");
        let (addr, status) = check(&[refused.clone(), worker.clone()], "/health/ready").unwrap();
        assert_eq!((addr, status), (worker, 200));
        assert!(check(&[refused], "/").is_err());

        let env = |name: &str| (name == "WORKER_ADDR").then(|| "0.0.0.0:9101".to_owned());
        assert_eq!(default_targets(env), ["127.0.0.1:8000", "127.0.0.1:9101"]);
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn nothing_listening_is_an_error() {
        assert!(probe(&format!("127.0.0.1:{}", free_port()), "/").is_err());
        assert_eq!(parse_status(b"garbage"), None);
    }
}
