//! Policy parsing and name resolution through the public API: every key in its scalar
//! and list form, opcode names resolved per class (and per fwctl driver), numbers,
//! comms, cgroups and devices.

use std::os::unix::fs::MetadataExt as _;

use fwctl_common::model::{class, driver, scope};
use fwctl_user::policy::{self, Action, Host, Match, Mode, OpcodeSel, Policy};

const HEAD: &str = "version: 1\nname: t\nmode: enforce\ndefault: audit\n";

fn parse(rules: &str) -> Policy {
    let text = format!("{HEAD}rules:\n{rules}");
    match policy::parse(&text) {
        Ok((p, _)) => p,
        Err(diags) => panic!("{text}\n{diags:#?}"),
    }
}

/// The match of a one-rule policy whose match block is `body` (YAML flow mapping).
fn matcher(body: &str) -> Match {
    parse(&format!("  - name: r\n    action: deny\n    match: {body}\n")).rules.remove(0).matcher
}

fn errors(text: &str) -> Vec<String> {
    match policy::parse(text) {
        Ok(p) => panic!("accepted: {p:?}"),
        Err(diags) => diags.iter().map(|d| d.to_string()).collect(),
    }
}

fn sel(class: u8, driver: Option<u8>, opcode: u32) -> OpcodeSel {
    OpcodeSel { class, driver, opcode }
}

fn sorted(mut v: Vec<OpcodeSel>) -> Vec<OpcodeSel> {
    v.sort();
    v
}

#[test]
fn header_and_defaults() {
    let (p, warnings) = policy::parse(HEAD).unwrap();
    assert!(warnings.is_empty());
    assert_eq!((p.name.as_str(), p.version, p.mode), ("t", 1, Mode::Enforce));
    assert_eq!(
        (p.default, p.on_undecodable),
        (Action::Audit, Action::Audit),
        "on_undecodable follows default"
    );
    assert!(p.rules.is_empty());
    let (p, _) = policy::parse(&format!("{HEAD}on_undecodable: deny\nrules:\n")).unwrap();
    assert_eq!(p.on_undecodable, Action::Deny);
    let (p, _) = policy::parse(&format!("{HEAD}rules: []\n")).unwrap();
    assert!(p.rules.is_empty());
}

#[test]
fn rules_keep_order_and_position() {
    let p = parse("  - name: a\n    action: allow\n  - name: b\n    action: deny\n    match: {}\n");
    assert_eq!(
        p.rules.iter().map(|r| (r.name.as_str(), r.action, r.line, r.column)).collect::<Vec<_>>(),
        [("a", Action::Allow, 6, 5), ("b", Action::Deny, 8, 5)]
    );
    assert!(p.rules.iter().all(|r| r.matcher.is_any()));
}

#[test]
fn every_key_takes_a_scalar_or_a_list() {
    let one = matcher(
        "{ class: fwctl, driver: mlx5, opcode: QUERY_HCA_CAP, op_mod: 1, scope: debug-write, uid: 0, gid: 5, \
         comm: nvme, cgroup: /system.slice/x.service, device: \"10:229\" }",
    );
    let list = matcher(
        "{ class: [fwctl], driver: [mlx5], opcode: [QUERY_HCA_CAP], op_mod: [1], scope: [debug-write], uid: [0], \
         gid: [5], comm: [nvme], cgroup: [/system.slice/x.service], device: [\"10:229\"] }",
    );
    assert_eq!(one, list);
    assert_eq!(one.classes, [class::FWCTL]);
    assert_eq!(one.drivers, [driver::MLX5]);
    assert_eq!(one.opcodes, [sel(class::FWCTL, Some(driver::MLX5), 0x100)]);
    assert_eq!(
        (one.op_mods.as_slice(), one.uids.as_slice(), one.gids.as_slice()),
        (&[1][..], &[0][..], &[5][..])
    );
    assert_eq!(one.scopes, [scope::DEBUG_WRITE]);
    assert_eq!(&one.comms[0][..5], b"nvme\0");
    assert_eq!(one.cgroups[0].path, "/system.slice/x.service");
    assert_eq!((one.devices[0].block, one.devices[0].major, one.devices[0].minor), (false, 10, 229));
}

