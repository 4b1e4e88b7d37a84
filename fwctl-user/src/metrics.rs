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

use crate::{config::MetricsConfig, enforce::rule_ids::RuleIds, labels, prog_stats::ProgramStats};

mod process;
pub use process::ProcessCommands;

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
    /// The pinned program set in use and how the agent got it (`pins`).
    pub pinned_set: IntGaugeVec,
    pub effects: EffectsMetrics,
    /// SIGUSR1 reopens of the audit file, by result (`ok`, `error`).
    pub audit_reopens: IntCounterVec,
    pub label_overflow: IntCounterVec,
    /// `metrics.per_process.enabled` only.
    pub process: Option<ProcessCommands>,
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
}

fn build_info() -> prometheus::Result<IntGaugeVec> {
    let build_info = IntGaugeVec::new(
        Opts::new("fwctl_guard_build_info", "fwctl-guard build; the value is always 1."),
        &["version"],
    )?;
    build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    Ok(build_info)
}

impl AgentMetrics {
    pub fn new(options: &MetricsConfig) -> prometheus::Result<Self> {
        let label_overflow = process::overflow_vec()?;
        let process = if options.per_process.enabled {
            Some(ProcessCommands::new(
                process::counter_vec()?,
                &label_overflow,
                options.per_process.max_series,
            ))
        } else {
            None
        };
        let audit_reopens = IntCounterVec::new(
            Opts::new(
                "fwctl_guard_audit_reopens_total",
                "Reopens of the audit log file on SIGUSR1 (log rotation), by result; after an error the \
                 agent keeps writing to the file it had open.",
            ),
            &["result"],
        )?;
        for result in ["ok", "error"] {
            audit_reopens.with_label_values(&[result]);
        }
        Ok(Self {
            program_attached: IntGaugeVec::new(
                Opts::new("fwctl_guard_program_attached", "1 when the named eBPF program is attached."),
                &["program"],
            )?,
            audit_events_written: IntCounter::new(
                "fwctl_guard_audit_events_written_total",
                "Audit events written to the audit log.",
            )?,
            audit_errors: IntCounterVec::new(
                Opts::new(
                    "fwctl_guard_audit_errors_total",
                    "Audit events that could not be decoded, written or sent to syslog, by reason.",
                ),
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
            pinned_set: IntGaugeVec::new(
                Opts::new(
                    "fwctl_guard_pinned_set_info",
                    "The pinned program set (<hook>-<build> under the pin root) the agent runs on; \
                     start: adopted (left attached by an earlier agent), attached (new) or replaced \
                     (new, another build removed after it was attached). Always 1.",
                ),
                &["set", "start"],
            )?,
            effects: EffectsMetrics::new(options.device_effects)?,
            audit_reopens,
            label_overflow,
            process,
        })
    }

    /// Every collector to register (the opt-in families only when enabled).
    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        let mut collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(self.program_attached.clone()),
            Box::new(self.audit_events_written.clone()),
            Box::new(self.audit_errors.clone()),
            Box::new(self.policy_info.clone()),
            Box::new(self.policy_generation.clone()),
            Box::new(self.policy_last_reload.clone()),
            Box::new(self.policy_reload_failures.clone()),
            Box::new(self.enforcing.clone()),
            Box::new(self.pinned_set.clone()),
            Box::new(self.effects.entries.clone()),
            Box::new(self.effects.read_failures.clone()),
            Box::new(self.audit_reopens.clone()),
            Box::new(self.label_overflow.clone()),
        ];
        if let Some(per_opcode) = &self.effects.opcode_effects {
            collectors.push(Box::new(per_opcode.clone()));
        }
        if let Some(process) = &self.process {
            collectors.push(Box::new(process.counter()));
        }
        collectors
    }
}

/// Build the registry: build info, agent metrics, and the kernel-map collector.
pub fn registry(
    kernel: KernelCounters,
    options: &MetricsConfig,
) -> prometheus::Result<(Registry, AgentMetrics)> {
    let registry = Registry::new();
    registry.register(Box::new(build_info()?))?;
    let agent = AgentMetrics::new(options)?;
    for collector in agent.collectors() {
        registry.register(collector)?;
    }
    registry.register(Box::new(kernel))?;
    Ok((registry, agent))
}

/// The name of every family the agent can export, opt-in ones included, whether or not
/// it has samples now. Built from the same definitions the collectors use (none needs a
/// kernel map for that); the collectors `agent::run` registers besides `registry`
/// (TOCTOU, fwctl RPC checks, taint, device info) are listed here too.
pub fn family_names() -> prometheus::Result<std::collections::BTreeSet<String>> {
    let all = MetricsConfig {
        device_effects: true,
        per_process: crate::config::PerProcessConfig { enabled: true, max_series: 1 },
        ..MetricsConfig::default()
    };
    let mut collectors = AgentMetrics::new(&all)?.collectors();
    collectors.push(Box::new(build_info()?));
    collectors.push(Box::new(toctou_vec()?));
    collectors.push(Box::new(crate::rpc_checks::counter_vec()?));
    collectors.push(Box::new(crate::taint::TaintCollector::new()?));
    collectors.push(Box::new(crate::device_info::DeviceInfoCollector::new(std::path::PathBuf::new())?));
    let mut names: std::collections::BTreeSet<String> =
        collectors.iter().flat_map(|c| c.desc().into_iter().map(|d| d.fq_name.clone())).collect();
    names.extend(kernel_descs().into_iter().map(|d| d.fq_name));
    Ok(names)
}

