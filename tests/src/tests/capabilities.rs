//! The capability set of the shipped systemd unit (`packaging/fwctl-guard.service`,
//! `CapabilityBoundingSet=`) is enough, and each capability in it is needed: the real
//! agent runs under `setpriv` with exactly that bounding set (as systemd runs a root
//! service with it), on the BPF LSM hook in the VM guests, reads the NVMe controller's
//! effects log and refuses a Format NVM from nvme-cli. Then with each capability dropped
//! in turn, the agent loses what that capability is for.
//!
//! Runs in `cargo xtask vm-test` (BPF LSM, /dev/nvme0); on the host it is reported as
//! ignored, with why.

use fwctl_common::hook_set;
use std::{fs, process::Command, time::Duration};

use fwctl_guard_tests::{
    agent::Agent,
    require, tests,
    trial::{Test, TestResult},
    unit::{self, UNIT},
};

pub const TESTS: &[Test] = tests![the_units_capability_set_is_enough_and_each_capability_is_needed];

const POLICY: &str = "version: 1\nname: caps\nmode: enforce\ndefault: allow\nrules:\n  \
- name: no-format\n    action: deny\n    match: {class: nvme-admin, opcode: format-nvm}\n  \
- name: declared-destructive\n    action: deny\n    match: {class: nvme-admin, effects: data-change-immediate}\n";

/// The agent with the deny-capable hook set `hook` under exactly `caps` as its bounding
/// set (uid 0, nothing inheritable: root's permitted and effective sets become the
/// bounding set at exec), its policy named in its configuration; the error carries its
/// output.
fn start(name: &str, hook: &str, caps: &[String]) -> anyhow::Result<Agent> {
    Agent::builder(&format!("caps-{name}"))
        .policy_in_config(POLICY)
        .wrapped_in(unit::setpriv(caps))
        .args(["--hook", hook])
        .ready_within(Duration::from_secs(90))
        .start()
}

/// Stop the agent; its output.
fn stop(mut agent: Agent) -> String {
    let _ = agent.stop();
    agent.output()
}

/// The capability bits of `/proc/PID/status` field `field` (e.g. `CapEff`).
fn proc_caps(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status.lines().find_map(|l| l.strip_prefix(&format!("{field}:\t"))).unwrap();
    u64::from_str_radix(hex.trim(), 16).unwrap()
}

fn cap_bit(name: &str) -> u64 {
    1 << match name {
        "sys_admin" => 21,
        "perfmon" => 38,
        "bpf" => 39,
        other => panic!("capability {other} not mapped in this test"),
    }
}

