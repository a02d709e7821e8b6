//! `autoguardrails gate` (seed 002): the SLO + observed-cost deployment gate. A pure core
//! (`inputs`, `config`, `slo`, `cost`, `rules`, `decide`, `explain`, `render`) and thin adapters
//! behind narrow traits (`prometheus`, `costexplorer`, `files`, `llm`, `audit`), wired by
//! `collect` (gathering) and `serve` (HTTP), with the gate's own metrics in `telemetry`. The core
//! must not do I/O or read the clock; only adapters do.

pub mod audit;
pub mod collect;
pub mod config;
pub mod cost;
pub mod costexplorer;
pub mod decide;
pub mod explain;
pub mod files;
pub mod inputs;
pub mod llm;
pub mod prometheus;
pub mod render;
pub mod rules;
pub mod serve;
pub mod slo;
pub mod telemetry;
