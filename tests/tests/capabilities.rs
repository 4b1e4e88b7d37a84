//! The capability set of the shipped systemd unit (`packaging/fwctl-guard.service`,
//! `CapabilityBoundingSet=`) is enough, and each capability in it is needed: the real
//! agent runs under `setpriv` with exactly that bounding set (as systemd runs a root
//! service with it), on the BPF LSM hook in the VM guests, reads the NVMe controller's
//! effects log and refuses a Format NVM from nvme-cli. Then with each capability dropped
//! in turn, the agent loses what that capability is for.
//!
//! Runs in `cargo xtask vm-test` (BPF LSM, /dev/nvme0); on the host it skips with why.

use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fwctl_guard_tests::{
    agent::agent_binary,
    metrics::{scrape, Scrape},
    privilege::{lsm_available, vm_device},
};

const UNIT: &str = include_str!("../../packaging/fwctl-guard.service");

/// `CapabilityBoundingSet=` of the unit, as setpriv names: `CAP_BPF` → `bpf`.
fn unit_capabilities() -> Vec<String> {
    let lines: Vec<&str> = UNIT.lines().filter_map(|l| l.strip_prefix("CapabilityBoundingSet=")).collect();
    assert_eq!(lines.len(), 1, "one CapabilityBoundingSet= line in the unit");
    lines[0].split_whitespace().map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase()).collect()
}

const POLICY: &str = "version: 1\nname: caps\nmode: enforce\ndefault: allow\nrules:\n  \
- name: no-format\n    action: deny\n    match: {class: nvme-admin, opcode: format-nvm}\n  \
- name: declared-destructive\n    action: deny\n    match: {class: nvme-admin, effects: data-change-immediate}\n";

struct Run {
    child: Child,
    addr: String,
    log: PathBuf,
    pins: PathBuf,
}

impl Run {
    fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Metrics once the hook programs are attached, or the agent's exit and output.
    fn ready(&mut self) -> Result<Scrape, String> {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("exited ({status}):\n{}", self.output()));
            }
            if let Ok(s) = scrape(&self.addr) {
                if s.sum("fwctl_guard_program_attached", &[]) >= 2.0 {
                    return Ok(s);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("not ready after 90 s:\n{}", self.output()))
    }

    fn stop(mut self) -> String {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        fwctl_guard_tests::agent::remove_pins(&self.pins);
        self.output()
    }
}

