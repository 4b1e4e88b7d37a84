//! Everything that talks to the kernel through aya: the eBPF [`object`], attaching the
//! hook sets described by `fwctl_common::hook_set` ([`attach`]), pinning ([`pins`]), the
//! maps the agent keeps ([`maps`], [`policy_maps`]), program statistics ([`prog_stats`]),
//! which program types the kernel accepts ([`capabilities`]) and the running kernel's
//! layout ([`layout`]).
//!
//! Not for deciding anything about commands: the kernel decides with the tables
//! `enforce` compiles; this module only moves them in and the counts out.

pub mod attach;
pub mod capabilities;
pub mod layout;
pub mod maps;
pub mod metrics;
pub mod object;
pub mod pins;
pub mod policy_maps;
pub mod prog_stats;
pub mod selftest;

/// An error with its sources, e.g. "the BPF_PROG_LOAD syscall failed: Operation not
/// permitted": the source chain carries the kernel's errno.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
