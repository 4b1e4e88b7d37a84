//! Which device nodes carry passthrough commands on this host: the majors the kernel
//! registered (`/proc/devices`), the nodes sysfs lists (with driver and parent PCI
//! function), and the nodes the operator declared in the configuration. The result is the
//! content of the kernel's `DEVICES` map and the device list `probe` prints.

use std::{
    fs,
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use fwctl_common::{
    device_number::{device_key, ANY_MINOR},
    model::{device_kind, driver, DeviceInfo},
};

use super::fwctl_info;
use crate::config::{parse_major_minor, DeclaredDevice};

/// One entry of the kernel's device map, with where it came from (for logs).
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEntry {
    pub block: bool,
    pub major: u32,
    /// `None`: every minor of the major.
    pub minor: Option<u32>,
    pub info: DeviceInfo,
    pub source: String,
}

impl WatchEntry {
    pub fn key(&self) -> u64 {
        device_key(self.block, self.major, self.minor.unwrap_or(ANY_MINOR))
    }
}

/// A passthrough-capable device node found in sysfs.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub name: String,
    pub kind: u8,
    pub driver: u8,
    pub block: bool,
    pub major: u32,
    pub minor: u32,
    /// Where the node is opened: `/dev/` + the kernel's name for it (uevent DEVNAME).
    pub node: PathBuf,
    /// Its directory under `/sys/class` (or `/sys/bus`).
    pub sysfs: PathBuf,
    /// The sysfs device the node hangs off: the controller of an NVMe namespace, the
    /// memdev of a CXL fwctl node, the PCI function of a controller.
    pub parent: Option<String>,
    /// The kernel driver bound to the nearest ancestor that has one.
    pub kernel_driver: Option<String>,
    /// PCI function (domain:bus:dev.fn) the device sits under.
    pub parent_pci: Option<String>,
}

impl Device {
    pub fn key(&self) -> u64 {
        device_key(self.block, self.major, self.minor)
    }

    pub fn watch_entry(&self) -> WatchEntry {
        WatchEntry {
            block: self.block,
            major: self.major,
            minor: Some(self.minor),
            info: info(self.kind, self.driver),
            source: format!("sysfs {}", self.name),
        }
    }
}

fn info(kind: u8, driver: u8) -> DeviceInfo {
    DeviceInfo { kind, driver, _pad: [0; 2] }
}

/// Registered majors whose every minor is a passthrough node, by `/proc/devices` name.
/// (`blkext`, shared by NVMe namespaces and others, is handled per node from sysfs.)
const MAJOR_NAMES: [(bool, &str, u8, u8); 8] = [
    (false, "fwctl", device_kind::FWCTL, driver::UNKNOWN),
    (false, "nvme", device_kind::NVME, driver::NVME),
    (false, "nvme-generic", device_kind::NVME, driver::NVME),
    (false, "cxl", device_kind::CXL_MEM, driver::CXL),
    (false, "sg", device_kind::SCSI, driver::SG),
    (false, "bsg", device_kind::SCSI, driver::BSG),
    (true, "sd", device_kind::SCSI, driver::SD),
    (true, "sr", device_kind::SCSI, driver::SR),
];

/// Parse `/proc/devices` into (block, major, name) rows.
pub fn parse_proc_devices(text: &str) -> Vec<(bool, u32, String)> {
    let mut block = false;
    let mut rows = Vec::new();
    for line in text.lines() {
        match line.trim() {
            "Character devices:" => block = false,
            "Block devices:" => block = true,
            other => {
                if let Some((major, name)) = other.split_once(char::is_whitespace) {
                    if let Ok(major) = major.parse() {
                        rows.push((block, major, name.trim().to_string()));
                    }
                }
            }
        }
    }
    rows
}

/// Major-wide watch entries for the registered passthrough majors.
pub fn major_entries(proc_devices: &[(bool, u32, String)]) -> Vec<WatchEntry> {
    let mut entries = Vec::new();
    for (block, major, name) in proc_devices {
        for (want_block, want_name, kind, drv) in MAJOR_NAMES {
            if *block == want_block && name == want_name {
                entries.push(WatchEntry {
                    block: *block,
                    major: *major,
                    minor: None,
                    info: info(kind, drv),
                    source: format!("/proc/devices {name}"),
                });
            }
        }
    }
    entries
}

/// What the agent watches from start-up.
pub struct Watchlist {
    /// The device map's content: registered majors, sysfs nodes, declared devices.
    pub entries: Vec<WatchEntry>,
    /// The nodes sysfs lists (their effects are read).
    pub sysfs: Vec<Device>,
    /// Device-map keys the configuration declares (kept when sysfs loses them).
    pub declared_keys: std::collections::BTreeSet<u64>,
}

