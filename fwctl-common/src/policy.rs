//! The policy as the kernel evaluates it: fixed-size rules in two slots, a candidate
//! index keyed by (class, driver, opcode), and [`decide`], the evaluation itself.
//!
//! The agent compiles a YAML policy into these tables (fwctl-user `enforce::compile`), writes
//! the inactive slot, then flips the active slot in one map update: a command is always
//! evaluated against exactly one complete policy. The eBPF side and `fwctl-guard policy
//! explain` run the same [`decide`] over their own [`RuleSource`], so what explain says is
//! what the kernel does.
//!
//! Work per command is bounded: at most [`INDEX_PROBES`] index lookups, then at most
//! [`MAX_RULES`] candidate rules, each a fixed number of comparisons (at most
//! [`MAX_VALUES`] per field).
//!
//! Not for: reading, checking or compiling YAML (fwctl-user `policy` and `enforce`).

use crate::{
    effects::{declared_effects, effect, EffectsSource},
    model::{decode_status, verdict, Command},
};

/// Rules per policy (a candidate set is one u64 bitmap).
pub const MAX_RULES: usize = 64;
/// Values per matched field (uids, comms, ...).
pub const MAX_VALUES: usize = 4;
/// Index lookups per command: (driver, opcode), (any, opcode), (driver, any), (any, any).
pub const INDEX_PROBES: usize = 4;
/// `driver`/`opcode` in an index key meaning "any".
pub const ANY_DRIVER: u8 = 0xff;
pub const ANY_OPCODE: u32 = u32::MAX - 1;

/// Rule ids with a fixed meaning; compiled rules get ids from [`FIRST_RULE_ID`] up.
pub mod rule_id {
    /// No rule matched: the policy's `default`.
    pub const DEFAULT: u16 = 0;
    /// The payload could not be decoded: the policy's `on_undecodable`.
    pub const UNDECODABLE: u16 = 1;
    /// No policy loaded.
    pub const NO_POLICY: u16 = 2;
    pub const FIRST_RULE_ID: u16 = 16;
}

/// Policy actions.
pub mod action {
    pub const ALLOW: u8 = 0;
    pub const AUDIT: u8 = 1;
    pub const DENY: u8 = 2;
}

/// Policy modes.
pub mod mode {
    pub const ENFORCE: u8 = 0;
    pub const AUDIT: u8 = 1;
}

/// The active policy's header (value of the one-entry `POLICY` array map).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyHeader {
    pub generation: u64,
    /// Slot (0 or 1) whose rules and index are live.
    pub slot: u32,
    pub mode: u8,
    pub default_action: u8,
    pub on_undecodable: u8,
    /// 1 once a policy is loaded.
    pub loaded: u8,
    /// 1 when a rule matches on declared effects: only then are they looked up.
    pub uses_effects: u8,
    /// [`on_toctou::LOG`] or [`on_toctou::KILL`].
    pub on_toctou: u8,
    pub _pad: [u8; 6],
}

/// What to do when a payload changed between the decision and the driver.
pub mod on_toctou {
    /// Count it and mark the command's audit record.
    pub const LOG: u8 = 0;
    /// Also send the task SIGKILL.
    pub const KILL: u8 = 1;
}

/// An opcode in a `not:` block: class-specific, like the index.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpcodeEntry {
    pub opcode: u32,
    pub class: u8,
    /// [`ANY_DRIVER`] for every driver of the class.
    pub driver: u8,
    pub _pad: [u8; 2],
}

