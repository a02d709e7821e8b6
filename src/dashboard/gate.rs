//! The Gate page of `gate serve` (the seed's dashboard): the decision banner, the SLO card with
//! the error-budget meter, burn class and p95/p99, the cost chart with week-over-week change, the
//! policy trace, the explanation and the audit log, all from the audit log's newest record of the
//! service (a page view evaluates nothing and writes nothing). The "run the gate" button evaluates
//! and audits like any other run, and is there only with `--dashboard-allow-run`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::access::{self, Access};
use super::layout::{self, Frame, NavItem, badge};
use super::views::countdown;
use super::{BASE, analysis, svg};
use crate::gate::audit::{self, AuditQuery, AuditRecord};
use crate::gate::inputs::Reading;
use crate::gate::render;
use crate::gate::serve::{self as gate_serve, ServeState};

/// How many audit records the page lists.
pub const AUDIT_ROWS: usize = 20;

/// What the gate's dashboard reads.
pub struct GateDashboard {
    /// The gate server's state (the gate, the audit sink, metrics).
    pub serve: ServeState,
    /// Whether the "run the gate" button works.
    pub allow_run: bool,
    /// The controller's dashboard, linked from the navigation.
    pub controller_url: Option<String>,
    /// A proposal for the Analysis page.
    pub proposal: Option<PathBuf>,
}

type Shared = Arc<GateDashboard>;

impl GateDashboard {
    fn frame(&self) -> Frame {
        let mut nav = Vec::new();
        if let Some(url) = &self.controller_url {
            for (label, key) in [
                ("Quarantines", "quarantines"),
                ("Policies", "policies"),
                ("Signals", "signals"),
            ] {
                nav.push(NavItem {
                    label: label.into(),
                    href: format!("{}/{key}", url.trim_end_matches('/')),
                    key,
                });
            }
        }
        nav.push(NavItem {
            label: "Gate".into(),
            href: format!("{BASE}/gate"),
            key: "gate",
        });
        nav.push(NavItem {
            label: "Analysis".into(),
            href: format!("{BASE}/analysis"),
            key: "analysis",
        });
        Frame {
            nav,
            active: "gate",
            title: "Deployment gate".into(),
            live: None,
            poll_seconds: Some(30),
            part: "gate",
        }
    }
}

/// The routes to merge into `gate serve`'s router.
pub fn router(state: Shared, access: Access) -> Router {
    let private = Router::new()
        .route(
            BASE,
            get(|| async { Redirect::to(&format!("{BASE}/gate")) }),
        )
        .route(
            &format!("{BASE}/"),
            get(|| async { Redirect::to(&format!("{BASE}/gate")) }),
        )
        .route(&format!("{BASE}/gate"), get(gate_html))
        .route(&format!("{BASE}/gate/run"), post(run))
        .route(&format!("{BASE}/api/gate"), get(gate_json))
        .route(&format!("{BASE}/analysis"), get(analysis_html))
        .route(&format!("{BASE}/api/analysis"), get(analysis_json))
        .with_state(state)
        .route_layer(middleware::from_fn_with_state(
            access.clone(),
            access::require,
        ));
    super::controller::public(access).merge(private)
}

/// `?service=`.
#[derive(Deserialize)]
pub struct ServiceQuery {
    #[serde(default)]
    service: Option<String>,
}

/// The page's data.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateView {
    /// The service shown.
    pub service: String,
    /// Every configured service.
    pub services: Vec<String>,
    /// The newest audited decision of the service (its full document), if any.
    pub latest: Option<Value>,
    /// The newest records, newest first.
    pub audit: Vec<Value>,
    /// Audit lines that could not be read.
    pub unreadable_audit_lines: usize,
    /// Whether the run button works.
    pub run_allowed: bool,
}

fn service_name(s: &GateDashboard, asked: Option<&str>) -> Result<String, String> {
    s.serve
        .gate
        .config
        .service(asked)
        .map(|svc| svc.name.clone())
        .map_err(|e| e.to_string())
}

