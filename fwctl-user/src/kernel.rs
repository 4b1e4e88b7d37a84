//! Loading fwctl-guard's eBPF object into the running kernel: globals (offsets), the
//! device map, and attaching the hook programs. Owns the `Ebpf` handle: dropping it
//! detaches every program.

use anyhow::{Context as _, Result};
use aya::{
    maps::{HashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::TracePoint,
    Ebpf, EbpfLoader,
};
use fwctl_common::model::{CounterKey, DeviceInfo, KernelOffsets};

use crate::inventory::WatchEntry;

/// The eBPF object built from the fwctl-ebpf crate by build.rs.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fwctl-ebpf"));

/// A program the agent attaches, and where.
pub struct HookProgram {
    pub name: &'static str,
    pub category: &'static str,
    pub event: &'static str,
}

/// The syscall-tracepoint hook set (kernels without BPF LSM).
pub const SYSCALL_TRACEPOINTS: [HookProgram; 2] = [
    HookProgram { name: "fwctl_sys_enter_ioctl", category: "syscalls", event: "sys_enter_ioctl" },
    HookProgram { name: "fwctl_sys_exit_ioctl", category: "syscalls", event: "sys_exit_ioctl" },
];

/// Maps the agent reads after loading.
pub struct KernelMaps {
    pub counters: PerCpuHashMap<MapData, CounterKey, u64>,
    pub stats: PerCpuArray<MapData, u64>,
    pub events: RingBuf<MapData>,
}

/// Load the object with this kernel's offsets and the ring-buffer size.
pub fn load(offsets: &KernelOffsets, ring_buffer_bytes: u32) -> Result<Ebpf> {
    EbpfLoader::new()
        .override_global("KERNEL_OFFSETS", offsets, true)
        .map_max_entries("EVENTS", ring_buffer_bytes)
        .load(EBPF_OBJECT)
        .context("loading the eBPF object")
}

/// Fill the device map. Exact major:minor entries and major-wide ones share the map.
pub fn populate_devices(ebpf: &mut Ebpf, entries: &[WatchEntry]) -> Result<()> {
    let mut devices: HashMap<_, u64, DeviceInfo> =
        HashMap::try_from(ebpf.map_mut("DEVICES").context("map DEVICES missing")?)?;
    for entry in entries {
        devices.insert(entry.key(), entry.info, 0).with_context(|| format!("adding {}", entry.source))?;
    }
    Ok(())
}

/// Load and attach the syscall tracepoint programs.
pub fn attach_tracepoints(ebpf: &mut Ebpf) -> Result<Vec<&'static str>> {
    let mut attached = Vec::new();
    for hook in &SYSCALL_TRACEPOINTS {
        let program: &mut TracePoint = ebpf
            .program_mut(hook.name)
            .with_context(|| format!("program {} missing", hook.name))?
            .try_into()?;
        program.load().with_context(|| format!("loading {}", hook.name))?;
        program
            .attach(hook.category, hook.event)
            .with_context(|| format!("attaching {} to {}:{}", hook.name, hook.category, hook.event))?;
        attached.push(hook.name);
    }
    Ok(attached)
}

/// Take the maps the agent reads out of the object (they stay valid after `ebpf` drops).
pub fn take_maps(ebpf: &mut Ebpf) -> Result<KernelMaps> {
    let mut take = |name: &str| ebpf.take_map(name).with_context(|| format!("map {name} missing"));
    Ok(KernelMaps {
        counters: PerCpuHashMap::try_from(take("COUNTERS")?)?,
        stats: PerCpuArray::try_from(take("STATS")?)?,
        events: RingBuf::try_from(take("EVENTS")?)?,
    })
}
