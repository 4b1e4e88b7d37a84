//! Per-program kernel statistics, for what aya does not expose: how often the kernel
//! skipped one of our programs because it was already running on that CPU (a task
//! preempted inside it). Each skip is a hook invocation that did not happen, so it is
//! exported as a metric rather than silently lost.

use std::os::fd::{AsRawFd, OwnedFd};

use aya_obj::generated::bpf_prog_info;

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// `union bpf_attr` as BPF_OBJ_GET_INFO_BY_FD reads it.
#[repr(C)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// An attached program the agent watches.
pub struct ProgramStats {
    pub name: &'static str,
    pub fd: OwnedFd,
}

impl ProgramStats {
    /// Statistics handles of the named programs pinned in `pins`.
    pub fn of_pinned(pins: &super::pins::PinSet, names: &[&'static str]) -> anyhow::Result<Vec<Self>> {
        names.iter().map(|name| Ok(Self { name, fd: pins.program_fd(name)? })).collect()
    }

    /// The kernel's `recursion_misses` for the program (Linux >= 5.12), if it can be read.
    pub fn recursion_misses(&self) -> Option<u64> {
        self.info().map(|info| info.recursion_misses)
    }

    /// The kernel's run count and total run time of the program, counted only while
    /// `kernel.bpf_stats_enabled` is 1 (both 0 otherwise), if they can be read.
    pub fn runs(&self) -> Option<Runs> {
        self.info().map(|info| Runs { count: info.run_cnt, time_ns: info.run_time_ns })
    }

    fn info(&self) -> Option<bpf_prog_info> {
        // SAFETY: bpf_prog_info is plain integers; zero is a valid value.
        let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
        let mut attr = InfoByFd {
            bpf_fd: self.fd.as_raw_fd() as u32,
            info_len: std::mem::size_of::<bpf_prog_info>() as u32,
            info: &mut info as *mut bpf_prog_info as u64,
        };
        // SAFETY: the kernel writes at most info_len bytes into `info`.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_OBJ_GET_INFO_BY_FD,
                &mut attr as *mut InfoByFd,
                std::mem::size_of::<InfoByFd>(),
            )
        };
        (rc == 0).then_some(info)
    }
}

/// How often the kernel ran a program and for how long (`bpf_prog_info.run_cnt`,
/// `run_time_ns`).
#[derive(Debug, Clone, Copy)]
pub struct Runs {
    pub count: u64,
    pub time_ns: u64,
}
