//! Deciding whether a privileged test can run here, and saying why when it cannot.

/// True when the test may load eBPF programs. Otherwise prints the reason and returns
/// false, unless `FWCTL_GUARD_REQUIRE_PRIVILEGED=1` (set by `cargo xtask test` as root),
/// in which case it panics: CI must never skip these silently.
pub fn can_load_bpf(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let reason = if !root {
        Some("not running as root")
    } else if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        Some("kernel has no BTF (/sys/kernel/btf/vmlinux)")
    } else if !std::path::Path::new("/sys/kernel/tracing/events/syscalls").exists() {
        Some("tracefs with syscall events is not mounted at /sys/kernel/tracing (run `cargo xtask setup`)")
    } else {
        None
    };
    match reason {
        None => true,
        Some(why) if std::env::var("FWCTL_GUARD_REQUIRE_PRIVILEGED").as_deref() == Ok("1") => {
            panic!("{test}: cannot run: {why} (FWCTL_GUARD_REQUIRE_PRIVILEGED=1)")
        }
        Some(why) => {
            eprintln!("skipping {test}: {why}");
            false
        }
    }
}

/// The device node a VM test needs, or None after printing why the test skips. With
/// `FWCTL_GUARD_REQUIRE_VM=1` (set by the in-guest runner) a missing device is a failure.
pub fn vm_device(test: &str, node: &str) -> Option<std::path::PathBuf> {
    if !can_load_bpf(test) {
        return None;
    }
    let path = std::path::PathBuf::from(node);
    if path.exists() {
        return Some(path);
    }
    if std::env::var("FWCTL_GUARD_REQUIRE_VM").as_deref() == Ok("1") {
        panic!("{test}: {node} is missing in the VM guest");
    }
    eprintln!("skipping {test}: no {node} on this machine (runs in `cargo xtask vm-test`)");
    None
}

/// Whether the kernel accepts BPF LSM and fentry programs, per `fwctl-guard probe`.
pub fn lsm_available(agent: &std::path::Path) -> bool {
    let out = std::process::Command::new(agent).arg("probe").output().expect("fwctl-guard probe runs");
    let text = String::from_utf8_lossy(&out.stdout);
    ["lsm", "fentry"]
        .iter()
        .all(|hook| text.lines().any(|l| l.trim_start().starts_with(hook) && l.trim_end().ends_with(" ok")))
}