fn records(s: &GateDashboard, service: &str) -> Result<(Vec<AuditRecord>, usize), String> {
    audit::read(
        &s.serve.gate.config.audit.directory,
        &AuditQuery {
            service: Some(service.to_string()),
            limit: Some(AUDIT_ROWS),
            ..AuditQuery::default()
        },
    )
    .map(|l| (l.records, l.unreadable.len()))
    .map_err(|e| e.to_string())
}

fn view(s: &GateDashboard, service: &str, records: &[AuditRecord], unreadable: usize) -> GateView {
    GateView {
        service: service.to_string(),
        services: s.serve.gate.config.services.keys().cloned().collect(),
        latest: records.last().map(|r| {
            let mut doc = render::decision_document(&r.decision, Some(&r.explanation));
            doc["recordedAt"] = json!(r.recorded_at.to_string());
            doc["mode"] = json!(r.mode);
            doc
        }),
        audit: records
            .iter()
            .rev()
            .map(|r| json!({"recordedAt": r.recorded_at.to_string(), "mode": r.mode, "verdict": r.verdict, "policyId": r.policy_id, "reasonCode": r.reason_code, "delayMinutes": r.delay_minutes}))
            .collect(),
        unreadable_audit_lines: unreadable,
        run_allowed: s.allow_run,
    }
}

fn problem(status: StatusCode, message: String) -> Response {
    layout::harden((status, axum::Json(json!({"ok": false, "error": message}))).into_response())
}

async fn gate_json(State(s): State<Shared>, Query(q): Query<ServiceQuery>) -> Response {
    let service = match service_name(&s, q.service.as_deref()) {
        Ok(n) => n,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e),
    };
    match records(&s, &service) {
        Ok((records, unreadable)) => layout::json_response(
            &json!({"ok": true, "data": view(&s, &service, &records, unreadable)}),
        ),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

async fn gate_html(
    State(s): State<Shared>,
    Query(q): Query<ServiceQuery>,
    headers: HeaderMap,
) -> Response {
    let frame = s.frame();
    let service = match service_name(&s, q.service.as_deref()) {
        Ok(n) => n,
        Err(e) => {
            let mut r = layout::page(
                &frame,
                &headers,
                html! { h1 { "Deployment gate" } p.error { (e) } },
            );
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return r;
        }
    };
    let content = match records(&s, &service) {
        Ok((records, unreadable)) => page(&s, &service, &records, unreadable, Timestamp::now()),
        Err(e) => {
            html! { h1 { "Deployment gate" } p.error { "The audit log cannot be read: " (e) } }
        }
    };
    layout::page(&frame, &headers, content)
}

fn meter_tone(pct: Option<f64>) -> &'static str {
    match pct {
        Some(p) if p >= 30.0 => "ok",
        Some(p) if p >= 10.0 => "warn",
        _ => "bad",
    }
}

fn reading(r: &Reading, unit: &str) -> String {
    match (r.value, r.state.usable(true)) {
        (Some(v), true) => format!("{v:.2}{unit}"),
        (Some(v), false) => format!("{v:.2}{unit} ({})", r.state.as_str()),
        (None, _) => r.state.as_str().to_string(),
    }
}

