//! The metrics of the attached programs: which are attached, and which pinned set the
//! agent runs on and how it got it.

use prometheus::{core::Collector, IntGaugeVec, Opts};

#[derive(Clone)]
pub struct ProgramMetrics {
    pub attached: IntGaugeVec,
    /// The pinned program set in use and how the agent got it (`pins`).
    pub pinned_set: IntGaugeVec,
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
        })
    }

    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![Box::new(self.attached.clone()), Box::new(self.pinned_set.clone())]
    }
}
