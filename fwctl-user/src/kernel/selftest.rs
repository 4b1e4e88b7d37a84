//! The self-test: proof that every attached program of the hook set runs, because a
//! program the kernel accepted may never run (BPF LSM compiled in but not an active LSM)
//! and may stop running. The agent sends canaries (`fwctl_common::canary`) through each
//! hook and reads the `CANARY` map: a program proves it runs when its slot counted the
//! canary, and a program that can deny proves it by refusing the canary addressed to it
//! with EPERM. Run after every attach or adoption and then periodically.
//!
//! Which canary reaches which program follows from where it attaches: a native ioctl on
//! the canary node (`file_ioctl`, `security_file_ioctl`, `sys_enter/exit_ioctl`, fexit on
//! `__x64_sys_ioctl`), a 32-bit ioctl through `int 0x80` (the compat hooks), or an io_uring
//! NVMe Identify on a controller node (`uring_cmd`, `io_uring_complete`), which only exists
//! where an NVMe controller does.

use std::{
    fs::File,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    os::unix::fs::{MetadataExt, OpenOptionsExt as _},
    path::{Path, PathBuf},
    time::SystemTime,
};

use anyhow::{bail, Context as _, Result};
use aya::maps::{MapData, PerCpuArray};
use fwctl_common::{
    abi::NVME_URING_CMD_ADMIN,
    canary,
    hook_set::{role, Attach, HookSet, Program},
    model::{driver, DeviceInfo},
};
use serde::Serialize;

use super::maps::per_cpu_slot;
use crate::devices::inventory::WatchEntry;

/// Attempts per proof: a tracing program can be skipped now and then when a task was
/// preempted inside it on the same CPU, so one missed canary proves nothing either way.
const ATTEMPTS: u32 = 3;

const EPERM: i32 = 1;

/// The agent's canary node: a pty slave of its own, watched with the canary kind.
pub struct CanaryNode {
    /// Keeps the pty alive.
    _master: OwnedFd,
    slave: File,
    major: u32,
    minor: u32,
}

impl CanaryNode {
    pub fn open() -> Result<Self> {
        // SAFETY: plain libc pty calls; the fd is owned right away.
        let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        if master < 0 {
            return Err(std::io::Error::last_os_error()).context("opening a pty for the self-test canary");
        }
        // SAFETY: master is a fresh descriptor.
        let master = unsafe { OwnedFd::from_raw_fd(master) };
        let mut name = [0 as libc::c_char; 64];
        // SAFETY: grantpt/unlockpt/ptsname_r on our own master fd, into our buffer.
        let ok = unsafe {
            libc::grantpt(master.as_raw_fd()) == 0
                && libc::unlockpt(master.as_raw_fd()) == 0
                && libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) == 0
        };
        if !ok {
            return Err(std::io::Error::last_os_error()).context("unlocking the canary pty");
        }
        // SAFETY: ptsname_r wrote a NUL-terminated path.
        let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }.to_string_lossy().into_owned();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&path)
            .with_context(|| format!("opening the canary pty {path}"))?;
        let rdev = slave.metadata()?.rdev();
        Ok(Self { _master: master, slave, major: libc::major(rdev), minor: libc::minor(rdev) })
    }

    /// Its entry in the device map.
    pub fn watch_entry(&self) -> WatchEntry {
        WatchEntry {
            block: false,
            major: self.major,
            minor: Some(self.minor),
            info: DeviceInfo { kind: canary::DEVICE_KIND, driver: driver::UNKNOWN, _pad: [0; 2] },
            source: "self-test canary pty".into(),
        }
    }

    fn fd(&self) -> RawFd {
        self.slave.as_raw_fd()
    }
}

/// How a canary reaches a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Native,
    Compat,
    Uring,
}

fn path_of(program: &Program) -> Option<Route> {
    let target = match program.attach {
        Attach::Lsm(t) | Attach::FExit(t) | Attach::KProbe(t) | Attach::FModRet(t) => t,
        Attach::TracePoint(_, event) => event,
    };
    match target {
        "file_ioctl" | "__x64_sys_ioctl" | "sys_enter_ioctl" | "sys_exit_ioctl" => Some(Route::Native),
        "file_ioctl_compat" | "__ia32_compat_sys_ioctl" => Some(Route::Compat),
        "uring_cmd" | "io_uring_complete" => Some(Route::Uring),
        _ if target.starts_with("security_file_ioctl_compat") => Some(Route::Compat),
        _ if target.starts_with("security_file_ioctl") => Some(Route::Native),
        _ if target.starts_with("security_uring_cmd") => Some(Route::Uring),
        _ => None,
    }
}

