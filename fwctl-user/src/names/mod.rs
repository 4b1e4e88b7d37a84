//! Every kernel-side id turned into the text people read: opcodes and their catalog
//! names, UUIDs, and rule names ([`rules`]). The metrics and the audit log both take
//! their words from here, so a command is named the same way in both.
//!
//! Not for: parsing names back into numbers (the policy front end does that,
//! `policy::names`).

use fwctl_common::{
    abi::spec_by_ioctl,
    catalog,
    model::{decode_status, OPCODE_NONE},
};

pub mod rules;

pub use rules::{RuleIds, RuleNameStore};

/// `0x%04x`, or `none` for commands without an opcode.
pub fn opcode(opcode: u32) -> String {
    if opcode == OPCODE_NONE {
        "none".to_string()
    } else {
        format!("0x{opcode:04x}")
    }
}

/// The catalog name, `unknown` for opcodes the catalog lacks, `undecodable` when the
/// payload could not be read, and the ioctl's name for ioctls that carry no opcode.
pub fn opcode_name(class: u8, drv: u8, ioctl: u8, opcode: u32, decode: u8) -> &'static str {
    if opcode == OPCODE_NONE {
        if decode != decode_status::OK {
            return "undecodable";
        }
        return spec_by_ioctl(ioctl).map_or("unknown", |s| s.name);
    }
    catalog::for_class(class, drv).and_then(|c| c.name(opcode)).unwrap_or("unknown")
}

/// A UUID in its canonical text form (`0da9c0b5-bf41-4b78-8f79-96b1623b3f17`), bytes in
/// wire order as CXL carries them.
pub fn uuid(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use fwctl_common::model::{class, driver, ioctl};

    #[test]
    fn names_come_from_the_class_catalog() {
        assert_eq!(opcode_name(class::NVME_ADMIN, driver::NVME, ioctl::NVME_ADMIN_CMD, 0x06, 0), "identify");
        assert_eq!(
            opcode_name(class::NVME_ADMIN, driver::NVME, ioctl::NVME_ADMIN_CMD, 0x80, 0),
            "format-nvm"
        );
        assert_eq!(opcode_name(class::FWCTL, driver::MLX5, ioctl::FWCTL_RPC, 0x100, 0), "QUERY_HCA_CAP");
        assert_eq!(opcode_name(class::FWCTL, driver::CXL, ioctl::FWCTL_RPC, 0x0502, 0), "set-feature");
        assert_eq!(opcode_name(class::CXL_MEM, driver::CXL, ioctl::CXL_SEND_COMMAND, 0x4000, 0), "identify");
        assert_eq!(opcode_name(class::SCSI, driver::SG, ioctl::SG_IO, 0x12, 0), "inquiry");
        assert_eq!(opcode_name(class::NVME_ADMIN, driver::NVME, ioctl::NVME_ADMIN_CMD, 0xc7, 0), "unknown");
        assert_eq!(opcode_name(class::FWCTL, driver::UNKNOWN, ioctl::FWCTL_RPC, 0x100, 0), "unknown");
    }

    #[test]
    fn commands_without_opcode() {
        assert_eq!(opcode_name(class::FWCTL, driver::MLX5, ioctl::FWCTL_INFO, OPCODE_NONE, 0), "FWCTL_INFO");
        assert_eq!(opcode_name(class::FWCTL, driver::MLX5, ioctl::FWCTL_RPC, OPCODE_NONE, 1), "undecodable");
        assert_eq!(opcode(OPCODE_NONE), "none");
        assert_eq!(opcode(0x6), "0x0006");
        assert_eq!(opcode(0x10_0000), "0x100000");
    }

    #[test]
    fn uuids_print_in_canonical_form() {
        assert_eq!(uuid(&fwctl_common::effects::CEL_UUID), "0da9c0b5-bf41-4b78-8f79-96b1623b3f17");
        assert_eq!(uuid(&[0xff; 16]), "ffffffff-ffff-ffff-ffff-ffffffffffff");
    }
}
