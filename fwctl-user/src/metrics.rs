//! Prometheus metrics. Command and failure counters are read from the kernel's per-CPU
//! maps at scrape time (summed over CPUs), so a lost audit event never makes a count
//! wrong; agent-side gauges and counters live in the same registry.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use aya::maps::{MapData, PerCpuArray, PerCpuHashMap};
use fwctl_common::model::{
    channel, class, decode_status, driver, ioctl, origin, result, scope, stat, verdict, CounterKey,
    MailboxKey,
};
use prometheus::{
    core::{Collector, Desc},
    proto::MetricFamily,
    Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::{enforce::rule_ids::RuleIds, labels, prog_stats::ProgramStats};

pub const COMMAND_LABELS: [&str; 9] =
    ["channel", "class", "driver", "opcode", "opcode_name", "scope", "verdict", "rule", "result"];

/// Agent-side metrics (updated by the agent as it works).
#[derive(Clone)]
pub struct AgentMetrics {
    pub program_attached: IntGaugeVec,
    pub audit_events_written: IntCounter,
    pub audit_errors: IntCounterVec,
    pub policy_info: IntGaugeVec,
    pub policy_generation: IntGauge,
    pub policy_last_reload: Gauge,
    pub policy_reload_failures: IntCounter,
    pub enforcing: IntGauge,
    pub effects: EffectsMetrics,
}

/// What the devices declare: the `EFFECTS` map's size, read failures and (opt-in) every
/// declared opcode's effects word.
#[derive(Clone)]
pub struct EffectsMetrics {
    pub entries: IntGaugeVec,
    pub read_failures: IntCounterVec,
    /// `metrics.device_effects: true` only: one series per device and opcode.
    pub opcode_effects: Option<IntGaugeVec>,
}

impl EffectsMetrics {
    pub fn new(per_opcode: bool) -> prometheus::Result<Self> {
        Ok(Self {
            entries: IntGaugeVec::new(
                Opts::new(
                    "fwctl_guard_device_effects_entries",
                    "Entries in the kernel's EFFECTS map (declared opcodes plus one table marker per device \
                     and class), by command class.",
                ),
                &["class"],
            )?,
            read_failures: IntCounterVec::new(
                Opts::new(
                    "fwctl_guard_effects_read_failures_total",
                    "Devices whose declared command effects could not be read or stored (their effects stay \
                     unknown), by command class and reason (errno name, device_status, malformed, no_cel, map_full).",
                ),
                &["class", "reason"],
            )?,
            opcode_effects: per_opcode
                .then(|| {
                    IntGaugeVec::new(
                        Opts::new(
                            "fwctl_guard_device_opcode_effects",
                            "Effects word a device declares for an opcode (bits as in fwctl_common::effects; 0 = \
                             supported, no effects); one series per device node, class, opcode and CXL feature.",
                        ),
                        &["device", "class", "opcode", "feature"],
                    )
                })
                .transpose()?,
        })
    }

    fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.entries.clone()))?;
        registry.register(Box::new(self.read_failures.clone()))?;
        if let Some(per_opcode) = &self.opcode_effects {
            registry.register(Box::new(per_opcode.clone()))?;
        }
        Ok(())
    }
}

/// Build the registry: build info, agent metrics, and the kernel-map collector.
/// `device_effects`: export every declared opcode's effects (high cardinality).
pub fn registry(
    kernel: KernelCounters,
    device_effects: bool,
) -> prometheus::Result<(Registry, AgentMetrics)> {
    let registry = Registry::new();
    let build_info = IntGaugeVec::new(
        Opts::new("fwctl_guard_build_info", "fwctl-guard build; the value is always 1."),
        &["version"],
    )?;
    build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    registry.register(Box::new(build_info))?;
    let agent = AgentMetrics {
        program_attached: IntGaugeVec::new(
            Opts::new("fwctl_guard_program_attached", "1 when the named eBPF program is attached."),
            &["program"],
        )?,
        audit_events_written: IntCounter::new(
            "fwctl_guard_audit_events_written_total",
            "Audit events written to the audit log.",
        )?,
        audit_errors: IntCounterVec::new(
            Opts::new("fwctl_guard_audit_errors_total", "Audit events that could not be decoded or written."),
            &["reason"],
        )?,
        policy_info: IntGaugeVec::new(
            Opts::new("fwctl_guard_policy_info", "The active policy; the value is always 1."),
            &["name", "sha256", "version"],
        )?,
        policy_generation: IntGauge::new(
            "fwctl_guard_policy_generation",
            "Generation of the active policy (1 = the first loaded; +1 per successful reload).",
        )?,
        policy_last_reload: Gauge::new(
            "fwctl_guard_policy_last_reload_timestamp_seconds",
            "Unix time of the last successful policy load.",
        )?,
        policy_reload_failures: IntCounter::new(
            "fwctl_guard_policy_reload_failures_total",
            "Policy loads rejected (the running policy stayed).",
        )?,
        enforcing: IntGauge::new(
            "fwctl_guard_enforcing",
            "1 when deny verdicts are enforced (enforce-mode policy on the LSM hook), else 0.",
        )?,
        effects: EffectsMetrics::new(device_effects)?,
    };
    registry.register(Box::new(agent.program_attached.clone()))?;
    registry.register(Box::new(agent.audit_events_written.clone()))?;
    registry.register(Box::new(agent.audit_errors.clone()))?;
    registry.register(Box::new(agent.policy_info.clone()))?;
    registry.register(Box::new(agent.policy_generation.clone()))?;
    registry.register(Box::new(agent.policy_last_reload.clone()))?;
    registry.register(Box::new(agent.policy_reload_failures.clone()))?;
    registry.register(Box::new(agent.enforcing.clone()))?;
    agent.effects.register(&registry)?;
    registry.register(Box::new(kernel))?;
    Ok((registry, agent))
}