/// `fwctl_guard_toctou_detected_total{class}`, read from the kernel's `TOCTOU` array.
pub struct ToctouCounters {
    map: Mutex<PerCpuArray<MapData, u64>>,
    counter: IntCounterVec,
}

fn toctou_vec() -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(
        Opts::new(
            "fwctl_guard_toctou_detected_total",
            "Passthrough commands whose payload changed between the policy decision and the driver \
             (what reached the device is not what was decided).",
        ),
        &["class"],
    )
}

impl ToctouCounters {
    pub fn new(map: PerCpuArray<MapData, u64>) -> prometheus::Result<Self> {
        Ok(Self { map: Mutex::new(map), counter: toctou_vec()? })
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

/// The families `KernelCounters` exports.
fn kernel_descs() -> Vec<Desc> {
    [
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
    .collect()
}

impl KernelCounters {
    pub fn new(
        counters: PerCpuHashMap<MapData, CounterKey, u64>,
        mailbox: PerCpuHashMap<MapData, MailboxKey, u64>,
        stats: PerCpuArray<MapData, u64>,
        programs: Vec<ProgramStats>,
        rules: RuleIds,
    ) -> Self {
        let descs = kernel_descs();
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

    /// `fwctl_guard_*` names in a PromQL expression (histogram series suffixes stripped).
    fn promql_metric_names(expr: &str, families: &std::collections::BTreeSet<String>) -> Vec<String> {
        expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .filter(|token| token.starts_with("fwctl_guard_"))
            .map(|token| {
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| token.strip_suffix(suffix).filter(|base| families.contains(*base)))
                    .unwrap_or(token)
                    .to_string()
            })
            .collect()
    }

    /// Every string under an `expr` or `query` key (panel targets, template variables, rules).
    fn queries(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("expr" | "query" | "definition", serde_json::Value::String(q)) => {
                            out.push(q.clone())
                        }
                        _ => queries(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
            _ => {}
        }
    }

    fn deploy_file(path: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn dashboard_and_alerts_use_only_exported_families() {
        let families = family_names().unwrap();
        let dashboard: serde_json::Value =
            serde_json::from_str(&deploy_file("deploy/grafana/fwctl-guard.json")).unwrap();
        let alerts: serde_json::Value =
            serde_saphyr::from_str(&deploy_file("deploy/prometheus/alerts.yaml")).unwrap();
        for (file, doc, least) in [("dashboard", &dashboard, 25), ("alerts", &alerts, 9)] {
            let mut exprs = Vec::new();
            queries(doc, &mut exprs);
            let exprs: Vec<_> = exprs.into_iter().filter(|q| q != "prometheus").collect();
            assert!(exprs.len() >= least, "{file}: only {} queries found: {exprs:?}", exprs.len());
            for expr in exprs {
                let names = promql_metric_names(&expr, &families);
                assert!(!names.is_empty(), "{file}: `{expr}` uses no fwctl-guard metric");
                for name in names {
                    assert!(
                        families.contains(&name),
                        "{file}: `{expr}` uses {name}, which the agent does not export"
                    );
                }
            }
        }
    }

    #[test]
    fn the_readme_documents_every_family_and_no_other() {
        let readme = deploy_file("README.md");
        let documented: std::collections::BTreeSet<String> = readme
            .lines()
            .filter_map(|l| l.strip_prefix("| `fwctl_guard_"))
            .filter_map(|rest| rest.split('`').next())
            .map(|name| format!("fwctl_guard_{name}"))
            .collect();
        assert_eq!(documented, family_names().unwrap());
    }

    #[test]
    fn family_names_include_families_without_samples() {
        let names = family_names().unwrap();
        for name in [
            "fwctl_guard_commands_total",
            "fwctl_guard_decode_errors_total",
            "fwctl_guard_toctou_detected_total",
            "fwctl_guard_fwctl_rpc_checks_total",
            "fwctl_guard_kernel_tainted",
            "fwctl_guard_device_info",
            "fwctl_guard_device_opcode_effects",
            "fwctl_guard_process_commands_total",
            "fwctl_guard_label_overflow_total",
            "fwctl_guard_audit_reopens_total",
        ] {
            assert!(names.contains(name), "{name} missing from {names:?}");
        }
        assert!(promql_metric_names("rate(fwctl_guard_x_bucket[5m])", &names) == ["fwctl_guard_x_bucket"]);
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
