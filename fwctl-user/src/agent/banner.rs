//! What the agent prints once it runs: where its programs are, which hook set it uses and
//! whether it enforces, the policy, devices, effects, and where metrics and the audit log go.

use std::{net::SocketAddr, path::Path};

use fwctl_common::hook_set::HookSet;

use crate::{devices::effects::refresh::Summary, kernel::selftest::Report};

pub struct Banner<'a> {
    pub adopted: bool,
    pub pin_dir: &'a Path,
    pub replaced: usize,
    pub set: &'static HookSet,
    pub programs: &'a [&'static str],
    /// The self-test after attaching.
    pub proof: &'a Report,
    /// The policy file and whether deny verdicts are enforced.
    pub policy: Option<(&'a Path, bool)>,
    pub watch_entries: usize,
    pub effects: Summary,
    pub metrics: SocketAddr,
    /// `None`: standard output.
    pub audit_log: Option<&'a Path>,
}

impl Banner<'_> {
    pub fn print(&self) {
        println!("fwctl-guard {}: counting and auditing passthrough commands", env!("CARGO_PKG_VERSION"));
        println!(
            "  programs:  {} {}{}",
            if self.adopted { "adopted, still attached, from" } else { "attached and pinned in" },
            self.pin_dir.display(),
            if self.replaced == 0 {
                String::new()
            } else {
                format!(" (replaced {} earlier set(s) after attaching)", self.replaced)
            }
        );
        let programs = self.programs.join(", ");
        if self.set.can_deny {
            println!("  hook:      {} ({programs}); {}", self.set.title, self.set.cost);
        } else {
            println!(
                "  hook:      {} ({programs}) — audit only, nothing is denied; {}",
                self.set.title, self.set.cost
            );
        }
        let proven = self.proof.proofs.iter().filter(|p| p.proven()).count();
        let untestable: Vec<&str> =
            self.proof.proofs.iter().filter(|p| !p.testable).map(|p| p.program).collect();
        println!(
            "  self-test: {proven} program(s) proven to run by canary (re-checked every minute){}",
            if untestable.is_empty() {
                String::new()
            } else {
                format!("; no canary reaches {} here", untestable.join(", "))
            }
        );
        match self.policy {
            Some((path, enforcing)) => println!(
                "  policy:    {} ({}; reloads on SIGHUP or when the file changes)",
                path.display(),
                if enforcing { "enforcing" } else { "not enforcing: deny is recorded as would_deny" }
            ),
            None => println!("  policy:    none (every command allowed and counted)"),
        }
        println!("  devices:   {} watch entries (see --verbose for the list)", self.watch_entries);
        println!(
            "  effects:   declared by {}{}",
            if self.effects.read.is_empty() { "no device".to_string() } else { self.effects.read.join(", ") },
            if self.effects.failed.is_empty() {
                String::new()
            } else {
                format!("; unknown for {} (could not be read, see the log)", self.effects.failed.join(", "))
            }
        );
        println!("  metrics:   http://{}/metrics", self.metrics);
        println!(
            "  audit log: {}",
            self.audit_log.map_or("standard output".to_string(), |p| p.display().to_string())
        );
    }
}
