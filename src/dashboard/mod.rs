//! The read-only web dashboard (docs/dashboard.md, decisions 180–189): server-rendered HTML
//! pages that work without JavaScript, the JSON behind each page, SVG charts drawn here, and a
//! small embedded script for live updates (Server-Sent Events, a 30 s poll when they are not
//! available) and countdowns. Every asset is compiled into the binary.
//!
//! The controller serves Quarantines, Policies, Signals and Analysis on a listener of its own
//! (`dashboard.*` settings, [`controller`]); `gate serve` serves the Gate page ([`gate`]). Both go
//! through the one hardened listener (`crate::http::listener`) and the same bearer-token access
//! ([`access`]). The views (`views`, `svg`, `layout`) are pure: objects in, HTML or JSON out.
//! Nothing here writes to the cluster or AWS; the only write is the gate's "run" button, off
//! unless `gate serve --dashboard-allow-run` (it audits like every gate run).

pub mod access;
pub mod analysis;
pub mod assets;
pub mod controller;
pub mod gate;
pub mod layout;
pub mod live;
pub mod svg;
pub mod views;

/// Where every dashboard path starts.
pub const BASE: &str = "/dashboard";

/// Why a dashboard could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// The token file could not be read.
    #[error("cannot read the dashboard token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The token file holds no usable token.
    #[error("the dashboard token file {0} is empty; it must hold at least 16 characters")]
    TokenTooShort(String),
    /// The listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The shared listener stopped with an error.
    #[error("dashboard listener failed: {0}")]
    Listener(#[from] crate::http::listener::ListenerError),
}
