//! The controller's dashboard: Quarantines, Policies, Signals and Analysis, read from the
//! caches the controller keeps anyway (no extra watch, no list per page view). A quarantine's
//! page reads its Events (and, for an ended one, the whole object) from the API server, with a
//! short timeout. Served on its own listener (`dashboard.addr`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use kube::api::{Api, ListParams};
use tokio::sync::watch;

use super::access::{self, Access};
use super::layout::{self, Frame, NavItem};
use super::live::{self, Changes};
use super::{BASE, analysis, views};
use crate::controller::crd::Quarantine;
use crate::controller::endpoints::recent::RecentSignals;
use crate::controller::reconcile::Stores;
use crate::principal::PrincipalSet;

/// How long a page waits for the API server (Events, an ended quarantine).
pub const API_TIMEOUT: Duration = Duration::from_secs(3);
/// At most this many Events are shown.
pub const MAX_EVENTS: usize = 50;

/// What the controller's dashboard reads.
pub struct ControllerDashboard {
    /// The caches.
    pub stores: Stores,
    /// Recent signal deliveries.
    pub recent: Arc<RecentSignals>,
    /// For Events and ended quarantines (none: those parts say so).
    pub client: Option<kube::Client>,
    /// The controller's protected principals.
    pub protected: PrincipalSet,
    /// The proposal shown on the Analysis page.
    pub proposal: Option<PathBuf>,
    /// The gate's dashboard, linked from the navigation.
    pub gate_url: Option<String>,
    /// The change counter of live updates.
    pub changes: Changes,
    /// Ends the live streams at shutdown.
    pub stop: watch::Receiver<bool>,
}

type Shared = Arc<ControllerDashboard>;

impl ControllerDashboard {
    fn frame(&self, active: &'static str, title: impl Into<String>, live: bool) -> Frame {
        let mut nav = vec![
            nav("Quarantines", "quarantines"),
            nav("Policies", "policies"),
            nav("Signals", "signals"),
            nav("Analysis", "analysis"),
        ];
        if let Some(url) = &self.gate_url {
            nav.push(NavItem {
                label: "Gate".into(),
                href: url.clone(),
                key: "gate",
            });
        }
        Frame {
            nav,
            active,
            title: title.into(),
            live: live.then(|| format!("{BASE}/live")),
            poll_seconds: Some(30),
            part: "controller",
        }
    }

    /// Keeps `changes` ticking on every cache change and signal delivery until `stop`.
    pub fn follow_changes(&self) -> impl Future<Output = ()> + Send + 'static {
        let cache_changes = self.stores.changes();
        let signals = tokio_stream_of(self.recent.changes());
        let changes = self.changes.clone();
        let stop = crate::controller::reconcile::wait_for_shutdown(self.stop.clone());
        async move {
            let both = futures::stream::select(cache_changes, signals);
            tokio::select! {
                () = changes.follow(both) => {}
                () = stop => {}
            }
        }
    }
}

fn tokio_stream_of(rx: watch::Receiver<u64>) -> impl futures::Stream<Item = ()> + Send {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    })
}

/// A navigation entry of this dashboard.
pub fn nav(label: &str, key: &'static str) -> NavItem {
    NavItem {
        label: label.to_string(),
        href: format!("{BASE}/{key}"),
        key,
    }
}

