//! `fwctl-guard run`: start-up and shutdown, nothing else. Start-up reads the kernel's
//! layout, finds the devices, gets the programs (adopting a pinned set or attaching one),
//! installs the policy, and only then removes any other pinned set (make-before-break);
//! then the audit reader, the metrics server, the device rescan, the taint watch and the
//! policy reloader run as tasks until SIGINT/SIGTERM.
//!
//! Not here: how any of those parts work (see `kernel`, `audit`, `telemetry`, `enforce`,
//! `devices`).

mod banner;
mod signals;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context as _, Result};
use fwctl_common::{model::device_kind, policy::mode};
use tokio::sync::watch;

use crate::{
    audit::{self, AuditLog},
    config::{Config, DeclaredDevice, HookMode},
    devices::{
        effects::{read::DeviceReader, refresh::DeviceEffects},
        inventory,
    },
    enforce::runtime::{self, Enforcement, Runtime},
    health::Readiness,
    kernel::{
        attach::{self, Attached},
        layout::Layout,
        maps,
        metrics::ProgramMetrics,
        object::EBPF_OBJECT,
        pins::{self, PinRoot},
        prog_stats::ProgramStats,
        selftest::{self, CanaryNode, Counts, SelfTest},
    },
    names::RuleIds,
    telemetry::{self, http, taint, KernelSources, Metrics, Sources},
};
use banner::Banner;
use signals::Signals;

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
    let signals = Signals::install()?;
    let mut config = Config::load(options.config_path)?;
    for spec in options.extra_devices {
        config.devices.push(DeclaredDevice::from_cli(spec).with_context(|| format!("--device {spec}"))?);
    }
    let layout = Layout::of_running_kernel()?;
    let build = pins::build_id(EBPF_OBJECT, &layout.offsets, config.events.ring_buffer_bytes);
    let root = PinRoot::lock(options.pin_path.unwrap_or(&config.pin_path))?;
    let me = pins::Agent::current()?;
    // Before the inventory's own ioctls: programs an earlier agent left attached must
    // recognise this process as the agent.
    root.claim_all(me);
    let mut watchlist = inventory::watchlist(Path::new(SYS_ROOT), &config.devices)?;
    let selftest = SelfTest::new(CanaryNode::open()?, selftest::uring_node(&watchlist.sysfs));
    watchlist.entries.push(selftest.watch_entry());

    let audit_path = options.audit_log.unwrap_or(&config.audit.path);
    let log = AuditLog::open(audit_path)?.with_syslog(&config.audit.syslog)?;
    let listener = http::bind(config.metrics.listen).await?;

    let mode = options.hook.unwrap_or(config.hook);
    let inputs = attach::Inputs {
        layout: &layout,
        ring_buffer_bytes: config.events.ring_buffer_bytes,
        entries: &watchlist.entries,
        root: &root,
        build: &build,
        selftest: &selftest,
        agent: me,
    };
    let Attached { mut ebpf, set, programs, pins, adopted, proof } = attach::select(mode, &inputs)?;
    match aya_log::EbpfLogger::init(&mut ebpf) {
        Ok(logger) => spawn_ebpf_logger(logger),
        Err(e) => log::debug!("eBPF logger not started: {e}"),
    }
    let mut maps = maps::take(&mut ebpf)?;
    pins::write_meta(&mut maps.meta, me.into_meta(build, true))?;
    let rules = RuleIds::persistent(maps.rule_names);
    let metrics = Metrics::new(&config.metrics)?;
    let registry = telemetry::registry(
        &metrics,
        Sources {
            kernel: Some(KernelSources {
                counters: maps.counters,
                mailbox: maps.mailbox,
                stats: maps.stats,
                toctou: maps.toctou,
                bypass: maps.bypass,
                rpc_checks: maps.rpc_checks,
                programs: ProgramStats::of_pinned(&pins, &programs)?,
                rules: rules.clone(),
            }),
            sys_root: Some(PathBuf::from(SYS_ROOT)),
            taint: true,
        },
    )?;
    // Before the policy: its effects rules judge by what is in the map from the start.
    // The agent's own ioctls here are not audited (META's agent identity).
    let device_effects = DeviceEffects::start(
        &DeviceReader,
        maps.effects,
        maps.devices,
        watchlist.declared_keys,
        &watchlist.sysfs,
        metrics.effects.clone(),
    );
    let policy_path = options.policy.map(Path::to_path_buf).or(config.policy.clone());
    metrics.programs.record(&proof);
    let enforcement = Enforcement::new(set.can_deny, proof.all_proven(), &metrics.policy);
    let mut runtime = policy_path.map(|path| {
        Runtime::new(path, rules.clone(), Box::new(maps.policy), metrics.policy.clone(), enforcement.clone())
    });
    let readiness = Readiness::new(runtime.is_some());
    readiness.set_hooks_proven(proof.all_proven());
    if let Err(e) = start_policy(runtime.as_mut(), set.can_deny, options.allow_audit_only) {
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
    for program in &programs {
        metrics.programs.attached.with_label_values(&[program]).set(1);
    }
    let set_name = pins.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let start = match (adopted, replaced.is_empty()) {
        (true, _) => "adopted",
        (false, true) => "attached",
        (false, false) => "replaced",
    };
    metrics.programs.pinned_set.with_label_values(&[set_name.as_str(), start]).set(1);
    readiness.set_programs_attached(true);

    for entry in &watchlist.entries {
        log::info!(
            "watching {} {}:{} as {} ({})",
            if entry.block { "block" } else { "char" },
            entry.major,
            entry.minor.map_or("*".to_string(), |m| m.to_string()),
            device_kind::label(entry.info.kind),
            entry.source
        );
    }
    Banner {
        adopted,
        pin_dir: &pins.dir,
        replaced: replaced.len(),
        set,
        programs: &programs,
        policy: runtime.as_ref().map(|r| (r.path.as_path(), enforcement.enforcing())),
        proof: &proof,
        watch_entries: watchlist.entries.len(),
        effects: device_effects.summary(),
        metrics: listener.local_addr()?,
        audit_log: log.path.as_deref(),
    }
    .print();

    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(http::serve(listener, Arc::new(registry), readiness.clone(), stopped.clone()));
    // Commands still parked at exit are logged now only if the programs go with the agent;
    // otherwise they complete in the kernel and the next agent reads their events.
    let parked = options.cleanup.then_some(maps.inflight);
    let reader = tokio::spawn(audit::pipeline::run(
        maps.events,
        parked,
        log,
        rules,
        metrics.audit.clone(),
        signals.usr1,
        readiness.clone(),
        stopped.clone(),
    ));
    let rescanner = tokio::spawn(device_effects.watch(PathBuf::from(SYS_ROOT), stopped.clone()));
    tokio::spawn(taint::watch(stopped.clone()));
    let checker = tokio::spawn(check_hooks(
        selftest,
        Counts(maps.canary),
        set,
        programs,
        Checked { metrics: metrics.programs.clone(), readiness: readiness.clone(), enforcement },
        stopped.clone(),
    ));
    let reloader = tokio::spawn(runtime::watch(runtime, signals.hup, stopped));

    signals::termination(signals.term, signals.int).await;
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
    checker.await.context("self-test task")?;
    reloader.await.context("policy task")??;
    server.await.context("metrics task")??;
    Ok(())
}

