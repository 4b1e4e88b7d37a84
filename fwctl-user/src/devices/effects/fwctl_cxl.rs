//! The features of a CXL fwctl node and their Set Feature Effects: CXL Get Supported
//! Features (opcode 0x0500) through `FWCTL_RPC` at configuration scope, paged by start
//! index until the device's whole list is read.

use std::{fs::File, path::Path};

use fwctl_common::{
    abi::FWCTL_RPC,
    effects::{supported_features, Feature, FEATURES_HEADER_LEN, FEATURE_ENTRY_LEN},
};

use super::{failure::ReadError, ioctl, table::CXL_GET_SUPPORTED_FEATURES};

/// `struct fwctl_rpc` (include/uapi/fwctl/fwctl.h), 32 bytes.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct FwctlRpc {
    pub size: u32,
    pub scope: u32,
    pub in_len: u32,
    pub out_len: u32,
    pub input: u64,
    pub output: u64,
}

/// `FWCTL_RPC_CONFIGURATION`: the lowest scope; reading the feature list needs no more.
const SCOPE_CONFIGURATION: u32 = 0;
/// `sizeof(struct fwctl_rpc_cxl)` (include/uapi/fwctl/cxl.h): a 16-byte header and the
/// largest of the Get/Set Feature inputs.
pub const RPC_CXL_LEN: usize = 48;
/// `struct cxl_mbox_get_sup_feats_in { le32 count; le16 start_idx; u8 reserved[2]; }`:
/// the kernel requires `op_size` to be exactly this.
const GET_SUP_FEATS_IN_LEN: u32 = 8;
/// `struct fwctl_rpc_cxl_out { u32 size; u32 retval; payload }`.
const RPC_CXL_OUT_HEADER: usize = 8;
/// Features asked for per request.
pub const FEATURES_PER_REQUEST: usize = 32;

/// The `fwctl_rpc_cxl` input asking for `entries` features from index `start`.
pub fn get_supported_features_input(start: u16, entries: usize) -> [u8; RPC_CXL_LEN] {
    let mut input = [0u8; RPC_CXL_LEN];
    input[0..4].copy_from_slice(&CXL_GET_SUPPORTED_FEATURES.to_le_bytes());
    input[8..12].copy_from_slice(&GET_SUP_FEATS_IN_LEN.to_le_bytes());
    // `count` is in bytes: the kernel returns count / sizeof(struct cxl_feat_entry) entries.
    input[16..20].copy_from_slice(&((entries * FEATURE_ENTRY_LEN) as u32).to_le_bytes());
    input[20..22].copy_from_slice(&start.to_le_bytes());
    input
}

/// Output buffer size for one request.
pub const OUT_LEN: usize =
    RPC_CXL_OUT_HEADER + FEATURES_HEADER_LEN + FEATURES_PER_REQUEST * FEATURE_ENTRY_LEN;

/// Read every feature through `rpc(input, output) -> bytes returned`.
pub fn read_features(
    mut rpc: impl FnMut(&[u8], &mut [u8]) -> Result<usize, ReadError>,
    what: &str,
) -> Result<Vec<Feature>, ReadError> {
    let what = format!("{what}: Get Supported Features (FWCTL_RPC)");
    let mut features = Vec::new();
    let mut start: u32 = 0;
    loop {
        let mut out = vec![0u8; OUT_LEN];
        let input = get_supported_features_input(start as u16, FEATURES_PER_REQUEST);
        let n = rpc(&input, &mut out)?.min(out.len());
        if n < RPC_CXL_OUT_HEADER + FEATURES_HEADER_LEN {
            return Err(ReadError::malformed(&what, format!("{n}-byte reply")));
        }
        let retval = u32::from_le_bytes([out[4], out[5], out[6], out[7]]);
        if retval != 0 {
            return Err(ReadError::device_status(&what, format!("0x{retval:04x}")));
        }
        let (returned, total, entries) = supported_features(&out[RPC_CXL_OUT_HEADER..n]);
        let before = features.len();
        features.extend(entries);
        let got = (features.len() - before) as u32;
        if got < u32::from(returned) {
            return Err(ReadError::malformed(&what, format!("{returned} entries announced, {got} returned")));
        }
        start += got;
        // No progress, or the whole list: done (also keeps a lying device from looping).
        if got == 0 || start >= u32::from(total) || start > u32::from(u16::MAX) {
            return Ok(features);
        }
    }
}

