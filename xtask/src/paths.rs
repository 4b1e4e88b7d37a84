//! Where things live: the workspace root, cargo's target directory, and the cache
//! (outside the repository) for toolchain helpers.

use std::path::PathBuf;

use anyhow::{bail, Result};

/// The workspace root: the parent of xtask's manifest directory.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().expect("xtask lives inside the workspace").to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the root) or `<root>/target`.
pub fn target_dir() -> PathBuf {
    let root = workspace_root();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// A built binary: `<target>/<release|debug>/<name>`.
pub fn binary(name: &str, release: bool) -> PathBuf {
    target_dir().join(if release { "release" } else { "debug" }).join(name)
}

/// `$XDG_CACHE_HOME/fwctl-guard`, or `~/.cache/fwctl-guard`.
pub fn cache_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if PathBuf::from(&dir).is_absolute() => PathBuf::from(dir),
        _ => match std::env::var_os("HOME") {
            Some(home) if !home.is_empty() => PathBuf::from(home).join(".cache"),
            _ => bail!("neither XDG_CACHE_HOME nor HOME is set: no place for the build cache"),
        },
    };
    Ok(base.join("fwctl-guard"))
}
