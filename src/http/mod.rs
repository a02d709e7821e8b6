//! HTTP listeners: the operations listener (`ops`: metrics, health, readiness). Routers only;
//! the controller command decides which listener runs where.

pub mod ops;
