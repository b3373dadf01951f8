//! Who may read (`READ_TOKENS`) and who may administer (`ADMIN_TOKENS`): bearer tokens, the
//! contract's "Access". Health, metrics and the sender endpoints (which carry their own
//! signatures) are never behind a token.
//!
//! Only a SHA-256 digest of each configured token is kept, so a token never sits in memory in
//! the clear after start-up and cannot reach a log line, a panic message or a metric label.
//! Presented tokens are hashed the same way and compared to every configured digest in constant
//! time: neither the answer's timing nor which token matched tells an attacker anything.

use std::fmt;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// A set of accepted bearer tokens; several at once, so one can be rotated in before the old one
/// is removed.
#[derive(Clone, Default)]
pub struct Tokens(Vec<[u8; 32]>);

impl Tokens {
    /// A comma-separated list; blanks around and between the commas are ignored.
    pub fn from_list(list: &str) -> Self {
        Self(
            list.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(digest)
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    fn accepts(&self, presented: &str) -> bool {
        let presented = digest(presented);
        let mut matched = subtle::Choice::from(0);
        for token in &self.0 {
            matched |= token.ct_eq(&presented);
        }
        matched.into()
    }

    /// Whether the request carries `Authorization: Bearer <one of these tokens>`.
    fn admit(&self, request: &Request) -> bool {
        request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .is_some_and(|token| self.accepts(token))
    }
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tokens({} configured)", self.0.len())
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
/// (RFC 7235).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The read API, its document and its pages: open while `READ_TOKENS` is empty (as the older
/// API was), else only with one of its tokens.
pub async fn require_read(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let tokens = &state.config.read_tokens;
    if tokens.is_empty() || tokens.admit(&request) {
        next.run(request).await
    } else {
        ApiError::NotAuthenticated.into_response()
    }
}

/// `/admin/*`: absent (404, as for any unknown path) while `ADMIN_TOKENS` is empty, so an
/// installation that never set one exposes no administration at all.
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let tokens = &state.config.admin_tokens;
    if tokens.is_empty() {
        ApiError::NotFound.into_response()
    } else if tokens.admit(&request) {
        next.run(request).await
    } else {
        ApiError::NotAuthenticated.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_configured_token_is_accepted_and_nothing_else() {
        let tokens = Tokens::from_list(" old-token , new-token,,");
        assert_eq!(tokens.len(), 2);
        assert!(tokens.accepts("old-token"));
        assert!(tokens.accepts("new-token"));
        for wrong in ["", "old", "old-token ", "OLD-TOKEN", "new-token,old-token"] {
            assert!(!tokens.accepts(wrong), "{wrong:?}");
        }
        assert!(Tokens::from_list(" , ").is_empty());
    }

    #[test]
    fn only_the_bearer_scheme_carries_a_token() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn debug_shows_no_token() {
        let shown = format!("{:?}", Tokens::from_list("s3cr3t-token"));
        assert_eq!(shown, "Tokens(1 configured)");
    }
}
