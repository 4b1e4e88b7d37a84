//! `fwctl-guard probe [--json]`: what this kernel lets fwctl-guard do, found by trying it:
//! which program types load and attach (the object's capability programs), and for each
//! hook set whether it attaches *and runs* (the set is attached under a temporary pin
//! root and the agent's self-test sends its canaries through it, then it is removed);
//! and which passthrough devices exist. `--json` has stable keys, for scripts and the
//! tests.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::Result;
use fwctl_common::{
    hook_set::{self, HookSet},
    model::device_kind,
};
use serde::Serialize;

use super::devices::{device_lines, DeviceReport};
use crate::{
    devices::inventory,
    kernel::{
        attach::{self, Inputs, Trial},
        capabilities,
        layout::Layout,
        object::EBPF_OBJECT,
        pins::{self, PinRoot},
        selftest::{self, CanaryNode, SelfTest},
    },
};

/// The whole report (`--json`).
#[derive(Debug, Serialize)]
pub struct ProbeReport {
    pub kernel: String,
    pub lsm: LsmReport,
    /// Each program type (and ring buffers), tried for real.
    pub program_types: BTreeMap<&'static str, TypeCheck>,
    /// Each hook set of `fwctl_common::hook_set::ALL`, best first.
    pub hook_sets: Vec<HookSetReport>,
    /// What `hook: auto` would run.
    pub auto: AutoReport,
    pub devices: Vec<DeviceReport>,
    /// Majors `/proc/devices` registers for passthrough drivers.
    pub majors: Vec<MajorReport>,
}

#[derive(Debug, Serialize)]
pub struct LsmReport {
    /// `/sys/kernel/security/lsm`, empty when securityfs is not mounted.
    pub active: Vec<String>,
    /// `bpf` is in the active list: BPF LSM programs run (not only load).
    pub bpf_active: bool,
}

