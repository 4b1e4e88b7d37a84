//! Command effects as the device itself declares them: the CXL Command Effects Log
//! (CEL), the per-feature Set Feature Effects of CXL Get Supported Features, and the NVMe
//! Commands Supported and Effects log page (log id 0x05).
//!
//! Both vocabularies are folded into one `u32` word ([`effect`]) so a single policy rule
//! can judge CXL and NVMe devices alike: the CXL bits keep their CEL positions, the NVMe
//! bits get their own and also set the common bit they imply (LBCC is a data change,
//! NCC/NIC/CCC are configuration changes). The agent reads the declarations at start-up
//! and writes them into the kernel's `EFFECTS` map ([`EffectsKey`] -> word); the policy
//! looks them up per command with [`declared_effects`]. Parsers here are pure functions
//! over the bytes the device returned, so they are unit-tested with spec-layout fixtures.
//! Not for: issuing the commands that read the logs (the agent's `devices::effects`).

use crate::model::{class, driver, Command, OPCODE_NONE};

/// Bits of an effects word.
pub mod effect {
    // CXL r3.2 Table 8-87 (Command Effects Log entry; Set Feature Effects use the same).
    pub const CONFIG_CHANGE_COLD_RESET: u32 = 1 << 0;
    pub const CONFIG_CHANGE_IMMEDIATE: u32 = 1 << 1;
    pub const DATA_CHANGE_IMMEDIATE: u32 = 1 << 2;
    pub const POLICY_CHANGE_IMMEDIATE: u32 = 1 << 3;
    pub const LOG_CHANGE_IMMEDIATE: u32 = 1 << 4;
    pub const SECURITY_STATE_CHANGE: u32 = 1 << 5;
    pub const BACKGROUND: u32 = 1 << 6;
    pub const BACKGROUND_ABORT: u32 = 1 << 7;
    /// Valid only when the device sets bit 9 (CXL_CMD_EFFECTS_VALID).
    pub const CONFIG_CHANGE_CONVENTIONAL_RESET: u32 = 1 << 10;
    pub const CONFIG_CHANGE_CXL_RESET: u32 = 1 << 11;
    // NVMe 2.x Commands Supported and Effects data structure.
    pub const LOGICAL_BLOCK_CONTENT_CHANGE: u32 = 1 << 16;
    pub const NAMESPACE_CAPABILITY_CHANGE: u32 = 1 << 17;
    pub const NAMESPACE_INVENTORY_CHANGE: u32 = 1 << 18;
    pub const CONTROLLER_CAPABILITY_CHANGE: u32 = 1 << 19;
    /// CSE != 0: the command must run alone on its namespace or controller.
    pub const EXCLUSIVE_EXECUTION: u32 = 1 << 20;
    pub const UUID_SELECTION: u32 = 1 << 21;
    /// The device lists the opcode (CEL entry, NVMe CSUPP, feature in the supported list).
    pub const DECLARED: u32 = 1 << 30;
    /// The device's effects for this command's class were read: without it nothing is
    /// known, and neither effects nor `undeclared` rules can match.
    pub const KNOWN: u32 = 1 << 31;

    /// Every nameable bit (policy `effects:` names, audit log, `devices --effects`).
    pub const NAMES: [(&str, u32); 16] = [
        ("config-change-cold-reset", CONFIG_CHANGE_COLD_RESET),
        ("config-change-immediate", CONFIG_CHANGE_IMMEDIATE),
        ("data-change-immediate", DATA_CHANGE_IMMEDIATE),
        ("policy-change-immediate", POLICY_CHANGE_IMMEDIATE),
        ("log-change-immediate", LOG_CHANGE_IMMEDIATE),
        ("security-state-change", SECURITY_STATE_CHANGE),
        ("background", BACKGROUND),
        ("background-abort", BACKGROUND_ABORT),
        ("config-change-conventional-reset", CONFIG_CHANGE_CONVENTIONAL_RESET),
        ("config-change-cxl-reset", CONFIG_CHANGE_CXL_RESET),
        ("logical-block-content-change", LOGICAL_BLOCK_CONTENT_CHANGE),
        ("namespace-capability-change", NAMESPACE_CAPABILITY_CHANGE),
        ("namespace-inventory-change", NAMESPACE_INVENTORY_CHANGE),
        ("controller-capability-change", CONTROLLER_CAPABILITY_CHANGE),
        ("exclusive-execution", EXCLUSIVE_EXECUTION),
        ("uuid-selection", UUID_SELECTION),
    ];

