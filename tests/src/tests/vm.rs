//! Tests that need real passthrough devices: they run inside the QEMU guests of
//! `cargo xtask vm-test` (emulated NVMe controller and CXL type-3 memdev, stock Debian
//! kernels), where the in-guest runner sets `FWCTL_GUARD_REQUIRE_VM=1`. On a machine
//! without the devices they are reported as ignored, with the missing node.

use std::{
    collections::BTreeMap,
    fs::OpenOptions,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::Path,
    process::Command,
    time::Duration,
};

use fwctl_common::hook_set;
use fwctl_guard_tests::{
    agent::{agent_binary, Agent, Declared},
    ioctls::*,
    metrics::Scrape,
    policies::{policy_file, FLEET_BASELINE},
    probe::{HookStatus, Probe},
    require,
    standin::StandIn,
    tests,
    trial::{Test, TestResult},
    wait,
};

pub const TESTS: &[Test] = tests![
    nvme_cli_on_a_real_controller_is_counted_and_matches_the_driver_tracepoint,
    cxl_mailbox_commands_on_a_real_memdev_are_counted,
    every_hook_set_that_runs_counts_the_same_workload,
    every_deny_capable_hook_set_refuses_format_before_the_controller,
    fleet_baseline_denies_destructive_commands_before_the_device_sees_them,
    a_cxl_mailbox_command_denied_by_rule_fails_with_eperm,
    devices_effects_lists_what_the_nvme_controller_and_the_cxl_memdev_declare,
    the_agent_fills_the_effects_map_at_start_up_without_auditing_its_own_reads,
    hot_unplug_and_replug_of_the_nvme_controller_follow_into_the_maps,
];

fn major_minor(node: &Path) -> String {
    let rdev = std::fs::metadata(node).unwrap().rdev();
    format!("{}:{}", libc::major(rdev), libc::minor(rdev))
}