fn page(
    s: &GateDashboard,
    service: &str,
    records: &[AuditRecord],
    unreadable: usize,
    now: Timestamp,
) -> Markup {
    let services: Vec<&String> = s.serve.gate.config.services.keys().collect();
    html! {
        h1 { "Deployment gate — " (service) }
        @if services.len() > 1 {
            form.filters method="get" aria-label="Choose a service" {
                label for="g-service" { "Service"
                    select id="g-service" name="service" {
                        @for name in &services { option value=(name) selected[name.as_str() == service] { (name) } }
                    }
                }
                button type="submit" { "Show" }
            }
        }
        @match records.last() {
            None => { p { "No gate run of " (service) " is in the audit log yet." } }
            Some(latest) => { (decision(latest, now)) }
        }
        h2 { "Run the gate" }
        @if s.allow_run {
            form method="post" action={ (BASE) "/gate/run" } {
                input type="hidden" name="service" value=(service);
                button type="submit" id="run-gate" { "Run the deployment gate" }
                p.muted { "Evaluates now and writes an audit record (mode " code { "dashboard" } ")." }
            }
        } @else {
            p.muted { "Read-only dashboard: run " code { "autoguardrails gate --service " (service) } " (or start " code { "gate serve --dashboard-allow-run" } ")." }
        }
        h2 { "Audit log" }
        @if unreadable > 0 { p.error { (unreadable) " audit lines could not be read." } }
        div.table-wrap tabindex="0" role="region" aria-labelledby="audit-caption" {
            table id="audit" {
                caption id="audit-caption" { "The newest " (records.len()) " gate runs of " (service) }
                thead { tr { th scope="col" { "When" } th scope="col" { "Mode" } th scope="col" { "Verdict" } th scope="col" { "Rule" } th scope="col" { "Reason" } } }
                tbody {
                    @for r in records.iter().rev() {
                        tr { td { (countdown(r.recorded_at, now)) } td { (r.mode) } td { (badge(&r.verdict)) } td { (r.policy_id) } td { (r.reason_code) } }
                    }
                }
            }
        }
    }
}

fn decision(r: &AuditRecord, now: Timestamp) -> Markup {
    let d = &r.decision;
    let v = &d.verdict;
    let slo = &d.slo;
    let cost = &d.cost;
    let budget = slo
        .error_budget_pct
        .value
        .filter(|_| slo.error_budget_pct.state.usable(true));
    let n = cost.days.len();
    let bars: Vec<svg::Bar> = cost
        .days
        .iter()
        .enumerate()
        .map(|(i, day)| svg::Bar {
            label: day.date.strftime("%m-%d").to_string(),
            value: day.amount,
            muted: i < n.saturating_sub(7),
        })
        .collect();
    let banner_tone = match layout::tone(v.action.as_str()) {
        "badge b-bad" => "banner b-bad",
        "badge b-warn" => "banner b-warn",
        "badge b-ok" => "banner b-ok",
        _ => "banner b-info",
    };
    html! {
        section class=(banner_tone) id="decision" aria-label="Decision" {
            strong { (v.action.as_str()) }
            @if v.delay_minutes > 0 { "for " (v.delay_minutes) " min · " }
            (v.policy_id) " " (v.policy_name) ": " (v.reason)
            p { "Remediation: " (v.remediation) }
            p.muted { "Decided " (countdown(r.recorded_at, now)) " (" (r.mode) ") for inputs at " (d.at.to_string()) }
        }
        div.cards {
            section.card id="slo" {
                h2 { "SLO" }
                p { "Error budget remaining" }
                (svg::meter("budget-meter", "Error budget remaining", budget, meter_tone(budget)))
                p.big { (reading(&slo.error_budget_pct, " %")) }
                p { "Burn: " (badge(slo.burn_class.as_deref().unwrap_or(slo.burn_class_state.as_str()))) " " (reading(&slo.burn_rate_value, "×")) }
                p { "p95 " (reading(&slo.p95_ms, " ms")) @if let Some(t) = slo.targets.p95_threshold_ms { " / " (t) " ms" } " " @match slo.latency_compliant { Some(true) => (badge("True")), Some(false) => (badge("False")), None => (badge("Unknown")) } }
                p { "p99 " (reading(&slo.p99_ms, " ms")) @if let Some(t) = slo.targets.p99_threshold_ms { " / " (t) " ms" } }
            }
            section.card id="cost" {
                h2 { "Cost" }
                p.big { (reading(&cost.wow_change_pct, " %")) " " span.muted { "week over week" } }
                p { "Trend: " (badge(cost.trend.as_deref().unwrap_or("Unknown"))) @if cost.spike_detected == Some(true) { " " (badge("WARN")) " spike" } }
                p.muted { "This week " (reading(&cost.current_week_avg, "")) "/day, prior week " (reading(&cost.prior_week_avg, "")) "/day" }
            }
        }
        h2 { "Daily cost" }
        @if bars.is_empty() { p.muted { "No cost days (" (cost.wow_change_pct.state.as_str()) ": " (cost.wow_change_pct.detail) ")." } }
        @else {
            (svg::bars("cost-chart", &format!("Daily cost, last {n} days"), "Daily spend; the last 7 days in the first colour, earlier days in the second.", &bars, "", 5))
            details {
                summary { "Cost table" }
                div.table-wrap tabindex="0" role="region" aria-labelledby="cost-caption" {
                    table { caption id="cost-caption" { "Daily cost" }
                        thead { tr { th scope="col" { "Day" } th scope="col" { "Amount" } th scope="col" { "Estimated" } } }
                        tbody { @for day in &cost.days { tr { td { (day.date.to_string()) } td { (format!("{:.2}", day.amount)) } td { @if day.estimated { "yes" } @else { "no" } } } } }
                    }
                }
            }
        }
        h2 { "Policy trace" }
        div.table-wrap tabindex="0" role="region" aria-labelledby="trace-caption" {
            table id="trace" {
                caption id="trace-caption" { "Rules in order; the first match decides" }
                thead { tr { th scope="col" { "Rule" } th scope="col" { "Action" } th scope="col" { "Outcome" } th scope="col" { "Why" } } }
                tbody {
                    @for t in &v.trace {
                        tr {
                            td { @if t.decisive { strong { (t.id) " " (t.name) } } @else { (t.id) " " (t.name) } }
                            td { (badge(t.action.as_str())) }
                            td { (format!("{:?}", t.outcome)) @if t.decisive { " (decisive)" } }
                            td { (t.why) }
                        }
                    }
                }
            }
        }
        h2 { "Explanation" }
        p id="explanation" { (r.explanation) }
    }
}

