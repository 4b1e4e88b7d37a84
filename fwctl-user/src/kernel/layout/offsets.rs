//! The kernel layout facts the eBPF programs need, resolved from the running kernel:
//! struct member offsets from BTF and tracepoint field offsets from tracefs.

use anyhow::{bail, Result};
use fwctl_common::model::KernelOffsets;

use super::{btf::KernelBtf, tracefs::EventFormat};

/// Resolve every offset; the error names the struct/member or event/field that is missing.
pub fn resolve(btf: &KernelBtf) -> Result<KernelOffsets> {
    let enter = EventFormat::read("syscalls", "sys_enter_ioctl")?;
    let exit = EventFormat::read("syscalls", "sys_exit_ioctl")?;
    let member = |s: &str, m: &str| btf.member_offset(s, m);
    let size = |s: &str, m: &str| btf.member_size(s, m);
    // The programs read these with fixed widths; refuse a kernel where they differ.
    for (s, m, want) in [
        ("task_struct", "files", 8),
        ("task_struct", "group_leader", 8),
        ("task_struct", "start_boottime", 8),
        ("files_struct", "fdt", 8),
        ("fdtable", "max_fds", 4),
        ("fdtable", "fd", 8),
        ("file", "f_inode", 8),
        ("inode", "i_rdev", 4),
        ("inode", "i_mode", 2),
    ] {
        let got = size(s, m)?;
        if got != want {
            bail!("BTF: {s}.{m} is {got} bytes, expected {want}");
        }
    }
    Ok(KernelOffsets {
        task_files: member("task_struct", "files")?,
        files_fdt: member("files_struct", "fdt")?,
        fdt_max_fds: member("fdtable", "max_fds")?,
        fdt_fd: member("fdtable", "fd")?,
        file_inode: member("file", "f_inode")?,
        inode_rdev: member("inode", "i_rdev")?,
        inode_mode: member("inode", "i_mode")?,
        sys_enter_fd: field(&enter, "fd", &[8])?,
        sys_enter_cmd: field(&enter, "cmd", &[8])?,
        sys_enter_arg: field(&enter, "arg", &[8])?,
        sys_exit_ret: field(&exit, "ret", &[8])?,
        pt_regs_si: member("pt_regs", "si")?,
        pt_regs_cx: member("pt_regs", "cx")?,
        pt_regs_di: member("pt_regs", "di")?,
        pt_regs_bx: member("pt_regs", "bx")?,
        pt_regs_dx: member("pt_regs", "dx")?,
        task_group_leader: member("task_struct", "group_leader")?,
        task_start_boottime: member("task_struct", "start_boottime")?,
        ..KernelOffsets::default()
    })
}

/// Fill in the NVMe driver tracepoints' field offsets. `Ok(false)` when the nvme module
/// (and so its tracepoints) is not loaded.
pub fn resolve_nvme(offsets: &mut KernelOffsets) -> Result<bool> {
    let (Ok(setup), Ok(complete)) =
        (EventFormat::read("nvme", "nvme_setup_cmd"), EventFormat::read("nvme", "nvme_complete_rq"))
    else {
        return Ok(false);
    };
    // The programs read ctrl_id/qid as 32-bit, opcode as 8-bit, and cid/status as 16-bit
    // values; a wider little-endian field holds the same value in its low bytes (6.1 and
    // 7.2 declare nvme_complete_rq's cid as int, others as u16).
    let at = field;
    offsets.nvme_setup_ctrl_id = at(&setup, "ctrl_id", &[4])?;
    offsets.nvme_setup_qid = at(&setup, "qid", &[4])?;
    offsets.nvme_setup_opcode = at(&setup, "opcode", &[1])?;
    offsets.nvme_setup_cid = at(&setup, "cid", &[2, 4])?;
    offsets.nvme_complete_ctrl_id = at(&complete, "ctrl_id", &[4])?;
    offsets.nvme_complete_qid = at(&complete, "qid", &[4])?;
    offsets.nvme_complete_cid = at(&complete, "cid", &[2, 4])?;
    offsets.nvme_complete_status = at(&complete, "status", &[2, 4])?;
    Ok(true)
}

/// Fill in what the io_uring passthrough hook needs. `Ok(false)` when this kernel has no
/// io_uring command support (no `struct io_uring_cmd`) or no completion tracepoint.
pub fn resolve_uring(btf: &KernelBtf, offsets: &mut KernelOffsets) -> Result<bool> {
    if btf.struct_size("io_uring_cmd").is_err() {
        return Ok(false);
    }
    let Ok(complete) = EventFormat::read("io_uring", "io_uring_complete") else {
        return Ok(false);
    };
    // 6.6+ keep a pointer to the whole SQE (the command area starts at its byte 48,
    // `offsetof(struct io_uring_sqe, cmd)` in the uAPI); 6.1 points at the area itself.
    let (payload, skip) = match btf.member_offset("io_uring_cmd", "sqe") {
        Ok(at) => (at, 48),
        Err(_) => (btf.member_offset("io_uring_cmd", "cmd")?, 0),
    };
    for (member, want) in [("file", 8), ("cmd_op", 4)] {
        let got = btf.member_size("io_uring_cmd", member)?;
        if got != want {
            bail!("BTF: io_uring_cmd.{member} is {got} bytes, expected {want}");
        }
    }
    // The completion tracepoint names the request; its io_uring_cmd must be at its start
    // (io_kiocb_to_cmd) for the two to be the same address.
    if btf.member_offset("io_kiocb", "cmd")? != 0 {
        bail!("BTF: io_kiocb.cmd is not the request's first member; cannot match completions");
    }
    offsets.uring_cmd_file = btf.member_offset("io_uring_cmd", "file")?;
    offsets.uring_cmd_op = btf.member_offset("io_uring_cmd", "cmd_op")?;
    offsets.uring_cmd_payload = payload;
    offsets.uring_payload_skip = skip;
    offsets.uring_complete_req = field(&complete, "req", &[8])?;
    offsets.uring_complete_res = field(&complete, "res", &[4])?;
    offsets.uring_resolved = 1;
    Ok(true)
}

/// Offset of tracepoint field `name`, refusing a width the programs do not read.
fn field(format: &EventFormat, name: &str, sizes: &[u32]) -> Result<u32> {
    let field = format.field(name)?;
    if !sizes.contains(&field.size) {
        bail!("tracefs: {}.{name} is {} bytes, expected one of {sizes:?}", format.name, field.size);
    }
    Ok(field.offset)
}
