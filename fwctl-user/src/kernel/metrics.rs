//! The metrics of the attached programs: which are attached, and which pinned set the
//! agent runs on and how it got it.

use prometheus::{core::Collector, Gauge, IntCounterVec, IntGaugeVec, Opts};

#[derive(Clone)]
pub struct ProgramMetrics {
    pub attached: IntGaugeVec,
    /// The pinned program set in use and how the agent got it (`pins`).
    pub pinned_set: IntGaugeVec,
    /// 1 when the self-test proved the program runs (and refuses, where it can), else 0.
    pub verified: IntGaugeVec,
    /// When the self-test last ran.
    pub last_check: Gauge,
    /// Self-tests by result (`ok`, `failed`).
    pub checks: IntCounterVec,
}

impl ProgramMetrics {
    pub fn new() -> prometheus::Result<Self> {
        Ok(Self {
            attached: IntGaugeVec::new(
                Opts::new("fwctl_guard_program_attached", "1 when the named eBPF program is attached."),
                &["program"],
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
            verified: IntGaugeVec::new(
                Opts::new(
                    "fwctl_guard_hook_verified",
                    "1 when the self-test's canary proved the program runs (and, for a program that can \
                     deny, that it refuses), 0 when it did not; programs no canary can reach here \
                     (no NVMe controller for io_uring, no 32-bit syscalls) are not listed.",
                ),
                &["hook_set", "program"],
            )?,
            last_check: Gauge::new(
                "fwctl_guard_hook_last_check_timestamp_seconds",
                "Unix time of the last self-test of the attached hook set.",
            )?,
            checks: {
                let checks = IntCounterVec::new(
                    Opts::new(
                        "fwctl_guard_hook_checks_total",
                        "Self-tests of the attached hook set, by result (ok: every program proven; failed).",
                    ),
                    &["result"],
                )?;
                for result in ["ok", "failed"] {
                    checks.with_label_values(&[result]);
                }
                checks
            },
        })
    }

    /// Record a self-test.
    pub fn record(&self, report: &super::selftest::Report) {
        self.verified.reset();
        for proof in report.proofs.iter().filter(|p| p.testable) {
            self.verified.with_label_values(&[report.hook_set, proof.program]).set(proof.proven() as i64);
        }
        let at = report.at.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        self.last_check.set(at);
        self.checks.with_label_values(&[if report.all_proven() { "ok" } else { "failed" }]).inc();
    }

    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.attached.clone()),
            Box::new(self.pinned_set.clone()),
            Box::new(self.verified.clone()),
            Box::new(self.last_check.clone()),
            Box::new(self.checks.clone()),
        ]
    }
}
