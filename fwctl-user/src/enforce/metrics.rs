//! The metrics of the running policy: which one, which generation, when it was loaded,
//! the loads that were refused, and whether deny verdicts are enforced.

use prometheus::{core::Collector, Gauge, IntCounter, IntGauge, IntGaugeVec, Opts};

#[derive(Clone)]
pub struct PolicyMetrics {
    pub info: IntGaugeVec,
    pub generation: IntGauge,
    pub last_reload: Gauge,
    pub reload_failures: IntCounter,
    pub enforcing: IntGauge,
}

impl PolicyMetrics {
    pub fn new() -> prometheus::Result<Self> {
        Ok(Self {
            info: IntGaugeVec::new(
                Opts::new("fwctl_guard_policy_info", "The active policy; the value is always 1."),
                &["name", "sha256", "version"],
            )?,
            generation: IntGauge::new(
                "fwctl_guard_policy_generation",
                "Generation of the active policy (1 = the first loaded; +1 per successful reload).",
            )?,
            last_reload: Gauge::new(
                "fwctl_guard_policy_last_reload_timestamp_seconds",
                "Unix time of the last successful policy load.",
            )?,
            reload_failures: IntCounter::new(
                "fwctl_guard_policy_reload_failures_total",
                "Policy loads rejected (the running policy stayed).",
            )?,
            enforcing: IntGauge::new(
                "fwctl_guard_enforcing",
                "1 when deny verdicts are enforced: an enforce-mode policy on a hook set that can deny \
                 and whose deny programs the self-test proved to run; else 0.",
            )?,
        })
    }

    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.info.clone()),
            Box::new(self.generation.clone()),
            Box::new(self.last_reload.clone()),
            Box::new(self.reload_failures.clone()),
            Box::new(self.enforcing.clone()),
        ]
    }
}
