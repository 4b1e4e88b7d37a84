//! Keeping the kernel's `EFFECTS` map equal to what the devices declare: a node's entries
//! go in (table markers last) or come out (markers first) as a whole, so the kernel never
//! sees a half-written table as complete.

use std::{collections::BTreeMap, io};

use fwctl_common::{effects::EffectsKey, model::OPCODE_NONE};

use super::{failure::ReadError, read::NodeEffects};

/// The kernel's `EFFECTS` map (a BTreeMap in tests).
pub trait EffectsMap {
    fn insert(&mut self, key: EffectsKey, value: u32) -> io::Result<()>;
    fn remove(&mut self, key: &EffectsKey) -> io::Result<()>;
}

fn is_marker(key: &EffectsKey) -> bool {
    key.opcode == OPCODE_NONE && key.feature == [0; 16]
}

/// The map and, per node name, the entries written for it.
pub struct Installer<M> {
    map: M,
    installed: BTreeMap<String, Vec<(EffectsKey, u32)>>,
}

impl<M: EffectsMap> Installer<M> {
    pub fn new(map: M) -> Self {
        Self { map, installed: BTreeMap::new() }
    }

    /// Write `node`'s entries, replacing any it had. On failure (map full) none of them
    /// stays: the node's effects are then unknown rather than partly known.
    pub fn install(&mut self, node: &NodeEffects) -> Result<usize, (u8, ReadError)> {
        let name = &node.device.name;
        self.uninstall(name);
        let entries = node.map_entries();
        for (done, (key, value)) in entries.iter().enumerate() {
            if let Err(e) = self.map.insert(*key, *value) {
                self.remove_all(&entries[..done]);
                let reason = if e.raw_os_error() == Some(libc::E2BIG) { "map_full" } else { "map_update" };
                let what = format!(
                    "{}: writing {} effects entries to the EFFECTS map",
                    node.device.node.display(),
                    entries.len()
                );
                return Err((key.class, ReadError::other(reason, anyhow::Error::new(e).context(what))));
            }
        }
        let count = entries.len();
        if count > 0 {
            self.installed.insert(name.clone(), entries);
        }
        Ok(count)
    }

    /// Remove the entries written for node `name`.
    pub fn uninstall(&mut self, name: &str) {
        if let Some(entries) = self.installed.remove(name) {
            self.remove_all(&entries);
        }
    }

    /// Markers first: from then on the node's effects are unknown, never "undeclared".
    fn remove_all(&mut self, entries: &[(EffectsKey, u32)]) {
        let (markers, declarations): (Vec<_>, Vec<_>) = entries.iter().partition(|(k, _)| is_marker(k));
        for (key, _) in markers.into_iter().chain(declarations) {
            if let Err(e) = self.map.remove(&key) {
                log::warn!("removing an effects entry of device {:#x}: {e}", key.device);
            }
        }
    }

    /// Entries in the map per class (table markers included).
    pub fn entries_per_class(&self) -> BTreeMap<u8, usize> {
        let mut counts = BTreeMap::new();
        for (key, _) in self.installed.values().flatten() {
            *counts.entry(key.class).or_default() += 1;
        }
        counts
    }

    /// Every declaration written (markers left out), with its node's name.
    pub fn declarations(&self) -> impl Iterator<Item = (&str, &EffectsKey, u32)> {
        self.installed
            .iter()
            .flat_map(|(name, entries)| entries.iter().map(move |(k, v)| (name.as_str(), k, *v)))
            .filter(|(_, k, _)| !is_marker(k))
    }

    /// Names of the nodes with entries in the map.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.installed.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use fwctl_common::model::{class, device_kind, driver};

    use super::*;
    use crate::devices::{
        effects::{read::Outcome, table::Table},
        inventory::Device,
    };

    /// A map with a capacity that records the order of operations.
    #[derive(Default)]
    struct Recorder {
        map: BTreeMap<EffectsKey, u32>,
        capacity: usize,
        log: Vec<(&'static str, EffectsKey)>,
    }

    impl EffectsMap for Recorder {
        fn insert(&mut self, key: EffectsKey, value: u32) -> io::Result<()> {
            if self.map.len() >= self.capacity && !self.map.contains_key(&key) {
                return Err(io::Error::from_raw_os_error(libc::E2BIG));
            }
            self.log.push(("insert", key));
            self.map.insert(key, value);
            Ok(())
        }
        fn remove(&mut self, key: &EffectsKey) -> io::Result<()> {
            self.log.push(("remove", *key));
            self.map.remove(key);
            Ok(())
        }
    }

    fn nvme_node(name: &str, minor: u32) -> NodeEffects {
        let mut log = vec![0u8; 4096];
        log[0x06 * 4] = 1;
        log[0x80 * 4] = 3;
        NodeEffects {
            device: Device {
                name: name.into(),
                kind: device_kind::NVME,
                driver: driver::NVME,
                block: false,
                major: 239,
                minor,
                node: PathBuf::from("/dev").join(name),
                sysfs: PathBuf::new(),
                parent: None,
                kernel_driver: None,
                parent_pci: None,
            },
            outcome: Outcome::Read(Table::from_nvme_log(&log).into()),
        }
    }

    #[test]
    fn install_then_uninstall_keeps_markers_out_while_tables_are_incomplete() {
        let mut installer = Installer::new(Recorder { capacity: 100, ..Default::default() });
        assert_eq!(installer.install(&nvme_node("nvme0", 0)).unwrap(), 4);
        let log = &installer.map.log;
        // Admin declarations, then the admin marker; then the (empty) I/O table's marker.
        assert!(!is_marker(&log[0].1) && !is_marker(&log[1].1));
        assert!(is_marker(&log[2].1) && log[2].1.class == class::NVME_ADMIN);
        assert_eq!(
            installer.entries_per_class(),
            BTreeMap::from([(class::NVME_ADMIN, 3), (class::NVME_IO, 1)])
        );
        assert_eq!(installer.declarations().count(), 2);
        installer.map.log.clear();
        installer.uninstall("nvme0");
        let log = &installer.map.log;
        assert!(is_marker(&log[0].1) && is_marker(&log[1].1), "markers go first");
        assert!(installer.map.map.is_empty());
        assert!(installer.entries_per_class().is_empty());
    }

    #[test]
    fn a_full_map_leaves_nothing_of_the_node_behind() {
        let mut installer = Installer::new(Recorder { capacity: 6, ..Default::default() });
        installer.install(&nvme_node("nvme0", 0)).unwrap();
        let (class, error) = installer.install(&nvme_node("nvme1", 1)).unwrap_err();
        assert_eq!((class, error.reason.as_str()), (class::NVME_ADMIN, "map_full"));
        assert!(error.to_string().contains("/dev/nvme1"), "{error}");
        assert_eq!(installer.map.map.len(), 4, "only nvme0's entries");
        assert_eq!(installer.nodes().collect::<Vec<_>>(), ["nvme0"]);
        // Reinstalling a node replaces its entries instead of adding to them.
        installer.install(&nvme_node("nvme0", 0)).unwrap();
        assert_eq!(installer.map.map.len(), 4);
    }
}
