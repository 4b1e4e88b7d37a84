//! A device's declarations for one command class, built from the logs it returned, and
//! the kernel-map entries they become. Pure: no device access.

use std::collections::BTreeMap;

use fwctl_common::{
    effects::{self, EffectsKey, Feature, CXL_GET_FEATURE, CXL_SET_FEATURE},
    model::{class, driver},
};

/// CXL Get Supported Features: declared on a CXL fwctl node with the memdev CEL's effects.
pub const CXL_GET_SUPPORTED_FEATURES: u32 = 0x0500;

/// One opcode (for CXL Set Feature: one feature) a device lists, with its effects word
/// (`effects::effect` bits, without DECLARED/KNOWN).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Declared {
    pub opcode: u32,
    /// Feature UUID for CXL Set Feature; zero otherwise.
    pub feature: [u8; 16],
    pub effects: u32,
}

/// Everything a device lists for one class. A table exists only when the device's log
/// was read, so an opcode missing from it is one the device does not support.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub class: u8,
    pub driver: u8,
    /// Sorted by (opcode, feature), one entry each.
    pub entries: Vec<Declared>,
}

impl Table {
    fn new(class: u8, driver: u8, entries: impl IntoIterator<Item = Declared>) -> Self {
        // Keyed like the kernel map: a device that lists an opcode twice keeps the last.
        let unique: BTreeMap<(u32, [u8; 16]), u32> =
            entries.into_iter().map(|d| ((d.opcode, d.feature), d.effects)).collect();
        let entries = unique
            .into_iter()
            .map(|((opcode, feature), effects)| Declared { opcode, feature, effects })
            .collect();
        Self { class, driver, entries }
    }

    /// The admin and I/O tables of an NVMe Commands Supported and Effects log.
    pub fn from_nvme_log(log: &[u8]) -> [Table; 2] {
        let declared = |wanted: u8| {
            effects::nvme_effects_log(log)
                .filter(move |(c, _, _)| *c == wanted)
                .map(|(_, opcode, effects)| Declared { opcode: opcode.into(), feature: [0; 16], effects })
        };
        [
            Table::new(class::NVME_ADMIN, driver::NVME, declared(class::NVME_ADMIN)),
            Table::new(class::NVME_IO, driver::NVME, declared(class::NVME_IO)),
        ]
    }

    /// The CXL memdev table of a Command Effects Log.
    pub fn from_cel(cel: &[u8]) -> Table {
        let declared = effects::cel_entries(cel).map(|(opcode, effects)| Declared {
            opcode: opcode.into(),
            feature: [0; 16],
            effects,
        });
        Table::new(class::CXL_MEM, driver::CXL, declared)
    }

    /// A CXL fwctl node's table: Get Supported Features and Get Feature with the effects
    /// the memdev's CEL gives them (0 when it was not read), and Set Feature once per
    /// feature with that feature's Set Feature Effects.
    pub fn fwctl_cxl(features: &[Feature], memdev_cel: Option<&Table>) -> Table {
        let cel_effects = |opcode| memdev_cel.and_then(|t| t.effects_of(opcode, &[0; 16])).unwrap_or(0);
        let readers = [CXL_GET_SUPPORTED_FEATURES, CXL_GET_FEATURE].map(|opcode| Declared {
            opcode,
            feature: [0; 16],
            effects: cel_effects(opcode),
        });
        let setters = features.iter().map(|f| Declared {
            opcode: CXL_SET_FEATURE,
            feature: f.uuid,
            effects: f.effects,
        });
        Table::new(class::FWCTL, driver::CXL, readers.into_iter().chain(setters))
    }

    /// The effects the table gives `opcode` (and `feature`), if it lists it.
    pub fn effects_of(&self, opcode: u32, feature: &[u8; 16]) -> Option<u32> {
        self.entries.iter().find(|d| d.opcode == opcode && &d.feature == feature).map(|d| d.effects)
    }

