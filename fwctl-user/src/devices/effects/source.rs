//! Where each passthrough node's effects come from: its own log (NVMe controllers, CXL
//! memdevs, CXL fwctl nodes), its controller's log (NVMe namespaces: passthrough through
//! `nvmeXnY` or `ngXnY` reaches the same controller), or nowhere (SCSI, other fwctl).

use std::{fs, path::Path};

use fwctl_common::model::{device_kind, driver};

use crate::devices::inventory::Device;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `/dev/nvmeN`: read the Commands Supported and Effects log.
    NvmeController,
    /// A namespace (block, generic char, partition): the first of these controllers whose
    /// log was read.
    NvmeNamespace { controllers: Vec<String> },
    /// `/dev/cxl/memN`: read the Command Effects Log.
    CxlMemdev,
    /// A CXL fwctl node: read its features; `memdev` (the sysfs parent) gives the CEL.
    FwctlCxl { memdev: Option<String> },
    /// No protocol to ask the device with.
    None,
}

/// The source of `device`'s effects (sysfs under the device's own listing).
pub fn source_of(device: &Device) -> Source {
    match device.kind {
        device_kind::NVME if is_controller_name(&device.name) && !device.block => Source::NvmeController,
        device_kind::NVME => Source::NvmeNamespace {
            controllers: fs::canonicalize(&device.sysfs).map(|p| controllers_of(&p)).unwrap_or_default(),
        },
        device_kind::CXL_MEM => Source::CxlMemdev,
        device_kind::FWCTL if device.driver == driver::CXL => {
            Source::FwctlCxl { memdev: device.parent.clone().filter(|p| p.starts_with("mem")) }
        }
        _ => Source::None,
    }
}

/// `nvme` followed by digits only: a controller (namespaces are `nvmeXnY`, paths `nvmeXcYnZ`).
fn is_controller_name(name: &str) -> bool {
    name.strip_prefix("nvme").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The controllers a namespace at canonical sysfs path `path` is reached through: the
/// controller directory it sits in, or, for a native-multipath head (which sits in its
/// subsystem), every controller the subsystem links to, in name order.
pub fn controllers_of(path: &Path) -> Vec<String> {
    for dir in path.ancestors().skip(1) {
        let Some(name) = dir.file_name().and_then(|n| n.to_str()) else { continue };
        if is_controller_name(name) {
            return vec![name.to_string()];
        }
        if name.starts_with("nvme-subsys") {
            let mut controllers: Vec<String> = fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| is_controller_name(n))
                .collect();
            controllers.sort();
            return controllers;
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn device(name: &str, kind: u8, drv: u8, block: bool, sysfs: PathBuf, parent: Option<&str>) -> Device {
        Device {
            name: name.into(),
            kind,
            driver: drv,
            block,
            major: 1,
            minor: 1,
            node: PathBuf::from("/dev").join(name),
            sysfs,
            parent: parent.map(str::to_string),
            kernel_driver: None,
            parent_pci: None,
        }
    }

    /// A sysfs-like tree: a PCI controller with a namespace, its partition and generic
    /// node, and a multipath subsystem with two controllers and a head namespace.
    fn tree(test: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("fwctl-guard-sysfs-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let ctrl = root.join("devices/pci0000:00/0000:00:04.0/nvme/nvme0");
        for d in ["nvme0n1/nvme0n1p1", "ng0n1"] {
            fs::create_dir_all(ctrl.join(d)).unwrap();
        }
        let subsys = root.join("devices/virtual/nvme-subsystem/nvme-subsys3");
        fs::create_dir_all(subsys.join("nvme3n1")).unwrap();
        for c in ["nvme4", "nvme3"] {
            fs::create_dir_all(root.join("devices/pci0000:00/0000:00:05.0/nvme").join(c)).unwrap();
            std::os::unix::fs::symlink(
                root.join("devices/pci0000:00/0000:00:05.0/nvme").join(c),
                subsys.join(c),
            )
            .unwrap();
        }
        root
    }

    #[test]
    fn namespaces_find_their_controllers() {
        let root = tree("controllers");
        let ctrl = root.join("devices/pci0000:00/0000:00:04.0/nvme/nvme0");
        assert_eq!(controllers_of(&ctrl.join("nvme0n1")), ["nvme0"]);
        assert_eq!(controllers_of(&ctrl.join("nvme0n1/nvme0n1p1")), ["nvme0"], "partition");
        assert_eq!(controllers_of(&ctrl.join("ng0n1")), ["nvme0"], "generic char node");
        let head = root.join("devices/virtual/nvme-subsystem/nvme-subsys3/nvme3n1");
        assert_eq!(controllers_of(&head), ["nvme3", "nvme4"], "multipath head: every path");
        assert!(controllers_of(Path::new("/nonexistent/x")).is_empty());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn sources_by_node_kind() {
        let root = tree("sources");
        let ctrl = root.join("devices/pci0000:00/0000:00:04.0/nvme/nvme0");
        let nvme =
            |name: &str, block, sysfs| device(name, device_kind::NVME, driver::NVME, block, sysfs, None);
        assert_eq!(source_of(&nvme("nvme0", false, ctrl.clone())), Source::NvmeController);
        assert_eq!(
            source_of(&nvme("nvme0n1", true, ctrl.join("nvme0n1"))),
            Source::NvmeNamespace { controllers: vec!["nvme0".into()] }
        );
        assert_eq!(
            source_of(&nvme("ng0n1", false, ctrl.join("ng0n1"))),
            Source::NvmeNamespace { controllers: vec!["nvme0".into()] }
        );
        let memdev =
            device("mem0", device_kind::CXL_MEM, driver::CXL, false, root.clone(), Some("0000:0d:00.0"));
        assert_eq!(source_of(&memdev), Source::CxlMemdev);
        let fwctl = device("fwctl0", device_kind::FWCTL, driver::CXL, false, root.clone(), Some("mem0"));
        assert_eq!(source_of(&fwctl), Source::FwctlCxl { memdev: Some("mem0".into()) });
        let mlx5 =
            device("fwctl1", device_kind::FWCTL, driver::MLX5, false, root.clone(), Some("0000:3b:00.0"));
        assert_eq!(source_of(&mlx5), Source::None);
        let sg = device("sg0", device_kind::SCSI, driver::SG, false, root.clone(), None);
        assert_eq!(source_of(&sg), Source::None);
        fs::remove_dir_all(root).unwrap();
    }
}
