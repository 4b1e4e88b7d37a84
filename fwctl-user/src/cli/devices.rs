//! `fwctl-guard devices [--effects] [--json]`: the passthrough devices sysfs lists and,
//! with `--effects`, what each declares about its commands, read from the device itself
//! (needs root to open the nodes; the agent need not run).

use std::{collections::BTreeMap, path::Path};

use anyhow::Result;
use fwctl_common::model::{device_kind, driver};
use serde::Serialize;

use crate::devices::{
    effects::{
        read::{read_all, DeviceReader},
        report::{self, EffectsReport},
    },
    inventory::{self, Device},
};

/// One device in `--json` output.
#[derive(Debug, Serialize)]
pub struct DeviceReport {
    pub name: String,
    pub node: String,
    pub kind: &'static str,
    pub driver: &'static str,
    pub kernel_driver: Option<String>,
    /// `major:minor`.
    pub dev: String,
    #[serde(rename = "type")]
    pub node_type: &'static str,
    pub parent: Option<String>,
    pub parent_pci: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effects: Option<EffectsReport>,
}

impl DeviceReport {
    pub fn of(d: &Device, effects: Option<EffectsReport>) -> Self {
        Self {
            name: d.name.clone(),
            node: d.node.display().to_string(),
            kind: device_kind::label(d.kind),
            driver: driver::label(d.driver),
            kernel_driver: d.kernel_driver.clone(),
            dev: format!("{}:{}", d.major, d.minor),
            node_type: if d.block { "block" } else { "char" },
            parent: d.parent.clone(),
            parent_pci: d.parent_pci.clone(),
            effects,
        }
    }
}

/// The device table `probe` and `devices` print.
pub fn device_lines(devices: &[Device]) -> Vec<String> {
    if devices.is_empty() {
        return vec!["none found".into()];
    }
    let mut lines = vec![format!(
        "{:<12} {:<8} {:<8} {:<14} {:<10} {:<6} {:<14} parent-pci",
        "name", "class", "driver", "kernel-driver", "dev", "type", "parent"
    )];
    lines.extend(devices.iter().map(device_line));
    lines
}

fn device_line(d: &Device) -> String {
    format!(
        "{:<12} {:<8} {:<8} {:<14} {:<10} {:<6} {:<14} {}",
        d.name,
        device_kind::label(d.kind),
        driver::label(d.driver),
        d.kernel_driver.as_deref().unwrap_or("-"),
        format!("{}:{}", d.major, d.minor),
        if d.block { "block" } else { "char" },
        d.parent.as_deref().unwrap_or("-"),
        d.parent_pci.as_deref().unwrap_or("-")
    )
}

pub fn run(effects: bool, json: bool) -> Result<()> {
    let devices = inventory::scan_sysfs(Path::new("/sys"));
    let read = effects.then(|| read_all(&DeviceReader, &devices, &BTreeMap::new()));
    if json {
        let reports: Vec<DeviceReport> = match &read {
            Some(nodes) => {
                nodes.iter().map(|n| DeviceReport::of(&n.device, Some(EffectsReport::of(n)))).collect()
            }
            None => devices.iter().map(|d| DeviceReport::of(d, None)).collect(),
        };
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(());
    }
    match &read {
        None => device_lines(&devices).iter().for_each(|l| println!("{l}")),
        Some(nodes) => {
            if nodes.is_empty() {
                println!("none found");
            }
            for node in nodes {
                println!("{}", device_line(&node.device));
                print!("{}", report::text(node));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn json_names_the_node_and_its_parent() {
        let d = Device {
            name: "fwctl0".into(),
            kind: device_kind::FWCTL,
            driver: driver::CXL,
            block: false,
            major: 240,
            minor: 0,
            node: PathBuf::from("/dev/fwctl/fwctl0"),
            sysfs: PathBuf::new(),
            parent: Some("mem0".into()),
            kernel_driver: Some("cxl_pci".into()),
            parent_pci: Some("0000:0d:00.0".into()),
        };
        let json = serde_json::to_value(DeviceReport::of(&d, None)).unwrap();
        assert_eq!(json["node"], "/dev/fwctl/fwctl0");
        assert_eq!((json["kind"].as_str(), json["driver"].as_str()), (Some("fwctl"), Some("cxl")));
        assert_eq!((json["dev"].as_str(), json["type"].as_str()), (Some("240:0"), Some("char")));
        assert_eq!(json["parent"], "mem0");
        assert!(json.get("effects").is_none(), "only with --effects");
        let lines = device_lines(&[d]);
        assert!(lines[1].starts_with("fwctl0") && lines[1].contains("mem0"), "{lines:?}");
        assert_eq!(device_lines(&[]), ["none found"]);
    }
}
