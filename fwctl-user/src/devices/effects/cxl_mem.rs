//! The Command Effects Log of a CXL memdev, read through the kernel's mailbox interface
//! (`CXL_MEM_SEND_COMMAND` with the kernel's command ids, no RAW commands): Get Supported
//! Logs for the CEL's size, then Get Log in pieces that fit the mailbox payload.

use std::{fs::File, path::Path};

use fwctl_common::{
    abi::CXL_MEM_SEND_COMMAND,
    effects::{supported_log_size, CEL_UUID},
};

use super::{failure::ReadError, ioctl};

/// `struct cxl_send_command` (include/uapi/linux/cxl_mem.h), 48 bytes.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct CxlSendCommand {
    pub id: u32,
    pub flags: u32,
    pub raw_opcode: u16,
    pub raw_rsvd: u16,
    pub retval: u32,
    pub in_size: u32,
    pub in_rsvd: u32,
    pub in_payload: u64,
    /// `__s32`: the caller's buffer size in, the bytes the device returned out.
    pub out_size: i32,
    pub out_rsvd: u32,
    pub out_payload: u64,
}

/// `CXL_MEM_COMMAND_ID_GET_SUPPORTED_LOGS` (mailbox opcode 0x0400).
pub const GET_SUPPORTED_LOGS: u32 = 3;
/// `CXL_MEM_COMMAND_ID_GET_LOG` (mailbox opcode 0x0401).
pub const GET_LOG: u32 = 8;

/// The mailbox payload every device supports (CXL r3.x: at least 256 bytes).
const MIN_PAYLOAD: u32 = 256;
/// The largest payload the specification allows (1 MiB).
const MAX_PAYLOAD: u32 = 1 << 20;
/// A CEL lists each 16-bit opcode at most once in a 4-byte entry: anything beyond this
/// size cannot be valid entries.
const MAX_CEL_LEN: u32 = 0x1_0000 * 4;

/// The Get Log input payload: `uuid[16]; le32 offset; le32 length` (0x18 bytes, the
/// size the kernel requires for GET_LOG).
pub fn get_log_input(uuid: &[u8; 16], offset: u32, length: u32) -> [u8; 24] {
    let mut input = [0u8; 24];
    input[..16].copy_from_slice(uuid);
    input[16..20].copy_from_slice(&offset.to_le_bytes());
    input[20..].copy_from_slice(&length.to_le_bytes());
    input
}

/// The (offset, length) pieces of a log of `size` bytes, each at most `payload_max`.
pub fn log_pieces(size: u32, payload_max: u32) -> impl Iterator<Item = (u32, u32)> {
    let step = payload_max.max(1);
    (0..size).step_by(step as usize).map(move |offset| (offset, step.min(size - offset)))
}

/// Read the CEL through `send(command id, input, output) -> bytes returned`, with
/// mailbox payloads of at most `payload_max` bytes.
pub fn read_cel(
    mut send: impl FnMut(u32, &[u8], &mut [u8]) -> Result<usize, ReadError>,
    payload_max: u32,
    what: &str,
) -> Result<Vec<u8>, ReadError> {
    let payload_max = payload_max.clamp(MIN_PAYLOAD, MAX_PAYLOAD);
    let mut logs = vec![0u8; payload_max as usize];
    let n = send(GET_SUPPORTED_LOGS, &[], &mut logs)?;
    let size = supported_log_size(&logs[..n.min(logs.len())], &CEL_UUID).ok_or_else(|| {
        ReadError::other("no_cel", anyhow::anyhow!("{what}: Get Supported Logs does not list the CEL"))
    })?;
    let mut cel = Vec::new();
    for (offset, length) in log_pieces(size.min(MAX_CEL_LEN), payload_max) {
        let mut piece = vec![0u8; length as usize];
        let n = send(GET_LOG, &get_log_input(&CEL_UUID, offset, length), &mut piece)?.min(piece.len());
        cel.extend_from_slice(&piece[..n]);
        if n < piece.len() {
            // The device says the log ends here (the kernel reads its CEL the same way).
            break;
        }
    }
    Ok(cel)
}

/// One `CXL_MEM_SEND_COMMAND` on `file`: the bytes returned, or why it failed.
fn send(file: &File, id: u32, input: &[u8], output: &mut [u8], what: &str) -> Result<usize, ReadError> {
    let mut cmd = CxlSendCommand {
        id,
        in_size: input.len() as u32,
        in_payload: if input.is_empty() { 0 } else { input.as_ptr() as u64 },
        out_size: output.len() as i32,
        out_payload: output.as_mut_ptr() as u64,
        ..Default::default()
    };
    let name = if id == GET_LOG { "Get Log" } else { "Get Supported Logs" };
    // SAFETY: `cmd` is a cxl_send_command whose in/out payloads describe `input` and
    // `output`, both alive for the call.
    unsafe { ioctl::ioctl(file, CXL_MEM_SEND_COMMAND, &mut cmd) }
        .map_err(|e| ReadError::os(e, format!("{what}: {name} (CXL_MEM_SEND_COMMAND)")))?;
    if cmd.retval != 0 {
        return Err(ReadError::device_status(format!("{what}: {name}"), format!("0x{:04x}", cmd.retval)));
    }
    Ok(usize::try_from(cmd.out_size).unwrap_or(0))
}

