//! The families read from the kernel's own counters at every scrape, summed over CPUs:
//! commands (by every decoded label), mailbox commands, failures, skipped program runs,
//! refusals, TOCTOU detections and fwctl kernel-copy checks. A lost audit event never
//! makes one of these wrong.

use aya::maps::{MapData, PerCpuArray, PerCpuHashMap};
use fwctl_common::{
    model::{
        channel, class, decode_status, driver, ioctl, origin, result, scope, stat, verdict, CounterKey,
        MailboxKey,
    },
    rpc_check::{self, outcome},
};
use prometheus::{
    core::{Collector, Desc},
    proto::MetricFamily,
    CounterVec, IntCounter, IntCounterVec, Opts,
};

use super::computed::{Computed, Fill};
use crate::{
    kernel::{
        maps::{per_cpu_slot, per_cpu_totals},
        prog_stats::ProgramStats,
    },
    names::{self, RuleIds},
};

pub const COMMAND_LABELS: [&str; 9] =
    ["channel", "class", "driver", "opcode", "opcode_name", "scope", "verdict", "rule", "result"];

/// The kernel maps and programs the counters are read from.
pub struct KernelSources {
    pub counters: PerCpuHashMap<MapData, CounterKey, u64>,
    pub mailbox: PerCpuHashMap<MapData, MailboxKey, u64>,
    pub stats: PerCpuArray<MapData, u64>,
    pub toctou: PerCpuArray<MapData, u64>,
    pub bypass: PerCpuArray<MapData, u64>,
    pub rpc_checks: PerCpuArray<MapData, u64>,
    /// The attached programs, for their skip counts.
    pub programs: Vec<ProgramStats>,
    pub rules: RuleIds,
}

/// The counters of `COUNTERS`, `MAILBOX_COUNTERS` and `STATS`, and the programs' skip
/// counts, read at every scrape.
pub struct KernelCounters {
    /// `None`: the families are only defined.
    source: Option<Sources>,
    descs: Vec<Desc>,
}

