//! fwctl: `struct fwctl_rpc` (include/uapi/fwctl/fwctl.h) and the per-driver RPC payloads
//! behind its `in` pointer (include/uapi/fwctl/{mlx5,cxl,pds}.h, bnxt HWRM `struct input`).

use super::{
    bytes::{le32, le64, Field},
    Follow, FollowKind, ARG_MAX, PAYLOAD_HEAD,
};
use crate::{
    abi::FWCTL_RPC_LEN,
    effects::{CXL_GET_FEATURE, CXL_SET_FEATURE},
    model::{decode_status, driver, scope, Command},
};

/// Where a driver's RPC payload keeps its opcode and modifier.
#[derive(Clone, Copy, Debug)]
pub struct RpcLayout {
    pub driver: u8,
    /// Shortest `in_len` that holds the fields below (shorter: `truncated`).
    pub min_len: u32,
    pub opcode: Field,
    pub opcode_mask: u32,
    pub op_mod: Option<Field>,
    /// The payload is a CXL mailbox input whose Get/Set Feature carries the feature UUID
    /// at [`FEATURE_UUID_AT`].
    pub cxl_features: bool,
}

/// `struct fwctl_rpc_cxl`: 16-byte header, then `cxl_mbox_{get,set}_feat_in` starting
/// with the feature UUID. A constant, so the copy uses fixed stack offsets (6.1).
pub const FEATURE_UUID_AT: usize = 16;

/// One row per fwctl driver.
pub const RPC_LAYOUTS: [RpcLayout; 4] = [
    // mlx5: the raw big-endian mailbox; opcode BE16 @0, op_mod BE16 @6; the driver refuses
    // in_len below sizeof(general_obj_in_cmd_hdr) = 16.
    RpcLayout {
        driver: driver::MLX5,
        min_len: 16,
        opcode: Field::be(0, 2),
        opcode_mask: 0xffff,
        op_mod: Some(Field::be(6, 2)),
        cxl_features: false,
    },
    // CXL: struct fwctl_rpc_cxl, opcode u32 @0 (the kernel uses its low 16 bits).
    RpcLayout {
        driver: driver::CXL,
        min_len: 16,
        opcode: Field::le(0, 4),
        opcode_mask: 0xffff,
        op_mod: None,
        cxl_features: true,
    },
    // bnxt: HWRM struct input, req_type le16 @0.
    RpcLayout {
        driver: driver::BNXT,
        min_len: 16,
        opcode: Field::le(0, 2),
        opcode_mask: 0xffff,
        op_mod: None,
        cxl_features: false,
    },
    // pds: struct fwctl_rpc_pds, in.op u32 @0 (command in bits 15:0), in.ep u32 @4.
    RpcLayout {
        driver: driver::PDS,
        min_len: 8,
        opcode: Field::le(0, 4),
        opcode_mask: 0xffff,
        op_mod: Some(Field::le(4, 4)),
        cxl_features: false,
    },
];

#[inline(always)]
pub fn layout(driver: u8) -> Option<&'static RpcLayout> {
    // Indexed by the fwctl device type (1..=4), which is how `driver::*` numbers them.
    match driver {
        driver::MLX5 => RPC_LAYOUTS.first(),
        driver::CXL => RPC_LAYOUTS.get(1),
        driver::BNXT => RPC_LAYOUTS.get(2),
        driver::PDS => RPC_LAYOUTS.get(3),
        _ => None,
    }
}

/// Decode `struct fwctl_rpc`: `u32 size@0, scope@4, in_len@8, out_len@12, u64 in@16, out@24`.
#[inline(always)]
pub fn decode_rpc(arg: &[u8; ARG_MAX], command: &mut Command) -> Option<Follow> {
    let size = le32(arg, 0);
    command.scope = scope::from_raw(le32(arg, 4));
    let in_len = le32(arg, 8);
    command.in_len = in_len;
    if size < FWCTL_RPC_LEN as u32 {
        // copy_struct_from_user() refuses a struct shorter than the fields it needs.
        command.decode = decode_status::TRUNCATED;
        return None;
    }
    let Some(layout) = layout(command.driver) else {
        command.decode = decode_status::UNKNOWN_LAYOUT;
        return None;
    };
    if in_len < layout.min_len {
        command.decode = decode_status::TRUNCATED;
        return None;
    }
    Some(Follow::new(le64(arg, 16), in_len, FollowKind::FwctlRpc))
}

