//! A command between the hook that decided it and the hook that sees its result. The
//! eBPF side keeps it ("parks" it) as its audit [`Event`] in the `INFLIGHT` map: under the
//! thread (`pid_tgid`) for an ioctl, under the request for an io_uring command. This
//! module decides how a parked command leaves: completed with its return value, or sent
//! without one ([`event_flag::NO_EXIT`]) when that value can no longer be seen.
//!
//! Why a command can be left without a result: the result hooks are tracing programs,
//! which the kernel skips when the same program is already running on the CPU (a task
//! preempted inside it, PREEMPT_LAZY kernels). The thread's next command then finds the
//! old one still parked. Every command is counted when it is seen (result `unobserved`),
//! so losing the return value never loses the count; the event is sent all the same.
//!
//! Not for: map access, counting or sending (the eBPF `inflight` and `account` modules).

use crate::model::{event_flag, Event};

/// What happens to a parked command when its thread's ioctl returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// This is its return: record the result and move its count to ok/error.
    Returned,
    /// Another ioctl is returning, so this command's own return was missed: send it
    /// without a result; its count stays `unobserved`.
    Stale,
}

/// The fate of a command parked with ioctl number `parked_cmd` when an ioctl returns.
/// `returning_cmd` is the returning ioctl's number where the hook can read it (fexit, from
/// the syscall's registers); without it (syscall exit tracepoint, io_uring completion,
/// which is matched by its request) the parked command is taken to be the one returning.
#[inline(always)]
pub const fn on_return(parked_cmd: u32, returning_cmd: Option<u32>) -> Exit {
    match returning_cmd {
        Some(cmd) if cmd != parked_cmd => Exit::Stale,
        _ => Exit::Returned,
    }
}

/// Whether a backup deny program of the trampoline set counts and parks the command
/// itself: when nothing is parked for it (`parked_flags` is `None`: the kernel skipped the
/// deciding program), or what is parked is an earlier command whose result program was
/// skipped (no [`event_flag::FRESH`]: the earlier call's last backup cleared it). Else the
/// deciding program (or the other backup) parked this very command and the backup only
/// decides again.
#[inline(always)]
pub const fn backup_takes_over(parked_flags: Option<u32>) -> bool {
    match parked_flags {
        None => true,
        Some(flags) => flags & event_flag::FRESH == 0,
    }
}

/// Record a returned command's result: its return value and its latency since the hook
/// saw it (`now_ns` on the same monotonic clock as `start_ns`).
#[inline(always)]
pub fn complete(event: &mut Event, ret: i64, now_ns: u64) {
    event.ret = ret;
    event.latency_ns = now_ns.saturating_sub(event.start_ns);
}

/// Mark a command that is sent without its result: it was still parked when its thread
/// parked the next one (evicted), another ioctl returned in its place ([`Exit::Stale`]),
/// or the in-flight table was full so it was never parked.
#[inline(always)]
pub fn mark_unreturned(event: &mut Event) {
    event.flags |= event_flag::NO_EXIT;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_takes_over_unless_this_call_already_parked_the_command() {
        assert!(backup_takes_over(None), "deciding program skipped");
        assert!(backup_takes_over(Some(event_flag::NO_EXIT)), "a stale command of an earlier call");
        assert!(!backup_takes_over(Some(event_flag::FRESH)), "parked by this call");
        assert!(!backup_takes_over(Some(event_flag::FRESH | event_flag::BLOCK_DEVICE)));
    }
    use crate::{
        abi::{NVME_IOCTL_ADMIN_CMD, NVME_IOCTL_IO_CMD},
        model::result,
    };

    #[test]
    fn a_return_of_the_same_ioctl_or_of_an_unknown_one_completes_the_parked_command() {
        assert_eq!(on_return(NVME_IOCTL_ADMIN_CMD, Some(NVME_IOCTL_ADMIN_CMD)), Exit::Returned);
        assert_eq!(on_return(NVME_IOCTL_ADMIN_CMD, None), Exit::Returned);
    }

    #[test]
    fn a_return_of_another_ioctl_leaves_the_parked_command_stale() {
        assert_eq!(on_return(NVME_IOCTL_ADMIN_CMD, Some(NVME_IOCTL_IO_CMD)), Exit::Stale);
        // Unrelated ioctls return through the same fexit program.
        assert_eq!(on_return(NVME_IOCTL_ADMIN_CMD, Some(0x5401)), Exit::Stale);
    }

    #[test]
    fn completing_records_the_result_and_latency_and_nothing_else() {
        let mut event = Event { start_ns: 1_000, flags: event_flag::BLOCK_DEVICE, ..Event::default() };
        complete(&mut event, -22, 1_750);
        assert_eq!((event.ret, event.latency_ns, event.flags), (-22, 750, event_flag::BLOCK_DEVICE));
        assert_eq!(result::from_ret(event.ret), result::ERROR);
        // A clock read before start (another CPU's timestamp) gives 0, not a wrapped value.
        complete(&mut event, 0, 999);
        assert_eq!((event.ret, event.latency_ns), (0, 0));
    }

    #[test]
    fn an_unreturned_command_is_flagged_and_keeps_its_other_flags_and_no_result() {
        let mut event = Event { flags: event_flag::TOCTOU | event_flag::BLOCK_DEVICE, ..Event::default() };
        mark_unreturned(&mut event);
        assert_eq!(event.flags, event_flag::TOCTOU | event_flag::BLOCK_DEVICE | event_flag::NO_EXIT);
        assert_eq!((event.ret, event.latency_ns), (0, 0));
        mark_unreturned(&mut event);
        assert_eq!(event.flags & event_flag::NO_EXIT, event_flag::NO_EXIT);
    }
}