    /// The NVMe specification's own abbreviations, accepted as names too.
    pub const ALIASES: [(&str, u32); 4] = [
        ("lbcc", LOGICAL_BLOCK_CONTENT_CHANGE),
        ("ncc", NAMESPACE_CAPABILITY_CHANGE),
        ("nic", NAMESPACE_INVENTORY_CHANGE),
        ("ccc", CONTROLLER_CAPABILITY_CHANGE),
    ];

    /// The bit a name or alias stands for.
    pub fn from_name(name: &str) -> Option<u32> {
        NAMES.iter().chain(ALIASES.iter()).find(|(n, _)| *n == name).map(|(_, bit)| *bit)
    }

    /// The names of the nameable bits set in `word`, in [`NAMES`] order.
    pub fn names(word: u32) -> impl Iterator<Item = &'static str> {
        NAMES.into_iter().filter(move |(_, bit)| word & bit != 0).map(|(name, _)| name)
    }
}

/// CXL_CMD_EFFECTS_VALID: bits 10 and 11 of a CXL effects field mean something.
const CXL_EFFECTS_VALID: u16 = 1 << 9;

/// A CXL CEL or Set Feature Effects field as an effects word (no state bits).
pub const fn from_cxl(raw: u16) -> u32 {
    let mut word = (raw & 0xff) as u32;
    if raw & CXL_EFFECTS_VALID != 0 {
        word |= (raw & 0x0c00) as u32;
    }
    word
}

/// An NVMe Commands Supported and Effects entry as an effects word; `None` when the
/// controller does not support the command (CSUPP clear).
pub const fn from_nvme(raw: u32) -> Option<u32> {
    const CSUPP: u32 = 1 << 0;
    const LBCC: u32 = 1 << 1;
    const NCC: u32 = 1 << 2;
    const NIC: u32 = 1 << 3;
    const CCC: u32 = 1 << 4;
    const CSE_MASK: u32 = 0b111 << 16;
    const UUID_SEL: u32 = 1 << 19;
    if raw & CSUPP == 0 {
        return None;
    }
    let mut word = 0;
    if raw & LBCC != 0 {
        word |= effect::LOGICAL_BLOCK_CONTENT_CHANGE | effect::DATA_CHANGE_IMMEDIATE;
    }
    if raw & NCC != 0 {
        word |= effect::NAMESPACE_CAPABILITY_CHANGE | effect::CONFIG_CHANGE_IMMEDIATE;
    }
    if raw & NIC != 0 {
        word |= effect::NAMESPACE_INVENTORY_CHANGE | effect::CONFIG_CHANGE_IMMEDIATE;
    }
    if raw & CCC != 0 {
        word |= effect::CONTROLLER_CAPABILITY_CHANGE | effect::CONFIG_CHANGE_IMMEDIATE;
    }
    if raw & CSE_MASK != 0 {
        word |= effect::EXCLUSIVE_EXECUTION;
    }
    if raw & UUID_SEL != 0 {
        word |= effect::UUID_SELECTION;
    }
    Some(word)
}

/// Key of the kernel's `EFFECTS` map: what one device node declares about one opcode of
/// one class (and, for CXL Set Feature, one feature). The entry with opcode
/// [`OPCODE_NONE`] and no feature marks "this node's effects for this class were read".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EffectsKey {
    /// `device_number::device_key(block, major, minor)` of the node.
    pub device: u64,
    pub opcode: u32,
    pub class: u8,
    pub _pad: [u8; 3],
    /// Feature UUID for CXL Set Feature; zero otherwise.
    pub feature: [u8; 16],
}

