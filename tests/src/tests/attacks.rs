//! The attack suite: every known way around the gate, tried for real against
//! the fleet baseline in enforce mode on the guests' emulated NVMe controller. Each
//! attack has an expected outcome — `prevented` (refused before the device saw it) or
//! `detected` (reached the device, but counted, logged and, under `on_toctou: kill`,
//! answered with SIGKILL) — and the suite prints a table of expected versus observed
//! before asserting that none got through unseen. Runs in `cargo xtask vm-test`; on a
//! machine without the devices or a hook that can deny it is reported as ignored.

use std::{
    fs::OpenOptions,
    os::fd::{AsRawFd, RawFd},
    path::Path,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use fwctl_common::abi::{NVME_URING_CMD_ADMIN, NVME_URING_CMD_IO};
use fwctl_guard_tests::{
    agent::Agent,
    ioctls::*,
    metrics::{trampoline_ioctl_deny_programs, trampoline_ioctl_result_program, Scrape},
    policies::fleet_baseline_on_toctou,
    require, tests,
    trial::{Test, TestResult},
    uring,
};

pub const TESTS: &[Test] = tests![no_known_attack_gets_a_destructive_command_past_the_gate_unseen];

/// The 32-bit NVMe caller built by tests/build.rs (empty if gcc -m32 was unavailable).
const NVME32: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/nvme32"));

const FORMAT_NVM: u8 = 0x80;
const IDENTIFY: u8 = 0x06;

/// One line of the report.
struct Row {
    attack: &'static str,
    expected: &'static str,
    observed: String,
    ok: bool,
}

#[derive(Default)]
struct Report(Vec<Row>);

impl Report {
    fn add(&mut self, attack: &'static str, expected: &'static str, observed: String, ok: bool) {
        self.0.push(Row { attack, expected, observed, ok });
    }

    fn print(&self) {
        println!("\n{:<34} {:<10} {:<60} result", "attack", "expected", "observed");
        for r in &self.0 {
            println!(
                "{:<34} {:<10} {:<60} {}",
                r.attack,
                r.expected,
                r.observed,
                if r.ok { "ok" } else { "BYPASS" }
            );
        }
    }
}

/// An NVMe admin command on `fd` through the ioctl: None on success, else the errno.
fn admin_ioctl(fd: RawFd, opcode: u8) -> Option<i32> {
    let p = nvme_passthru(opcode, 1, 0, false);
    let ret = ioctl(fd, NVME_IOCTL_ADMIN_CMD, p.as_ptr() as u64);
    (ret != 0).then(|| std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

fn describe(result: Option<i32>) -> String {
    match result {
        None => "succeeded".into(),
        Some(libc::EPERM) => "EPERM".into(),
        Some(e) => format!("errno {e}"),
    }
}

fn prevented(report: &mut Report, attack: &'static str, result: Option<i32>) {
    report.add(attack, "prevented", describe(result), result == Some(libc::EPERM));
}

/// Every attack in this file, with its expected outcome, in one agent's lifetime (and one
/// more under `on_toctou: kill`): none may get a destructive command through unseen.
fn no_known_attack_gets_a_destructive_command_past_the_gate_unseen() -> TestResult {
    let ctrl = require::device("/dev/nvme0")?;
    require::deny_hook()?;
    let policy = fleet_baseline_on_toctou("log");
    let mut agent =
        Agent::start_with("attacks", &[], 1 << 22, &["-v", "--policy", policy.to_str().unwrap()]).unwrap();
    assert_eq!(agent.scrape().unwrap().sum("fwctl_guard_enforcing", &[]), 1.0, "{}", agent.output());
    let mut report = Report::default();
    let node = OpenOptions::new().read(true).write(true).open(&ctrl).unwrap();
    let fd = node.as_raw_fd();

    prevented(&mut report, "ioctl: format-nvm (control)", admin_ioctl(fd, FORMAT_NVM));
    fd_tricks(&mut report, &ctrl, fd);
    io_uring(&mut report, &agent, fd);
    compat_32bit(&mut report, &ctrl);
    toctou_race(&mut report, &agent, fd, false);
    agent.stop().unwrap();
    audit_trail(&mut report, &agent);

    recursion_floods(&mut report, &ctrl);

    // The same race under `on_toctou: kill`: the racing process is killed.
    let policy = fleet_baseline_on_toctou("kill");
    let agent =
        Agent::start_with("attacks-kill", &[], 1 << 22, &["--policy", policy.to_str().unwrap()]).unwrap();
    toctou_race(&mut report, &agent, fd, true);

    report.print();
    let bypasses: Vec<&str> = report.0.iter().filter(|r| !r.ok).map(|r| r.attack).collect();
    assert!(bypasses.is_empty(), "undetected bypasses: {bypasses:?}\n{}", agent.output());
    Ok(())
}

/// The verdict follows the task that issues the command, whatever the fd's history:
/// a duplicate, a reopen through /proc, and an fd received from a process the policy
/// allows (comm fwupd, uid 0) are all refused for a caller the policy denies.
fn fd_tricks(report: &mut Report, ctrl: &Path, fd: RawFd) {
    // SAFETY: dup of a valid fd; closed below.
    let dup = unsafe { libc::dup(fd) };
    prevented(report, "dup(fd): format-nvm", admin_ioctl(dup, FORMAT_NVM));
    // SAFETY: closing our own duplicate.
    unsafe { libc::close(dup) };
    let reopened = OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/fd/{fd}"))
        .expect("reopen via /proc");
    prevented(report, "/proc/self/fd reopen: format-nvm", admin_ioctl(reopened.as_raw_fd(), FORMAT_NVM));
    let _ = ctrl;
    let (errno_in_child, allowed_in_owner) = fd_from_allowed_process();
    prevented(report, "SCM_RIGHTS fd from allowed proc", errno_in_child);
    report.add(
        "  (control: the allowed sender)",
        "allowed",
        describe(allowed_in_owner),
        allowed_in_owner.is_none(),
    );
}

/// A thread named `fwupd` (uid 0: the baseline's updater exception) opens the controller
/// and hands the fd over a unix socket to a forked child named `attacker`, which sends
/// Format NVM. Returns (the child's result, the fwupd thread's own Format result).
fn fd_from_allowed_process() -> (Option<i32>, Option<i32>) {
    std::thread::spawn(|| {
        set_thread_name("fwupd");
        let node = OpenOptions::new().read(true).write(true).open("/dev/nvme0").unwrap();
        let mut pair = [0; 2];
        // SAFETY: socketpair fills two fds.
        assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) }, 0);
        // SAFETY: the child only makes async-signal-safe syscalls and exits with _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: see above.
            unsafe {
                libc::prctl(libc::PR_SET_NAME, c"attacker".as_ptr());
                let received = recv_fd(pair[1]);
                let p = nvme_passthru(FORMAT_NVM, 1, 0, false);
                let ret = libc::ioctl(received, NVME_IOCTL_ADMIN_CMD as _, p.as_ptr());
                let errno = if ret == 0 { 0 } else { *libc::__errno_location() };
                libc::_exit(errno);
            }
        }
        send_fd(pair[0], node.as_raw_fd());
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let child = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
        let own = admin_ioctl(node.as_raw_fd(), FORMAT_NVM);
        ((child != 0).then_some(child), own)
    })
    .join()
    .unwrap()
}

