//! Who may read the dashboard: a bearer token read from a file (a mounted Secret), presented as
//! `Authorization: Bearer …` (scripts, the JSON endpoints) or through the sign-in form, which
//! sets an HttpOnly, SameSite=Strict cookie holding the token's SHA-256 (never the token). No
//! token configured means no dashboard: there is no open mode (decision 182).

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Form, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{BASE, DashboardError};

/// The sign-in cookie's name.
pub const COOKIE: &str = "agr_dashboard";
/// The shortest token accepted.
pub const MIN_TOKEN_CHARS: usize = 16;
/// How long a sign-in lasts (seconds).
pub const COOKIE_MAX_AGE_SECONDS: u64 = 12 * 3600;

/// The access check shared by every dashboard route. Cheap to clone.
#[derive(Clone)]
pub struct Access {
    inner: Arc<Inner>,
}

struct Inner {
    digest: [u8; 32],
    secure_cookie: bool,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Equality that does not stop at the first difference.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Access {
    /// Access with `token` (surrounding whitespace ignored).
    pub fn with_token(token: &str, secure_cookie: bool) -> Result<Access, DashboardError> {
        let token = token.trim();
        if token.chars().count() < MIN_TOKEN_CHARS {
            return Err(DashboardError::TokenTooShort("(given)".into()));
        }
        Ok(Access {
            inner: Arc::new(Inner {
                digest: sha256(token.as_bytes()),
                secure_cookie,
            }),
        })
    }

    /// Access with the token held in `path`.
    pub fn from_file(path: &Path, secure_cookie: bool) -> Result<Access, DashboardError> {
        let text = std::fs::read_to_string(path).map_err(|source| DashboardError::TokenFile {
            path: path.display().to_string(),
            source,
        })?;
        Access::with_token(&text, secure_cookie)
            .map_err(|_| DashboardError::TokenTooShort(path.display().to_string()))
    }

    /// True when the request carries the token (header) or the sign-in cookie.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        if let Some(value) = headers.get(header::AUTHORIZATION)
            && let Ok(text) = value.to_str()
            && let Some(token) = text
                .strip_prefix("Bearer ")
                .or_else(|| text.strip_prefix("bearer "))
        {
            return same(&sha256(token.trim().as_bytes()), &self.inner.digest);
        }
        cookie(headers, COOKIE)
            .and_then(|v| unhex(&v))
            .is_some_and(|d| same(&d, &self.inner.digest))
    }

    fn accepts_token(&self, token: &str) -> bool {
        same(&sha256(token.trim().as_bytes()), &self.inner.digest)
    }

    fn cookie(&self, value: &str, max_age: u64) -> String {
        format!(
            "{COOKIE}={value}; Path={BASE}; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
            if self.inner.secure_cookie {
                "; Secure"
            } else {
                ""
            }
        )
    }
}

/// The value of cookie `name` in the request, if any.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// True when the client asked for JSON (or is not a browser): it gets 401, not a redirect.
fn wants_json(request: &Request) -> bool {
    let path = request.uri().path();
    if path.starts_with(&format!("{BASE}/api/")) || path == format!("{BASE}/live") {
        return true;
    }
    !request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// Middleware: lets the request through when it is signed in; otherwise 401 (JSON, scripts) or a
/// redirect to the sign-in page (browsers).
pub async fn require(State(access): State<Access>, request: Request, next: Next) -> Response {
    if access.allows(request.headers()) {
        return next.run(request).await;
    }
    if wants_json(&request) {
        let mut response = (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({
                "ok": false,
                "error": "a bearer token is required (Authorization: Bearer <token>)",
            })),
        )
            .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"autoguardrails-dashboard\""),
        );
        return super::layout::harden(response);
    }
    let next_path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| BASE.to_string());
    let target = format!(
        "{BASE}/login?next={}",
        form_urlencoded_component(&next_path)
    );
    super::layout::harden(Redirect::to(&target).into_response())
}

fn form_urlencoded_component(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Only local dashboard paths are followed after sign-in (no open redirect).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with(&format!("{BASE}/"))
                && !n.contains("//")
                && !n.contains('\\')
                && !n.contains("/login") =>
        {
            n.to_string()
        }
        _ => format!("{BASE}/"),
    }
}

/// `?next=` of the sign-in page.
#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// The sign-in form's fields.
#[derive(Deserialize)]
pub struct SignIn {
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// `GET /dashboard/login`.
pub async fn login_page(Query(q): Query<NextQuery>) -> Response {
    super::layout::html_response(super::layout::login(&safe_next(q.next.as_deref()), None))
}

/// `POST /dashboard/login`: a right token sets the cookie and goes on to `next`.
pub async fn login(State(access): State<Access>, Form(form): Form<SignIn>) -> Response {
    let next = safe_next(form.next.as_deref());
    if !access.accepts_token(&form.token) {
        let mut response = super::layout::html_response(super::layout::login(
            &next,
            Some("That token is not valid."),
        ));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return response;
    }
    let mut response = Redirect::to(&next).into_response();
    if let Ok(value) = HeaderValue::from_str(&access.cookie(
        &hex(&sha256(form.token.trim().as_bytes())),
        COOKIE_MAX_AGE_SECONDS,
    )) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    super::layout::harden(response)
}

/// `POST /dashboard/logout`: clears the cookie.
pub async fn logout(State(access): State<Access>) -> Response {
    let mut response = Redirect::to(&format!("{BASE}/login")).into_response();
    if let Ok(value) = HeaderValue::from_str(&access.cookie("", 0)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    super::layout::harden(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_cookie_are_checked_and_short_tokens_refused() {
        assert!(Access::with_token("short", false).is_err());
        let access = Access::with_token(" a-long-enough-token \n", false).unwrap();
        let mut headers = HeaderMap::new();
        assert!(!access.allows(&headers));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer wrong-token-xxxxxx"),
        );
        assert!(!access.allows(&headers));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer a-long-enough-token"),
        );
        assert!(access.allows(&headers));
        let mut headers = HeaderMap::new();
        let cookie = format!("other=1; {COOKIE}={}", hex(&sha256(b"a-long-enough-token")));
        headers.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        assert!(access.allows(&headers));
        headers.insert(header::COOKIE, HeaderValue::from_static("agr_dashboard=zz"));
        assert!(!access.allows(&headers));
    }

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(
            safe_next(Some("/dashboard/policies")),
            "/dashboard/policies"
        );
        assert_eq!(safe_next(Some("https://evil.example/")), "/dashboard/");
        assert_eq!(safe_next(Some("/dashboard//evil.example")), "/dashboard/");
        assert_eq!(safe_next(Some("/dashboard/login")), "/dashboard/");
        assert_eq!(safe_next(None), "/dashboard/");
    }
}