/// Conditions on a command's subject and attributes. A zero mask or count means "any".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Matcher {
    /// Bit `1 << class`.
    pub class_mask: u8,
    /// Bit `1 << scope` for the four fwctl scopes; [`SCOPE_NONE_BIT`] for non-fwctl.
    pub scope_mask: u8,
    pub n_opcodes: u8,
    pub n_op_mods: u8,
    pub n_uids: u8,
    pub n_gids: u8,
    pub n_comms: u8,
    pub n_cgroups: u8,
    pub n_devices: u8,
    /// [`declared::ANY`], [`declared::UNDECLARED`] or [`declared::DECLARED`].
    pub declared: u8,
    pub _pad: [u8; 2],
    /// Bit `1 << driver` (drivers < 32).
    pub driver_mask: u32,
    /// `effects::effect` bits: at least one of `effects_any` (if any) and every one of
    /// `effects_all` must be declared for the command.
    pub effects_any: u32,
    pub effects_all: u32,
    pub opcodes: [OpcodeEntry; MAX_VALUES],
    pub op_mods: [u32; MAX_VALUES],
    pub uids: [u32; MAX_VALUES],
    pub gids: [u32; MAX_VALUES],
    /// `device_number::device_key(block, major, minor)`.
    pub devices: [u64; MAX_VALUES],
    pub cgroups: [u64; MAX_VALUES],
    pub comms: [[u8; 16]; MAX_VALUES],
}

/// `Matcher::declared`: whether the device must (not) list the command.
pub mod declared {
    pub const ANY: u8 = 0;
    /// The device's effects are known and it does not list the opcode (`undeclared: true`).
    pub const UNDECLARED: u8 = 1;
    /// The device lists the opcode (`undeclared: false`).
    pub const DECLARED: u8 = 2;
}

/// Scope bit for commands without a fwctl scope (and out-of-range scopes).
pub const SCOPE_NONE_BIT: u8 = 0x80;

/// A compiled rule. Its class/driver/opcode selection lives in the index.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompiledRule {
    pub rule_id: u16,
    pub action: u8,
    /// 1 when `not` is set.
    pub has_not: u8,
    pub _pad: [u8; 4],
    pub matcher: Matcher,
    pub not: Matcher,
}

/// Key of the candidate index: which rules may match a (class, driver, opcode).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IndexKey {
    pub opcode: u32,
    pub slot: u8,
    pub class: u8,
    pub driver: u8,
    pub _pad: u8,
}

impl IndexKey {
    pub const fn new(slot: u32, class: u8, driver: u8, opcode: u32) -> Self {
        Self { opcode, slot: slot as u8, class, driver, _pad: 0 }
    }
}

/// Who sent a command and through which node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    pub uid: u32,
    pub gid: u32,
    pub comm: [u8; 16],
    pub cgroup_id: u64,
    /// `device_number::device_key(block, major, minor)` of the node.
    pub device: u64,
    /// What the node's device declares about the command (`effects::declared_effects`),
    /// set by [`evaluate`] when the policy has effects rules.
    pub effects: u32,
    pub _pad: u32,
}

/// Where [`decide`] gets the rules, the index and the devices' declared effects from.
pub trait RuleSource: EffectsSource {
    /// What `device` declares about `command` (`effects::declared_effects`); the eBPF
    /// side runs it as a subprogram of its own to keep the rule walk's frame small.
    #[inline(always)]
    fn declared_effects(&self, device: u64, command: &Command) -> u32 {
        declared_effects(self, device, command)
    }
    /// The candidate bitmap stored for `key` (0 if none).
    fn candidates(&self, key: &IndexKey) -> u64;
    /// The first rule, in policy order, among `candidates` of `slot` for which
    /// [`rule_matches`] holds: `(rule_id, action)`. The default walks the bitmap; the eBPF
    /// side overrides it with `bpf_loop` so the verifier checks the rule test once rather
    /// than once per possible rule.
    fn first_match(
        &self,
        slot: u32,
        candidates: u64,
        command: &Command,
        subject: &Subject,
    ) -> Option<(u16, u8)> {
        let mut index = 0u32;
        while index < MAX_RULES as u32 {
            if candidates & (1u64 << index) != 0 {
                if let Some(rule) = self.rule(slot, index) {
                    if rule_matches(rule, command, subject) {
                        return Some((rule.rule_id, rule.action));
                    }
                }
            }
            index += 1;
        }
        None
    }
    /// Rule `index` (0..MAX_RULES) of `slot`.
    fn rule(&self, slot: u32, index: u32) -> Option<&CompiledRule>;
}

