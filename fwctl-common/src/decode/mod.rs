//! Payload decoders: pure functions over fixed-size byte arrays.
//!
//! The kernel hook copies at most [`ARG_MAX`] bytes of the ioctl argument from user memory
//! and calls [`decode_arg`]; if that returns a [`Follow`], it copies at most
//! [`PAYLOAD_HEAD`] bytes from the pointer it names and calls [`decode_payload`]. Nothing
//! here touches memory other than the arrays it is given, nothing panics or loops, and
//! every malformed input ends in a `decode_status` rather than an error path, so the same
//! code is verifier-friendly and unit-tested on the host.
//!
//! One path per argument layout (`abi::ArgLayout`); per-driver differences inside a layout
//! are table rows (`fwctl::RPC_LAYOUTS`), not code.

mod bytes;
pub mod cxl;
#[cfg(test)]
mod fuzz;
pub mod fwctl;
pub mod nvme;
pub mod scsi;

use crate::{
    abi::{ArgLayout, IoctlSpec},
    model::Command,
};

/// Largest ioctl argument prefix read (`struct nvme_passthru_cmd64`).
pub const ARG_MAX: usize = 80;
/// Bytes of a second-level payload read (fwctl RPC `in` buffer, SCSI CDB).
pub const PAYLOAD_HEAD: usize = 64;

/// Which second-level payload to read, and how to decode it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowKind {
    /// A fwctl RPC payload in the layout of `fwctl::RPC_LAYOUTS[driver]`.
    FwctlRpc,
    /// A SCSI CDB (opcode = first byte).
    Cdb,
}

/// A user pointer the kernel will dereference next, and how many bytes of it to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Follow {
    pub ptr: u64,
    /// Bytes to read: the declared length, capped at [`PAYLOAD_HEAD`], never 0.
    pub len: u32,
    pub kind: FollowKind,
}

impl Follow {
    pub(crate) fn new(ptr: u64, declared_len: u32, kind: FollowKind) -> Self {
        let len = if declared_len > PAYLOAD_HEAD as u32 { PAYLOAD_HEAD as u32 } else { declared_len };
        Self { ptr, len, kind }
    }
}

/// A command with only the ioctl's identity filled in (nothing read yet).
pub fn start(spec: &IoctlSpec, driver: u8) -> Command {
    Command::new(spec.ioctl, spec.class, driver)
}

/// Decode the ioctl argument (`arg_len` bytes of `arg` are valid). Returns the
/// second-level payload to read, if the layout has one and the argument allows it.
#[inline(always)]
pub fn decode_arg(spec: &IoctlSpec, arg: &[u8; ARG_MAX], command: &mut Command) -> Option<Follow> {
    match spec.layout {
        ArgLayout::None => None,
        ArgLayout::FwctlRpc => fwctl::decode_rpc(arg, command),
        ArgLayout::NvmePassthru => {
            nvme::decode_passthru(arg, command);
            None
        }
        ArgLayout::NvmeUserIo => {
            nvme::decode_user_io(arg, command);
            None
        }
        ArgLayout::CxlSend => {
            cxl::decode_send_command(arg, command);
            None
        }
        ArgLayout::SgIo => scsi::decode_sg_io(arg, command),
    }
}

/// Decode the second-level payload; `head` holds `follow.len` valid bytes.
#[inline(always)]
pub fn decode_payload(follow: &Follow, head: &[u8; PAYLOAD_HEAD], command: &mut Command) {
    match follow.kind {
        FollowKind::FwctlRpc => fwctl::decode_payload(head, command),
        FollowKind::Cdb => scsi::decode_cdb(head, command),
    }
}

/// Record that the argument itself could not be read.
pub fn arg_unreadable(command: &mut Command) {
    command.decode = crate::model::decode_status::ARG_UNREADABLE;
}

/// Record that the second-level payload could not be read.
pub fn payload_unreadable(command: &mut Command) {
    command.decode = crate::model::decode_status::PAYLOAD_UNREADABLE;
}

#[cfg(test)]
pub(crate) mod fixture {
    use super::{ARG_MAX, PAYLOAD_HEAD};

    /// Byte-array builder for test fixtures laid out like the C structs.
    pub struct Buf<const N: usize>(pub [u8; N]);

    impl<const N: usize> Buf<N> {
        pub fn new() -> Self {
            Self([0; N])
        }
        pub fn u8(mut self, at: usize, v: u8) -> Self {
            self.0[at] = v;
            self
        }
        pub fn le16(mut self, at: usize, v: u16) -> Self {
            self.0[at..at + 2].copy_from_slice(&v.to_le_bytes());
            self
        }
        pub fn be16(mut self, at: usize, v: u16) -> Self {
            self.0[at..at + 2].copy_from_slice(&v.to_be_bytes());
            self
        }
        pub fn le32(mut self, at: usize, v: u32) -> Self {
            self.0[at..at + 4].copy_from_slice(&v.to_le_bytes());
            self
        }
        pub fn le64(mut self, at: usize, v: u64) -> Self {
            self.0[at..at + 8].copy_from_slice(&v.to_le_bytes());
            self
        }
    }

    pub type Arg = Buf<ARG_MAX>;
    pub type Head = Buf<PAYLOAD_HEAD>;
}
