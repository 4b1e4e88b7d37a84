//! Reading what every passthrough node's device declares: each controller and memdev
//! once, then the nodes that share their tables (NVMe namespaces) or need them (a CXL
//! fwctl node's readers take their effects from the memdev's CEL).

use std::collections::BTreeMap;

use fwctl_common::{
    effects::{EffectsKey, Feature},
    model::class,
};

use super::{
    cxl_mem,
    failure::ReadError,
    fwctl_cxl, nvme,
    source::{source_of, Source},
    table::Table,
};
use crate::devices::inventory::Device;

/// What is known about one node's effects.
#[derive(Debug)]
pub enum Outcome {
    /// Read from the node's own device.
    Read(Vec<Table>),
    /// Another node's tables (an NVMe namespace's controller).
    Inherited { from: String, tables: Vec<Table> },
    /// The read failed: nothing is known, and no table marker is written.
    Failed { class: u8, error: ReadError },
    /// Not read, and why (the controller's log could not be read, or none was found).
    Unknown(String),
    /// The device has no way to declare effects (SCSI, fwctl drivers other than CXL).
    NotApplicable,
}

/// One node and what its device declares.
#[derive(Debug)]
pub struct NodeEffects {
    pub device: Device,
    pub outcome: Outcome,
}

impl NodeEffects {
    /// The tables that apply to this node (none unless read or inherited).
    pub fn tables(&self) -> &[Table] {
        match &self.outcome {
            Outcome::Read(tables) | Outcome::Inherited { tables, .. } => tables,
            _ => &[],
        }
    }

    /// The kernel-map entries of this node, table by table, each table's marker last.
    pub fn map_entries(&self) -> Vec<(EffectsKey, u32)> {
        self.tables().iter().flat_map(|t| t.map_entries(self.device.key())).collect()
    }
}

/// Talks to the devices (the real one issues ioctls; tests use a fake).
pub trait Reader {
    fn nvme_effects_log(&self, device: &Device) -> Result<Vec<u8>, ReadError>;
    fn cel(&self, device: &Device) -> Result<Vec<u8>, ReadError>;
    fn features(&self, device: &Device) -> Result<Vec<Feature>, ReadError>;
}

/// Reads through the device nodes.
pub struct DeviceReader;

impl Reader for DeviceReader {
    fn nvme_effects_log(&self, device: &Device) -> Result<Vec<u8>, ReadError> {
        nvme::read_effects_log(&device.node)
    }
    fn cel(&self, device: &Device) -> Result<Vec<u8>, ReadError> {
        cxl_mem::read_cel_from(&device.node, &device.sysfs)
    }
    fn features(&self, device: &Device) -> Result<Vec<Feature>, ReadError> {
        fwctl_cxl::read_features_from(&device.node)
    }
}