/// One `FWCTL_RPC` at configuration scope: the output length the driver reports.
fn rpc(file: &File, input: &[u8], output: &mut [u8], what: &str) -> Result<usize, ReadError> {
    let mut rpc = FwctlRpc {
        size: std::mem::size_of::<FwctlRpc>() as u32,
        scope: SCOPE_CONFIGURATION,
        in_len: input.len() as u32,
        out_len: output.len() as u32,
        input: input.as_ptr() as u64,
        output: output.as_mut_ptr() as u64,
    };
    // SAFETY: `rpc` is a fwctl_rpc whose in/out pointers and lengths describe `input` and
    // `output`, both alive for the call.
    unsafe { ioctl::ioctl(file, FWCTL_RPC, &mut rpc) }
        .map_err(|e| ReadError::os(e, format!("{what}: Get Supported Features (FWCTL_RPC)")))?;
    Ok(rpc.out_len as usize)
}

/// Read the features of the CXL fwctl node `node` (`/dev/fwctl/fwctlN`).
pub fn read_features_from(node: &Path) -> Result<Vec<Feature>, ReadError> {
    let file = ioctl::open(node)?;
    let what = node.display().to_string();
    read_features(|input, output| rpc(&file, input, output, &what), &what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_have_the_uapi_layout() {
        assert_eq!(std::mem::size_of::<FwctlRpc>(), 32);
        assert_eq!(std::mem::offset_of!(FwctlRpc, input), 16);
        let input = get_supported_features_input(7, 32);
        assert_eq!(u32::from_le_bytes(input[0..4].try_into().unwrap()), 0x0500);
        assert_eq!(u32::from_le_bytes(input[8..12].try_into().unwrap()), 8, "op_size");
        assert_eq!(u32::from_le_bytes(input[16..20].try_into().unwrap()), 32 * 48, "count in bytes");
        assert_eq!(u16::from_le_bytes(input[20..22].try_into().unwrap()), 7, "start_idx");
    }

    /// The kernel's cxlctl_get_supported_features over `total` features.
    fn kernel(total: u16, input: &[u8], output: &mut [u8]) -> Result<usize, ReadError> {
        let count = u32::from_le_bytes(input[16..20].try_into().unwrap()) as usize;
        let start = u16::from_le_bytes(input[20..22].try_into().unwrap());
        if start >= total {
            return Err(ReadError::os(std::io::Error::from_raw_os_error(libc::EINVAL), "fwctl0"));
        }
        let requested = (count / FEATURE_ENTRY_LEN).min(usize::from(total - start));
        let mut out = vec![0u8; 16];
        out[8..10].copy_from_slice(&(requested as u16).to_le_bytes());
        out[10..12].copy_from_slice(&total.to_le_bytes());
        for i in 0..requested {
            let mut e = vec![0u8; FEATURE_ENTRY_LEN];
            e[..2].copy_from_slice(&(start + i as u16).to_le_bytes()); // the index in the UUID
            e[28..30].copy_from_slice(&0x0201u16.to_le_bytes());
            out.extend(e);
        }
        let n = out.len().min(output.len());
        output[..n].copy_from_slice(&out[..n]);
        // The kernel reports its own output size (which has 8 bytes of slack).
        Ok(out.len() + 8)
    }

    #[test]
    fn pages_until_every_feature_is_read() {
        let mut calls = 0;
        let features = read_features(
            |i, o| {
                calls += 1;
                kernel(70, i, o)
            },
            "fwctl0",
        )
        .unwrap();
        assert_eq!(features.len(), 70);
        assert_eq!(calls, 3, "32 + 32 + 6");
        for (i, f) in features.iter().enumerate() {
            assert_eq!(u16::from_le_bytes([f.uuid[0], f.uuid[1]]) as usize, i);
        }
        let mut calls = 0;
        let exactly_one_page = read_features(
            |i, o| {
                calls += 1;
                kernel(32, i, o)
            },
            "fwctl0",
        )
        .unwrap();
        assert_eq!((exactly_one_page.len(), calls), (32, 1));
    }

    #[test]
    fn device_failures_and_short_replies_are_errors() {
        let failed = |_: &[u8], o: &mut [u8]| {
            o[4] = 0x15;
            Ok(16)
        };
        assert_eq!(read_features(failed, "fwctl0").unwrap_err().reason, "device_status");
        let short = |_: &[u8], _: &mut [u8]| Ok(10);
        assert_eq!(read_features(short, "fwctl0").unwrap_err().reason, "malformed");
        // A count the bytes do not back up.
        let liar = |_: &[u8], o: &mut [u8]| {
            o[8] = 3;
            o[10] = 3;
            Ok(16)
        };
        assert_eq!(read_features(liar, "fwctl0").unwrap_err().reason, "malformed");
        // No entries and nothing more promised: an empty list, not a loop.
        let empty = |_: &[u8], _: &mut [u8]| Ok(16);
        assert!(read_features(empty, "fwctl0").unwrap().is_empty());
    }
}
