//! Names of the maps and globals in fwctl-guard's eBPF object: the contract between the
//! eBPF crate, which defines them (`#[map] static COUNTERS`, the names are the statics'
//! identifiers), and the agent, which looks them up. The hook programs' names are in
//! [`crate::hook_set`]; the capability programs' are here. The agent's tests check that the
//! built object has exactly these maps and programs. Not for: what the maps hold (`model`,
//! `policy`, `effects`).

/// Map names.
pub mod map {
    pub const DEVICES: &str = "DEVICES";
    pub const INFLIGHT: &str = "INFLIGHT";
    pub const DECIDED: &str = "DECIDED";
    pub const TOCTOU: &str = "TOCTOU";
    pub const COUNTERS: &str = "COUNTERS";
    pub const MAILBOX_PENDING: &str = "MAILBOX_PENDING";
    pub const MAILBOX_COUNTERS: &str = "MAILBOX_COUNTERS";
    pub const POLICY: &str = "POLICY";
    pub const RULES: &str = "RULES";
    pub const POLICY_INDEX: &str = "POLICY_INDEX";
    pub const EFFECTS: &str = "EFFECTS";
    pub const RPC_CHECKS: &str = "RPC_CHECKS";
    pub const STATS: &str = "STATS";
    pub const EVENTS: &str = "EVENTS";
    pub const META: &str = "META";
    pub const RULE_NAMES: &str = "RULE_NAMES";
    pub const CANARY: &str = "CANARY";
    pub const BYPASS: &str = "BYPASS";
    /// The result programs' working set when they decide a command after the fact.
    pub const CAUGHT: &str = "CAUGHT";

    /// Every map of the object.
    pub const ALL: [&str; 19] = [
        DEVICES,
        INFLIGHT,
        DECIDED,
        TOCTOU,
        COUNTERS,
        MAILBOX_PENDING,
        MAILBOX_COUNTERS,
        POLICY,
        RULES,
        POLICY_INDEX,
        EFFECTS,
        RPC_CHECKS,
        STATS,
        EVENTS,
        META,
        RULE_NAMES,
        CANARY,
        BYPASS,
        CAUGHT,
    ];
}

/// Globals the agent sets at load time.
pub mod global {
    /// `model::KernelOffsets` for the running kernel.
    pub const KERNEL_OFFSETS: &str = "KERNEL_OFFSETS";
}

/// Do-nothing programs `fwctl-guard probe` loads to learn which program types the kernel
/// accepts; the agent never attaches them.
pub mod capability_program {
    pub const TRACEPOINT: &str = "fwctl_probe_tracepoint";
    pub const LSM: &str = "fwctl_probe_lsm";
    pub const FENTRY: &str = "fwctl_probe_fentry";

    pub const ALL: [&str; 3] = [TRACEPOINT, LSM, FENTRY];
}