/// The first match of a rule walk packed into one `u32`, as the eBPF `bpf_loop` callback
/// stores it in the walk's state: 0 when no rule matched, else `(rule_id << 8 | action) + 1`.
/// Every `(rule_id, action)` packs to a distinct non-zero value.
#[inline(always)]
pub const fn pack_match(rule_id: u16, action: u8) -> u32 {
    ((rule_id as u32) << 8 | action as u32) + 1
}

/// The `(rule_id, action)` a [`pack_match`] value holds; `None` for 0 (no match).
#[inline(always)]
pub const fn unpack_match(found: u32) -> Option<(u16, u8)> {
    if found == 0 {
        None
    } else {
        Some((((found - 1) >> 8) as u16, ((found - 1) & 0xff) as u8))
    }
}

/// A rule's own conditions (its class/driver/opcode already matched through the index).
#[inline(always)]
pub fn rule_matches(rule: &CompiledRule, command: &Command, subject: &Subject) -> bool {
    matches(&rule.matcher, command, subject) && (rule.has_not == 0 || !matches(&rule.not, command, subject))
}

/// The outcome for one command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// `model::verdict::*`.
    pub verdict: u8,
    pub rule_id: u16,
}

/// The verdict for an action under the policy's mode. `can_deny`: the hook runs before
/// the driver and may refuse (LSM); otherwise a deny is recorded as `would_deny`.
#[inline(always)]
pub fn verdict_of(action: u8, policy_mode: u8, can_deny: bool) -> u8 {
    match action {
        action::ALLOW => verdict::ALLOW,
        action::AUDIT => verdict::AUDIT,
        _ if policy_mode == mode::ENFORCE && can_deny => verdict::DENY,
        _ => verdict::WOULD_DENY,
    }
}

/// Look up what the device declares about the command when the policy needs it (into
/// `subject.effects`), then [`decide`]. The one entry point of the kernel and `explain`.
#[inline(always)]
pub fn evaluate<S: RuleSource>(
    source: &S,
    header: &PolicyHeader,
    command: &Command,
    subject: &mut Subject,
    can_deny: bool,
) -> Decision {
    subject.effects =
        if header.uses_effects != 0 { source.declared_effects(subject.device, command) } else { 0 };
    decide(source, header, command, subject, can_deny)
}

/// Evaluate the active policy for a command: first matching candidate rule decides,
/// else the policy's default; undecodable commands get `on_undecodable`.
#[inline(always)]
pub fn decide<S: RuleSource>(
    source: &S,
    header: &PolicyHeader,
    command: &Command,
    subject: &Subject,
    can_deny: bool,
) -> Decision {
    if header.loaded == 0 {
        return Decision { verdict: verdict::ALLOW, rule_id: rule_id::NO_POLICY };
    }
    if command.decode != decode_status::OK {
        return Decision {
            verdict: verdict_of(header.on_undecodable, header.mode, can_deny),
            rule_id: rule_id::UNDECODABLE,
        };
    }
    let slot = header.slot;
    let candidates = source.candidates(&IndexKey::new(slot, command.class, command.driver, command.opcode))
        | source.candidates(&IndexKey::new(slot, command.class, ANY_DRIVER, command.opcode))
        | source.candidates(&IndexKey::new(slot, command.class, command.driver, ANY_OPCODE))
        | source.candidates(&IndexKey::new(slot, command.class, ANY_DRIVER, ANY_OPCODE));
    if candidates != 0 {
        if let Some((rule_id, rule_action)) = source.first_match(slot, candidates, command, subject) {
            return Decision { verdict: verdict_of(rule_action, header.mode, can_deny), rule_id };
        }
    }
    Decision { verdict: verdict_of(header.default_action, header.mode, can_deny), rule_id: rule_id::DEFAULT }
}