fn send_fd(sock: RawFd, fd: RawFd) {
    // SAFETY: a one-byte message with one SCM_RIGHTS control message, buffers on the stack.
    unsafe {
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec { iov_base: byte.as_mut_ptr() as *mut _, iov_len: 1 };
        let mut control = [0u8; 64];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut _;
        msg.msg_controllen = libc::CMSG_SPACE(4) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(4) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut RawFd, fd);
        assert_eq!(libc::sendmsg(sock, &msg, 0), 1);
    }
}

/// # Safety
/// `sock` must be a unix socket; only async-signal-safe calls (runs in a forked child).
unsafe fn recv_fd(sock: RawFd) -> RawFd {
    unsafe {
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec { iov_base: byte.as_mut_ptr() as *mut _, iov_len: 1 };
        let mut control = [0u8; 64];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut _;
        msg.msg_controllen = control.len() as _;
        if libc::recvmsg(sock, &mut msg, 0) != 1 {
            libc::_exit(102);
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            libc::_exit(103);
        }
        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const RawFd)
    }
}

/// NVMe passthrough over io_uring makes no ioctl syscall: `lsm/uring_cmd` must refuse it.
/// Kernels without admin passthrough over io_uring on the controller node cannot be
/// attacked this way; the row says so.
fn io_uring(report: &mut Report, agent: &Agent, fd: RawFd) {
    let mut id = vec![0u8; 4096];
    let identify =
        uring::submit(fd, NVME_URING_CMD_ADMIN, uring::nvme_uring_cmd(IDENTIFY, 0, 1, Some(&mut id)));
    let unsupported = |r: &std::io::Result<i32>| match r {
        Err(_) => true,
        Ok(res) => [-libc::EINVAL, -libc::ENOTTY, -libc::EOPNOTSUPP].contains(res),
    };
    if unsupported(&identify) {
        report.add(
            "io_uring URING_CMD_ADMIN format-nvm",
            "prevented",
            format!("n/a: no admin uring passthrough here (identify: {identify:?})"),
            true,
        );
        return;
    }
    report.add(
        "  (control: io_uring identify)",
        "allowed",
        format!("{identify:?}"),
        matches!(identify, Ok(0)),
    );
    let format = uring::submit(fd, NVME_URING_CMD_ADMIN, uring::nvme_uring_cmd(FORMAT_NVM, 1, 0, None));
    let observed = match &format {
        Ok(0) => "succeeded".to_string(),
        Ok(res) if *res == -libc::EPERM => "EPERM".to_string(),
        Ok(res) => format!("result {res}"),
        Err(e) => format!("io_uring error: {e}"),
    };
    let prevented = matches!(format, Ok(r) if r == -libc::EPERM);
    report.add("io_uring URING_CMD_ADMIN format-nvm", "prevented", observed, prevented);
    // Counted like an ioctl, on its own channel, with the result io_uring completed it with.
    let s = agent.wait_audit_events(2).unwrap();
    let count = |labels: &[(&str, &str)]| s.sum("fwctl_guard_commands_total", labels);
    let denied = count(&[("channel", "io_uring"), ("opcode_name", "format-nvm"), ("verdict", "deny")]);
    let identified = count(&[("channel", "io_uring"), ("opcode_name", "identify"), ("result", "ok")]);
    report.add(
        "  (io_uring counted: deny + identify ok)",
        "counted",
        format!("format-nvm denied {denied}, identify ok {identified}"),
        denied == 1.0 && identified == 1.0,
    );
    if !prevented {
        // Say what the hook saw, to tell a missing hook from a misread command.
        let seen: Vec<String> = agent
            .scrape()
            .map(|s| {
                s.samples
                    .iter()
                    .filter(|(k, _)| {
                        k.name == "fwctl_guard_commands_total"
                            && k.labels.get("channel").map(String::as_str) == Some("io_uring")
                    })
                    .map(|(k, v)| format!("{:?} = {v}", k.labels))
                    .collect()
            })
            .unwrap_or_default();
        println!("io_uring commands the agent counted: {seen:#?}\n{}", agent.output());
    }
    // I/O passthrough goes through the namespace's generic node.
    if let Ok(ng) = OpenOptions::new().read(true).write(true).open("/dev/ng0n1") {
        // One 512-byte block (QEMU's default LBA format; NLB 0 = one block).
        let mut buf = vec![0u8; 512];
        let read = uring::submit(
            ng.as_raw_fd(),
            NVME_URING_CMD_IO,
            uring::nvme_uring_cmd(0x02, 1, 0, Some(&mut buf)),
        );
        report.add(
            "  (control: io_uring I/O read on ng0n1)",
            "allowed",
            format!("{read:?}"),
            matches!(read, Ok(0)),
        );
    }
}

