//! Compile a validated [`Policy`] into the tables the kernel evaluates
//! (`fwctl_common::policy`): one [`CompiledRule`] per rule (subject conditions and the
//! `not:` block) and a candidate index from (class, driver, opcode) to the rules that
//! select it. Pure: no maps, no aya types, so it is unit-tested and `policy explain` uses
//! the same output.

use std::collections::BTreeMap;

use fwctl_common::{
    device_number::device_key,
    effects::{EffectsKey, EffectsSource},
    model::class,
    policy::{
        self, action, declared, mode, CompiledRule, IndexKey, Matcher, OpcodeEntry, RuleSource, ANY_DRIVER,
        ANY_OPCODE, MAX_RULES, MAX_VALUES, SCOPE_NONE_BIT,
    },
};

use crate::names::RuleIds;
use crate::policy::resolved::{Action, Match, Mode, OnToctou, Policy};

/// Cgroup id for a cgroup path that does not exist yet: matches no command.
pub const UNRESOLVED_CGROUP: u64 = u64::MAX;

/// A policy ready to install.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledPolicy {
    pub name: String,
    pub version: u32,
    pub mode: u8,
    pub default_action: u8,
    pub on_undecodable: u8,
    pub on_toctou: u8,
    /// In policy order; rule `i` is bit `i` of the index bitmaps.
    pub rules: Vec<CompiledRule>,
    pub index: BTreeMap<(u8, u8, u32), u64>,
    /// A rule (or its `not`) matches on declared effects: the kernel looks them up.
    pub uses_effects: bool,
    /// Cgroup paths that did not exist at compile time (re-resolved on reload).
    pub unresolved_cgroups: Vec<String>,
}

fn action_code(a: Action) -> u8 {
    match a {
        Action::Allow => action::ALLOW,
        Action::Audit => action::AUDIT,
        Action::Deny => action::DENY,
    }
}

/// Compile; errors name the rule and the kernel limit it exceeds.
pub fn compile(policy: &Policy, ids: &RuleIds) -> Result<CompiledPolicy, Vec<String>> {
    let mut errors = Vec::new();
    if policy.rules.len() > MAX_RULES {
        errors.push(format!("{} rules: the kernel evaluates at most {MAX_RULES}", policy.rules.len()));
    }
    let mut compiled = CompiledPolicy {
        name: policy.name.clone(),
        version: policy.version,
        mode: if policy.mode == Mode::Enforce { mode::ENFORCE } else { mode::AUDIT },
        default_action: action_code(policy.default),
        on_undecodable: action_code(policy.on_undecodable),
        on_toctou: match policy.on_toctou {
            OnToctou::Log => policy::on_toctou::LOG,
            OnToctou::Kill => policy::on_toctou::KILL,
        },
        rules: Vec::new(),
        index: BTreeMap::new(),
        uses_effects: policy
            .rules
            .iter()
            .any(|r| r.matcher.uses_effects() || r.matcher.not.as_ref().is_some_and(|n| n.uses_effects())),
        unresolved_cgroups: Vec::new(),
    };
    for (i, rule) in policy.rules.iter().enumerate().take(MAX_RULES) {
        let at = |field: &str, what: String| format!("rules[{i}] '{}'.{field}: {what}", rule.name);
        let m = &rule.matcher;
        let mut out = CompiledRule {
            rule_id: ids.id(&rule.name),
            action: action_code(rule.action),
            ..Default::default()
        };
        match matcher(m, false, &mut compiled.unresolved_cgroups) {
            Ok(positive) => out.matcher = positive,
            Err(e) => errors.push(at("match", e)),
        }
        if let Some(not) = &m.not {
            out.has_not = 1;
            match matcher(not, true, &mut compiled.unresolved_cgroups) {
                Ok(negative) => out.not = negative,
                Err(e) => errors.push(at("match.not", e)),
            }
        }
        for key in index_keys(m) {
            *compiled.index.entry(key).or_insert(0) |= 1u64 << i;
        }
        compiled.rules.push(out);
    }
    if errors.is_empty() {
        Ok(compiled)
    } else {
        Err(errors)
    }
}

