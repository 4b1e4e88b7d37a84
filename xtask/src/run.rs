//! `cargo xtask run`: setup, build, then run the agent in the foreground with the
//! repository's config (as root, through sudo when needed).

use anyhow::{ensure, Result};

use crate::{build, cmd, paths, privilege, setup};

/// The agent's config, relative to the workspace root.
const CONFIG: &str = "config/fwctl-guard.yaml";

/// `cargo xtask run [-- <args>]`: replaces xtask with `fwctl-guard run --config … <args>`,
/// so signals (Ctrl-C), stdio and the exit code are the agent's own.
pub fn run(args: &[String]) -> Result<()> {
    setup::setup()?;
    let bin = build::build_agent(true)?;
    let config = paths::workspace_root().join(CONFIG);
    ensure!(config.is_file(), "config {} not found", config.display());

    let mut agent = privilege::as_root(&bin)?;
    agent.arg("run").arg("--config").arg(&config).args(args);
    println!(
        "== starting {} with {} (Ctrl-C stops it; its programs stay attached: `{} uninstall` removes them, \
         or run with `-- --cleanup`) ==",
        build::AGENT,
        config.display(),
        bin.display()
    );
    Err(cmd::exec(&mut agent))
}