/// The effects of `devices`, in their order. `earlier` holds nodes read before (so a
/// hot-plugged namespace finds a controller read at start-up).
pub fn read_all(
    reader: &impl Reader,
    devices: &[Device],
    earlier: &BTreeMap<String, NodeEffects>,
) -> Vec<NodeEffects> {
    let sources: Vec<Source> = devices.iter().map(source_of).collect();
    // Controllers and memdevs first: the other nodes' tables derive from theirs.
    let mut own: BTreeMap<String, Outcome> = BTreeMap::new();
    for (device, source) in devices.iter().zip(&sources) {
        let outcome = match source {
            Source::NvmeController => match reader.nvme_effects_log(device) {
                Ok(log) => Outcome::Read(Table::from_nvme_log(&log).into()),
                Err(error) => Outcome::Failed { class: class::NVME_ADMIN, error },
            },
            Source::CxlMemdev => match reader.cel(device) {
                Ok(cel) => Outcome::Read(vec![Table::from_cel(&cel)]),
                Err(error) => Outcome::Failed { class: class::CXL_MEM, error },
            },
            _ => continue,
        };
        own.insert(device.name.clone(), outcome);
    }
    let tables_of = |name: &str| -> Option<Vec<Table>> {
        match own.get(name) {
            Some(Outcome::Read(tables)) => Some(tables.clone()),
            Some(_) => None,
            None => earlier
                .get(name)
                .filter(|n| matches!(n.outcome, Outcome::Read(_)))
                .map(|n| n.tables().to_vec()),
        }
    };
    let mut derived = Vec::with_capacity(devices.len());
    for (device, source) in devices.iter().zip(&sources) {
        let outcome = match source {
            Source::NvmeController | Source::CxlMemdev => None,
            Source::NvmeNamespace { controllers } => Some(
                controllers
                    .iter()
                    .find_map(|c| tables_of(c).map(|tables| Outcome::Inherited { from: c.clone(), tables }))
                    .unwrap_or_else(|| match controllers.as_slice() {
                        [] => Outcome::Unknown("no controller found in sysfs".into()),
                        list => Outcome::Unknown(format!("the log of {} was not read", list.join(", "))),
                    }),
            ),
            Source::FwctlCxl { memdev } => Some(match reader.features(device) {
                Ok(features) => {
                    let cel = memdev.as_deref().and_then(tables_of);
                    let memdev_table =
                        cel.as_ref().and_then(|t| t.iter().find(|t| t.class == class::CXL_MEM));
                    Outcome::Read(vec![Table::fwctl_cxl(&features, memdev_table)])
                }
                Err(error) => Outcome::Failed { class: class::FWCTL, error },
            }),
            Source::None => Some(Outcome::NotApplicable),
        };
        derived.push(outcome);
    }
    devices
        .iter()
        .zip(derived)
        .map(|(device, outcome)| NodeEffects {
            device: device.clone(),
            outcome: outcome.or_else(|| own.remove(&device.name)).unwrap_or(Outcome::NotApplicable),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, path::PathBuf};

    use fwctl_common::{
        effects::{effect, CXL_SET_FEATURE},
        model::{device_kind, driver},
    };

    use super::*;

    /// Devices that answer from fixtures; a name in `failing` fails with EACCES.
    #[derive(Default)]
    struct Fake {
        failing: Vec<&'static str>,
        calls: RefCell<Vec<String>>,
    }

    impl Fake {
        fn check(&self, device: &Device) -> Result<(), ReadError> {
            self.calls.borrow_mut().push(device.name.clone());
            if self.failing.contains(&device.name.as_str()) {
                return Err(ReadError::os(
                    std::io::Error::from_raw_os_error(libc::EACCES),
                    device.node.display(),
                ));
            }
            Ok(())
        }
    }

    impl Reader for Fake {
        fn nvme_effects_log(&self, device: &Device) -> Result<Vec<u8>, ReadError> {
            self.check(device)?;
            let mut log = vec![0u8; 4096];
            log[0x06 * 4] = 1; // Identify
            log[0x80 * 4] = 1 | 2; // Format NVM: LBCC
            Ok(log)
        }
        fn cel(&self, device: &Device) -> Result<Vec<u8>, ReadError> {
            self.check(device)?;
            // Identify 0x4000, Get Feature 0x0501 (log change).
            Ok(vec![0x00, 0x40, 0, 0, 0x01, 0x05, 0x10, 0])
        }
        fn features(&self, device: &Device) -> Result<Vec<Feature>, ReadError> {
            self.check(device)?;
            Ok(vec![Feature {
                uuid: [0xff; 16],
                id: 0,
                get_size: 4,
                set_size: 4,
                flags: 0x61,
                raw_effects: 0x201,
                effects: effect::CONFIG_CHANGE_COLD_RESET,
            }])
        }
    }

    fn device(name: &str, kind: u8, drv: u8, minor: u32, parent: Option<&str>) -> Device {
        Device {
            name: name.into(),
            kind,
            driver: drv,
            block: false,
            major: 240,
            minor,
            node: PathBuf::from("/dev").join(name),
            sysfs: PathBuf::from("/nonexistent"),
            parent: parent.map(str::to_string),
            kernel_driver: None,
            parent_pci: None,
        }
    }

    /// A namespace listed at `sysfs` (a directory under its controller's).
    fn namespace(name: &str, sysfs: PathBuf, minor: u32) -> Device {
        Device { block: true, sysfs, ..device(name, device_kind::NVME, driver::NVME, minor, None) }
    }

    #[test]
    fn every_node_gets_its_tables_and_namespaces_share_their_controllers() {
        let root = std::env::temp_dir().join(format!("fwctl-guard-read-{}", std::process::id()));
        let ns_dir = root.join("nvme/nvme0/nvme0n1");
        std::fs::create_dir_all(&ns_dir).unwrap();
        let devices = vec![
            namespace("nvme0n1", ns_dir, 1),
            device("nvme0", device_kind::NVME, driver::NVME, 0, None),
            device("fwctl0", device_kind::FWCTL, driver::CXL, 2, Some("mem0")),
            device("mem0", device_kind::CXL_MEM, driver::CXL, 3, None),
            device("sg0", device_kind::SCSI, driver::SG, 4, None),
        ];
        let fake = Fake::default();
        let read = read_all(&fake, &devices, &BTreeMap::new());
        assert_eq!(
            read.iter().map(|n| n.device.name.as_str()).collect::<Vec<_>>(),
            ["nvme0n1", "nvme0", "fwctl0", "mem0", "sg0"]
        );
        assert_eq!(
            *fake.calls.borrow(),
            ["nvme0", "mem0", "fwctl0"],
            "each device asked once, primaries first"
        );
        assert!(matches!(&read[0].outcome, Outcome::Inherited { from, .. } if from == "nvme0"));
        assert_eq!(read[0].tables(), read[1].tables());
        // The namespace's entries carry its own device key.
        assert!(read[0].map_entries().iter().all(|(k, _)| k.device == read[0].device.key()));
        assert_eq!(read[1].map_entries().len(), 2 + 2, "identify, format, two markers");
        // The fwctl node: readers from the memdev's CEL, Set Feature per feature.
        let fwctl = &read[2].tables()[0];
        assert_eq!(fwctl.effects_of(0x0501, &[0; 16]), Some(effect::LOG_CHANGE_IMMEDIATE));
        assert_eq!(fwctl.effects_of(0x0500, &[0; 16]), Some(0), "not in the CEL: declared without effects");
        assert_eq!(fwctl.effects_of(CXL_SET_FEATURE, &[0xff; 16]), Some(effect::CONFIG_CHANGE_COLD_RESET));
        assert!(matches!(read[4].outcome, Outcome::NotApplicable));
        assert!(read[4].map_entries().is_empty());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn failures_leave_nodes_unknown_and_later_namespaces_use_earlier_controllers() {
        let root = std::env::temp_dir().join(format!("fwctl-guard-read2-{}", std::process::id()));
        let ns_dir = root.join("nvme/nvme0/nvme0n2");
        std::fs::create_dir_all(&ns_dir).unwrap();
        let failing = Fake { failing: vec!["nvme0", "mem0"], ..Fake::default() };
        let devices = vec![
            device("nvme0", device_kind::NVME, driver::NVME, 0, None),
            device("mem0", device_kind::CXL_MEM, driver::CXL, 3, None),
            device("fwctl0", device_kind::FWCTL, driver::CXL, 2, Some("mem0")),
        ];
        let read = read_all(&failing, &devices, &BTreeMap::new());
        match &read[0].outcome {
            Outcome::Failed { class, error } => {
                assert_eq!((*class, error.reason.as_str()), (class::NVME_ADMIN, "eacces"));
                assert!(error.to_string().contains("/dev/nvme0"));
            }
            other => panic!("{other:?}"),
        }
        assert!(read[0].map_entries().is_empty(), "no marker: effects unknown");
        // The fwctl node still declares its features; its readers get no effects.
        assert_eq!(read[2].tables()[0].effects_of(0x0501, &[0; 16]), Some(0));

        // Hot-plug: a new namespace of a controller read earlier.
        let earlier: BTreeMap<String, NodeEffects> =
            read_all(&Fake::default(), &devices[..1], &BTreeMap::new())
                .into_iter()
                .map(|n| (n.device.name.clone(), n))
                .collect();
        let ns = namespace("nvme0n2", ns_dir, 7);
        let fake = Fake::default();
        let late = read_all(&fake, std::slice::from_ref(&ns), &earlier);
        assert!(matches!(&late[0].outcome, Outcome::Inherited { from, .. } if from == "nvme0"));
        assert!(fake.calls.borrow().is_empty(), "the controller is not read again");
        // A namespace whose controller failed says so.
        let unread = read_all(&failing, &[devices[0].clone(), ns], &BTreeMap::new());
        assert!(matches!(&unread[1].outcome, Outcome::Unknown(why) if why.contains("nvme0")));
        std::fs::remove_dir_all(root).unwrap();
    }
}
