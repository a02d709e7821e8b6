//! `gate serve`: the seed's JSON API (`/api/slo`, `/api/cost`, `/api/decision`,
//! `POST /api/simulate`, `/api/all`, all as `{"ok":…,"data":…}`), an endpoint for an Argo
//! Rollouts `AnalysisTemplate` `web` metric (`/api/analysis`), `/metrics` and health. Every
//! evaluation is explained, audited and recorded in the gate's metrics. HTTP only: decisions come
//! from `collect::Gate`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value as Json_, json};

use super::audit::{self, AuditQuery, AuditRecord, AuditSink};
use super::collect::{Gate, GateError};
use super::decide::{self, Decision};
use super::explain;
use super::llm;
use super::render;
use super::telemetry::GateMetrics;

/// Largest request body accepted (simulate requests are tiny).
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The shared listener failed.
    #[error("gate server failed: {0}")]
    Listener(#[from] crate::http::listener::ListenerError),
}

impl ServeError {
    /// A short label for logs.
    pub fn category(&self) -> &'static str {
        match self {
            ServeError::Listener(e) => e.category(),
        }
    }
}

/// Environment lookup (API keys for the explainer).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Shared state of the server.
#[derive(Clone)]
pub struct ServeState {
    /// The gate.
    pub gate: Gate,
    /// Where records go.
    pub audit: Arc<dyn AuditSink>,
    /// Metrics.
    pub metrics: GateMetrics,
    /// Environment lookup.
    pub env: EnvLookup,
}

/// A concluded evaluation.
pub struct Concluded {
    /// The decision (escalated to DELAY when unaudited).
    pub decision: Decision,
    /// The explanation.
    pub explanation: llm::Explanation,
    /// The audit file, when written.
    pub audit_file: Option<std::path::PathBuf>,
}

/// Explains, audits and records a decision. When the audit record cannot be written the
/// decision becomes DELAY (`AuditUnavailable`), and that outcome is what is returned.
pub async fn conclude(
    gate: &Gate,
    mut decision: Decision,
    mode: &str,
    sink: &dyn AuditSink,
    metrics: Option<&GateMetrics>,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Concluded {
    let rule_text = explain::narrative(&decision);
    let mut explanation = llm::explain(&gate.config.explainer, &decision, &rule_text, env).await;
    let record = AuditRecord::new(
        &decision,
        mode,
        &explanation.text,
        explanation.source,
        Timestamp::now(),
    );
    let audit_file = match sink.append(&record) {
        Ok(path) => Some(path),
        Err(e) => {
            decide::refuse_unaudited(&mut decision, &e.to_string());
            explanation = llm::Explanation {
                text: explain::narrative(&decision),
                source: llm::SOURCE_RULES,
                fallback: explanation.fallback,
            };
            None
        }
    };
    if let Some(m) = metrics {
        m.record(&decision);
    }
    Concluded {
        decision,
        explanation,
        audit_file,
    }
}

/// The router.
pub fn router(state: ServeState) -> Router {
    Router::new()
        .route("/api/slo", get(slo_handler))
        .route("/api/cost", get(cost_handler))
        .route("/api/decision", get(decision_handler))
        .route("/api/simulate", post(simulate_handler))
        .route("/api/all", get(all_handler))
        .route("/api/analysis", get(analysis_handler))
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .with_state(Arc::new(state))
}

/// Serves `router` on `listener` through the shared hardened listener (header-read timeout,
/// connection cap, drain on shutdown) until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    crate::http::listener::serve(
        listener,
        router,
        crate::http::listener::ListenerLimits::default(),
        shutdown,
    )
    .await?;
    Ok(())
}

#[derive(Deserialize)]
struct ServiceQuery {
    #[serde(default)]
    service: Option<String>,
}

fn failure(status: StatusCode, message: String) -> Response {
    (status, Json(json!({"ok": false, "error": message}))).into_response()
}

fn gate_failure(e: GateError) -> Response {
    failure(StatusCode::BAD_REQUEST, e.to_string())
}

async fn evaluate(
    state: &ServeState,
    service: Option<&str>,
    overrides: &BTreeMap<String, String>,
    mode: &str,
) -> Result<Concluded, GateError> {
    let decision = state
        .gate
        .evaluate(service, Timestamp::now(), overrides)
        .await?;
    let env = state.env.clone();
    Ok(conclude(
        &state.gate,
        decision,
        mode,
        state.audit.as_ref(),
        Some(&state.metrics),
        &move |k| env(k),
    )
    .await)
}

