//! `cargo xtask setup`: makes a fresh Debian 12 machine ready to build and test
//! fwctl-guard. Idempotent and fast when nothing is missing: each step checks first,
//! prints one line when it has to act, and a single summary line is printed when no
//! step had anything to do.

mod bpf_linker;
mod debian;
mod mounts;
mod toolchain;

use std::time::Instant;

use anyhow::Result;

pub use debian::ensure_debian_packages;

/// Debian packages the build and tests need on the host: curl scrapes the metrics
/// endpoint, nvme-cli is the real NVMe client the host tests drive.
const HOST_PACKAGES: &[&str] =
    &["curl", "nvme-cli", "prometheus", "logrotate", "python3-jsonschema", "python3-yaml"];

/// What one setup step found or did.
pub struct Status {
    /// The step had to change something (it printed what).
    pub acted: bool,
    /// A few words for the summary line, e.g. "nightly".
    pub what: String,
}

impl Status {
    pub fn present(what: impl Into<String>) -> Self {
        Status { acted: false, what: what.into() }
    }

    pub fn acted(what: impl Into<String>) -> Self {
        Status { acted: true, what: what.into() }
    }
}

/// Runs every setup step in order; the first failure stops it.
pub fn setup() -> Result<()> {
    let start = Instant::now();
    let nightly = toolchain::ensure_nightly()?;
    let sysroot = toolchain::nightly_sysroot()?;
    let rust_src = toolchain::ensure_rust_src(&sysroot)?;
    let linker = bpf_linker::ensure(&sysroot)?;
    let mounts = mounts::ensure()?;
    let packages = ensure_debian_packages(HOST_PACKAGES)?;

    let steps = [nightly, rust_src, linker, mounts, packages];
    if steps.iter().any(|s| s.acted) {
        println!("setup: done in {:.1?}", start.elapsed());
    } else {
        let what: Vec<_> = steps.iter().map(|s| s.what.as_str()).collect();
        println!("setup: nothing to do ({}) [{:.0?}]", what.join("; "), start.elapsed());
    }
    Ok(())
}
