//! The agent's copy of what every device declares, kept in the kernel maps while devices
//! come and go: read at start-up, then every few seconds the sysfs listing is compared
//! with the last one; new nodes are added to the device map and read, vanished ones are
//! taken out of both maps.

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    path::PathBuf,
    time::Duration,
};

use fwctl_common::model::{class, DeviceInfo};
use tokio::sync::watch;

use super::{
    install::{EffectsMap, Installer},
    metrics::EffectsMetrics,
    read::{read_all, DeviceReader, NodeEffects, Outcome, Reader},
};
use crate::{
    devices::inventory::{self, Device, Node},
    names,
};

/// How often sysfs is listed to notice hot-plug.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(5);
/// A node whose read failed is read again on this many later rescans: a device that
/// just appeared may still be initialising.
pub const RETRIES: u32 = 3;

/// The kernel's `DEVICES` map (a BTreeMap in tests).
pub trait DeviceMap {
    fn insert(&mut self, key: u64, info: DeviceInfo) -> io::Result<()>;
    fn remove(&mut self, key: u64) -> io::Result<()>;
}

/// Which node a sysfs listing entry is: a node replaced under the same name with other
/// numbers is a different one.
type Identity = (String, bool, u32, u32);

fn identity_of_node(n: &Node) -> Identity {
    (n.name.clone(), n.block, n.major, n.minor)
}

fn identity_of_device(d: &Device) -> Identity {
    (d.name.clone(), d.block, d.major, d.minor)
}

/// The classes whose tables devices declare (their entry gauges are always exported).
const DECLARING_CLASSES: [u8; 4] = [class::FWCTL, class::NVME_ADMIN, class::NVME_IO, class::CXL_MEM];

pub struct DeviceEffects<M, D> {
    installer: Installer<M>,
    devices_map: D,
    /// Device-map keys the configuration declares: never removed on hot-unplug.
    declared_keys: BTreeSet<u64>,
    nodes: BTreeMap<String, NodeEffects>,
    /// Rescans that read a failed node again, by node name.
    retries: BTreeMap<String, u32>,
    metrics: EffectsMetrics,
}

/// A summary for the start-up banner.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub read: Vec<String>,
    pub failed: Vec<String>,
}

impl<M: EffectsMap, D: DeviceMap> DeviceEffects<M, D> {
    /// Read the effects of `devices` (the sysfs inventory the device map was filled from)
    /// and write them to the map.
    pub fn start(
        reader: &impl Reader,
        effects_map: M,
        devices_map: D,
        declared_keys: BTreeSet<u64>,
        devices: &[Device],
        metrics: EffectsMetrics,
    ) -> Self {
        let mut this = Self {
            installer: Installer::new(effects_map),
            devices_map,
            declared_keys,
            nodes: BTreeMap::new(),
            retries: BTreeMap::new(),
            metrics,
        };
        this.add(reader, devices);
        this.publish();
        this
    }

    /// Compare `listing` (the current sysfs listing) with the known nodes; add the new
    /// ones (`describe` gives their details), drop the vanished. True when anything changed.
    pub fn rescan(
        &mut self,
        reader: &impl Reader,
        listing: &[Node],
        describe: impl Fn(&Node) -> Device,
    ) -> bool {
        let current: BTreeSet<Identity> = listing.iter().map(identity_of_node).collect();
        let known: BTreeSet<Identity> = self.nodes.values().map(|n| identity_of_device(&n.device)).collect();
        let retry: Vec<Device> = self
            .nodes
            .values()
            .filter(|n| matches!(n.outcome, Outcome::Failed { .. } | Outcome::Unknown(_)))
            .filter(|n| current.contains(&identity_of_device(&n.device)))
            .filter(|n| self.retries.get(&n.device.name).copied().unwrap_or(0) < RETRIES)
            .map(|n| n.device.clone())
            .collect();
        if current == known && retry.is_empty() {
            return false;
        }
        let gone: Vec<String> = self
            .nodes
            .values()
            .filter(|n| !current.contains(&identity_of_device(&n.device)))
            .map(|n| n.device.name.clone())
            .collect();
        for name in gone {
            self.remove(&name);
        }
        for device in &retry {
            self.nodes.remove(&device.name);
            *self.retries.entry(device.name.clone()).or_default() += 1;
        }
        let mut new: Vec<Device> =
            listing.iter().filter(|n| !known.contains(&identity_of_node(n))).map(describe).collect();
        new.extend(retry);
        self.add(reader, &new);
        self.publish();
        true
    }

