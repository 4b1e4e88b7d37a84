//! `fwctl-guard run`: resolve the kernel layout, find the devices, load and attach the
//! programs, then serve metrics and write the audit log until SIGINT/SIGTERM.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context as _, Result};
use fwctl_common::model::KernelOffsets;
use tokio::{
    signal::unix::{signal, Signal, SignalKind},
    sync::watch,
};

use crate::{
    audit::AuditLog,
    btf::KernelBtf,
    config::{Config, DeclaredDevice},
    device_info::DeviceInfoCollector,
    effects::{read::DeviceReader, refresh::DeviceEffects},
    enforce::{rule_ids::RuleIds, runtime::Runtime},
    events, http, inventory,
    kernel::{self, HookMode},
    metrics::{self, KernelCounters},
    offsets,
    pins::{self, PinRoot, PinSet},
    rpc_checks, taint,
};

/// Where the kernel lists devices.
const SYS_ROOT: &str = "/sys";

pub struct RunOptions<'a> {
    pub config_path: &'a Path,
    /// Overrides `audit.path` from the configuration.
    pub audit_log: Option<&'a Path>,
    /// `PATH=CLASS[:DRIVER]` devices from the command line, added to `devices:`.
    pub extra_devices: &'a [String],
    /// Overrides `hook` from the configuration.
    pub hook: Option<HookMode>,
    /// Overrides `policy` from the configuration.
    pub policy: Option<&'a Path>,
    /// Run an enforce-mode policy on a kernel where it cannot be enforced (audit only).
    pub allow_audit_only: bool,
    /// Overrides `pin_path` from the configuration.
    pub pin_path: Option<&'a Path>,
    /// Remove the pinned objects on exit (detach everything) instead of leaving them.
    pub cleanup: bool,
}

