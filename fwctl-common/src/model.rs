//! The data that crosses the kernel/user boundary: small integer vocabularies (class,
//! driver, ioctl, scope, decode status, verdict, result) with their stable text labels,
//! and the `#[repr(C)]` structs stored in maps or sent through the ring buffer.
//!
//! Vocabularies are plain `u8`/`u32` constants rather than Rust enums because the structs
//! must accept every bit pattern (aya `Pod`); each is declared once with [`vocab!`], whose
//! `label`/`from_label` turn ids into the strings metrics, the audit log and policy files
//! use, and back.
//!
//! Not for: behaviour. What the kernel decides with these values lives in the modules that
//! decide (`policy`, `parked`, `submission`, `lsm`); device numbers are in `device_number`.

use crate::vocab::vocab;

vocab! {
    /// Command classes: what kind of firmware command an ioctl carries.
    pub mod class: u8 {
        /// fwctl RPCs (`FWCTL_RPC`, `FWCTL_INFO`), whatever the driver.
        FWCTL = 1 => "fwctl",
        /// NVMe admin commands (admin queue).
        NVME_ADMIN = 2 => "nvme-admin",
        /// NVMe I/O commands (I/O queues).
        NVME_IO = 3 => "nvme-io",
        /// CXL memdev mailbox commands (`CXL_MEM_SEND_COMMAND`).
        CXL_MEM = 4 => "cxl-mem",
        /// SCSI commands (`SG_IO`).
        SCSI = 5 => "scsi",
    }
}

vocab! {
    /// Device kinds: which driver family owns a device node (decided by major:minor).
    pub mod device_kind: u8 {
        FWCTL = 1 => "fwctl",
        NVME = 2 => "nvme",
        CXL_MEM = 3 => "cxl-mem",
        SCSI = 4 => "scsi",
    }
}

vocab! {
    /// Drivers. The fwctl values equal `enum fwctl_device_type` (include/uapi/fwctl/fwctl.h)
    /// so FWCTL_INFO's `out_device_type` maps straight onto them.
    pub mod driver: u8 {
        UNKNOWN = 0 => "unknown",
        MLX5 = 1 => "mlx5",
        CXL = 2 => "cxl",
        BNXT = 3 => "bnxt",
        PDS = 4 => "pds",
        NVME = 16 => "nvme",
        /// SCSI upper-level drivers: the node type the caller used.
        SG = 17 => "sg",
        SD = 18 => "sd",
        BSG = 19 => "bsg",
        SR = 20 => "sr",
        ST = 21 => "st",
    }
}

/// Which ioctl carried the command (`abi::IOCTLS` rows, which also name them).
pub mod ioctl {
    pub const FWCTL_INFO: u8 = 1;
    pub const FWCTL_RPC: u8 = 2;
    pub const NVME_ID: u8 = 10;
    pub const NVME_ADMIN_CMD: u8 = 11;
    pub const NVME_SUBMIT_IO: u8 = 12;
    pub const NVME_IO_CMD: u8 = 13;
    pub const NVME_RESET: u8 = 14;
    pub const NVME_SUBSYS_RESET: u8 = 15;
    pub const NVME_RESCAN: u8 = 16;
    pub const NVME_ADMIN64_CMD: u8 = 17;
    pub const NVME_IO64_CMD: u8 = 18;
    pub const NVME_IO64_CMD_VEC: u8 = 19;
    pub const CXL_QUERY_COMMANDS: u8 = 30;
    pub const CXL_SEND_COMMAND: u8 = 31;
    pub const SG_IO: u8 = 40;
    /// io_uring `IORING_OP_URING_CMD` command ops (no ioctl syscall: `lsm/uring_cmd`).
    pub const NVME_URING_IO: u8 = 50;
    pub const NVME_URING_IO_VEC: u8 = 51;
    pub const NVME_URING_ADMIN: u8 = 52;
    pub const NVME_URING_ADMIN_VEC: u8 = 53;
}

vocab! {
    /// How a command reached the driver: an ioctl syscall or an io_uring command.
    pub mod channel: u8 {
        IOCTL = 1 => "ioctl",
        IO_URING = 2 => "io_uring",
    }

    /// The channel of an `ioctl::*` id.
    pub const fn of(ioctl: u8) -> u8 {
        if ioctl >= super::ioctl::NVME_URING_IO && ioctl <= super::ioctl::NVME_URING_ADMIN_VEC {
            IO_URING
        } else {
            IOCTL
        }
    }
}

