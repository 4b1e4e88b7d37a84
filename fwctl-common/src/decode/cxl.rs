//! CXL memdev mailbox: `struct cxl_send_command` (include/uapi/linux/cxl_mem.h):
//! `u32 id@0, flags@4, raw.opcode u16@8, retval@12, in.size u32@16, in.payload u64@24, ...`.
//! Non-RAW command ids name a kernel-defined command whose opcode comes from the catalog.

use super::{
    bytes::{le16, le32},
    ARG_MAX,
};
use crate::{
    catalog::{cxl_send_command_opcode, CXL_MEM_COMMAND_ID_RAW},
    model::{decode_status, Command},
};

#[inline(always)]
pub fn decode_send_command(arg: &[u8; ARG_MAX], command: &mut Command) {
    let id = le32(arg, 0);
    command.op_mod = id;
    command.in_len = le32(arg, 16);
    if id == CXL_MEM_COMMAND_ID_RAW {
        command.opcode = le16(arg, 8) as u32;
        return;
    }
    match cxl_send_command_opcode(id) {
        Some(opcode) => command.opcode = opcode as u32,
        // The kernel answers ENOTTY/EINVAL for ids it does not define.
        None => command.decode = decode_status::MALFORMED,
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        abi::{ioctl_spec, CXL_MEM_SEND_COMMAND},
        decode::{decode_arg, fixture::Arg, start},
        model::{decode_status, driver, OPCODE_NONE},
    };

    fn run(arg: Arg) -> crate::model::Command {
        let spec = ioctl_spec(CXL_MEM_SEND_COMMAND).unwrap();
        let mut command = start(spec, driver::CXL);
        decode_arg(spec, &arg.0, &mut command);
        command
    }

    #[test]
    fn raw_command_uses_the_raw_opcode() {
        let command = run(Arg::new().le32(0, 2).le16(8, 0x4200).le32(16, 24));
        assert_eq!((command.opcode, command.op_mod, command.in_len), (0x4200, 2, 24));
        assert_eq!(command.decode, decode_status::OK);
    }

    #[test]
    fn kernel_command_ids_map_to_their_opcodes() {
        // CXL_MEM_COMMAND_ID_IDENTIFY = 1 -> CXL_MBOX_OP_IDENTIFY 0x4000;
        // GET_HEALTH_INFO = 7 -> 0x4200.
        assert_eq!(run(Arg::new().le32(0, 1)).opcode, 0x4000);
        assert_eq!(run(Arg::new().le32(0, 7)).opcode, 0x4200);
    }

    #[test]
    fn undefined_ids_are_malformed() {
        for id in [0u32, 10_000, u32::MAX] {
            let command = run(Arg::new().le32(0, id));
            assert_eq!((command.decode, command.opcode), (decode_status::MALFORMED, OPCODE_NONE), "id {id}");
        }
    }
}