/// Gather the watch list: `/proc/devices`, sysfs under `sys_root`, and `declared`.
pub fn watchlist(sys_root: &Path, declared: &[DeclaredDevice]) -> Result<Watchlist> {
    let mut entries = major_entries(&parse_proc_devices(
        &fs::read_to_string("/proc/devices").context("reading /proc/devices")?,
    ));
    let sysfs = scan_sysfs(sys_root);
    entries.extend(sysfs.iter().map(Device::watch_entry));
    let declared = declared_entries(declared).context("configuration: devices")?;
    let declared_keys = declared.iter().map(WatchEntry::key).collect();
    entries.extend(declared);
    Ok(Watchlist { entries, sysfs, declared_keys })
}

/// Watch entries for devices declared in the configuration.
pub fn declared_entries(devices: &[DeclaredDevice]) -> Result<Vec<WatchEntry>> {
    devices
        .iter()
        .enumerate()
        .map(|(i, device)| {
            let (block, major, minor, source) = match (&device.path, &device.major_minor) {
                (Some(path), _) => {
                    let (block, major, minor) =
                        node_numbers(path).with_context(|| format!("devices[{i}]"))?;
                    (block, major, minor, format!("config {}", path.display()))
                }
                (None, Some(mm)) => {
                    let (major, minor) = parse_major_minor(mm)?;
                    (device.block, major, minor, format!("config {mm}"))
                }
                (None, None) => anyhow::bail!("devices[{i}]: neither path nor major_minor"),
            };
            Ok(WatchEntry {
                block,
                major,
                minor: Some(minor),
                info: info(device.kind()?, device.driver()?),
                source,
            })
        })
        .collect()
}

/// (block?, major, minor) of a device node.
pub fn node_numbers(path: &Path) -> Result<(bool, u32, u32)> {
    let meta = fs::metadata(path).with_context(|| format!("{}: cannot stat", path.display()))?;
    let file_type = meta.file_type();
    let block = if file_type.is_block_device() {
        true
    } else if file_type.is_char_device() {
        false
    } else {
        anyhow::bail!("{}: not a device node", path.display());
    };
    let rdev = meta.rdev();
    Ok((block, libc::major(rdev), libc::minor(rdev)))
}

/// Where each kind of passthrough node is listed in sysfs.
const SYSFS_CLASSES: [(&str, u8, u8, Option<&str>); 7] = [
    ("class/fwctl", device_kind::FWCTL, driver::UNKNOWN, None),
    ("class/nvme", device_kind::NVME, driver::NVME, None),
    ("class/nvme-generic", device_kind::NVME, driver::NVME, None),
    ("class/block", device_kind::NVME, driver::NVME, Some("nvme")),
    ("bus/cxl/devices", device_kind::CXL_MEM, driver::CXL, Some("mem")),
    ("class/scsi_generic", device_kind::SCSI, driver::SG, None),
    ("class/bsg", device_kind::SCSI, driver::BSG, None),
];

/// A passthrough node as sysfs lists it: cheap to collect (no ioctl, no symlink walk), so
/// the agent can compare lists to notice hot-plug.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Node {
    pub name: String,
    pub kind: u8,
    /// The listing's driver; fwctl nodes get theirs in [`describe`].
    pub driver: u8,
    pub block: bool,
    pub major: u32,
    pub minor: u32,
    /// Its directory under `/sys/class` (or `/sys/bus`).
    pub sysfs: PathBuf,
}

impl Node {
    pub fn key(&self) -> u64 {
        device_key(self.block, self.major, self.minor)
    }
}

/// Every passthrough node sysfs lists (under `sys_root`, normally `/sys`), without details.
pub fn list_sysfs(sys_root: &Path) -> Vec<Node> {
    let mut nodes = Vec::new();
    for (dir, kind, driver, prefix) in SYSFS_CLASSES {
        let Ok(entries) = fs::read_dir(sys_root.join(dir)) else { continue };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if prefix.is_some_and(|p| !name.starts_with(p)) {
                continue;
            }
            let Some((major, minor)) =
                fs::read_to_string(path.join("dev")).ok().and_then(|t| parse_major_minor(t.trim()).ok())
            else {
                continue;
            };
            nodes.push(Node { name, kind, driver, block: dir == "class/block", major, minor, sysfs: path });
        }
    }
    nodes
}

/// Every passthrough node sysfs knows of (under `sys_root`, normally `/sys`).
pub fn scan_sysfs(sys_root: &Path) -> Vec<Device> {
    list_sysfs(sys_root).iter().map(describe).collect()
}

/// A listed node with its drivers, parents and `/dev` path.
pub fn describe(node: &Node) -> Device {
    let path = &node.sysfs;
    let real = fs::canonicalize(path).unwrap_or(path.clone());
    // Class devices link to their parent as `device`; bus devices sit inside it.
    let (device_dir, parent) = match fs::canonicalize(path.join("device")) {
        Ok(dir) => (dir.clone(), Some(dir)),
        Err(_) => (real.clone(), real.parent().map(Path::to_path_buf)),
    };
    let kernel_driver = nearest_driver(&device_dir);
    let dev = dev_path(path, &node.name);
    let drv = if node.kind == device_kind::FWCTL {
        fwctl_driver(&dev, kernel_driver.as_deref())
    } else {
        node.driver
    };
    Device {
        name: node.name.clone(),
        kind: node.kind,
        driver: drv,
        block: node.block,
        major: node.major,
        minor: node.minor,
        node: dev,
        sysfs: path.clone(),
        parent: parent.as_deref().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned()),
        kernel_driver,
        parent_pci: parent_pci(&device_dir),
    }
}

