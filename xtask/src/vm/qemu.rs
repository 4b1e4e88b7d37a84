//! Booting a guest: the QEMU command line for the bed's [`Layout`] (q35 with one NVMe
//! controller; either one CXL type-3 device with persistent memory and a label area, per
//! QEMU's docs/system/devices/cxl.rst, or two NUMA nodes for the cxl_test mock), and one boot with its serial console captured to a log
//! file, a time limit, and the result read from the sentinel line
//! `FWCTL_GUARD_VM_RESULT=<code>` that `vm/init.sh` prints.
//!
//! Acceleration: nested KVM cannot boot Debian kernels on the project's machines (the
//! `/dev/kvm` there is paravirtual and the CPU has no VMX/SVM; QEMU stops with "KVM
//! internal error. Suberror: 1" in the kernel's decompressor). `auto` therefore uses KVM
//! only when `/dev/kvm` opens *and* the CPU flags show VMX or SVM, and even then falls
//! back to TCG for the rest of the run if QEMU reports a KVM internal error or the
//! guest's init has not spoken within [`KVM_INIT_DEADLINE`].

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::bed::Layout;
use crate::paths;

/// Printed by `vm/init.sh` as soon as it runs.
pub const INIT_MARK: &str = "FWCTL_GUARD_VM_INIT";
/// Printed by `vm/init.sh` with the test script's exit status.
pub const RESULT_MARK: &str = "FWCTL_GUARD_VM_RESULT=";
/// How long a KVM guest may take to reach init before `auto` gives up on KVM.
pub const KVM_INIT_DEADLINE: Duration = Duration::from_secs(30);
/// How long QEMU may take to exit after the sentinel (poweroff) before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(30);

/// QEMU's accelerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// KVM when the host looks able to nest, else TCG; TCG after a failed KVM boot.
    Auto,
    Tcg,
    Kvm,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Auto => "auto",
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// True when `/dev/kvm` opens read-write and the CPU advertises VMX or SVM.
pub fn kvm_plausible() -> bool {
    let opens = OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpuinfo.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    opens && flags.split_whitespace().any(|f| f == "vmx" || f == "svm")
}

/// The guest's emulated devices' backing files, in `target/vm/disks/` (sparse, created
/// once). Per clone, not in the shared cache: QEMU locks its images, so two clones
/// running `vm-test` at the same time would otherwise refuse each other's boots.
pub struct Disks {
    pub nvme: PathBuf,
    pub cxl_pmem: PathBuf,
    pub cxl_lsa: PathBuf,
}

/// Sizes: NVMe namespace, CXL persistent memory, CXL label storage area.
const NVME_SIZE: u64 = 64 << 20;
const CXL_PMEM_SIZE: u64 = 256 << 20;
const CXL_LSA_SIZE: u64 = 256 << 20;

/// The backing files of boot slot `slot` (one set per guest running at the same time: the
/// CXL memory is shared with the guest, so two guests must not share it).
pub fn disks(slot: usize) -> Result<Disks> {
    let dir = paths::target_dir().join("vm/disks").join(format!("slot{slot}"));
    fs::create_dir_all(&dir)?;
    let disks = Disks {
        nvme: dir.join("nvme.raw"),
        cxl_pmem: dir.join("cxl-pmem.raw"),
        cxl_lsa: dir.join("cxl-lsa.raw"),
    };
    for (path, size) in
        [(&disks.nvme, NVME_SIZE), (&disks.cxl_pmem, CXL_PMEM_SIZE), (&disks.cxl_lsa, CXL_LSA_SIZE)]
    {
        if fs::metadata(path).map(|m| m.len()).ok() != Some(size) {
            File::create(path)?.set_len(size)?;
        }
    }
    Ok(disks)
}

