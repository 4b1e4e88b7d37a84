//! The one pipeline from a policy file (or directory) to a compiled policy: read, check,
//! resolve every name, compile. The agent installs what this returns, and `policy check`,
//! `explain` and `diff` run the same steps, so a policy they accept is one the agent loads.

use std::{os::unix::ffi::OsStrExt as _, path::Path};

use sha2::{Digest, Sha256};

use super::compile::{compile, CompiledPolicy};
use crate::{names::RuleIds, policy};

/// A policy that passed every check, compiled.
pub struct Loaded {
    pub compiled: CompiledPolicy,
    pub sha256: String,
    pub warnings: Vec<String>,
}

/// Read, validate and compile `path` (a file or a policy directory); Err holds every
/// problem, rendered `file:line:col: ...`.
pub fn load(path: &Path, ids: &RuleIds) -> Result<Loaded, Vec<String>> {
    let file = path.display().to_string();
    let sha256 = digest(path).map_err(|e| vec![format!("{file}: cannot read: {e}")])?;
    let (policy, warnings) =
        policy::load(path).map_err(|d| d.iter().map(|d| d.render(&file)).collect::<Vec<_>>())?;
    let compiled = compile(&policy, ids)
        .map_err(|e| e.into_iter().map(|e| format!("{file}: {e}")).collect::<Vec<_>>())?;
    Ok(Loaded { compiled, sha256, warnings: warnings.iter().map(|w| w.render(&file)).collect() })
}

/// sha256 of the policy file, or of a directory's members (each file's name and contents,
/// in merge order), as `fwctl_guard_policy_info{sha256}` shows it.
pub fn digest(path: &Path) -> std::io::Result<String> {
    if !path.is_dir() {
        return Ok(format!("{:x}", Sha256::digest(std::fs::read(path)?)));
    }
    let mut hash = Sha256::new();
    for file in policy::dir::members(path)? {
        let name = file.file_name().unwrap_or_default().as_bytes();
        let text = std::fs::read(&file)?;
        hash.update((name.len() as u64).to_le_bytes());
        hash.update(name);
        hash.update((text.len() as u64).to_le_bytes());
        hash.update(&text);
    }
    Ok(format!("{:x}", hash.finalize()))
}
