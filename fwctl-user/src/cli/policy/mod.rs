//! `fwctl-guard policy ...`: validate ([`check`]), explain and diff ([`explain`]) policy
//! files, and print their JSON Schema. Everything runs the agent's own pipeline
//! (`enforce::load`), so what these accept is what the agent loads.

pub mod check;
pub mod explain;