/// One program's proof.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Proof {
    pub program: &'static str,
    /// It counted a canary.
    pub fired: bool,
    /// Deny-capable programs: it refused its canary with EPERM.
    pub refused: Option<bool>,
    /// Why it could not be tested, or what went wrong.
    pub detail: Option<String>,
    /// False when no canary can reach it here (no NVMe controller for io_uring, no 32-bit
    /// syscalls): neither proven nor failed.
    pub testable: bool,
}

impl Proof {
    /// Proven: it ran, and refused where it can refuse.
    pub fn proven(&self) -> bool {
        self.testable && self.fired && self.refused != Some(false)
    }
}

/// The outcome of one self-test of a hook set.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub hook_set: &'static str,
    pub proofs: Vec<Proof>,
    #[serde(skip)]
    pub at: SystemTime,
}

impl Report {
    /// Every testable program proven.
    pub fn all_proven(&self) -> bool {
        self.proofs.iter().filter(|p| p.testable).all(Proof::proven)
    }

    /// The programs that failed, in words.
    pub fn failures(&self) -> Vec<String> {
        self.proofs
            .iter()
            .filter(|p| p.testable && !p.proven())
            .map(|p| format!("{}: {}", p.program, p.detail.as_deref().unwrap_or("did not run")))
            .collect()
    }
}

/// Sends canaries (what the kernel counted is read from the `CANARY` map by the caller's
/// [`Counts`]).
pub struct SelfTest {
    canary: CanaryNode,
    /// An NVMe controller node for the io_uring canary, if there is one.
    uring_node: Option<PathBuf>,
}

/// The `CANARY` map, whether owned by the agent or borrowed from a loaded object.
pub struct Counts<T>(pub PerCpuArray<T, u64>);

impl<T: std::borrow::Borrow<MapData>> Counts<T> {
    fn get(&self, slot: u32) -> u64 {
        per_cpu_slot(&self.0, slot)
    }
}

impl SelfTest {
    pub fn new(canary: CanaryNode, uring_node: Option<PathBuf>) -> Self {
        Self { canary, uring_node }
    }

    /// The canary node's entry in the device map.
    pub fn watch_entry(&self) -> WatchEntry {
        self.canary.watch_entry()
    }