/// The routes (every one but sign-in and assets behind `access`).
pub fn router(state: Shared, access: Access) -> Router {
    let private = Router::new()
        .route(
            BASE,
            get(|| async { Redirect::to(&format!("{BASE}/quarantines")) }),
        )
        .route(
            &format!("{BASE}/"),
            get(|| async { Redirect::to(&format!("{BASE}/quarantines")) }),
        )
        .route(&format!("{BASE}/quarantines"), get(quarantines_html))
        .route(
            &format!("{BASE}/quarantines/{{namespace}}/{{name}}"),
            get(quarantine_html),
        )
        .route(&format!("{BASE}/policies"), get(policies_html))
        .route(&format!("{BASE}/signals"), get(signals_html))
        .route(&format!("{BASE}/analysis"), get(analysis_html))
        .route(&format!("{BASE}/api/quarantines"), get(quarantines_json))
        .route(
            &format!("{BASE}/api/quarantines/{{namespace}}/{{name}}"),
            get(quarantine_json),
        )
        .route(&format!("{BASE}/api/policies"), get(policies_json))
        .route(&format!("{BASE}/api/signals"), get(signals_json))
        .route(&format!("{BASE}/api/analysis"), get(analysis_json))
        .route(&format!("{BASE}/live"), get(live_stream))
        .with_state(state)
        .route_layer(middleware::from_fn_with_state(
            access.clone(),
            access::require,
        ));
    public(access).merge(private)
}

/// Sign-in, sign-out and the assets: the same on every dashboard.
pub fn public(access: Access) -> Router {
    Router::new()
        .route(
            &format!("{BASE}/login"),
            get(access::login_page).post(access::login),
        )
        .route(&format!("{BASE}/logout"), post(access::logout))
        .route(
            &format!("{BASE}/assets/{{name}}"),
            get(super::assets::serve),
        )
        .with_state(access)
}

fn list(state: &ControllerDashboard, filter: &views::Filter) -> views::QuarantineList {
    views::quarantine_list(
        &state.stores.quarantines(),
        &state.stores.ended().outlines(),
        filter,
    )
}

async fn quarantines_html(
    State(s): State<Shared>,
    Query(f): Query<views::Filter>,
    headers: HeaderMap,
) -> Response {
    let list = list(&s, &f);
    layout::page(
        &s.frame("quarantines", "Quarantines", true),
        &headers,
        views::quarantines_page(&list, &f, Timestamp::now()),
    )
}

async fn quarantines_json(State(s): State<Shared>, Query(f): Query<views::Filter>) -> Response {
    let list = list(&s, &f);
    layout::json_response(&serde_json::json!({"ok": true, "data": list}))
}

/// The quarantine (whole object when cached, else from the API server for an ended one) and its
/// Events.
async fn detail(
    s: &ControllerDashboard,
    namespace: &str,
    name: &str,
) -> Option<views::QuarantineDetail> {
    let cached = s.stores.quarantine(namespace, name)?;
    // An outline of an ended quarantine has no uid; a cached object always has one.
    let live = cached.metadata.uid.is_some();
    let (object, outline) = if live {
        ((*cached).clone(), false)
    } else {
        match fetch(s, namespace, name).await {
            Some(full) => (full, false),
            None => ((*cached).clone(), true),
        }
    };
    let events = events(s, namespace, name).await;
    Some(views::quarantine_detail(&object, outline, events))
}

async fn fetch(s: &ControllerDashboard, namespace: &str, name: &str) -> Option<Quarantine> {
    let client = s.client.clone()?;
    let api: Api<Quarantine> = Api::namespaced(client, namespace);
    match tokio::time::timeout(API_TIMEOUT, api.get_opt(name)).await {
        Ok(Ok(found)) => found,
        _ => None,
    }
}

async fn events(
    s: &ControllerDashboard,
    namespace: &str,
    name: &str,
) -> Result<Vec<views::EventView>, String> {
    let Some(client) = s.client.clone() else {
        return Err("no Kubernetes client".into());
    };
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client, namespace);
    let params = ListParams::default()
        .fields(&format!("regarding.kind=Quarantine,regarding.name={name}"))
        .limit(500);
    let list = match tokio::time::timeout(API_TIMEOUT, api.list(&params)).await {
        Ok(Ok(list)) => list,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("the API server did not answer in time".into()),
    };
    let mut out: Vec<views::EventView> = list
        .items
        .into_iter()
        .map(|e| views::EventView {
            at: e
                .series
                .as_ref()
                .map(|s| s.last_observed_time.0)
                .or(e.event_time.as_ref().map(|t| t.0))
                .or(e.deprecated_last_timestamp.as_ref().map(|t| t.0))
                .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0)),
            kind: e.type_.unwrap_or_else(|| "Normal".into()),
            reason: e.reason.unwrap_or_default(),
            note: e.note.unwrap_or_default(),
            count: e.series.as_ref().map_or(1, |s| s.count),
        })
        .collect();
    out.sort_by_key(|e| std::cmp::Reverse(e.at));
    out.truncate(MAX_EVENTS);
    Ok(out)
}