/// Decode the head of the RPC payload with the device driver's layout.
#[inline(always)]
pub fn decode_payload(head: &[u8; PAYLOAD_HEAD], command: &mut Command) {
    let Some(layout) = layout(command.driver) else {
        command.decode = decode_status::UNKNOWN_LAYOUT;
        return;
    };
    command.opcode = layout.opcode.read(head) & layout.opcode_mask;
    if let Some(op_mod) = layout.op_mod {
        command.op_mod = op_mod.read(head);
    }
    if layout.cxl_features && (command.opcode == CXL_GET_FEATURE || command.opcode == CXL_SET_FEATURE) {
        let mut i = 0;
        while i < 16 {
            command.feature[i] = head[FEATURE_UUID_AT + i];
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        abi::{ioctl_spec, FWCTL_RPC},
        decode::{decode_arg, decode_payload as decode_second, fixture::*, start},
        model::OPCODE_NONE,
    };

    fn rpc(scope: u32, in_len: u32, in_ptr: u64) -> Arg {
        Arg::new().le32(0, 32).le32(4, scope).le32(8, in_len).le32(12, 64).le64(16, in_ptr).le64(24, 0x2000)
    }

    fn run(driver: u8, arg: &Arg, head: &Head) -> (Command, Option<Follow>) {
        let spec = ioctl_spec(FWCTL_RPC).unwrap();
        let mut command = start(spec, driver);
        let follow = decode_arg(spec, &arg.0, &mut command);
        if let Some(f) = follow {
            decode_second(&f, &head.0, &mut command);
        }
        (command, follow)
    }

    #[test]
    fn every_layout_field_lies_in_the_decoded_window() {
        for layout in RPC_LAYOUTS {
            assert!(layout.opcode.fits_window(), "{layout:?}");
            assert!(layout.op_mod.is_none_or(|f| f.fits_window()), "{layout:?}");
            assert!(layout.min_len >= 8, "the window is read from at least 8 valid bytes: {layout:?}");
        }
    }

    #[test]
    fn mlx5_query_hca_cap_at_every_scope() {
        for s in 0..4u32 {
            let head = Head::new().be16(0, 0x100).be16(2, 0xbeef).be16(6, 0x1);
            let (command, follow) = run(driver::MLX5, &rpc(s, 16, 0x1000), &head);
            assert_eq!(follow, Some(Follow { ptr: 0x1000, len: 16, kind: FollowKind::FwctlRpc }));
            assert_eq!(command.opcode, 0x100);
            assert_eq!(command.op_mod, 1);
            assert_eq!(command.scope, s as u8);
            assert_eq!(command.decode, decode_status::OK);
        }
    }

    #[test]
    fn cxl_uses_the_low_16_bits_of_a_le32_opcode() {
        let head = Head::new().le32(0, 0xdead_0502);
        let (command, _) = run(driver::CXL, &rpc(2, 48, 0x1000), &head);
        assert_eq!(command.opcode, 0x0502);
        assert_eq!(command.scope, scope::DEBUG_WRITE);
    }

    #[test]
    fn cxl_feature_commands_carry_their_uuid() {
        let mut head = Head::new().le32(0, 0x0502);
        head.0[16..32].copy_from_slice(&[0xab; 16]);
        let (command, _) = run(driver::CXL, &rpc(2, 48, 0x1000), &head);
        assert_eq!(command.feature, [0xab; 16]);
        // Other opcodes, and other drivers' payloads, carry none.
        let mut head = Head::new().le32(0, 0x0500);
        head.0[16..32].copy_from_slice(&[0xab; 16]);
        assert_eq!(run(driver::CXL, &rpc(2, 48, 0x1000), &head).0.feature, [0; 16]);
        let mut head = Head::new().be16(0, 0x0502);
        head.0[16..32].copy_from_slice(&[0xab; 16]);
        assert_eq!(run(driver::MLX5, &rpc(2, 48, 0x1000), &head).0.feature, [0; 16]);
    }

    #[test]
    fn pds_and_bnxt_layouts() {
        let head = Head::new().le32(0, 0x0001_0007).le32(4, 3);
        let (command, _) = run(driver::PDS, &rpc(1, 48, 0x1000), &head);
        assert_eq!((command.opcode, command.op_mod), (0x0007, 3));
        let head = Head::new().le16(0, 0x00c0);
        let (command, _) = run(driver::BNXT, &rpc(0, 128, 0x1000), &head);
        assert_eq!(command.opcode, 0x00c0);
    }

    #[test]
    fn long_payloads_read_only_the_head() {
        let (_, follow) = run(driver::MLX5, &rpc(0, 2 << 20, 0x1000), &Head::new());
        assert_eq!(follow.unwrap().len, PAYLOAD_HEAD as u32);
    }

    #[test]
    fn short_struct_short_payload_and_unknown_driver_are_decode_errors() {
        let short = Arg::new().le32(0, 16).le32(8, 16).le64(16, 0x1000);
        let (command, follow) = run(driver::MLX5, &short, &Head::new());
        assert_eq!((command.decode, follow), (decode_status::TRUNCATED, None));

        let (command, follow) = run(driver::MLX5, &rpc(0, 15, 0x1000), &Head::new());
        assert_eq!((command.decode, follow, command.opcode), (decode_status::TRUNCATED, None, OPCODE_NONE));

        let (command, follow) = run(driver::UNKNOWN, &rpc(0, 64, 0x1000), &Head::new());
        assert_eq!((command.decode, follow), (decode_status::UNKNOWN_LAYOUT, None));
    }

    #[test]
    fn hostile_scope_is_clamped_and_garbage_never_panics() {
        let (command, _) = run(driver::MLX5, &rpc(0xffff_ffff, 16, 0), &Head::new());
        assert_eq!(command.scope, scope::INVALID);
        let garbage = crate::decode::fixture::Buf(core::array::from_fn(|i| (i as u8).wrapping_mul(151)));
        let head = crate::decode::fixture::Buf(core::array::from_fn(|i| (i as u8).wrapping_mul(37)));
        for d in driver::ALL {
            let _ = run(d, &garbage, &head);
        }
    }
}