struct Sources {
    counters: PerCpuHashMap<MapData, CounterKey, u64>,
    mailbox: PerCpuHashMap<MapData, MailboxKey, u64>,
    stats: PerCpuArray<MapData, u64>,
    programs: Vec<ProgramStats>,
    rules: RuleIds,
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
        names::opcode(opcode),
        names::opcode_name(key.class, driver::NVME, ioctl::NVME_ADMIN_CMD, opcode, decode_status::OK)
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

fn runs_vec() -> IntCounterVec {
    IntCounterVec::new(
        Opts::new(
            "fwctl_guard_program_runs_total",
            "Runs of each attached program the kernel counted (bpf_prog_info.run_cnt): only while \
             kernel.bpf_stats_enabled is 1, else 0.",
        ),
        &["program"],
    )
    .expect("static metric definition")
}

fn run_seconds_vec() -> CounterVec {
    CounterVec::new(
        Opts::new(
            "fwctl_guard_program_run_seconds_total",
            "Time the kernel spent in each attached program (bpf_prog_info.run_time_ns): only \
             while kernel.bpf_stats_enabled is 1, else 0. Divided by fwctl_guard_program_runs_total: \
             the program's own cost per run.",
        ),
        &["program"],
    )
    .expect("static metric definition")
}

fn refusals_vec() -> IntCounterVec {
    IntCounterVec::new(
        Opts::new(
            "fwctl_guard_lsm_refusals_total",
            "Commands the deny-capable hook set refused before the driver ran, by whose decision \
             (policy: this agent's deny rules; earlier_bpf_lsm: another BPF LSM program; backup: \
             a backup deny program of the trampoline set, the deciding one having been skipped).",
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
        runs_vec().desc(),
        run_seconds_vec().desc(),
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

/// Every family read from the kernel: the counters, TOCTOU detections and the fwctl
/// kernel-copy checks (`None`: defined only, for listing the families).
pub fn families(kernel: Option<KernelSources>) -> prometheus::Result<Vec<Box<dyn Collector>>> {
    let (counters, toctou, bypass, rpc_checks) = match kernel {
        Some(k) => (
            Some(Sources {
                counters: k.counters,
                mailbox: k.mailbox,
                stats: k.stats,
                programs: k.programs,
                rules: k.rules,
            }),
            Some(k.toctou),
            Some(k.bypass),
            Some(k.rpc_checks),
        ),
        None => (None, None, None, None),
    };
    Ok(vec![
        Box::new(KernelCounters { source: counters, descs: kernel_descs() }),
        Box::new(per_class_family(toctou_definition, toctou)?),
        Box::new(per_class_family(bypass_definition, bypass)?),
        Box::new(rpc_check_family(rpc_checks)?),
    ])
}

fn toctou_definition() -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(
        Opts::new(
            "fwctl_guard_toctou_detected_total",
            "Passthrough commands whose payload changed between the policy decision and the driver \
             (what reached the device is not what was decided).",
        ),
        &["class"],
    )
}

fn bypass_definition() -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(
        Opts::new(
            "fwctl_guard_hook_bypass_detected_total",
            "Commands the policy denies that reached the driver because the kernel skipped every \
             deny program of the trampoline hook set for them (tracing programs are skipped when a \
             task was preempted inside them); detected after the fact by the result programs.",
        ),
        &["class"],
    )
}

/// A `{class}` counter family read from a per-CPU array indexed by class (the kernel's
/// `TOCTOU` and `BYPASS` maps). Every class is exported (0 included) so alerts can use
/// increase() from the start.
fn per_class_family(
    definition: fn() -> prometheus::Result<IntCounterVec>,
    map: Option<PerCpuArray<MapData, u64>>,
) -> prometheus::Result<Computed<IntCounterVec>> {
    let fill = map.map(|map| -> Fill<IntCounterVec> {
        Box::new(move |counter: &IntCounterVec| {
            for c in class::ALL {
                counter.with_label_values(&[class::label(c)]).inc_by(per_cpu_slot(&map, c as u32));
            }
        })
    });
    Computed::new(definition, fill)
}

fn rpc_check_definition() -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(
        Opts::new(
            "fwctl_guard_fwctl_rpc_checks_total",
            "fwctl RPCs whose kernel copy (at the driver's fw_rpc) was compared with the decision \
             made at the ioctl hook, by outcome (anything but match means the payload changed in \
             between, or no decision was seen).",
        ),
        &["driver", "outcome"],
    )
}

/// `fwctl_guard_fwctl_rpc_checks_total{driver,outcome}`, from the kernel's `RPC_CHECKS`.
fn rpc_check_family(map: Option<PerCpuArray<MapData, u64>>) -> prometheus::Result<Computed<IntCounterVec>> {
    let fill = map.map(|map| -> Fill<IntCounterVec> {
        Box::new(move |counter: &IntCounterVec| {
            for drv in rpc_check::DRIVERS {
                for result in 0..outcome::COUNT {
                    let total = per_cpu_slot(&map, rpc_check::counter_index(drv, result));
                    if total != 0 {
                        counter
                            .with_label_values(&[driver::label(drv), outcome::label(result)])
                            .inc_by(total);
                    }
                }
            }
        })
    });
    Computed::new(rpc_check_definition, fill)
}

/// The label values of `fwctl_guard_commands_total` for a kernel counter key.
pub fn command_labels(key: &CounterKey, rules: &RuleIds) -> [String; 9] {
    [
        channel::label(channel::of(key.ioctl)).to_string(),
        class::label(key.class).to_string(),
        driver::label(key.driver).to_string(),
        names::opcode(key.opcode),
        names::opcode_name(key.class, key.driver, key.ioctl, key.opcode, key.decode).to_string(),
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
        let Some(source) = &self.source else { return Vec::new() };
        let totals = per_cpu_totals(&source.counters);
        let mailbox_totals = per_cpu_totals(&source.mailbox);
        let mut stats = [0u64; stat::COUNT as usize];
        for (index, slot) in stats.iter_mut().enumerate() {
            *slot = per_cpu_slot(&source.stats, index as u32);
        }
        let commands = commands_vec();
        let decode_errors = decode_errors_vec();
        for (key, value) in totals.iter().filter(|(_, v)| **v != 0) {
            let labels = command_labels(key, &source.rules);
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
        let (skipped, runs, run_seconds) = (skipped_vec(), runs_vec(), run_seconds_vec());
        for program in &source.programs {
            if let Some(stats) = program.stats() {
                skipped.with_label_values(&[program.name]).inc_by(stats.recursion_misses);
                runs.with_label_values(&[program.name]).inc_by(stats.run_count);
                run_seconds.with_label_values(&[program.name]).inc_by(stats.run_time_ns as f64 / 1e9);
            }
        }
        let refusals = refusals_vec();
        for index in [stat::REFUSED_POLICY, stat::REFUSED_EARLIER, stat::REFUSED_BACKUP] {
            refusals.with_label_values(&[stat::label(index)]).inc_by(stats[index as usize]);
        }
        let mut families = commands.collect();
        families.extend(skipped.collect());
        families.extend(runs.collect());
        families.extend(run_seconds.collect());
        families.extend(refusals.collect());
        families.extend(mailbox.collect());
        families.extend(decode_errors.collect());
        families.extend(lost.collect());
        families.extend(kernel_errors.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use fwctl_common::model::OPCODE_NONE;
    use prometheus::Registry;

    use super::*;

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
        let text = super::super::render(&registry);
        assert!(text.contains("# HELP fwctl_guard_commands_total "), "{text}");
        assert!(text.contains("# TYPE fwctl_guard_commands_total counter"), "{text}");
        assert!(
            text.contains(r#"fwctl_guard_commands_total{channel="ioctl",class="nvme-admin",driver="nvme",opcode="0x0006",opcode_name="identify",result="ok",rule="none",scope="none",verdict="allow"} 3"#),
            "{text}"
        );
    }
}
