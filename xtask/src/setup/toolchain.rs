//! The nightly Rust toolchain and its `rust-src` component (aya-build compiles the
//! eBPF crate with nightly's `-Z build-std=core`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::Status;
use crate::cmd;

/// Installs the `nightly` toolchain unless `rustup toolchain list` shows it.
pub fn ensure_nightly() -> Result<Status> {
    let list = cmd::probe(Command::new("rustup").args(["toolchain", "list"])).context(
        "`rustup toolchain list` failed: install rustup (https://rustup.rs) and put ~/.cargo/bin on PATH",
    )?;
    if list.lines().any(is_plain_nightly) {
        return Ok(Status::present("nightly"));
    }
    println!("setup: installing the nightly toolchain");
    cmd::run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))
        .context(
            "cannot install the nightly Rust toolchain (needed to build the eBPF programs); \
         check that static.rust-lang.org is reachable, then run \
         `rustup toolchain install nightly --profile minimal`",
        )?;
    Ok(Status::acted("nightly"))
}

/// `nightly-<host>` (what `+nightly` resolves to), not a dated `nightly-YYYY-MM-DD-<host>`.
fn is_plain_nightly(line: &str) -> bool {
    let name = line.split_whitespace().next().unwrap_or("");
    match name.strip_prefix("nightly") {
        Some("") => true,
        Some(rest) => {
            rest.strip_prefix('-').is_some_and(|host| !host.starts_with(|c: char| c.is_ascii_digit()))
        }
        None => false,
    }
}

/// `rustc +nightly --print sysroot`.
pub fn nightly_sysroot() -> Result<PathBuf> {
    let out = cmd::probe(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .context("`rustc +nightly --print sysroot` failed")?;
    let sysroot = PathBuf::from(out.trim());
    if !sysroot.is_dir() {
        bail!("nightly sysroot {} is not a directory", sysroot.display());
    }
    Ok(sysroot)
}

/// Adds nightly's `rust-src` unless the sysroot already has `lib/rustlib/src`.
pub fn ensure_rust_src(sysroot: &Path) -> Result<Status> {
    if sysroot.join("lib/rustlib/src/rust/library").is_dir() {
        return Ok(Status::present("rust-src"));
    }
    println!("setup: adding rust-src to the nightly toolchain");
    cmd::run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
        .context("cannot add the nightly rust-src component")?;
    Ok(Status::acted("rust-src"))
}

#[cfg(test)]
mod tests {
    use super::is_plain_nightly;

    #[test]
    fn recognises_plain_nightly_only() {
        assert!(is_plain_nightly("nightly-x86_64-unknown-linux-gnu"));
        assert!(is_plain_nightly("nightly-x86_64-unknown-linux-gnu (active)"));
        assert!(!is_plain_nightly("nightly-2026-05-19-x86_64-unknown-linux-gnu"));
        assert!(!is_plain_nightly("stable-x86_64-unknown-linux-gnu (default)"));
    }
}
