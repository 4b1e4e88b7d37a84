//! The trampoline hook set, for kernels with BPF trampolines where BPF LSM is compiled in
//! but not active (Ubuntu, Azure Linux, Flatcar): fmod_ret programs on the LSM framework's
//! own `security_file_ioctl`, `security_file_ioctl_compat` (>= 6.8) and
//! `security_uring_cmd` (>= 5.19) decide before the driver runs, and a non-zero return
//! refuses the command (the kernel skips the function and returns the program's value).
//! The verifier applies no return range to fmod_ret: every program returns 0 or -EPERM.
//!
//! Unlike LSM programs, these are tracing programs: the kernel skips one when the same
//! program is already running on that CPU (a task preempted inside it), and a skipped
//! fmod_ret lets the call through. So each hook gets one deciding program (decodes,
//! decides, counts, parks) and two backup deny programs that decide again and refuse (and
//! count and park the command themselves when the deciding program was skipped), each its
//! own program with its own recursion guard: a command passes unrefused only if all three
//! were skipped. What gets past all of them is caught by the result programs
//! (fexit on the syscalls), which decide any command nothing parked and mark a denied one
//! that reached the driver as a bypass (`inflight::finish_or_catch`).
//!
//! Not for: the decision bodies (`hook`); the BPF LSM set (`lsm`).

use core::ffi::c_void;

use aya_ebpf::{macros::fexit, programs::FExitContext};
use fwctl_common::{
    canary::slot,
    hook_set::id,
    lsm::EPERM,
    model::{stat, verdict},
};

use crate::{
    hook::{self, syscall_arg, syscall_ret, Decider},
    inflight,
    maps::{count_stat, offsets},
};

const fn decider(slot: u32) -> Decider {
    Decider { slot, hook: id::TRAMPOLINE, backup: false, last: false }
}

/// Backup `n` (1 or 2). The kernel runs a function's fmod_ret programs newest first and
/// the loader attaches the deciding program last (`HookSet::attach_rank`): the order
/// is deciding, backup 2, backup 1, so backup 1 ends the call.
const fn backup(slot: u32, n: u8) -> Decider {
    Decider { slot, hook: id::TRAMPOLINE, backup: true, last: n == 1 }
}

/// The return value of a deciding program: -EPERM for a deny, each refusal counted first
/// so every return stays a literal (see `lsm::gate`).
#[inline(always)]
fn refuse_if_denied(decision: Result<u8, i64>, refusal: u32) -> i64 {
    if let Ok(verdict::DENY) = decision {
        count_stat(refusal);
        return -EPERM;
    }
    0
}

/// `security_file_ioctl(struct file *file, unsigned int cmd, unsigned long arg)`.
#[no_mangle]
#[link_section = "fmod_ret/security_file_ioctl"]
pub fn fwctl_fmodret_file_ioctl(ctx: *mut c_void) -> i64 {
    refuse_if_denied(hook::file_ioctl(ctx, decider(slot::FMODRET_FILE_IOCTL)), stat::REFUSED_POLICY)
}

#[no_mangle]
#[link_section = "fmod_ret/security_file_ioctl"]
pub fn fwctl_fmodret_file_ioctl_backup1(ctx: *mut c_void) -> i64 {
    refuse_if_denied(
        hook::file_ioctl(ctx, backup(slot::FMODRET_FILE_IOCTL_BACKUP[0], 1)),
        stat::REFUSED_BACKUP,
    )
}

#[no_mangle]
#[link_section = "fmod_ret/security_file_ioctl"]
pub fn fwctl_fmodret_file_ioctl_backup2(ctx: *mut c_void) -> i64 {
    refuse_if_denied(
        hook::file_ioctl(ctx, backup(slot::FMODRET_FILE_IOCTL_BACKUP[1], 2)),
        stat::REFUSED_BACKUP,
    )
}

/// `security_file_ioctl_compat(...)`: the same for 32-bit callers (kernels >= 6.8).
#[no_mangle]
#[link_section = "fmod_ret/security_file_ioctl_compat"]
pub fn fwctl_fmodret_file_ioctl_compat(ctx: *mut c_void) -> i64 {
    refuse_if_denied(hook::file_ioctl(ctx, decider(slot::FMODRET_FILE_IOCTL_COMPAT)), stat::REFUSED_POLICY)
}