vocab! {
    /// fwctl RPC scopes (`enum fwctl_rpc_scope`), plus markers for "not fwctl" and
    /// "a value the kernel will reject". Any other value is labelled `invalid` too.
    pub mod scope: u8, otherwise "invalid" {
        CONFIGURATION = 0 => "configuration",
        DEBUG_READ_ONLY = 1 => "debug-read-only",
        DEBUG_WRITE = 2 => "debug-write",
        DEBUG_WRITE_FULL = 3 => "debug-write-full",
        /// A scope the kernel refuses ([`from_raw`] of anything above `DEBUG_WRITE_FULL`).
        INVALID = 0xfe => "invalid",
        /// Not a fwctl RPC.
        NONE = 0xff => "none",
    }

    /// Clamp the raw u32 from `struct fwctl_rpc` so labels stay a fixed set.
    pub const fn from_raw(raw: u32) -> u8 {
        if raw <= DEBUG_WRITE_FULL as u32 {
            raw as u8
        } else {
            INVALID
        }
    }
}

vocab! {
    /// Why a command's payload could not be decoded (`OK`: it could).
    pub mod decode_status: u8 {
        OK = 0 => "ok",
        /// The ioctl argument pointer could not be read (bad or unmapped pointer).
        ARG_UNREADABLE = 1 => "arg-unreadable",
        /// The argument was read but the buffer it points at (fwctl `in`, SG_IO CDB) was not.
        PAYLOAD_UNREADABLE = 2 => "payload-unreadable",
        /// A declared length is shorter than the layout needs (the kernel will refuse it).
        TRUNCATED = 3 => "truncated",
        /// A field holds a value the kernel refuses (SG_IO guard, CXL command id...).
        MALFORMED = 4 => "malformed",
        /// The device's driver is unknown, so its payload layout is too.
        UNKNOWN_LAYOUT = 5 => "unknown-layout",
    }
}

vocab! {
    /// What the policy decided for a command (`policy::decide`). With no policy loaded
    /// every command is `ALLOW`.
    pub mod verdict: u8 {
        /// Let through, nothing to flag.
        ALLOW = 0 => "allow",
        /// Let through and flagged for review (policy action `audit`).
        AUDIT = 1 => "audit",
        /// Refused before the driver (enforce mode, on a hook that can refuse).
        DENY = 2 => "deny",
        /// The policy says deny, but the mode is audit or the hook cannot refuse: let
        /// through and flagged.
        WOULD_DENY = 3 => "would_deny",
    }
}

vocab! {
    /// Outcome of the ioctl as the caller saw it.
    pub mod result: u8 {
        OK = 0 => "ok",
        ERROR = 1 => "error",
        /// Counted when the command was seen; its return not (yet) observed. Every command is
        /// counted here first and moved to OK/ERROR when its syscall returns, so a skipped or
        /// missing exit hook never loses the count.
        UNOBSERVED = 2 => "unknown",
    }

    /// The outcome of a syscall that returned `ret`.
    pub const fn from_ret(ret: i64) -> u8 {
        if ret < 0 {
            ERROR
        } else {
            OK
        }
    }
}

vocab! {
    /// Indexes of the kernel-side failure counters (a per-CPU array): every drop is counted.
    pub mod stat: u32 {
        /// The ring buffer was full: the audit event was dropped (the counter was not).
        EVENTS_LOST = 0 => "events_lost",
        /// The in-flight table was full: the command is counted at entry, with no return value.
        PENDING_FULL = 1 => "pending_full",
        /// The counter map was full: the command went uncounted.
        COUNTER_MAP_FULL = 2 => "counter_map_full",
        /// The fd could not be resolved to a device (closed concurrently, unreadable task state).
        FD_UNRESOLVED = 3 => "fd_unresolved",
        /// Commands whose payload could not be decoded (also in the counters, by reason).
        DECODE_FAILED = 4 => "decode_failed",
        /// Refusals by the LSM hook: the policy said deny (enforce mode).
        REFUSED_POLICY = 5 => "policy",
        /// Refusals passed on from an earlier BPF LSM program on the same hook.
        REFUSED_EARLIER = 6 => "earlier_bpf_lsm",
        /// Refusals by a backup deny program of the trampoline set (its first program was
        /// skipped, or the payload changed between the two decisions).
        REFUSED_BACKUP = 7 => "backup",
    }

    /// Size of the counter array (the ids are its indexes, `0..COUNT`).
    pub const COUNT: u32 = ALL.len() as u32;
}

