//! The audit record: one kernel `Event` as the JSON object the audit log carries, every
//! id turned into its name (`names`). Field names are documented in the README's "Audit
//! log" table, which a test keeps equal to this struct.

use std::time::{Duration, SystemTime};

use fwctl_common::{
    abi::spec_by_ioctl,
    device_number::{rdev_major, rdev_minor},
    effects::effect,
    hook_set,
    model::{channel, class, decode_status, driver, event_flag, result, scope, verdict, Event},
};
use serde::Serialize;

use crate::names::{self, RuleIds};

/// One audit log line.
#[derive(Debug, Serialize, PartialEq)]
pub struct AuditRecord {
    /// Wall-clock time the command entered the kernel (RFC 3339, UTC).
    pub ts: String,
    pub hook: &'static str,
    /// `ioctl` or `io_uring`.
    pub channel: &'static str,
    pub class: &'static str,
    pub driver: &'static str,
    pub ioctl: &'static str,
    pub device: String,
    pub device_type: &'static str,
    pub opcode: String,
    pub opcode_name: &'static str,
    pub op_mod: u32,
    pub scope: &'static str,
    pub decode: &'static str,
    pub verdict: &'static str,
    /// The deciding rule's name, `default`, `on_undecodable`, or `none` without a policy.
    pub rule: String,
    /// The ioctl's return value; absent when it was not observed.
    pub ret: Option<i64>,
    pub result: Option<&'static str>,
    pub latency_ns: Option<u64>,
    pub in_len: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nsid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cdw10: Option<u32>,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    pub cgroup_id: u64,
    /// The effects the device declares for the command (`effect::NAMES`); absent when
    /// the policy looked none up (it has no effects rules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effects: Option<Vec<&'static str>>,
    /// Whether the device lists the command; present when its effects were read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared: Option<bool>,
    /// CXL Get/Set Feature: the feature's UUID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    /// The payload changed between the policy decision and the driver: `kernel_opcode` is
    /// what the driver received (`opcode` is what was decided on).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub toctou: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_opcode: Option<String>,
    /// The task was sent SIGKILL for it (`on_toctou: kill`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub killed: bool,
    /// The hook set's deciding program was skipped by the kernel for this command; the
    /// result program decided it after the fact (trampoline set).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub observer_skipped: bool,
    /// The policy denies the command, yet it reached the driver: every deny program was
    /// skipped (`verdict` is `would_deny`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bypass: bool,
}

impl AuditRecord {
    /// `boot_to_wall`: wall-clock time of CLOCK_MONOTONIC zero; `rules` names the
    /// deciding rule.
    pub fn from_event(event: &Event, boot_to_wall: SystemTime, rules: &RuleIds) -> Self {
        let c = &event.command;
        let observed_exit = event.flags & event_flag::NO_EXIT == 0;
        let is_nvme = matches!(c.class, class::NVME_ADMIN | class::NVME_IO);
        let comm_len = event.comm.iter().position(|b| *b == 0).unwrap_or(event.comm.len());
        Self {
            ts: humantime::format_rfc3339_nanos(boot_to_wall + Duration::from_nanos(event.start_ns))
                .to_string(),
            hook: hook_set::label(event.hook),
            channel: channel::label(channel::of(c.ioctl)),
            class: class::label(c.class),
            driver: driver::label(c.driver),
            ioctl: spec_by_ioctl(c.ioctl).map_or("unknown", |s| s.name),
            device: format!("{}:{}", rdev_major(event.rdev), rdev_minor(event.rdev)),
            device_type: if event.flags & event_flag::BLOCK_DEVICE != 0 { "block" } else { "char" },
            opcode: names::opcode(c.opcode),
            opcode_name: names::opcode_name(c.class, c.driver, c.ioctl, c.opcode, c.decode),
            op_mod: c.op_mod,
            scope: scope::label(c.scope),
            decode: decode_status::label(c.decode),
            verdict: verdict::label(event.verdict),
            rule: rules.label(event.rule_id),
            ret: observed_exit.then_some(event.ret),
            result: observed_exit.then(|| result::label(result::from_ret(event.ret))),
            latency_ns: observed_exit.then_some(event.latency_ns),
            in_len: c.in_len,
            nsid: is_nvme.then_some(c.nsid),
            cdw10: is_nvme.then_some(c.cdw10),
            pid: event.pid,
            tid: event.tid,
            uid: event.uid,
            gid: event.gid,
            comm: String::from_utf8_lossy(&event.comm[..comm_len]).into_owned(),
            cgroup_id: event.cgroup_id,
            effects: (event.effects != 0).then(|| effect::names(event.effects).collect()),
            declared: (event.effects & effect::KNOWN != 0).then_some(event.effects & effect::DECLARED != 0),
            feature: (c.feature != [0; 16]).then(|| names::uuid(&c.feature)),
            toctou: event.flags & event_flag::TOCTOU != 0,
            kernel_opcode: (event.flags & event_flag::TOCTOU != 0)
                .then(|| names::opcode(event.kernel_opcode)),
            killed: event.flags & event_flag::KILLED != 0,
            observer_skipped: event.flags & event_flag::OBSERVER_SKIPPED != 0,
            bypass: event.flags & event_flag::BYPASS != 0,
        }
    }
}

