//! Per-program kernel statistics, for what aya does not expose: how often the kernel
//! skipped one of our programs because it was already running on that CPU (a task
//! preempted inside it). Each skip is a hook invocation that did not happen, so it is
//! exported as a metric rather than silently lost. Also each program's run count and run
//! time (the kernel's own BPF statistics), from the same read.

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

    /// The kernel's statistics for the program, read in one `BPF_OBJ_GET_INFO_BY_FD`, if
    /// they can be read.
    pub fn stats(&self) -> Option<Stats> {
        self.info().map(|info| Stats {
            recursion_misses: info.recursion_misses,
            run_count: info.run_cnt,
            run_time_ns: info.run_time_ns,
        })
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

/// A program's statistics: how often the kernel skipped it because it was already running
/// on that CPU (`recursion_misses`, Linux >= 5.12), and how often it ran and for how long
/// (`run_cnt`, `run_time_ns`: counted only while `kernel.bpf_stats_enabled` is 1, else 0).
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub recursion_misses: u64,
    pub run_count: u64,
    pub run_time_ns: u64,
}