/// `opcode` value for ioctls that carry none, or whose opcode could not be read.
pub const OPCODE_NONE: u32 = u32::MAX;

/// A decoded passthrough command: what the decoders produce.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Command {
    /// Firmware opcode ([`OPCODE_NONE`] if absent or unreadable).
    pub opcode: u32,
    /// mlx5 `op_mod`, pds endpoint, CXL_MEM_SEND_COMMAND command id; 0 otherwise.
    pub op_mod: u32,
    /// NVMe namespace id.
    pub nsid: u32,
    /// NVMe command dword 10 (e.g. Get Log Page's log id, Identify's CNS).
    pub cdw10: u32,
    /// Payload length the caller declared (fwctl `in_len`, CXL `in.size`, NVMe
    /// `data_len`, SG_IO `cmd_len`).
    pub in_len: u32,
    pub ioctl: u8,
    pub class: u8,
    pub driver: u8,
    pub scope: u8,
    pub decode: u8,
    pub _pad: [u8; 3],
    /// CXL Get/Set Feature: the feature's UUID (per-feature effects, audit); else zero.
    pub feature: [u8; 16],
}

impl Command {
    pub const fn new(ioctl: u8, class: u8, driver: u8) -> Self {
        Self {
            opcode: OPCODE_NONE,
            op_mod: 0,
            nsid: 0,
            cdw10: 0,
            in_len: 0,
            ioctl,
            class,
            driver,
            scope: scope::NONE,
            decode: decode_status::OK,
            _pad: [0; 3],
            feature: [0; 16],
        }
    }
}

/// Key of the per-CPU command counter map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey {
    pub opcode: u32,
    pub class: u8,
    pub driver: u8,
    pub ioctl: u8,
    pub scope: u8,
    pub decode: u8,
    pub result: u8,
    pub verdict: u8,
    pub _pad: u8,
    /// The policy rule that decided (`policy::rule_id`).
    pub rule_id: u16,
    pub _pad2: [u8; 2],
}

impl CounterKey {
    pub const fn new(command: &Command, result: u8, verdict: u8, rule_id: u16) -> Self {
        Self {
            opcode: command.opcode,
            class: command.class,
            driver: command.driver,
            ioctl: command.ioctl,
            scope: command.scope,
            decode: command.decode,
            result,
            verdict,
            _pad: 0,
            rule_id,
            _pad2: [0; 2],
        }
    }
}

/// Flags in [`Event::flags`].
pub mod event_flag {
    /// The device node is a block device (otherwise a character device).
    pub const BLOCK_DEVICE: u32 = 1;
    /// No return value: the command's result was not seen (`parked::mark_unreturned`: it
    /// was evicted or stale, or the in-flight table was full). Its count stays `unobserved`.
    pub const NO_EXIT: u32 = 2;
    /// The payload that reached the driver differs from the one decided on (a TOCTOU
    /// race): `Event::kernel_opcode` is what the driver received.
    pub const TOCTOU: u32 = 4;
    /// The task was sent SIGKILL for it (`on_toctou: kill`).
    pub const KILLED: u32 = 8;
    /// A self-test canary parked between its hooks: counted in the `CANARY` map only,
    /// never as a command or an audit event.
    pub const CANARY: u32 = 16;
    /// The hook set's deciding program was skipped for this command (a task preempted
    /// inside it on the same CPU); the result hook decided it after the fact.
    pub const OBSERVER_SKIPPED: u32 = 32;
    /// The policy denies this command, yet it reached the driver: every deny program was
    /// skipped. Detected after the fact, like a TOCTOU race.
    pub const BYPASS: u32 = 64;
    /// Trampoline set: parked by the current call's deciding program (or a backup that
    /// took over), not yet seen by the call's last backup, which clears it. A parked
    /// command without it is stale to a backup (`parked::backup_takes_over`). Meaningless
    /// in the audit record.
    pub const FRESH: u32 = 128;
}

