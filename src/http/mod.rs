//! HTTP listeners of the controller: the signal endpoints (`/sns`, `/events`) with their
//! certificate fetcher, subscription confirmer and API key source, and the operations listener
//! (`ops`: metrics, health, readiness). It owns request handling only; it must not evaluate
//! policies (that is intake) or parse payloads itself (`crate::signal`). The controller command
//! decides which listener runs where.

pub mod certs;
pub mod confirm;
pub mod keys;
pub mod ops;
pub mod signals;
