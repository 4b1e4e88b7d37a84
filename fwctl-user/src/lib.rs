//! fwctl-guard's agent: audit (and, where the kernel allows, gate) device passthrough commands.
//! The binary (`main.rs`) is only the command line; everything else is here.

pub mod agent;
pub mod audit;
pub mod btf;
pub mod config;
pub mod device_info;
pub mod devices;
pub mod effects;
pub mod enforce;
pub mod events;
pub mod fwctl_info;
pub mod http;
pub mod inventory;
pub mod kernel;
pub mod labels;
pub mod metrics;
pub mod offsets;
pub mod pins;
pub mod policy;
pub mod probe;
pub mod prog_stats;
pub mod rpc_checks;
pub mod taint;
pub mod tracefs;
