//! Tests on real fwctl devices: they run inside the QEMU guest of `cargo xtask vm-test
//! --kernel fwctl` (the fwctl test kernel, FWCTL + CXL_FEATURES, with the kernel's
//! cxl_test mock, whose CXL memdevs each register `/dev/fwctl/fwctlN`), where the in-guest
//! runner sets `FWCTL_GUARD_REQUIRE_VM=1`. On a machine without fwctl devices they are
//! reported as ignored.
//!
//! Order matters (tests run in name order): an allowed debug-write RPC taints the kernel
//! for good, and `fwctl_rpcs_are_gated_...` must see it untainted, so it runs before
//! `fwctl_toctou_...`, whose race may land one.

use std::{
    fs::{File, OpenOptions},
    io,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    process::Command,
};

use fwctl_guard_tests::{
    agent::{agent_binary, Agent},
    ioctls::*,
    metrics::Scrape,
    policies::policy_file,
    require, tests,
    trial::{Test, TestResult, Unmet},
};

pub const TESTS: &[Test] = tests![
    fwctl_nodes_are_cxl_memdevs_with_the_fwctl_major,
    fwctl_info_reports_cxl,
    cxl_get_supported_features_over_fwctl_succeeds,
    fwctl_rpcs_are_gated_counted_and_checked_against_the_kernel_copy,
    fwctl_toctou_opcode_flip_is_detected_at_the_driver,
];

/// `enum fwctl_rpc_scope`: FWCTL_RPC_CONFIGURATION.
const SCOPE_CONFIGURATION: u32 = 0;

/// Every `/dev/fwctl/fwctlN`, by N (at least `fwctl0`, else the test cannot run here).
fn fwctl_nodes() -> Result<Vec<PathBuf>, Unmet> {
    require::device("/dev/fwctl/fwctl0")?;
    let mut nodes: Vec<(u32, PathBuf)> = std::fs::read_dir("/dev/fwctl")
        .expect("/dev/fwctl")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| Some((node_number(&p)?, p)))
        .collect();
    nodes.sort();
    Ok(nodes.into_iter().map(|(_, p)| p).collect())
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

fn fwctl_nodes_are_cxl_memdevs_with_the_fwctl_major() -> TestResult {
    let nodes = fwctl_nodes()?;
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
    Ok(())
}

fn fwctl_info_reports_cxl() -> TestResult {
    let nodes = fwctl_nodes()?;
    for node in &nodes {
        let kind = device_type(node).unwrap_or_else(|e| panic!("FWCTL_INFO on {}: {e}", node.display()));
        assert_eq!(kind, FWCTL_DEVICE_TYPE_CXL, "{}", node.display());
    }
    Ok(())
}

fn cxl_get_supported_features_over_fwctl_succeeds() -> TestResult {
    let nodes = fwctl_nodes()?;
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
    Ok(())
}

// ---- The agent on real fwctl devices ------------------------------------------------

/// `enum fwctl_rpc_scope`.
const SCOPE_DEBUG_WRITE: u32 = 2;
/// The cxl_test mock's one feature (a vendor test feature, 4 bytes, initially 0xdeadbeef).
const MOCK_FEATURE: [u8; 16] = [0xff; 16];
/// TAINT_FWCTL (include/linux/panic.h): a fwctl RPC at a debug-write scope reached a device.
const TAINT_FWCTL: u64 = 1 << 19;

fn tainted_fwctl() -> bool {
    let mask: u64 = std::fs::read_to_string("/proc/sys/kernel/tainted").unwrap().trim().parse().unwrap();
    mask & TAINT_FWCTL != 0
}

/// `struct fwctl_rpc_cxl` for Get Feature: header (opcode, flags, op_size, reserved) then
/// `cxl_mbox_get_feat_in { uuid, le16 offset, le16 count, u8 selection }`.
fn get_feature_payload(uuid: [u8; 16], count: u16) -> Vec<u8> {
    let mut p = vec![0u8; 16 + 21];
    p[0..4].copy_from_slice(&(CXL_GET_FEATURE as u32).to_le_bytes());
    p[8..12].copy_from_slice(&21u32.to_le_bytes());
    p[16..32].copy_from_slice(&uuid);
    p[34..36].copy_from_slice(&count.to_le_bytes());
    p
}