    /// Prove every program of `set` that is attached (`attached` names them).
    pub fn run<T: std::borrow::Borrow<MapData>>(
        &self,
        counts: &Counts<T>,
        set: &'static HookSet,
        attached: &[&'static str],
    ) -> Report {
        let programs: Vec<&Program> = set.programs.iter().filter(|p| attached.contains(&p.name)).collect();
        let mut proofs = Vec::new();
        for path in [Route::Native, Route::Compat, Route::Uring] {
            let group: Vec<&Program> =
                programs.iter().copied().filter(|p| path_of(p) == Some(path)).collect();
            if group.is_empty() {
                continue;
            }
            proofs.extend(self.prove(counts, path, &group));
        }
        Report { hook_set: set.label, proofs, at: SystemTime::now() }
    }

    /// Prove a group of programs one canary path reaches: a passing canary for all, then
    /// one refused canary per deny-capable program.
    fn prove<T: std::borrow::Borrow<MapData>>(
        &self,
        counts: &Counts<T>,
        path: Route,
        group: &[&Program],
    ) -> Vec<Proof> {
        let mut proofs: Vec<Proof> = group
            .iter()
            .map(|p| Proof {
                program: p.name,
                fired: false,
                refused: (p.role & role::DENY != 0).then_some(false),
                detail: None,
                testable: true,
            })
            .collect();
        if let Err(why) = self.reachable(path) {
            for proof in &mut proofs {
                proof.testable = false;
                proof.detail = Some(why.clone());
            }
            return proofs;
        }
        // io_uring canaries can only be refused ones: one that passed would reach the device.
        if path != Route::Uring {
            for _ in 0..ATTEMPTS {
                let before: Vec<u64> = group.iter().map(|p| counts.get(p.slot)).collect();
                if let Err(e) = self.send(path, canary::PASS) {
                    for proof in &mut proofs {
                        proof.detail = Some(format!("canary not sent: {e}"));
                    }
                    return proofs;
                }
                for ((p, proof), before) in group.iter().zip(&mut proofs).zip(before) {
                    proof.fired |= counts.get(p.slot) > before;
                }
                if proofs.iter().all(|p| p.fired) {
                    break;
                }
            }
        }
        for (i, p) in group.iter().enumerate() {
            if p.role & role::DENY == 0 {
                continue;
            }
            for _ in 0..ATTEMPTS {
                let before: Vec<u64> = group.iter().map(|q| counts.get(q.slot)).collect();
                let outcome = self.send(path, canary::deny_arg(p.slot));
                let counted = counts.get(p.slot) > before[i];
                let refused = matches!(outcome, Err(errno) if errno == EPERM);
                proofs[i].fired |= counted;
                if path == Route::Uring {
                    // The refused command's completion proves the result hooks.
                    for ((q, proof), before) in group.iter().zip(proofs.iter_mut()).zip(&before) {
                        if q.role & role::RESULT != 0 {
                            proof.fired |= counts.get(q.slot) > *before;
                        }
                    }
                }
                if counted && refused {
                    proofs[i].refused = Some(true);
                    break;
                }
                proofs[i].detail = Some(match outcome {
                    Ok(()) => "its canary was not refused: the command went through".to_string(),
                    Err(errno) => format!("its canary failed with errno {errno}, not EPERM"),
                });
            }
            if proofs[i].refused == Some(true) {
                proofs[i].detail = None;
            }
        }
        for proof in proofs.iter_mut().filter(|p| !p.fired && p.detail.is_none()) {
            proof.detail = Some(format!("counted no canary in {ATTEMPTS} tries: the kernel does not run it"));
        }
        proofs
    }

    /// Why no canary can take `path` here, if none can.
    fn reachable(&self, path: Route) -> Result<(), String> {
        match path {
            Route::Native => Ok(()),
            Route::Compat => match compat_ioctl(self.canary.fd(), 0, 0) {
                Err(errno) if errno == libc::ENOSYS => Err("no 32-bit syscalls on this kernel".into()),
                _ => Ok(()),
            },
            Route::Uring => match &self.uring_node {
                Some(_) => Ok(()),
                None => Err("no NVMe controller to send an io_uring canary to".into()),
            },
        }
    }

    /// Send one canary with `arg` along `path`; `Err(errno)` when refused or failed.
    fn send(&self, path: Route, arg: u64) -> Result<(), i32> {
        match path {
            Route::Native => {
                // SAFETY: an ioctl on our own pty with a number no tty implements; the
                // argument is not a pointer.
                let rc = unsafe { libc::ioctl(self.canary.fd(), canary::IOCTL as _, arg) };
                // The tty itself answers ENOTTY: the canary passed every hook.
                match rc {
                    0 => Ok(()),
                    _ => match std::io::Error::last_os_error().raw_os_error().unwrap_or(0) {
                        libc::ENOTTY => Ok(()),
                        errno => Err(errno),
                    },
                }
            }
            Route::Compat => match compat_ioctl(self.canary.fd(), canary::IOCTL, arg as u32) {
                Ok(()) | Err(libc::ENOTTY) => Ok(()),
                Err(errno) => Err(errno),
            },
            Route::Uring => {
                let slot = (arg & 0xffff) as u32;
                let node = self.uring_node.as_deref().ok_or(libc::ENODEV)?;
                uring_identify(node, canary::URING_NSID_TAG | slot)
            }
        }
    }
}

/// `ioctl` through the 32-bit system call entry (`int 0x80`), as a 32-bit process makes it.
fn compat_ioctl(fd: RawFd, cmd: u32, arg: u32) -> Result<(), i32> {
    let ret: i64;
    // SAFETY: `int 0x80` with the i386 ioctl number (54) and plain integer arguments; rbx is
    // reserved by LLVM, so the fd goes through a scratch register swapped in and out.
    unsafe {
        std::arch::asm!(
            "xchg {fd:r}, rbx",
            "int 0x80",
            "xchg {fd:r}, rbx",
            fd = inout(reg) fd as u64 => _,
            inlateout("rax") 54i64 => ret,
            in("rcx") cmd as u64,
            in("rdx") arg as u64,
            options(nostack),
        );
    }
    let ret = ret as i32;
    if ret < 0 {
        Err(-ret)
    } else {
        Ok(())
    }
}

/// An NVMe admin Identify (controller) over io_uring with namespace id `nsid`.
fn uring_identify(node: &Path, nsid: u32) -> Result<(), i32> {
    use io_uring::{cqueue, opcode, squeue, types, IoUring};
    let file = File::open(node).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let mut data = vec![0u8; 4096];
    let mut cmd = [0u8; 80];
    cmd[0] = canary::URING_OPCODE as u8;
    cmd[4..8].copy_from_slice(&nsid.to_le_bytes());
    cmd[24..32].copy_from_slice(&(data.as_mut_ptr() as u64).to_le_bytes());
    cmd[36..40].copy_from_slice(&(data.len() as u32).to_le_bytes());
    cmd[40..44].copy_from_slice(&1u32.to_le_bytes()); // CNS 1: the controller
    let mut ring: IoUring<squeue::Entry128, cqueue::Entry32> =
        IoUring::builder().build(2).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let entry = opcode::UringCmd80::new(types::Fd(file.as_raw_fd()), NVME_URING_CMD_ADMIN).cmd(cmd).build();
    // SAFETY: `data` outlives the wait below.
    unsafe { ring.submission().push(&entry) }.map_err(|_| libc::EBUSY)?;
    ring.submit_and_wait(1).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let result = ring.completion().next().map(|c| c.result()).ok_or(libc::EIO)?;
    drop(data);
    if result < 0 {
        Err(-result)
    } else {
        Ok(())
    }
}

/// The first NVMe controller character node (`/dev/nvmeN`) of an inventory, for the
/// io_uring canary.
pub fn uring_node(devices: &[crate::devices::inventory::Device]) -> Option<PathBuf> {
    devices
        .iter()
        .find(|d| {
            d.kind == fwctl_common::model::device_kind::NVME
                && !d.block
                && d.name
                    .strip_prefix("nvme")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|d| d.node.clone())
}

/// Fail start-up with the reason when a proof is missing.
pub fn require(report: &Report) -> Result<()> {
    if report.all_proven() {
        return Ok(());
    }
    bail!(
        "the {} hook set is attached but not proven to run: {}",
        report.hook_set,
        report.failures().join("; ")
    )
}

#[cfg(test)]
mod tests {
    use fwctl_common::hook_set;

    use super::*;

    #[test]
    fn every_hook_set_program_has_a_canary_path_and_a_slot() {
        for set in hook_set::ALL {
            for p in set.programs {
                assert!(path_of(p).is_some(), "{}: no canary reaches it", p.name);
                assert!(p.slot < canary::SLOTS, "{}", p.name);
            }
        }
    }

    #[test]
    fn a_proof_needs_a_run_and_for_deniers_a_refusal() {
        let proof = |fired, refused, testable| Proof { program: "p", fired, refused, detail: None, testable };
        assert!(proof(true, None, true).proven());
        assert!(proof(true, Some(true), true).proven());
        assert!(!proof(true, Some(false), true).proven(), "ran but let its canary through");
        assert!(!proof(false, None, true).proven());
        let report = Report {
            hook_set: "lsm",
            proofs: vec![proof(true, Some(true), true), proof(false, None, false)],
            at: SystemTime::now(),
        };
        assert!(report.all_proven(), "an untestable program is neither proven nor failed");
    }

    #[test]
    fn the_compat_syscall_reaches_the_kernel() {
        // An ioctl on a closed fd through `int 0x80`: EBADF from the 32-bit entry, or
        // ENOSYS where the kernel has no 32-bit syscalls; never a crash.
        let errno = compat_ioctl(-1, 0x5401, 0).unwrap_err();
        assert!(errno == libc::EBADF || errno == libc::ENOSYS, "{errno}");
    }

    #[test]
    fn the_uring_canary_goes_to_a_controller_node() {
        let device = |name: &str, block| crate::devices::inventory::Device {
            name: name.into(),
            kind: fwctl_common::model::device_kind::NVME,
            driver: driver::NVME,
            block,
            major: 1,
            minor: 1,
            node: PathBuf::from(format!("/dev/{name}")),
            sysfs: PathBuf::new(),
            parent: None,
            kernel_driver: None,
            parent_pci: None,
        };
        let devices = [device("nvme0n1", true), device("ng0n1", false), device("nvme0", false)];
        assert_eq!(uring_node(&devices), Some(PathBuf::from("/dev/nvme0")));
        assert_eq!(uring_node(&devices[..2]), None);
    }
}