    /// What was read and what failed, by node name.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary::default();
        for (name, node) in &self.nodes {
            match node.outcome {
                Outcome::Read(_) => summary.read.push(name.clone()),
                Outcome::Failed { .. } => summary.failed.push(name.clone()),
                _ => {}
            }
        }
        summary
    }

    fn add(&mut self, reader: &impl Reader, devices: &[Device]) {
        for device in devices {
            if !self.nodes.contains_key(&device.name) {
                let entry = device.watch_entry();
                if let Err(e) = self.devices_map.insert(entry.key(), entry.info) {
                    log::warn!("adding {} to the device map: {e}", device.node.display());
                }
            }
        }
        for mut node in read_all(reader, devices, &self.nodes) {
            if let Outcome::Failed { class, error } = &node.outcome {
                self.count_failure(*class, &error.reason);
                log::warn!("effects of {} unknown: {error}", node.device.node.display());
            }
            match self.installer.install(&node) {
                Ok(0) => {}
                Ok(n) => log::info!("{}: {n} effects entries", node.device.node.display()),
                Err((class, error)) => {
                    self.count_failure(class, &error.reason);
                    log::warn!("effects of {} unknown: {error}", node.device.node.display());
                    node.outcome = Outcome::Failed { class, error };
                }
            }
            self.nodes.insert(node.device.name.clone(), node);
        }
    }

    fn remove(&mut self, name: &str) {
        self.installer.uninstall(name);
        self.retries.remove(name);
        if let Some(node) = self.nodes.remove(name) {
            let key = node.device.key();
            log::info!("{} is gone: its effects and device entry are removed", node.device.node.display());
            if !self.declared_keys.contains(&key) {
                if let Err(e) = self.devices_map.remove(key) {
                    log::warn!("removing {} from the device map: {e}", node.device.node.display());
                }
            }
        }
    }

    fn count_failure(&self, class: u8, reason: &str) {
        self.metrics.read_failures.with_label_values(&[class::label(class), reason]).inc();
    }

    /// Entry gauges from the map's content, and the per-opcode series when enabled.
    fn publish(&self) {
        let counts = self.installer.entries_per_class();
        for c in DECLARING_CLASSES {
            let n = counts.get(&c).copied().unwrap_or(0);
            self.metrics.entries.with_label_values(&[class::label(c)]).set(n as i64);
        }
        if let Some(per_opcode) = &self.metrics.opcode_effects {
            per_opcode.reset();
            for (device, key, effects) in self.installer.declarations() {
                let feature = if key.feature == [0; 16] { String::new() } else { names::uuid(&key.feature) };
                per_opcode
                    .with_label_values(&[
                        device,
                        class::label(key.class),
                        &names::opcode(key.opcode),
                        &feature,
                    ])
                    .set(i64::from(effects));
            }
        }
    }
}