/// `fwctl_guard_toctou_detected_total{class}`, read from the kernel's `TOCTOU` array.
pub struct ToctouCounters {
    map: Mutex<PerCpuArray<MapData, u64>>,
    counter: IntCounterVec,
}

impl ToctouCounters {
    pub fn new(map: PerCpuArray<MapData, u64>) -> prometheus::Result<Self> {
        let counter = IntCounterVec::new(
            Opts::new(
                "fwctl_guard_toctou_detected_total",
                "Passthrough commands whose payload changed between the policy decision and the driver \
                 (what reached the device is not what was decided).",
            ),
            &["class"],
        )?;
        Ok(Self { map: Mutex::new(map), counter })
    }
}

impl Collector for ToctouCounters {
    fn desc(&self) -> Vec<&Desc> {
        self.counter.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let counter = self.counter.clone();
        counter.reset();
        if let Ok(map) = self.map.lock() {
            for c in [class::FWCTL, class::NVME_ADMIN, class::NVME_IO, class::CXL_MEM, class::SCSI] {
                let total = per_cpu_slot(&map, c as u32);
                // Every class is exported (0 included) so alerts can use increase() from the start.
                counter.with_label_values(&[class::label(c)]).inc_by(total);
            }
        }
        counter.collect()
    }
}

/// Reads `COUNTERS` and `STATS` on every scrape.
pub struct KernelCounters {
    counters: Mutex<PerCpuHashMap<MapData, CounterKey, u64>>,
    mailbox: Mutex<PerCpuHashMap<MapData, MailboxKey, u64>>,
    stats: Mutex<PerCpuArray<MapData, u64>>,
    programs: Vec<ProgramStats>,
    rules: RuleIds,
    descs: Vec<Desc>,
}

fn commands_vec() -> IntCounterVec {
    IntCounterVec::new(
        Opts::new("fwctl_guard_commands_total", "Passthrough commands seen, counted in the kernel."),
        &COMMAND_LABELS,
    )
    .expect("static metric definition")
}

fn decode_errors_vec() -> IntCounterVec {
    IntCounterVec::new(
        Opts::new(
            "fwctl_guard_decode_errors_total",
            "Commands whose payload could not be decoded, by reason.",
        ),
        &["class", "reason"],
    )
    .expect("static metric definition")
}

fn events_lost() -> IntCounter {
    IntCounter::new(
        "fwctl_guard_events_lost_total",
        "Audit events the kernel could not queue (ring buffer full); the commands were still counted.",
    )
    .expect("static metric definition")
}

fn mailbox_vec() -> IntCounterVec {
    IntCounterVec::new(
        Opts::new(
            "fwctl_guard_mailbox_commands_total",
            "Admin-queue commands seen at the device driver's own tracepoints, by origin and device status.",
        ),
        &MAILBOX_LABELS,
    )
    .expect("static metric definition")
}

pub const MAILBOX_LABELS: [&str; 5] = ["class", "opcode", "opcode_name", "origin", "status"];

/// The label values of `fwctl_guard_mailbox_commands_total`.
pub fn mailbox_labels(key: &MailboxKey) -> [String; 5] {
    let opcode = key.opcode as u32;
    [
        class::label(key.class).to_string(),
        labels::opcode(opcode),
        labels::opcode_name(key.class, driver::NVME, ioctl::NVME_ADMIN_CMD, opcode, decode_status::OK)
            .to_string(),
        origin::label(key.origin).to_string(),
        if key.status == 0 { "success".to_string() } else { format!("0x{:04x}", key.status) },
    ]
}