/// `/dev/` + the uevent's DEVNAME (`cxl/mem0`, `fwctl/fwctl0`, `bsg/...`), else `/dev/NAME`.
fn dev_path(sysfs: &Path, name: &str) -> PathBuf {
    let devname = fs::read_to_string(sysfs.join("uevent"))
        .ok()
        .and_then(|text| text.lines().find_map(|l| l.strip_prefix("DEVNAME=").map(str::to_string)));
    Path::new("/dev").join(devname.unwrap_or_else(|| name.to_string()))
}

/// The fwctl driver of `node`: FWCTL_INFO's device type, else the sysfs driver name.
fn fwctl_driver(node: &Path, kernel_driver: Option<&str>) -> u8 {
    if let Some(t) = fwctl_info::device_type(node) {
        if driver::label(t as u8) != "unknown" && t <= driver::PDS as u32 {
            return t as u8;
        }
    }
    match kernel_driver {
        Some(d) if d.contains("mlx5") => driver::MLX5,
        Some(d) if d.contains("cxl") => driver::CXL,
        Some(d) if d.contains("pds") => driver::PDS,
        Some(d) if d.contains("bnxt") => driver::BNXT,
        _ => driver::UNKNOWN,
    }
}

fn nearest_driver(dir: &Path) -> Option<String> {
    dir.ancestors().take(8).find_map(|d| {
        fs::read_link(d.join("driver"))
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
    })
}

fn parent_pci(dir: &Path) -> Option<String> {
    dir.ancestors().find_map(|d| {
        let name = d.file_name()?.to_str()?;
        is_pci_bdf(name).then(|| name.to_string())
    })
}

/// `dddd:bb:dd.f` in hex.
pub fn is_pci_bdf(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && b.iter().enumerate().all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_DEVICES: &str = "Character devices:\n  1 mem\n 21 sg\n136 pts\n238 nvme-generic\n239 nvme\n240 fwctl\n241 cxl\n248 bsg\n\nBlock devices:\n  8 sd\n 11 sr\n259 blkext\n";

    #[test]
    fn proc_devices_majors_become_watch_entries() {
        let rows = parse_proc_devices(PROC_DEVICES);
        assert!(rows.contains(&(false, 240, "fwctl".into())));
        assert!(rows.contains(&(true, 259, "blkext".into())));
        let entries = major_entries(&rows);
        let find = |block, major| entries.iter().find(|e| e.block == block && e.major == major);
        assert_eq!(find(false, 240).unwrap().info.kind, device_kind::FWCTL);
        assert_eq!(find(false, 239).unwrap().info.kind, device_kind::NVME);
        assert_eq!(find(false, 238).unwrap().info.kind, device_kind::NVME);
        assert_eq!(find(false, 241).unwrap().info.kind, device_kind::CXL_MEM);
        assert_eq!(find(false, 21).unwrap().info.driver, driver::SG);
        assert_eq!(find(true, 8).unwrap().info.driver, driver::SD);
        assert!(find(false, 1).is_none(), "mem is not a passthrough major");
        assert!(find(true, 259).is_none(), "blkext is shared: watched per node only");
        assert!(find(false, 136).is_none());
    }

    #[test]
    fn declared_device_by_path_uses_the_node_numbers() {
        let devices = vec![DeclaredDevice {
            path: Some("/dev/null".into()),
            major_minor: None,
            block: false,
            class: "nvme".into(),
            driver: None,
        }];
        let entries = declared_entries(&devices).unwrap();
        assert_eq!((entries[0].major, entries[0].minor, entries[0].block), (1, Some(3), false));
        assert_eq!(entries[0].info.kind, device_kind::NVME);

        let bad = vec![DeclaredDevice { path: Some("/etc/hostname".into()), ..devices[0].clone() }];
        assert!(format!("{:#}", declared_entries(&bad).unwrap_err()).contains("not a device node"));
    }

    #[test]
    fn pci_bdf_recognised() {
        assert!(is_pci_bdf("0000:3b:00.1"));
        assert!(!is_pci_bdf("pci0000:00"));
        assert!(!is_pci_bdf("0000:3b:00"));
        assert!(!is_pci_bdf("mem0"));
    }

    #[test]
    fn scanning_this_host_never_fails() {
        for device in scan_sysfs(Path::new("/sys")) {
            assert!(device.kind != 0, "{device:?}");
        }
        assert!(scan_sysfs(Path::new("/nonexistent")).is_empty());
    }
}
