//! The running policy: load → validate → compile → install, at start-up and on every
//! reload (SIGHUP or a change of the file, or of any file of a policy directory). A policy
//! that fails any step never replaces the running one: every error is logged and
//! `fwctl_guard_policy_reload_failures_total` goes up.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Result};
use tokio::{signal::unix::Signal, sync::watch as shutdown_watch};

use super::{compile::CompiledPolicy, load::load, metrics::PolicyMetrics};
use crate::{names::RuleIds, policy};

/// Whether deny verdicts are enforced: the policy says `enforce`, the hook set can deny,
/// and the self-test proved its deny programs run. Shared by the policy runtime and the
/// self-test, each of which sets its part; `fwctl_guard_enforcing` follows.
#[derive(Clone)]
pub struct Enforcement(Arc<EnforcementState>);

struct EnforcementState {
    set_can_deny: bool,
    policy_enforces: AtomicBool,
    proven: AtomicBool,
    enforcing: prometheus::IntGauge,
}

impl Enforcement {
    /// `set_can_deny`: the attached hook set can refuse commands; `proven`: its programs
    /// passed the self-test.
    pub fn new(set_can_deny: bool, proven: bool, metrics: &PolicyMetrics) -> Self {
        Self(Arc::new(EnforcementState {
            set_can_deny,
            policy_enforces: AtomicBool::new(false),
            proven: AtomicBool::new(proven),
            enforcing: metrics.enforcing.clone(),
        }))
    }

    /// The active policy is (not) in enforce mode; whether deny verdicts are now enforced.
    pub fn set_policy_enforces(&self, enforces: bool) -> bool {
        self.0.policy_enforces.store(enforces, Ordering::Relaxed);
        self.refresh()
    }

    /// The self-test did (not) prove the hook set runs.
    pub fn set_proven(&self, proven: bool) -> bool {
        self.0.proven.store(proven, Ordering::Relaxed);
        self.refresh()
    }

    pub fn enforcing(&self) -> bool {
        self.0.set_can_deny
            && self.0.policy_enforces.load(Ordering::Relaxed)
            && self.0.proven.load(Ordering::Relaxed)
    }

    fn refresh(&self) -> bool {
        let enforcing = self.enforcing();
        self.0.enforcing.set(enforcing as i64);
        enforcing
    }
}

/// Where a compiled policy is installed (the kernel's policy maps, `kernel::PolicyMaps`).
pub trait PolicyStore: Send {
    /// Install `policy` so that it replaces the active one in one step; returns its
    /// generation (1 for the first policy ever installed in this store).
    fn install(&mut self, policy: &CompiledPolicy) -> Result<u64>;
}

/// The policy the kernel enforces, and how to replace it.
pub struct Runtime {
    pub path: PathBuf,
    pub ids: RuleIds,
    store: Box<dyn PolicyStore>,
    metrics: PolicyMetrics,
    /// Whether deny verdicts are enforced (shared with the self-test).
    enforcement: Enforcement,
    /// What the policy's files looked like at the last (attempted) load.
    stamp: Option<Stamp>,
    /// Mode of the installed policy (`fwctl_common::policy::mode`).
    pub mode: Option<u8>,
}

impl Runtime {
    pub fn new(
        path: PathBuf,
        ids: RuleIds,
        store: Box<dyn PolicyStore>,
        metrics: PolicyMetrics,
        enforcement: Enforcement,
    ) -> Self {
        Self { path, ids, store, metrics, enforcement, stamp: None, mode: None }
    }

    /// Load and install the policy; on failure the running one stays and the failure is counted.
    pub fn reload(&mut self, why: &str) -> Result<u64> {
        self.stamp = stamp(&self.path);
        let loaded = match load(&self.path, &self.ids) {
            Ok(loaded) => loaded,
            Err(errors) => {
                self.metrics.reload_failures.inc();
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
        let generation = match self.store.install(&loaded.compiled) {
            Ok(g) => g,
            Err(e) => {
                self.metrics.reload_failures.inc();
                return Err(e.context("installing the policy"));
            }
        };
        let c = &loaded.compiled;
        self.mode = Some(c.mode);
        self.metrics.info.reset();
        self.metrics.info.with_label_values(&[&c.name, &loaded.sha256, &c.version.to_string()]).set(1);
        self.metrics.generation.set(generation as i64);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        self.metrics.last_reload.set(now);
        let enforcing = self.enforcement.set_policy_enforces(c.mode == fwctl_common::policy::mode::ENFORCE);
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

/// Reload the policy on SIGHUP, and when its file changes (checked every 2 s), until
/// `shutdown` flips. Without a policy, SIGHUP is only logged.
pub async fn watch(
    mut runtime: Option<Runtime>,
    mut hup: Signal,
    mut shutdown: shutdown_watch::Receiver<bool>,
) -> Result<()> {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = hup.recv() => match runtime.as_mut() {
                Some(runtime) => {
                    if let Err(e) = runtime.reload("SIGHUP") {
                        log::error!("{e:#}");
                        eprintln!("fwctl-guard: {e:#}");
                    }
                }
                None => log::info!("SIGHUP: no policy is configured, nothing to reload"),
            },
            _ = tick.tick() => {
                if let Some(runtime) = runtime.as_mut() {
                    runtime.reload_if_changed();
                }
            }
            _ = shutdown.changed() => return Ok(()),
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