pub async fn run(options: RunOptions<'_>) -> Result<()> {
    // First of all: until a handler exists, SIGHUP (a reload request from config
    // management) and SIGTERM would kill the agent with their default action.
    let signals = Signals::install()?;
    let mut config = Config::load(options.config_path)?;
    for spec in options.extra_devices {
        config.devices.push(DeclaredDevice::from_cli(spec).with_context(|| format!("--device {spec}"))?);
    }
    let btf = KernelBtf::from_sysfs().context("reading the kernel's BTF")?;
    let mut offsets = offsets::resolve(&btf).context("resolving kernel offsets")?;
    let uring = offsets::resolve_uring(&btf, &mut offsets).unwrap_or_else(|e| {
        log::warn!("io_uring passthrough cannot be watched on this kernel: {e:#}");
        false
    });
    drop(btf);
    let nvme_tracepoints =
        offsets::resolve_nvme(&mut offsets).context("resolving nvme tracepoint offsets")?;

    let build = pins::build_id(kernel::EBPF_OBJECT, &offsets, config.events.ring_buffer_bytes);
    let root = PinRoot::lock(options.pin_path.unwrap_or(&config.pin_path))?;
    let me = pins::Agent::current()?;
    // Before the inventory's own ioctls: programs an earlier agent left attached must
    // recognise this process as the agent.
    root.claim_all(me);

    let mut entries = inventory::major_entries(&inventory::parse_proc_devices(
        &std::fs::read_to_string("/proc/devices").context("reading /proc/devices")?,
    ));
    let sysfs_devices = inventory::scan_sysfs(Path::new(SYS_ROOT));
    entries.extend(sysfs_devices.iter().map(inventory::Device::watch_entry));
    let declared = inventory::declared_entries(&config.devices).context("configuration: devices")?;
    let declared_keys = declared.iter().map(inventory::WatchEntry::key).collect();
    entries.extend(declared);

    let audit_path = options.audit_log.unwrap_or(&config.audit.path);
    let log = AuditLog::open(audit_path)?.with_syslog(&config.audit.syslog)?;
    let listener = http::bind(config.metrics.listen).await?;

    let hook_mode = options.hook.unwrap_or(config.hook);
    let Loaded { mut ebpf, hook, mut attached, mut pins, adopted } =
        load_and_attach(hook_mode, &offsets, &config, &entries, &root, &build)?;
    if nvme_tracepoints {
        attached.extend(kernel::attach_tracepoint_set(&mut ebpf, &kernel::NVME_TRACEPOINTS, &mut pins)?);
    } else {
        log::info!("nvme tracepoints absent (nvme module not loaded): no mailbox counters");
    }
    if hook == Hook::Lsm && uring && attached.contains(&"fwctl_lsm_uring_cmd") {
        attached.extend(kernel::attach_tracepoint_set(&mut ebpf, &kernel::URING_TRACEPOINTS, &mut pins)?);
    }
    attached
        .extend(rpc_checks::attach(&mut ebpf, &mut pins).context("attaching the fwctl kernel-copy checks")?);
    match aya_log::EbpfLogger::init(&mut ebpf) {
        Ok(logger) => spawn_ebpf_logger(logger),
        Err(e) => log::debug!("eBPF logger not started: {e}"),
    }
    let mut maps = kernel::take_maps(&mut ebpf)?;
    pins::write_meta(&mut maps.meta, me.into_meta(build, true))?;
    let programs = kernel::program_stats(&pins, &attached)?;
    let rule_ids = RuleIds::persistent(maps.rule_names);
    let (registry, agent_metrics) = metrics::registry(
        KernelCounters::new(maps.counters, maps.mailbox, maps.stats, programs, rule_ids.clone()),
        &config.metrics,
    )?;
    registry.register(Box::new(metrics::ToctouCounters::new(maps.toctou)?))?;
    registry.register(Box::new(rpc_checks::RpcCheckCollector::new(maps.rpc_checks)?))?;
    registry.register(Box::new(taint::TaintCollector::new()?))?;
    registry.register(Box::new(DeviceInfoCollector::new(PathBuf::from(SYS_ROOT))?))?;
    // Before the policy: its effects rules judge by what is in the map from the start.
    // The agent's own ioctls here are not audited (KernelOffsets.agent_tgid).
    let device_effects = DeviceEffects::start(
        &DeviceReader,
        maps.effects,
        maps.devices,
        declared_keys,
        &sysfs_devices,
        agent_metrics.effects.clone(),
    );
    let policy_path = options.policy.map(Path::to_path_buf).or(config.policy.clone());
    let mut runtime = policy_path.map(|path| {
        Runtime::new(path, rule_ids.clone(), maps.policy, agent_metrics.clone(), hook == Hook::Lsm)
    });
    let readiness = http::Readiness::new(runtime.is_some());
    if let Err(e) = start_policy(runtime.as_mut(), hook, options.allow_audit_only) {
        if !adopted {
            // A new set without its policy must not stay attached: an earlier set, if
            // any, stays in charge with the policy it has.
            let _ = pins.remove();
        }
        return Err(e);
    }
    if runtime.is_some() {
        readiness.set_policy_loaded();
    }
    // Make-before-break: only now that this set is attached and enforces its policy,
    // detach any other.
    let replaced = root.others(&pins.dir);
    for old in &replaced {
        log::info!("replacing the pinned set {} (another build or hook set)", old.display());
        pins::remove_pins(old)?;
    }
    release_startup_memory();
    for program in &attached {
        agent_metrics.program_attached.with_label_values(&[program]).set(1);
    }
    let set_name = pins.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let start = match (adopted, replaced.is_empty()) {
        (true, _) => "adopted",
        (false, true) => "attached",
        (false, false) => "replaced",
    };
    agent_metrics.pinned_set.with_label_values(&[set_name.as_str(), start]).set(1);
    readiness.set_programs_attached(true);

    for entry in &entries {
        log::info!(
            "watching {} {}:{} as {} ({})",
            if entry.block { "block" } else { "char" },
            entry.major,
            entry.minor.map_or("*".to_string(), |m| m.to_string()),
            fwctl_common::model::device_kind::label(entry.info.kind),
            entry.source
        );
    }
    println!("fwctl-guard {}: counting and auditing passthrough commands", env!("CARGO_PKG_VERSION"));
    println!(
        "  programs:  {} {}{}",
        if adopted { "adopted, still attached, from" } else { "attached and pinned in" },
        pins.dir.display(),
        if replaced.is_empty() {
            String::new()
        } else {
            format!(" (replaced {} earlier set(s) after attaching)", replaced.len())
        }
    );
    match hook {
        Hook::Lsm => {
            println!("  hook:      BPF LSM ({}); no syscall tracepoint attached", attached.join(", "))
        }
        Hook::Tracepoint => {
            println!(
                "  hook:      syscall tracepoints ({}) — audit only, nothing is denied",
                attached.join(", ")
            )
        }
    }
    match &runtime {
        Some(r) => println!(
            "  policy:    {} ({}; reloads on SIGHUP or when the file changes)",
            r.path.display(),
            if agent_metrics.enforcing.get() == 1 {
                "enforcing"
            } else {
                "not enforcing: deny is recorded as would_deny"
            }
        ),
        None => println!("  policy:    none (every command allowed and counted)"),
    }
    println!("  devices:   {} watch entries (see --verbose for the list)", entries.len());
    let summary = device_effects.summary();
    println!(
        "  effects:   declared by {}{}",
        if summary.read.is_empty() { "no device".to_string() } else { summary.read.join(", ") },
        if summary.failed.is_empty() {
            String::new()
        } else {
            format!("; unknown for {} (could not be read, see the log)", summary.failed.join(", "))
        }
    );
    println!("  metrics:   http://{}/metrics", listener.local_addr()?);
    println!(
        "  audit log: {}",
        log.path.as_ref().map_or("standard output".to_string(), |p| p.display().to_string())
    );

    let (stop, stopped) = watch::channel(false);
    let registry = Arc::new(registry);
    let server = tokio::spawn(http::serve(listener, registry, readiness.clone(), stopped.clone()));
    // Commands still parked at exit are logged now only if the programs go with the agent;
    // otherwise they complete in the kernel and the next agent reads their events.
    let parked = options.cleanup.then_some(maps.inflight);
    let reader = tokio::spawn(events::run(
        maps.events,
        parked,
        log,
        agent_metrics.clone(),
        signals.usr1,
        readiness.clone(),
        stopped.clone(),
    ));
    let rescanner = tokio::spawn(device_effects.watch(PathBuf::from(SYS_ROOT), stopped.clone()));
    tokio::spawn(taint::watch(stopped.clone()));
    let reloader = tokio::spawn(watch_policy(runtime, signals.hup, stopped));

    wait_for_termination(signals.term, signals.int).await;
    if options.cleanup {
        log::info!("stopping: removing the pinned objects and detaching every program (--cleanup)");
        pins.remove()?;
        let _ = std::fs::remove_dir(&root.path); // only if no other set is left in it
        drop(ebpf); // with the pins gone, the last references: no new events after this point
    } else {
        pins::write_meta(&mut maps.meta, pins::Agent::default().into_meta(build, true))?;
        eprintln!(
            "fwctl-guard: stopping; the programs stay attached and keep enforcing and counting \
             (pinned in {}). `fwctl-guard uninstall` removes them.",
            pins.dir.display()
        );
    }
    let _ = stop.send(true);
    reader.await.context("audit task")??;
    rescanner.await.context("device rescan task")??;
    reloader.await.context("policy task")??;
    server.await.context("metrics task")??;
    Ok(())
}

