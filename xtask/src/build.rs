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

/// Builds the test targets `names` of the fwctl-guard-tests package (release) and returns
/// `(name, executable)` for each, for running them elsewhere (the VM guests).
pub fn test_executables(names: &[&str]) -> Result<Vec<(String, PathBuf)>> {
    let mut cargo = cmd::cargo();
    cargo.current_dir(paths::workspace_root()).args([
        "test",
        "-p",
        "fwctl-guard-tests",
        "--release",
        "--no-run",
        "--message-format=json",
    ]);
    for name in names {
        cargo.args(["--test", name]);
    }
    let out = cargo.stderr(std::process::Stdio::inherit()).output().context("cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the test executables failed ({})", out.status);
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let (Some(name), Some(exe)) = (message["target"]["name"].as_str(), message["executable"].as_str())
        else {
            continue;
        };
        if names.contains(&name) {
            found.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    if found.len() != names.len() {
        bail!("expected test executables {names:?}, found {found:?}");
    }
    Ok(found)
}