/// Wall-clock time at which CLOCK_MONOTONIC read zero (bpf_ktime_get_ns's clock).
pub fn monotonic_epoch() -> SystemTime {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let since_boot = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
    SystemTime::now() - since_boot
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;

    use fwctl_common::{
        model::{ioctl, Command},
        policy::rule_id,
    };

    use super::*;

    /// An NVMe Identify from `nvme` (uid 1000) on the tracepoint hook, returned 0.
    pub(crate) fn event() -> Event {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"nvme");
        Event {
            start_ns: 1_000_000_000,
            latency_ns: 1234,
            cgroup_id: 42,
            ret: 0,
            pid: 10,
            tid: 11,
            uid: 1000,
            gid: 1001,
            rdev: 239 << 20,
            command: Command {
                opcode: 0x06,
                nsid: 0,
                cdw10: 1,
                in_len: 4096,
                ..Command::new(ioctl::NVME_ADMIN_CMD, class::NVME_ADMIN, driver::NVME)
            },
            comm,
            hook: hook_set::id::TRACEPOINT,
            ..Default::default()
        }
    }

    #[test]
    fn record_fields() {
        let record = AuditRecord::from_event(&event(), SystemTime::UNIX_EPOCH, &RuleIds::default());
        assert_eq!(record.ts, "1970-01-01T00:00:01.000000000Z");
        assert_eq!(
            (record.class, record.driver, record.ioctl),
            ("nvme-admin", "nvme", "NVME_IOCTL_ADMIN_CMD")
        );
        assert_eq!((record.opcode.as_str(), record.opcode_name), ("0x0006", "identify"));
        assert_eq!((record.device.as_str(), record.device_type), ("239:0", "char"));
        assert_eq!((record.ret, record.result, record.latency_ns), (Some(0), Some("ok"), Some(1234)));
        assert_eq!((record.uid, record.gid, record.comm.as_str()), (1000, 1001, "nvme"));
        assert_eq!((record.nsid, record.cdw10), (Some(0), Some(1)));
        let line = serde_json::to_string(&record).unwrap();
        assert!(
            line.starts_with(
                r#"{"ts":"1970-01-01T00:00:01.000000000Z","hook":"tracepoint","channel":"ioctl","class":"nvme-admin""#
            ),
            "{line}"
        );
    }

    #[test]
    fn io_uring_channel_and_toctou_are_recorded() {
        let plain = serde_json::to_value(AuditRecord::from_event(
            &event(),
            SystemTime::UNIX_EPOCH,
            &RuleIds::default(),
        ))
        .unwrap();
        for field in ["toctou", "kernel_opcode", "killed"] {
            assert!(plain.get(field).is_none(), "{field} on an ordinary command: {plain}");
        }
        let mut raced = event();
        raced.command.ioctl = fwctl_common::model::ioctl::NVME_URING_ADMIN;
        raced.flags |= event_flag::TOCTOU | event_flag::KILLED;
        raced.kernel_opcode = 0x80;
        let v = serde_json::to_value(AuditRecord::from_event(
            &raced,
            SystemTime::UNIX_EPOCH,
            &RuleIds::default(),
        ))
        .unwrap();
        assert_eq!(v["channel"], "io_uring");
        assert_eq!(v["ioctl"], "NVME_URING_CMD_ADMIN");
        assert_eq!((v["toctou"].clone(), v["kernel_opcode"].clone()), (true.into(), "0x0080".into()));
        assert_eq!((v["opcode"].clone(), v["killed"].clone()), ("0x0006".into(), true.into()));
    }

    #[test]
    fn declared_effects_and_the_feature_are_recorded_when_known() {
        let line = |e: &Event| {
            serde_json::to_value(AuditRecord::from_event(e, SystemTime::UNIX_EPOCH, &RuleIds::default()))
                .unwrap()
        };
        let plain = line(&event());
        for field in ["effects", "declared", "feature"] {
            assert!(plain.get(field).is_none(), "{field} without effects rules: {plain}");
        }
        let mut format = event();
        format.command.opcode = 0x80;
        format.effects = effect::LOGICAL_BLOCK_CONTENT_CHANGE
            | effect::DATA_CHANGE_IMMEDIATE
            | effect::DECLARED
            | effect::KNOWN;
        let v = line(&format);
        assert_eq!(
            v["effects"],
            serde_json::json!(["data-change-immediate", "logical-block-content-change"])
        );
        assert_eq!(v["declared"], true);
        let mut vendor = event();
        vendor.command.opcode = 0xc5;
        vendor.effects = effect::KNOWN;
        let v = line(&vendor);
        assert_eq!(
            (v["effects"].clone(), v["declared"].clone()),
            (serde_json::json!([]), serde_json::json!(false))
        );
        let mut set_feature = event();
        set_feature.command = Command {
            opcode: 0x0502,
            feature: [0xff; 16],
            ..Command::new(ioctl::FWCTL_RPC, class::FWCTL, driver::CXL)
        };
        let v = line(&set_feature);
        assert_eq!(v["feature"], "ffffffff-ffff-ffff-ffff-ffffffffffff");
    }

    #[test]
    fn unobserved_exit_has_no_return_value() {
        let mut e = event();
        e.flags = event_flag::NO_EXIT;
        let record = AuditRecord::from_event(&e, SystemTime::UNIX_EPOCH, &RuleIds::default());
        assert_eq!((record.ret, record.result, record.latency_ns), (None, None, None));
    }

    #[test]
    fn the_record_names_the_deciding_rule() {
        let rules = RuleIds::default();
        let deny_format = rules.id("deny-format");
        let mut denied = event();
        denied.verdict = verdict::DENY;
        denied.rule_id = deny_format;
        let record = AuditRecord::from_event(&denied, SystemTime::UNIX_EPOCH, &rules);
        assert_eq!((record.verdict, record.rule.as_str()), ("deny", "deny-format"));
        for (id, name) in [
            (rule_id::DEFAULT, "default"),
            (rule_id::UNDECODABLE, "on_undecodable"),
            (rule_id::NO_POLICY, "none"),
        ] {
            let e = Event { rule_id: id, ..event() };
            assert_eq!(AuditRecord::from_event(&e, SystemTime::UNIX_EPOCH, &rules).rule, name);
        }
        let line = serde_json::to_value(record).unwrap();
        assert_eq!(line["rule"], "deny-format");
    }

    /// The README's "Audit log" table lists exactly the fields a record can have.
    #[test]
    fn the_readme_documents_every_audit_field_and_no_other() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let section = readme.split("\n## Audit log\n").nth(1).expect("README has an Audit log section");
        let section = section.split("\n## ").next().unwrap();
        let documented: BTreeSet<String> = section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|rest| rest.split(" |").next())
            .flat_map(|cell| cell.split(", ").map(|f| f.trim_matches('`').to_string()).collect::<Vec<_>>())
            .collect();
        // Every optional field present: NVMe (nsid, cdw10), effects known, a feature, a race.
        let mut full = event();
        full.effects = effect::KNOWN | effect::DECLARED;
        full.command.feature = [1; 16];
        full.flags =
            event_flag::TOCTOU | event_flag::KILLED | event_flag::OBSERVER_SKIPPED | event_flag::BYPASS;
        let value =
            serde_json::to_value(AuditRecord::from_event(&full, SystemTime::UNIX_EPOCH, &RuleIds::default()))
                .unwrap();
        let fields: BTreeSet<String> = value.as_object().unwrap().keys().cloned().collect();
        assert_eq!(documented, fields);
    }
}
