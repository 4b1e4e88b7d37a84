//! The passthrough ioctls fwctl-guard recognises: their numbers, which device kinds accept
//! them, which command class they carry, and how their argument is laid out.
//!
//! Numbers come from the uAPI headers (`include/uapi/fwctl/fwctl.h`,
//! `include/uapi/linux/nvme_ioctl.h`, `include/uapi/linux/cxl_mem.h`,
//! `include/scsi/sg.h`); the unit tests recompute each one from its `_IO*` definition.
//! This module is the single registration point: adding a channel means one row in
//! [`IOCTLS`] and, if its argument is new, one [`ArgLayout`] variant in `decode`.
//! Not for: reading the argument (`decode`) or naming opcodes (`catalog`).

use crate::model::{class, device_kind, ioctl};

/// How the ioctl argument must be read and decoded (see `decode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgLayout {
    /// No payload: the ioctl number is the whole command (FWCTL_INFO, NVME_IOCTL_RESET...).
    None,
    /// `struct fwctl_rpc`, then the driver's RPC payload behind `in`.
    FwctlRpc,
    /// `struct nvme_passthru_cmd` / `nvme_passthru_cmd64` (opcode byte first).
    NvmePassthru,
    /// `struct nvme_user_io` (legacy NVME_IOCTL_SUBMIT_IO; opcode byte first).
    NvmeUserIo,
    /// `struct cxl_send_command`.
    CxlSend,
    /// `struct sg_io_hdr` ('S') or `struct sg_io_v4` ('Q'), then the CDB.
    SgIo,
}

/// One recognised ioctl.
#[derive(Clone, Copy, Debug)]
pub struct IoctlSpec {
    pub cmd: u32,
    /// `model::ioctl::*`
    pub ioctl: u8,
    /// `model::class::*`: the command class this ioctl carries.
    pub class: u8,
    /// `model::device_kind::*`: the only device kind whose driver implements it.
    pub device_kind: u8,
    /// Bytes of the argument struct the kernel copies in (what we read, no more).
    pub arg_len: u8,
    pub layout: ArgLayout,
    pub name: &'static str,
    /// The argument lives in kernel memory (io_uring: the SQE's command area), not at a
    /// user pointer.
    pub arg_in_kernel: bool,
}

const fn ioc(dir: u32, ty: u32, nr: u32, size: u32) -> u32 {
    (dir << 30) | (size << 16) | (ty << 8) | nr
}
const IOC_NONE: u32 = 0;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

pub const FWCTL_INFO: u32 = ioc(IOC_NONE, 0x9a, 0, 0);
pub const FWCTL_RPC: u32 = ioc(IOC_NONE, 0x9a, 1, 0);
pub const NVME_IOCTL_ID: u32 = ioc(IOC_NONE, b'N' as u32, 0x40, 0);
pub const NVME_IOCTL_ADMIN_CMD: u32 = ioc(IOC_READ | IOC_WRITE, b'N' as u32, 0x41, 72);
pub const NVME_IOCTL_SUBMIT_IO: u32 = ioc(IOC_WRITE, b'N' as u32, 0x42, 48);
pub const NVME_IOCTL_IO_CMD: u32 = ioc(IOC_READ | IOC_WRITE, b'N' as u32, 0x43, 72);
pub const NVME_IOCTL_RESET: u32 = ioc(IOC_NONE, b'N' as u32, 0x44, 0);
pub const NVME_IOCTL_SUBSYS_RESET: u32 = ioc(IOC_NONE, b'N' as u32, 0x45, 0);
pub const NVME_IOCTL_RESCAN: u32 = ioc(IOC_NONE, b'N' as u32, 0x46, 0);
pub const NVME_IOCTL_ADMIN64_CMD: u32 = ioc(IOC_READ | IOC_WRITE, b'N' as u32, 0x47, 80);
pub const NVME_IOCTL_IO64_CMD: u32 = ioc(IOC_READ | IOC_WRITE, b'N' as u32, 0x48, 80);
pub const NVME_IOCTL_IO64_CMD_VEC: u32 = ioc(IOC_READ | IOC_WRITE, b'N' as u32, 0x49, 80);
pub const CXL_MEM_QUERY_COMMANDS: u32 = ioc(IOC_READ, 0xce, 1, 8);
pub const CXL_MEM_SEND_COMMAND: u32 = ioc(IOC_READ | IOC_WRITE, 0xce, 2, 48);
pub const SG_IO: u32 = 0x2285;
/// io_uring command ops (`struct nvme_uring_cmd`, 72 bytes, same prefix as
/// `nvme_passthru_cmd`), include/uapi/linux/nvme_ioctl.h.
pub const NVME_URING_CMD_IO: u32 = ioc(IOC_READ | IOC_WRITE, b'N' as u32, 0x80, 72);
pub const NVME_URING_CMD_IO_VEC: u32 = ioc(IOC_READ | IOC_WRITE, b'N' as u32, 0x81, 72);
pub const NVME_URING_CMD_ADMIN: u32 = ioc(IOC_READ | IOC_WRITE, b'N' as u32, 0x82, 72);
pub const NVME_URING_CMD_ADMIN_VEC: u32 = ioc(IOC_READ | IOC_WRITE, b'N' as u32, 0x83, 72);

