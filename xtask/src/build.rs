//! `cargo xtask build`: setup, then build the agent binary (its build.rs compiles the
//! eBPF programs through aya-build).

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};

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

/// The integration-test executable of the fwctl-guard-tests package: every suite in one
/// program (`--suite NAME` runs one).
pub const INTEGRATION_TESTS: &str = "integration";

/// Builds the integration-test executable (release) and returns its path, for running it
/// elsewhere (the VM guests).
pub fn test_executable() -> Result<PathBuf> {
    let mut cargo = cmd::cargo();
    cargo.current_dir(paths::workspace_root()).args([
        "test",
        "-p",
        "fwctl-guard-tests",
        "--release",
        "--no-run",
        "--message-format=json",
        "--test",
        INTEGRATION_TESTS,
    ]);
    let out = cargo.stderr(std::process::Stdio::inherit()).output().context("cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the test executable failed ({})", out.status);
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if message["target"]["name"] == INTEGRATION_TESTS {
            if let Some(exe) = message["executable"].as_str() {
                found.push(PathBuf::from(exe));
            }
        }
    }
    match &found[..] {
        [exe] => Ok(exe.clone()),
        _ => bail!("expected one test executable {INTEGRATION_TESTS}, found {found:?}"),
    }
}