#[derive(Debug, Serialize)]
pub struct TypeCheck {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A hook set's status: `accepted` (it attaches and the self-test saw every program run),
/// `refused` (the kernel's words in `detail`), or `attaches-but-does-not-fire` (it
/// attaches, but the kernel never calls it: BPF LSM compiled in but not an active LSM).
#[derive(Debug, Serialize)]
pub struct HookSetReport {
    pub name: &'static str,
    pub title: &'static str,
    pub status: &'static str,
    pub can_deny: bool,
    pub detail: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct AutoReport {
    pub hook_set: Option<&'static str>,
    pub can_deny: bool,
}

#[derive(Debug, Serialize)]
pub struct MajorReport {
    pub major: u32,
    #[serde(rename = "type")]
    pub node_type: &'static str,
    pub kind: &'static str,
    pub source: String,
}

pub const ACCEPTED: &str = "accepted";
pub const REFUSED: &str = "refused";
pub const SILENT: &str = "attaches-but-does-not-fire";

/// The program types a hook set needs (by `capabilities` check name).
fn needed_types(set: &HookSet) -> &'static [&'static str] {
    match set.id {
        hook_set::id::LSM => &["lsm", "fentry"],
        hook_set::id::TRAMPOLINE => &["fentry"],
        _ => &["tracepoint"],
    }
}

/// Every hook set, tried for real under a temporary pin root; where that cannot be done
/// (no bpffs, no BTF), judged from the program-type checks, saying so.
fn hook_sets(types: &BTreeMap<&'static str, TypeCheck>, bpf_active: bool) -> Vec<HookSetReport> {
    match try_every_set() {
        Ok(reports) => reports,
        Err(e) => hook_set::ALL
            .iter()
            .map(|set| {
                let mut report = status_of(set, types, bpf_active);
                report.detail = Some(format!(
                    "{} (not attached for real: {e:#})",
                    report.detail.as_deref().unwrap_or("its program types load")
                ));
                report
            })
            .collect(),
    }
}

/// Attach each hook set in turn under a temporary pin root and run the self-test.
fn try_every_set() -> anyhow::Result<Vec<HookSetReport>> {
    let layout = Layout::of_running_kernel()?;
    let root_path = PathBuf::from(format!("/sys/fs/bpf/fwctl-guard-probe-{}", std::process::id()));
    let root = PinRoot::lock(&root_path)?;
    // The devices the agent would watch with no declared ones: the io_uring canary goes to
    // a controller node the programs must recognise as NVMe, as in the agent.
    let mut watchlist = inventory::watchlist(Path::new("/sys"), &[])?;
    let selftest = SelfTest::new(CanaryNode::open()?, selftest::uring_node(&watchlist.sysfs));
    let build = pins::build_id(EBPF_OBJECT, &layout.offsets, PROBE_RING_BYTES);
    watchlist.entries.push(selftest.watch_entry());
    let inputs = Inputs {
        layout: &layout,
        ring_buffer_bytes: PROBE_RING_BYTES,
        entries: &watchlist.entries,
        root: &root,
        build: &build,
        selftest: &selftest,
        agent: pins::Agent::current()?,
    };
    let mut reports = Vec::new();
    for set in hook_set::ALL {
        let (status, detail) = match attach::try_set(set, &inputs)? {
            Trial::Runs(attached) => {
                let proven = attached.proof.proofs.iter().filter(|p| p.proven()).count();
                attached.pins.remove()?;
                (ACCEPTED, Some(format!("{proven} program(s) proven to run by canary")))
            }
            Trial::Silent(proof) => (SILENT, Some(proof.failures().join("; "))),
            Trial::Refused(e) => (REFUSED, Some(format!("{e:#}"))),
        };
        let can_deny = set.can_deny && status == ACCEPTED;
        reports.push(HookSetReport { name: set.label, title: set.title, status, can_deny, detail });
    }
    root.remove_all()?;
    Ok(reports)
}

/// The probe's ring buffer: small, nothing is read from it.
const PROBE_RING_BYTES: u32 = 4096;

/// A hook set's status from the program-type checks and the active LSM list.
fn status_of(set: &HookSet, types: &BTreeMap<&'static str, TypeCheck>, bpf_active: bool) -> HookSetReport {
    let refused: Vec<String> = needed_types(set)
        .iter()
        .filter_map(|t| match types.get(t) {
            Some(TypeCheck { ok: true, .. }) => None,
            Some(TypeCheck { error, .. }) => Some(format!("{t}: {}", error.as_deref().unwrap_or("refused"))),
            None => Some(format!("{t}: not checked")),
        })
        .collect();
    let (status, detail) = if !refused.is_empty() {
        (REFUSED, Some(refused.join("; ")))
    } else if set.id == hook_set::id::LSM && !bpf_active {
        (
            SILENT,
            Some("bpf is not in the active LSM list (/sys/kernel/security/lsm): BPF LSM programs load but never run".into()),
        )
    } else {
        (ACCEPTED, None)
    };
    HookSetReport {
        name: set.label,
        title: set.title,
        status,
        can_deny: set.can_deny && status == ACCEPTED,
        detail,
    }
}

/// Probe the kernel and list the devices.
pub fn report() -> ProbeReport {
    let active: Vec<String> = std::fs::read_to_string("/sys/kernel/security/lsm")
        .map(|l| l.trim().split(',').filter(|s| !s.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    let bpf_active = active.iter().any(|l| l == "bpf");
    let program_types: BTreeMap<_, _> = capabilities::check_all()
        .into_iter()
        .map(|c| (c.name, TypeCheck { ok: c.result.is_ok(), error: c.result.err() }))
        .collect();
    let hook_sets = hook_sets(&program_types, bpf_active);
    let auto = hook_sets.iter().find(|s| s.status == ACCEPTED);
    let majors = inventory::major_entries(&inventory::parse_proc_devices(
        &std::fs::read_to_string("/proc/devices").unwrap_or_default(),
    ));
    ProbeReport {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
        lsm: LsmReport { active, bpf_active },
        program_types,
        auto: AutoReport { hook_set: auto.map(|s| s.name), can_deny: auto.is_some_and(|s| s.can_deny) },
        hook_sets,
        devices: inventory::scan_sysfs(Path::new("/sys")).iter().map(|d| DeviceReport::of(d, None)).collect(),
        majors: majors
            .into_iter()
            .map(|m| MajorReport {
                major: m.major,
                node_type: if m.block { "block" } else { "char" },
                kind: device_kind::label(m.info.kind),
                source: m.source,
            })
            .collect(),
    }
}

/// `fwctl-guard probe [--json]`.
pub fn run(json: bool) -> Result<()> {
    let report = report();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("kernel: {}", report.kernel);
    if !report.lsm.active.is_empty() {
        println!("active LSMs: {}", report.lsm.active.join(","));
    }
    println!("\nhooks and program types (tried for real):");
    for (name, check) in &report.program_types {
        match &check.error {
            None => println!("  {name:<11} ok"),
            Some(e) => println!("  {name:<11} refused: {e}"),
        }
    }
    println!("\nhook sets (`hook: auto` takes the first accepted):");
    for set in &report.hook_sets {
        println!(
            "  {:<11} {}{}{}",
            set.name,
            set.status,
            if set.can_deny { " (can deny)" } else { " (observe only)" },
            set.detail.as_ref().map_or(String::new(), |d| format!(": {d}"))
        );
    }
    println!("\npassthrough devices:");
    let devices = inventory::scan_sysfs(Path::new("/sys"));
    for line in device_lines(&devices) {
        println!("  {line}");
    }
    println!("\nregistered passthrough majors (/proc/devices):");
    if report.majors.is_empty() {
        println!("  none");
    }
    for m in &report.majors {
        println!("  {:<5} {:<6} {} ({})", m.major, m.node_type, m.kind, m.source);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(ok: &[&'static str], refused: &[&'static str]) -> BTreeMap<&'static str, TypeCheck> {
        ok.iter()
            .map(|t| (*t, TypeCheck { ok: true, error: None }))
            .chain(refused.iter().map(|t| (*t, TypeCheck { ok: false, error: Some("EPERM".into()) })))
            .collect()
    }

    #[test]
    fn a_set_is_accepted_only_when_every_type_it_needs_is() {
        let all = types(&["lsm", "fentry", "tracepoint"], &[]);
        assert_eq!(status_of(&hook_set::LSM, &all, true).status, ACCEPTED);
        let host = types(&["tracepoint"], &["lsm", "fentry"]);
        let lsm = status_of(&hook_set::LSM, &host, true);
        assert_eq!(lsm.status, REFUSED);
        assert!(lsm.detail.unwrap().contains("lsm: EPERM"));
        assert_eq!(status_of(&hook_set::TRACEPOINT, &host, true).status, ACCEPTED);
    }

    #[test]
    fn bpf_lsm_that_is_not_active_is_reported_as_silent() {
        let all = types(&["lsm", "fentry", "tracepoint"], &[]);
        let lsm = status_of(&hook_set::LSM, &all, false);
        assert_eq!(lsm.status, SILENT);
        assert!(lsm.detail.unwrap().contains("active LSM list"));
    }

    #[test]
    fn json_keys_are_stable() {
        let report = ProbeReport {
            kernel: "7.2".into(),
            lsm: LsmReport { active: vec!["bpf".into()], bpf_active: true },
            program_types: types(&["lsm"], &["fentry"]),
            hook_sets: vec![status_of(&hook_set::TRACEPOINT, &types(&["tracepoint"], &[]), true)],
            auto: AutoReport { hook_set: Some("tracepoint"), can_deny: false },
            devices: Vec::new(),
            majors: Vec::new(),
        };
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["lsm"]["bpf_active"], true);
        assert_eq!(v["program_types"]["lsm"]["ok"], true);
        assert_eq!(v["program_types"]["fentry"]["error"], "EPERM");
        assert_eq!(v["hook_sets"][0]["name"], "tracepoint");
        assert_eq!(v["hook_sets"][0]["status"], "accepted");
        assert_eq!(v["hook_sets"][0]["can_deny"], false);
        assert_eq!(v["auto"]["hook_set"], "tracepoint");
        assert_eq!(v["auto"]["can_deny"], false);
        assert!(v["devices"].is_array() && v["majors"].is_array());
    }
}
