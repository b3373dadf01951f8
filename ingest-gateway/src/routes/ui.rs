//! The pages for people: `/docs` (Swagger UI over `/openapi.json`) and `/console` (search,
//! messages, charts). Static files compiled into the binary, so the gateway needs nothing beside
//! it and no page reaches a CDN; the third-party ones are vendored by `scripts/vendor-ui.sh`.
//!
//! They carry no data: every number and message on them comes from the read API, whose requests
//! carry the read token the pages ask for (`assets/token.js`). So they are served without a
//! token, and they are not in the OpenAPI document, which describes the API, not its pages.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// Only this origin may provide scripts, styles, images and connections, and no page may frame
/// these (so a token typed into one cannot be phished by an overlay). Swagger UI's icons are
/// `data:` images in its stylesheet.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

/// How long a browser may keep a file without asking again.
#[derive(Clone, Copy)]
enum Caching {
    /// Our own files: kept, but revalidated on every use (a new release shows at once; an
    /// unchanged file costs a 304).
    Revalidate,
    /// Vendored files change only with their pinned version; a day without asking is fine.
    Day,
}

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    caching: Caching,
}

macro_rules! asset {
    ($name:literal, $file:literal, $type:expr, $caching:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!("../../assets/", $file)),
            caching: $caching,
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Every file under `/assets/`.
static ASSETS: [Asset; 9] = [
    asset!("token.js", "token.js", JS, Caching::Revalidate),
    asset!("ui.css", "ui.css", CSS, Caching::Revalidate),
    asset!("console.js", "console/console.js", JS, Caching::Revalidate),
    asset!("chart.js", "console/chart.js", JS, Caching::Revalidate),
    asset!("docs.js", "swagger/docs.js", JS, Caching::Revalidate),
    asset!(
        "swagger-ui-bundle.js",
        "vendor/swagger-ui/swagger-ui-bundle.js",
        JS,
        Caching::Day
    ),
    asset!(
        "swagger-ui.css",
        "vendor/swagger-ui/swagger-ui.css",
        CSS,
        Caching::Day
    ),
    asset!(
        "swagger-ui.LICENSE",
        "vendor/swagger-ui/LICENSE",
        TEXT,
        Caching::Day
    ),
    asset!(
        "swagger-ui-bundle.js.LICENSE.txt",
        "vendor/swagger-ui/swagger-ui-bundle.js.LICENSE.txt",
        TEXT,
        Caching::Day
    ),
];

static CONSOLE: Asset = asset!("console", "console/index.html", HTML, Caching::Revalidate);
static DOCS: Asset = asset!("docs", "swagger/index.html", HTML, Caching::Revalidate);

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/console",
            get(|h: HeaderMap| async move { serve(&CONSOLE, &h) }),
        )
        .route("/docs", get(|h: HeaderMap| async move { serve(&DOCS, &h) }))
        .route("/assets/{name}", get(asset))
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => serve(asset, &headers),
        None => ApiError::NotFound.into_response(),
    }
}

/// A strong ETag per file: its SHA-256, computed once.
fn etag(asset: &Asset) -> &'static HeaderValue {
    static TAGS: OnceLock<Vec<(&'static str, HeaderValue)>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .chain([&CONSOLE, &DOCS])
            .map(|a| {
                let digest = Sha256::digest(a.bytes);
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                let tag = HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is ASCII");
                (a.name, tag)
            })
            .collect()
    });
    &tags
        .iter()
        .find(|(name, _)| *name == asset.name)
        .expect("every asset is tagged")
        .1
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let etag = etag(asset);
    let unchanged = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.bytes,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag.clone());
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(match asset.caching {
            Caching::Revalidate => "no-cache",
            Caching::Day => "public, max-age=86400",
        }),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_files_non_empty() {
        let mut names: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
        names.extend([CONSOLE.name, DOCS.name]);
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count);
        assert!(ASSETS.iter().all(|a| !a.bytes.is_empty()));
    }
}