/// The mailbox payload size of the memdev listed at `sysfs` (its `payload_max`).
fn payload_max(sysfs: &Path) -> u32 {
    std::fs::read_to_string(sysfs.join("payload_max"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(MIN_PAYLOAD)
}

/// Read the CEL of the memdev behind `node` (`/dev/cxl/memN`, listed at `sysfs`).
pub fn read_cel_from(node: &Path, sysfs: &Path) -> Result<Vec<u8>, ReadError> {
    let file = ioctl::open(node)?;
    let what = node.display().to_string();
    read_cel(|id, input, output| send(&file, id, input, output, &what), payload_max(sysfs), &what)
}

#[cfg(test)]
mod tests {
    use fwctl_common::catalog::cxl_send_command_opcode;

    use super::*;

    #[test]
    fn send_struct_has_the_uapi_layout_and_ids_map_to_the_opcodes() {
        assert_eq!(std::mem::size_of::<CxlSendCommand>(), 48);
        assert_eq!(std::mem::offset_of!(CxlSendCommand, retval), 12);
        assert_eq!(std::mem::offset_of!(CxlSendCommand, in_size), 16);
        assert_eq!(std::mem::offset_of!(CxlSendCommand, in_payload), 24);
        assert_eq!(std::mem::offset_of!(CxlSendCommand, out_size), 32);
        assert_eq!(std::mem::offset_of!(CxlSendCommand, out_payload), 40);
        assert_eq!(cxl_send_command_opcode(GET_SUPPORTED_LOGS), Some(0x0400));
        assert_eq!(cxl_send_command_opcode(GET_LOG), Some(0x0401));
    }

    #[test]
    fn pieces_cover_the_log_within_the_payload() {
        assert_eq!(log_pieces(600, 256).collect::<Vec<_>>(), [(0, 256), (256, 256), (512, 88)]);
        assert_eq!(log_pieces(256, 256).collect::<Vec<_>>(), [(0, 256)]);
        assert_eq!(log_pieces(0, 256).count(), 0);
        let input = get_log_input(&CEL_UUID, 512, 88);
        assert_eq!(&input[..16], &CEL_UUID);
        assert_eq!(u32::from_le_bytes(input[16..20].try_into().unwrap()), 512);
        assert_eq!(u32::from_le_bytes(input[20..].try_into().unwrap()), 88);
    }

    /// A device with a CEL of `entries` 4-byte entries and a `payload`-byte mailbox that
    /// answers Get Log from the log's bytes and records every request.
    struct FakeMemdev {
        cel: Vec<u8>,
        payload: usize,
        requests: Vec<(u32, u32, u32)>,
        list_cel: bool,
        /// The CEL size Get Supported Logs claims (default: the real one).
        claimed_size: Option<u32>,
    }

    impl FakeMemdev {
        fn new(entries: u16, payload: usize) -> Self {
            let cel = (0..entries)
                .flat_map(|i| [(0x4000 + i).to_le_bytes(), 0u16.to_le_bytes()].concat())
                .collect();
            Self { cel, payload, requests: Vec::new(), list_cel: true, claimed_size: None }
        }

        fn send(&mut self, id: u32, input: &[u8], output: &mut [u8]) -> Result<usize, ReadError> {
            match id {
                GET_SUPPORTED_LOGS => {
                    assert!(input.is_empty());
                    let mut out = vec![1, 0, 0, 0, 0, 0, 0, 0];
                    out.extend_from_slice(if self.list_cel { &CEL_UUID } else { &[0x11; 16] });
                    out.extend_from_slice(&self.claimed_size.unwrap_or(self.cel.len() as u32).to_le_bytes());
                    output[..out.len()].copy_from_slice(&out);
                    self.requests.push((id, 0, 0));
                    Ok(out.len())
                }
                GET_LOG => {
                    assert_eq!(input.len(), 24);
                    assert_eq!(&input[..16], &CEL_UUID);
                    let offset = u32::from_le_bytes(input[16..20].try_into().unwrap());
                    let length = u32::from_le_bytes(input[20..24].try_into().unwrap());
                    assert!(length as usize <= self.payload, "request larger than the mailbox");
                    self.requests.push((id, offset, length));
                    let end = (offset as usize + length as usize).min(self.cel.len());
                    let bytes = &self.cel[offset as usize..end];
                    output[..bytes.len()].copy_from_slice(bytes);
                    Ok(bytes.len())
                }
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn a_cel_larger_than_the_mailbox_is_read_in_pieces() {
        let mut dev = FakeMemdev::new(100, 256); // 400 bytes
        let cel = read_cel(|id, i, o| dev.send(id, i, o), 256, "mem0").unwrap();
        assert_eq!(cel, dev.cel);
        assert_eq!(dev.requests, [(GET_SUPPORTED_LOGS, 0, 0), (GET_LOG, 0, 256), (GET_LOG, 256, 144)]);
    }

    #[test]
    fn a_short_reply_ends_the_log_and_a_missing_cel_is_an_error() {
        let mut dev = FakeMemdev::new(5, 4096); // 20 bytes
        dev.claimed_size = Some(40);
        let cel = read_cel(|id, i, o| dev.send(id, i, o), 4096, "mem0").unwrap();
        assert_eq!(cel.len(), 20);
        assert_eq!(dev.requests.len(), 2);

        let mut no_cel = FakeMemdev::new(4, 256);
        no_cel.list_cel = false;
        let err = read_cel(|id, i, o| no_cel.send(id, i, o), 256, "/dev/cxl/mem0").unwrap_err();
        assert_eq!(err.reason, "no_cel");
        assert!(err.to_string().contains("/dev/cxl/mem0"));
    }

    #[test]
    fn payload_size_is_clamped_to_what_the_specification_allows() {
        let mut dev = FakeMemdev::new(100, 256);
        // A sysfs value below the minimum still reads in 256-byte pieces.
        read_cel(|id, i, o| dev.send(id, i, o), 16, "mem0").unwrap();
        assert_eq!(dev.requests[1], (GET_LOG, 0, 256));
    }
}