/// Install the configured policy at start-up; an enforce policy where nothing can be
/// denied is refused unless `allow_audit_only`.
fn start_policy(runtime: Option<&mut Runtime>, can_deny: bool, allow_audit_only: bool) -> Result<()> {
    let Some(runtime) = runtime else { return Ok(()) };
    runtime.reload("start-up")?;
    if runtime.mode == Some(mode::ENFORCE) && !can_deny {
        let why = format!(
            "policy {} is in enforce mode but no hook set that can deny is attached, so nothing can be denied. {}",
            runtime.path.display(),
            attach::lsm_hint()
        );
        if !allow_audit_only {
            anyhow::bail!("{why} Pass --allow-audit-only to run it as audit only (deny becomes would_deny).");
        }
        eprintln!("fwctl-guard: warning: {why} Running audit-only (--allow-audit-only): fwctl_guard_enforcing is 0.");
    }
    Ok(())
}

/// How often the self-test runs once the agent is up.
const SELF_TEST_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Where a self-test's outcome goes.
struct Checked {
    metrics: ProgramMetrics,
    readiness: Readiness,
    enforcement: Enforcement,
}

/// Run the self-test every [`SELF_TEST_INTERVAL`] until `shutdown` flips: a hook that
/// stops running turns `/readyz` red, `fwctl_guard_enforcing` to 0 and
/// `fwctl_guard_hook_verified` to 0, and is logged as an error, until it runs again.
async fn check_hooks(
    selftest: SelfTest,
    counts: Counts<aya::maps::MapData>,
    set: &'static fwctl_common::hook_set::HookSet,
    programs: Vec<&'static str>,
    checked: Checked,
    mut shutdown: watch::Receiver<bool>,
) {
    let shared = Arc::new((selftest, counts, programs));
    let mut tick = tokio::time::interval(SELF_TEST_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; start-up ran the self-test already
    let mut was_proven = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let job = shared.clone();
        // Canaries are blocking syscalls (and an io_uring submission): off the runtime.
        let Ok(report) = tokio::task::spawn_blocking(move || job.0.run(&job.1, set, &job.2)).await else {
            continue;
        };
        let proven = report.all_proven();
        checked.metrics.record(&report);
        checked.readiness.set_hooks_proven(proven);
        checked.enforcement.set_proven(proven);
        if !proven {
            let failures = report.failures().join("; ");
            log::error!("self-test: the {} hook set does not run as attached: {failures}", set.label);
            eprintln!(
                "fwctl-guard: error: self-test failed, nothing is enforced until it passes: {failures}"
            );
        } else if !was_proven {
            log::warn!("self-test: the {} hook set runs again", set.label);
        }
        was_proven = proven;
    }
}

/// Parsing the kernel's BTF (ours for offsets, aya's for relocations) needs tens of MiB
/// once; hand that heap back to the system so the long-running agent stays small.
fn release_startup_memory() {
    // SAFETY: malloc_trim only releases free heap pages.
    unsafe { libc::malloc_trim(0) };
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
