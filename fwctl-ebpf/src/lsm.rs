//! The BPF LSM hook set (kernels where `bpf` is an active LSM): `lsm/file_ioctl` and, on
//! kernels >= 6.8, `lsm/file_ioctl_compat` see the `struct file` directly (no fd-table
//! walk) before the driver runs; `lsm/uring_cmd` does the same for io_uring passthrough
//! commands; fexit on the ioctl syscalls completes the command with its return value.
//! No syscall tracepoint is attached, so unrelated syscalls pay nothing. LSM programs are
//! never skipped by the kernel's recursion guard.
//!
//! Not for: the shared decision bodies (`hook`), the other hook sets (`trampoline`,
//! `syscall_tp`), or how an earlier BPF LSM program's refusal is passed on
//! (`fwctl_common::lsm`).

use core::ffi::c_void;

use aya_ebpf::{
    macros::fexit,
    programs::{FExitContext, LsmContext},
};
use fwctl_common::{
    canary::slot,
    hook_set::id,
    lsm::{earlier_verdict, EarlierVerdict, EACCES, EPERM},
    model::{stat, verdict},
};

use crate::{
    hook::{self, syscall_arg, syscall_ret, Decider},
    inflight,
    maps::{count_stat, offsets},
};

// Written without aya's `#[lsm]` macro, whose wrapper returns i32: LLVM then builds a
// negative return value with its upper 32 bits zero (`r0 = 0xffffffff`), and the
// verifier, which checks all 64 bits of R0 against [-MAX_ERRNO, 0], refuses it. The
// section name is what tells aya (and the kernel) this is an LSM program.

const fn decider(slot: u32) -> Decider {
    Decider { slot, hook: id::LSM, backup: false, last: false }
}

/// `file_ioctl(struct file *file, unsigned int cmd, unsigned long arg)`; argument 3 is
/// the verdict of the BPF LSM programs before this one.
#[no_mangle]
#[link_section = "lsm/file_ioctl"]
pub fn fwctl_lsm_file_ioctl(ctx: *mut c_void) -> i64 {
    let previous: i64 = LsmContext::new(ctx).arg(3);
    gate(previous, || hook::file_ioctl(ctx, decider(slot::LSM_FILE_IOCTL)))
}

/// Same arguments as `file_ioctl`, for 32-bit callers (kernels >= 6.8).
#[no_mangle]
#[link_section = "lsm/file_ioctl_compat"]
pub fn fwctl_lsm_file_ioctl_compat(ctx: *mut c_void) -> i64 {
    let previous: i64 = LsmContext::new(ctx).arg(3);
    gate(previous, || hook::file_ioctl(ctx, decider(slot::LSM_FILE_IOCTL_COMPAT)))
}

/// `uring_cmd(struct io_uring_cmd *ioucmd)`; argument 1 is the earlier programs' verdict.
#[no_mangle]
#[link_section = "lsm/uring_cmd"]
pub fn fwctl_lsm_uring_cmd(ctx: *mut c_void) -> i64 {
    let previous: i64 = LsmContext::new(ctx).arg(1);
    gate(previous, || hook::uring_cmd(ctx, decider(slot::LSM_URING_CMD)))
}

/// An LSM program's return value: an earlier BPF LSM program's refusal (`previous`) stays
/// a refusal (`fwctl_common::lsm::earlier_verdict`) and the command is not looked at;
/// otherwise `decide` decodes, decides and parks it, and a deny refuses it.
///
/// Every refusal is counted before it returns, and every return is a literal. Besides
/// being worth counting, the count keeps each return a plain constant: without a side
/// effect LLVM folds the branches into `-(deny & 1)`, a BPF_NEG whose result verifiers
/// before 6.13 leave unbounded, and they refuse the program ("R0 has unknown scalar value").
#[inline(always)]
fn gate(previous: i64, decide: impl FnOnce() -> Result<u8, i64>) -> i64 {
    let earlier = earlier_verdict(previous);
    if earlier != EarlierVerdict::Allowed {
        count_stat(stat::REFUSED_EARLIER);
        if earlier == EarlierVerdict::DeniedEacces {
            return -EACCES;
        }
        return -EPERM;
    }
    if let Ok(verdict::DENY) = decide() {
        count_stat(stat::REFUSED_POLICY);
        return -EPERM;
    }
    0
}

/// `__x64_sys_ioctl(const struct pt_regs *regs)`: the ioctl's cmd is in regs->si.
#[fexit(function = "__x64_sys_ioctl")]
pub fn fwctl_fexit_sys_ioctl(ctx: FExitContext) -> i32 {
    let cmd = syscall_arg(&ctx, offsets().pt_regs_si).map(|c| c as u32);
    inflight::finish(syscall_ret(&ctx), cmd, slot::FEXIT_SYS_IOCTL);
    0
}

/// The 32-bit entry point, same shape; cmd is in regs->cx.
#[fexit(function = "__ia32_compat_sys_ioctl")]
pub fn fwctl_fexit_compat_sys_ioctl(ctx: FExitContext) -> i32 {
    let cmd = syscall_arg(&ctx, offsets().pt_regs_cx).map(|c| c as u32);
    inflight::finish(syscall_ret(&ctx), cmd, slot::FEXIT_COMPAT_SYS_IOCTL);
    0
}
