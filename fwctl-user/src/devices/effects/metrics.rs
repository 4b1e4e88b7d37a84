//! The metrics of device effects: how many entries the kernel's `EFFECTS` map holds per
//! class, the reads that failed, and (opt-in) every declared opcode's effects word.

use prometheus::{core::Collector, IntCounterVec, IntGaugeVec, Opts};

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

    /// Every family (the per-opcode one only when enabled).
    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        let mut collectors: Vec<Box<dyn Collector>> =
            vec![Box::new(self.entries.clone()), Box::new(self.read_failures.clone())];
        if let Some(per_opcode) = &self.opcode_effects {
            collectors.push(Box::new(per_opcode.clone()));
        }
        collectors
    }
}
