//! Shared HTTP serving for every part: the one hardened listener (`listener`: header-read and
//! body timeouts, connection bound, graceful shutdown) and the operations routes (`ops`:
//! metrics, health, readiness). It must not know any part's endpoints.

pub mod listener;
pub mod ops;
