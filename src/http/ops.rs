//! The operations listener (`--metrics-addr`): `GET /metrics` (Prometheus text), `/healthz`
//! (process alive) and `/readyz` (caches synced and not draining). It only reports state others
//! set through `Readiness` and `Metrics`; it must not serve signals or decide leadership.

use crate::http::listener::ListenerLimits;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `/readyz` reason: every cache has synced and the replica is not shutting down.
pub const READY_REASON_READY: &str = "Ready";
/// `/readyz` reason: informer caches have not synced yet.
pub const READY_REASON_CACHES_NOT_SYNCED: &str = "CachesNotSynced";
/// `/readyz` reason: shutdown has started; the replica should get no new traffic.
pub const READY_REASON_DRAINING: &str = "Draining";

/// Why the operations listener failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The listen address could not be bound.
    #[error("failed to bind the operations listener on {address}: {source}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("operations listener failed: {0}")]
    Serve(#[source] std::io::Error),
    /// The shared listener stopped with an error.
    #[error("operations listener failed")]
    Listener(#[from] crate::http::listener::ListenerError),
}

impl OpsError {
    /// The category used for metric labels and logs.
    pub fn category(&self) -> &'static str {
        match self {
            OpsError::Bind { .. } => "Bind",
            OpsError::Serve(_) => "Serve",
            OpsError::Listener(e) => e.category(),
        }
    }
}

#[derive(Debug, Default)]
struct ReadinessFlags {
    caches_synced: AtomicBool,
    leader: AtomicBool,
    draining: AtomicBool,
}

/// A shared readiness handle: the controller flips it, `/readyz` reports it. Cloning shares state.
///
/// A standby replica (not the leader) is ready once its caches synced: it serves signals and
/// stands by, but does not enforce. `leader` is reported for people, never used for readiness.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    flags: Arc<ReadinessFlags>,
}

/// What `/readyz` answers, as JSON.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessReport {
    /// True when the replica should receive traffic.
    pub ready: bool,
    /// One of the `READY_REASON_*` constants.
    pub reason: String,
    /// Informer caches have synced.
    pub caches_synced: bool,
    /// This replica holds the leader lease (enforces); a standby is ready too.
    pub leader: bool,
    /// Shutdown has started.
    pub draining: bool,
}

impl Readiness {
    /// A handle that is not ready (caches not synced).
    pub fn new() -> Readiness {
        Readiness::default()
    }

    /// Records whether every informer cache has synced.
    pub fn set_caches_synced(&self, synced: bool) {
        self.flags.caches_synced.store(synced, Ordering::SeqCst);
    }

    /// Records whether this replica is the leader (reported only).
    pub fn set_leader(&self, leader: bool) {
        self.flags.leader.store(leader, Ordering::SeqCst);
    }

    /// Marks the replica as shutting down: `/readyz` fails from now on.
    pub fn set_draining(&self) {
        self.flags.draining.store(true, Ordering::SeqCst);
    }

    /// The current report.
    pub fn report(&self) -> ReadinessReport {
        let caches_synced = self.flags.caches_synced.load(Ordering::SeqCst);
        let leader = self.flags.leader.load(Ordering::SeqCst);
        let draining = self.flags.draining.load(Ordering::SeqCst);
        let (ready, reason) = if draining {
            (false, READY_REASON_DRAINING)
        } else if !caches_synced {
            (false, READY_REASON_CACHES_NOT_SYNCED)
        } else {
            (true, READY_REASON_READY)
        };
        ReadinessReport {
            ready,
            reason: reason.to_string(),
            caches_synced,
            leader,
            draining,
        }
    }

    /// True when `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.report().ready
    }
}

#[derive(Clone)]
struct OpsState {
    metrics: Arc<Metrics>,
    readiness: Readiness,
}

/// The router for `/metrics`, `/healthz` and `/readyz`.
pub fn router(metrics: Arc<Metrics>, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz_handler))
        .route("/readyz", get(readyz_handler))
        .with_state(OpsState { metrics, readiness })
}

async fn metrics_handler(State(state): State<OpsState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        Err(error) => {
            tracing::error!(%error, "failed to encode metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed to encode metrics\n",
            )
                .into_response()
        }
    }
}

async fn healthz_handler() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

async fn readyz_handler(State(state): State<OpsState>) -> Response {
    let report = state.readiness.report();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(report)).into_response()
}

/// A bound operations listener, not yet serving (bind first so a test can use port 0).
pub struct OpsServer {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl OpsServer {
    /// Binds `address` (e.g. `0.0.0.0:8080`).
    pub async fn bind(
        address: SocketAddr,
        metrics: Arc<Metrics>,
        readiness: Readiness,
    ) -> Result<OpsServer, OpsError> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| OpsError::Bind { address, source })?;
        Ok(OpsServer {
            listener,
            router: router(metrics, readiness),
        })
    }

    /// Serves these routes too (the memory backend's read-only IAM view, the SNS confirmation
    /// list); they must not collide with `/metrics`, `/healthz` or `/readyz`.
    pub fn with_routes(mut self, routes: Router) -> OpsServer {
        self.router = self.router.merge(routes);
        self
    }

    /// The address actually bound.
    pub fn local_address(&self) -> Result<SocketAddr, OpsError> {
        self.listener.local_addr().map_err(OpsError::Serve)
    }

    /// Serves until `stop` resolves, then finishes in-flight requests and returns. The
    /// controller passes a future that resolves only after the lease has been released, so
    /// `/metrics` and `/healthz` keep answering while the replica drains.
    pub async fn serve_until<F>(self, stop: F) -> Result<(), OpsError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        crate::http::listener::serve(self.listener, self.router, ListenerLimits::default(), stop)
            .await
            .map_err(OpsError::from)
    }

    /// Serves until `shutdown` is triggered.
    pub async fn serve(self, shutdown: Shutdown) -> Result<(), OpsError> {
        self.serve_until(async move {
            shutdown.wait().await;
        })
        .await
    }
}