    /// The kernel-map entries for node `device`: every declaration, then the table marker.
    /// The marker goes last so that a table being written never looks complete: until it
    /// is there, opcodes not yet written count as unknown rather than undeclared.
    pub fn map_entries(&self, device: u64) -> Vec<(EffectsKey, u32)> {
        self.entries
            .iter()
            .map(|d| (EffectsKey::new(device, self.class, d.opcode, d.feature), d.effects))
            .chain(std::iter::once((EffectsKey::table(device, self.class), 0)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use fwctl_common::{
        effects::{effect, FEATURE_ENTRY_LEN},
        model::OPCODE_NONE,
    };

    use super::*;

    fn nvme_log(entries: &[(usize, u32)]) -> Vec<u8> {
        let mut log = vec![0u8; 4096];
        for (index, value) in entries {
            log[index * 4..index * 4 + 4].copy_from_slice(&value.to_le_bytes());
        }
        log
    }

    #[test]
    fn nvme_log_becomes_an_admin_and_an_io_table() {
        // Identify (no effects), Format NVM (LBCC), vendor 0xc0 not supported; Write (LBCC).
        let log = nvme_log(&[(0x06, 1), (0x80, 1 | 2), (0xc0, 0), (256 + 0x01, 1 | 2)]);
        let [admin, io] = Table::from_nvme_log(&log);
        assert_eq!((admin.class, io.class), (class::NVME_ADMIN, class::NVME_IO));
        assert_eq!(admin.effects_of(0x06, &[0; 16]), Some(0));
        assert_eq!(
            admin.effects_of(0x80, &[0; 16]),
            Some(effect::LOGICAL_BLOCK_CONTENT_CHANGE | effect::DATA_CHANGE_IMMEDIATE)
        );
        assert_eq!(admin.effects_of(0xc0, &[0; 16]), None, "CSUPP clear: not listed");
        assert_eq!(admin.entries.len(), 2);
        assert_eq!(io.entries.iter().map(|d| d.opcode).collect::<Vec<_>>(), [0x01]);
    }

    #[test]
    fn an_all_zero_nvme_log_still_makes_tables() {
        // A controller that lists nothing: every opcode is undeclared, which is knowledge.
        let [admin, io] = Table::from_nvme_log(&nvme_log(&[]));
        assert!(admin.entries.is_empty() && io.entries.is_empty());
        assert_eq!(admin.map_entries(9), vec![(EffectsKey::table(9, class::NVME_ADMIN), 0)]);
    }

    #[test]
    fn cel_becomes_a_sorted_cxl_mem_table_and_duplicates_keep_the_last() {
        let mut cel = Vec::new();
        for (opcode, raw) in [(0x4400u16, 0x0064u16), (0x4000, 0), (0x4400, 0x0004)] {
            cel.extend_from_slice(&opcode.to_le_bytes());
            cel.extend_from_slice(&raw.to_le_bytes());
        }
        let table = Table::from_cel(&cel);
        assert_eq!((table.class, table.driver), (class::CXL_MEM, driver::CXL));
        assert_eq!(
            table.entries,
            vec![
                Declared { opcode: 0x4000, feature: [0; 16], effects: 0 },
                Declared { opcode: 0x4400, feature: [0; 16], effects: effect::DATA_CHANGE_IMMEDIATE },
            ]
        );
    }

    fn feature(uuid: u8, raw_effects: u16) -> Feature {
        Feature {
            uuid: [uuid; 16],
            id: 0,
            get_size: 4,
            set_size: 4,
            flags: 0,
            raw_effects,
            effects: effects::from_cxl(raw_effects),
        }
    }

    #[test]
    fn fwctl_cxl_table_declares_the_readers_from_the_cel_and_one_set_feature_per_feature() {
        let mut cel = Vec::new();
        for (opcode, raw) in [(0x0500u16, 0u16), (0x0501, 0x0010), (0x0502, 0x0002)] {
            cel.extend_from_slice(&opcode.to_le_bytes());
            cel.extend_from_slice(&raw.to_le_bytes());
        }
        let memdev = Table::from_cel(&cel);
        let features = [feature(0xaa, 0x0201), feature(0xbb, 0x0002)];
        let table = Table::fwctl_cxl(&features, Some(&memdev));
        assert_eq!((table.class, table.driver), (class::FWCTL, driver::CXL));
        assert_eq!(table.effects_of(CXL_GET_SUPPORTED_FEATURES, &[0; 16]), Some(0));
        assert_eq!(table.effects_of(CXL_GET_FEATURE, &[0; 16]), Some(effect::LOG_CHANGE_IMMEDIATE));
        assert_eq!(table.effects_of(CXL_SET_FEATURE, &[0xaa; 16]), Some(effect::CONFIG_CHANGE_COLD_RESET));
        assert_eq!(table.effects_of(CXL_SET_FEATURE, &[0xbb; 16]), Some(effect::CONFIG_CHANGE_IMMEDIATE));
        assert_eq!(table.effects_of(CXL_SET_FEATURE, &[0; 16]), None, "Set Feature is per feature only");
        // Without the memdev's CEL the readers are declared with no effects.
        let alone = Table::fwctl_cxl(&features, None);
        assert_eq!(alone.effects_of(CXL_GET_FEATURE, &[0; 16]), Some(0));
        assert_eq!(alone.entries.len(), 4);
    }

    #[test]
    fn map_entries_put_the_marker_last() {
        let log = nvme_log(&[(0x06, 1), (0x80, 1 | 2)]);
        let [admin, _] = Table::from_nvme_log(&log);
        let entries = admin.map_entries(42);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0], (EffectsKey::new(42, class::NVME_ADMIN, 0x06, [0; 16]), 0));
        let (marker, value) = entries[2];
        assert_eq!(
            (marker.opcode, marker.class, marker.device, value),
            (OPCODE_NONE, class::NVME_ADMIN, 42, 0)
        );
    }

    #[test]
    fn parsed_feature_list_fixture_builds_a_table() {
        // Get Supported Features output bytes, as the kernel returns them after the
        // fwctl_rpc_cxl_out header.
        let mut out = vec![2, 0, 2, 0, 0, 0, 0, 0];
        for (uuid, raw) in [(0x11u8, 0x0201u16), (0x22, 0x0006)] {
            let mut e = vec![0u8; FEATURE_ENTRY_LEN];
            e[..16].copy_from_slice(&[uuid; 16]);
            e[28..30].copy_from_slice(&raw.to_le_bytes());
            out.extend(e);
        }
        let features: Vec<_> = effects::supported_features(&out).2.collect();
        let table = Table::fwctl_cxl(&features, None);
        assert_eq!(
            table.effects_of(CXL_SET_FEATURE, &[0x22; 16]),
            Some(effect::CONFIG_CHANGE_IMMEDIATE | effect::DATA_CHANGE_IMMEDIATE)
        );
    }
}