/// A passthrough command the hook let through, waiting for the driver to submit it
/// (value of the `DECIDED` map, by the submitting thread's pid_tgid): the first NVMe
/// submission that thread makes must carry the same opcode.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decided {
    /// Where the full event is parked (`INFLIGHT` key).
    pub key: u64,
    pub opcode: u32,
    pub class: u8,
    pub _pad: [u8; 3],
}

/// One audit event (ring buffer record). Times are CLOCK_MONOTONIC nanoseconds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Event {
    pub start_ns: u64,
    pub latency_ns: u64,
    pub cgroup_id: u64,
    pub ret: i64,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Kernel-internal dev_t (major << 20 | minor).
    pub rdev: u32,
    pub flags: u32,
    /// The raw ioctl number.
    pub cmd: u32,
    /// What the device declares about this command (`effects::declared_effects`); 0
    /// unless the active policy has effects rules.
    pub effects: u32,
    pub command: Command,
    pub comm: [u8; 16],
    pub verdict: u8,
    pub hook: u8,
    /// The policy rule that decided (`policy::rule_id`).
    pub rule_id: u16,
    /// With `event_flag::TOCTOU`: the opcode the driver received.
    pub kernel_opcode: u32,
    pub _pad1: [u8; 4],
}

/// What the agent knows about a device node (value of the device map).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `device_kind::*`
    pub kind: u8,
    /// `driver::*`
    pub driver: u8,
    pub _pad: [u8; 2],
}

/// Kernel struct offsets and tracepoint field offsets, resolved by the agent at load
/// time from the running kernel's BTF and tracefs (aya has no CO-RE for Rust programs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdt_max_fds: u32,
    pub fdt_fd: u32,
    pub file_inode: u32,
    pub inode_rdev: u32,
    pub inode_mode: u32,
    pub sys_enter_fd: u32,
    pub sys_enter_cmd: u32,
    pub sys_enter_arg: u32,
    pub sys_exit_ret: u32,
    /// `struct pt_regs` members holding ioctl's `cmd` for the 64-bit (si) and the 32-bit
    /// compat (cx) syscall entry, read by the fexit programs.
    pub pt_regs_si: u32,
    pub pt_regs_cx: u32,
    /// ... and its `fd` (di; bx for 32-bit) and `arg` (dx for both), read by the result
    /// programs of the trampoline set when its deciding program was skipped.
    pub pt_regs_di: u32,
    pub pt_regs_bx: u32,
    pub pt_regs_dx: u32,
    /// `task_struct.group_leader` and `.start_boottime`: with the tgid, they tell the
    /// agent apart from a later process that reuses its pid after a crash.
    pub task_group_leader: u32,
    pub task_start_boottime: u32,
    /// `nvme:nvme_setup_cmd` fields (tracefs), when the nvme module is loaded.
    pub nvme_setup_ctrl_id: u32,
    pub nvme_setup_qid: u32,
    pub nvme_setup_opcode: u32,
    pub nvme_setup_cid: u32,
    /// `nvme:nvme_complete_rq` fields.
    pub nvme_complete_ctrl_id: u32,
    pub nvme_complete_qid: u32,
    pub nvme_complete_cid: u32,
    pub nvme_complete_status: u32,
    /// `struct io_uring_cmd` members (0 when the kernel has no uring_cmd LSM hook): the
    /// file, the command op, and the pointer to the command payload; the payload starts
    /// `uring_payload_skip` bytes past that pointer (48 when it points at the whole SQE,
    /// 6.6+, 0 when it points at the SQE's cmd area, 6.1).
    pub uring_cmd_file: u32,
    pub uring_cmd_op: u32,
    pub uring_cmd_payload: u32,
    pub uring_payload_skip: u32,
    /// `io_uring:io_uring_complete` fields: the request (== its io_uring_cmd) and result.
    pub uring_complete_req: u32,
    pub uring_complete_res: u32,
    /// 1 when the io_uring offsets above were resolved (`file` is at offset 0, so the
    /// offsets themselves cannot say it).
    pub uring_resolved: u32,
}

vocab! {
    /// Who submitted a device mailbox command seen at the driver's own tracepoint.
    pub mod origin: u8 {
        /// The submitting task had a passthrough ioctl of the same class in flight.
        PASSTHROUGH = 1 => "passthrough",
        /// Anything else: the kernel's own commands (probe, health polling, ...).
        KERNEL = 2 => "kernel",
    }
}