fn ok(data: Json_) -> Response {
    Json(json!({"ok": true, "data": data})).into_response()
}

async fn slo_handler(State(s): State<Arc<ServeState>>, Query(q): Query<ServiceQuery>) -> Response {
    match evaluate(&s, q.service.as_deref(), &BTreeMap::new(), "serve").await {
        Ok(c) => ok(render::slo_data(&c.decision.slo)),
        Err(e) => gate_failure(e),
    }
}

async fn cost_handler(State(s): State<Arc<ServeState>>, Query(q): Query<ServiceQuery>) -> Response {
    match evaluate(&s, q.service.as_deref(), &BTreeMap::new(), "serve").await {
        Ok(c) => ok(render::cost_data(&c.decision.cost)),
        Err(e) => gate_failure(e),
    }
}

async fn decision_handler(
    State(s): State<Arc<ServeState>>,
    Query(q): Query<ServiceQuery>,
) -> Response {
    match evaluate(&s, q.service.as_deref(), &BTreeMap::new(), "serve").await {
        Ok(c) => ok(render::decision_data(&c.decision)),
        Err(e) => gate_failure(e),
    }
}

/// `POST /api/simulate` body.
#[derive(Deserialize)]
pub struct SimulateRequest {
    /// The service (default: the configured default).
    #[serde(default)]
    pub service: Option<String>,
    /// Signal overrides (`{"error_budget_pct": 15, "burn_rate": "high"}`).
    #[serde(default)]
    pub set: BTreeMap<String, Json_>,
}

async fn simulate_handler(
    State(s): State<Arc<ServeState>>,
    body: Option<Json<SimulateRequest>>,
) -> Response {
    let Some(Json(request)) = body else {
        return failure(
            StatusCode::BAD_REQUEST,
            "expected a JSON body {\"service\":…,\"set\":{…}}".into(),
        );
    };
    let pairs: Vec<String> = request
        .set
        .iter()
        .map(|(k, v)| match v {
            Json_::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    let overrides = match decide::parse_overrides(&pairs) {
        Ok(o) => o,
        Err(e) => return failure(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match evaluate(&s, request.service.as_deref(), &overrides, "simulate").await {
        Ok(c) => {
            let mut data = render::decision_data(&c.decision);
            data["overrides"] = json!(overrides);
            ok(data)
        }
        Err(e) => gate_failure(e),
    }
}

async fn all_handler(State(s): State<Arc<ServeState>>, Query(q): Query<ServiceQuery>) -> Response {
    match evaluate(&s, q.service.as_deref(), &BTreeMap::new(), "serve").await {
        Ok(c) => {
            let recent = audit::read(
                &s.gate.config.audit.directory,
                &AuditQuery {
                    service: Some(c.decision.service.clone()),
                    limit: Some(20),
                    ..AuditQuery::default()
                },
            )
            .map(|l| {
                l.records
                    .iter()
                    .map(|r| json!({"recordedAt": r.recorded_at.to_string(), "mode": r.mode, "verdict": r.verdict, "policyId": r.policy_id, "reasonCode": r.reason_code}))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
            ok(json!({
                "slo": render::slo_data(&c.decision.slo),
                "cost": render::cost_data(&c.decision.cost),
                "decision": render::decision_data(&c.decision),
                "trace": c.decision.verdict.trace,
                "explanation": c.explanation.text,
                "audit": recent,
            }))
        }
        Err(e) => gate_failure(e),
    }
}

/// The Argo Rollouts web-metric answer: `verdict` for the conditions, plus helpers.
pub fn analysis_data(d: &Decision) -> Json_ {
    json!({
        "verdict": d.verdict.action,
        "exitCode": d.verdict.action.exit_code(),
        "pass": d.verdict.action.exit_code() == 0,
        "delayMinutes": d.verdict.delay_minutes,
        "policyId": d.verdict.policy_id,
        "reasonCode": d.verdict.reason_code,
        "service": d.service,
    })
}

async fn analysis_handler(
    State(s): State<Arc<ServeState>>,
    Query(q): Query<ServiceQuery>,
) -> Response {
    match evaluate(&s, q.service.as_deref(), &BTreeMap::new(), "analysis").await {
        Ok(c) => ok(analysis_data(&c.decision)),
        Err(e) => gate_failure(e),
    }
}

async fn metrics_handler(State(s): State<Arc<ServeState>>) -> Response {
    match s.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
