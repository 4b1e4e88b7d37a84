//! The suites, one file per feature. A test is a function returning
//! [`TestResult`](fwctl_guard_tests::trial::TestResult), listed in its file's `TESTS`
//! (an unlisted one is dead code, which clippy refuses). It starts with what it needs from
//! the machine (`require::bpf()?`, `require::device("/dev/nvme0")?`, `require::deny_hook()?`):
//! on a machine without it the test is reported as ignored, with the reason.
//!
//! Where each suite runs: all of them on the host (`cargo xtask test`; those needing
//! devices or a hook that can deny are ignored there), and in every VM guest the bed's
//! list (`xtask/src/vm/bed.rs`): host, policy, vm or fwctl, attacks, fleet, capabilities.

use fwctl_guard_tests::trial::Suite;

mod attacks;
mod capabilities;
mod fleet;
mod fwctl;
mod host;
mod ops;
mod packaging;
mod policy;
mod vm;

/// Every suite, in the order they run.
pub const SUITES: &[Suite] = &[
    // The agent on the running kernel: every channel counted and audited, decode errors,
    // the ring buffer, probe, the CLI, the hook choice.
    Suite { name: "host", tests: host::TESTS },
    // Policies: verdicts per rule, reloads, enforcement, `policy check/explain/diff`.
    Suite { name: "policy", tests: policy::TESTS },
    // Real NVMe and CXL devices (stock kernels in the VM guests).
    Suite { name: "vm", tests: vm::TESTS },
    // Real fwctl devices (the fwctl test kernel in its VM guest).
    Suite { name: "fwctl", tests: fwctl::TESTS },
    // Every known way around the gate, against the fleet baseline (VM guests).
    Suite { name: "attacks", tests: attacks::TESTS },
    // Enforcement that survives the agent: pins, kill -9, adoption, replacement.
    Suite { name: "fleet", tests: fleet::TESTS },
    // The systemd unit's capability set is enough and each capability is needed (VM guests).
    Suite { name: "capabilities", tests: capabilities::TESTS },
    // Fleet operations: promtool, health endpoints, log reopen, syslog, logrotate (host).
    Suite { name: "ops", tests: ops::TESTS },
    // The Debian package installed with dpkg, the unit verified and run (host).
    Suite { name: "packaging", tests: packaging::TESTS },
];