impl<M: EffectsMap + Send + 'static, D: DeviceMap + Send + 'static> DeviceEffects<M, D> {
    /// Rescan every [`RESCAN_INTERVAL`] until `shutdown` flips.
    pub async fn watch(
        mut self,
        sys_root: PathBuf,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(RESCAN_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate; start-up already read everything
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let root = sys_root.clone();
                    // Listing sysfs and reading new devices' logs block: off the runtime.
                    self = tokio::task::spawn_blocking(move || {
                        self.rescan(&DeviceReader, &inventory::list_sysfs(&root), inventory::describe);
                        self
                    })
                    .await?;
                }
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use fwctl_common::{
        effects::{EffectsKey, Feature},
        model::{device_kind, driver},
    };

    use super::*;
    use crate::devices::effects::failure::ReadError;

    #[derive(Default)]
    struct Maps {
        effects: BTreeMap<EffectsKey, u32>,
        devices: BTreeMap<u64, DeviceInfo>,
    }

    impl EffectsMap for std::rc::Rc<std::cell::RefCell<Maps>> {
        fn insert(&mut self, key: EffectsKey, value: u32) -> io::Result<()> {
            self.borrow_mut().effects.insert(key, value);
            Ok(())
        }
        fn remove(&mut self, key: &EffectsKey) -> io::Result<()> {
            self.borrow_mut().effects.remove(key);
            Ok(())
        }
    }

    impl DeviceMap for std::rc::Rc<std::cell::RefCell<Maps>> {
        fn insert(&mut self, key: u64, info: DeviceInfo) -> io::Result<()> {
            self.borrow_mut().devices.insert(key, info);
            Ok(())
        }
        fn remove(&mut self, key: u64) -> io::Result<()> {
            self.borrow_mut().devices.remove(&key);
            Ok(())
        }
    }

    /// NVMe controllers answer with Identify only; memdevs fail with EACCES.
    #[derive(Default)]
    struct Fake {
        reads: Cell<usize>,
    }

    impl Reader for Fake {
        fn nvme_effects_log(&self, _: &Device) -> Result<Vec<u8>, ReadError> {
            self.reads.set(self.reads.get() + 1);
            let mut log = vec![0u8; 4096];
            log[0x06 * 4] = 1;
            Ok(log)
        }
        fn cel(&self, device: &Device) -> Result<Vec<u8>, ReadError> {
            self.reads.set(self.reads.get() + 1);
            Err(ReadError::os(io::Error::from_raw_os_error(libc::EACCES), device.node.display()))
        }
        fn features(&self, _: &Device) -> Result<Vec<Feature>, ReadError> {
            unreachable!()
        }
    }

    fn node(name: &str, kind: u8, minor: u32) -> Node {
        Node {
            name: name.into(),
            kind,
            driver: if kind == device_kind::NVME { driver::NVME } else { driver::CXL },
            block: false,
            major: 240,
            minor,
            sysfs: PathBuf::from("/nonexistent").join(name),
        }
    }

    fn describe(n: &Node) -> Device {
        Device {
            name: n.name.clone(),
            kind: n.kind,
            driver: n.driver,
            block: n.block,
            major: n.major,
            minor: n.minor,
            node: PathBuf::from("/dev").join(&n.name),
            sysfs: n.sysfs.clone(),
            parent: None,
            kernel_driver: None,
            parent_pci: None,
        }
    }

    fn gauge(metrics: &EffectsMetrics, class: &str) -> i64 {
        metrics.entries.with_label_values(&[class]).get()
    }

    #[test]
    fn start_reads_everything_and_hot_plug_adds_and_removes() {
        let maps = std::rc::Rc::new(std::cell::RefCell::new(Maps::default()));
        let metrics = EffectsMetrics::new(true).unwrap();
        let fake = Fake::default();
        let nvme0 = node("nvme0", device_kind::NVME, 0);
        let mem0 = node("mem0", device_kind::CXL_MEM, 1);
        let mut effects = DeviceEffects::start(
            &fake,
            maps.clone(),
            maps.clone(),
            BTreeSet::new(),
            &[describe(&nvme0), describe(&mem0)],
            metrics.clone(),
        );
        assert_eq!(effects.summary(), Summary { read: vec!["nvme0".into()], failed: vec!["mem0".into()] });
        assert_eq!(gauge(&metrics, "nvme-admin"), 2, "identify + marker");
        assert_eq!(gauge(&metrics, "nvme-io"), 1);
        assert_eq!(gauge(&metrics, "cxl-mem"), 0);
        assert_eq!(metrics.read_failures.with_label_values(&["cxl-mem", "eacces"]).get(), 1);
        let per_opcode = metrics.opcode_effects.as_ref().unwrap();
        assert_eq!(per_opcode.with_label_values(&["nvme0", "nvme-admin", "0x0006", ""]).get(), 0);
        assert_eq!(maps.borrow().effects.len(), 3);
        assert_eq!(maps.borrow().devices.len(), 2, "every node watched");

        // Nothing new: the failed memdev is read again, a bounded number of times.
        let reads = fake.reads.get();
        for _ in 0..RETRIES {
            assert!(effects.rescan(&fake, &[nvme0.clone(), mem0.clone()], describe));
        }
        assert_eq!(fake.reads.get(), reads + RETRIES as usize, "only mem0, once per rescan");
        assert_eq!(
            metrics.read_failures.with_label_values(&["cxl-mem", "eacces"]).get(),
            1 + u64::from(RETRIES)
        );
        assert!(!effects.rescan(&fake, &[nvme0.clone(), mem0.clone()], describe), "then left alone");
        let reads = fake.reads.get();

        // nvme1 appears, mem0 goes away.
        let nvme1 = node("nvme1", device_kind::NVME, 2);
        assert!(effects.rescan(&fake, &[nvme0.clone(), nvme1.clone()], describe));
        assert_eq!(fake.reads.get(), reads + 1, "only the new controller is read");
        assert_eq!(gauge(&metrics, "nvme-admin"), 4);
        assert!(maps.borrow().devices.contains_key(&describe(&nvme1).key()), "new node watched");
        assert!(!maps.borrow().devices.contains_key(&describe(&mem0).key()));

        // nvme0 goes away: its entries leave the map, its series the metrics.
        assert!(effects.rescan(&fake, std::slice::from_ref(&nvme1), describe));
        assert_eq!(maps.borrow().effects.len(), 3);
        assert!(maps.borrow().effects.keys().all(|k| k.device == describe(&nvme1).key()));
        assert_eq!(gauge(&metrics, "nvme-admin"), 2);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&prometheus::core::Collector::collect(per_opcode))
            .unwrap();
        assert!(!text.contains("device=\"nvme0\""), "{text}");
        assert!(text.contains("device=\"nvme1\""), "{text}");
    }

    #[test]
    fn declared_nodes_keep_their_device_entry_when_sysfs_loses_them() {
        let maps = std::rc::Rc::new(std::cell::RefCell::new(Maps::default()));
        let nvme0 = node("nvme0", device_kind::NVME, 0);
        let key = describe(&nvme0).key();
        maps.borrow_mut().devices.insert(key, describe(&nvme0).watch_entry().info);
        let mut effects = DeviceEffects::start(
            &Fake::default(),
            maps.clone(),
            maps.clone(),
            BTreeSet::from([key]),
            &[describe(&nvme0)],
            EffectsMetrics::new(false).unwrap(),
        );
        assert!(effects.rescan(&Fake::default(), &[], describe));
        assert!(maps.borrow().effects.is_empty());
        assert!(maps.borrow().devices.contains_key(&key), "declared in the configuration");
    }
}
