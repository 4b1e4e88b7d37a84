//! Loading fwctl-guard's eBPF object into the running kernel: globals (offsets), the
//! device map, and attaching the hook programs. Owns the `Ebpf` handle: dropping it
//! detaches every program.

use anyhow::{Context as _, Result};
use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{links::FdLink, FExit, Lsm, TracePoint},
    Btf, Ebpf, EbpfLoader,
};
use fwctl_common::{
    effects::EffectsKey,
    model::{AgentMeta, CounterKey, DeviceInfo, Event, KernelOffsets, MailboxKey, RuleName},
};

use crate::{inventory::WatchEntry, pins::PinSet};

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

/// Which hook set observes the ioctls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum HookMode {
    /// LSM when the kernel accepts it, else the syscall tracepoints.
    Auto,
    /// `lsm/file_ioctl` (+ `file_ioctl_compat`) and fexit on the ioctl syscalls; fail if refused.
    Lsm,
    /// `syscalls:sys_enter_ioctl` / `sys_exit_ioctl` (observe only).
    Tracepoint,
}

/// An LSM or fexit program of the LSM hook set; optional ones are skipped on kernels
/// that lack the hook (file_ioctl_compat is 6.8+, the compat syscall needs IA32 emulation).
struct BtfProgram {
    name: &'static str,
    target: &'static str,
    lsm: bool,
    required: bool,
}

const LSM_PROGRAMS: [BtfProgram; 5] = [
    BtfProgram { name: "fwctl_lsm_file_ioctl", target: "file_ioctl", lsm: true, required: true },
    BtfProgram { name: "fwctl_fexit_sys_ioctl", target: "__x64_sys_ioctl", lsm: false, required: true },
    BtfProgram {
        name: "fwctl_lsm_file_ioctl_compat",
        target: "file_ioctl_compat",
        lsm: true,
        required: false,
    },
    BtfProgram {
        name: "fwctl_fexit_compat_sys_ioctl",
        target: "__ia32_compat_sys_ioctl",
        lsm: false,
        required: false,
    },
    // io_uring NVMe passthrough (no ioctl syscall); its results come from URING_TRACEPOINTS.
    BtfProgram { name: "fwctl_lsm_uring_cmd", target: "uring_cmd", lsm: true, required: false },
];

/// Completions of io_uring commands (attached with the LSM set when the kernel has
/// io_uring commands: `offsets::resolve_uring`).
pub const URING_TRACEPOINTS: [HookProgram; 1] =
    [HookProgram { name: "fwctl_io_uring_complete", category: "io_uring", event: "io_uring_complete" }];

/// Attach the LSM hook set (programs whose link `pins` already holds are adopted as
/// they are). On error, whatever was attached stays attached until its pins are removed;
/// callers fall back by removing the set and loading a fresh object.
pub fn attach_lsm(ebpf: &mut Ebpf, pins: &mut PinSet) -> Result<Vec<&'static str>> {
    let mut btf = None;
    let mut attached = Vec::new();
    for p in &LSM_PROGRAMS {
        let outcome = attach_pinned(ebpf, pins, p.name, |program| {
            let btf = match &btf {
                Some(btf) => btf,
                None => btf.insert(Btf::from_sys_fs().context("reading kernel BTF for LSM/fexit programs")?),
            };
            let link: FdLink = if p.lsm {
                let program: &mut Lsm = program.try_into()?;
                program.load(p.target, btf).map_err(chain)?;
                let id = program.attach().map_err(chain)?;
                program.take_link(id)?.into()
            } else {
                let program: &mut FExit = program.try_into()?;
                program.load(p.target, btf).map_err(chain)?;
                let id = program.attach().map_err(chain)?;
                program.take_link(id)?.into()
            };
            Ok(link)
        });
        match outcome {
            Ok(()) => attached.push(p.name),
            Err(e) if !p.required => log::info!("skipping {} ({}): {e:#}", p.name, p.target),
            Err(e) => return Err(e.context(format!("attaching {} to {}", p.name, p.target))),
        }
    }
    Ok(attached)
}

fn chain(e: aya::programs::ProgramError) -> anyhow::Error {
    anyhow::anyhow!("{}", crate::probe::error_chain(&e))
}

/// Attach program `name` with `attach` and pin it and its link, unless `pins` already
/// holds its link: then an earlier agent attached it, and it stays as it is.
pub fn attach_pinned(
    ebpf: &mut Ebpf,
    pins: &mut PinSet,
    name: &'static str,
    attach: impl FnOnce(&mut aya::programs::Program) -> Result<FdLink>,
) -> Result<()> {
    if pins.has_link(name) {
        return Ok(());
    }
    let program = ebpf.program_mut(name).with_context(|| format!("program {name} missing"))?;
    let link = attach(program)?;
    pins.pin(name, program, link)
}

