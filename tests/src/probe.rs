//! What the running kernel lets the agent do, as `fwctl-guard probe --json` reports it:
//! the one source tests use to decide whether a deny-capable hook exists here. Its keys
//! are a stable contract (extra keys may appear and are ignored); the human-readable
//! `probe` text is for people and is never parsed for decisions.
//!
//! Not for: deciding what a missing capability means for a test (ignored or failed):
//! that is [`crate::require`].

use std::{collections::BTreeMap, path::Path, process::Command, sync::OnceLock};

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

use crate::agent::agent_binary;

/// `fwctl-guard probe --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Probe {
    /// The kernel release (`uname -r`).
    pub kernel: String,
    pub lsm: Lsm,
    /// Per BPF program or map type (`tracepoint`, `lsm`, `fentry`, `ringbuf`, ...): loads or not.
    pub program_types: BTreeMap<String, ProgramType>,
    /// Every hook set the agent knows, in its order of preference.
    pub hook_sets: Vec<HookSet>,
    /// What `hook: auto` picks on this kernel.
    pub auto: Auto,
    /// The passthrough devices found; tests read them as JSON.
    pub devices: Vec<serde_json::Value>,
}

/// The kernel's active LSM list (`/sys/kernel/security/lsm`).
#[derive(Debug, Clone, Deserialize)]
pub struct Lsm {
    pub active: Vec<String>,
    /// `bpf` is in the active list: BPF LSM programs run (they attach either way).
    pub bpf_active: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProgramType {
    pub ok: bool,
    /// Why the kernel refused it.
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HookSet {
    /// `lsm`, `tracepoint`, ... (the `--hook` value).
    pub name: String,
    pub status: HookStatus,
    /// Whether this hook set can refuse a command here.
    pub can_deny: bool,
    /// Why it is not accepted.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookStatus {
    /// Loads, attaches and runs.
    Accepted,
    /// The kernel refuses a program of the set.
    Refused,
    /// Loads and attaches but is never called (BPF LSM compiled in, `bpf` not active).
    AttachesButDoesNotFire,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Auto {
    /// The hook set `hook: auto` picks; `None` when none can run.
    pub hook_set: Option<String>,
    pub can_deny: bool,
}

impl Probe {
    /// Runs `agent probe --json` and reads its output.
    pub fn run(agent: &Path) -> Result<Self> {
        let out = Command::new(agent)
            .args(["probe", "--json"])
            .output()
            .with_context(|| format!("running {} probe --json", agent.display()))?;
        if !out.status.success() {
            bail!(
                "{} probe --json failed ({}): {}",
                agent.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Self::parse(&out.stdout)
    }

    /// Reads the JSON report.
    pub fn parse(json: &[u8]) -> Result<Self> {
        serde_json::from_slice(json).with_context(|| {
            format!("probe --json output does not match the contract:\n{}", String::from_utf8_lossy(json))
        })
    }

    /// The hook set called `name`.
    pub fn hook_set(&self, name: &str) -> Option<&HookSet> {
        self.hook_sets.iter().find(|h| h.name == name)
    }

    /// Whether hook set `name` loads, attaches and runs here.
    pub fn accepts(&self, name: &str) -> bool {
        self.hook_set(name).is_some_and(|h| h.status == HookStatus::Accepted)
    }

    /// One line per hook set, for the reason a test gives when it cannot run.
    pub fn hook_summary(&self) -> String {
        self.hook_sets
            .iter()
            .map(|h| {
                let detail = h.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
                format!("{} {:?}{detail}", h.name, h.status)
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The probe of this machine, run once per test process (the kernel does not change
/// under the tests), or read from `FWCTL_GUARD_PROBE_JSON` where the caller probed
/// already (the VM guest probes once per boot). An error (no `--json`, output
/// off-contract) is kept and returned to every caller: a test that needs the answer
/// fails with it.
pub fn this_kernel() -> Result<&'static Probe, String> {
    static PROBE: OnceLock<Result<Probe, String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let probe = match std::env::var_os("FWCTL_GUARD_PROBE_JSON") {
                Some(path) => std::fs::read(&path)
                    .map_err(anyhow::Error::from)
                    .and_then(|json| Probe::parse(&json))
                    .with_context(|| format!("FWCTL_GUARD_PROBE_JSON={}", path.to_string_lossy())),
                None => Probe::run(&agent_binary()),
            };
            probe.map_err(|e| format!("{e:#}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract's example, plus a key and a hook set a later agent may add.
    const SAMPLE: &str = r#"{
      "kernel": "7.2.13-amd64",
      "lsm": {"active": ["lockdown","capability","landlock","yama","apparmor","bpf"], "bpf_active": true},
      "program_types": {
        "tracepoint": {"ok": true},
        "lsm": {"ok": true},
        "fentry": {"ok": false, "error": "the BPF_PROG_LOAD syscall failed: Operation not permitted"},
        "ringbuf": {"ok": true}
      },
      "hook_sets": [
        {"name": "lsm", "status": "accepted", "can_deny": true, "detail": null},
        {"name": "trampoline", "status": "attaches-but-does-not-fire", "can_deny": false, "detail": "x"},
        {"name": "tracepoint", "status": "refused", "can_deny": false, "detail": "..."}
      ],
      "auto": {"hook_set": "lsm", "can_deny": true},
      "devices": [ {"name": "nvme0", "node": "/dev/nvme0", "kind": "nvme", "driver": "nvme", "dev": "259:0",
                    "type": "char", "parent": null, "parent_pci": "0000:00:04.0", "kernel_driver": "nvme"} ],
      "a_later_key": {"anything": 1}
    }"#;

    #[test]
    fn the_contract_sample_deserialises() {
        let p = Probe::parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(p.kernel, "7.2.13-amd64");
        assert!(p.lsm.bpf_active && p.lsm.active.last().map(String::as_str) == Some("bpf"));
        assert!(p.program_types["lsm"].ok);
        let fentry = &p.program_types["fentry"];
        assert!(!fentry.ok && fentry.error.as_deref().unwrap().contains("Operation not permitted"));
        assert_eq!(p.program_types["tracepoint"].error, None);
        assert!(p.accepts("lsm") && !p.accepts("tracepoint") && !p.accepts("trampoline"));
        assert!(!p.accepts("no-such-set"));
        assert_eq!(p.hook_set("trampoline").unwrap().status, HookStatus::AttachesButDoesNotFire);
        assert_eq!((p.auto.hook_set.as_deref(), p.auto.can_deny), (Some("lsm"), true));
        assert_eq!(p.devices[0]["node"], "/dev/nvme0");
        let summary = p.hook_summary();
        assert!(summary.contains("tracepoint Refused: ..."), "{summary}");
    }

    #[test]
    fn an_unknown_status_or_a_missing_key_is_an_error_not_a_guess() {
        let unknown = SAMPLE.replace("\"refused\"", "\"maybe\"");
        assert!(Probe::parse(unknown.as_bytes()).is_err());
        let missing = SAMPLE.replace("\"auto\"", "\"automatic\"");
        let err = format!("{:#}", Probe::parse(missing.as_bytes()).unwrap_err());
        assert!(err.contains("auto") && err.contains("contract"), "{err}");
        assert!(Probe::parse(b"lsm         ok\n").is_err(), "the human text is not accepted");
    }
}