fn skipped_vec() -> IntCounterVec {
    IntCounterVec::new(
        Opts::new(
            "fwctl_guard_program_skipped_total",
            "Invocations the kernel skipped because the program was already running on that CPU \
             (bpf_prog_info.recursion_misses); a skipped exit hook leaves commands with result=unknown.",
        ),
        &["program"],
    )
    .expect("static metric definition")
}

fn refusals_vec() -> IntCounterVec {
    IntCounterVec::new(
        Opts::new(
            "fwctl_guard_lsm_refusals_total",
            "ioctls the LSM hook refused before the driver ran, by whose decision \
             (policy: this agent's deny rules; earlier_bpf_lsm: another BPF LSM program).",
        ),
        &["by"],
    )
    .expect("static metric definition")
}

fn kernel_errors_vec() -> IntCounterVec {
    IntCounterVec::new(
        Opts::new(
            "fwctl_guard_kernel_errors_total",
            "Kernel-side failures, by reason (every drop is counted).",
        ),
        &["reason"],
    )
    .expect("static metric definition")
}

impl KernelCounters {
    pub fn new(
        counters: PerCpuHashMap<MapData, CounterKey, u64>,
        mailbox: PerCpuHashMap<MapData, MailboxKey, u64>,
        stats: PerCpuArray<MapData, u64>,
        programs: Vec<ProgramStats>,
        rules: RuleIds,
    ) -> Self {
        let descs = [
            commands_vec().desc(),
            mailbox_vec().desc(),
            skipped_vec().desc(),
            refusals_vec().desc(),
            decode_errors_vec().desc(),
            events_lost().desc(),
            kernel_errors_vec().desc(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        Self {
            counters: Mutex::new(counters),
            mailbox: Mutex::new(mailbox),
            stats: Mutex::new(stats),
            programs,
            rules,
            descs,
        }
    }

    /// Current kernel counter values, summed over CPUs.
    pub fn snapshot(
        &self,
    ) -> (BTreeMap<CounterKey, u64>, BTreeMap<MailboxKey, u64>, [u64; stat::COUNT as usize]) {
        let totals = sum_per_cpu(&self.counters);
        let mailbox = sum_per_cpu(&self.mailbox);
        let mut stats = [0u64; stat::COUNT as usize];
        if let Ok(map) = self.stats.lock() {
            for (index, slot) in stats.iter_mut().enumerate() {
                *slot = per_cpu_slot(&map, index as u32);
            }
        }
        (totals, mailbox, stats)
    }
}

/// One slot of a per-CPU array, summed over CPUs (0 if it cannot be read).
pub fn per_cpu_slot(map: &PerCpuArray<MapData, u64>, index: u32) -> u64 {
    map.get(&index, 0).map_or(0, |values| values.iter().fold(0u64, |a, v| a.wrapping_add(*v)))
}

fn sum_per_cpu<K: aya::Pod + Ord>(map: &Mutex<PerCpuHashMap<MapData, K, u64>>) -> BTreeMap<K, u64> {
    let mut totals = BTreeMap::new();
    if let Ok(map) = map.lock() {
        for (key, values) in map.iter().flatten() {
            // Wrapping: a command counted on one CPU and moved to its result on another
            // leaves one slot "negative"; the sum over CPUs is exact.
            let sum = values.iter().fold(0u64, |a, v| a.wrapping_add(*v));
            let total = totals.entry(key).or_insert(0u64);
            *total = total.wrapping_add(sum);
        }
    }
    totals
}

/// The label values of `fwctl_guard_commands_total` for a kernel counter key.
pub fn command_labels(key: &CounterKey, rules: &RuleIds) -> [String; 9] {
    [
        channel::label(channel::of(key.ioctl)).to_string(),
        class::label(key.class).to_string(),
        driver::label(key.driver).to_string(),
        labels::opcode(key.opcode),
        labels::opcode_name(key.class, key.driver, key.ioctl, key.opcode, key.decode).to_string(),
        scope::label(key.scope).to_string(),
        verdict::label(key.verdict).to_string(),
        rules.label(key.rule_id),
        result::label(key.result).to_string(),
    ]
}

impl Collector for KernelCounters {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let (totals, mailbox_totals, stats) = self.snapshot();
        let commands = commands_vec();
        let decode_errors = decode_errors_vec();
        for (key, value) in totals.iter().filter(|(_, v)| **v != 0) {
            let labels = command_labels(key, &self.rules);
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            commands.with_label_values(&labels).inc_by(*value);
            if key.decode != decode_status::OK {
                decode_errors
                    .with_label_values(&[class::label(key.class), decode_status::label(key.decode)])
                    .inc_by(*value);
            }
        }
        let lost = events_lost();
        lost.inc_by(stats[stat::EVENTS_LOST as usize]);
        let kernel_errors = kernel_errors_vec();
        for index in [stat::PENDING_FULL, stat::COUNTER_MAP_FULL, stat::FD_UNRESOLVED] {
            kernel_errors.with_label_values(&[stat::label(index)]).inc_by(stats[index as usize]);
        }
        let mailbox = mailbox_vec();
        for (key, value) in &mailbox_totals {
            let labels = mailbox_labels(key);
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            mailbox.with_label_values(&labels).inc_by(*value);
        }
        let skipped = skipped_vec();
        for program in &self.programs {
            if let Some(misses) = program.recursion_misses() {
                skipped.with_label_values(&[program.name]).inc_by(misses);
            }
        }
        let refusals = refusals_vec();
        for index in [stat::REFUSED_POLICY, stat::REFUSED_EARLIER] {
            refusals.with_label_values(&[stat::label(index)]).inc_by(stats[index as usize]);
        }
        let mut families = commands.collect();
        families.extend(skipped.collect());
        families.extend(refusals.collect());
        families.extend(mailbox.collect());
        families.extend(decode_errors.collect());
        families.extend(lost.collect());
        families.extend(kernel_errors.collect());
        families
    }
}

/// Render the registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode_utf8(&registry.gather(), &mut out) {
        log::error!("encoding metrics: {e}");
    }
    out
}

