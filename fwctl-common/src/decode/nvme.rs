//! NVMe passthrough: `struct nvme_passthru_cmd` (72 B) / `nvme_passthru_cmd64` (80 B), which
//! share their first 64 bytes, and the legacy `struct nvme_user_io` (48 B)
//! (include/uapi/linux/nvme_ioctl.h).

use super::{
    bytes::{le32, u8_at},
    ARG_MAX,
};
use crate::model::Command;

/// `opcode u8@0, flags@1, nsid u32@4, ..., data_len u32@36, cdw10 u32@40`.
#[inline(always)]
pub fn decode_passthru(arg: &[u8; ARG_MAX], command: &mut Command) {
    command.opcode = u8_at(arg, 0) as u32;
    command.nsid = le32(arg, 4);
    command.in_len = le32(arg, 36);
    command.cdw10 = le32(arg, 40);
}

/// `opcode u8@0, flags@1, control u16@2, nblocks u16@4` (read, write or compare only).
#[inline(always)]
pub fn decode_user_io(arg: &[u8; ARG_MAX], command: &mut Command) {
    command.opcode = u8_at(arg, 0) as u32;
}

#[cfg(test)]
mod tests {
    use crate::{
        abi::{
            ioctl_spec, NVME_IOCTL_ADMIN64_CMD, NVME_IOCTL_ADMIN_CMD, NVME_IOCTL_IO64_CMD, NVME_IOCTL_IO_CMD,
            NVME_IOCTL_SUBMIT_IO,
        },
        decode::{decode_arg, fixture::Arg, start},
        model::{class, decode_status, driver},
    };

    #[test]
    fn all_four_passthru_variants_decode_the_same_prefix() {
        let arg = Arg::new().u8(0, 0x06).le32(4, 0xffff_ffff).le32(36, 4096).le32(40, 1);
        for (cmd, expected_class) in [
            (NVME_IOCTL_ADMIN_CMD, class::NVME_ADMIN),
            (NVME_IOCTL_ADMIN64_CMD, class::NVME_ADMIN),
            (NVME_IOCTL_IO_CMD, class::NVME_IO),
            (NVME_IOCTL_IO64_CMD, class::NVME_IO),
        ] {
            let spec = ioctl_spec(cmd).unwrap();
            let mut command = start(spec, driver::NVME);
            assert!(decode_arg(spec, &arg.0, &mut command).is_none());
            assert_eq!(command.class, expected_class);
            assert_eq!(
                (command.opcode, command.nsid, command.in_len, command.cdw10),
                (0x06, 0xffff_ffff, 4096, 1)
            );
            assert_eq!(command.decode, decode_status::OK);
        }
    }

    #[test]
    fn submit_io_reads_the_opcode_byte() {
        let spec = ioctl_spec(NVME_IOCTL_SUBMIT_IO).unwrap();
        let mut command = start(spec, driver::NVME);
        decode_arg(spec, &Arg::new().u8(0, 0x02).0, &mut command);
        assert_eq!((command.opcode, command.class), (0x02, class::NVME_IO));
    }
}
