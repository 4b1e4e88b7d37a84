//! `cargo xtask build`: setup, then build the agent binary (its build.rs compiles the
//! eBPF programs through aya-build).

use std::path::PathBuf;

use anyhow::Result;

use crate::{cmd, paths, setup};

/// The agent's binary name.
pub const AGENT: &str = "fwctl-guard";

/// `cargo xtask build [--debug]`.
pub fn build(release: bool) -> Result<()> {
    setup::setup()?;
    let bin = build_agent(release)?;
    println!("built {}", bin.display());
    Ok(())
}

/// Builds the agent (no setup) and returns the path of its binary.
pub fn build_agent(release: bool) -> Result<PathBuf> {
    let mut cargo = cmd::cargo();
    cargo.current_dir(paths::workspace_root()).arg("build");
    if release {
        cargo.arg("--release");
    }
    cmd::run(cargo.args(["-p", "fwctl-user", "--bin", AGENT]))?;
    Ok(paths::binary(AGENT, release))
}