/// The agent with the LSM hook under exactly `caps` as its bounding set (uid 0, nothing
/// inheritable: root's permitted and effective sets become the bounding set at exec).
fn start(name: &str, caps: &[String]) -> Run {
    let dir = std::env::temp_dir().join(format!("fwctl-guard-caps-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let addr = format!(
        "127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    );
    fs::write(dir.join("policy.yaml"), POLICY).unwrap();
    fs::write(
        dir.join("config.yaml"),
        format!(
            "policy: policy.yaml\nmetrics:\n  listen: {addr}\naudit:\n  path: {}\n",
            dir.join("audit.jsonl").display()
        ),
    )
    .unwrap();
    let pins = PathBuf::from(format!("/sys/fs/bpf/fwctl-guard-test-caps-{name}-{}", std::process::id()));
    let set: String = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    let log = dir.join("agent.out");
    let out = fs::File::create(&log).unwrap();
    let child = Command::new("setpriv")
        .args(["--bounding-set", &set, "--inh-caps", "-all", "--"])
        .arg(agent_binary())
        .args(["run", "--hook", "lsm", "--cleanup", "--config"])
        .arg(dir.join("config.yaml"))
        .arg("--pin-path")
        .arg(&pins)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .expect("setpriv (util-linux) runs");
    Run { child, addr, log, pins }
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

#[test]
fn the_units_capability_set_is_enough_and_each_capability_is_needed() {
    let test = "the_units_capability_set_is_enough_and_each_capability_is_needed";
    let Some(_) = vm_device(test, "/dev/nvme0") else { return };
    if !lsm_available(&agent_binary()) {
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        assert!(
            std::env::var("FWCTL_GUARD_REQUIRE_VM").as_deref() != Ok("1"),
            "{test}: kernel {} lacks BPF LSM in a VM guest",
            kernel.trim()
        );
        eprintln!("skipping {test}: no BPF LSM on this kernel");
        return;
    }
    let caps = unit_capabilities();
    assert_eq!(caps, ["bpf", "perfmon", "sys_admin"], "the set this test proves");

    // Exactly the unit's set: LSM attached, effects read, Format NVM refused.
    let mut run = start("unit", &caps);
    let scrape = run.ready().unwrap_or_else(|e| panic!("with the unit's capabilities the agent {e}"));
    let pid = run.child.id();
    let expected: u64 = caps.iter().map(|c| cap_bit(c)).fold(0, |a, b| a | b);
    assert_eq!(proc_caps(pid, "CapEff"), expected, "the agent runs with exactly the unit's set");
    assert_eq!(proc_caps(pid, "CapBnd"), expected);
    assert_eq!(scrape.sum("fwctl_guard_enforcing", &[]), 1.0, "{}", run.output());
    assert_eq!(scrape.sum("fwctl_guard_program_attached", &[("program", "fwctl_lsm_file_ioctl")]), 1.0);
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
    let deadline = Instant::now() + Duration::from_secs(20);
    let denied = loop {
        let s = fwctl_guard_tests::metrics::scrape(&run.addr).unwrap();
        let n = s.sum("fwctl_guard_commands_total", &[("opcode_name", "format-nvm"), ("verdict", "deny")]);
        if n >= 1.0 || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(denied, 1.0, "{}", run.output());
    run.stop();

    // Without CAP_SYS_ADMIN, twice. Debian's kernels carry a patch that refuses every
    // perf_event_open(2) without CAP_SYS_ADMIN while kernel.perf_event_paranoid is 3 (their
    // default); the mailbox tracepoints and the fwctl kprobes are attached through it.
    let without = |drop: &str| caps.iter().filter(|c| *c != drop).cloned().collect::<Vec<_>>();
    let paranoid_path = "/proc/sys/kernel/perf_event_paranoid";
    let paranoid: i32 = fs::read_to_string(paranoid_path).unwrap().trim().parse().unwrap();
    if paranoid >= 3 {
        let mut run = start("no-sys-admin-paranoid", &without("sys_admin"));
        let err = run.ready().expect_err("perf_event_open needs CAP_SYS_ADMIN at perf_event_paranoid 3");
        run.stop();
        assert!(err.contains("perf_event_open") && err.contains("Permission denied"), "{err}");
        // This guest is the test's own: lower the knob to see the other reasons.
        fs::write(paranoid_path, "2").unwrap();
    }
    // Then everything loads, but the controller's effects log cannot be read (the NVMe
    // driver allows admin Get Log Page on the controller node only with CAP_SYS_ADMIN),
    // so effects rules would never match there.
    let mut run = start("no-sys-admin", &without("sys_admin"));
    let scrape = run.ready();
    let restore = || {
        if paranoid >= 3 {
            fs::write(paranoid_path, paranoid.to_string()).unwrap();
        }
    };
    let scrape = scrape.unwrap_or_else(|e| {
        restore();
        panic!("without CAP_SYS_ADMIN (perf_event_paranoid 2) the agent {e}")
    });
    assert_eq!(scrape.sum("fwctl_guard_enforcing", &[]), 1.0, "{}", run.output());
    let failures = scrape
        .sum("fwctl_guard_effects_read_failures_total", &[("class", "nvme-admin"), ("reason", "eacces")]);
    let output = run.stop();
    assert!(failures >= 1.0, "the effects read needs CAP_SYS_ADMIN:\n{}\n{output}", scrape.text);

    // CAP_SYS_ADMIN implies CAP_BPF and CAP_PERFMON (the kernel's bpf_capable() and
    // perfmon_capable() accept it), so each of those two is needed only without it:
    // without CAP_SYS_ADMIN and CAP_PERFMON the LSM program (a tracing type) is refused,
    // without CAP_SYS_ADMIN and CAP_BPF no map can be created.
    let only = |keep: &str| vec![keep.to_string()];
    let mut run = start("bpf-only", &only("bpf"));
    let no_perfmon = run.ready();
    run.stop();
    let mut run = start("perfmon-only", &only("perfmon"));
    let no_bpf = run.ready();
    run.stop();
    restore();
    let err = no_perfmon.expect_err("must not start without CAP_PERFMON (and CAP_SYS_ADMIN)");
    assert!(err.contains("Operation not permitted"), "{err}");
    let err = no_bpf.expect_err("must not start without CAP_BPF (and CAP_SYS_ADMIN)");
    assert!(err.contains("failed to create map") && err.contains("Operation not permitted"), "{err}");
    for redundant in ["bpf", "perfmon"] {
        let mut run = start(&format!("no-{redundant}"), &without(redundant));
        let ready = run.ready();
        run.stop();
        ready.unwrap_or_else(|e| panic!("CAP_SYS_ADMIN covers CAP_{redundant}, yet the agent {e}"));
    }
}