#[test]
fn lists_are_any_of_and_drop_repeats() {
    let m = matcher("{ class: [nvme-admin, NVME_IO, nvme-admin], uid: [0, 1000, \"0x0\"] }");
    assert_eq!(m.classes, [class::NVME_ADMIN, class::NVME_IO]);
    assert_eq!(m.uids, [0, 1000]);
}

#[test]
fn an_ambiguous_name_resolves_in_every_catalog_that_has_it() {
    let m = matcher("{ opcode: identify }");
    assert_eq!(
        sorted(m.opcodes),
        sorted(vec![
            sel(class::NVME_ADMIN, None, 0x06),
            sel(class::CXL_MEM, None, 0x4000),
            sel(class::FWCTL, Some(driver::CXL), 0x4000),
        ])
    );
}

#[test]
fn a_name_resolves_only_in_the_classes_and_drivers_the_rule_names() {
    assert_eq!(matcher("{ class: nvme-admin, opcode: identify }").opcodes, [sel(class::NVME_ADMIN, None, 6)]);
    assert_eq!(
        matcher("{ class: fwctl, opcode: identify }").opcodes,
        [sel(class::FWCTL, Some(driver::CXL), 0x4000)]
    );
    // A driver without a class narrows the classes to those it serves.
    assert_eq!(
        matcher("{ driver: mlx5, opcode: query-hca-cap }").opcodes,
        [sel(class::FWCTL, Some(driver::MLX5), 0x100)]
    );
    // Case and `_`/`-` do not matter.
    assert_eq!(
        matcher("{ class: nvme-admin, opcode: FORMAT_NVM }").opcodes,
        [sel(class::NVME_ADMIN, None, 0x80)]
    );
    // `sanitize` is an NVMe, CXL and SCSI opcode.
    assert_eq!(
        sorted(matcher("{ class: [nvme-admin, scsi], opcode: sanitize }").opcodes),
        [sel(class::NVME_ADMIN, None, 0x84), sel(class::SCSI, None, 0x48)]
    );
}

#[test]
fn numbers_apply_to_every_class_they_fit() {
    let m = matcher("{ opcode: 0x10 }");
    assert_eq!(m.opcodes.len(), 8, "four fwctl drivers and four other classes: {:?}", m.opcodes);
    assert!(m.opcodes.contains(&sel(class::FWCTL, Some(driver::PDS), 0x10)));
    assert!(m.opcodes.contains(&sel(class::SCSI, None, 0x10)));
    // Wider than a byte: not NVMe or SCSI.
    let m = matcher("{ opcode: 0x4000 }");
    assert!(
        m.opcodes.iter().all(|s| s.class == class::FWCTL || s.class == class::CXL_MEM),
        "{:?}",
        m.opcodes
    );
    assert_eq!(m.opcodes.len(), 5);
    // Hex and decimal, as YAML integers or strings.
    let m = matcher("{ class: nvme-admin, opcode: [16, \"0x11\", \"20\", 0x80, format-nvm] }");
    assert_eq!(m.opcodes.iter().map(|s| s.opcode).collect::<Vec<_>>(), [0x10, 0x11, 20, 0x80]);
}

#[test]
fn not_resolves_within_the_rule() {
    let m = matcher("{ class: nvme-admin, not: { opcode: identify, comm: [nvme, smartctl] } }");
    let not = m.not.unwrap();
    assert_eq!(not.opcodes, [sel(class::NVME_ADMIN, None, 6)]);
    assert!(not.classes.is_empty(), "a not without class: inherits the rule's for names only");
    assert_eq!(not.comms.len(), 2);
    assert!(not.not.is_none());
}

#[test]
fn comm_is_nul_padded_and_at_most_15_bytes() {
    let m = matcher("{ comm: [fifteen-bytes-x, \"007\", yes] }");
    assert_eq!(&m.comms[0], b"fifteen-bytes-x\0" as &[u8; 16]);
    assert_eq!(&m.comms[1][..4], b"007\0", "plain scalars are taken as written");
    assert_eq!(&m.comms[2][..4], b"yes\0");
    let e = errors(&format!(
        "{HEAD}rules:\n  - name: r\n    action: deny\n    match: {{ comm: sixteen-bytes-xx }}\n"
    ));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("8:20: error: rules[0].match.comm: comm 'sixteen-bytes-xx' is 16 bytes"),
        "{e:?}"
    );
}

