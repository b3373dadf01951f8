//! `ingest-healthcheck [HOST:PORT] [PATH]` (defaults `127.0.0.1:8000` and `/health/ready`).
//!
//! The Docker `HEALTHCHECK` of the runtime image. That image is distroless: no shell, no curl, so
//! the probe is a binary of its own. It has no dependencies beyond std, so it adds a few hundred
//! kilobytes to the image and nothing to the build, and it lives outside the two services so
//! their `main`s stay free of probe plumbing. Exit 0 on a 2xx answer, 1 on anything else,
//! including no answer within the timeout (Docker counts that as a failed check).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8000".into());
    let path = args.next().unwrap_or_else(|| "/health/ready".into());
    match probe(&addr, &path) {
        Ok(status) if (200..300).contains(&status) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("{addr}{path}: HTTP {status}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("{addr}{path}: {error}");
            ExitCode::FAILURE
        }
    }
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
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
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
    fn nothing_listening_is_an_error() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(probe(&format!("127.0.0.1:{port}"), "/").is_err());
        assert_eq!(parse_status(b"garbage"), None);
    }
}
