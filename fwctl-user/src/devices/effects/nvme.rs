//! The NVMe Commands Supported and Effects log page (log id 0x05), read from a controller
//! node with an admin Get Log Page through `NVME_IOCTL_ADMIN_CMD`.

use std::path::Path;

use fwctl_common::abi::NVME_IOCTL_ADMIN_CMD;

use super::{failure::ReadError, ioctl};

/// `struct nvme_passthru_cmd` (include/uapi/linux/nvme_ioctl.h), 72 bytes.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NvmePassthruCmd {
    pub opcode: u8,
    pub flags: u8,
    pub rsvd1: u16,
    pub nsid: u32,
    pub cdw2: u32,
    pub cdw3: u32,
    pub metadata: u64,
    pub addr: u64,
    pub metadata_len: u32,
    pub data_len: u32,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
    pub cdw13: u32,
    pub cdw14: u32,
    pub cdw15: u32,
    pub timeout_ms: u32,
    pub result: u32,
}

const GET_LOG_PAGE: u8 = 0x02;
const COMMANDS_SUPPORTED_AND_EFFECTS: u32 = 0x05;
/// The log is 4096 bytes: 256 admin and 256 I/O entries, then reserved space.
pub const EFFECTS_LOG_LEN: usize = 4096;
/// The log is controller-wide.
const NSID_ALL: u32 = 0xffff_ffff;

/// Get Log Page for the whole effects log into `buf` (CSI 0: the NVM command set's I/O
/// table).
pub fn get_effects_log_command(buf: &mut [u8; EFFECTS_LOG_LEN]) -> NvmePassthruCmd {
    // NUMDL: dwords to transfer, zero-based.
    let numdl = (EFFECTS_LOG_LEN / 4 - 1) as u32;
    NvmePassthruCmd {
        opcode: GET_LOG_PAGE,
        nsid: NSID_ALL,
        addr: buf.as_mut_ptr() as u64,
        data_len: EFFECTS_LOG_LEN as u32,
        cdw10: (numdl << 16) | COMMANDS_SUPPORTED_AND_EFFECTS,
        ..Default::default()
    }
}

/// Read the effects log of the controller behind `node` (`/dev/nvmeN`).
pub fn read_effects_log(node: &Path) -> Result<Vec<u8>, ReadError> {
    let what = || format!("{}: Get Log Page 0x05 (NVME_IOCTL_ADMIN_CMD)", node.display());
    let file = ioctl::open(node)?;
    let mut log = Box::new([0u8; EFFECTS_LOG_LEN]);
    let mut cmd = get_effects_log_command(&mut log);
    // SAFETY: `cmd` is a nvme_passthru_cmd whose addr/data_len describe `log`, which
    // outlives the call.
    let status = unsafe { ioctl::ioctl(&file, NVME_IOCTL_ADMIN_CMD, &mut cmd) }
        .map_err(|e| ReadError::os(e, what()))?;
    // A positive return value is the NVMe status of a command the controller failed.
    if status != 0 {
        return Err(ReadError::device_status(what(), format!("0x{status:04x}")));
    }
    Ok(log.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passthru_struct_has_the_uapi_layout() {
        assert_eq!(std::mem::size_of::<NvmePassthruCmd>(), 72);
        assert_eq!(std::mem::offset_of!(NvmePassthruCmd, nsid), 4);
        assert_eq!(std::mem::offset_of!(NvmePassthruCmd, addr), 24);
        assert_eq!(std::mem::offset_of!(NvmePassthruCmd, data_len), 36);
        assert_eq!(std::mem::offset_of!(NvmePassthruCmd, cdw10), 40);
        assert_eq!(std::mem::offset_of!(NvmePassthruCmd, result), 68);
    }

    #[test]
    fn get_log_page_asks_for_the_whole_effects_log() {
        let mut buf = [0u8; EFFECTS_LOG_LEN];
        let cmd = get_effects_log_command(&mut buf);
        assert_eq!(cmd.opcode, 0x02);
        assert_eq!(cmd.cdw10, (1023 << 16) | 0x05);
        assert_eq!((cmd.data_len, cmd.nsid), (4096, 0xffff_ffff));
        assert_eq!(cmd.addr, buf.as_ptr() as u64);
        assert_eq!((cmd.cdw11, cmd.cdw12, cmd.cdw13, cmd.cdw14), (0, 0, 0, 0), "offset 0, CSI 0 (NVM)");
    }
}
