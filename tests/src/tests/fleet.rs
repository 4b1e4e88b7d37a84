//! Enforcement that survives the agent: the programs, links and maps are pinned, so a
//! kill -9 leaves denying and counting in the kernel; a restarted agent adopts them
//! (counters continue, nothing counted twice, the events queued meanwhile are logged);
//! a different build replaces them without a gap; `uninstall` removes them.
//!
//! Runs on the host (syscall tracepoints: counting and adoption; the kernel cannot deny,
//! so the test checks that nothing is refused there and prints so) and in every VM guest
//! (BPF LSM: deny while the agent is down, where a kernel without a deny-capable hook fails).
//! Commands go to a stand-in node declared as an NVMe controller (a tty: ENOTTY when a
//! command reaches it, EPERM when the hook refused it).

use fwctl_common::hook_set;
use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use fwctl_guard_tests::{
    agent::{agent_binary, Agent, AgentBuilder},
    metrics::http_get,
    policies::{policy, policy_file, DENY_FORMAT},
    require,
    standin::StandIn,
    tests,
    trial::{Test, TestResult, Unmet},
};

pub const TESTS: &[Test] = tests![
    kill_9_leaves_enforcement_and_counting_in_the_kernel_and_a_restart_adopts_them,
    a_changed_build_is_replaced_without_a_gap_and_uninstall_removes_everything,
];

const ENOTTY: i32 = libc::ENOTTY;
const EPERM: i32 = libc::EPERM;
const IDENTIFY: u8 = 0x06;
const FORMAT: u8 = 0x80;

/// An enforce policy that denies Format NVM and allows the rest.
fn deny_format_policy(name: &str) -> PathBuf {
    policy_file(&format!("fleet-{name}.yaml"), &policy("no-format", "enforce", DENY_FORMAT))
}

/// What the running kernel can do for this test: whether `hook: auto` can deny (a
/// failure in the guests if not) and the name of the pinned link of its ioctl hook.
fn hook() -> Result<(bool, &'static str), Unmet> {
    let can_deny = require::can_deny()?;
    let probe = require::probe()?;
    // The set's program that sees ioctls first (its first one, by the hook-set table).
    let set = probe.auto.hook_set.as_deref().and_then(hook_set::by_label);
    match set.and_then(|s| s.programs.first()) {
        Some(first) => Ok((can_deny, first.name)),
        None => Err(Unmet::Fail(format!("no hook set known as {:?}", probe.auto.hook_set))),
    }
}

/// The agent with policy `policy`, plus `--allow-audit-only` where this kernel cannot deny.
fn with_policy(builder: AgentBuilder, policy: &Path, can_deny: bool) -> AgentBuilder {
    let builder = builder.args(["--policy".as_ref(), policy.as_os_str()]);
    if can_deny {
        builder
    } else {
        builder.args(["--allow-audit-only"])
    }
}

/// A thread issuing Identify on the stand-in until stopped, at most ~10 per millisecond:
/// enough to keep the agent busy, few enough that the test's ring buffer holds all of
/// them even when no agent (or a slow one, under TCG) reads it. A full buffer would drop
/// events (counted; the counters stay exact), and this test wants the events too. It
/// returns how many it issued and how many were refused with EPERM (none should be:
/// Identify is allowed).
fn identify_load(nvme: &Arc<StandIn>, stop: &Arc<AtomicBool>) -> thread::JoinHandle<(u64, u64)> {
    let (nvme, stop) = (nvme.clone(), stop.clone());
    thread::spawn(move || {
        let (mut issued, mut refused) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            if issued % 10 == 9 {
                thread::sleep(Duration::from_millis(1));
            }
            issued += 1;
            if nvme.nvme_admin(IDENTIFY) == EPERM {
                refused += 1;
            }
        }
        (issued, refused)
    })
}

fn pinned_links(pin_path: &Path) -> Vec<String> {
    let mut links = Vec::new();
    for set in std::fs::read_dir(pin_path).into_iter().flatten().flatten() {
        for link in std::fs::read_dir(set.path().join("links")).into_iter().flatten().flatten() {
            links.push(link.file_name().to_string_lossy().into_owned());
        }
    }
    links
}

