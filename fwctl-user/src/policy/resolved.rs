//! The resolved policy: the types the policy compiler consumes.
//!
//! Every name in the YAML has been turned into the numbers the kernel side sees
//! (`fwctl_common::model::{class, driver, scope}` ids, catalog opcodes, uids, device
//! numbers). An empty list in a [`Match`] means "any"; the YAML forbids empty lists, so
//! an empty list here always comes from an absent key.

use fwctl_common::model::verdict;

/// The only schema version there is.
pub const SCHEMA_VERSION: u32 = 1;

/// Longest `comm` the kernel keeps (`TASK_COMM_LEN` 16 minus the NUL).
pub const COMM_MAX: usize = 15;

/// A validated policy with every name resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `name:` of the file (the `fwctl_guard_policy_info{name}` label).
    pub name: String,
    /// `version:`, always [`SCHEMA_VERSION`].
    pub version: u32,
    pub mode: Mode,
    /// Verdict for a command no rule matches.
    pub default: Action,
    /// Verdict for a command whose payload could not be read (no opcode to match on);
    /// rules are not consulted for it. Defaults to `default` when the file omits it.
    pub on_undecodable: Action,
    /// What happens to a task whose payload changed between the decision and the driver.
    pub on_toctou: OnToctou,
    /// Rules in file order; the first that matches decides.
    pub rules: Vec<Rule>,
}

/// Whether `deny` verdicts are enforced or only recorded (as `would_deny`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Enforce,
    Audit,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Enforce, Mode::Audit];

    pub fn label(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }

    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.label() == label)
    }
}

/// `on_toctou:` — a detected time-of-check/time-of-use race is always counted and marked
/// in the audit log; `kill` also sends the task SIGKILL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OnToctou {
    #[default]
    Log,
    Kill,
}

impl OnToctou {
    pub const ALL: [OnToctou; 2] = [OnToctou::Log, OnToctou::Kill];

    pub fn label(self) -> &'static str {
        match self {
            OnToctou::Log => "log",
            OnToctou::Kill => "kill",
        }
    }
}

/// What a rule (or the default) does with a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Let it through.
    Allow,
    /// Let it through and log it.
    Audit,
    /// Refuse it (`-EPERM`) in enforce mode; record `would_deny` in audit mode.
    Deny,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Allow, Action::Audit, Action::Deny];

    pub fn label(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Audit => "audit",
            Action::Deny => "deny",
        }
    }

    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.label() == label)
    }

    /// The `model::verdict` value of this action in enforce mode.
    pub fn verdict(self) -> u8 {
        match self {
            Action::Allow => verdict::ALLOW,
            Action::Audit => verdict::AUDIT,
            Action::Deny => verdict::DENY,
        }
    }
}

/// One rule: when `matcher` matches, `action` decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Unique within the policy (the `rule` label of the metrics).
    pub name: String,
    pub action: Action,
    pub matcher: Match,
    /// Where the rule starts in the file (1-based), for `explain` and messages.
    pub line: usize,
    pub column: usize,
    /// The file it is in, when the policy is a directory of files.
    pub file: Option<String>,
}

/// What a rule matches: a command matches when every non-empty field contains the
/// command's value (any-of within a field, all-of across fields) and `not` does not match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Match {
    /// `model::class` ids.
    pub classes: Vec<u8>,
    /// `model::driver` ids.
    pub drivers: Vec<u8>,
    /// Opcodes resolved per class (and per fwctl driver); see [`OpcodeSel`].
    pub opcodes: Vec<OpcodeSel>,
    /// mlx5 op_mod, pds endpoint, CXL command id (the `op_mod` of the audit log).
    pub op_mods: Vec<u32>,
    /// `model::scope` ids (only fwctl commands have a scope).
    pub scopes: Vec<u8>,
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
    /// Task names, NUL-padded as the kernel's `comm`.
    pub comms: Vec<[u8; 16]>,
    pub cgroups: Vec<CgroupSel>,
    pub devices: Vec<DeviceSel>,
    /// `fwctl_common::effects::effect` bits the device declares for the command: at least
    /// one of `effects_any` (when not 0) and all of `effects_all`.
    pub effects_any: u32,
    pub effects_all: u32,
    /// `Some(true)`: the device's effects are known and it does not list the opcode;
    /// `Some(false)`: it lists it.
    pub undeclared: Option<bool>,
    /// The rule matches only if this does not (same fields, never nested).
    pub not: Option<Box<Match>>,
}

impl Match {
    /// True when no field restricts anything (and there is no `not`).
    pub fn is_any(&self) -> bool {
        self == &Match::default()
    }

    /// True when the match depends on what the device declares.
    pub fn uses_effects(&self) -> bool {
        self.effects_any != 0 || self.effects_all != 0 || self.undeclared.is_some()
    }
}

/// An opcode of one class. `driver` is set for fwctl (each fwctl driver has its own
/// opcode space) and `None` for the other classes, whose opcodes do not depend on it.
///
/// A name in the YAML yields one `OpcodeSel` per catalog it is found in; a number one per
/// class (and fwctl driver) the rule can match whose opcode width it fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpcodeSel {
    pub class: u8,
    pub driver: Option<u8>,
    pub opcode: u32,
}

/// A cgroup v2 by path below `/sys/fs/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CgroupSel {
    /// Normalized: starts with `/`, no trailing `/` (the root is `/`).
    pub path: String,
    /// The cgroup id (inode number of the directory) if it exists now; `None` until the
    /// agent sees it appear.
    pub id: Option<u64>,
}

/// A device node by number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceSel {
    pub block: bool,
    pub major: u32,
    pub minor: u32,
    /// As written in the policy (a path or `MAJOR:MINOR`).
    pub source: String,
}

impl DeviceSel {
    /// Same node (ignores how it was written).
    pub fn same_node(&self, other: &DeviceSel) -> bool {
        (self.block, self.major, self.minor) == (other.block, other.major, other.minor)
    }
}

/// `comm` as the kernel stores it: up to 15 bytes, NUL-padded to 16.
pub fn comm_bytes(comm: &str) -> Option<[u8; 16]> {
    let bytes = comm.as_bytes();
    if bytes.is_empty() || bytes.len() > COMM_MAX || bytes.contains(&0) {
        return None;
    }
    let mut out = [0u8; 16];
    out[..bytes.len()].copy_from_slice(bytes);
    Some(out)
}