/// Install the configured policy at start-up; an enforce policy where nothing can be
/// denied is refused unless `allow_audit_only`.
fn start_policy(runtime: Option<&mut Runtime>, hook: Hook, allow_audit_only: bool) -> Result<()> {
    let Some(runtime) = runtime else { return Ok(()) };
    runtime.reload("start-up")?;
    if runtime.mode == Some(fwctl_common::policy::mode::ENFORCE) && hook != Hook::Lsm {
        let why = format!(
            "policy {} is in enforce mode but the LSM hook is not attached, so nothing can be denied. {}",
            runtime.path.display(),
            lsm_hint()
        );
        if !allow_audit_only {
            anyhow::bail!("{why} Pass --allow-audit-only to run it as audit only (deny becomes would_deny).");
        }
        eprintln!("fwctl-guard: warning: {why} Running audit-only (--allow-audit-only): fwctl_guard_enforcing is 0.");
    }
    Ok(())
}

/// `fwctl-guard uninstall`: remove every pinned object under the pin root, so the
/// programs detach. Refused while an agent holds the root.
pub fn uninstall(config_path: &Path, pin_path: Option<&Path>) -> Result<()> {
    let root = match pin_path {
        Some(path) => path.to_path_buf(),
        // No configuration (already purged, or never written): the default root.
        None if !config_path.exists() => PathBuf::from(pins::DEFAULT_ROOT),
        None => Config::load(config_path)?.pin_path,
    };
    if !root.exists() {
        println!("nothing to remove: {} does not exist", root.display());
        return Ok(());
    }
    let sets = PinRoot::lock(&root)?.remove_all()?;
    println!(
        "removed {} and its {sets} pinned program set(s): nothing of fwctl-guard stays attached",
        root.display()
    );
    Ok(())
}

/// Parsing the kernel's BTF (ours for offsets, aya's for relocations) needs tens of MiB
/// once; hand that heap back to the system so the long-running agent stays small.
fn release_startup_memory() {
    // SAFETY: malloc_trim only releases free heap pages.
    unsafe { libc::malloc_trim(0) };
}

/// Reload the policy on SIGHUP, and when its file changes (checked every 2 s).
/// The signals the agent handles, registered before it serves anything.
struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
    /// Reopen the audit log (logrotate's postrotate).
    usr1: Signal,
}

impl Signals {
    fn install() -> Result<Self> {
        Ok(Self {
            hup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            usr1: signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?,
        })
    }
}