/// Shared handle for the HTTP server.
pub type SharedRegistry = Arc<Registry>;

#[cfg(test)]
mod tests {
    use super::*;
    use fwctl_common::model::{ioctl, OPCODE_NONE};

    #[test]
    fn counter_keys_become_documented_labels() {
        let key = CounterKey {
            opcode: 0x100,
            class: class::FWCTL,
            driver: driver::MLX5,
            ioctl: ioctl::FWCTL_RPC,
            scope: scope::DEBUG_READ_ONLY,
            decode: 0,
            result: result::ERROR,
            verdict: verdict::DENY,
            _pad: 0,
            rule_id: fwctl_common::policy::rule_id::DEFAULT,
            _pad2: [0; 2],
        };
        let rules = RuleIds::default();
        assert_eq!(
            command_labels(&key, &rules),
            [
                "ioctl",
                "fwctl",
                "mlx5",
                "0x0100",
                "QUERY_HCA_CAP",
                "debug-read-only",
                "deny",
                "default",
                "error"
            ]
            .map(String::from)
        );
        let named = CounterKey { rule_id: rules.id("deny-hca"), ..key };
        assert_eq!(command_labels(&named, &rules)[7], "deny-hca");
        let undecodable = CounterKey { opcode: OPCODE_NONE, decode: decode_status::ARG_UNREADABLE, ..key };
        assert_eq!(
            command_labels(&undecodable, &rules)[3..5],
            ["none".to_string(), "undecodable".to_string()]
        );
    }

    #[test]
    fn mailbox_keys_become_labels() {
        let key = MailboxKey {
            status: 0,
            opcode: 0x06,
            class: class::NVME_ADMIN,
            origin: origin::PASSTHROUGH,
            _pad: [0; 3],
        };
        assert_eq!(
            mailbox_labels(&key),
            ["nvme-admin", "0x0006", "identify", "passthrough", "success"].map(String::from)
        );
        let failed = MailboxKey { status: 0x4002, origin: origin::KERNEL, ..key };
        assert_eq!(mailbox_labels(&failed)[3..], ["kernel".to_string(), "0x4002".to_string()]);
    }

    #[test]
    fn rendered_families_have_help_and_type() {
        let registry = Registry::new();
        let commands = commands_vec();
        commands
            .with_label_values(&[
                "ioctl",
                "nvme-admin",
                "nvme",
                "0x0006",
                "identify",
                "none",
                "allow",
                "none",
                "ok",
            ])
            .inc_by(3);
        registry.register(Box::new(commands)).unwrap();
        let text = render(&registry);
        assert!(text.contains("# HELP fwctl_guard_commands_total "), "{text}");
        assert!(text.contains("# TYPE fwctl_guard_commands_total counter"), "{text}");
        assert!(
            text.contains(r#"fwctl_guard_commands_total{channel="ioctl",class="nvme-admin",driver="nvme",opcode="0x0006",opcode_name="identify",result="ok",rule="none",scope="none",verdict="allow"} 3"#),
            "{text}"
        );
    }
}