/// Whether every constrained field of `m` holds for the command and subject.
#[inline(always)]
pub fn matches(m: &Matcher, command: &Command, subject: &Subject) -> bool {
    if m.class_mask != 0 && (command.class >= 8 || m.class_mask & (1 << command.class) == 0) {
        return false;
    }
    if m.driver_mask != 0 && (command.driver >= 32 || m.driver_mask & (1 << command.driver) == 0) {
        return false;
    }
    if m.scope_mask != 0 {
        let bit = if command.scope < 4 { 1u8 << command.scope } else { SCOPE_NONE_BIT };
        if m.scope_mask & bit == 0 {
            return false;
        }
    }
    if m.n_opcodes != 0 && !opcode_in(&m.opcodes, m.n_opcodes, command) {
        return false;
    }
    if !effects_match(m, subject.effects) {
        return false;
    }
    any_of(&m.op_mods, m.n_op_mods, command.op_mod)
        && any_of(&m.uids, m.n_uids, subject.uid)
        && any_of(&m.gids, m.n_gids, subject.gid)
        && any_of(&m.devices, m.n_devices, subject.device)
        && any_of(&m.cgroups, m.n_cgroups, subject.cgroup_id)
        && any_of(&m.comms, m.n_comms, subject.comm)
}

/// The matcher's effects conditions against what the device declared. Nothing matches
/// when the device's effects are unknown; `effects` conditions need a declared command.
#[inline(always)]
fn effects_match(m: &Matcher, word: u32) -> bool {
    if m.declared == declared::ANY && m.effects_any == 0 && m.effects_all == 0 {
        return true;
    }
    if word & effect::KNOWN == 0 {
        return false;
    }
    let is_declared = word & effect::DECLARED != 0;
    match m.declared {
        declared::UNDECLARED if is_declared => return false,
        declared::DECLARED if !is_declared => return false,
        _ => {}
    }
    if (m.effects_any != 0 || m.effects_all != 0) && !is_declared {
        return false;
    }
    (m.effects_any == 0 || word & m.effects_any != 0) && word & m.effects_all == m.effects_all
}

/// True when `n` is 0 (field unconstrained) or one of the first `n` values equals `value`.
#[inline(always)]
fn any_of<T: PartialEq + Copy>(values: &[T; MAX_VALUES], n: u8, value: T) -> bool {
    if n == 0 {
        return true;
    }
    let mut i = 0;
    while i < MAX_VALUES {
        if (i as u8) < n && values[i] == value {
            return true;
        }
        i += 1;
    }
    false
}