/// Size of `struct fwctl_rpc` (the kernel accepts a larger `size` with a zero tail).
pub const FWCTL_RPC_LEN: u8 = 32;
/// Bytes of `sg_io_hdr`/`sg_io_v4` up to and including the CDB pointer.
pub const SG_IO_HEAD_LEN: u8 = 32;

/// Every recognised ioctl. Order is irrelevant; [`ioctl_spec`] is the lookup.
pub const IOCTLS: [IoctlSpec; 15] = [
    spec(FWCTL_INFO, ioctl::FWCTL_INFO, class::FWCTL, device_kind::FWCTL, 0, ArgLayout::None, "FWCTL_INFO"),
    spec(
        FWCTL_RPC,
        ioctl::FWCTL_RPC,
        class::FWCTL,
        device_kind::FWCTL,
        FWCTL_RPC_LEN,
        ArgLayout::FwctlRpc,
        "FWCTL_RPC",
    ),
    spec(
        NVME_IOCTL_ID,
        ioctl::NVME_ID,
        class::NVME_ADMIN,
        device_kind::NVME,
        0,
        ArgLayout::None,
        "NVME_IOCTL_ID",
    ),
    spec(
        NVME_IOCTL_ADMIN_CMD,
        ioctl::NVME_ADMIN_CMD,
        class::NVME_ADMIN,
        device_kind::NVME,
        72,
        ArgLayout::NvmePassthru,
        "NVME_IOCTL_ADMIN_CMD",
    ),
    spec(
        NVME_IOCTL_SUBMIT_IO,
        ioctl::NVME_SUBMIT_IO,
        class::NVME_IO,
        device_kind::NVME,
        48,
        ArgLayout::NvmeUserIo,
        "NVME_IOCTL_SUBMIT_IO",
    ),
    spec(
        NVME_IOCTL_IO_CMD,
        ioctl::NVME_IO_CMD,
        class::NVME_IO,
        device_kind::NVME,
        72,
        ArgLayout::NvmePassthru,
        "NVME_IOCTL_IO_CMD",
    ),
    spec(
        NVME_IOCTL_RESET,
        ioctl::NVME_RESET,
        class::NVME_ADMIN,
        device_kind::NVME,
        0,
        ArgLayout::None,
        "NVME_IOCTL_RESET",
    ),
    spec(
        NVME_IOCTL_SUBSYS_RESET,
        ioctl::NVME_SUBSYS_RESET,
        class::NVME_ADMIN,
        device_kind::NVME,
        0,
        ArgLayout::None,
        "NVME_IOCTL_SUBSYS_RESET",
    ),
    spec(
        NVME_IOCTL_RESCAN,
        ioctl::NVME_RESCAN,
        class::NVME_ADMIN,
        device_kind::NVME,
        0,
        ArgLayout::None,
        "NVME_IOCTL_RESCAN",
    ),
    spec(
        NVME_IOCTL_ADMIN64_CMD,
        ioctl::NVME_ADMIN64_CMD,
        class::NVME_ADMIN,
        device_kind::NVME,
        80,
        ArgLayout::NvmePassthru,
        "NVME_IOCTL_ADMIN64_CMD",
    ),
    spec(
        NVME_IOCTL_IO64_CMD,
        ioctl::NVME_IO64_CMD,
        class::NVME_IO,
        device_kind::NVME,
        80,
        ArgLayout::NvmePassthru,
        "NVME_IOCTL_IO64_CMD",
    ),
    spec(
        NVME_IOCTL_IO64_CMD_VEC,
        ioctl::NVME_IO64_CMD_VEC,
        class::NVME_IO,
        device_kind::NVME,
        80,
        ArgLayout::NvmePassthru,
        "NVME_IOCTL_IO64_CMD_VEC",
    ),
    spec(
        CXL_MEM_QUERY_COMMANDS,
        ioctl::CXL_QUERY_COMMANDS,
        class::CXL_MEM,
        device_kind::CXL_MEM,
        0,
        ArgLayout::None,
        "CXL_MEM_QUERY_COMMANDS",
    ),
    spec(
        CXL_MEM_SEND_COMMAND,
        ioctl::CXL_SEND_COMMAND,
        class::CXL_MEM,
        device_kind::CXL_MEM,
        48,
        ArgLayout::CxlSend,
        "CXL_MEM_SEND_COMMAND",
    ),
    spec(SG_IO, ioctl::SG_IO, class::SCSI, device_kind::SCSI, SG_IO_HEAD_LEN, ArgLayout::SgIo, "SG_IO"),
];

