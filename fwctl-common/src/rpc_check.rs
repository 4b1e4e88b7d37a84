//! The kernel-copy check for fwctl RPCs: the LSM hook decides on the payload while it is
//! still in user memory; the driver's `*_fw_rpc` function later receives the kernel's own
//! copy (`memdup_user` in fwctl_cmd_rpc). A probe on that function decodes the copy with
//! the same decoder and compares it with what the LSM hook decided for the same task:
//! a difference means the payload changed in between (a TOCTOU race), or a command
//! reached the driver without a decision.
//!
//! Driver-generic: every fwctl driver's `fw_rpc` has the signature
//! `(struct fwctl_uctx *, enum fwctl_rpc_scope, void *in, size_t in_len, size_t *out_len)`,
//! and the payload layouts are the rows of `decode::fwctl::RPC_LAYOUTS`.
//!
//! The NVMe counterpart, which compares the submitted opcode, is [`crate::submission`].
//! Not for: the kprobes or the reaction to a change (the eBPF `rpc_check` and `toctou`).

use crate::{
    model::{driver, scope, Command},
    vocab::vocab,
};

vocab! {
    /// How a kernel copy compared with the decision.
    pub mod outcome: u32 {
        /// Same opcode, modifier, scope and feature as decided.
        MATCH = 0 => "match",
        /// The opcode changed after the decision.
        OPCODE_CHANGED = 1 => "opcode_changed",
        /// The opcode is the same; the modifier (mlx5 op_mod, pds endpoint) changed.
        OP_MOD_CHANGED = 2 => "op_mod_changed",
        /// The CXL feature UUID changed (Get/Set Feature).
        FEATURE_CHANGED = 3 => "feature_changed",
        /// The scope the kernel passes differs from the one decided on.
        SCOPE_CHANGED = 4 => "scope_changed",
        /// No decision is parked for this task (the LSM hook did not see the command, or its
        /// program was skipped).
        UNDECIDED = 5 => "undecided",
    }

    /// Outcomes per driver in the counter array (the ids are `0..COUNT`).
    pub const COUNT: u32 = ALL.len() as u32;
}

/// Compare the command decided at the LSM hook with the one decoded from the kernel's
/// copy of the payload (`kernel_scope`: the scope argument the driver received).
#[inline(always)]
pub fn compare(decided: &Command, kernel: &Command, kernel_scope: u32) -> u32 {
    if decided.opcode != kernel.opcode {
        return outcome::OPCODE_CHANGED;
    }
    if decided.op_mod != kernel.op_mod {
        return outcome::OP_MOD_CHANGED;
    }
    if decided.feature != kernel.feature {
        return outcome::FEATURE_CHANGED;
    }
    if decided.scope != scope::from_raw(kernel_scope) {
        return outcome::SCOPE_CHANGED;
    }
    outcome::MATCH
}

/// The fwctl drivers whose `fw_rpc` is checked (one kprobe each, `hook_set::COMPANIONS`).
pub const DRIVERS: [u8; 4] = [driver::CXL, driver::MLX5, driver::PDS, driver::BNXT];

/// Index of the per-CPU check counters: (driver, outcome).
pub const fn counter_index(driver: u8, outcome: u32) -> u32 {
    (driver as u32 & 7) * outcome::COUNT + outcome
}

/// Size of the check counter array.
pub const COUNTERS: u32 = 8 * outcome::COUNT;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        decode::{fwctl::decode_payload, PAYLOAD_HEAD},
        model::{class, driver, ioctl},
    };

    fn decoded(drv: u8, head: &[u8; PAYLOAD_HEAD], scope: u8) -> Command {
        let mut c = Command::new(ioctl::FWCTL_RPC, class::FWCTL, drv);
        c.scope = scope;
        decode_payload(head, &mut c);
        c
    }

    fn cxl(opcode: u32, uuid: u8) -> [u8; PAYLOAD_HEAD] {
        let mut head = [0u8; PAYLOAD_HEAD];
        head[..4].copy_from_slice(&opcode.to_le_bytes());
        head[16..32].copy_from_slice(&[uuid; 16]);
        head
    }

    #[test]
    fn an_unchanged_payload_matches() {
        let user = decoded(driver::CXL, &cxl(0x0502, 0xff), scope::DEBUG_WRITE);
        let kernel = decoded(driver::CXL, &cxl(0x0502, 0xff), scope::NONE);
        assert_eq!(compare(&user, &kernel, 2), outcome::MATCH);
    }

    #[test]
    fn a_flipped_opcode_feature_or_scope_is_caught() {
        let user = decoded(driver::CXL, &cxl(0x0501, 0xff), scope::DEBUG_WRITE);
        assert_eq!(compare(&user, &decoded(driver::CXL, &cxl(0x0502, 0xff), 0), 2), outcome::OPCODE_CHANGED);
        let set = decoded(driver::CXL, &cxl(0x0502, 0xff), scope::DEBUG_WRITE);
        assert_eq!(compare(&set, &decoded(driver::CXL, &cxl(0x0502, 0x11), 0), 2), outcome::FEATURE_CHANGED);
        assert_eq!(compare(&set, &decoded(driver::CXL, &cxl(0x0502, 0xff), 0), 3), outcome::SCOPE_CHANGED);
    }

    #[test]
    fn every_driver_layout_is_compared_by_the_same_code() {
        // mlx5: big-endian opcode @0, op_mod @6.
        let mut a = [0u8; PAYLOAD_HEAD];
        a[..2].copy_from_slice(&0x0100u16.to_be_bytes());
        let mut b = a;
        b[6..8].copy_from_slice(&1u16.to_be_bytes());
        let user = decoded(driver::MLX5, &a, scope::CONFIGURATION);
        assert_eq!(compare(&user, &decoded(driver::MLX5, &b, 0), 0), outcome::OP_MOD_CHANGED);
        // pds: op @0, endpoint @4.
        let mut p = [0u8; PAYLOAD_HEAD];
        p[..4].copy_from_slice(&7u32.to_le_bytes());
        let mut q = p;
        q[..4].copy_from_slice(&8u32.to_le_bytes());
        let user = decoded(driver::PDS, &p, scope::CONFIGURATION);
        assert_eq!(compare(&user, &decoded(driver::PDS, &q, 0), 0), outcome::OPCODE_CHANGED);
        // bnxt: req_type le16 @0.
        let user = decoded(driver::BNXT, &p, scope::CONFIGURATION);
        assert_eq!(compare(&user, &decoded(driver::BNXT, &p, 0), 0), outcome::MATCH);
    }

    #[test]
    fn counter_indexes_stay_in_range_for_every_driver() {
        for d in driver::ALL {
            for o in 0..outcome::COUNT {
                assert!(counter_index(d, o) < COUNTERS);
            }
        }
    }
}