/// The NVMe driver's command tracepoints (attached when the nvme module is loaded).
pub const NVME_TRACEPOINTS: [HookProgram; 2] = [
    HookProgram { name: "fwctl_nvme_setup_cmd", category: "nvme", event: "nvme_setup_cmd" },
    HookProgram { name: "fwctl_nvme_complete_rq", category: "nvme", event: "nvme_complete_rq" },
];

/// Maps the agent reads after loading.
pub struct KernelMaps {
    /// Commands parked between their hook and their return: drained into the audit log
    /// at shutdown, so none whose return went unseen is left out of it.
    pub inflight: HashMap<MapData, u64, Event>,
    pub counters: PerCpuHashMap<MapData, CounterKey, u64>,
    pub mailbox: PerCpuHashMap<MapData, MailboxKey, u64>,
    pub policy: crate::enforce::install::PolicyMaps,
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
    pub rule_names: HashMap<MapData, u16, RuleName>,
}

/// Load the object with this kernel's offsets and the ring-buffer size. Every map is
/// pinned in `pins` (an existing pin is reused: that is how a restarted agent gets the
/// counters, policy and queued events of the one before it). Programs are loaded only
/// when they are attached.
pub fn load(offsets: &KernelOffsets, ring_buffer_bytes: u32, pins: &PinSet) -> Result<Ebpf> {
    pins.create_dirs()?;
    let names = map_names()?;
    let paths: Vec<_> = names.iter().map(|name| pins.map_path(name)).collect();
    let mut loader = EbpfLoader::new();
    loader.override_global("KERNEL_OFFSETS", offsets, true).map_max_entries("EVENTS", ring_buffer_bytes);
    for (name, path) in names.iter().zip(&paths) {
        loader.map_pin_path(name, path.as_path());
    }
    loader.load(EBPF_OBJECT).context("loading the eBPF object")
}

/// The object's maps, without the global-data sections (`.rodata` is per load).
fn map_names() -> Result<Vec<String>> {
    let object = aya_obj::Object::parse(EBPF_OBJECT).context("parsing the eBPF object")?;
    Ok(object.maps.keys().filter(|name| !name.starts_with('.')).cloned().collect())
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

/// Attach the syscall tracepoint programs.
pub fn attach_tracepoints(ebpf: &mut Ebpf, pins: &mut PinSet) -> Result<Vec<&'static str>> {
    attach_tracepoint_set(ebpf, &SYSCALL_TRACEPOINTS, pins)
}

/// Attach a set of classic tracepoint programs (adopting those already pinned).
pub fn attach_tracepoint_set(
    ebpf: &mut Ebpf,
    set: &[HookProgram],
    pins: &mut PinSet,
) -> Result<Vec<&'static str>> {
    let mut attached = Vec::new();
    for hook in set {
        attach_pinned(ebpf, pins, hook.name, |program| {
            let program: &mut TracePoint = program.try_into()?;
            program.load().with_context(|| format!("loading {}", hook.name))?;
            let id = program
                .attach(hook.category, hook.event)
                .with_context(|| format!("attaching {} to {}:{}", hook.name, hook.category, hook.event))?;
            Ok(FdLink::try_from(program.take_link(id)?)?)
        })?;
        attached.push(hook.name);
    }
    Ok(attached)
}

/// Take the maps the agent reads out of the object (they stay valid after `ebpf` drops).
pub fn take_maps(ebpf: &mut Ebpf) -> Result<KernelMaps> {
    let mut take = |name: &str| ebpf.take_map(name).with_context(|| format!("map {name} missing"));
    Ok(KernelMaps {
        inflight: HashMap::try_from(take("INFLIGHT")?)?,
        counters: PerCpuHashMap::try_from(take("COUNTERS")?)?,
        mailbox: PerCpuHashMap::try_from(take("MAILBOX_COUNTERS")?)?,
        policy: crate::enforce::install::PolicyMaps::new(
            aya::maps::Array::try_from(take("POLICY")?)?,
            aya::maps::Array::try_from(take("RULES")?)?,
            HashMap::try_from(take("POLICY_INDEX")?)?,
        ),
        stats: PerCpuArray::try_from(take("STATS")?)?,
        events: RingBuf::try_from(take("EVENTS")?)?,
        effects: HashMap::try_from(take("EFFECTS")?)?,
        devices: HashMap::try_from(take("DEVICES")?)?,
        toctou: PerCpuArray::try_from(take("TOCTOU")?)?,
        rpc_checks: PerCpuArray::try_from(take("RPC_CHECKS")?)?,
        meta: Array::try_from(take("META")?)?,
        rule_names: HashMap::try_from(take("RULE_NAMES")?)?,
    })
}

/// Fds of the attached programs (from their pins), for reading their kernel statistics.
pub fn program_stats(pins: &PinSet, names: &[&'static str]) -> Result<Vec<crate::prog_stats::ProgramStats>> {
    names
        .iter()
        .map(|name| Ok(crate::prog_stats::ProgramStats { name, fd: pins.program_fd(name)? }))
        .collect()
}