const fn spec(
    cmd: u32,
    ioctl: u8,
    class: u8,
    device_kind: u8,
    arg_len: u8,
    layout: ArgLayout,
    name: &'static str,
) -> IoctlSpec {
    IoctlSpec { cmd, ioctl, class, device_kind, arg_len, layout, name, arg_in_kernel: false }
}

/// An io_uring NVMe command op: its payload is read from the SQE in kernel memory.
const fn uring(cmd: u32, ioctl: u8, class: u8, name: &'static str) -> IoctlSpec {
    IoctlSpec {
        cmd,
        ioctl,
        class,
        device_kind: device_kind::NVME,
        arg_len: 72,
        layout: ArgLayout::NvmePassthru,
        name,
        arg_in_kernel: true,
    }
}

/// NVMe passthrough over io_uring (`IORING_OP_URING_CMD`, seen at `lsm/uring_cmd`). A
/// table of its own: these numbers are not ioctls, and an ioctl with one of them is not
/// a passthrough command.
pub const URING_CMDS: [IoctlSpec; 4] = [
    uring(NVME_URING_CMD_IO, ioctl::NVME_URING_IO, class::NVME_IO, "NVME_URING_CMD_IO"),
    uring(NVME_URING_CMD_IO_VEC, ioctl::NVME_URING_IO_VEC, class::NVME_IO, "NVME_URING_CMD_IO_VEC"),
    uring(NVME_URING_CMD_ADMIN, ioctl::NVME_URING_ADMIN, class::NVME_ADMIN, "NVME_URING_CMD_ADMIN"),
    uring(
        NVME_URING_CMD_ADMIN_VEC,
        ioctl::NVME_URING_ADMIN_VEC,
        class::NVME_ADMIN,
        "NVME_URING_CMD_ADMIN_VEC",
    ),
];

/// The spec for an io_uring command op, if it is an NVMe passthrough command.
#[inline(always)]
pub fn uring_cmd_spec(cmd_op: u32) -> Option<&'static IoctlSpec> {
    let index = match cmd_op {
        NVME_URING_CMD_IO => 0,
        NVME_URING_CMD_IO_VEC => 1,
        NVME_URING_CMD_ADMIN => 2,
        NVME_URING_CMD_ADMIN_VEC => 3,
        _ => return None,
    };
    URING_CMDS.get(index)
}

/// The spec for `cmd`, if it is a passthrough ioctl. This is the first thing the kernel
/// hook runs for every ioctl, so it is a `match` (a handful of compares), not a search.
#[inline(always)]
pub fn ioctl_spec(cmd: u32) -> Option<&'static IoctlSpec> {
    let index = match cmd {
        FWCTL_INFO => 0,
        FWCTL_RPC => 1,
        NVME_IOCTL_ID => 2,
        NVME_IOCTL_ADMIN_CMD => 3,
        NVME_IOCTL_SUBMIT_IO => 4,
        NVME_IOCTL_IO_CMD => 5,
        NVME_IOCTL_RESET => 6,
        NVME_IOCTL_SUBSYS_RESET => 7,
        NVME_IOCTL_RESCAN => 8,
        NVME_IOCTL_ADMIN64_CMD => 9,
        NVME_IOCTL_IO64_CMD => 10,
        NVME_IOCTL_IO64_CMD_VEC => 11,
        CXL_MEM_QUERY_COMMANDS => 12,
        CXL_MEM_SEND_COMMAND => 13,
        SG_IO => 14,
        _ => return None,
    };
    IOCTLS.get(index)
}

