//! `fwctl_guard_device_info`: the passthrough devices on this host, listed from sysfs at
//! every scrape, so devices that come and go show up (and disappear) without a restart.

use std::path::PathBuf;

use fwctl_common::model::{device_kind, driver};
use prometheus::{IntGaugeVec, Opts};

use super::computed::Computed;
use crate::devices::inventory::{self, Device};

fn definition() -> prometheus::Result<IntGaugeVec> {
    IntGaugeVec::new(
        Opts::new(
            "fwctl_guard_device_info",
            "Passthrough device nodes present now (value 1): fwctl nodes, NVMe controllers, \
             namespaces and generic nodes, CXL memdevs, SCSI generic nodes; parent is the sysfs \
             device the node hangs off, pci the PCI function, kernel_driver the bound driver.",
        ),
        &["class", "driver", "device", "major_minor", "parent", "pci", "kernel_driver"],
    )
}

/// The family, listing `sys_root` at each scrape (`None`: defined only).
pub fn family(sys_root: Option<PathBuf>) -> prometheus::Result<Computed<IntGaugeVec>> {
    Computed::new(
        definition,
        sys_root.map(|root| -> super::computed::Fill<_> {
            Box::new(move |gauge: &IntGaugeVec| {
                for device in inventory::scan_sysfs(&root) {
                    let values = labels(&device);
                    let values: Vec<&str> = values.iter().map(String::as_str).collect();
                    gauge.with_label_values(&values).set(1);
                }
            })
        }),
    )
}

/// The label values of one device, in the gauge's label order.
pub fn labels(d: &Device) -> [String; 7] {
    [
        device_kind::label(d.kind).to_string(),
        driver::label(d.driver).to_string(),
        d.name.clone(),
        format!("{}:{}", d.major, d.minor),
        d.parent.clone().unwrap_or_default(),
        d.parent_pci.clone().unwrap_or_default(),
        d.kernel_driver.clone().unwrap_or_default(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fwctl_node_is_labelled_with_its_memdev_and_pci_function() {
        let d = Device {
            name: "fwctl0".into(),
            kind: device_kind::FWCTL,
            driver: driver::CXL,
            block: false,
            major: 240,
            minor: 0,
            node: "/dev/fwctl/fwctl0".into(),
            sysfs: "/sys/class/fwctl/fwctl0".into(),
            parent: Some("mem0".into()),
            kernel_driver: Some("cxl_mem".into()),
            parent_pci: Some("0000:0d:00.0".into()),
        };
        assert_eq!(
            labels(&d),
            ["fwctl", "cxl", "fwctl0", "240:0", "mem0", "0000:0d:00.0", "cxl_mem"].map(String::from)
        );
    }

    #[test]
    fn an_empty_sysfs_exports_nothing() {
        let dir = std::env::temp_dir().join(format!("fwctl-guard-devinfo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = family(Some(dir.clone())).unwrap();
        assert!(prometheus::core::Collector::collect(&c).iter().all(|f| f.get_metric().is_empty()));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
