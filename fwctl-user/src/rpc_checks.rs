//! The fwctl kernel-copy check (`fwctl_common::rpc_check`): attach the kprobes on each
//! fwctl driver's `fw_rpc` function that this kernel has, and export their outcomes.

use std::sync::Mutex;

use anyhow::{Context as _, Result};

use crate::pins::PinSet;
use aya::{
    maps::{MapData, PerCpuArray},
    programs::{links::FdLink, KProbe},
    Ebpf,
};
use fwctl_common::{
    model::driver,
    rpc_check::{counter_index, outcome},
};
use prometheus::{
    core::{Collector, Desc},
    proto::MetricFamily,
    IntCounterVec, Opts,
};

/// (program, kernel function, driver): the `fw_rpc` op of each fwctl driver.
pub const PROBES: [(&str, &str, u8); 4] = [
    ("fwctl_rpc_check_cxl", "cxlctl_fw_rpc", driver::CXL),
    ("fwctl_rpc_check_mlx5", "mlx5ctl_fw_rpc", driver::MLX5),
    ("fwctl_rpc_check_pds", "pdsfc_fw_rpc", driver::PDS),
    ("fwctl_rpc_check_bnxt", "bnxtctl_fw_rpc", driver::BNXT),
];

/// Whether `/proc/kallsyms` lists `function` (modules included).
fn kernel_has(kallsyms: &str, function: &str) -> bool {
    kallsyms.lines().any(|l| {
        let mut words = l.split_whitespace().skip(2);
        words.next() == Some(function)
    })
}

/// Attach the probes whose function exists (adopting pinned ones); the names of those
/// attached. Drivers whose module is not loaded are skipped (their commands cannot happen).
pub fn attach(ebpf: &mut Ebpf, pins: &mut PinSet) -> Result<Vec<&'static str>> {
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
    let mut attached = Vec::new();
    for (name, function, _) in PROBES {
        if !kernel_has(&kallsyms, function) && !pins.has_link(name) {
            continue;
        }
        crate::kernel::attach_pinned(ebpf, pins, name, |program| {
            let program: &mut KProbe = program.try_into()?;
            program.load().with_context(|| format!("loading {name}"))?;
            let id =
                program.attach(function, 0).with_context(|| format!("attaching {name} to {function}"))?;
            Ok(FdLink::try_from(program.take_link(id)?)?)
        })?;
        attached.push(name);
    }
    Ok(attached)
}

/// `fwctl_guard_fwctl_rpc_checks_total{driver,outcome}`, read from `RPC_CHECKS`.
pub struct RpcCheckCollector {
    checks: Mutex<PerCpuArray<MapData, u64>>,
    counter: IntCounterVec,
}

/// The family's definition (also listed by `metrics::family_names`, without a map).
pub fn counter_vec() -> prometheus::Result<IntCounterVec> {
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

impl RpcCheckCollector {
    pub fn new(checks: PerCpuArray<MapData, u64>) -> prometheus::Result<Self> {
        Ok(Self { checks: Mutex::new(checks), counter: counter_vec()? })
    }
}

impl Collector for RpcCheckCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.counter.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let counter = self.counter.clone();
        counter.reset();
        let Ok(checks) = self.checks.lock() else { return counter.collect() };
        for (_, _, drv) in PROBES {
            for result in 0..outcome::COUNT {
                let total = crate::metrics::per_cpu_slot(&checks, counter_index(drv, result));
                if total != 0 {
                    counter.with_label_values(&[driver::label(drv), outcome::label(result)]).inc_by(total);
                }
            }
        }
        counter.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kallsyms_lines_name_module_functions() {
        let text = "ffffffffc0a01230 t cxlctl_fw_rpc\t[cxl_core]\nffffffff81000000 T _stext\n";
        assert!(kernel_has(text, "cxlctl_fw_rpc"));
        assert!(!kernel_has(text, "mlx5ctl_fw_rpc"));
        assert!(!kernel_has(text, "cxl_core"));
    }
}
