//! fwctl-guard's eBPF object: built from the fwctl-ebpf crate by build.rs, loaded here with
//! this kernel's offsets and the configured ring-buffer size, every map pinned.

use anyhow::{Context as _, Result};
use aya::{maps::HashMap, Ebpf, EbpfLoader};
use fwctl_common::{
    model::{DeviceInfo, KernelOffsets},
    object::{global, map},
};

use super::pins::PinSet;
use crate::devices::inventory::WatchEntry;

/// The eBPF object built from the fwctl-ebpf crate by build.rs.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fwctl-ebpf"));

/// Load the object with this kernel's offsets and the ring-buffer size. Every map is
/// pinned in `pins` (an existing pin is reused: that is how a restarted agent gets the
/// counters, policy and queued events of the one before it). Programs are loaded only
/// when they are attached.
pub fn load(offsets: &KernelOffsets, ring_buffer_bytes: u32, pins: &PinSet) -> Result<Ebpf> {
    pins.create_dirs()?;
    let paths: Vec<_> = map::ALL.iter().map(|name| pins.map_path(name)).collect();
    let mut loader = EbpfLoader::new();
    loader
        .override_global(global::KERNEL_OFFSETS, offsets, true)
        .map_max_entries(map::EVENTS, ring_buffer_bytes);
    for (name, path) in map::ALL.iter().zip(&paths) {
        loader.map_pin_path(name, path.as_path());
    }
    loader.load(EBPF_OBJECT).context("loading the eBPF object")
}

/// Fill the device map. Exact major:minor entries and major-wide ones share the map.
pub fn populate_devices(ebpf: &mut Ebpf, entries: &[WatchEntry]) -> Result<()> {
    let mut devices: HashMap<_, u64, DeviceInfo> =
        HashMap::try_from(ebpf.map_mut(map::DEVICES).context("map DEVICES missing")?)?;
    for entry in entries {
        devices.insert(entry.key(), entry.info, 0).with_context(|| format!("adding {}", entry.source))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use fwctl_common::{hook_set, object::capability_program};

    use super::*;

    /// The names the agent uses are the names the eBPF crate defines: every map (global
    /// data sections aside) and every program of the hook-set table, no more, no less.
    #[test]
    fn the_object_has_exactly_the_named_maps_and_programs() {
        let object = aya_obj::Object::parse(EBPF_OBJECT).unwrap();
        let maps: BTreeSet<&str> =
            object.maps.keys().map(String::as_str).filter(|name| !name.starts_with('.')).collect();
        assert_eq!(maps, map::ALL.into_iter().collect());
        let programs: BTreeSet<&str> = object.programs.keys().map(String::as_str).collect();
        let named: BTreeSet<&str> = hook_set::ALL
            .iter()
            .flat_map(|set| set.programs.iter())
            .chain(hook_set::COMPANIONS.iter())
            .map(|p| p.name)
            .chain(capability_program::ALL)
            .collect();
        assert_eq!(programs, named);
    }
}
