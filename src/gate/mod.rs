//! `autoguardrails gate` (seed 002): the SLO + observed-cost deployment gate. A pure core
//! (`inputs`, `config`, `slo`, `cost`, `rules`, `decide`, `explain`, `render`) and thin adapters
//! behind narrow traits (`prometheus`, `costexplorer`, `files`, `llm`, `audit`, `collect`,
//! `serve`, `telemetry`). The core must not do I/O or read the clock; only adapters do.

pub mod config;
pub mod cost;
pub mod decide;
pub mod explain;
pub mod inputs;
pub mod render;
pub mod rules;
pub mod slo;