fn not_found(what: &str) -> Response {
    layout::harden(
        (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"ok": false, "error": format!("{what} not found")})),
        )
            .into_response(),
    )
}

async fn quarantine_html(
    State(s): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    match detail(&s, &namespace, &name).await {
        Some(d) => layout::page(
            &s.frame(
                "quarantines",
                format!("Quarantine {namespace}/{name}"),
                true,
            ),
            &headers,
            views::quarantine_page(&d, Timestamp::now()),
        ),
        None => {
            let mut r = layout::page(
                &s.frame("quarantines", "Not found", false),
                &headers,
                maud::html! { h1 { "Not found" } p { "No quarantine " (namespace) "/" (name) " in the watched namespaces." } },
            );
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}

async fn quarantine_json(
    State(s): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    match detail(&s, &namespace, &name).await {
        Some(d) => layout::json_response(&serde_json::json!({"ok": true, "data": d})),
        None => not_found("quarantine"),
    }
}

fn policy_rows(s: &ControllerDashboard) -> Vec<views::PolicyRow> {
    let mut rows: Vec<views::PolicyRow> = s
        .stores
        .policies()
        .iter()
        .map(|p| views::policy_row(p, &s.protected))
        .collect();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    rows
}

async fn policies_html(State(s): State<Shared>, headers: HeaderMap) -> Response {
    layout::page(
        &s.frame("policies", "Policies", true),
        &headers,
        views::policies_page(&policy_rows(&s)),
    )
}

async fn policies_json(State(s): State<Shared>) -> Response {
    layout::json_response(&serde_json::json!({"ok": true, "data": policy_rows(&s)}))
}

async fn signals_html(State(s): State<Shared>, headers: HeaderMap) -> Response {
    layout::page(
        &s.frame("signals", "Signals", true),
        &headers,
        views::signals_page(&s.recent.newest_first(), Timestamp::now()),
    )
}

async fn signals_json(State(s): State<Shared>) -> Response {
    layout::json_response(&serde_json::json!({"ok": true, "data": s.recent.newest_first()}))
}

/// The Analysis page of a dashboard with `proposal` configured (shared with the gate's).
pub fn analysis_content(
    proposal: Option<&std::path::Path>,
) -> Result<analysis::AnalysisView, String> {
    match proposal {
        None => Err("No proposal file is configured for this dashboard.".into()),
        Some(path) => analysis::load(path).map_err(|e| e.to_string()),
    }
}

async fn analysis_html(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let content = match analysis_content(s.proposal.as_deref()) {
        Ok(v) => analysis::page(&v),
        Err(e) => analysis::missing(&e),
    };
    layout::page(&s.frame("analysis", "Analysis", false), &headers, content)
}

/// `GET /dashboard/api/analysis` of a dashboard with `proposal` configured.
pub fn analysis_json_response(proposal: Option<&std::path::Path>) -> Response {
    match analysis_content(proposal) {
        Ok(v) => layout::json_response(&serde_json::json!({"ok": true, "data": v})),
        Err(e) => layout::harden(
            (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({"ok": false, "error": e})),
            )
                .into_response(),
        ),
    }
}

async fn analysis_json(State(s): State<Shared>) -> Response {
    analysis_json_response(s.proposal.as_deref())
}

async fn live_stream(State(s): State<Shared>) -> Response {
    layout::harden(live::stream(&s.changes, s.stop.clone()).into_response())
}