/// `struct fwctl_rpc_cxl` for Set Feature: header, then `cxl_mbox_set_feat_in { uuid,
/// le32 flags (full data transfer), le16 offset, u8 version, u8 rsvd[9] }` and the data.
fn set_feature_payload(uuid: [u8; 16], data: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 16 + 32];
    p[0..4].copy_from_slice(&(CXL_SET_FEATURE as u32).to_le_bytes());
    p[8..12].copy_from_slice(&((32 + data.len()) as u32).to_le_bytes());
    p[16..32].copy_from_slice(&uuid);
    p[38] = 1; // set_feat_ver of the mock's feature
    p.extend_from_slice(data);
    p
}

/// Identify (0x4000): a command fwctl does not pass to CXL devices.
fn identify_payload() -> Vec<u8> {
    let mut p = vec![0u8; 16];
    p[0..4].copy_from_slice(&0x4000u32.to_le_bytes());
    p
}

/// The mock feature's current value, read through fwctl (Get Feature, configuration scope).
fn feature_value(file: &File) -> [u8; 4] {
    let mut out = vec![0u8; 64];
    rpc(file, SCOPE_CONFIGURATION, &get_feature_payload(MOCK_FEATURE, 4), &mut out).expect("Get Feature");
    assert_eq!(le32(&out, 4), 0, "Get Feature retval");
    out[8..12].try_into().unwrap()
}

fn errno(result: io::Result<()>) -> Option<i32> {
    result.err().map(|e| e.raw_os_error().unwrap_or(0))
}

fn fwctl_count(scrape: &Scrape, extra: &[(&str, &str)]) -> f64 {
    let mut labels = vec![("class", "fwctl"), ("driver", "cxl")];
    labels.extend_from_slice(extra);
    scrape.sum("fwctl_guard_commands_total", &labels)
}