/// The run form.
#[derive(Deserialize)]
pub struct RunForm {
    #[serde(default)]
    service: Option<String>,
}

/// A form post from another site is refused (the cookie is SameSite=Strict too).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host)
}

async fn run(State(s): State<Shared>, headers: HeaderMap, Form(form): Form<RunForm>) -> Response {
    if !s.allow_run {
        return problem(
            StatusCode::FORBIDDEN,
            "the dashboard is read-only (start gate serve with --dashboard-allow-run)".into(),
        );
    }
    if !same_origin(&headers) {
        return problem(
            StatusCode::FORBIDDEN,
            "cross-origin form posts are refused".into(),
        );
    }
    let service = match service_name(&s, form.service.as_deref()) {
        Ok(n) => n,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e),
    };
    let decision = match s
        .serve
        .gate
        .evaluate(Some(&service), Timestamp::now(), &Default::default())
        .await
    {
        Ok(d) => d,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let env = s.serve.env.clone();
    gate_serve::conclude(
        &s.serve.gate,
        decision,
        "dashboard",
        s.serve.audit.as_ref(),
        Some(&s.serve.metrics),
        &move |k| env(k),
    )
    .await;
    layout::harden(
        Redirect::to(&format!(
            "{BASE}/gate?service={}",
            super::views::encode(&service)
        ))
        .into_response(),
    )
}

async fn analysis_html(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let mut frame = s.frame();
    frame.active = "analysis";
    frame.title = "Analysis".into();
    let content = match super::controller::analysis_content(s.proposal.as_deref()) {
        Ok(v) => analysis::page(&v),
        Err(e) => analysis::missing(&e),
    };
    layout::page(&frame, &headers, content)
}

async fn analysis_json(State(s): State<Shared>) -> Response {
    super::controller::analysis_json_response(s.proposal.as_deref())
}
