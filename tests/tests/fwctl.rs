//! Tests on real fwctl devices: they run inside the QEMU guest of `cargo xtask vm-test
//! --kernel fwctl` (the fwctl test kernel, FWCTL + CXL_FEATURES, with the kernel's
//! cxl_test mock, whose CXL memdevs each register `/dev/fwctl/fwctlN`), where the in-guest
//! runner sets `FWCTL_GUARD_REQUIRE_VM=1`. On a machine without fwctl devices they print
//! why they skip.

use std::{
    fs::{File, OpenOptions},
    io,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use fwctl_guard_tests::{ioctls::*, privilege::vm_device};

/// `enum fwctl_rpc_scope`: FWCTL_RPC_CONFIGURATION.
const SCOPE_CONFIGURATION: u32 = 0;

/// Every `/dev/fwctl/fwctlN`, by N; `None` after printing why the test skips (a failure
/// under `FWCTL_GUARD_REQUIRE_VM=1`).
fn fwctl_nodes(test: &str) -> Option<Vec<PathBuf>> {
    vm_device(test, "/dev/fwctl/fwctl0")?;
    let mut nodes: Vec<(u32, PathBuf)> = std::fs::read_dir("/dev/fwctl")
        .expect("/dev/fwctl")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| Some((node_number(&p)?, p)))
        .collect();
    nodes.sort();
    Some(nodes.into_iter().map(|(_, p)| p).collect())
}

/// `fwctl7` → 7.
fn node_number(node: &Path) -> Option<u32> {
    node.file_name()?.to_str()?.strip_prefix("fwctl")?.parse().ok()
}

/// The major named `fwctl` in /proc/devices.
fn fwctl_major() -> Option<u32> {
    let devices = std::fs::read_to_string("/proc/devices").expect("/proc/devices");
    devices.lines().find_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
        [major, "fwctl"] => major.parse().ok(),
        _ => None,
    })
}

/// The node's parent device in sysfs (`/sys/class/fwctl/fwctlN/device`, resolved).
fn sysfs_parent(node: &Path) -> PathBuf {
    let name = node.file_name().expect("node name");
    let link = Path::new("/sys/class/fwctl").join(name).join("device");
    std::fs::canonicalize(&link).unwrap_or_else(|e| panic!("{}: {e}", link.display()))
}

fn open(node: &Path) -> File {
    OpenOptions::new().read(true).write(true).open(node).unwrap_or_else(|e| panic!("{}: {e}", node.display()))
}

/// FWCTL_INFO on `node`: the device type.
fn device_type(node: &Path) -> io::Result<u32> {
    let file = open(node);
    let mut data = [0u8; 64];
    let mut info = fwctl_info(&mut data);
    if ioctl(file.as_raw_fd(), FWCTL_INFO, info.as_mut_ptr() as u64) != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fwctl_info_device_type(&info))
}

/// FWCTL_RPC on `file` at `scope`; fills `out` (a `struct fwctl_rpc_cxl_out` for CXL).
fn rpc(file: &File, scope: u32, payload: &[u8], out: &mut [u8]) -> io::Result<()> {
    let mut cmd = fwctl_rpc(scope, payload, out);
    if ioctl(file.as_raw_fd(), FWCTL_RPC, cmd.as_mut_ptr() as u64) != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// One `struct cxl_feat_entry` of a Get Supported Features reply.
#[derive(Debug)]
struct Feature {
    uuid: [u8; 16],
    get_size: u16,
    set_size: u16,
    flags: u32,
    effects: u16,
}

/// The entries of a `struct fwctl_rpc_cxl_out` carrying Get Supported Features output
/// (`size`@0, `retval`@4, then `num_entries` le16 @8, entries from @16).
fn supported_features(out: &[u8]) -> Vec<Feature> {
    let entries = le16(out, 8) as usize;
    (0..entries)
        .map(|i| {
            let e = &out[16 + i * CXL_FEAT_ENTRY_LEN..16 + (i + 1) * CXL_FEAT_ENTRY_LEN];
            Feature {
                uuid: e[0..16].try_into().unwrap(),
                get_size: le16(e, 18),
                set_size: le16(e, 20),
                flags: le32(e, 22),
                effects: le16(e, 28),
            }
        })
        .collect()
}

#[test]
fn fwctl_nodes_are_cxl_memdevs_with_the_fwctl_major() {
    let Some(nodes) = fwctl_nodes("fwctl_nodes_are_cxl_memdevs_with_the_fwctl_major") else { return };
    let major = fwctl_major().expect("a major named fwctl in /proc/devices");
    println!("fwctl major {major}: {} nodes", nodes.len());
    for node in &nodes {
        let rdev = std::fs::metadata(node).unwrap().rdev();
        assert_eq!(libc::major(rdev), major, "{}", node.display());
        let parent = sysfs_parent(node);
        let name = parent.file_name().unwrap().to_string_lossy().into_owned();
        let bus = std::fs::canonicalize(parent.join("subsystem")).unwrap();
        println!(
            "{} {}:{} parent {}",
            node.display(),
            libc::major(rdev),
            libc::minor(rdev),
            parent.display()
        );
        assert!(
            name.strip_prefix("mem").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
            "{}: parent {} is not a memN",
            node.display(),
            parent.display()
        );
        assert_eq!(
            bus,
            Path::new("/sys/bus/cxl"),
            "{}: parent {} is not on the cxl bus",
            node.display(),
            name
        );
    }
}

#[test]
fn fwctl_info_reports_cxl() {
    let Some(nodes) = fwctl_nodes("fwctl_info_reports_cxl") else { return };
    for node in &nodes {
        let kind = device_type(node).unwrap_or_else(|e| panic!("FWCTL_INFO on {}: {e}", node.display()));
        assert_eq!(kind, FWCTL_DEVICE_TYPE_CXL, "{}", node.display());
    }
}

#[test]
fn cxl_get_supported_features_over_fwctl_succeeds() {
    let Some(nodes) = fwctl_nodes("cxl_get_supported_features_over_fwctl_succeeds") else { return };
    let file = open(&nodes[0]);
    let payload = cxl_get_supported_features(8 * CXL_FEAT_ENTRY_LEN as u32, 0);
    let mut out = vec![0u8; 4096];
    rpc(&file, SCOPE_CONFIGURATION, &payload, &mut out)
        .unwrap_or_else(|e| panic!("Get Supported Features on {}: {e}", nodes[0].display()));
    assert_eq!(le32(&out, 4), 0, "device retval");
    let features = supported_features(&out);
    for f in &features {
        println!(
            "feature uuid {} get {} set {} flags {:#x} effects {:#x}",
            f.uuid.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            f.get_size,
            f.set_size,
            f.flags,
            f.effects
        );
    }
    assert!(!features.is_empty(), "the mock reports at least one feature");
}