/// CXL Set Feature: its effects are the feature's own, from Get Supported Features.
pub const CXL_SET_FEATURE: u32 = 0x0502;
/// CXL Get Feature / Set Feature carry the feature UUID right after the RPC header.
pub const CXL_GET_FEATURE: u32 = 0x0501;

impl EffectsKey {
    pub const fn new(device: u64, class: u8, opcode: u32, feature: [u8; 16]) -> Self {
        Self { device, opcode, class, _pad: [0; 3], feature }
    }

    /// The "table read" marker of `class` on `device`.
    pub const fn table(device: u64, class: u8) -> Self {
        Self::new(device, class, OPCODE_NONE, [0; 16])
    }

    /// The entry that declares `command` on `device`.
    #[inline(always)]
    pub fn of(device: u64, command: &Command) -> Self {
        let per_feature = command.class == class::FWCTL
            && command.driver == driver::CXL
            && command.opcode == CXL_SET_FEATURE;
        Self::new(device, command.class, command.opcode, if per_feature { command.feature } else { [0; 16] })
    }
}

/// Where declared effects are looked up (the kernel map, or a table in userspace).
pub trait EffectsSource {
    /// The effects word stored for `key` (without [`effect::DECLARED`]/[`effect::KNOWN`]).
    fn stored_effects(&self, key: &EffectsKey) -> Option<u32>;
}

/// What `device` declares about `command`: the stored word plus [`effect::DECLARED`] and
/// [`effect::KNOWN`]; `KNOWN` alone for an opcode the device does not list; 0 when its
/// effects were never read (or the command has no opcode).
#[inline(always)]
pub fn declared_effects<S: EffectsSource + ?Sized>(source: &S, device: u64, command: &Command) -> u32 {
    if command.opcode == OPCODE_NONE {
        return 0;
    }
    if let Some(word) = source.stored_effects(&EffectsKey::of(device, command)) {
        return word | effect::DECLARED | effect::KNOWN;
    }
    if source.stored_effects(&EffectsKey::table(device, command.class)).is_some() {
        return effect::KNOWN;
    }
    0
}

/// The CXL Command Effects Log's UUID (Get Supported Logs / Get Log).
pub const CEL_UUID: [u8; 16] =
    [0x0d, 0xa9, 0xc0, 0xb5, 0xbf, 0x41, 0x4b, 0x78, 0x8f, 0x79, 0x96, 0xb1, 0x62, 0x3b, 0x3f, 0x17];

fn le16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

/// Entries of a CEL (`struct cxl_cel_entry { le16 opcode; le16 effect; }`): (opcode, word).
pub fn cel_entries(log: &[u8]) -> impl Iterator<Item = (u16, u32)> + '_ {
    log.chunks_exact(4).map(|e| (le16(e, 0), from_cxl(le16(e, 2))))
}

/// Get Supported Logs output (`le16 entries; u8 rsvd[6]; {uuid[16], le32 size}[]`): the
/// size of the log with `uuid`, if listed (entries beyond the bytes returned are ignored).
pub fn supported_log_size(out: &[u8], uuid: &[u8; 16]) -> Option<u32> {
    let entries = le16(out, 0) as usize;
    out.get(8..)?.chunks_exact(20).take(entries).find(|e| &e[..16] == uuid).map(|e| le32(e, 16))
}

/// The NVMe Commands Supported and Effects log (4096 bytes: `le32 acs[256]`, `le32
/// iocs[256]`, reserved): every supported command as (class, opcode, word).
pub fn nvme_effects_log(log: &[u8]) -> impl Iterator<Item = (u8, u8, u32)> + '_ {
    let admin = log.chunks_exact(4).take(256).enumerate().map(|(op, e)| (class::NVME_ADMIN, op, e));
    let io = log.chunks_exact(4).skip(256).take(256).enumerate().map(|(op, e)| (class::NVME_IO, op, e));
    admin.chain(io).filter_map(|(class, op, e)| from_nvme(le32(e, 0)).map(|word| (class, op as u8, word)))
}

