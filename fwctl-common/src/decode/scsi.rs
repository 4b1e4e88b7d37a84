//! SG_IO: `struct sg_io_hdr` (include/scsi/sg.h; `interface_id` 'S') with `cmd_len u8@8`
//! and `cmdp@24`, or `struct sg_io_v4` (include/uapi/linux/bsg.h; `guard` 'Q') with
//! `request_len u32@12` and `request@16`. The CDB's first byte is the SCSI opcode.

use super::{
    bytes::{le32, le64, u8_at},
    Follow, FollowKind, ARG_MAX, PAYLOAD_HEAD,
};
use crate::model::{decode_status, Command};

const SG_INTERFACE_ID: u32 = b'S' as u32;
const BSG_GUARD: u32 = b'Q' as u32;

#[inline(always)]
pub fn decode_sg_io(arg: &[u8; ARG_MAX], command: &mut Command) -> Option<Follow> {
    let (len, ptr) = match le32(arg, 0) {
        SG_INTERFACE_ID => (u8_at(arg, 8) as u32, le64(arg, 24)),
        BSG_GUARD => (le32(arg, 12), le64(arg, 16)),
        _ => {
            command.decode = decode_status::MALFORMED;
            return None;
        }
    };
    command.in_len = len;
    if len == 0 {
        command.decode = decode_status::TRUNCATED;
        return None;
    }
    Some(Follow::new(ptr, len, FollowKind::Cdb))
}

#[inline(always)]
pub fn decode_cdb(head: &[u8; PAYLOAD_HEAD], command: &mut Command) {
    command.opcode = u8_at(head, 0) as u32;
}

#[cfg(test)]
mod tests {
    use crate::{
        abi::{ioctl_spec, SG_IO},
        decode::{decode_arg, decode_payload, fixture::*, start, Follow, FollowKind},
        model::{decode_status, driver},
    };

    fn run(arg: Arg, cdb: Head) -> (crate::model::Command, Option<Follow>) {
        let spec = ioctl_spec(SG_IO).unwrap();
        let mut command = start(spec, driver::SG);
        let follow = decode_arg(spec, &arg.0, &mut command);
        if let Some(f) = follow {
            decode_payload(&f, &cdb.0, &mut command);
        }
        (command, follow)
    }

    #[test]
    fn v3_header_points_at_the_cdb() {
        let (command, follow) =
            run(Arg::new().le32(0, b'S' as u32).u8(8, 6).le64(24, 0x5000), Head::new().u8(0, 0x12));
        assert_eq!(follow, Some(Follow { ptr: 0x5000, len: 6, kind: FollowKind::Cdb }));
        assert_eq!((command.opcode, command.in_len, command.decode), (0x12, 6, decode_status::OK));
    }

    #[test]
    fn v4_header_points_at_the_request() {
        let (command, follow) =
            run(Arg::new().le32(0, b'Q' as u32).le32(12, 16).le64(16, 0x6000), Head::new().u8(0, 0x85));
        assert_eq!(follow.unwrap().ptr, 0x6000);
        assert_eq!(command.opcode, 0x85);
    }

    #[test]
    fn bad_guard_and_empty_cdb_are_decode_errors() {
        assert_eq!(run(Arg::new().le32(0, 0x1234), Head::new()).0.decode, decode_status::MALFORMED);
        let (command, follow) = run(Arg::new().le32(0, b'S' as u32), Head::new());
        assert_eq!((command.decode, follow), (decode_status::TRUNCATED, None));
    }
}
