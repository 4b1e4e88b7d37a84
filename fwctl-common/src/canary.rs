//! The self-test canary: harmless commands the agent sends through every attached hook
//! to prove that each program runs, because a program the kernel accepted may never run
//! (BPF LSM compiled in but not an active LSM) or may stop running.
//!
//! A canary is an ioctl with the number [`IOCTL`] on the agent's own canary node (a pty
//! it opens, entered in the device map with kind [`DEVICE_KIND`]); for io_uring it is an
//! NVMe admin Identify whose namespace id carries [`URING_NSID_TAG`]. Only the agent's
//! canaries count: from any other process they are ordinary, unwatched commands. A
//! program that sees one adds one to its slot of the `CANARY` map and never counts or
//! audits it as a command; no policy can name it. A canary whose argument is
//! [`deny_arg`]`(slot)` is refused (EPERM) by the deny-capable program in that slot, so
//! each program that can deny proves it, one at a time.
//!
//! Not for: deciding anything about real commands.

/// `_IO(0xF6, 0xC1)`: no driver of a pty implements it (the tty answers ENOTTY).
pub const IOCTL: u32 = 0xF6C1;

/// The canary node's kind in the device map (no passthrough kind uses it).
pub const DEVICE_KIND: u8 = 0xCA;

/// A canary every program lets through (and counts).
pub const PASS: u64 = 0;

const DENY_TAG: u64 = 0xCA4A_0000;

/// The argument of a canary the program in `slot` refuses.
pub const fn deny_arg(slot: u32) -> u64 {
    DENY_TAG | slot as u64
}

/// Whether the program in `slot` must refuse a canary with argument `arg`.
pub const fn refuses(arg: u64, slot: u32) -> bool {
    arg == deny_arg(slot)
}

/// io_uring canary: an NVMe admin Identify (opcode 0x06, CNS 1: the controller, which
/// ignores the namespace id) with namespace id `URING_NSID_TAG | slot`, refused by the
/// program in `slot`. If that program does not run, the Identify reaches the controller,
/// which is harmless, and the self-test sees a success where it expected EPERM.
pub const URING_NSID_TAG: u32 = 0xCA4A_0000;
pub const URING_OPCODE: u32 = 0x06;

/// The slot a uring canary's namespace id names, if it is one.
pub const fn uring_slot(nsid: u32) -> Option<u32> {
    if nsid & 0xFFFF_0000 == URING_NSID_TAG {
        Some(nsid & 0xFFFF)
    } else {
        None
    }
}

/// Each program's index in the `CANARY` map (`hook_set::Program::slot`).
pub mod slot {
    pub const LSM_FILE_IOCTL: u32 = 0;
    pub const LSM_FILE_IOCTL_COMPAT: u32 = 1;
    pub const LSM_URING_CMD: u32 = 2;
    pub const FEXIT_SYS_IOCTL: u32 = 3;
    pub const FEXIT_COMPAT_SYS_IOCTL: u32 = 4;
    pub const IO_URING_COMPLETE: u32 = 5;
    pub const SYS_ENTER_IOCTL: u32 = 6;
    pub const SYS_EXIT_IOCTL: u32 = 7;
    pub const FMODRET_FILE_IOCTL: u32 = 8;
    pub const FMODRET_FILE_IOCTL_BACKUP: [u32; 2] = [9, 10];
    pub const FMODRET_FILE_IOCTL_COMPAT: u32 = 11;
    pub const FMODRET_FILE_IOCTL_COMPAT_BACKUP: [u32; 2] = [12, 13];
    pub const FMODRET_URING_CMD: u32 = 14;
    pub const FMODRET_URING_CMD_BACKUP: [u32; 2] = [15, 16];
    pub const FEXIT_SYS_IOCTL_CHECKED: u32 = 17;
    pub const FEXIT_COMPAT_SYS_IOCTL_CHECKED: u32 = 18;
    /// Slots programs that see no canary get (companions).
    pub const NONE: u32 = u32::MAX;
}

/// Entries of the `CANARY` map.
pub const SLOTS: u32 = 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deny_canary_names_exactly_one_slot() {
        assert!(refuses(deny_arg(9), 9));
        assert!(!refuses(deny_arg(9), 10));
        assert!(!refuses(PASS, 0), "a pass canary is refused by nobody");
        assert_ne!(deny_arg(0), PASS);
    }

    #[test]
    fn uring_canaries_carry_their_slot_in_the_namespace_id() {
        assert_eq!(uring_slot(URING_NSID_TAG | 15), Some(15));
        assert_eq!(uring_slot(1), None);
        assert_eq!(uring_slot(0xFFFF_FFFF), None, "the broadcast namespace id is no canary");
    }

    #[test]
    fn the_canary_ioctl_is_no_passthrough_ioctl() {
        assert!(crate::abi::ioctl_spec(IOCTL).is_none());
    }
}