#[inline(always)]
fn opcode_in(entries: &[OpcodeEntry; MAX_VALUES], n: u8, command: &Command) -> bool {
    let mut i = 0;
    while i < MAX_VALUES {
        let e = &entries[i];
        if (i as u8) < n
            && e.opcode == command.opcode
            && e.class == command.class
            && (e.driver == ANY_DRIVER || e.driver == command.driver)
        {
            return true;
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{collections::BTreeMap, vec::Vec};

    use super::*;
    use crate::model::{class, driver, ioctl, scope};

    /// A userspace RuleSource over plain collections.
    #[derive(Default)]
    struct Tables {
        index: BTreeMap<IndexKey, u64>,
        rules: Vec<CompiledRule>,
        effects: BTreeMap<crate::effects::EffectsKey, u32>,
    }

    impl EffectsSource for Tables {
        fn stored_effects(&self, key: &crate::effects::EffectsKey) -> Option<u32> {
            self.effects.get(key).copied()
        }
    }

    impl RuleSource for Tables {
        fn candidates(&self, key: &IndexKey) -> u64 {
            self.index.get(key).copied().unwrap_or(0)
        }
        fn rule(&self, slot: u32, index: u32) -> Option<&CompiledRule> {
            (slot == 0).then(|| self.rules.get(index as usize)).flatten()
        }
    }

    fn header(default_action: u8, policy_mode: u8) -> PolicyHeader {
        PolicyHeader {
            generation: 1,
            slot: 0,
            mode: policy_mode,
            default_action,
            on_undecodable: action::DENY,
            loaded: 1,
            uses_effects: 1,
            on_toctou: on_toctou::LOG,
            _pad: [0; 6],
        }
    }

    fn format_nvm() -> Command {
        Command { opcode: 0x80, ..Command::new(ioctl::NVME_ADMIN_CMD, class::NVME_ADMIN, driver::NVME) }
    }

    fn comm(name: &str) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[..name.len()].copy_from_slice(name.as_bytes());
        c
    }

    /// Rule 0: allow format-nvm from comm fwupd; rule 1: deny format-nvm.
    fn updater_policy() -> Tables {
        let mut t = Tables::default();
        let mut allow = CompiledRule { rule_id: 16, action: action::ALLOW, ..Default::default() };
        allow.matcher.comms[0] = comm("fwupd");
        allow.matcher.n_comms = 1;
        let deny = CompiledRule { rule_id: 17, action: action::DENY, ..Default::default() };
        t.rules = std::vec![allow, deny];
        t.index.insert(IndexKey::new(0, class::NVME_ADMIN, ANY_DRIVER, 0x80), 0b11);
        t
    }

    #[test]
    fn first_matching_rule_decides() {
        let t = updater_policy();
        let h = header(action::AUDIT, mode::ENFORCE);
        let nvme = Subject { comm: comm("nvme"), ..Default::default() };
        let fwupd = Subject { comm: comm("fwupd"), ..Default::default() };
        assert_eq!(
            decide(&t, &h, &format_nvm(), &fwupd, true),
            Decision { verdict: verdict::ALLOW, rule_id: 16 }
        );
        assert_eq!(
            decide(&t, &h, &format_nvm(), &nvme, true),
            Decision { verdict: verdict::DENY, rule_id: 17 }
        );
        let identify = Command { opcode: 0x06, ..format_nvm() };
        assert_eq!(
            decide(&t, &h, &identify, &nvme, true),
            Decision { verdict: verdict::AUDIT, rule_id: rule_id::DEFAULT }
        );
    }

    #[test]
    fn audit_mode_and_hooks_that_cannot_deny_record_would_deny() {
        let t = updater_policy();
        let nvme = Subject { comm: comm("nvme"), ..Default::default() };
        assert_eq!(
            decide(&t, &header(action::AUDIT, mode::AUDIT), &format_nvm(), &nvme, true).verdict,
            verdict::WOULD_DENY
        );
        assert_eq!(
            decide(&t, &header(action::AUDIT, mode::ENFORCE), &format_nvm(), &nvme, false).verdict,
            verdict::WOULD_DENY
        );
    }

    #[test]
    fn undecodable_and_unloaded() {
        let t = updater_policy();
        let bad = Command { decode: crate::model::decode_status::ARG_UNREADABLE, ..format_nvm() };
        let d = decide(&t, &header(action::ALLOW, mode::ENFORCE), &bad, &Subject::default(), true);
        assert_eq!(d, Decision { verdict: verdict::DENY, rule_id: rule_id::UNDECODABLE });
        let unloaded = PolicyHeader::default();
        assert_eq!(decide(&t, &unloaded, &bad, &Subject::default(), true).rule_id, rule_id::NO_POLICY);
    }

    #[test]
    fn not_excludes_and_scopes_and_subjects_match() {
        let mut t = Tables::default();
        let mut rule = CompiledRule { rule_id: 20, action: action::DENY, has_not: 1, ..Default::default() };
        rule.matcher.scope_mask = 1 << scope::DEBUG_WRITE_FULL;
        rule.not.uids[0] = 0;
        rule.not.n_uids = 1;
        t.rules = std::vec![rule];
        t.index.insert(IndexKey::new(0, class::FWCTL, ANY_DRIVER, ANY_OPCODE), 1);
        let h = header(action::ALLOW, mode::ENFORCE);
        let mut rpc = Command { opcode: 0x100, ..Command::new(ioctl::FWCTL_RPC, class::FWCTL, driver::MLX5) };
        rpc.scope = scope::DEBUG_WRITE_FULL;
        let user = Subject { uid: 1000, ..Default::default() };
        let root = Subject { uid: 0, ..Default::default() };
        assert_eq!(decide(&t, &h, &rpc, &user, true).verdict, verdict::DENY);
        assert_eq!(decide(&t, &h, &rpc, &root, true).verdict, verdict::ALLOW, "excluded by not");
        rpc.scope = scope::DEBUG_READ_ONLY;
        assert_eq!(decide(&t, &h, &rpc, &user, true).verdict, verdict::ALLOW, "other scope");
    }

    #[test]
    fn effects_rules_judge_what_the_device_declares() {
        use crate::effects::{effect, EffectsKey};
        let dev = 42;
        let mut t = Tables::default();
        // Rule 0: deny any data or config change; rule 1: deny undeclared opcodes.
        let mut by_effect = CompiledRule { rule_id: 30, action: action::DENY, ..Default::default() };
        by_effect.matcher.effects_any = effect::DATA_CHANGE_IMMEDIATE | effect::CONFIG_CHANGE_IMMEDIATE;
        let mut undeclared = CompiledRule { rule_id: 31, action: action::DENY, ..Default::default() };
        undeclared.matcher.declared = declared::UNDECLARED;
        t.rules = std::vec![by_effect, undeclared];
        t.index.insert(IndexKey::new(0, class::NVME_ADMIN, ANY_DRIVER, ANY_OPCODE), 0b11);
        t.effects.insert(EffectsKey::table(dev, class::NVME_ADMIN), 0);
        t.effects.insert(EffectsKey::new(dev, class::NVME_ADMIN, 0x06, [0; 16]), 0);
        t.effects.insert(
            EffectsKey::new(dev, class::NVME_ADMIN, 0x80, [0; 16]),
            effect::LOGICAL_BLOCK_CONTENT_CHANGE | effect::DATA_CHANGE_IMMEDIATE,
        );
        let h = header(action::ALLOW, mode::ENFORCE);
        let run = |opcode: u32, device: u64| {
            let mut subject = Subject { device, ..Default::default() };
            let d = evaluate(&t, &h, &Command { opcode, ..format_nvm() }, &mut subject, true);
            (d.rule_id, subject.effects & (effect::DECLARED | effect::KNOWN))
        };
        assert_eq!(run(0x80, dev), (30, effect::DECLARED | effect::KNOWN), "Format NVM by its effects");
        assert_eq!(run(0x06, dev), (rule_id::DEFAULT, effect::DECLARED | effect::KNOWN), "Identify");
        assert_eq!(run(0xc5, dev), (31, effect::KNOWN), "vendor opcode the device does not list");
        assert_eq!(run(0x80, dev + 1), (rule_id::DEFAULT, 0), "unknown device: effects rules never match");
        // all-of: every bit must be declared.
        let mut t2 = t;
        t2.rules[0].matcher.effects_any = 0;
        t2.rules[0].matcher.effects_all = effect::DATA_CHANGE_IMMEDIATE | effect::SECURITY_STATE_CHANGE;
        let mut subject = Subject { device: dev, ..Default::default() };
        let d = evaluate(&t2, &h, &format_nvm(), &mut subject, true);
        assert_eq!(d.rule_id, rule_id::DEFAULT);
        // Without effects rules nothing is looked up.
        let quiet = PolicyHeader { uses_effects: 0, ..h };
        let mut subject = Subject { device: dev, ..Default::default() };
        evaluate(&t2, &quiet, &format_nvm(), &mut subject, true);
        assert_eq!(subject.effects, 0);
    }

    #[test]
    fn a_packed_match_round_trips_and_is_never_no_match() {
        for rule in [0, 1, rule_id::FIRST_RULE_ID, 255, 256, 0x1234, u16::MAX - 1, u16::MAX] {
            for act in [action::ALLOW, action::AUDIT, action::DENY, 0x7f, 0xff] {
                let packed = pack_match(rule, act);
                assert_ne!(packed, 0, "({rule}, {act}) looks like no match");
                assert_eq!(unpack_match(packed), Some((rule, act)));
            }
        }
        assert_eq!(unpack_match(0), None);
        // Rule and action do not bleed into each other.
        assert_ne!(pack_match(1, 0), pack_match(0, 0xff));
        assert_ne!(pack_match(u16::MAX, 0xff), pack_match(0, 0));
    }

    #[test]
    fn compiled_structs_have_stable_sizes() {
        assert_eq!(core::mem::size_of::<IndexKey>(), 8);
        assert_eq!(core::mem::size_of::<PolicyHeader>(), 24);
        assert_eq!(core::mem::size_of::<Matcher>() % 8, 0);
    }
}