fn nvme_cli(args: &[&str]) {
    let out = Command::new("nvme").args(args).output().expect("nvme-cli in the guest");
    assert!(out.status.success(), "nvme {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// commands_total by opcode_name for one class and result.
fn by_opcode(scrape: &Scrape, class: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (sample, value) in &scrape.samples {
        if sample.name == "fwctl_guard_commands_total"
            && sample.labels.get("class").map(String::as_str) == Some(class)
        {
            *out.entry(sample.labels["opcode_name"].clone()).or_default() += *value as u64;
        }
    }
    out
}

fn nvme_cli_on_a_real_controller_is_counted_and_matches_the_driver_tracepoint() -> TestResult {
    let ctrl = require::device("/dev/nvme0")?;
    let mut agent = Agent::start("vm-nvme", &[], 1 << 20).unwrap();
    nvme_cli(&["id-ctrl", "/dev/nvme0"]);
    nvme_cli(&["smart-log", "/dev/nvme0"]);
    nvme_cli(&["error-log", "/dev/nvme0"]);
    let scrape = agent.wait_audit_events(3).unwrap();
    let ioctls = by_opcode(&scrape, "nvme-admin");
    assert!(ioctls.get("identify").copied().unwrap_or(0) >= 1, "{}", scrape.text);
    assert!(ioctls.get("get-log-page").copied().unwrap_or(0) >= 2, "{}", scrape.text);
    assert_eq!(
        scrape.sum("fwctl_guard_commands_total", &[("class", "nvme-admin"), ("result", "error")]),
        0.0
    );
    // Every passthrough ioctl reached the controller exactly once, as the driver's own
    // tracepoint saw it, with a successful status.
    for (name, count) in &ioctls {
        let mailbox = scrape.sum(
            "fwctl_guard_mailbox_commands_total",
            &[("opcode_name", name), ("origin", "passthrough"), ("status", "success")],
        );
        assert_eq!(mailbox as u64, *count, "{name}: ioctl count vs nvme_setup_cmd count\n{}", scrape.text);
    }
    // A rescan makes the kernel send its own Identify commands: origin kernel.
    std::fs::write("/sys/class/nvme/nvme0/rescan_controller", "1").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let scrape = agent.scrape().unwrap();
    assert!(
        scrape
            .sum("fwctl_guard_mailbox_commands_total", &[("origin", "kernel"), ("opcode_name", "identify")])
            >= 1.0,
        "{}",
        scrape.text
    );
    agent.stop().unwrap();
    let records = agent.audit_records().unwrap();
    let device = major_minor(&ctrl);
    assert!(records.len() >= 3);
    for r in &records {
        assert_eq!(r["comm"], "nvme", "{r}");
        assert_eq!(r["device"].as_str().unwrap(), device, "{r}");
        assert_eq!(r["ret"], 0, "{r}");
        assert_eq!(r["driver"], "nvme");
    }
    Ok(())
}

fn cxl_mailbox_commands_on_a_real_memdev_are_counted() -> TestResult {
    let node = require::device("/dev/cxl/mem0")?;
    let mut agent = Agent::start("vm-cxl", &[], 1 << 20).unwrap();
    let out = Command::new("cxl").args(["list", "-M"]).output().expect("cxl (ndctl) in the guest");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let memdev = OpenOptions::new().read(true).write(true).open(&node).unwrap();
    let mut output = vec![0u8; 4096];
    // Commands QEMU's cxl-type3 implements (its Command Effects Log lists them).
    for id in [1u32 /* IDENTIFY */, 3 /* GET_SUPPORTED_LOGS */] {
        let mut cmd = cxl_send(id, 0);
        cmd[32..36].copy_from_slice(&(output.len() as u32).to_le_bytes());
        cmd[40..48].copy_from_slice(&(output.as_mut_ptr() as u64).to_le_bytes());
        let ret = ioctl(memdev.as_raw_fd(), CXL_MEM_SEND_COMMAND, cmd.as_mut_ptr() as u64);
        assert_eq!(ret, 0, "CXL command id {id}: {}", std::io::Error::last_os_error());
    }
    let scrape = agent.wait_audit_events(2).unwrap();
    for name in ["identify", "get-supported-logs"] {
        let n = scrape.sum(
            "fwctl_guard_commands_total",
            &[("class", "cxl-mem"), ("opcode_name", name), ("result", "ok"), ("driver", "cxl")],
        );
        assert_eq!(n, 1.0, "{name}\n{}", scrape.text);
    }
    agent.stop().unwrap();
    let records = agent.audit_records().unwrap();
    let ours: Vec<_> = records.iter().filter(|r| r["ioctl"] == "CXL_MEM_SEND_COMMAND").collect();
    assert_eq!(ours.len(), 2, "{records:?}");
    assert_eq!(ours[0]["opcode"], "0x4000");
    assert_eq!(ours[1]["opcode"], "0x0400");
    assert!(ours.iter().all(|r| r["device"].as_str().unwrap() == major_minor(&node)));
    Ok(())
}

/// Every hook set this kernel runs (BPF LSM where `bpf` is an active LSM, the trampoline
/// set, the syscall tracepoints) counts the same workload the same way; at least one of
/// them can deny.
fn every_hook_set_that_runs_counts_the_same_workload() -> TestResult {
    require::device("/dev/nvme0")?;
    require::deny_hook()?;
    let probe = require::probe()?;
    let sets = running_hook_sets(probe);
    assert!(sets.len() >= 2 && sets.contains(&"tracepoint"), "{}", probe.hook_summary());
    let fwctl = StandIn::new().unwrap();
    let declared = [Declared { major_minor: fwctl.major_minor(), class: "fwctl", driver: "mlx5" }];
    let mut runs = Vec::new();
    for &hook in &sets {
        let mut agent =
            Agent::start_with(&format!("vm-{hook}"), &declared, 1 << 20, &["--hook", hook]).unwrap();
        nvme_cli(&["id-ctrl", "/dev/nvme0"]);
        nvme_cli(&["smart-log", "/dev/nvme0"]);
        let payload = mlx5_payload(0x100, 0);
        let mut out = [0u8; 16];
        for scope in 0..4 {
            ioctl(fwctl.fd(), FWCTL_RPC, fwctl_rpc(scope, &payload, &mut out).as_ptr() as u64);
        }
        let scrape = agent.wait_audit_events(6).unwrap();
        let mut counts: BTreeMap<_, u64> = BTreeMap::new();
        for (sample, value) in scrape.samples.iter().filter(|(s, _)| s.name == "fwctl_guard_commands_total") {
            *counts.entry(sample.labels.clone()).or_default() += *value as u64;
        }
        print_bpf_cost(hook, &agent, &fwctl);
        agent.stop().unwrap();
        let hooks: Vec<_> =
            agent.audit_records().unwrap().iter().map(|r| r["hook"].as_str().unwrap().to_string()).collect();
        assert!(hooks.iter().all(|h| h == hook), "{hook}: {hooks:?}");
        runs.push(counts);
    }
    assert!(runs[0].values().sum::<u64>() >= 6);
    for (hook, run) in sets.iter().zip(&runs).skip(1) {
        assert_eq!(&runs[0], run, "{} and {hook} must count the same commands", sets[0]);
    }
    Ok(())
}

/// The programs' own cost under `hook`, from the kernel's statistics (`run_time_ns` /
/// `run_cnt`, counted while `kernel.bpf_stats_enabled` is 1): BPF time per passthrough
/// command (fwctl RPCs on a stand-in node) and per unrelated ioctl (`TCGETS` on
/// /dev/null). Printed, not asserted: a relative check between hook sets (TCG timings).
fn print_bpf_cost(hook: &str, agent: &Agent, fwctl: &StandIn) {
    const N: u32 = 2000;
    let sysctl = "/proc/sys/kernel/bpf_stats_enabled";
    let before = std::fs::read_to_string(sysctl).unwrap_or_default();
    std::fs::write(sysctl, "1").unwrap();
    let bpf_ns = |s: &Scrape| s.sum("fwctl_guard_program_run_seconds_total", &[]) * 1e9;
    let start = agent.scrape().unwrap();
    let payload = mlx5_payload(0x100, 0);
    let mut out = [0u8; 16];
    for _ in 0..N {
        ioctl(fwctl.fd(), FWCTL_RPC, fwctl_rpc(0, &payload, &mut out).as_ptr() as u64);
    }
    let passthrough = agent.scrape().unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    let mut termios = [0u8; 64];
    for _ in 0..N {
        ioctl(null.as_raw_fd(), libc::TCGETS as u32, termios.as_mut_ptr() as u64);
    }
    let unrelated = agent.scrape().unwrap();
    std::fs::write(sysctl, before.trim()).unwrap();
    println!(
        "bpf cost, {hook}: {:.0} ns of BPF time per passthrough command, {:.0} ns per unrelated ioctl",
        (bpf_ns(&passthrough) - bpf_ns(&start)) / N as f64,
        (bpf_ns(&unrelated) - bpf_ns(&passthrough)) / N as f64,
    );
    for (sample, runs) in unrelated.samples.iter().filter(|(s, _)| s.name == "fwctl_guard_program_runs_total")
    {
        let program = &sample.labels["program"];
        let seconds = unrelated.sum("fwctl_guard_program_run_seconds_total", &[("program", program)]);
        if *runs > 0.0 {
            println!("  {program}: {runs} runs, {:.0} ns per run", seconds * 1e9 / runs);
        }
    }
}

/// The hook sets `probe` proved to run here, best first; BPF LSM only where `bpf` is an
/// active LSM (elsewhere it attaches and never runs, and probe must say so).
fn running_hook_sets(probe: &Probe) -> Vec<&'static str> {
    let lsm = probe.hook_set("lsm").map(|h| h.status);
    if probe.lsm.bpf_active {
        assert_eq!(lsm, Some(HookStatus::Accepted), "{}", probe.hook_summary());
    } else {
        assert_eq!(lsm, Some(HookStatus::AttachesButDoesNotFire), "{}", probe.hook_summary());
    }
    hook_set::ALL.iter().map(|s| s.label).filter(|l| probe.accepts(l)).collect()
}

/// Each deny-capable hook set that runs here refuses an NVMe Format from nvme-cli with
/// EPERM before the controller sees it: the trampoline set on every kernel, BPF LSM where
/// `bpf` is active.
fn every_deny_capable_hook_set_refuses_format_before_the_controller() -> TestResult {
    require::device("/dev/nvme0")?;
    require::deny_hook()?;
    let probe = require::probe()?;
    let deniers: Vec<&str> = running_hook_sets(probe)
        .into_iter()
        .filter(|l| hook_set::by_label(l).is_some_and(|s| s.can_deny))
        .collect();
    assert!(deniers.contains(&"trampoline"), "the trampoline set must run here: {}", probe.hook_summary());
    let policy = policy_file("vm-deny-format.yaml", DENY_FORMAT);
    for hook in deniers {
        let mut agent = Agent::start_with(
            &format!("vm-deny-{hook}"),
            &[],
            1 << 20,
            &["--hook", hook, "--policy", policy.to_str().unwrap()],
        )
        .unwrap();
        let scrape = agent.scrape().unwrap();
        assert_eq!(scrape.sum("fwctl_guard_enforcing", &[]), 1.0, "{hook}: {}", agent.output());
        nvme_cli(&["id-ctrl", "/dev/nvme0"]);
        let out = Command::new("nvme")
            .args(["admin-passthru", "/dev/nvme0", "--opcode=0x80", "--namespace-id=1"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && (text.contains("not permitted") || text.contains("EPERM")),
            "{hook}: {text}"
        );
        let denied = [("opcode_name", "format-nvm"), ("verdict", "deny"), ("rule", "no-format")];
        let s =
            agent.wait_for("Format denied", |s| s.sum("fwctl_guard_commands_total", &denied) >= 1.0).unwrap();
        // The controller never saw it: its own tracepoint counted no Format.
        let formats = [("opcode_name", "format-nvm")];
        assert_eq!(s.sum("fwctl_guard_mailbox_commands_total", &formats), 0.0, "{hook}: {}", s.text);
        assert!(s.sum("fwctl_guard_mailbox_commands_total", &[("opcode_name", "identify")]) >= 1.0);
        agent.stop().unwrap();
        let records = agent.audit_records().unwrap();
        let format = records.iter().find(|r| r["opcode_name"] == "format-nvm").expect("an audit record");
        assert_eq!((format["hook"].as_str(), format["verdict"].as_str()), (Some(hook), Some("deny")));
        assert_eq!(format["ret"].as_i64(), Some(-(libc::EPERM as i64)));
    }
    Ok(())
}

const DENY_FORMAT: &str = "version: 1\nname: deny-format\nmode: enforce\ndefault: allow\nrules:\n  \
- name: no-format\n    action: deny\n    match: {class: nvme-admin, opcode: format-nvm}\n";

/// The shipped fleet baseline in enforce mode, against nvme-cli and this process: Format,
/// Sanitize and firmware commit refused with EPERM before the controller sees them, an
/// mlx5 write at debug-write-full refused while queries pass; the metrics and the audit
/// records name the baseline's rule that refused each.
fn fleet_baseline_denies_destructive_commands_before_the_device_sees_them() -> TestResult {
    let ctrl = require::device("/dev/nvme0")?;
    require::deny_hook()?;
    let fwctl = StandIn::new().unwrap();
    let declared = [Declared { major_minor: fwctl.major_minor(), class: "fwctl", driver: "mlx5" }];
    let policy = policy_file("vm-fleet-baseline.yaml", FLEET_BASELINE);
    let mut agent =
        Agent::start_with("vm-fleet", &declared, 1 << 20, &["--policy", policy.to_str().unwrap()]).unwrap();
    assert_eq!(agent.scrape().unwrap().sum("fwctl_guard_enforcing", &[]), 1.0);

    nvme_cli(&["id-ctrl", "/dev/nvme0"]);
    // The real client asks for a Format NVM: refused with EPERM.
    let out = Command::new("nvme")
        .args(["admin-passthru", "/dev/nvme0", "--opcode=0x80", "--namespace-id=1"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "format must be refused");
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("not permitted") || text.contains("EPERM"), "{text}");
    // Sanitize and firmware commit from this test process: EPERM too.
    let node = OpenOptions::new().read(true).write(true).open(&ctrl).unwrap();
    for opcode in [0x84u8, 0x10] {
        let p = nvme_passthru(opcode, 0, 0, false);
        assert_eq!(errno_of(ioctl(node.as_raw_fd(), NVME_IOCTL_ADMIN_CMD, p.as_ptr() as u64)), libc::EPERM);
    }
    // fwctl at debug-write-full: a write (SET_DIAGNOSTIC_PARAMS) is refused; queries are
    // allowed at any scope by the earlier `mlx5-queries` rule.
    let mut out = [0u8; 16];
    let write = mlx5_payload(0x820, 0);
    let rpc = fwctl_rpc(3, &write, &mut out);
    assert_eq!(errno_of(ioctl(fwctl.fd(), FWCTL_RPC, rpc.as_ptr() as u64)), libc::EPERM);
    let payload = mlx5_payload(0x100, 0);
    let rpc = fwctl_rpc(3, &payload, &mut out);
    assert_eq!(errno_of(ioctl(fwctl.fd(), FWCTL_RPC, rpc.as_ptr() as u64)), libc::ENOTTY);

    let scrape = agent.wait_audit_events(6).unwrap();
    let denied = |name| {
        scrape.sum(
            "fwctl_guard_commands_total",
            &[("opcode_name", name), ("verdict", "deny"), ("rule", "nvme-destructive"), ("result", "error")],
        )
    };
    assert_eq!(denied("format-nvm"), 1.0, "{}", scrape.text);
    assert_eq!(denied("sanitize"), 1.0);
    assert_eq!(denied("firmware-commit"), 1.0);
    assert_eq!(
        scrape.sum(
            "fwctl_guard_commands_total",
            &[("class", "fwctl"), ("verdict", "deny"), ("rule", "fwctl-debug-write-full")]
        ),
        1.0
    );
    // The proof that the deny came first: the controller never received them.
    for name in ["format-nvm", "sanitize", "firmware-commit"] {
        assert_eq!(
            scrape.sum("fwctl_guard_mailbox_commands_total", &[("opcode_name", name)]),
            0.0,
            "{name} reached the device"
        );
    }
    assert!(
        scrape.sum(
            "fwctl_guard_mailbox_commands_total",
            &[("opcode_name", "identify"), ("origin", "passthrough")]
        ) >= 1.0
    );
    agent.stop().unwrap();
    // The audit record of each refused command names the baseline's rule that refused it.
    let records = agent.audit_records().unwrap();
    fn refused_by(r: &serde_json::Value) -> (Option<&str>, Option<&str>) {
        (r["verdict"].as_str(), r["rule"].as_str())
    }
    for name in ["format-nvm", "sanitize", "firmware-commit"] {
        let r = records
            .iter()
            .find(|r| r["opcode_name"] == name)
            .unwrap_or_else(|| panic!("no {name} record in {records:#?}"));
        assert_eq!(refused_by(r), (Some("deny"), Some("nvme-destructive")), "{r}");
    }
    let write = records.iter().find(|r| r["class"] == "fwctl" && r["verdict"] == "deny");
    let write = write.unwrap_or_else(|| panic!("no denied fwctl record in {records:#?}"));
    assert_eq!(refused_by(write), (Some("deny"), Some("fwctl-debug-write-full")), "{write}");
    Ok(())
}

fn a_cxl_mailbox_command_denied_by_rule_fails_with_eperm() -> TestResult {
    let node = require::device("/dev/cxl/mem0")?;
    require::deny_hook()?;
    let policy = policy_file(
        "vm-cxl-deny.yaml",
        "version: 1\nname: cxl-test\nmode: enforce\ndefault: allow\nrules:\n  - name: no-log-list\n    action: deny\n    match: {class: cxl-mem, opcode: get-supported-logs}\n",
    );
    let mut agent =
        Agent::start_with("vm-cxl-deny", &[], 1 << 20, &["--policy", policy.to_str().unwrap()]).unwrap();
    let memdev = OpenOptions::new().read(true).write(true).open(&node).unwrap();
    let mut output = vec![0u8; 4096];
    let mut send = |id: u32| {
        let mut cmd = cxl_send(id, 0);
        cmd[32..36].copy_from_slice(&(output.len() as u32).to_le_bytes());
        cmd[40..48].copy_from_slice(&(output.as_mut_ptr() as u64).to_le_bytes());
        ioctl(memdev.as_raw_fd(), CXL_MEM_SEND_COMMAND, cmd.as_mut_ptr() as u64)
    };
    assert_eq!(send(1), 0, "identify is allowed");
    assert_eq!(errno_of(send(3)), libc::EPERM, "get-supported-logs is denied");
    let scrape = agent.wait_audit_events(2).unwrap();
    assert_eq!(
        scrape.sum(
            "fwctl_guard_commands_total",
            &[("opcode_name", "get-supported-logs"), ("verdict", "deny"), ("rule", "no-log-list")]
        ),
        1.0,
        "{}",
        scrape.text
    );
    agent.stop().unwrap();
    Ok(())
}

/// `fwctl-guard devices --effects --json`, parsed.
fn devices_with_effects() -> Vec<serde_json::Value> {
    let out = Command::new(agent_binary()).args(["devices", "--effects", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap().as_array().unwrap().clone()
}

/// The rows of `device`'s table for `class` (the device's effects must have been read).
fn effects_rows<'a>(device: &'a serde_json::Value, class: &str) -> &'a Vec<serde_json::Value> {
    assert_eq!(device["effects"]["status"], "read", "{device:#}");
    let table = device["effects"]["tables"].as_array().unwrap().iter().find(|t| t["class"] == class);
    table.unwrap_or_else(|| panic!("no {class} table: {device:#}"))["opcodes"].as_array().unwrap()
}

fn effects_row<'a>(rows: &'a [serde_json::Value], opcode: &str) -> Option<&'a serde_json::Value> {
    rows.iter().find(|r| r["opcode"] == opcode)
}

