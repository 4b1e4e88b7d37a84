//! The NVMe submission check (TOCTOU): the hook decides on the command while it is still
//! in user memory; the driver submits its own copy later. For an NVMe command the hook let
//! through, the eBPF side records a [`Decided`] for the deciding thread; the first NVMe
//! submission that thread makes (`nvme:nvme_setup_cmd`, which runs in the caller's task
//! context) is that command, and must carry the decided opcode. A different opcode means
//! the payload changed in between. Every other submission is the kernel's own.
//!
//! The fwctl counterpart, which compares the kernel's copy of an RPC payload, is
//! [`crate::rpc_check`]. Not for: map access or the reaction (counting, marking the audit
//! event, `on_toctou: kill`), which the eBPF `mailbox` and `toctou` modules do.

use crate::model::{class, decode_status, verdict, Command, Decided, OPCODE_NONE};

/// Whether the hook records `command` for the submission check: an NVMe command that will
/// reach the driver (not denied) with an opcode the hook could read.
#[inline(always)]
pub const fn expects_submission(command: &Command, verdict: u8) -> bool {
    (command.class == class::NVME_ADMIN || command.class == class::NVME_IO)
        && verdict != verdict::DENY
        && command.decode == decode_status::OK
        && command.opcode != OPCODE_NONE
}

/// The command class of a submission on NVMe queue `qid` (queue 0 is the admin queue).
#[inline(always)]
pub const fn queue_class(qid: i32) -> u8 {
    if qid == 0 {
        class::NVME_ADMIN
    } else {
        class::NVME_IO
    }
}

/// What a submission is, compared with the command decided for the submitting thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submission {
    /// Not the decided command (another queue class): the kernel's own. The decision
    /// stays recorded for the thread's next submission.
    Kernel,
    /// The decided command, as decided.
    Passthrough,
    /// The decided command with another opcode: its payload changed after the decision.
    Changed,
}

/// Compare a submission of `class` with `opcode` with the thread's `decided` command.
#[inline(always)]
pub const fn check(decided: &Decided, class: u8, opcode: u8) -> Submission {
    if decided.class != class {
        Submission::Kernel
    } else if decided.opcode != opcode as u32 {
        Submission::Changed
    } else {
        Submission::Passthrough
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{driver, ioctl};

    fn admin(opcode: u32) -> Command {
        Command { opcode, ..Command::new(ioctl::NVME_ADMIN_CMD, class::NVME_ADMIN, driver::NVME) }
    }

    #[test]
    fn nvme_commands_that_reach_the_driver_with_an_opcode_are_checked() {
        for v in [verdict::ALLOW, verdict::AUDIT, verdict::WOULD_DENY] {
            assert!(expects_submission(&admin(0x06), v));
        }
        let io = Command { opcode: 0x02, ..Command::new(ioctl::NVME_IO_CMD, class::NVME_IO, driver::NVME) };
        assert!(expects_submission(&io, verdict::ALLOW));
    }

    #[test]
    fn denied_undecodable_opcodeless_and_other_classes_are_not() {
        assert!(!expects_submission(&admin(0x80), verdict::DENY), "never reaches the driver");
        let unreadable = Command { decode: decode_status::ARG_UNREADABLE, ..admin(0x06) };
        assert!(!expects_submission(&unreadable, verdict::ALLOW));
        // NVME_IOCTL_RESET and friends carry no opcode.
        let reset = Command::new(ioctl::NVME_RESET, class::NVME_ADMIN, driver::NVME);
        assert!(!expects_submission(&reset, verdict::ALLOW));
        let cxl =
            Command { opcode: 0x4000, ..Command::new(ioctl::CXL_SEND_COMMAND, class::CXL_MEM, driver::CXL) };
        assert!(!expects_submission(&cxl, verdict::ALLOW));
        let fwctl = Command { opcode: 0x06, ..Command::new(ioctl::FWCTL_RPC, class::FWCTL, driver::CXL) };
        assert!(!expects_submission(&fwctl, verdict::ALLOW));
    }

    #[test]
    fn queue_zero_is_the_admin_queue() {
        assert_eq!(queue_class(0), class::NVME_ADMIN);
        assert_eq!(queue_class(1), class::NVME_IO);
        assert_eq!(queue_class(64), class::NVME_IO);
    }

    #[test]
    fn the_first_submission_of_the_decided_class_is_the_decided_command() {
        let identify = Decided { key: 7, opcode: 0x06, class: class::NVME_ADMIN, _pad: [0; 3] };
        assert_eq!(check(&identify, class::NVME_ADMIN, 0x06), Submission::Passthrough);
        assert_eq!(check(&identify, class::NVME_ADMIN, 0x80), Submission::Changed, "Identify became Format");
        assert_eq!(check(&identify, class::NVME_IO, 0x06), Submission::Kernel, "another queue");
        let write = Decided { key: 7, opcode: 0x01, class: class::NVME_IO, _pad: [0; 3] };
        assert_eq!(check(&write, class::NVME_IO, 0x01), Submission::Passthrough);
        assert_eq!(check(&write, class::NVME_ADMIN, 0x01), Submission::Kernel);
    }
}
