//! The client's address: the TCP peer, or, when the peer is a trusted proxy
//! (`TRUSTED_PROXIES`), the nearest address in `X-Forwarded-For` that is not one. Walked from
//! the right: every proxy appends the address it saw, so the entries left of the first
//! untrusted one are whatever the client chose to send.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

/// The address a request is judged by, in the request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

pub async fn layer(
    State(trusted): State<Arc<Vec<IpNet>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(peer) = peer {
        let forwarded = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        let client = resolve(peer, &forwarded, &trusted);
        request.extensions_mut().insert(ClientAddr(client));
    }
    next.run(request).await
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

fn resolve(peer: IpAddr, forwarded: &str, trusted: &[IpNet]) -> IpAddr {
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut client = peer;
    for entry in forwarded.rsplit(',') {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else {
            // An entry that is not an address: nothing left of it can be relied on.
            break;
        };
        client = ip;
        if !is_trusted(ip, trusted) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            resolve(ip("192.0.2.1"), "198.51.100.7", &trusted),
            ip("192.0.2.1")
        );
        assert_eq!(
            resolve(ip("10.0.0.1"), "198.51.100.7", &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            resolve(
                ip("10.0.0.1"),
                "203.0.113.9, 198.51.100.7, 10.0.0.2",
                &trusted
            ),
            ip("198.51.100.7")
        );
        assert_eq!(resolve(ip("10.0.0.1"), "", &trusted), ip("10.0.0.1"));
        assert_eq!(resolve(ip("10.0.0.1"), "junk", &trusted), ip("10.0.0.1"));
    }
}
