//! What a test needs from the machine, and what it means when that is missing here: the
//! test is *ignored* with the reason (a developer's machine), or it *fails* (where the
//! environment promises it). Never a silent pass.
//!
//! - `FWCTL_GUARD_REQUIRE_PRIVILEGED=1` (`cargo xtask test` as root, and the VM guests):
//!   root, BTF, tracefs and the tools `cargo xtask setup` installs must be there.
//! - `FWCTL_GUARD_REQUIRE_VM=1` (the VM guests): the bed's device nodes and a hook that
//!   can deny must be there.
//!
//! Each check returns `Err(Unmet)`, which a test passes on with `?`.
//!
//! Not for: reading the kernel's capabilities ([`crate::probe`]) or running tests
//! ([`crate::trial`]).

use std::path::{Path, PathBuf};

use crate::{probe, trial::Unmet};

/// Set by `cargo xtask test` as root and by the in-guest runner.
pub const REQUIRE_PRIVILEGED: &str = "FWCTL_GUARD_REQUIRE_PRIVILEGED";
/// Set by the in-guest runner.
pub const REQUIRE_VM: &str = "FWCTL_GUARD_REQUIRE_VM";

/// Whether the environment sets `var=1`.
pub fn promised(var: &str) -> bool {
    std::env::var(var).as_deref() == Ok("1")
}

/// Missing something `var` promises: a failure where it is set, else ignored.
fn missing(var: &str, why: String) -> Unmet {
    if promised(var) {
        Unmet::Fail(format!("{why} ({var}=1)"))
    } else {
        Unmet::Ignore(why)
    }
}

/// Running as root.
pub fn root() -> Result<(), Unmet> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        Ok(())
    } else {
        Err(missing(REQUIRE_PRIVILEGED, "not running as root".into()))
    }
}

/// What loading the agent's eBPF programs needs: root, the kernel's BTF and tracefs.
pub fn bpf() -> Result<(), Unmet> {
    root()?;
    let why = if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        "kernel has no BTF (/sys/kernel/btf/vmlinux)"
    } else if !Path::new("/sys/kernel/tracing/events/syscalls").exists() {
        "tracefs with syscall events is not mounted at /sys/kernel/tracing (run `cargo xtask setup`)"
    } else {
        return Ok(());
    };
    Err(missing(REQUIRE_PRIVILEGED, why.into()))
}

/// Device node `node` (with [`bpf`]): the real devices exist only in the VM guests.
pub fn device(node: &str) -> Result<PathBuf, Unmet> {
    bpf()?;
    let path = PathBuf::from(node);
    if path.exists() {
        return Ok(path);
    }
    Err(missing(REQUIRE_VM, format!("no {node} on this machine (runs in `cargo xtask vm-test`)")))
}

/// The probe of this kernel; a probe that fails or is off-contract fails the test.
pub fn probe() -> Result<&'static probe::Probe, Unmet> {
    bpf()?;
    probe::this_kernel().map_err(Unmet::Fail)
}

/// Whether `hook: auto` can deny on this kernel, for tests that check one thing where it
/// can and another where it cannot. Where a deny-capable hook is promised (the guests),
/// a kernel without one fails the test instead of taking the other branch.
pub fn can_deny() -> Result<bool, Unmet> {
    let p = probe()?;
    if !p.auto.can_deny && promised(REQUIRE_VM) {
        return Err(missing(REQUIRE_VM, no_deny(p)));
    }
    Ok(p.auto.can_deny)
}

/// A hook that can refuse a command (`hook: auto` picks one).
pub fn deny_hook() -> Result<(), Unmet> {
    let p = probe()?;
    if p.auto.can_deny {
        Ok(())
    } else {
        Err(missing(REQUIRE_VM, no_deny(p)))
    }
}

fn no_deny(p: &probe::Probe) -> String {
    format!("kernel {} has no hook that can deny ({})", p.kernel, p.hook_summary())
}

/// Whether hook set `name` is accepted here, for tests with a branch per answer; where a
/// deny-capable hook is promised, a refused one fails the test.
pub fn accepts(name: &str) -> Result<bool, Unmet> {
    let p = probe()?;
    let accepted = p.accepts(name);
    if !accepted && promised(REQUIRE_VM) {
        return Err(missing(REQUIRE_VM, not_accepted(p, name)));
    }
    Ok(accepted)
}

/// Hook set `name` (`--hook NAME`) loads, attaches and runs here.
pub fn hook_set(name: &str) -> Result<(), Unmet> {
    let p = probe()?;
    if p.accepts(name) {
        Ok(())
    } else {
        Err(missing(REQUIRE_VM, not_accepted(p, name)))
    }
}

fn not_accepted(p: &probe::Probe, name: &str) -> String {
    format!("kernel {}: hook set {name} is not accepted ({})", p.kernel, p.hook_summary())
}

/// The path of program `tool` (Debian package `package`, installed by `cargo xtask setup`).
pub fn tool(tool: &str, package: &str) -> Result<PathBuf, Unmet> {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(tool)).find(|p| p.is_file()))
        .ok_or_else(|| {
            missing(
                REQUIRE_PRIVILEGED,
                format!(
                    "{tool} is not installed (Debian package {package}; `cargo xtask setup` installs it)"
                ),
            )
        })
}
