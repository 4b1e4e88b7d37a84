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