/// The audit log tells the channels apart and names the raced commands.
fn audit_trail(report: &mut Report, agent: &Agent) {
    let records = agent.audit_records().unwrap_or_default();
    let uring_deny = records.iter().any(|r| {
        r["channel"] == "io_uring" && r["ioctl"] == "NVME_URING_CMD_ADMIN" && r["verdict"] == "deny"
    });
    report.add(
        "  (audit: io_uring record)",
        "logged",
        format!("channel io_uring deny record: {uring_deny}"),
        uring_deny,
    );
    let raced: Vec<_> = records.iter().filter(|r| r["toctou"] == true).collect();
    let consistent = raced.iter().all(|r| r["opcode"] == "0x0006" && r["kernel_opcode"] == "0x0080");
    report.add(
        "  (audit: toctou records)",
        "logged",
        format!("{} record(s) with toctou, identify decided / format received: {consistent}", raced.len()),
        consistent,
    );
}

/// A 32-bit process takes compat_sys_ioctl (`file_ioctl_compat` on >= 6.8).
fn compat_32bit(report: &mut Report, ctrl: &Path) {
    if NVME32.is_empty() {
        report.add(
            "compat 32-bit ioctl: format-nvm",
            "prevented",
            "not built (gcc -m32 missing)".into(),
            false,
        );
        return;
    }
    let exe = std::env::temp_dir().join(format!("nvme32-{}", std::process::id()));
    std::fs::write(&exe, NVME32).unwrap();
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let status = match Command::new(&exe).arg(ctrl).arg(FORMAT_NVM.to_string()).status() {
        Ok(status) => status,
        Err(e) => {
            // ENOEXEC: the kernel runs no 32-bit programs (no IA32 emulation), so no compat path.
            let ok = e.raw_os_error() == Some(libc::ENOEXEC);
            report.add(
                "compat 32-bit ioctl: format-nvm",
                "prevented",
                format!("n/a: cannot run i386: {e}"),
                ok,
            );
            return;
        }
    };
    let result = match status.code() {
        Some(0) => None,
        Some(code) => Some(code),
        None => Some(-1),
    };
    let observed = match status.code() {
        Some(100..=103) => format!("could not run ({status})"),
        _ => describe(result),
    };
    report.add("compat 32-bit ioctl: format-nvm", "prevented", observed, result == Some(libc::EPERM));
}

