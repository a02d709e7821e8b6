//! The controller's signal endpoints: `/sns` and `/events` with their certificate fetcher,
//! subscription confirmer and API key source. It owns request handling only; it must not evaluate
//! policies (that is intake) or parse payloads itself (`crate::controller::signal`). It is served
//! by the shared hardened listener (`crate::http::listener`).

pub mod certs;
pub mod confirm;
pub mod drift;
pub mod keys;
pub mod recent;
pub mod signals;
