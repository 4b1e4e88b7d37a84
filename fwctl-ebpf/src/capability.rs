//! Capability programs: do-nothing programs `fwctl-guard probe` loads and attaches to
//! learn which program types this kernel accepts (their names are
//! `fwctl_common::object::capability_program`). Never attached by the agent itself, and
//! not a test that a hook runs: an LSM program attaches even where `bpf` is not an
//! active LSM and then never runs.

use aya_ebpf::{
    macros::{fentry, lsm, tracepoint},
    programs::{FEntryContext, LsmContext, TracePointContext},
};

#[tracepoint(category = "syscalls", name = "sys_enter_getppid")]
pub fn fwctl_probe_tracepoint(_ctx: TracePointContext) -> u32 {
    0
}

#[lsm(hook = "file_ioctl")]
pub fn fwctl_probe_lsm(_ctx: LsmContext) -> i32 {
    0
}

#[fentry(function = "security_file_ioctl")]
pub fn fwctl_probe_fentry(_ctx: FEntryContext) -> u32 {
    0
}