#[no_mangle]
#[link_section = "fmod_ret/security_file_ioctl_compat"]
pub fn fwctl_fmodret_file_ioctl_compat_backup1(ctx: *mut c_void) -> i64 {
    refuse_if_denied(
        hook::file_ioctl(ctx, backup(slot::FMODRET_FILE_IOCTL_COMPAT_BACKUP[0], 1)),
        stat::REFUSED_BACKUP,
    )
}

#[no_mangle]
#[link_section = "fmod_ret/security_file_ioctl_compat"]
pub fn fwctl_fmodret_file_ioctl_compat_backup2(ctx: *mut c_void) -> i64 {
    refuse_if_denied(
        hook::file_ioctl(ctx, backup(slot::FMODRET_FILE_IOCTL_COMPAT_BACKUP[1], 2)),
        stat::REFUSED_BACKUP,
    )
}

/// `security_uring_cmd(struct io_uring_cmd *ioucmd)` (kernels >= 5.19).
#[no_mangle]
#[link_section = "fmod_ret/security_uring_cmd"]
pub fn fwctl_fmodret_uring_cmd(ctx: *mut c_void) -> i64 {
    refuse_if_denied(hook::uring_cmd(ctx, decider(slot::FMODRET_URING_CMD)), stat::REFUSED_POLICY)
}

#[no_mangle]
#[link_section = "fmod_ret/security_uring_cmd"]
pub fn fwctl_fmodret_uring_cmd_backup1(ctx: *mut c_void) -> i64 {
    refuse_if_denied(hook::uring_cmd(ctx, backup(slot::FMODRET_URING_CMD_BACKUP[0], 1)), stat::REFUSED_BACKUP)
}

#[no_mangle]
#[link_section = "fmod_ret/security_uring_cmd"]
pub fn fwctl_fmodret_uring_cmd_backup2(ctx: *mut c_void) -> i64 {
    refuse_if_denied(hook::uring_cmd(ctx, backup(slot::FMODRET_URING_CMD_BACKUP[1], 2)), stat::REFUSED_BACKUP)
}

/// `__x64_sys_ioctl(const struct pt_regs *regs)`: fd in regs->di, cmd in regs->si, arg in
/// regs->dx. Completes the parked command, or catches one its deciding program missed.
#[fexit(function = "__x64_sys_ioctl")]
pub fn fwctl_fexit_sys_ioctl_checked(ctx: FExitContext) -> i32 {
    let off = offsets();
    if let (Some(cmd), Some(fd), Some(arg)) = (
        syscall_arg(&ctx, off.pt_regs_si),
        syscall_arg(&ctx, off.pt_regs_di),
        syscall_arg(&ctx, off.pt_regs_dx),
    ) {
        inflight::finish_or_catch(
            syscall_ret(&ctx),
            cmd as u32,
            fd,
            arg,
            &off,
            slot::FEXIT_SYS_IOCTL_CHECKED,
        );
    }
    0
}

/// The 32-bit entry point: fd in regs->bx, cmd in regs->cx, arg in regs->dx.
#[fexit(function = "__ia32_compat_sys_ioctl")]
pub fn fwctl_fexit_compat_sys_ioctl_checked(ctx: FExitContext) -> i32 {
    let off = offsets();
    if let (Some(cmd), Some(fd), Some(arg)) = (
        syscall_arg(&ctx, off.pt_regs_cx),
        syscall_arg(&ctx, off.pt_regs_bx),
        syscall_arg(&ctx, off.pt_regs_dx),
    ) {
        let (cmd, fd, arg) = (cmd as u32, fd as u32 as u64, arg as u32 as u64);
        inflight::finish_or_catch(
            syscall_ret(&ctx),
            cmd,
            fd,
            arg,
            &off,
            slot::FEXIT_COMPAT_SYS_IOCTL_CHECKED,
        );
    }
    0
}