/// One entry of CXL Get Supported Features (`struct cxl_feat_entry`, 48 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feature {
    pub uuid: [u8; 16],
    pub id: u16,
    pub get_size: u16,
    pub set_size: u16,
    pub flags: u32,
    /// Set Feature Effects as raw bits, and as an effects word.
    pub raw_effects: u16,
    pub effects: u32,
}

/// Size of `struct cxl_feat_entry`.
pub const FEATURE_ENTRY_LEN: usize = 48;
/// Size of the Get Supported Features output header (`le16 num_entries; le16
/// supported_feats; u8 reserved[4]`).
pub const FEATURES_HEADER_LEN: usize = 8;

/// Get Supported Features output: (entries in this reply, features the device has) and
/// the entries (as many as both the count and the bytes allow).
pub fn supported_features(out: &[u8]) -> (u16, u16, impl Iterator<Item = Feature> + '_) {
    let returned = le16(out, 0);
    let total = le16(out, 2);
    let entries = out
        .get(FEATURES_HEADER_LEN..)
        .unwrap_or(&[])
        .chunks_exact(FEATURE_ENTRY_LEN)
        .take(returned as usize)
        .map(|e| {
            let mut uuid = [0u8; 16];
            uuid.copy_from_slice(&e[..16]);
            let raw_effects = le16(e, 28);
            Feature {
                uuid,
                id: le16(e, 16),
                get_size: le16(e, 18),
                set_size: le16(e, 20),
                flags: le32(e, 22),
                raw_effects,
                effects: from_cxl(raw_effects),
            }
        });
    (returned, total, entries)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{collections::BTreeMap, vec, vec::Vec};

    use super::*;
    use crate::model::ioctl;

    #[test]
    fn cxl_bits_keep_their_positions_and_reset_bits_need_the_valid_bit() {
        assert_eq!(from_cxl(0x0001), effect::CONFIG_CHANGE_COLD_RESET);
        assert_eq!(from_cxl(0x0024), effect::DATA_CHANGE_IMMEDIATE | effect::SECURITY_STATE_CHANGE);
        assert_eq!(from_cxl(0x0c00), 0, "bits 10/11 without bit 9 are not valid");
        assert_eq!(
            from_cxl(0x0e00),
            effect::CONFIG_CHANGE_CONVENTIONAL_RESET | effect::CONFIG_CHANGE_CXL_RESET
        );
        // The cxl_test mock's vendor feature: cold reset + effects valid.
        assert_eq!(from_cxl(0x0201), effect::CONFIG_CHANGE_COLD_RESET);
    }

    #[test]
    fn nvme_bits_imply_the_common_ones() {
        assert_eq!(from_nvme(0), None, "CSUPP clear: not supported");
        assert_eq!(from_nvme(1), Some(0));
        // A Format NVM declaring every namespace effect: CSUPP | LBCC | NCC | NIC | CSE=2 (QEMU 10
        // declares only CSUPP | LBCC for it, which the VM test uses).
        let format = from_nvme(1 | 2 | 4 | 8 | (2 << 16)).unwrap();
        assert_eq!(
            format,
            effect::LOGICAL_BLOCK_CONTENT_CHANGE
                | effect::DATA_CHANGE_IMMEDIATE
                | effect::NAMESPACE_CAPABILITY_CHANGE
                | effect::NAMESPACE_INVENTORY_CHANGE
                | effect::CONFIG_CHANGE_IMMEDIATE
                | effect::EXCLUSIVE_EXECUTION
        );
        assert_eq!(from_nvme(1 | 1 << 19), Some(effect::UUID_SELECTION));
    }

    #[test]
    fn names_round_trip_and_aliases_resolve() {
        for (name, bit) in effect::NAMES {
            assert_eq!(effect::from_name(name), Some(bit));
            assert_eq!(bit.count_ones(), 1);
            assert_eq!(bit & (effect::DECLARED | effect::KNOWN), 0);
        }
        assert_eq!(effect::from_name("lbcc"), Some(effect::LOGICAL_BLOCK_CONTENT_CHANGE));
        assert_eq!(effect::from_name("declared"), None);
        let names: Vec<_> = effect::names(effect::BACKGROUND | effect::DECLARED | effect::KNOWN).collect();
        assert_eq!(names, vec!["background"]);
    }

    #[test]
    fn cel_fixture_parses() {
        // Identify (no effects), Set Partition Info (config change cold reset + immediate),
        // Sanitize (data change + security state + background).
        let mut log = Vec::new();
        for (op, eff) in [(0x4000u16, 0u16), (0x4101, 0x0003), (0x4400, 0x0064)] {
            log.extend_from_slice(&op.to_le_bytes());
            log.extend_from_slice(&eff.to_le_bytes());
        }
        log.extend_from_slice(&[0xaa, 0xbb]); // a torn entry is ignored
        let entries: Vec<_> = cel_entries(&log).collect();
        assert_eq!(
            entries,
            vec![
                (0x4000, 0),
                (0x4101, effect::CONFIG_CHANGE_COLD_RESET | effect::CONFIG_CHANGE_IMMEDIATE),
                (0x4400, effect::DATA_CHANGE_IMMEDIATE | effect::SECURITY_STATE_CHANGE | effect::BACKGROUND),
            ]
        );
    }

    #[test]
    fn supported_logs_find_the_cel() {
        let mut out = vec![2, 0, 0, 0, 0, 0, 0, 0];
        out.extend_from_slice(&[0x11; 16]);
        out.extend_from_slice(&64u32.to_le_bytes());
        out.extend_from_slice(&CEL_UUID);
        out.extend_from_slice(&0x30u32.to_le_bytes());
        assert_eq!(supported_log_size(&out, &CEL_UUID), Some(0x30));
        assert_eq!(supported_log_size(&out[..28], &CEL_UUID), None, "entry cut off");
        out[0] = 1;
        assert_eq!(supported_log_size(&out, &CEL_UUID), None, "beyond the count");
        assert_eq!(supported_log_size(&[], &CEL_UUID), None);
    }

    #[test]
    fn nvme_effects_log_fixture_parses() {
        let mut log = vec![0u8; 4096];
        let mut put =
            |index: usize, value: u32| log[index * 4..index * 4 + 4].copy_from_slice(&value.to_le_bytes());
        put(0x06, 1); // Identify
        put(0x80, 1 | 2 | 8); // Format NVM: LBCC, NIC
        put(256 + 0x01, 1 | 2); // Write: LBCC
        put(256 + 0x02, 1); // Read
        put(0xc0, 0); // vendor opcode, not supported
        let entries: Vec<_> = nvme_effects_log(&log).collect();
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0], (class::NVME_ADMIN, 0x06, 0));
        assert_eq!(entries[1].1, 0x80);
        assert_ne!(entries[1].2 & effect::NAMESPACE_INVENTORY_CHANGE, 0);
        assert_eq!(
            entries[2],
            (class::NVME_IO, 0x01, effect::LOGICAL_BLOCK_CONTENT_CHANGE | effect::DATA_CHANGE_IMMEDIATE)
        );
        assert_eq!(entries[3], (class::NVME_IO, 0x02, 0));
        assert_eq!(nvme_effects_log(&log[..100]).count(), 1, "short log: what is there");
    }

    fn feature_entry(uuid: [u8; 16], id: u16, effects: u16) -> Vec<u8> {
        let mut e = vec![0u8; FEATURE_ENTRY_LEN];
        e[..16].copy_from_slice(&uuid);
        e[16..18].copy_from_slice(&id.to_le_bytes());
        e[18..20].copy_from_slice(&4u16.to_le_bytes());
        e[20..22].copy_from_slice(&4u16.to_le_bytes());
        e[22..26].copy_from_slice(&0x61u32.to_le_bytes());
        e[28..30].copy_from_slice(&effects.to_le_bytes());
        e
    }

    #[test]
    fn supported_features_fixture_parses() {
        // The cxl_test mock: one feature, UUID all 0xff, sizes 4, flags 0x61, effects 0x201.
        let mut out = vec![1, 0, 1, 0, 0, 0, 0, 0];
        out.extend(feature_entry([0xff; 16], 0, 0x201));
        let (returned, total, entries) = supported_features(&out);
        let entries: Vec<_> = entries.collect();
        assert_eq!((returned, total), (1, 1));
        assert_eq!(
            entries,
            vec![Feature {
                uuid: [0xff; 16],
                id: 0,
                get_size: 4,
                set_size: 4,
                flags: 0x61,
                raw_effects: 0x201,
                effects: effect::CONFIG_CHANGE_COLD_RESET
            }]
        );
        // A count larger than the bytes returned yields only whole entries.
        out[0] = 5;
        assert_eq!(supported_features(&out).2.count(), 1);
        assert_eq!(supported_features(&out[..20]).2.count(), 0);
    }

    struct Table(BTreeMap<EffectsKey, u32>);
    impl EffectsSource for Table {
        fn stored_effects(&self, key: &EffectsKey) -> Option<u32> {
            self.0.get(key).copied()
        }
    }

    #[test]
    fn declared_effects_distinguish_declared_undeclared_and_unknown() {
        let dev = 7;
        let mut t = Table(BTreeMap::new());
        t.0.insert(EffectsKey::table(dev, class::NVME_ADMIN), 0);
        t.0.insert(EffectsKey::new(dev, class::NVME_ADMIN, 0x80, [0; 16]), effect::DATA_CHANGE_IMMEDIATE);
        let nvme = |opcode| Command {
            opcode,
            ..Command::new(ioctl::NVME_ADMIN_CMD, class::NVME_ADMIN, driver::NVME)
        };
        assert_eq!(
            declared_effects(&t, dev, &nvme(0x80)),
            effect::DATA_CHANGE_IMMEDIATE | effect::DECLARED | effect::KNOWN
        );
        assert_eq!(declared_effects(&t, dev, &nvme(0xc1)), effect::KNOWN, "vendor opcode not listed");
        assert_eq!(declared_effects(&t, dev + 1, &nvme(0x80)), 0, "another device: unknown");
        assert_eq!(declared_effects(&t, dev, &nvme(OPCODE_NONE)), 0, "payload-less ioctl");
        let io = Command { opcode: 0x80, ..Command::new(ioctl::NVME_IO_CMD, class::NVME_IO, driver::NVME) };
        assert_eq!(declared_effects(&t, dev, &io), 0, "I/O table not read");
    }

    #[test]
    fn set_feature_is_keyed_by_its_feature() {
        let dev = 3;
        let mut t = Table(BTreeMap::new());
        t.0.insert(EffectsKey::table(dev, class::FWCTL), 0);
        t.0.insert(
            EffectsKey::new(dev, class::FWCTL, CXL_SET_FEATURE, [0xff; 16]),
            effect::CONFIG_CHANGE_COLD_RESET,
        );
        t.0.insert(EffectsKey::new(dev, class::FWCTL, CXL_GET_FEATURE, [0; 16]), 0);
        let rpc = |opcode, feature| Command {
            opcode,
            feature,
            ..Command::new(ioctl::FWCTL_RPC, class::FWCTL, driver::CXL)
        };
        assert_ne!(
            declared_effects(&t, dev, &rpc(CXL_SET_FEATURE, [0xff; 16])) & effect::CONFIG_CHANGE_COLD_RESET,
            0
        );
        assert_eq!(
            declared_effects(&t, dev, &rpc(CXL_SET_FEATURE, [0xee; 16])),
            effect::KNOWN,
            "unlisted feature"
        );
        // Get Feature is declared per opcode whatever feature it names.
        assert_eq!(
            declared_effects(&t, dev, &rpc(CXL_GET_FEATURE, [0xee; 16])),
            effect::DECLARED | effect::KNOWN
        );
    }

    #[test]
    fn key_size_is_stable() {
        assert_eq!(core::mem::size_of::<EffectsKey>(), 32);
    }
}
