//! What a guest of the VM test bed consists of, per kernel: which modules init loads,
//! which device nodes it waits for, how QEMU lays out the machine, and which test
//! executables go in. Everything that differs between the stock Debian kernels and the
//! fwctl test kernel is here, as data; the rest of `vm` reads it. Every guest gets the one
//! integration-test executable (`/tests/integration`) and runs the suites its bed lists.
//!
//! The guest learns its bed (and the LSM [`World`] it was booted in) from
//! `/etc/fwctl-guard-bed` (shell variables, written by [`Bed::guest_file`]), which
//! `vm/init.sh` and `vm/guest-tests.sh` source.

use std::time::Duration;

use super::world::World;

/// How QEMU lays out the guest machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// q35 with CXL, one NVMe controller and one CXL type-3 memdev (QEMU's docs/system/devices/cxl.rst).
    CxlType3,
    /// q35 with two NUMA nodes (one CPU and half the memory each) and one NVMe controller:
    /// the kernel's cxl_test mock places its memdevs on nodes 0 and 1 and oopses without
    /// a node 1. No QEMU CXL device: the mock provides the memdevs.
    TwoNumaNodes,
}

/// One test bed.
#[derive(Debug)]
pub struct Bed {
    /// `FWCTL_GUARD_BED` in the guest: `stock` or `fwctl`.
    pub name: &'static str,
    /// Modules in load order; init also loads their dependencies (from modules.dep), first.
    pub modules: &'static [&'static str],
    /// Modules that must come from the kernel's `updates/` tree (the cxl_test mock's
    /// builds, which replace the regular CXL modules).
    pub from_updates: &'static [&'static str],
    /// Device nodes init waits for before the tests run.
    pub devices: &'static [&'static str],
    /// How long init waits for them.
    pub device_wait: Duration,
    pub layout: Layout,
    /// Suites of the integration tests (`tests/src/tests/<suite>.rs`), run in this order,
    /// each as `/tests/integration --suite <suite>`.
    pub tests: &'static [&'static str],
}

/// Stock Debian kernels: emulated NVMe controller and CXL type-3 memdev.
pub const STOCK: Bed = Bed {
    name: "stock",
    modules: &[
        "nvme_core",
        "nvme",
        "libnvdimm",
        "cxl_core",
        "cxl_port",
        "cxl_acpi",
        "cxl_pci",
        "cxl_mem",
        "cxl_pmem",
    ],
    from_updates: &[],
    devices: &["/dev/nvme0", "/dev/cxl/mem0"],
    device_wait: Duration::from_secs(20),
    layout: Layout::CxlType3,
    tests: &["host", "policy", "vm", "attacks", "fleet", "capabilities"],
};

/// The fwctl test kernel: emulated NVMe controller and the kernel's cxl_test mock, whose
/// memdevs register real fwctl devices (`/dev/fwctl/fwctl0..`), about 5 s after boot under TCG.
pub const FWCTL: Bed = Bed {
    name: "fwctl",
    modules: &[
        "nvme_core",
        "nvme",
        "libnvdimm",
        "cxl_core",
        "cxl_mock",
        "cxl_port",
        "cxl_mem",
        "cxl_pmem",
        "cxl_acpi",
        "cxl_test",
        "cxl_mock_mem",
    ],
    from_updates: &[
        "cxl_core",
        "cxl_mock",
        "cxl_port",
        "cxl_mem",
        "cxl_pmem",
        "cxl_acpi",
        "cxl_test",
        "cxl_mock_mem",
    ],
    devices: &["/dev/nvme0", "/dev/fwctl/fwctl0"],
    device_wait: Duration::from_secs(30),
    layout: Layout::TwoNumaNodes,
    tests: &["host", "policy", "fwctl", "attacks", "fleet", "capabilities"],
};

impl Bed {
    /// `/etc/fwctl-guard-bed` for a boot in `world`: sourced by `vm/init.sh` and
    /// `vm/guest-tests.sh`.
    pub fn guest_file(&self, world: World, suites: &[&str]) -> String {
        format!(
            "# Written by cargo xtask vm-test (xtask/src/vm/bed.rs).\n\
             FWCTL_GUARD_BED={}\n\
             FWCTL_GUARD_DEVICES=\"{}\"\n\
             FWCTL_GUARD_DEVICE_WAIT={}\n\
             FWCTL_GUARD_TESTS=\"{}\"\n\
             FWCTL_GUARD_LSM_WORLD={}\n",
            self.name,
            self.devices.join(" "),
            self.device_wait.as_secs(),
            suites.join(" "),
            world.guest_name(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_file_is_shell() {
        let text = FWCTL.guest_file(World::Ubuntu, FWCTL.tests);
        assert!(text.contains("FWCTL_GUARD_BED=fwctl\n"), "{text}");
        assert!(text.contains("FWCTL_GUARD_DEVICES=\"/dev/nvme0 /dev/fwctl/fwctl0\"\n"), "{text}");
        assert!(
            text.contains("FWCTL_GUARD_TESTS=\"host policy fwctl attacks fleet capabilities\"\n"),
            "{text}"
        );
        assert!(text.contains("FWCTL_GUARD_LSM_WORLD=bpf-inactive\n"), "{text}");
        assert!(STOCK.guest_file(World::Default, STOCK.tests).contains("FWCTL_GUARD_LSM_WORLD=bpf-active\n"));
    }

    #[test]
    fn mock_modules_are_loaded() {
        for m in FWCTL.from_updates {
            assert!(FWCTL.modules.contains(m), "{m}");
        }
    }
}