/// Two threads: one sends Identify (allowed) over and over, the other flips the opcode
/// byte in the same buffer to Format NVM (denied) and back. The LSM hook reads the
/// payload, then the kernel copies it: a flip in between sends a Format the policy never
/// saw. Every such Format must show up as a TOCTOU detection (and, with `kill`, the
/// racing process dies). In a forked child so the kill takes the racer, not the suite.
fn toctou_race(report: &mut Report, agent: &Agent, fd: RawFd, kill: bool) {
    const TRIES: u32 = 20_000;
    let before = agent.scrape().unwrap();
    // SAFETY: the child runs the race and exits; it makes only syscalls and spawns a thread.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        race(fd, TRIES);
        // SAFETY: leaving the forked child without running the test harness's exit path.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let killed = libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL;
    // Let the agent read the last events and the device finish the formats.
    std::thread::sleep(Duration::from_millis(500));
    let after = agent.scrape().unwrap();
    let delta = |s: &Scrape, b: &Scrape, name: &str, labels: &[(&str, &str)]| {
        s.sum(name, labels) - b.sum(name, labels)
    };
    let reached = delta(
        &after,
        &before,
        "fwctl_guard_mailbox_commands_total",
        &[("opcode_name", "format-nvm"), ("origin", "passthrough")],
    );
    let detected = delta(&after, &before, "fwctl_guard_toctou_detected_total", &[("class", "nvme-admin")]);
    let attack =
        if kill { "TOCTOU opcode flip (on_toctou: kill)" } else { "TOCTOU opcode flip (on_toctou: log)" };
    // A race nobody won proves nothing unless the hook was there to lose it: the hook
    // must have counted the racer's commands.
    let seen = delta(&after, &before, "fwctl_guard_commands_total", &[("class", "nvme-admin")]);
    if reached == 0.0 && detected == 0.0 {
        let observed = format!("race not won in {TRIES} tries; the hook saw {seen} commands");
        report.add(attack, "detected", observed, seen > 0.0);
        return;
    }
    let observed = format!(
        "{reached} format(s) reached the device, {detected} detected{}",
        if kill {
            if killed {
                ", racer killed"
            } else {
                ", racer NOT killed"
            }
        } else {
            ""
        }
    );
    report.add(attack, "detected", observed, detected >= reached && (!kill || killed));
}

/// How long each recursion flood runs: 40 s on the trampoline set of the 7.2 guests (Debian's
/// and the fwctl kernel built from its source: PREEMPT_LAZY, where skips were measured), 10 s on the other kernels' trampoline
/// sets, 5 s on BPF LSM, which the kernel never skips (a control); the VM stage's time
/// budget pays for eight boots.
fn flood_duration(hook_set: &str, kernel: &str) -> Duration {
    match hook_set {
        "trampoline" if kernel.starts_with("7.2") => Duration::from_secs(40),
        "trampoline" => Duration::from_secs(10),
        _ => Duration::from_secs(5),
    }
}

