//! Who we run as, and running commands as root through `sudo` when we are not.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

/// True when the effective user is root (read from `/proc/self/status`, no libc needed).
pub fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

/// The first `name` on `$PATH` that is a file.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// A command that runs `program` as root: directly when we are root, else through
/// `sudo`; an error when neither is possible.
pub fn as_root(program: impl AsRef<Path>) -> Result<Command> {
    if is_root() {
        return Ok(Command::new(program.as_ref()));
    }
    let Some(sudo) = which("sudo") else {
        bail!("`{}` needs root: run this as root or install sudo", program.as_ref().display());
    };
    let mut cmd = Command::new(sudo);
    cmd.arg(program.as_ref());
    Ok(cmd)
}