/// One test, in this order, because the allowed debug-write taints the kernel for good:
/// 1. a policy denying Set Feature at debug-write refuses it with EPERM before the kernel's
///    own path — the feature value is unchanged and TAINT_FWCTL stays clear;
/// 2. an effects rule (the mock declares its feature's Set Feature effects as
///    config-change-cold-reset) refuses Set Feature at configuration scope without naming
///    the opcode (EPERM, where the kernel itself would say EINVAL);
/// 3. with those out of the way, Get Supported Features, Get Feature, Set Feature at
///    debug-write (succeeds, taints) and the refused Identify are counted with class
///    fwctl, driver cxl, opcode, scope, result and latency; the taint metric goes to 1;
/// 4. the kernel-copy probe on cxlctl_fw_rpc saw every RPC that reached the driver, each
///    matching what the LSM hook decided.
fn fwctl_rpcs_are_gated_counted_and_checked_against_the_kernel_copy() -> TestResult {
    let nodes = fwctl_nodes()?;
    require::deny_hook()?;
    assert!(!tainted_fwctl(), "the kernel is already tainted by fwctl: this test must run first");
    let node = &nodes[0];
    let file = open(node);
    let policy = policy_file(
        "fwctl-gate.yaml",
        "version: 1\nname: fwctl-gate\nmode: enforce\ndefault: allow\nrules:\n  - name: no-debug-set-feature\n    action: deny\n    match: {class: fwctl, driver: cxl, opcode: set-feature, scope: debug-write}\n  - name: no-reset-effects-at-configuration\n    action: deny\n    match: {class: fwctl, scope: configuration, effects: [config-change-cold-reset]}\n",
    );
    let mut agent =
        Agent::start_with("fwctl", &[], 1 << 20, &["--policy", policy.to_str().unwrap()]).unwrap();

    // The agent knows the node as fwctl/cxl and read the feature's declared effects.
    let devices = Command::new(agent_binary()).args(["devices", "--effects", "--json"]).output().unwrap();
    assert!(devices.status.success(), "{}", String::from_utf8_lossy(&devices.stderr));
    let devices: serde_json::Value = serde_json::from_slice(&devices.stdout).unwrap();
    let fwctl0 = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["node"] == node.to_str().unwrap())
        .unwrap_or_else(|| panic!("{} not listed: {devices:#}", node.display()));
    assert_eq!(
        (fwctl0["kind"].as_str(), fwctl0["driver"].as_str()),
        (Some("fwctl"), Some("cxl")),
        "{fwctl0:#}"
    );
    assert!(fwctl0["parent"].as_str().is_some_and(|p| p.starts_with("mem")), "{fwctl0:#}");
    let tables = fwctl0["effects"]["tables"].as_array().unwrap_or_else(|| panic!("no effects: {fwctl0:#}"));
    let table = tables.iter().find(|t| t["class"] == "fwctl").unwrap_or_else(|| panic!("{fwctl0:#}"));
    let rows = table["opcodes"].as_array().unwrap();
    let set = rows
        .iter()
        .find(|r| r["name"] == "set-feature" && r["feature"] == "ffffffff-ffff-ffff-ffff-ffffffffffff")
        .unwrap_or_else(|| panic!("no Set Feature row for the mock feature: {fwctl0:#}"));
    assert!(set["effects"].as_array().unwrap().iter().any(|e| e == "config-change-cold-reset"), "{set}");

    // 1. Denied before the kernel's path: EPERM, value unchanged, no taint.
    let before = feature_value(&file);
    let write = set_feature_payload(MOCK_FEATURE, &[0x11, 0x22, 0x33, 0x44]);
    let mut out = vec![0u8; 64];
    assert_eq!(errno(rpc(&file, SCOPE_DEBUG_WRITE, &write, &mut out)), Some(libc::EPERM));
    assert_eq!(feature_value(&file), before, "a refused Set Feature changed the feature");
    assert!(!tainted_fwctl(), "TAINT_FWCTL set although the command was refused");
    // 2. The effects rule decides Set Feature at configuration scope.
    assert_eq!(errno(rpc(&file, SCOPE_CONFIGURATION, &write, &mut out)), Some(libc::EPERM));
    let scrape = agent.wait_audit_events(4).unwrap();
    assert_eq!(scrape.sum("fwctl_guard_kernel_tainted", &[("flag", "fwctl")]), 0.0, "{}", scrape.text);
    assert_eq!(
        fwctl_count(
            &scrape,
            &[
                ("opcode_name", "set-feature"),
                ("scope", "configuration"),
                ("rule", "no-reset-effects-at-configuration")
            ]
        ),
        1.0,
        "{}",
        scrape.text
    );
    agent.stop().unwrap();

    // 3. Allowed: every command counted with its scope and result; the write lands and taints.
    let mut agent = Agent::start("fwctl-allow", &[], 1 << 20).unwrap();
    let mut supported = vec![0u8; 4096];
    let list = cxl_get_supported_features(8 * CXL_FEAT_ENTRY_LEN as u32, 0);
    rpc(&file, SCOPE_CONFIGURATION, &list, &mut supported).expect("Get Supported Features");
    assert_eq!(feature_value(&file), before);
    rpc(&file, SCOPE_DEBUG_WRITE, &write, &mut out).expect("Set Feature at debug-write");
    assert_eq!(feature_value(&file), [0x11, 0x22, 0x33, 0x44], "the allowed write landed");
    assert!(tainted_fwctl(), "a debug-write RPC taints the kernel");
    assert_eq!(errno(rpc(&file, SCOPE_CONFIGURATION, &identify_payload(), &mut out)), Some(libc::EINVAL));
    let scrape = agent.wait_audit_events(5).unwrap();
    let ok = |name, scope| fwctl_count(&scrape, &[("opcode_name", name), ("scope", scope), ("result", "ok")]);
    assert_eq!(ok("get-supported-features", "configuration"), 1.0, "{}", scrape.text);
    assert_eq!(ok("get-feature", "configuration"), 2.0, "{}", scrape.text);
    assert_eq!(ok("set-feature", "debug-write"), 1.0, "{}", scrape.text);
    assert_eq!(
        fwctl_count(&scrape, &[("opcode_name", "identify"), ("scope", "configuration"), ("result", "error")]),
        1.0,
        "{}",
        scrape.text
    );
    assert_eq!(scrape.sum("fwctl_guard_kernel_tainted", &[("flag", "fwctl")]), 1.0, "{}", scrape.text);
    // The inventory metric lists every fwctl node with its memdev parent.
    let fwctl_info: Vec<_> = scrape
        .samples
        .iter()
        .filter(|(s, _)| {
            s.name == "fwctl_guard_device_info" && s.labels.get("class").map(String::as_str) == Some("fwctl")
        })
        .collect();
    assert_eq!(fwctl_info.len(), nodes.len(), "{}", scrape.text);
    assert!(
        fwctl_info.iter().all(|(s, _)| s.labels["driver"] == "cxl" && s.labels["parent"].starts_with("mem")),
        "{fwctl_info:?}"
    );

    // 4. The probe on cxlctl_fw_rpc saw the kernel's copy of each of those five RPCs.
    assert_eq!(
        scrape.sum("fwctl_guard_fwctl_rpc_checks_total", &[("driver", "cxl"), ("outcome", "match")]),
        5.0,
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.sum("fwctl_guard_fwctl_rpc_checks_total", &[("driver", "cxl")]),
        5.0,
        "no other outcome: {}",
        scrape.text
    );
    assert_eq!(scrape.sum("fwctl_guard_toctou_detected_total", &[("class", "fwctl")]), 0.0);
    agent.stop().unwrap();
    let records = agent.audit_records().unwrap();
    let set = records
        .iter()
        .find(|r| r["opcode_name"] == "set-feature")
        .unwrap_or_else(|| panic!("no set-feature record: {records:#?}"));
    assert_eq!((set["class"].as_str(), set["driver"].as_str()), (Some("fwctl"), Some("cxl")), "{set}");
    assert_eq!((set["scope"].as_str(), set["ret"].as_i64()), (Some("debug-write"), Some(0)), "{set}");
    assert!(set["latency_ns"].as_u64().is_some_and(|l| l > 0), "{set}");
    assert_eq!(set["feature"], "ffffffff-ffff-ffff-ffff-ffffffffffff", "{set}");
    Ok(())
}