/// The kernel skips a tracing program (fmod_ret, fexit) when it is already running on the
/// same CPU, and a skipped fmod_ret is an allow: threads hammering the hook on both CPUs
/// try to win that. Two mixes, as an attacker would choose them: 8 threads issuing Format,
/// and 8 Identify threads covering 1 Format thread. Every Format that reaches the
/// controller (counted by the driver's `nvme_setup_cmd` tracepoint) or returns success must
/// have been detected as a bypass. In an agent of its own whose audit log is discarded:
/// a flood writes millions of denial records, and this row reads the counters.
fn recursion_floods(report: &mut Report, ctrl: &Path) {
    let probe = require::probe().ok();
    let hook_set = probe.and_then(|p| p.auto.hook_set.clone()).unwrap_or_default();
    let duration = flood_duration(&hook_set, probe.map(|p| p.kernel.as_str()).unwrap_or_default());
    let policy = fleet_baseline_on_toctou("log");
    let mut agent = Agent::builder("attacks-flood")
        .audit_log_discarded()
        .args(["--policy", policy.to_str().unwrap()])
        .start()
        .unwrap();
    for (attack, identify_threads, format_threads) in
        [("recursion flood: 8 x format-nvm", 0, 8), ("recursion flood: 8 x identify + 1 x format", 8, 1)]
    {
        let before = agent.scrape().unwrap();
        let outcome = flood(ctrl, identify_threads, format_threads, duration);
        std::thread::sleep(Duration::from_millis(500));
        let after = agent.scrape().unwrap();
        let delta = |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);
        let reached = delta(
            "fwctl_guard_mailbox_commands_total",
            &[("opcode_name", "format-nvm"), ("origin", "passthrough")],
        );
        let detected = delta("fwctl_guard_hook_bypass_detected_total", &[("class", "nvme-admin")]);
        let skipped = delta("fwctl_guard_program_skipped_total", &[]);
        let backup = delta("fwctl_guard_lsm_refusals_total", &[("by", "backup")]);
        let seen = delta("fwctl_guard_commands_total", &[("class", "nvme-admin")]);
        // A Format passes undetected per command only when the kernel skipped every deny
        // program and the result program for it: each such command is one skip of each,
        // so there can be no more of them than the fewest skips among those programs.
        let mut path = trampoline_ioctl_deny_programs();
        path.push(trampoline_ioctl_result_program());
        let fewest_skips = path
            .iter()
            .map(|p| delta("fwctl_guard_program_skipped_total", &[("program", p)]))
            .fold(f64::INFINITY, f64::min);
        let passed = (outcome.succeeded as f64).max(reached);
        let undetected = (passed - detected).max(0.0);
        let observed = format!(
            "{hook_set} {}s: {} refused ({backup} by a backup), {} returned success, {reached} seen \
             by the controller's tracepoint, {detected} detected per command, {undetected} only in \
             the skip counters (fewest skips on the path: {fewest_skips}; {skipped} skips in all)",
            duration.as_secs(),
            outcome.refused,
            outcome.succeeded,
        );
        let ok = seen > 0.0 && outcome.refused > 0 && (undetected == 0.0 || undetected <= fewest_skips);
        let expected = if undetected == 0.0 { "prevented" } else { "counted" };
        report.add(attack, expected, observed, ok);
    }
    agent.stop().unwrap();
}

/// What the flood's Format threads saw.
#[derive(Default)]
struct FloodOutcome {
    refused: u64,
    succeeded: u64,
}

/// `identify_threads` and `format_threads` threads issuing their command on `ctrl` in a
/// loop for `duration`, each with its own descriptor.
fn flood(ctrl: &Path, identify_threads: usize, format_threads: usize, duration: Duration) -> FloodOutcome {
    let deadline = Instant::now() + duration;
    let threads: Vec<_> = std::iter::repeat_n(IDENTIFY, identify_threads)
        .chain(std::iter::repeat_n(FORMAT_NVM, format_threads))
        .map(|opcode| {
            let node = OpenOptions::new().read(true).write(true).open(ctrl).unwrap();
            std::thread::spawn(move || {
                let mut outcome = FloodOutcome::default();
                while Instant::now() < deadline {
                    match admin_ioctl(node.as_raw_fd(), opcode) {
                        _ if opcode != FORMAT_NVM => {}
                        None => outcome.succeeded += 1,
                        Some(libc::EPERM) => outcome.refused += 1,
                        Some(_) => {}
                    }
                }
                outcome
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).fold(FloodOutcome::default(), |a, b| FloodOutcome {
        refused: a.refused + b.refused,
        succeeded: a.succeeded + b.succeeded,
    })
}

/// The racing child's body: Identify with the opcode flipped underneath.
fn race(fd: RawFd, tries: u32) {
    let cmd = Arc::new(std::sync::Mutex::new(nvme_passthru(IDENTIFY, 1, 0, false)));
    let ptr = cmd.lock().unwrap().as_mut_ptr() as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let opcode = ptr as *mut u8;
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: the buffer lives until this thread is joined; a racy byte write is
                // the point of the test (volatile so it is not optimised away).
                unsafe {
                    std::ptr::write_volatile(opcode, FORMAT_NVM);
                    std::ptr::write_volatile(opcode, IDENTIFY);
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    for _ in 0..tries {
        ioctl(fd, NVME_IOCTL_ADMIN_CMD, ptr as u64);
        if Instant::now() > deadline {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    drop(cmd);
}
