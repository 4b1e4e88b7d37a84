//! Warnings about valid policies that do not do what they seem to: rules that can never
//! match (shadowed by an earlier rule, excluded by their own `not`, or naming a class and
//! a driver or scope that never go together).

use fwctl_common::model::{class, driver};

use super::{
    diag::Diagnostic,
    names,
    resolved::{Match, Policy, Rule},
};

/// Every warning for `policy`, in rule order.
pub fn lint(policy: &Policy) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (j, rule) in policy.rules.iter().enumerate() {
        // Its index in its own file (rules of a policy directory are numbered per file).
        let index = policy.rules[..j].iter().filter(|r| r.file == rule.file).count();
        let field = format!("rules[{index}]");
        if let Some(why) = impossible(&rule.matcher) {
            out.push(warn(rule, &field, format!("rule '{}' can never match: {why}", rule.name)));
            continue;
        }
        if let Some(not) = &rule.matcher.not {
            if covers(not, &rule.matcher) {
                out.push(warn(
                    rule,
                    &format!("{field}.match.not"),
                    format!(
                        "rule '{}' can never match: its 'not' excludes every command it matches",
                        rule.name
                    ),
                ));
                continue;
            }
        }
        if let Some(earlier) = policy.rules[..j].iter().find(|e| covers(&e.matcher, &rule.matcher)) {
            let same = if earlier.action == rule.action { " (with the same action)" } else { "" };
            out.push(warn(
                rule,
                &field,
                format!(
                    "rule '{}' is shadowed and can never match: rule '{}' ({}) comes first and \
                     decides every command it matches{same}",
                    rule.name,
                    earlier.name,
                    where_(earlier, rule)
                ),
            ));
        }
    }
    out
}

fn warn(rule: &Rule, field: &str, message: String) -> Diagnostic {
    Diagnostic { file: rule.file.clone(), ..Diagnostic::warning(rule.line, rule.column, field, message) }
}

/// Where `earlier` is, as seen from `rule`: `line N` in the same file, else `FILE:N`.
fn where_(earlier: &Rule, rule: &Rule) -> String {
    match &earlier.file {
        Some(file) if earlier.file != rule.file => format!("{file}:{}", earlier.line),
        _ => format!("line {}", earlier.line),
    }
}

/// Why a match can match no command at all, if it cannot.
fn impossible(m: &Match) -> Option<String> {
    if !m.classes.is_empty() && !m.drivers.is_empty() {
        let any = m.classes.iter().any(|c| m.drivers.iter().any(|d| names::compatible(*c, *d)));
        if !any {
            return Some(format!(
                "no driver it names ({}) serves a class it names ({})",
                labels(&m.drivers, driver::label),
                labels(&m.classes, class::label)
            ));
        }
    }
    let classes = effective_classes(m);
    if m.uses_effects() && !classes.is_empty() && classes.iter().all(|c| *c == class::SCSI) {
        return Some("SCSI devices declare no command effects, so an effects rule never matches them".into());
    }
    if m.undeclared == Some(true) && (m.effects_any != 0 || m.effects_all != 0) {
        return Some("an undeclared opcode has no declared effects to match".into());
    }
    if !m.scopes.is_empty() && !classes.is_empty() && !classes.contains(&class::FWCTL) {
        return Some(format!(
            "only fwctl commands have a scope, and it matches only {}",
            labels(&classes, class::label)
        ));
    }
    None
}

fn labels(ids: &[u8], label: fn(u8) -> &'static str) -> String {
    ids.iter().map(|i| label(*i)).collect::<Vec<_>>().join(", ")
}

/// Whether every command `b` matches (ignoring `b`'s `not`, which only narrows it) is
/// also matched by `a`: `a` has no `not`, and each of `a`'s fields is absent or holds
/// all of `b`'s values for it.
pub fn covers(a: &Match, b: &Match) -> bool {
    a.not.is_none()
        && superset(&a.classes, &effective_classes(b))
        && superset(&a.drivers, &effective_drivers(b))
        && superset(&a.opcodes, &b.opcodes)
        && superset(&a.op_mods, &b.op_mods)
        && superset(&a.scopes, &b.scopes)
        && superset(&a.uids, &b.uids)
        && superset(&a.gids, &b.gids)
        && superset(&a.comms, &b.comms)
        && (a.cgroups.is_empty()
            || (!b.cgroups.is_empty()
                && b.cgroups.iter().all(|x| a.cgroups.iter().any(|y| y.path == x.path))))
        && (a.devices.is_empty()
            || (!b.devices.is_empty() && b.devices.iter().all(|x| a.devices.iter().any(|y| y.same_node(x)))))
        && effects_cover(a, b)
}

/// Whether every command meeting `b`'s effects conditions meets `a`'s.
fn effects_cover(a: &Match, b: &Match) -> bool {
    if !a.uses_effects() {
        return true;
    }
    if !b.uses_effects() {
        return false;
    }
    let b_declared = b.undeclared == Some(false) || b.effects_any != 0 || b.effects_all != 0;
    let declared_ok = match a.undeclared {
        None => true,
        Some(true) => b.undeclared == Some(true),
        Some(false) => b_declared,
    };
    let any_ok = a.effects_any == 0
        || (b.effects_any != 0 && b.effects_any & !a.effects_any == 0)
        || b.effects_all & a.effects_any != 0;
    let all_ok = a.effects_all & !b.effects_all == 0;
    declared_ok && any_ok && all_ok
}

/// `a` is "any" or holds every value of a restricted `b`.
fn superset<T: PartialEq>(a: &[T], b: &[T]) -> bool {
    a.is_empty() || (!b.is_empty() && b.iter().all(|x| a.contains(x)))
}

/// The classes `m` can match: those it names, narrowed by its opcodes (an opcode is per class).
fn effective_classes(m: &Match) -> Vec<u8> {
    if m.opcodes.is_empty() {
        return m.classes.clone();
    }
    let mut out: Vec<u8> = Vec::new();
    for sel in &m.opcodes {
        if !out.contains(&sel.class) {
            out.push(sel.class);
        }
    }
    out
}

/// The drivers `m` can match: those it names, or, when all its opcodes are fwctl opcodes
/// (which are per driver), their drivers.
fn effective_drivers(m: &Match) -> Vec<u8> {
    if !m.drivers.is_empty() || m.opcodes.is_empty() {
        return m.drivers.clone();
    }
    let mut out: Vec<u8> = Vec::new();
    for sel in &m.opcodes {
        match sel.driver {
            Some(d) if !out.contains(&d) => out.push(d),
            Some(_) => {}
            None => return Vec::new(),
        }
    }
    out
}
