//! `cargo xtask bench`: setup, build the release agent and the bench binary, then
//! run the bench against that agent (as root, through sudo when needed).

use anyhow::Result;

use crate::{build, cmd, paths, privilege, setup};

const BENCH: &str = "fwctl-guard-bench";

/// `cargo xtask bench [-- <args>]`: replaces xtask with `fwctl-guard-bench --agent <agent> <args>`.
pub fn bench(args: &[String]) -> Result<()> {
    setup::setup()?;
    let agent = build::build_agent(true)?;
    cmd::run(cmd::cargo().current_dir(paths::workspace_root()).args([
        "build",
        "--release",
        "-p",
        "fwctl-guard-tests",
        "--bin",
        BENCH,
    ]))?;
    let mut bench = privilege::as_root(paths::binary(BENCH, true))?;
    bench.arg("--agent").arg(&agent).args(args);
    Err(cmd::exec(&mut bench))
}