/// Key of the mailbox-command counters (commands seen at the driver's tracepoints).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxKey {
    /// Device status of the completion (NVMe: status field without the phase bit).
    pub status: u16,
    pub opcode: u8,
    pub class: u8,
    pub origin: u8,
    pub _pad: [u8; 3],
}

/// A submitted mailbox command waiting for its completion.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailboxPending {
    pub opcode: u8,
    pub origin: u8,
    pub _pad: [u8; 6],
}

/// Key correlating an NVMe submission with its completion.
pub const fn nvme_command_key(ctrl_id: u32, qid: u32, cid: u16) -> u64 {
    ((ctrl_id as u64) << 32) | ((qid as u64 & 0xffff) << 16) | cid as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_sizes_are_stable() {
        assert_eq!(core::mem::size_of::<Command>(), 44);
        assert_eq!(core::mem::size_of::<CounterKey>(), 16);
        assert_eq!(core::mem::size_of::<Event>(), 136);
        assert_eq!(core::mem::size_of::<DeviceInfo>(), 4);
        assert_eq!(core::mem::size_of::<MailboxKey>(), 8);
        assert_eq!(core::mem::size_of::<MailboxPending>(), 8);
        assert_eq!(core::mem::size_of::<Decided>(), 16);
    }

    #[test]
    fn scope_is_clamped() {
        assert_eq!(scope::from_raw(3), scope::DEBUG_WRITE_FULL);
        assert_eq!(scope::from_raw(4), scope::INVALID);
        assert_eq!(scope::label(scope::from_raw(u32::MAX)), "invalid");
    }

    #[test]
    fn labels_round_trip() {
        for d in driver::ALL {
            assert_eq!(driver::from_label(driver::label(d)), Some(d));
        }
        assert_eq!(device_kind::from_label("fwctl"), Some(device_kind::FWCTL));
        assert_eq!(
            class::ALL,
            [class::FWCTL, class::NVME_ADMIN, class::NVME_IO, class::CXL_MEM, class::SCSI]
        );
        assert_eq!(result::from_ret(-1), result::ERROR);
        assert_eq!(result::from_ret(0), result::OK);
        assert_eq!(channel::of(ioctl::NVME_ADMIN_CMD), channel::IOCTL);
        assert_eq!(channel::of(ioctl::NVME_URING_ADMIN), channel::IO_URING);
        assert_eq!(channel::of(ioctl::NVME_URING_IO_VEC), channel::IO_URING);
    }

    /// The labels metrics and audit records already carry for values that are no id.
    #[test]
    fn values_that_are_no_id_keep_their_labels() {
        assert_eq!(class::label(0), "unknown");
        assert_eq!(driver::label(0x7f), "unknown");
        assert_eq!(verdict::label(9), "unknown");
        assert_eq!(result::label(result::UNOBSERVED), "unknown");
        assert_eq!(scope::label(7), "invalid");
        assert_eq!(stat::label(stat::COUNT), "unknown");
    }

    #[test]
    fn stat_ids_index_the_counter_array() {
        for (i, id) in stat::ALL.into_iter().enumerate() {
            assert_eq!(id, i as u32);
        }
        assert_eq!(stat::COUNT, 8);
    }
}

/// The one entry of the `META` map. The programs read `agent_tgid` (the agent's own
/// inventory and effects ioctls are not commands to audit); a restarted agent reads the
/// rest before it adopts the programs pinned by an earlier one.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentMeta {
    /// Which build of the programs, for which kernel layout and settings (the agent's
    /// `kernel::pins::build_id`).
    pub build_id: [u8; 32],
    /// The running agent (0 while none is attached to the maps).
    pub agent_tgid: u32,
    /// 1 once every program of the set is attached and its link pinned.
    pub complete: u32,
    /// The agent's start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub agent_start_ticks: u64,
}

/// Nanoseconds per clock tick as `/proc/PID/stat` counts them (USER_HZ is 100 on every
/// architecture's user ABI).
pub const NS_PER_USER_TICK: u64 = 10_000_000;

/// The `RULE_NAMES` map's value: a rule name, NUL-padded. Counters carry rule ids; the
/// names outlive the agent in this map so a restarted agent labels old counters right.
pub type RuleName = [u8; RULE_NAME_BYTES];

/// Longest rule name kept across restarts (longer names are cut at a char boundary).
pub const RULE_NAME_BYTES: usize = 64;