fn the_units_capability_set_is_enough_and_each_capability_is_needed() -> TestResult {
    require::device("/dev/nvme0")?;
    require::deny_hook()?;
    // The deny-capable set this kernel runs: BPF LSM, or the trampoline set where `bpf` is
    // not an active LSM.
    let probe = require::probe()?;
    let hook = probe.auto.hook_set.as_deref().expect("a deny hook runs here");
    let first_program = hook_set::by_label(hook).and_then(|s| s.programs.first()).unwrap().name;
    let start = |name: &str, caps: &[String]| start(name, hook, caps);
    let caps = unit::capabilities(UNIT);
    assert_eq!(caps, ["bpf", "perfmon", "sys_admin"], "the set this test proves");

    // Exactly the unit's set: the deny hook attached, effects read, Format NVM refused.
    let run = start("unit", &caps).unwrap_or_else(|e| panic!("with the unit's capabilities the agent {e:#}"));
    let scrape = run.scrape().unwrap();
    let pid = run.pid().unwrap();
    let expected: u64 = caps.iter().map(|c| cap_bit(c)).fold(0, |a, b| a | b);
    assert_eq!(proc_caps(pid, "CapEff"), expected, "the agent runs with exactly the unit's set");
    assert_eq!(proc_caps(pid, "CapBnd"), expected);
    assert_eq!(scrape.sum("fwctl_guard_enforcing", &[]), 1.0, "{}", run.output());
    assert_eq!(scrape.sum("fwctl_guard_program_attached", &[("program", first_program)]), 1.0);
    assert!(
        scrape.sum("fwctl_guard_device_effects_entries", &[("class", "nvme-admin")]) > 0.0,
        "{}",
        scrape.text
    );
    assert_eq!(scrape.sum("fwctl_guard_effects_read_failures_total", &[]), 0.0, "{}", run.output());
    let out = Command::new("nvme")
        .args(["admin-passthru", "/dev/nvme0", "--opcode=0x80", "--namespace-id=1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && (text.contains("not permitted") || text.contains("EPERM")), "{text}");
    let denied_format = [("opcode_name", "format-nvm"), ("verdict", "deny")];
    let s = run.wait_for("Format NVM denied", |s| s.sum("fwctl_guard_commands_total", &denied_format) >= 1.0);
    let s = s.unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(s.sum("fwctl_guard_commands_total", &denied_format), 1.0, "{}", run.output());
    stop(run);

    // Without CAP_SYS_ADMIN, twice. Debian's kernels carry a patch that refuses every
    // perf_event_open(2) without CAP_SYS_ADMIN while kernel.perf_event_paranoid is 3 (their
    // default); the mailbox tracepoints and the fwctl kprobes are attached through it.
    let without = |drop: &str| caps.iter().filter(|c| *c != drop).cloned().collect::<Vec<_>>();
    // Started, then stopped: `Ok` with the agent's metrics once it was ready, or the error
    // with its output.
    let run = |name: &str, caps: &[String]| -> Result<(fwctl_guard_tests::metrics::Scrape, String), String> {
        let agent = start(name, caps).map_err(|e| format!("{e:#}"))?;
        let scrape = agent.scrape().map_err(|e| format!("{e:#}"));
        let output = stop(agent);
        Ok((scrape?, output))
    };
    let paranoid_path = "/proc/sys/kernel/perf_event_paranoid";
    let paranoid: i32 = fs::read_to_string(paranoid_path).unwrap().trim().parse().unwrap();
    if paranoid >= 3 {
        let err = run("no-sys-admin-paranoid", &without("sys_admin"))
            .expect_err("perf_event_open needs CAP_SYS_ADMIN at perf_event_paranoid 3");
        assert!(err.contains("perf_event_open") && err.contains("Permission denied"), "{err}");
        // This guest is the test's own: lower the knob to see the other reasons.
        fs::write(paranoid_path, "2").unwrap();
    }
    // Then everything loads, but the controller's effects log cannot be read (the NVMe
    // driver allows admin Get Log Page on the controller node only with CAP_SYS_ADMIN),
    // so effects rules would never match there.
    let no_sys_admin = run("no-sys-admin", &without("sys_admin"));
    let restore = || {
        if paranoid >= 3 {
            fs::write(paranoid_path, paranoid.to_string()).unwrap();
        }
    };
    let (scrape, output) = no_sys_admin.unwrap_or_else(|e| {
        restore();
        panic!("without CAP_SYS_ADMIN (perf_event_paranoid 2) the agent {e}")
    });
    assert_eq!(scrape.sum("fwctl_guard_enforcing", &[]), 1.0, "{output}");
    let failures = scrape
        .sum("fwctl_guard_effects_read_failures_total", &[("class", "nvme-admin"), ("reason", "eacces")]);
    assert!(failures >= 1.0, "the effects read needs CAP_SYS_ADMIN:\n{}\n{output}", scrape.text);

    // CAP_SYS_ADMIN implies CAP_BPF and CAP_PERFMON (the kernel's bpf_capable() and
    // perfmon_capable() accept it), so each of those two is needed only without it:
    // without CAP_SYS_ADMIN and CAP_PERFMON the LSM program (a tracing type) is refused,
    // without CAP_SYS_ADMIN and CAP_BPF no map can be created.
    let only = |keep: &str| vec![keep.to_string()];
    let no_perfmon = run("bpf-only", &only("bpf"));
    let no_bpf = run("perfmon-only", &only("perfmon"));
    restore();
    let err = no_perfmon.expect_err("must not start without CAP_PERFMON (and CAP_SYS_ADMIN)");
    assert!(err.contains("Operation not permitted"), "{err}");
    let err = no_bpf.expect_err("must not start without CAP_BPF (and CAP_SYS_ADMIN)");
    assert!(err.contains("failed to create map") && err.contains("Operation not permitted"), "{err}");
    for redundant in ["bpf", "perfmon"] {
        let ready = run(&format!("no-{redundant}"), &without(redundant));
        ready.unwrap_or_else(|e| panic!("CAP_SYS_ADMIN covers CAP_{redundant}, yet the agent {e}"));
    }
    Ok(())
}
