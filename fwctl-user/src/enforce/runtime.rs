//! The running policy: load → validate → compile → install, at start-up and on every
//! reload (SIGHUP or a change of the file, or of any file of a policy directory). A policy
//! that fails any step never replaces the running one: every error is logged and
//! `fwctl_guard_policy_reload_failures_total` goes up.

use std::{
    os::unix::{ffi::OsStrExt as _, fs::MetadataExt as _},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Result};
use sha2::{Digest, Sha256};

use super::{
    compile::{compile, CompiledPolicy},
    install::PolicyMaps,
    rule_ids::RuleIds,
};
use crate::{metrics::AgentMetrics, policy};

/// A policy file that passed every check, compiled.
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

/// The policy the kernel enforces, and how to replace it.
pub struct Runtime {
    pub path: PathBuf,
    pub ids: RuleIds,
    maps: PolicyMaps,
    metrics: AgentMetrics,
    /// The hook can deny (LSM); otherwise `enforce` policies only record would_deny.
    can_deny: bool,
    /// What the policy's files looked like at the last (attempted) load.
    stamp: Option<Stamp>,
    /// Mode of the installed policy (`fwctl_common::policy::mode`).
    pub mode: Option<u8>,
}

impl Runtime {
    pub fn new(path: PathBuf, ids: RuleIds, maps: PolicyMaps, metrics: AgentMetrics, can_deny: bool) -> Self {
        Self { path, ids, maps, metrics, can_deny, stamp: None, mode: None }
    }

    /// Load and install the policy; on failure the running one stays and the failure is counted.
    pub fn reload(&mut self, why: &str) -> Result<u64> {
        self.stamp = stamp(&self.path);
        let loaded = match load(&self.path, &self.ids) {
            Ok(loaded) => loaded,
            Err(errors) => {
                self.metrics.policy_reload_failures.inc();
                for e in &errors {
                    log::error!("{e}");
                }
                bail!(
                    "policy {} rejected ({why}): {} error(s); the running policy stays",
                    self.path.display(),
                    errors.len()
                );
            }
        };
        for w in &loaded.warnings {
            log::warn!("{w}");
        }
        let generation = match self.maps.install(&loaded.compiled) {
            Ok(g) => g,
            Err(e) => {
                self.metrics.policy_reload_failures.inc();
                return Err(e.context("installing the policy"));
            }
        };
        let c = &loaded.compiled;
        self.mode = Some(c.mode);
        self.metrics.policy_info.reset();
        self.metrics.policy_info.with_label_values(&[&c.name, &loaded.sha256, &c.version.to_string()]).set(1);
        self.metrics.policy_generation.set(generation as i64);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        self.metrics.policy_last_reload.set(now);
        let enforcing = c.mode == fwctl_common::policy::mode::ENFORCE && self.can_deny;
        self.metrics.enforcing.set(enforcing as i64);
        log::info!(
            "policy '{}' (sha256 {}) active as generation {generation} ({why}); enforcing: {enforcing}",
            c.name,
            &loaded.sha256[..12]
        );
        Ok(generation)
    }

    /// Reload if the file (or a file of the directory: added, removed, modified, replaced)
    /// changed since the last (attempted) load.
    pub fn reload_if_changed(&mut self) {
        let now = stamp(&self.path);
        if now.is_some() && now != self.stamp {
            if let Err(e) = self.reload("file changed") {
                log::error!("{e:#}");
            }
        }
    }
}

/// Per file of the policy: name, inode, size, mtime. `install` (a new inode) and an edit in
/// place within one mtime tick (a new size) are both seen.
type Stamp = Vec<(PathBuf, u64, u64, SystemTime)>;

fn stamp(path: &Path) -> Option<Stamp> {
    let files = if path.is_dir() { policy::dir::members(path).ok()? } else { vec![path.to_path_buf()] };
    files
        .into_iter()
        .map(|f| {
            let m = std::fs::metadata(&f).ok()?;
            Some((f, m.ino(), m.len(), m.modified().ok()?))
        })
        .collect()
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
