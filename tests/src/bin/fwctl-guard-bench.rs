//! `cargo xtask bench`: what the agent costs, measured side by side in one run.
//!
//! Per round: measure getpid, an unrelated ioctl (FIONREAD on a pipe) and a passthrough
//! ioctl (NVMe admin Identify on a stand-in node) without the agent, then with it
//! attached. Reports medians and ratios, then the sustained command rate at which the
//! kernel counters stay exact, and the agent's RSS. Never a pass/fail test.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use clap::Parser;
use fwctl_guard_tests::{
    agent::{Agent, Declared},
    ioctls::{ioctl, nvme_passthru, NVME_IOCTL_ADMIN_CMD},
    standin::StandIn,
};

#[derive(Parser)]
struct Args {
    /// Agent binary (sets FWCTL_GUARD_BIN for the harness).
    #[arg(long)]
    agent: Option<std::path::PathBuf>,
    /// Calls per measurement.
    #[arg(long, default_value_t = 400_000)]
    iterations: u64,
    /// Rounds (agent off, agent on) per measurement; medians are reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Threads for the sustained-rate run.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Seconds of the sustained-rate run.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
}

fn ns_per_call(iterations: u64, mut f: impl FnMut()) -> f64 {
    for _ in 0..iterations / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_nanos() as f64 / iterations as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

struct Workload {
    nvme: StandIn,
    pipe: [i32; 2],
    identify: Vec<u8>,
}

impl Workload {
    fn measure(&self, iterations: u64) -> [f64; 3] {
        let getpid = ns_per_call(iterations, || unsafe {
            libc::syscall(libc::SYS_getpid);
        });
        let mut n: libc::c_int = 0;
        let unrelated = ns_per_call(iterations, || unsafe {
            libc::ioctl(self.pipe[0], libc::FIONREAD, &mut n);
        });
        let passthrough = ns_per_call(iterations / 4, || {
            ioctl(self.nvme.fd(), NVME_IOCTL_ADMIN_CMD, self.identify.as_ptr() as u64);
        });
        [getpid, unrelated, passthrough]
    }
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(agent) = &args.agent {
        std::env::set_var("FWCTL_GUARD_BIN", agent);
    }
    // The baseline must run with nothing attached: an agent stopped without --cleanup
    // (e.g. `cargo xtask run`) leaves its programs pinned and running.
    let pinned: Vec<_> = std::fs::read_dir("/sys/fs/bpf")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("fwctl-guard")))
        .filter(|root| {
            let sets = std::fs::read_dir(root).into_iter().flatten().flatten();
            sets.into_iter()
                .any(|set| std::fs::read_dir(set.path().join("links")).is_ok_and(|mut l| l.next().is_some()))
        })
        .collect();
    if !pinned.is_empty() {
        anyhow::bail!(
            "fwctl-guard programs are still attached (pinned in {pinned:?}), so there is no no-agent \
             baseline: remove them with `fwctl-guard uninstall --pin-path DIR` first"
        );
    }
    let mut pipe = [0; 2];
    // SAFETY: pipe writes two fds into the array.
    if unsafe { libc::pipe(pipe.as_mut_ptr()) } != 0 {
        anyhow::bail!("pipe: {}", std::io::Error::last_os_error());
    }
    let work = Workload { nvme: StandIn::new()?, pipe, identify: nvme_passthru(0x06, 0, 1, false) };
    let declared = [Declared { major_minor: work.nvme.major_minor(), class: "nvme", driver: "nvme" }];

    // The agent runs the shipped fleet baseline, so the passthrough cost includes the
    // policy decision (audit-only here: this host's kernel has no BPF LSM).
    let policy = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/fleet-baseline.yaml");
    let agent_args = ["--policy", policy, "--allow-audit-only"];
    let mut off: [Vec<f64>; 3] = Default::default();
    let mut on: [Vec<f64>; 3] = Default::default();
    for round in 0..args.rounds {
        eprintln!("round {}/{}", round + 1, args.rounds);
        for (i, v) in work.measure(args.iterations).into_iter().enumerate() {
            off[i].push(v);
        }
        let mut agent =
            Agent::start_with("bench", &declared, 8 << 20, &agent_args).context("starting the agent")?;
        for (i, v) in work.measure(args.iterations).into_iter().enumerate() {
            on[i].push(v);
        }
        agent.stop()?;
    }

    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "fwctl-guard bench: kernel {}, hook: syscall tracepoints, policy: fleet-baseline",
        kernel.trim()
    );
    println!(
        "{} calls x {} rounds, median ns per call, agent off and on measured side by side",
        args.iterations, args.rounds
    );
    println!("{:<22} {:>10} {:>10} {:>8}", "", "no agent", "agent", "ratio");
    for (i, name) in ["getpid", "unrelated ioctl", "passthrough ioctl"].iter().enumerate() {
        let (a, b) = (median(off[i].clone()), median(on[i].clone()));
        let extra = if i == 2 { format!("  (+{:.0} ns decode+count+event)", b - a) } else { String::new() };
        println!("{:<22} {:>10.1} {:>10.1} {:>7.2}x{extra}", name, a, b, b / a);
    }

    // Sustained rate with exact counts.
    let agent = Agent::start_with("bench-rate", &declared, 8 << 20, &agent_args)?;
    let work = Arc::new(work);
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..args.threads)
        .map(|_| {
            let (work, stop, issued) = (work.clone(), stop.clone(), issued.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    ioctl(work.nvme.fd(), NVME_IOCTL_ADMIN_CMD, work.identify.as_ptr() as u64);
                    n += 1;
                }
                issued.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(args.seconds));
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().for_each(|t| t.join().unwrap());
    std::thread::sleep(Duration::from_millis(500));
    let scrape = agent.scrape()?;
    let issued = issued.load(Ordering::Relaxed);
    let counted = scrape.sum("fwctl_guard_commands_total", &[]) as u64;
    let lost = scrape.sum("fwctl_guard_events_lost_total", &[]) as u64;
    let pid = agent_pid(&agent);
    println!(
        "sustained: {} threads, {:.0} passthrough cmds/s; issued {issued}, counted {counted} ({}); audit events lost {lost} ({:.2}%)",
        args.threads,
        issued as f64 / args.seconds as f64,
        if issued == counted { "exact" } else { "MISMATCH" },
        100.0 * lost as f64 / issued.max(1) as f64
    );
    if let Some(rss) = pid.and_then(rss_mib) {
        println!("agent RSS after the run: {rss:.1} MiB");
    }
    Ok(())
}

fn agent_pid(agent: &Agent) -> Option<u32> {
    agent.pid()
}