fn set_dirs(pin_path: &Path) -> Vec<String> {
    std::fs::read_dir(pin_path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn kill_9_leaves_enforcement_and_counting_in_the_kernel_and_a_restart_adopts_them() -> TestResult {
    let test = "kill_9_leaves_enforcement_and_counting_in_the_kernel_and_a_restart_adopts_them";
    require::bpf()?;
    let (lsm, hook) = hook()?;
    if !lsm {
        eprintln!(
            "{test}: this kernel cannot deny: deny-while-down is not checked here (it is in the VM guests)"
        );
    }
    let nvme = Arc::new(StandIn::new().unwrap());
    let policy = deny_format_policy("kill9");
    // 64 MiB of ring buffer: ~450k events, 45 s of the paced load (a restart under TCG
    // takes a few seconds).
    let agent = Agent::builder("fleet-kill9").devices(&nvme.declared_nvme()).ring_buffer_bytes(1 << 26);
    let mut agent = with_policy(agent, &policy, lsm).start().unwrap();
    let s = agent.scrape().unwrap();
    assert_eq!(s.sum("fwctl_guard_policy_generation", &[]), 1.0);
    assert_eq!(s.sum("fwctl_guard_pinned_set_info", &[("start", "attached")]), 1.0, "{}", s.text);

    let stop = Arc::new(AtomicBool::new(false));
    let load = identify_load(&nvme, &stop);
    thread::sleep(Duration::from_millis(300));
    agent.kill9().unwrap();

    // The agent is gone: its links are still pinned, and the kernel still enforces.
    let links = pinned_links(&agent.pin_path);
    assert!(links.iter().any(|l| l == hook), "links pinned after kill -9: {links:?}");
    let format_while_down = nvme.nvme_admin(FORMAT);
    assert_eq!(format_while_down, if lsm { EPERM } else { ENOTTY }, "Format with the agent dead");
    thread::sleep(Duration::from_millis(300));

    agent.restart().unwrap();
    assert!(agent.output().contains("adopted, still attached"), "{}", agent.output());
    assert_eq!(http_get(&agent.addr, "/readyz").unwrap().0, 200, "readyz after the restart");
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (issued, refused) = load.join().unwrap();
    assert_eq!(refused, 0, "Identify is allowed throughout");
    let after_format = nvme.nvme_admin(FORMAT);
    assert_eq!(after_format, format_while_down, "same verdict after the restart");

    // Every command counted exactly once across the two agents and the time between.
    let s = agent.scrape().unwrap();
    let identify =
        s.sum("fwctl_guard_commands_total", &[("class", "nvme-admin"), ("opcode_name", "identify")]);
    s.counted_short(identify, issued as f64);
    let verdict = if lsm { "deny" } else { "would_deny" };
    let formats = [("opcode_name", "format-nvm"), ("verdict", verdict), ("rule", "no-format")];
    assert_eq!(s.sum("fwctl_guard_commands_total", &formats), 2.0, "{}", s.text);
    // The adopted policy stayed in force; the restart installed the file again as the next generation.
    assert_eq!(s.sum("fwctl_guard_policy_generation", &[]), 2.0, "{}", s.text);
    if lsm {
        assert_eq!(s.sum("fwctl_guard_enforcing", &[]), 1.0);
    }
    assert_eq!(s.sum("fwctl_guard_pinned_set_info", &[("start", "adopted")]), 1.0, "{}", s.text);
    assert_eq!(s.sum("fwctl_guard_events_lost_total", &[]), 0.0, "the ring buffer is sized for the load");

    // The Format refused while the agent was down was queued in the pinned ring buffer
    // and logged by the restarted agent.
    agent.stop().unwrap();
    assert!(!agent.pin_path.exists(), "--cleanup leaves no pin root behind");
    // kill -9 can cut the line being written: that one line is unreadable, no other.
    let text = std::fs::read_to_string(&agent.audit_log).unwrap();
    let parsed: Vec<_> = text.lines().map(serde_json::from_str::<serde_json::Value>).collect();
    let broken = parsed.iter().filter(|r| r.is_err()).count();
    assert!(broken <= 1, "{broken} unreadable audit lines");
    let records: Vec<_> = parsed.into_iter().filter_map(Result::ok).collect();
    let formats: Vec<_> = records.iter().filter(|r| r["opcode_name"] == "format-nvm").collect();
    assert_eq!(formats.len(), 2, "{formats:?}");
    assert!(formats.iter().all(|r| r["verdict"] == verdict), "{formats:?}");
    let identify_records = records.iter().filter(|r| r["opcode_name"] == "identify").count() as u64;
    assert!(identify_records <= issued, "no event logged twice: {identify_records} > {issued}");
    Ok(())
}

fn a_changed_build_is_replaced_without_a_gap_and_uninstall_removes_everything() -> TestResult {
    let test = "a_changed_build_is_replaced_without_a_gap_and_uninstall_removes_everything";
    require::bpf()?;
    let (lsm, _) = hook()?;
    let nvme = Arc::new(StandIn::new().unwrap());
    let policy = deny_format_policy("replace");
    let agent =
        Agent::builder("fleet-replace").devices(&nvme.declared_nvme()).ring_buffer_bytes(1 << 20).keep_pins();
    let mut agent = with_policy(agent, &policy, lsm).start().unwrap();
    let first = set_dirs(&agent.pin_path);
    assert_eq!(first.len(), 1, "{first:?}");

    // SIGTERM without --cleanup: the programs stay attached and keep counting.
    agent.stop().unwrap();
    assert!(agent.output().contains("stay attached"), "{}", agent.output());
    assert!(!pinned_links(&agent.pin_path).is_empty());
    assert_eq!(nvme.nvme_admin(IDENTIFY), ENOTTY);

    // Another build: a different ring-buffer size is baked in at load, so the pinned set
    // cannot be adopted. The new set is attached before the old one is removed: a thread
    // sending Format all along never gets through where the kernel can deny.
    let config = std::fs::read_to_string(agent.config_path()).unwrap();
    std::fs::write(
        agent.config_path(),
        config.replace("ring_buffer_bytes: 1048576", "ring_buffer_bytes: 2097152"),
    )
    .unwrap();
    // A new build whose policy does not validate never takes over: its set is removed
    // and the old one keeps enforcing.
    let good = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, good.replace("action: deny", "action: dney")).unwrap();
    let err = format!("{:#}", agent.restart().unwrap_err());
    assert!(err.contains("dney"), "{err}");
    assert_eq!(set_dirs(&agent.pin_path), first, "the old set alone, unchanged");
    if lsm {
        assert_eq!(nvme.nvme_admin(FORMAT), EPERM, "the old set still enforces");
    }
    std::fs::write(&policy, good).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let spam = {
        let (nvme, stop) = (nvme.clone(), stop.clone());
        thread::spawn(move || {
            let (mut sent, mut through) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                sent += 1;
                if nvme.nvme_admin(FORMAT) != EPERM {
                    through += 1;
                }
            }
            (sent, through)
        })
    };
    agent.restart().unwrap();
    stop.store(true, Ordering::Relaxed);
    let (sent, through) = spam.join().unwrap();
    assert!(agent.output().contains("replaced 1 earlier set"), "{}", agent.output());
    let second = set_dirs(&agent.pin_path);
    assert_eq!(second.len(), 1, "only the new set is left: {second:?}");
    assert_ne!(first, second, "a new set for the new build");
    if lsm {
        assert_eq!(through, 0, "{through} of {sent} Format commands got through during the swap");
    } else {
        eprintln!(
            "{test}: no hook that can deny here: the gap-free swap is checked in the VM guests ({sent} sent)"
        );
    }
    // The Identify sent while no agent ran was counted by the old set, whose counters
    // went with it: the new build starts from zero (a counter reset Prometheus handles).
    let s = agent.scrape().unwrap();
    assert_eq!(s.sum("fwctl_guard_commands_total", &[("opcode_name", "identify")]), 0.0, "{}", s.text);
    assert_eq!(s.sum("fwctl_guard_pinned_set_info", &[("start", "replaced")]), 1.0, "{}", s.text);

    // uninstall is refused while an agent holds the pin root...
    let pin_path = agent.pin_path.clone();
    let uninstall =
        || Command::new(agent_binary()).args(["uninstall", "--pin-path"]).arg(&pin_path).output().unwrap();
    let out = uninstall();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another fwctl-guard agent is running"));
    // ...and once it is stopped, removes every pinned object: nothing is counted any more.
    agent.stop().unwrap();
    let out = uninstall();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!pin_path.exists());
    if lsm {
        assert_eq!(nvme.nvme_admin(FORMAT), ENOTTY, "nothing attached after uninstall");
    }
    Ok(())
}