/// The spec for an `ioctl::*` id (userspace: naming events and metrics).
pub fn spec_by_ioctl(ioctl: u8) -> Option<&'static IoctlSpec> {
    IOCTLS.iter().chain(URING_CMDS.iter()).find(|s| s.ioctl == ioctl)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn numbers_match_the_uapi_headers() {
        // Literal values as printed by the C headers on x86-64.
        assert_eq!(FWCTL_INFO, 0x9a00);
        assert_eq!(FWCTL_RPC, 0x9a01);
        assert_eq!(NVME_IOCTL_ID, 0x4e40);
        assert_eq!(NVME_IOCTL_ADMIN_CMD, 0xc048_4e41);
        assert_eq!(NVME_IOCTL_SUBMIT_IO, 0x4030_4e42);
        assert_eq!(NVME_IOCTL_IO_CMD, 0xc048_4e43);
        assert_eq!(NVME_IOCTL_RESET, 0x4e44);
        assert_eq!(NVME_IOCTL_SUBSYS_RESET, 0x4e45);
        assert_eq!(NVME_IOCTL_RESCAN, 0x4e46);
        assert_eq!(NVME_IOCTL_ADMIN64_CMD, 0xc050_4e47);
        assert_eq!(NVME_IOCTL_IO64_CMD, 0xc050_4e48);
        assert_eq!(NVME_IOCTL_IO64_CMD_VEC, 0xc050_4e49);
        assert_eq!(CXL_MEM_QUERY_COMMANDS, 0x8008_ce01);
        assert_eq!(CXL_MEM_SEND_COMMAND, 0xc030_ce02);
        assert_eq!(SG_IO, 0x2285);
        assert_eq!(NVME_URING_CMD_IO, 0xc048_4e80);
        assert_eq!(NVME_URING_CMD_IO_VEC, 0xc048_4e81);
        assert_eq!(NVME_URING_CMD_ADMIN, 0xc048_4e82);
        assert_eq!(NVME_URING_CMD_ADMIN_VEC, 0xc048_4e83);
    }

    #[test]
    fn uring_ops_are_not_ioctls_and_ioctls_are_not_uring_ops() {
        for row in URING_CMDS.iter() {
            assert!(ioctl_spec(row.cmd).is_none(), "{}", row.name);
            assert_eq!(uring_cmd_spec(row.cmd).unwrap().cmd, row.cmd);
            assert_eq!(spec_by_ioctl(row.ioctl).unwrap().name, row.name);
            assert!(row.arg_in_kernel);
            assert_eq!(crate::model::channel::of(row.ioctl), crate::model::channel::IO_URING);
        }
        for row in IOCTLS.iter() {
            assert!(uring_cmd_spec(row.cmd).is_none(), "{}", row.name);
            assert!(!row.arg_in_kernel);
            assert_eq!(crate::model::channel::of(row.ioctl), crate::model::channel::IOCTL);
        }
    }

    #[test]
    fn lookup_finds_every_row_and_nothing_else() {
        for row in IOCTLS.iter() {
            let found = ioctl_spec(row.cmd).expect(row.name);
            assert_eq!(found.cmd, row.cmd, "{}", row.name);
            assert_eq!(spec_by_ioctl(row.ioctl).unwrap().cmd, row.cmd);
        }
        for unrelated in [0u32, 0x5401 /* TCGETS */, 0x541b /* FIONREAD */, 0x9a02, 0xc048_4e42] {
            assert!(ioctl_spec(unrelated).is_none(), "{unrelated:#x}");
        }
    }

    #[test]
    fn ioctl_ids_are_unique() {
        let all: std::vec::Vec<&IoctlSpec> = IOCTLS.iter().chain(URING_CMDS.iter()).collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.ioctl, b.ioctl);
                assert_ne!(a.cmd, b.cmd);
            }
        }
    }
}