/// The (class, driver, opcode) keys a rule's selection covers.
fn index_keys(m: &Match) -> Vec<(u8, u8, u32)> {
    let classes: Vec<u8> = if m.classes.is_empty() { class::ALL.to_vec() } else { m.classes.clone() };
    let drivers: Vec<u8> = if m.drivers.is_empty() { vec![ANY_DRIVER] } else { m.drivers.clone() };
    let mut keys = Vec::new();
    if m.opcodes.is_empty() {
        for c in &classes {
            for d in &drivers {
                keys.push((*c, *d, ANY_OPCODE));
            }
        }
        return keys;
    }
    for sel in &m.opcodes {
        if !classes.contains(&sel.class) {
            continue;
        }
        match sel.driver {
            Some(d) if m.drivers.is_empty() || m.drivers.contains(&d) => {
                keys.push((sel.class, d, sel.opcode))
            }
            Some(_) => {}
            None => {
                for d in &drivers {
                    keys.push((sel.class, *d, sel.opcode));
                }
            }
        }
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The fixed-size matcher for a match block. The positive block leaves class, driver and
/// opcode to the index; a `not:` block carries them itself.
fn matcher(m: &Match, with_selection: bool, unresolved: &mut Vec<String>) -> Result<Matcher, String> {
    let mut out = Matcher::default();
    if with_selection {
        out.class_mask = m.classes.iter().fold(0u8, |mask, c| mask | (1 << c));
        out.driver_mask = m.drivers.iter().fold(0u32, |mask, d| mask | (1 << d));
        out.n_opcodes = fill(
            &mut out.opcodes,
            m.opcodes.iter().map(|s| OpcodeEntry {
                opcode: s.opcode,
                class: s.class,
                driver: s.driver.unwrap_or(ANY_DRIVER),
                _pad: [0; 2],
            }),
        )
        .map_err(|n| format!("opcode: {n} values; a `not:` block holds at most {MAX_VALUES}"))?;
    }
    out.effects_any = m.effects_any;
    out.effects_all = m.effects_all;
    out.declared = match m.undeclared {
        None => declared::ANY,
        Some(true) => declared::UNDECLARED,
        Some(false) => declared::DECLARED,
    };
    out.scope_mask = m.scopes.iter().fold(0u8, |mask, s| mask | if *s < 4 { 1 << s } else { SCOPE_NONE_BIT });
    fn limit(field: &'static str) -> impl Fn(usize) -> String {
        move |n| format!("{field}: {n} values; the kernel matches at most {MAX_VALUES}")
    }
    out.n_op_mods = fill(&mut out.op_mods, m.op_mods.iter().copied()).map_err(limit("op_mod"))?;
    out.n_uids = fill(&mut out.uids, m.uids.iter().copied()).map_err(limit("uid"))?;
    out.n_gids = fill(&mut out.gids, m.gids.iter().copied()).map_err(limit("gid"))?;
    out.n_comms = fill(&mut out.comms, m.comms.iter().copied()).map_err(limit("comm"))?;
    out.n_devices = fill(&mut out.devices, m.devices.iter().map(|d| device_key(d.block, d.major, d.minor)))
        .map_err(limit("device"))?;
    out.n_cgroups = fill(
        &mut out.cgroups,
        m.cgroups.iter().map(|c| {
            c.id.unwrap_or_else(|| {
                unresolved.push(c.path.clone());
                UNRESOLVED_CGROUP
            })
        }),
    )
    .map_err(limit("cgroup"))?;
    Ok(out)
}

/// Copy values into a fixed array; Err(count) when there are too many.
fn fill<T: Copy>(slots: &mut [T; MAX_VALUES], values: impl Iterator<Item = T>) -> Result<u8, usize> {
    let values: Vec<T> = values.collect();
    if values.len() > MAX_VALUES {
        return Err(values.len());
    }
    slots[..values.len()].copy_from_slice(&values);
    Ok(values.len() as u8)
}

impl CompiledPolicy {
    /// The header to flip to once this policy's tables are in `slot`.
    pub fn header(&self, slot: u32, generation: u64) -> policy::PolicyHeader {
        policy::PolicyHeader {
            generation,
            slot,
            mode: self.mode,
            default_action: self.default_action,
            on_undecodable: self.on_undecodable,
            loaded: 1,
            uses_effects: self.uses_effects as u8,
            on_toctou: self.on_toctou,
            _pad: [0; 6],
        }
    }
}

/// The compiled tables know no device: what a device declares comes with the command
/// being explained (`Subject::effects`), not from a lookup.
impl EffectsSource for CompiledPolicy {
    fn stored_effects(&self, _key: &EffectsKey) -> Option<u32> {
        None
    }
}

/// The compiled tables as a `RuleSource` (slot 0), for evaluating in userspace exactly as
/// the kernel does (`policy explain`, `policy diff`, tests).
impl RuleSource for CompiledPolicy {
    fn candidates(&self, key: &IndexKey) -> u64 {
        self.index.get(&(key.class, key.driver, key.opcode)).copied().unwrap_or(0)
    }
    fn rule(&self, slot: u32, index: u32) -> Option<&CompiledRule> {
        (slot == 0).then(|| self.rules.get(index as usize)).flatten()
    }
}

#[cfg(test)]
mod tests {
    use fwctl_common::{
        model::{driver, ioctl, scope, verdict, Command},
        policy::{decide, Subject},
    };

    use super::*;

    fn compiled(text: &str) -> (CompiledPolicy, RuleIds) {
        let (policy, _) = crate::policy::parse(text).unwrap_or_else(|e| panic!("{e:?}"));
        let ids = RuleIds::default();
        (compile(&policy, &ids).unwrap(), ids)
    }

    fn comm(name: &str) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[..name.len()].copy_from_slice(name.as_bytes());
        c
    }

    const UPDATER: &str = "version: 1
name: t
mode: enforce
default: audit
on_undecodable: deny
rules:
  - name: updater-may-format
    action: allow
    match: {class: nvme-admin, opcode: [format-nvm, sanitize], comm: fwupd}
  - name: no-format
    action: deny
    match: {class: nvme-admin, opcode: [format-nvm, sanitize]}
  - name: no-full-debug
    action: deny
    match: {class: fwctl, scope: debug-write-full, not: {uid: 0}}
";

    fn nvme(opcode: u32) -> Command {
        Command { opcode, ..Command::new(ioctl::NVME_ADMIN_CMD, class::NVME_ADMIN, driver::NVME) }
    }

    #[test]
    fn compiled_policy_decides_like_the_yaml_says() {
        let (p, ids) = compiled(UPDATER);
        let h = p.header(0, 1);
        let fwupd = Subject { comm: comm("fwupd"), ..Default::default() };
        let nvme_cli = Subject { comm: comm("nvme"), uid: 1000, ..Default::default() };
        let d = decide(&p, &h, &nvme(0x80), &fwupd, true);
        assert_eq!((d.verdict, ids.label(d.rule_id).as_str()), (verdict::ALLOW, "updater-may-format"));
        let d = decide(&p, &h, &nvme(0x84), &nvme_cli, true);
        assert_eq!((d.verdict, ids.label(d.rule_id).as_str()), (verdict::DENY, "no-format"));
        let d = decide(&p, &h, &nvme(0x06), &nvme_cli, true);
        assert_eq!((d.verdict, ids.label(d.rule_id).as_str()), (verdict::AUDIT, "default"));
        let mut rpc = Command { opcode: 0x100, ..Command::new(ioctl::FWCTL_RPC, class::FWCTL, driver::MLX5) };
        rpc.scope = scope::DEBUG_WRITE_FULL;
        assert_eq!(decide(&p, &h, &rpc, &nvme_cli, true).verdict, verdict::DENY);
        assert_eq!(decide(&p, &h, &rpc, &Subject::default(), true).verdict, verdict::AUDIT, "uid 0 excluded");
        assert_eq!(decide(&p, &h, &rpc, &nvme_cli, false).verdict, verdict::WOULD_DENY, "tracepoint hook");
    }

    #[test]
    fn index_covers_exactly_the_selected_commands() {
        let (p, _) = compiled(UPDATER);
        assert_eq!(p.index.get(&(class::NVME_ADMIN, ANY_DRIVER, 0x80)), Some(&0b011));
        assert_eq!(p.index.get(&(class::NVME_ADMIN, ANY_DRIVER, 0x84)), Some(&0b011));
        assert_eq!(p.index.get(&(class::FWCTL, ANY_DRIVER, ANY_OPCODE)), Some(&0b100));
        assert_eq!(p.index.len(), 3, "{:?}", p.index);
        let (any, _) = compiled("version: 1\nname: a\nmode: audit\ndefault: allow\nrules:\n  - name: all\n    action: audit\n    match: {}\n");
        assert_eq!(any.index.len(), class::ALL.len());
    }

    #[test]
    fn kernel_limits_are_errors_that_name_the_rule() {
        let text = "version: 1\nname: a\nmode: audit\ndefault: allow\nrules:\n  - name: many\n    action: deny\n    match: {uid: [1, 2, 3, 4, 5]}\n";
        let (policy, _) = crate::policy::parse(text).unwrap();
        let errors = compile(&policy, &RuleIds::default()).unwrap_err();
        assert!(
            errors[0].contains("'many'") && errors[0].contains("uid") && errors[0].contains("at most 4"),
            "{errors:?}"
        );
    }

    const BY_EFFECTS: &str = "version: 1
name: e
mode: enforce
default: allow
rules:
  - name: no-destructive
    action: deny
    match:
      class: [nvme-admin, cxl-mem]
      effects: [data-change-immediate, config-change-immediate, security-state-change]
  - name: no-vendor-tunnels
    action: deny
    match: {undeclared: true}
  - name: resets-audited
    action: audit
    match: {effects: {all: [background, config-change-cold-reset]}}
";

    #[test]
    fn effects_rules_compile_to_masks_and_turn_the_lookup_on() {
        use fwctl_common::effects::effect;
        let (p, ids) = compiled(BY_EFFECTS);
        assert!(p.uses_effects);
        assert_eq!(p.header(0, 1).uses_effects, 1);
        assert_eq!(p.header(0, 1).on_toctou, policy::on_toctou::LOG, "log unless the policy says kill");
        assert_eq!(
            p.rules[0].matcher.effects_any,
            effect::DATA_CHANGE_IMMEDIATE | effect::CONFIG_CHANGE_IMMEDIATE | effect::SECURITY_STATE_CHANGE
        );
        assert_eq!(p.rules[1].matcher.declared, declared::UNDECLARED);
        assert_eq!(p.rules[2].matcher.effects_all, effect::BACKGROUND | effect::CONFIG_CHANGE_COLD_RESET);
        // Effects rules are selected through the same index as any rule without opcodes.
        assert_eq!(p.index.get(&(class::NVME_ADMIN, ANY_DRIVER, ANY_OPCODE)), Some(&0b111));
        let h = p.header(0, 1);
        let known = effect::DECLARED | effect::KNOWN;
        let with = |effects| Subject { effects, ..Default::default() };
        let d = decide(&p, &h, &nvme(0x80), &with(known | effect::DATA_CHANGE_IMMEDIATE), true);
        assert_eq!(ids.label(d.rule_id), "no-destructive");
        let d = decide(&p, &h, &nvme(0xc0), &with(effect::KNOWN), true);
        assert_eq!(ids.label(d.rule_id), "no-vendor-tunnels");
        let d = decide(&p, &h, &nvme(0x06), &with(known), true);
        assert_eq!(ids.label(d.rule_id), "default");
        let d = decide(&p, &h, &nvme(0x80), &with(0), true);
        assert_eq!(ids.label(d.rule_id), "default", "unknown effects match no effects rule");
        let (plain, _) = compiled(UPDATER);
        assert!(!plain.uses_effects);
    }

    #[test]
    fn shipped_policies_compile() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        for name in ["default.yaml", "fleet-baseline.yaml", "strict.yaml"] {
            let (policy, _) =
                crate::policy::load(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let compiled = compile(&policy, &RuleIds::default()).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert!(compiled.rules.len() <= MAX_RULES);
        }
    }
}