/// The NVMe Commands Supported and Effects log as nvme-cli reads it (raw 4096 bytes).
fn nvme_cli_effects_log() -> Vec<u8> {
    let out =
        Command::new("nvme").args(["effects-log", "/dev/nvme0", "--csi=0", "--raw-binary"]).output().unwrap();
    assert!(out.status.success(), "nvme effects-log: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn devices_effects_lists_what_the_nvme_controller_and_the_cxl_memdev_declare() -> TestResult {
    require::device("/dev/nvme0")?;
    require::device("/dev/cxl/mem0")?;
    let text = Command::new(agent_binary()).args(["devices", "--effects"]).output().unwrap();
    assert!(text.status.success(), "{}", String::from_utf8_lossy(&text.stderr));
    println!("--- fwctl-guard devices --effects\n{}", String::from_utf8_lossy(&text.stdout));

    let devices = devices_with_effects();
    let device = |name: &str| {
        devices.iter().find(|d| d["name"] == name).unwrap_or_else(|| panic!("no {name}: {devices:#?}"))
    };
    let nvme0 = device("nvme0");
    assert_eq!((nvme0["node"].as_str(), nvme0["kind"].as_str()), (Some("/dev/nvme0"), Some("nvme")));
    let admin = effects_rows(nvme0, "nvme-admin");
    let identify = effects_row(admin, "0x0006").unwrap();
    assert_eq!(identify["supported"], true, "{identify}");
    assert_eq!(identify["effects"], serde_json::json!([]), "Identify changes nothing: {identify}");
    let format = effects_row(admin, "0x0080").unwrap();
    assert_eq!(format["supported"], true, "{format}");
    let format_effects: Vec<&str> =
        format["effects"].as_array().unwrap().iter().filter_map(|e| e.as_str()).collect();
    assert!(format_effects.contains(&"logical-block-content-change"), "{format}");
    assert!(format_effects.contains(&"data-change-immediate"), "LBCC implies a data change: {format}");
    // A vendor-specific opcode the controller does not list: absent or unsupported.
    assert!(effects_row(admin, "0x00c0").is_none_or(|r| r["supported"] == false), "{admin:#?}");
    let write = effects_row(effects_rows(nvme0, "nvme-io"), "0x0001").unwrap();
    assert_eq!(write["supported"], true, "{write}");

    // What the agent read is what a real client reads: nvme-cli's copy of the log.
    let log = nvme_cli_effects_log();
    assert_eq!(log.len(), 4096);
    for (class, base) in [("nvme-admin", 0usize), ("nvme-io", 256)] {
        let rows = effects_rows(nvme0, class);
        for opcode in 0..256usize {
            let raw =
                u32::from_le_bytes(log[(base + opcode) * 4..(base + opcode) * 4 + 4].try_into().unwrap());
            let row = effects_row(rows, &format!("0x{opcode:04x}"));
            let supported = row.is_some_and(|r| r["supported"] == true);
            assert_eq!(
                supported,
                raw & 1 == 1,
                "{class} 0x{opcode:02x}: nvme-cli says {raw:#x}, we say {row:?}"
            );
        }
    }

    // Namespaces (block and generic char nodes) carry their controller's tables.
    let namespaces: Vec<_> = devices
        .iter()
        .filter(|d| {
            let name = d["name"].as_str().unwrap_or("");
            name.starts_with("nvme0n") || name.starts_with("ng0n")
        })
        .collect();
    assert!(!namespaces.is_empty(), "{devices:#?}");
    for ns in namespaces {
        assert_eq!(ns["effects"]["status"], "inherited", "{ns:#}");
        assert_eq!(ns["effects"]["from"], "nvme0", "{ns:#}");
    }

    let mem0 = device("mem0");
    assert_eq!(mem0["node"], "/dev/cxl/mem0");
    let cel = effects_rows(mem0, "cxl-mem");
    let identify = effects_row(cel, "0x4000").unwrap();
    assert_eq!((identify["name"].as_str(), identify["supported"].as_bool()), (Some("identify"), Some(true)));
    assert!(cel.iter().filter(|r| r["supported"] == true).count() >= 5, "{cel:#?}");
    Ok(())
}

fn the_agent_fills_the_effects_map_at_start_up_without_auditing_its_own_reads() -> TestResult {
    require::device("/dev/nvme0")?;
    require::device("/dev/cxl/mem0")?;
    let mut agent = Agent::start("vm-effects", &[], 1 << 20).unwrap();
    let scrape = agent.scrape().unwrap();
    let entries = |class| scrape.sum("fwctl_guard_device_effects_entries", &[("class", class)]);
    for class in ["nvme-admin", "nvme-io", "cxl-mem"] {
        assert!(entries(class) > 0.0, "{class}\n{}\n{}", scrape.text, agent.output());
    }
    assert_eq!(scrape.sum("fwctl_guard_effects_read_failures_total", &[]), 0.0, "{}", agent.output());
    assert!(agent.output().contains("effects:   declared by"), "{}", agent.output());
    // The agent's Get Log Page reached the controller (the driver's tracepoint saw it),
    // but its own ioctls are not passthrough commands to audit or count.
    assert!(
        scrape.sum(
            "fwctl_guard_mailbox_commands_total",
            &[("opcode_name", "get-log-page"), ("origin", "kernel")]
        ) >= 1.0,
        "{}",
        scrape.text
    );
    assert_eq!(scrape.sum("fwctl_guard_commands_total", &[]), 0.0, "{}", scrape.text);
    agent.stop().unwrap();
    assert!(agent.audit_records().unwrap().is_empty());
    Ok(())
}

/// Puts a PCI function back (bus rescan) when the test ends, however it ends.
struct Replug;

impl Drop for Replug {
    fn drop(&mut self) {
        let _ = std::fs::write("/sys/bus/pci/rescan", "1");
        wait_for(|| Path::new("/dev/nvme0").exists() && Path::new("/sys/class/nvme/nvme0").exists());
    }
}

/// Poll `condition` for up to 60 s (probing under TCG is slow).
fn wait_for(condition: impl FnMut() -> bool) -> bool {
    wait::until(Duration::from_secs(60), condition)
}

fn hot_unplug_and_replug_of_the_nvme_controller_follow_into_the_maps() -> TestResult {
    require::device("/dev/nvme0")?;
    let function = std::fs::canonicalize("/sys/class/nvme/nvme0/device").unwrap();
    let mut agent = Agent::start("vm-hotplug", &[], 1 << 20).unwrap();
    let admin_entries = |agent: &Agent| {
        agent.scrape().unwrap().sum("fwctl_guard_device_effects_entries", &[("class", "nvme-admin")])
    };
    let before = admin_entries(&agent);
    assert!(before > 0.0, "{}", agent.output());

    let replug = Replug;
    std::fs::write(function.join("remove"), "1").unwrap();
    assert!(wait_for(|| admin_entries(&agent) == 0.0), "entries stay after unplug:\n{}", agent.output());
    drop(replug);
    assert!(Path::new("/dev/nvme0").exists(), "nvme0 did not come back");
    assert!(
        wait_for(|| admin_entries(&agent) == before),
        "entries not back after replug:\n{}",
        agent.output()
    );

    // The namespace's block node (watched per node) was re-added to the device map:
    // a passthrough command through it is counted again.
    let namespace = wait_for(|| Path::new("/dev/nvme0n1").exists());
    assert!(namespace, "no /dev/nvme0n1 after replug");
    nvme_cli(&["id-ctrl", "/dev/nvme0n1"]);
    // Counters are exact in the kernel once the client has returned.
    let scrape = agent.scrape().unwrap();
    assert_eq!(
        scrape.sum("fwctl_guard_commands_total", &[("opcode_name", "identify"), ("result", "ok")]),
        1.0,
        "{}",
        scrape.text
    );
    assert_eq!(scrape.sum("fwctl_guard_effects_read_failures_total", &[]), 0.0, "{}", agent.output());
    agent.stop().unwrap();
    Ok(())
}
