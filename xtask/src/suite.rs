//! `cargo xtask test`: the whole suite (what CI runs), step by step, stopping at the
//! first failure. Privileged integration tests run serially: they share the kernel.

use std::time::Instant;

use anyhow::Result;

use crate::{build, cmd, paths, privilege, setup};

/// Runs every step with a header and its elapsed time.
pub fn test() -> Result<()> {
    let start = Instant::now();
    let root = paths::workspace_root();
    let agent = paths::binary(build::AGENT, true);
    let privileged = privilege::is_root();

    // Both test steps get the agent's path; as root, privileged tests must not skip.
    let cargo_test = || {
        let mut c = cmd::cargo();
        c.current_dir(&root).env("FWCTL_GUARD_BIN", &agent).arg("test");
        if privileged {
            c.env("FWCTL_GUARD_REQUIRE_PRIVILEGED", "1");
        }
        c
    };
    let cargo = |args: &[&str]| {
        let mut c = cmd::cargo();
        c.current_dir(&root).args(args);
        c
    };

    step("setup", setup::setup)?;
    step("format", || cmd::run(&mut cargo(&["fmt", "--all", "--", "--check"])))?;
    // The eBPF crate only builds for the BPF target with nightly (core intrinsics,
    // build-std), so it gets its own clippy run; on the host it would pull in std.
    step("clippy", || {
        cmd::run(&mut cargo(&[
            "clippy",
            "--workspace",
            "--exclude",
            "fwctl-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    step("clippy (eBPF)", || {
        let mut c = std::process::Command::new("rustup");
        c.current_dir(root.join("fwctl-ebpf")).args([
            "run",
            "nightly",
            "cargo",
            "clippy",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--",
            "-D",
            "warnings",
        ]);
        cmd::run(&mut c)
    })?;
    step("build agent", || build::build_agent(true).map(drop))?;
    // The integration tests' packaging suite (tests/src/tests/packaging.rs) installs the
    // .deb this builds.
    step("Debian package", || crate::package::build_package().map(drop))?;
    // fwctl-ebpf is excluded: it is a no_main bpfel program (aya-build builds it for
    // BPF; its logic lives in fwctl-common, which is tested here).
    step("unit tests", || {
        cmd::run(cargo_test().args([
            "--workspace",
            "--release",
            "--exclude",
            "fwctl-guard-tests",
            "--exclude",
            "fwctl-ebpf",
        ]))
    })?;
    step("integration tests", || {
        cmd::run(cargo_test().args([
            "-p",
            "fwctl-guard-tests",
            "--release",
            "--",
            "--test-threads=1",
            "--nocapture",
        ]))
    })?;
    // The enforcing path (BPF LSM + fexit) and real NVMe/CXL/fwctl devices exist only in
    // the guests: one boot per kernel of the matrix, every in-guest test in that boot. The
    // fwctl test kernel is built on the first run (~25 min on 2 cores) and cached.
    step("VM tests (Debian 6.1, 6.12, 7.2 and the fwctl test kernel in QEMU)", || {
        crate::vm::vm_test(&crate::vm::Args::for_suite())
    })?;
    println!("\n== all steps passed in {:.1?} ==", start.elapsed());
    Ok(())
}

/// Prints a header, runs `f`, and prints how long it took and whether it passed.
fn step(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    println!("\n== {name} ==");
    let start = Instant::now();
    let result = f();
    let verdict = if result.is_ok() { "ok" } else { "FAILED" };
    println!("== {name}: {verdict} in {:.1?} ==", start.elapsed());
    result
}
