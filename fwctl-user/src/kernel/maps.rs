//! The maps the agent keeps after loading, taken out of the object by name, and the
//! kernel-map side of the traits the rest of the agent writes through (devices, effects,
//! rule names). Everything here outlives the `Ebpf` handle.

use std::io;

use anyhow::{Context as _, Result};
use aya::{
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, PerCpuHashMap, RingBuf},
    Ebpf,
};
use fwctl_common::{
    effects::EffectsKey,
    model::{AgentMeta, CounterKey, DeviceInfo, Event, MailboxKey, RuleName, RULE_NAME_BYTES},
    object::map,
};

use super::policy_maps::PolicyMaps;
use crate::{
    devices::effects::{install::EffectsMap, refresh::DeviceMap},
    names::RuleNameStore,
};

/// Maps the agent reads or writes after loading.
pub struct KernelMaps {
    /// Commands parked between their hook and their return: drained into the audit log
    /// at shutdown, so none whose return went unseen is left out of it.
    pub inflight: HashMap<MapData, u64, Event>,
    pub counters: PerCpuHashMap<MapData, CounterKey, u64>,
    pub mailbox: PerCpuHashMap<MapData, MailboxKey, u64>,
    pub policy: PolicyMaps,
    pub stats: PerCpuArray<MapData, u64>,
    pub events: RingBuf<MapData>,
    /// What each device node declares about its opcodes (kept current on hot-plug).
    pub effects: HashMap<MapData, EffectsKey, u32>,
    /// Watched device nodes (filled at load; nodes added and removed on hot-plug).
    pub devices: HashMap<MapData, u64, DeviceInfo>,
    /// Payloads changed between decision and driver, by class (per CPU).
    pub toctou: PerCpuArray<MapData, u64>,
    /// fwctl kernel-copy check outcomes (`rpc_check::counter_index`, per CPU).
    pub rpc_checks: PerCpuArray<MapData, u64>,
    /// Which build is loaded and which process is the agent.
    pub meta: Array<MapData, AgentMeta>,
    /// Rule id -> name, kept for the next agent.
    pub rule_names: RuleNames,
    /// Self-test canaries each program counted (`canary::slot`, per CPU).
    pub canary: PerCpuArray<MapData, u64>,
    /// Denied commands that reached the driver past every deny program, by class (per CPU).
    pub bypass: PerCpuArray<MapData, u64>,
}

/// Take the maps the agent uses out of the object (they stay valid after `ebpf` drops).
pub fn take(ebpf: &mut Ebpf) -> Result<KernelMaps> {
    let mut take = |name: &str| ebpf.take_map(name).with_context(|| format!("map {name} missing"));
    Ok(KernelMaps {
        inflight: HashMap::try_from(take(map::INFLIGHT)?)?,
        counters: PerCpuHashMap::try_from(take(map::COUNTERS)?)?,
        mailbox: PerCpuHashMap::try_from(take(map::MAILBOX_COUNTERS)?)?,
        policy: PolicyMaps::new(
            Array::try_from(take(map::POLICY)?)?,
            Array::try_from(take(map::RULES)?)?,
            HashMap::try_from(take(map::POLICY_INDEX)?)?,
        ),
        stats: PerCpuArray::try_from(take(map::STATS)?)?,
        events: RingBuf::try_from(take(map::EVENTS)?)?,
        effects: HashMap::try_from(take(map::EFFECTS)?)?,
        devices: HashMap::try_from(take(map::DEVICES)?)?,
        toctou: PerCpuArray::try_from(take(map::TOCTOU)?)?,
        rpc_checks: PerCpuArray::try_from(take(map::RPC_CHECKS)?)?,
        meta: Array::try_from(take(map::META)?)?,
        rule_names: RuleNames(HashMap::try_from(take(map::RULE_NAMES)?)?),
        canary: PerCpuArray::try_from(take(map::CANARY)?)?,
        bypass: PerCpuArray::try_from(take(map::BYPASS)?)?,
    })
}