#[test]
fn devices_by_path_or_number() {
    let m = matcher("{ device: [/dev/null, \"1:3\", \"block:259:0\", \"char:10:229\"] }");
    let devices: Vec<_> = m.devices.iter().map(|d| (d.block, d.major, d.minor, d.source.as_str())).collect();
    assert_eq!(
        devices,
        [(false, 1, 3, "/dev/null"), (true, 259, 0, "block:259:0"), (false, 10, 229, "char:10:229")]
    );
}

#[test]
fn cgroups_are_normalized_and_resolved_when_they_exist() {
    let root = std::env::temp_dir().join(format!("fwctl-policy-cgroup-{}", std::process::id()));
    std::fs::create_dir_all(root.join("system.slice/fwupd.service")).unwrap();
    let ino = std::fs::metadata(root.join("system.slice/fwupd.service")).unwrap().ino();
    let host = Host { cgroup_root: root.clone() };
    let text = format!(
        "{HEAD}rules:\n  - name: r\n    action: allow\n    match:\n      cgroup: [/system.slice/fwupd.service/, \
         /sys/fs/cgroup/system.slice/fwupd.service, /later.slice]\n"
    );
    let (p, _) = policy::parse_with(&text, &host).unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    let cgroups: Vec<_> = p.rules[0].matcher.cgroups.iter().map(|c| (c.path.as_str(), c.id)).collect();
    assert_eq!(cgroups, [("/system.slice/fwupd.service", Some(ino)), ("/later.slice", None)]);
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = "version: 1\nname: many\nmode: audit\ndefault: audit\nrules:\n  - name: a\n    action: deny\n    \
                match:\n      class: nvme-admn\n      opcode: formatnvm\n      comm: a-very-long-comm-name\n  - name: a\n    \
                action: nope\n";
    let e = errors(text);
    assert_eq!(e.len(), 5, "{e:#?}");
    assert!(e[0].starts_with("9:14: error: rules[0].match.class: unknown class 'nvme-admn'"), "{e:#?}");
    // The class is unknown, so the name is looked up everywhere.
    assert!(e[1].starts_with("10:15: error: rules[0].match.opcode: unknown opcode 'formatnvm' for any class"));
    assert!(e[1].ends_with("did you mean 'format-nvm'?"), "{}", e[1]);
    assert!(e[2].starts_with("11:13: error: rules[0].match.comm:"));
    assert!(e[3].starts_with(
        "12:11: error: rules[1].name: duplicate rule name 'a' (first used by the rule at line 6)"
    ));
    assert!(e[4].starts_with("13:13: error: rules[1].action: unknown action 'nope'"));
}

#[test]
fn effects_take_names_lists_and_any_all_blocks() {
    use fwctl_common::effects::effect;
    let m = matcher("{effects: security-state-change}");
    assert_eq!((m.effects_any, m.effects_all, m.undeclared), (effect::SECURITY_STATE_CHANGE, 0, None));
    let m = matcher("{effects: [lbcc, nic]}");
    assert_eq!(m.effects_any, effect::LOGICAL_BLOCK_CONTENT_CHANGE | effect::NAMESPACE_INVENTORY_CHANGE);
    let m = matcher("{effects: {any: [background], all: [data-change-immediate, log-change-immediate]}}");
    assert_eq!(m.effects_any, effect::BACKGROUND);
    assert_eq!(m.effects_all, effect::DATA_CHANGE_IMMEDIATE | effect::LOG_CHANGE_IMMEDIATE);
    assert_eq!(matcher("{undeclared: true}").undeclared, Some(true));
    assert_eq!(matcher("{undeclared: false}").undeclared, Some(false));
    let m = matcher("{class: nvme-admin, not: {effects: background}}");
    assert_eq!(m.not.unwrap().effects_any, effect::BACKGROUND);
    assert!(matcher("{undeclared: true}").uses_effects());
    assert!(!matcher("{class: nvme-admin}").uses_effects());
}

#[test]
fn on_toctou_defaults_to_log_and_takes_kill() {
    use fwctl_user::policy::OnToctou;
    assert_eq!(parse("  []\n").on_toctou, OnToctou::Log);
    let text = format!("{HEAD}on_toctou: kill\nrules: []\n");
    assert_eq!(policy::parse(&text).unwrap().0.on_toctou, OnToctou::Kill);
    let bad = errors(&format!("{HEAD}on_toctou: shoot\nrules: []\n"));
    assert!(bad[0].contains("on_toctou") && bad[0].contains("expected log or kill"), "{bad:?}");
}