/// The full QEMU command for one boot (`accel` is `tcg` or `kvm`); `kernel_args` are
/// appended to the kernel command line.
pub fn command(
    vmlinuz: &Path,
    initrd: &Path,
    disks: &Disks,
    layout: Layout,
    accel: Accel,
    kernel_args: Option<&str>,
) -> Command {
    let mut c = Command::new("qemu-system-x86_64");
    c.args(["-accel", accel.name(), "-m", "2G"]);
    match layout {
        Layout::CxlType3 => c.args(["-machine", "q35,cxl=on", "-smp", "2"]),
        // One socket per node: with both CPUs in one socket split across nodes the kernel
        // warns about the topology, which taints it.
        Layout::TwoNumaNodes => c.args(["-machine", "q35", "-smp", "2,sockets=2,cores=1,threads=1"]),
    };
    // No NIC: the guest needs no network, and its option ROM costs boot time.
    c.args(["-nographic", "-no-reboot", "-nic", "none"]);
    c.arg("-kernel").arg(vmlinuz).arg("-initrd").arg(initrd);
    let mut append = String::from("console=ttyS0 panic=-1 oops=panic quiet");
    if let Some(args) = kernel_args {
        append.push(' ');
        append.push_str(args);
    }
    c.arg("-append").arg(append);
    // snapshot=on: writes (the attack suite formats the namespace) go to a throw-away
    // overlay, so the cached image stays pristine and concurrent runs do not fight over
    // its write lock.
    c.arg("-drive").arg(format!("file={},if=none,id=nvm,format=raw,snapshot=on", disks.nvme.display()));
    c.args(["-device", "nvme,serial=fwctlguard,drive=nvm"]);
    match layout {
        Layout::CxlType3 => cxl_type3(&mut c, disks),
        Layout::TwoNumaNodes => {
            for node in 0..2 {
                c.args(["-object", &format!("memory-backend-ram,id=node{node},size=1G")]);
                c.args(["-numa", &format!("node,nodeid={node},cpus={node},memdev=node{node}")]);
            }
        }
    }
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// One CXL type-3 memdev behind a host bridge and root port, with a 4 GiB window.
fn cxl_type3(c: &mut Command, disks: &Disks) {
    c.arg("-object").arg(format!(
        "memory-backend-file,id=cxl-mem0,share=on,mem-path={},size={}",
        disks.cxl_pmem.display(),
        CXL_PMEM_SIZE
    ));
    c.arg("-object").arg(format!(
        "memory-backend-file,id=cxl-lsa0,share=on,mem-path={},size={}",
        disks.cxl_lsa.display(),
        CXL_LSA_SIZE
    ));
    c.args(["-device", "pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1"]);
    c.args(["-device", "cxl-rp,port=0,bus=cxl.1,id=root_port13,chassis=0,slot=2"]);
    c.args([
        "-device",
        "cxl-type3,bus=root_port13,persistent-memdev=cxl-mem0,lsa=cxl-lsa0,id=cxl-pmem0,sn=0x1",
    ]);
    c.args(["-M", "cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=4G"]);
}

/// How a boot ended.
pub struct Outcome {
    /// The test script's exit status from the sentinel line; `None` without one.
    pub result: Option<i32>,
    /// The guest's init printed its start mark.
    pub init_seen: bool,
    /// Why the boot was cut short, if it was.
    pub killed: Option<String>,
    /// QEMU's own exit status (`None` when killed).
    pub qemu_status: Option<std::process::ExitStatus>,
    pub elapsed: Duration,
    /// Every console line (also in the log file).
    pub lines: Vec<String>,
}

/// Runs `cmd`, logging every console line to `log`; kills QEMU after `timeout`, or
/// after `init_deadline` when the guest's init has not spoken by then.
pub fn boot(
    mut cmd: Command,
    log: &Path,
    timeout: Duration,
    init_deadline: Option<Duration>,
) -> Result<Outcome> {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut log_file = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let start = Instant::now();
    let mut child = cmd.spawn().context("cannot start qemu-system-x86_64")?;
    let (tx, rx) = mpsc::channel::<String>();
    let readers = [
        spawn_reader(child.stdout.take().expect("piped"), tx.clone()),
        spawn_reader(child.stderr.take().expect("piped"), tx),
    ];
    let mut out = Outcome {
        result: None,
        init_seen: false,
        killed: None,
        qemu_status: None,
        elapsed: Duration::ZERO,
        lines: Vec::new(),
    };
    let mut result_at: Option<Instant> = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                record(&mut out, &mut log_file, line)?;
                if out.result.is_some() {
                    result_at.get_or_insert_with(Instant::now);
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                out.qemu_status = Some(child.wait()?);
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Some(status) = child.try_wait()? {
            out.qemu_status = Some(status);
            break;
        }
        let kvm_failed = out.lines.iter().rev().take(50).any(|l| l.contains("KVM internal error"));
        let kill = if start.elapsed() > timeout {
            Some(format!("no result within the {} s time limit", timeout.as_secs()))
        } else if kvm_failed && !out.init_seen {
            Some("KVM internal error (QEMU paused the guest)".to_string())
        } else if init_deadline.is_some_and(|d| !out.init_seen && start.elapsed() > d) {
            Some(format!(
                "the guest's init did not start within {} s",
                init_deadline.unwrap_or_default().as_secs()
            ))
        } else if result_at.is_some_and(|t| t.elapsed() > EXIT_GRACE) {
            Some(format!("QEMU did not exit within {} s of the result line", EXIT_GRACE.as_secs()))
        } else {
            None
        };
        if let Some(reason) = kill {
            stop(&mut child);
            writeln!(log_file, "[xtask vm-test: killed QEMU: {reason}]")?;
            out.killed = Some(reason);
            break;
        }
    }
    for reader in readers {
        reader.join().ok();
    }
    // Lines that arrived between QEMU's exit and the readers' end.
    for line in rx.try_iter() {
        record(&mut out, &mut log_file, line)?;
    }
    out.elapsed = start.elapsed();
    Ok(out)
}

/// Logs one console line and notes the marks in it.
fn record(out: &mut Outcome, log: &mut File, line: String) -> Result<()> {
    writeln!(log, "{line}")?;
    if line.contains(INIT_MARK) {
        out.init_seen = true;
    }
    if let Some(code) = line.split(RESULT_MARK).nth(1) {
        // A mangled number still counts as a (failed) result.
        out.result = Some(code.trim().parse().unwrap_or(-1));
    }
    out.lines.push(line);
    Ok(())
}

/// Kills the QEMU this module started and reaps it.
fn stop(child: &mut Child) {
    child.kill().ok();
    child.wait().ok();
}

/// Forwards `pipe`'s lines (lossy UTF-8, `\r` dropped) until it closes.
fn spawn_reader(pipe: impl Read + Send + 'static, tx: mpsc::Sender<String>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = strip_escapes(&String::from_utf8_lossy(&buf));
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

/// Drops terminal escape sequences (SeaBIOS and the kernel clear the screen), `\r` and
/// the line end.
fn strip_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                // CSI "ESC [ params final" or a two-character "ESC x".
                if chars.next() == Some('[') {
                    while chars.next().is_some_and(|c| !('@'..='~').contains(&c)) {}
                }
            }
            '\r' | '\n' => {}
            c => out.push(c),
        }
    }
    out
}