/// One slot of a per-CPU array, summed over CPUs (0 if it cannot be read). Wrapping: a
/// count moved between slots on different CPUs leaves one slot "negative"; the sum is exact.
pub fn per_cpu_slot<T: std::borrow::Borrow<MapData>>(map: &PerCpuArray<T, u64>, index: u32) -> u64 {
    map.get(&index, 0).map_or(0, |values| values.iter().fold(0u64, |a, v| a.wrapping_add(*v)))
}

/// Every key of a per-CPU hash map with its value summed over CPUs (wrapping, as above).
pub fn per_cpu_totals<K: aya::Pod + Ord>(
    map: &PerCpuHashMap<MapData, K, u64>,
) -> std::collections::BTreeMap<K, u64> {
    let mut totals = std::collections::BTreeMap::new();
    for (key, values) in map.iter().flatten() {
        let sum = values.iter().fold(0u64, |a, v| a.wrapping_add(*v));
        let total = totals.entry(key).or_insert(0u64);
        *total = total.wrapping_add(sum);
    }
    totals
}

impl EffectsMap for HashMap<MapData, EffectsKey, u32> {
    fn insert(&mut self, key: EffectsKey, value: u32) -> io::Result<()> {
        HashMap::insert(self, key, value, 0).map_err(io_error)
    }
    fn remove(&mut self, key: &EffectsKey) -> io::Result<()> {
        match HashMap::remove(self, key) {
            Err(MapError::KeyNotFound | MapError::ElementNotFound) => Ok(()),
            other => other.map_err(io_error),
        }
    }
}

impl DeviceMap for HashMap<MapData, u64, DeviceInfo> {
    fn insert(&mut self, key: u64, info: DeviceInfo) -> io::Result<()> {
        HashMap::insert(self, key, info, 0).map_err(io_error)
    }
    fn remove(&mut self, key: u64) -> io::Result<()> {
        match HashMap::remove(self, &key) {
            Err(MapError::KeyNotFound | MapError::ElementNotFound) => Ok(()),
            other => other.map_err(io_error),
        }
    }
}

/// The errno of a failed map syscall (E2BIG: the map is full), else the error's text.
fn io_error(e: MapError) -> io::Error {
    match e {
        MapError::SyscallError(e) => e.io_error,
        other => io::Error::other(other.to_string()),
    }
}

/// The pinned `RULE_NAMES` map: rule names outlive the agent like the counters keyed by
/// their ids do.
pub struct RuleNames(HashMap<MapData, u16, RuleName>);

impl RuleNameStore for RuleNames {
    fn load(&self) -> Vec<(u16, String)> {
        self.0.iter().filter_map(Result::ok).map(|(id, name)| (id, unpack_name(&name))).collect()
    }

    fn save(&mut self, id: u16, name: &str) -> Result<(), String> {
        self.0.insert(id, pack_name(name), 0).map_err(|e| e.to_string())
    }
}

/// `name` NUL-padded, cut at a char boundary when longer than the map's value.
fn pack_name(name: &str) -> RuleName {
    let mut end = name.len().min(RULE_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = [0u8; RULE_NAME_BYTES];
    out[..end].copy_from_slice(&name.as_bytes()[..end]);
    out
}

fn unpack_name(stored: &RuleName) -> String {
    let len = stored.iter().position(|&b| b == 0).unwrap_or(stored.len());
    String::from_utf8_lossy(&stored[..len]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut_at_a_char_boundary() {
        let name = "é".repeat(40); // 80 bytes
        let stored = pack_name(&name);
        let len = stored.iter().position(|&b| b == 0).unwrap_or(RULE_NAME_BYTES);
        assert_eq!(len, 64);
        assert!(std::str::from_utf8(&stored[..len]).is_ok());
        assert_eq!(&pack_name("short")[..6], b"short\0");
        assert_eq!(unpack_name(&pack_name("deny-format")), "deny-format");
    }
}