/// Reload the policy on SIGHUP, and when its file changes (checked every 2 s). Without a
/// policy, SIGHUP is only logged.
async fn watch_policy(
    mut runtime: Option<Runtime>,
    mut hup: Signal,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = hup.recv() => match runtime.as_mut() {
                Some(runtime) => {
                    if let Err(e) = runtime.reload("SIGHUP") {
                        log::error!("{e:#}");
                        eprintln!("fwctl-guard: {e:#}");
                    }
                }
                None => log::info!("SIGHUP: no policy is configured, nothing to reload"),
            },
            _ = tick.tick() => {
                if let Some(runtime) = runtime.as_mut() {
                    runtime.reload_if_changed();
                }
            }
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

/// What an operator can do about a refused LSM hook.
fn lsm_hint() -> String {
    match std::fs::read_to_string("/sys/kernel/security/lsm") {
        Ok(list) if list.trim().split(',').any(|l| l == "bpf") => format!(
            "bpf is in the active LSM list ({}), so the kernel or its sandbox refuses BPF LSM/tracing \
             programs (check lockdown and the BPF_LSM/DEBUG_INFO_BTF options).",
            list.trim()
        ),
        Ok(list) => format!(
            "bpf is not an active LSM ({}): boot with lsm={},bpf (CONFIG_BPF_LSM=y required).",
            list.trim(),
            list.trim()
        ),
        Err(_) => "securityfs is not mounted at /sys/kernel/security; mount it to check the LSM list.".into(),
    }
}

/// The hook set actually attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Lsm,
    Tracepoint,
}

impl Hook {
    /// Its name in the pin root (`<hook>-<build>`).
    fn label(self) -> &'static str {
        match self {
            Hook::Lsm => "lsm",
            Hook::Tracepoint => "tracepoint",
        }
    }
}

/// What `load_and_attach` set up.
struct Loaded {
    ebpf: aya::Ebpf,
    hook: Hook,
    attached: Vec<&'static str>,
    pins: PinSet,
    /// An earlier agent's programs were adopted (nothing was attached anew).
    adopted: bool,
}

/// Adopt the pinned set an earlier agent left for this very build, if there is one;
/// otherwise load the object, fill the device map and attach (and pin) the hook set
/// `mode` asks for. `auto` falls back from LSM to the syscall tracepoints and says why.
fn load_and_attach(
    mode: HookMode,
    offsets: &KernelOffsets,
    config: &Config,
    entries: &[inventory::WatchEntry],
    root: &PinRoot,
    build: &[u8; 32],
) -> Result<Loaded> {
    let load = |pins: &PinSet| -> Result<aya::Ebpf> {
        let mut ebpf = kernel::load(offsets, config.events.ring_buffer_bytes, pins)?;
        kernel::populate_devices(&mut ebpf, entries)?;
        Ok(ebpf)
    };
    let attach = |ebpf: &mut aya::Ebpf, hook: Hook, pins: &mut PinSet| match hook {
        Hook::Lsm => kernel::attach_lsm(ebpf, pins),
        Hook::Tracepoint => kernel::attach_tracepoints(ebpf, pins),
    };
    let candidates: &[Hook] = match mode {
        HookMode::Lsm => &[Hook::Lsm],
        HookMode::Tracepoint => &[Hook::Tracepoint],
        HookMode::Auto => &[Hook::Lsm, Hook::Tracepoint],
    };
    for &hook in candidates {
        let mut pins = root.set(hook.label(), build);
        if pins.adoptable() {
            let mut ebpf = load(&pins)?;
            let attached = attach(&mut ebpf, hook, &mut pins)?;
            return Ok(Loaded { ebpf, hook, attached, pins, adopted: true });
        }
    }
    for &hook in candidates {
        let mut pins = root.set(hook.label(), build);
        // An incomplete set of this build: an agent died while attaching it.
        pins::remove_pins(&pins.dir)?;
        let mut ebpf = load(&pins)?;
        match attach(&mut ebpf, hook, &mut pins) {
            Ok(attached) => return Ok(Loaded { ebpf, hook, attached, pins, adopted: false }),
            Err(e) if hook == Hook::Lsm && mode == HookMode::Auto => {
                drop(ebpf);
                pins.remove()?;
                eprintln!(
                    "fwctl-guard: warning: BPF LSM hook unavailable ({e:#}); falling back to syscall \
                     tracepoints: commands are audited but cannot be denied, and every syscall pays for \
                     the tracepoint. {}",
                    lsm_hint()
                );
            }
            Err(e) => {
                drop(ebpf);
                pins.remove()?;
                return Err(if hook == Hook::Lsm { e.context("hook: lsm was requested") } else { e });
            }
        }
    }
    anyhow::bail!("no hook set to attach")
}

async fn wait_for_termination(mut term: Signal, mut int: Signal) {
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn spawn_ebpf_logger(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
    // SAFETY: the logger owns its fd, which stays open while the AsyncFd owns it.
    let Ok(mut logger) =
        (unsafe { tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) })
    else {
        return;
    };
    tokio::spawn(async move {
        while let Ok(mut guard) = logger.readable_mut().await {
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}
