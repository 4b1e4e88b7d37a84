//! The running kernel's layout, which the eBPF programs cannot learn themselves (aya has
//! no CO-RE for Rust programs): struct member offsets from BTF ([`btf`], our own small
//! reader) and tracepoint field offsets from tracefs ([`tracefs`]), gathered into the
//! `KernelOffsets` global the programs are loaded with ([`offsets`]).

pub mod btf;
pub mod offsets;
pub mod tracefs;

use anyhow::{Context as _, Result};
use fwctl_common::model::KernelOffsets;

/// What the running kernel offers the programs.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub offsets: KernelOffsets,
    /// The nvme module is loaded: its command tracepoints can be attached.
    pub nvme_tracepoints: bool,
    /// io_uring passthrough commands can be watched (the kernel has `io_uring_cmd`).
    pub uring: bool,
}

impl Layout {
    /// Read the running kernel's BTF and tracefs.
    pub fn of_running_kernel() -> Result<Self> {
        let btf = btf::KernelBtf::from_sysfs().context("reading the kernel's BTF")?;
        let mut offsets = offsets::resolve(&btf).context("resolving kernel offsets")?;
        let uring = offsets::resolve_uring(&btf, &mut offsets).unwrap_or_else(|e| {
            log::warn!("io_uring passthrough cannot be watched on this kernel: {e:#}");
            false
        });
        drop(btf);
        let nvme_tracepoints =
            offsets::resolve_nvme(&mut offsets).context("resolving nvme tracepoint offsets")?;
        Ok(Self { offsets, nvme_tracepoints, uring })
    }
}
