//! The stylesheet and the script, compiled into the binary (no CDN: clusters are often
//! air-gapped). Served under a name that carries a digest of the content, so they can be cached
//! for a long time and a new version is fetched at once.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// The stylesheet.
pub const CSS: &str = include_str!("assets/dashboard.css");
/// The script (live updates, countdowns, copy buttons).
pub const JS: &str = include_str!("assets/dashboard.js");

fn short_digest(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

static CSS_NAME: LazyLock<String> = LazyLock::new(|| format!("app-{}.css", short_digest(CSS)));
static JS_NAME: LazyLock<String> = LazyLock::new(|| format!("app-{}.js", short_digest(JS)));

/// The stylesheet's path.
pub fn css_path() -> String {
    format!("{}/assets/{}", super::BASE, *CSS_NAME)
}

/// The script's path.
pub fn js_path() -> String {
    format!("{}/assets/{}", super::BASE, *JS_NAME)
}

/// `GET /dashboard/assets/{name}`: public (the sign-in page needs the stylesheet; nothing in
/// them is private).
pub async fn serve(Path(name): Path<String>) -> Response {
    let (body, kind) = if name == *CSS_NAME {
        (CSS, "text/css; charset=utf-8")
    } else if name == *JS_NAME {
        (JS, "text/javascript; charset=utf-8")
    } else {
        return (StatusCode::NOT_FOUND, "no such asset\n").into_response();
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