/// The fwctl TOCTOU race: a thread flips the CXL opcode in the RPC payload
/// between Get Feature (allowed) and Set Feature (denied) while another sends it at
/// debug-write scope. A Set Feature that slips past the LSM hook reaches cxlctl_fw_rpc with
/// the kernel's copy of the payload, where the probe must see the difference; under
/// `on_toctou: kill` the racing process dies. The mock's feature value is the independent
/// witness: if it changed, a Set Feature landed, and it must have been detected.
fn fwctl_toctou_opcode_flip_is_detected_at_the_driver() -> TestResult {
    let nodes = fwctl_nodes()?;
    require::deny_hook()?;
    const TRIES: u32 = 20_000;
    let file = open(&nodes[0]);
    let policy = policy_file(
        "fwctl-race.yaml",
        "version: 1\nname: fwctl-race\nmode: enforce\ndefault: allow\non_toctou: kill\nrules:\n  - name: no-set-feature\n    action: deny\n    match: {class: fwctl, driver: cxl, opcode: set-feature}\n",
    );
    let agent =
        Agent::start_with("fwctl-race", &[], 1 << 22, &["--policy", policy.to_str().unwrap()]).unwrap();
    let marker = [0xab, 0xcd, 0xef, 0x01];
    let before = feature_value(&file);
    assert_ne!(before, marker);
    // A Set Feature payload whose Get Feature reading is also valid: the set flags word
    // doubles as Get Feature's (offset 0, count 4).
    let mut payload = set_feature_payload(MOCK_FEATURE, &marker);
    payload[32..36].copy_from_slice(&0x0004_0000u32.to_le_bytes());
    payload[0..4].copy_from_slice(&(CXL_GET_FEATURE as u32).to_le_bytes());
    // SAFETY: the child races and exits; only syscalls and one thread.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        race_opcode(&file, payload, TRIES);
        // SAFETY: leave the forked child without the harness's exit path.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let killed = libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL;
    std::thread::sleep(std::time::Duration::from_millis(500));
    let scrape = agent.scrape().unwrap();
    let changed =
        scrape.sum("fwctl_guard_fwctl_rpc_checks_total", &[("driver", "cxl"), ("outcome", "opcode_changed")]);
    let detected = scrape.sum("fwctl_guard_toctou_detected_total", &[("class", "fwctl")]);
    let landed = feature_value(&file) == marker;
    println!(
        "fwctl TOCTOU race: {changed} kernel copies differed from the decision, {detected} detected, \
         write landed: {landed}, racer killed: {killed}"
    );
    if changed == 0.0 && !landed {
        println!("race not won in {TRIES} tries: nothing to detect");
        return Ok(());
    }
    assert!(
        detected >= 1.0 && changed >= 1.0,
        "a Set Feature reached the driver undetected\n{}",
        scrape.text
    );
    assert!(killed, "on_toctou: kill did not kill the racer (status {status:#x})");
    Ok(())
}

/// The racing child's body: send the payload while a thread flips its opcode.
fn race_opcode(file: &File, mut payload: Vec<u8>, tries: u32) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let at = payload.as_mut_ptr() as usize;
    let flipper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let opcode = at as *mut u32;
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: the payload outlives this thread (joined below); racing is the point.
                unsafe {
                    std::ptr::write_volatile(opcode, CXL_SET_FEATURE as u32);
                    std::ptr::write_volatile(opcode, CXL_GET_FEATURE as u32);
                }
            }
        })
    };
    let mut out = vec![0u8; 64];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for _ in 0..tries {
        let _ = rpc(file, SCOPE_DEBUG_WRITE, &payload, &mut out);
        if std::time::Instant::now() > deadline {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
}
