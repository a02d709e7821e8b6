//! The page frame every dashboard page shares (navigation, live-update hooks, skip link, sign
//! out), the sign-in page, and the response headers (CSP with no inline script or style,
//! no caching of data, no framing). Escaping is maud's: every interpolated value is escaped
//! (decision 181).

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::BASE;
use super::assets;

/// The Content-Security-Policy of every dashboard answer: only our own script and stylesheet,
/// no inline script or style, no framing, forms only to us.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// One navigation entry.
#[derive(Clone, Debug)]
pub struct NavItem {
    /// Its label.
    pub label: String,
    /// Where it goes (a dashboard path, or another dashboard's address).
    pub href: String,
    /// The key [`Frame::active`] names.
    pub key: &'static str,
}

/// What frames a page.
#[derive(Clone, Debug)]
pub struct Frame {
    /// The navigation.
    pub nav: Vec<NavItem>,
    /// The key of the current page.
    pub active: &'static str,
    /// The page title.
    pub title: String,
    /// The Server-Sent Events address when the page updates live.
    pub live: Option<String>,
    /// Poll every this many seconds when events are not available.
    pub poll_seconds: Option<u32>,
    /// The product part serving it (`controller`, `gate`).
    pub part: &'static str,
}

/// Adds the security headers every dashboard answer carries.
pub fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    set_security_headers(headers);
    response
}

fn set_security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// An HTML answer with the security headers.
pub fn html_response(markup: Markup) -> Response {
    let mut response = markup.into_string().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    harden(response)
}

/// A JSON answer with the security headers.
pub fn json_response(value: &serde_json::Value) -> Response {
    harden(axum::Json(value).into_response())
}

/// True when the script asked for the inside of `<main>` only.
pub fn wants_fragment(headers: &HeaderMap) -> bool {
    headers
        .get("x-dashboard-fragment")
        .is_some_and(|v| v.as_bytes() == b"main")
}

/// The whole page, or only the inside of `<main>` when the script asked for it.
pub fn page(frame: &Frame, headers: &HeaderMap, content: Markup) -> Response {
    if wants_fragment(headers) {
        return html_response(content);
    }
    html_response(document(frame, content))
}

/// The whole page around `content`.
pub fn document(frame: &Frame, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (frame.title) " · AutoGuardRails" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(assets::css_path());
                @if let Some(seconds) = frame.poll_seconds {
                    noscript { meta http-equiv="refresh" content=(seconds); }
                }
                script src=(assets::js_path()) defer {}
            }
            body data-live=[frame.live.as_deref()] data-poll=[frame.poll_seconds] data-part=(frame.part) {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    p.brand { "AutoGuardRails" }
                    nav aria-label="Dashboard pages" {
                        ul {
                            @for item in &frame.nav {
                                li {
                                    @if item.key == frame.active {
                                        a href=(item.href) aria-current="page" { (item.label) }
                                    } @else {
                                        a href=(item.href) { (item.label) }
                                    }
                                }
                            }
                        }
                    }
                    p.live id="live-status" role="status" aria-live="polite" {
                        @if frame.live.is_some() { "Live updates need JavaScript; reload to refresh" }
                        @else if let Some(s) = frame.poll_seconds { "Refreshes every " (s) " s" }
                    }
                    form.signout method="post" action={ (BASE) "/logout" } {
                        button type="submit" { "Sign out" }
                    }
                }
                main id="main" tabindex="-1" { (content) }
            }
        }
    }
}

/// The sign-in page.
pub fn login(next: &str, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { "Sign in · AutoGuardRails" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(assets::css_path());
            }
            body {
                main id="main" {
                    form.login method="post" action={ (BASE) "/login" } {
                        h1 { "AutoGuardRails dashboard" }
                        p.muted { "Read-only. Paste the dashboard token (the Secret named in docs/dashboard.md)." }
                        @if let Some(e) = error { p.error role="alert" { (e) } }
                        label for="token" { "Token"
                            input id="token" name="token" type="password" autocomplete="current-password" required;
                        }
                        input type="hidden" name="next" value=(next);
                        button type="submit" { "Sign in" }
                    }
                }
            }
        }
    }
}

/// A badge class for a state word.
pub fn tone(word: &str) -> &'static str {
    match word {
        "Active" | "BLOCK" | "Failed" | "False" | "Refused" | "critical" | "high" | "page" => {
            "badge b-bad"
        }
        "PendingApproval" | "Releasing" | "DELAY" | "WARN" | "medium" | "ticket" | "Unknown" => {
            "badge b-warn"
        }
        "DryRun" | "Manual" | "Auto" => "badge b-info",
        "Released" | "ALLOW" | "True" | "Accepted" | "low" | "none" => "badge b-ok",
        _ => "badge b-idle",
    }
}

/// A badge.
pub fn badge(word: &str) -> Markup {
    html! { span class=(tone(word)) { (word) } }
}
