//! Privileged integration tests on the host kernel: the real agent loads real eBPF on
//! the syscall tracepoints; test threads issue real passthrough ioctls on stand-in
//! device nodes (see the crate docs) and the tests read the real metrics endpoint
//! (with curl) and the real audit log. Also `fwctl-guard probe` (text and JSON), the
//! CLI's errors and the hook `hook: auto` picks. Runs on the host and in every VM guest.

use fwctl_common::hook_set;
use std::{
    collections::{BTreeMap, HashSet},
    os::fd::AsRawFd,
    process::Command,
    sync::{Arc, Barrier},
};

use fwctl_guard_tests::{
    agent::{agent_binary, remove_pins, test_pin_path, Agent, Declared},
    ioctls::*,
    metrics::http_get,
    probe::{HookStatus, Probe},
    require,
    standin::StandIn,
    tests,
    trial::{Test, TestResult},
};

pub const TESTS: &[Test] = tests![
    every_channel_is_counted_exactly_from_concurrent_threads_and_audited,
    unrelated_ioctls_devices_and_mismatched_channels_are_not_counted,
    unreadable_and_malformed_payloads_are_counted_as_decode_errors,
    a_full_ring_buffer_drops_events_but_never_counts,
    probe_reports_what_this_kernel_accepts,
    probe_json_reports_what_this_kernel_accepts_and_agrees_with_the_text,
    cli_help_lists_the_subcommands_and_configuration_errors_name_file_and_field,
    nvme_cli_commands_are_counted_with_the_client_as_subject,
    hook_choice_lsm_when_the_kernel_accepts_it_else_a_reasoned_fallback,
];

const ENOTTY: i64 = libc::ENOTTY as i64;

struct Bench {
    mlx5: StandIn,
    cxl_fw: StandIn,
    pds: StandIn,
    bnxt: StandIn,
    nvme: StandIn,
    cxl_mem: StandIn,
    scsi: StandIn,
}

impl Bench {
    fn new() -> Self {
        let s = || StandIn::new().expect("pty stand-in");
        Self { mlx5: s(), cxl_fw: s(), pds: s(), bnxt: s(), nvme: s(), cxl_mem: s(), scsi: s() }
    }

    fn declared(&self) -> Vec<Declared<'static>> {
        let d = |s: &StandIn, class, driver| Declared { major_minor: s.major_minor(), class, driver };
        vec![
            d(&self.mlx5, "fwctl", "mlx5"),
            d(&self.cxl_fw, "fwctl", "cxl"),
            d(&self.pds, "fwctl", "pds"),
            d(&self.bnxt, "fwctl", "bnxt"),
            d(&self.nvme, "nvme", "nvme"),
            d(&self.cxl_mem, "cxl-mem", "cxl"),
            d(&self.scsi, "scsi", "sg"),
        ]
    }
}

/// One round of commands over every channel; returns how many were issued.
fn one_round(b: &Bench) -> usize {
    let mut out = [0u8; 64];
    let mut issued = 0;
    let mut expect_enotty = |ret: i64| {
        assert_eq!(ret, -1);
        assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(ENOTTY as i32));
        issued += 1;
    };
    // fwctl mlx5: QUERY_HCA_CAP at every scope.
    let payload = mlx5_payload(0x100, 1);
    for scope in 0..4 {
        let rpc = fwctl_rpc(scope, &payload, &mut out);
        expect_enotty(ioctl(b.mlx5.fd(), FWCTL_RPC, rpc.as_ptr() as u64));
    }
    // fwctl CXL: Set Feature at debug-write.
    let payload = cxl_fwctl_payload(0x0502);
    let rpc = fwctl_rpc(2, &payload, &mut out);
    expect_enotty(ioctl(b.cxl_fw.fd(), FWCTL_RPC, rpc.as_ptr() as u64));
    // fwctl pds: op 7 on endpoint 1 at debug-read-only.
    let payload = pds_payload(0x0007, 1);
    let rpc = fwctl_rpc(1, &payload, &mut out);
    expect_enotty(ioctl(b.pds.fd(), FWCTL_RPC, rpc.as_ptr() as u64));
    // fwctl bnxt: HWRM req_type 0x00c0 at configuration.
    let payload = bnxt_payload(0x00c0);
    let rpc = fwctl_rpc(0, &payload, &mut out);
    expect_enotty(ioctl(b.bnxt.fd(), FWCTL_RPC, rpc.as_ptr() as u64));
    // FWCTL_INFO carries no opcode.
    let mut info = [0u8; 24];
    info[0] = 24;
    expect_enotty(ioctl(b.mlx5.fd(), FWCTL_INFO, info.as_mut_ptr() as u64));
    // NVMe: all four passthrough variants.
    for (cmd, opcode, wide) in [
        (NVME_IOCTL_ADMIN_CMD, 0x06u8, false),
        (NVME_IOCTL_ADMIN64_CMD, 0x02, true),
        (NVME_IOCTL_IO_CMD, 0x02, false),
        (NVME_IOCTL_IO64_CMD, 0x01, true),
    ] {
        let p = nvme_passthru(opcode, 1, 0x7f, wide);
        expect_enotty(ioctl(b.nvme.fd(), cmd, p.as_ptr() as u64));
    }
    // CXL memdev mailbox: RAW Get Health Info, and the kernel's IDENTIFY command id.
    for (id, raw) in [(2u32, 0x4200u16), (1, 0)] {
        let p = cxl_send(id, raw);
        expect_enotty(ioctl(b.cxl_mem.fd(), CXL_MEM_SEND_COMMAND, p.as_ptr() as u64));
    }
    // SG_IO: v3 INQUIRY, v4 READ(10).
    let inquiry = [0x12u8, 0, 0, 0, 96, 0];
    let p = sg_io_v3(&inquiry);
    expect_enotty(ioctl(b.scsi.fd(), SG_IO, p.as_ptr() as u64));
    let read10 = [0x28u8, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    let p = sg_io_v4(&read10);
    expect_enotty(ioctl(b.scsi.fd(), SG_IO, p.as_ptr() as u64));
    issued
}

const ROUND_SIZE: u64 = 16;

/// Expected (class, driver, opcode, opcode_name, scope) -> commands per round.
fn per_round() -> Vec<([&'static str; 5], u64)> {
    vec![
        (["fwctl", "mlx5", "0x0100", "QUERY_HCA_CAP", "configuration"], 1),
        (["fwctl", "mlx5", "0x0100", "QUERY_HCA_CAP", "debug-read-only"], 1),
        (["fwctl", "mlx5", "0x0100", "QUERY_HCA_CAP", "debug-write"], 1),
        (["fwctl", "mlx5", "0x0100", "QUERY_HCA_CAP", "debug-write-full"], 1),
        (["fwctl", "cxl", "0x0502", "set-feature", "debug-write"], 1),
        (["fwctl", "pds", "0x0007", "unknown", "debug-read-only"], 1),
        (["fwctl", "bnxt", "0x00c0", "*", "configuration"], 1),
        (["fwctl", "mlx5", "none", "FWCTL_INFO", "none"], 1),
        (["nvme-admin", "nvme", "0x0006", "identify", "none"], 1),
        (["nvme-admin", "nvme", "0x0002", "get-log-page", "none"], 1),
        (["nvme-io", "nvme", "0x0002", "read", "none"], 1),
        (["nvme-io", "nvme", "0x0001", "write", "none"], 1),
        (["cxl-mem", "cxl", "0x4200", "get-health-info", "none"], 1),
        (["cxl-mem", "cxl", "0x4000", "identify", "none"], 1),
        (["scsi", "sg", "0x0012", "inquiry", "none"], 1),
        (["scsi", "sg", "0x0028", "read-10", "none"], 1),
    ]
}

fn own_cgroup_id() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    std::fs::metadata(format!("/sys/fs/cgroup{path}")).ok().map(|m| m.ino())
}

fn every_channel_is_counted_exactly_from_concurrent_threads_and_audited() -> TestResult {
    require::bpf()?;
    const THREADS: usize = 4;
    const ROUNDS: usize = 50;
    let bench = Arc::new(Bench::new());
    let mut agent = Agent::start("channels", &bench.declared(), 8 << 20).expect("agent starts");

    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|i| {
            let (bench, barrier) = (bench.clone(), barrier.clone());
            std::thread::spawn(move || {
                set_thread_name(&format!("fg-worker-{i}"));
                if i == THREADS - 1 {
                    // One worker runs as another user: the subject is the calling thread's.
                    set_thread_ids(4242, 4343);
                }
                barrier.wait();
                let issued: usize = (0..ROUNDS).map(|_| one_round(&bench)).sum();
                (gettid(), issued)
            })
        })
        .collect();
    let tids: BTreeMap<u32, usize> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let total = (THREADS * ROUNDS) as u64 * ROUND_SIZE;
    assert_eq!(tids.values().sum::<usize>() as u64, total);

    // Counted at once (on the trampoline set, short only by commands the kernel skipped
    // every program for); their events follow.
    let counted = agent.scrape().unwrap();
    let short = counted.counted_short(counted.sum("fwctl_guard_commands_total", &[]), total as f64);
    let scrape = agent.wait_audit_events(total - short as u64).unwrap();
    let exact = short == 0.0;
    for (labels, per) in per_round().into_iter().filter(|_| exact) {
        let mut filter = vec![
            ("class", labels[0]),
            ("driver", labels[1]),
            ("opcode", labels[2]),
            ("scope", labels[4]),
            ("verdict", "allow"),
        ];
        if labels[3] != "*" {
            filter.push(("opcode_name", labels[3]));
        }
        assert_eq!(
            scrape.sum("fwctl_guard_commands_total", &filter) as u64,
            per * (THREADS * ROUNDS) as u64,
            "{labels:?}\n{}",
            scrape.text
        );
    }
    assert_eq!(scrape.sum("fwctl_guard_commands_total", &[]) as u64, total - short as u64, "{}", scrape.text);
    // Every command returned ENOTTY. Its result is `error` unless the exit hook was skipped
    // by the kernel (a task preempted inside it on PREEMPT kernels): then `unknown`, and the
    // skip is counted. Never more unknowns than skipped exit-hook runs.
    let unknown = scrape.sum("fwctl_guard_commands_total", &[("result", "unknown")]);
    let exit_skips = ["fwctl_sys_exit_ioctl", "fwctl_fexit_sys_ioctl", "fwctl_fexit_sys_ioctl_checked"]
        .iter()
        .map(|p| scrape.sum("fwctl_guard_program_skipped_total", &[("program", p)]))
        .sum::<f64>();
    assert_eq!(
        scrape.sum("fwctl_guard_commands_total", &[("result", "error")]) + unknown,
        total as f64 - short
    );
    assert!(
        unknown <= exit_skips,
        "{unknown} unknown results but {exit_skips} skipped exits\n{}",
        scrape.text
    );
    assert_eq!(scrape.sum("fwctl_guard_events_lost_total", &[]), 0.0);
    assert_eq!(scrape.sum("fwctl_guard_decode_errors_total", &[]), 0.0);
    assert_eq!(scrape.sum("fwctl_guard_kernel_errors_total", &[]), 0.0, "{}", scrape.text);
    // The set the agent runs: the one whose first program is attached.
    let attached = |p: &str| scrape.sum("fwctl_guard_program_attached", &[("program", p)]) == 1.0;
    let hook = hook_set::ALL.iter().find(|s| attached(s.programs[0].name)).expect("a hook set").label;

    assert_eq!(agent.stop().unwrap(), 0, "clean shutdown:\n{}", agent.output());
    let records = agent.audit_records().unwrap();
    assert_eq!(records.len() as u64, total - short as u64, "one audit line per counted command");
    let devices: HashSet<String> = bench.declared().iter().map(|d| d.major_minor.clone()).collect();
    let cgroup = own_cgroup_id();
    let mut per_tid: BTreeMap<u32, usize> = BTreeMap::new();
    for r in &records {
        let tid = r["tid"].as_u64().unwrap() as u32;
        *per_tid.entry(tid).or_default() += 1;
        assert_eq!(r["pid"].as_u64().unwrap() as u32, std::process::id(), "{r}");
        assert!(r["comm"].as_str().unwrap().starts_with("fg-worker-"), "{r}");
        assert!(devices.contains(r["device"].as_str().unwrap()), "{r}");
        assert_eq!(r["device_type"], "char");
        assert_eq!(r["hook"], hook, "{r}");
        assert_eq!(r["verdict"], "allow");
        assert_eq!(r["decode"], "ok");
        if r["ret"].is_null() {
            assert!(r["result"].is_null() && r["latency_ns"].is_null(), "{r}");
        } else {
            assert_eq!(r["ret"].as_i64(), Some(-ENOTTY), "{r}");
            assert_eq!(r["result"], "error");
            assert!(r["latency_ns"].as_u64().is_some(), "{r}");
        }
        assert!(r["ts"].as_str().unwrap().ends_with('Z'));
        let renamed = r["comm"] == format!("fg-worker-{}", THREADS - 1);
        let (uid, gid) = if renamed { (4242, 4343) } else { (0, 0) };
        assert_eq!((r["uid"].as_u64().unwrap(), r["gid"].as_u64().unwrap()), (uid, gid), "{r}");
        if let Some(cgroup) = cgroup {
            assert_eq!(r["cgroup_id"].as_u64(), Some(cgroup), "{r}");
        }
        match r["class"].as_str().unwrap() {
            "nvme-admin" | "nvme-io" => {
                assert_eq!(r["nsid"], 1);
                assert_eq!(r["cdw10"], 0x7f);
                assert_eq!(r["device"].as_str().unwrap(), bench.nvme.major_minor());
            }
            "fwctl" => assert!(r.get("nsid").is_none()),
            _ => {}
        }
        if r["opcode_name"] == "QUERY_HCA_CAP" {
            assert_eq!(r["op_mod"], 1);
            assert_eq!(r["driver"], "mlx5");
        }
    }
    assert_eq!(
        records.iter().filter(|r| r["ret"].is_null()).count() as f64,
        unknown,
        "one line per unknown result"
    );
    assert_eq!(per_tid.len(), THREADS);
    for (tid, issued) in tids.iter().filter(|_| exact) {
        assert_eq!(per_tid.get(tid), Some(issued), "audit lines of thread {tid}");
    }
    Ok(())
}

fn unrelated_ioctls_devices_and_mismatched_channels_are_not_counted() -> TestResult {
    require::bpf()?;
    let nvme = StandIn::new().unwrap();
    let undeclared = StandIn::new().unwrap();
    let declared = [Declared { major_minor: nvme.major_minor(), class: "nvme", driver: "nvme" }];
    let mut agent = Agent::start("unrelated", &declared, 1 << 20).unwrap();

    let identify = nvme_passthru(0x06, 0, 1, false);
    let mut termios = [0u8; 64];
    // An unrelated ioctl (TCGETS) on the watched node succeeds and is not counted.
    assert_eq!(ioctl(nvme.fd(), 0x5401, termios.as_mut_ptr() as u64), 0);
    // A passthrough ioctl on an undeclared node, and on /dev/null, is not counted.
    ioctl(undeclared.fd(), NVME_IOCTL_ADMIN_CMD, identify.as_ptr() as u64);
    let null = std::fs::File::open("/dev/null").unwrap();
    ioctl(null.as_raw_fd(), NVME_IOCTL_ADMIN_CMD, identify.as_ptr() as u64);
    // A channel the device kind does not implement (SG_IO, FWCTL_RPC on NVMe) is not counted.
    let cdb = [0x12u8, 0, 0, 0, 96, 0];
    ioctl(nvme.fd(), SG_IO, sg_io_v3(&cdb).as_ptr() as u64);
    let mut out = [0u8; 16];
    let payload = mlx5_payload(0x100, 0);
    ioctl(nvme.fd(), FWCTL_RPC, fwctl_rpc(0, &payload, &mut out).as_ptr() as u64);
    // The one command that counts.
    ioctl(nvme.fd(), NVME_IOCTL_ADMIN_CMD, identify.as_ptr() as u64);

    let scrape = agent.wait_audit_events(1).unwrap();
    assert_eq!(scrape.sum("fwctl_guard_commands_total", &[]), 1.0, "{}", scrape.text);
    assert_eq!(scrape.sum("fwctl_guard_commands_total", &[("opcode_name", "identify")]), 1.0);
    agent.stop().unwrap();
    let records = agent.audit_records().unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["device"].as_str().unwrap(), nvme.major_minor());
    Ok(())
}

fn unreadable_and_malformed_payloads_are_counted_as_decode_errors() -> TestResult {
    require::bpf()?;
    let mlx5 = StandIn::new().unwrap();
    let unknown_fw = StandIn::new().unwrap();
    let nvme = StandIn::new().unwrap();
    let scsi = StandIn::new().unwrap();
    let cxl = StandIn::new().unwrap();
    let declared = [
        Declared { major_minor: mlx5.major_minor(), class: "fwctl", driver: "mlx5" },
        Declared { major_minor: unknown_fw.major_minor(), class: "fwctl", driver: "unknown" },
        Declared { major_minor: nvme.major_minor(), class: "nvme", driver: "nvme" },
        Declared { major_minor: scsi.major_minor(), class: "scsi", driver: "sg" },
        Declared { major_minor: cxl.major_minor(), class: "cxl-mem", driver: "cxl" },
    ];
    let mut agent = Agent::start("decode-errors", &declared, 1 << 20).unwrap();

    const BAD_POINTER: u64 = 0x10;
    // Argument pointer unreadable.
    assert_eq!(ioctl(nvme.fd(), NVME_IOCTL_ADMIN_CMD, BAD_POINTER), -1);
    assert_eq!(ioctl(mlx5.fd(), FWCTL_RPC, u64::MAX - 7), -1);
    // fwctl_rpc readable, its `in` buffer not.
    let mut rpc = fwctl_rpc(0, &[0u8; 16], &mut [0u8; 16]);
    rpc[16..24].copy_from_slice(&BAD_POINTER.to_le_bytes());
    ioctl(mlx5.fd(), FWCTL_RPC, rpc.as_ptr() as u64);
    // in_len shorter than the mlx5 mailbox header.
    let short = [0u8; 8];
    ioctl(mlx5.fd(), FWCTL_RPC, fwctl_rpc(0, &short, &mut [0u8; 16]).as_ptr() as u64);
    // fwctl node whose driver is unknown.
    ioctl(unknown_fw.fd(), FWCTL_RPC, fwctl_rpc(0, &mlx5_payload(0x100, 0), &mut [0u8; 16]).as_ptr() as u64);
    // SG_IO with neither 'S' nor 'Q'; CXL command id the kernel does not define.
    let mut bad_sg = sg_io_v3(&[0x12u8; 6]);
    bad_sg[0] = b'X';
    ioctl(scsi.fd(), SG_IO, bad_sg.as_ptr() as u64);
    ioctl(cxl.fd(), CXL_MEM_SEND_COMMAND, cxl_send(9999, 0).as_ptr() as u64);

    let scrape = agent.wait_audit_events(7).unwrap();
    let errors = |class, reason| {
        scrape.sum("fwctl_guard_decode_errors_total", &[("class", class), ("reason", reason)])
    };
    assert_eq!(errors("nvme-admin", "arg-unreadable"), 1.0, "{}", scrape.text);
    assert_eq!(errors("fwctl", "arg-unreadable"), 1.0);
    assert_eq!(errors("fwctl", "payload-unreadable"), 1.0);
    assert_eq!(errors("fwctl", "truncated"), 1.0);
    assert_eq!(errors("fwctl", "unknown-layout"), 1.0);
    assert_eq!(errors("scsi", "malformed"), 1.0);
    assert_eq!(errors("cxl-mem", "malformed"), 1.0);
    // Still counted as commands, with no opcode.
    assert_eq!(scrape.sum("fwctl_guard_commands_total", &[("opcode_name", "undecodable")]), 7.0);
    assert_eq!(agent.stop().unwrap(), 0, "the agent survives hostile payloads");
    let records = agent.audit_records().unwrap();
    assert_eq!(records.len(), 7);
    assert!(records.iter().all(|r| r["decode"] != "ok" && r["opcode"] == "none"), "{records:?}");
    assert!(records
        .iter()
        .any(|r| r["ret"].as_i64() == Some(-(libc::EFAULT as i64)) || r["ret"].as_i64() == Some(-ENOTTY)));
    Ok(())
}

fn a_full_ring_buffer_drops_events_but_never_counts() -> TestResult {
    require::bpf()?;
    const THREADS: usize = 4;
    const PER_THREAD: usize = 5000;
    let nvme = Arc::new(StandIn::new().unwrap());
    let declared = [Declared { major_minor: nvme.major_minor(), class: "nvme", driver: "nvme" }];
    // 4 KiB holds about 30 events: a burst from four threads must overflow it.
    let mut agent = Agent::start("ring-full", &declared, 4096).unwrap();
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let nvme = nvme.clone();
            std::thread::spawn(move || {
                let p = nvme_passthru(0x02, 0, 0, false);
                for _ in 0..PER_THREAD {
                    ioctl(nvme.fd(), NVME_IOCTL_ADMIN_CMD, p.as_ptr() as u64);
                }
            })
        })
        .collect();
    workers.into_iter().for_each(|w| w.join().unwrap());
    let total = (THREADS * PER_THREAD) as f64;
    std::thread::sleep(std::time::Duration::from_millis(500));
    let scrape = agent.scrape().unwrap();
    let lost = scrape.sum("fwctl_guard_events_lost_total", &[]);
    let written = scrape.sum("fwctl_guard_audit_events_written_total", &[]);
    // Exact (on the trampoline set: short only by commands the kernel skipped every
    // program for, which no event can exist for either).
    let short = scrape.counted_short(scrape.sum("fwctl_guard_commands_total", &[]), total);
    assert!(lost > 0.0, "a 4 KiB ring buffer should have overflowed: {}", scrape.text);
    assert!(written + lost <= total);
    agent.stop().unwrap();
    // After the drain at shutdown (ring buffer, then commands still parked in the kernel)
    // every event is either in the log or counted as lost.
    assert_eq!(
        agent.audit_records().unwrap().len() as f64 + lost,
        total - short,
        "written or counted as lost"
    );
    Ok(())
}

fn probe_reports_what_this_kernel_accepts() -> TestResult {
    require::bpf()?;
    let out = Command::new(agent_binary()).arg("probe").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("tracepoint  ok"), "{text}");
    assert!(text.contains("ringbuf     ok"), "{text}");
    for hook in ["lsm", "fentry"] {
        let line =
            text.lines().find(|l| l.trim_start().starts_with(hook)).unwrap_or_else(|| panic!("{text}"));
        assert!(line.contains(" ok") || line.contains("refused: "), "{line}");
    }
    assert!(text.contains("passthrough devices:"), "{text}");
    Ok(())
}

/// `probe --json`, the report tests decide from, keeps its contract on this kernel and says
/// what the text says: every program type the text lists, the hook sets and the one
/// `hook: auto` picks (accepted, and able to deny exactly when it says so), the active LSM
/// list as the kernel shows it, and the devices.
fn probe_json_reports_what_this_kernel_accepts_and_agrees_with_the_text() -> TestResult {
    require::bpf()?;
    let probe = Probe::run(&agent_binary()).unwrap_or_else(|e| panic!("{e:#}"));
    let text = Command::new(agent_binary()).arg("probe").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(probe.kernel, release.trim());
    for always in ["tracepoint", "ringbuf"] {
        assert!(probe.program_types[always].ok, "{always}: {probe:#?}");
    }
    for hook in ["lsm", "fentry"] {
        let json = &probe.program_types[hook];
        assert!(json.ok || json.error.as_ref().is_some_and(|e| !e.is_empty()), "{hook}: {json:?}");
        let line =
            text.lines().find(|l| l.trim_start().starts_with(hook)).unwrap_or_else(|| panic!("{text}"));
        assert_eq!(line.trim_end().ends_with(" ok"), json.ok, "text {line:?} vs json {json:?}");
    }
    for name in ["lsm", "tracepoint"] {
        assert!(probe.hook_set(name).is_some(), "no hook set {name}: {probe:#?}");
    }
    for set in &probe.hook_sets {
        assert!(set.status == HookStatus::Accepted || set.detail.is_some(), "{set:?} without the reason");
        assert!(!set.can_deny || set.status == HookStatus::Accepted, "{set:?} can deny but is not accepted");
    }
    let auto = probe.auto.hook_set.as_deref().unwrap_or_else(|| panic!("auto picks nothing: {probe:#?}"));
    let picked = probe.hook_set(auto).unwrap_or_else(|| panic!("auto picks unknown {auto}"));
    assert_eq!(picked.status, HookStatus::Accepted, "{probe:#?}");
    assert_eq!(probe.auto.can_deny, picked.can_deny, "{probe:#?}");
    if let Ok(active) = std::fs::read_to_string("/sys/kernel/security/lsm") {
        let active: Vec<&str> = active.trim().split(',').collect();
        assert_eq!(probe.lsm.active, active);
        assert_eq!(probe.lsm.bpf_active, active.contains(&"bpf"));
    }
    // The LSM hook set runs only where its programs load and `bpf` is an active LSM;
    // where they load but `bpf` is not active they attach and are never called.
    let loads = |t: &str| probe.program_types.get(t).is_some_and(|p| p.ok);
    if probe.accepts("lsm") {
        assert!(loads("lsm") && loads("fentry") && probe.lsm.bpf_active, "{probe:#?}");
    }
    if loads("lsm") && !probe.lsm.bpf_active {
        let lsm = probe.hook_set("lsm").map(|h| h.status);
        assert_eq!(lsm, Some(HookStatus::AttachesButDoesNotFire), "{probe:#?}");
    }
    for device in &probe.devices {
        for key in ["name", "node", "kind"] {
            assert!(device[key].is_string(), "{key} in {device}");
        }
    }
    Ok(())
}

fn cli_help_lists_the_subcommands_and_configuration_errors_name_file_and_field() -> TestResult {
    let out = Command::new(agent_binary()).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("run") && text.contains("probe"), "{text}");

    let out =
        Command::new(agent_binary()).args(["run", "--config", "/nonexistent/fwctl.yaml"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/fwctl.yaml"));

    let dir = std::env::temp_dir().join(format!("fwctl-guard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "metrics:\n  listen: 127.0.0.1:1\naudit:\n  pth: /tmp/x\n").unwrap();
    let out = Command::new(agent_binary()).args(["run", "--config"]).arg(&bad).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("bad.yaml") && err.contains("pth") && err.contains('4'), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
    Ok(())
}

fn nvme_cli_commands_are_counted_with_the_client_as_subject() -> TestResult {
    require::bpf()?;
    // The real client (Debian's nvme-cli, installed by `cargo xtask setup`) against a
    // stand-in node: the tty answers ENOTTY, the agent sees nvme-cli's real ioctls.
    let nvme = StandIn::new().unwrap();
    let declared = [Declared { major_minor: nvme.major_minor(), class: "nvme", driver: "nvme" }];
    let mut agent = Agent::start("nvme-cli", &declared, 1 << 20).unwrap();
    for args in [&["id-ctrl"][..], &["smart-log"][..]] {
        let out = Command::new("nvme").args(args).arg(&nvme.path).output().expect("nvme-cli is installed");
        assert!(!out.status.success(), "a tty is not an NVMe controller");
    }
    let scrape = agent.wait_audit_events(2).unwrap();
    let count =
        |name| scrape.sum("fwctl_guard_commands_total", &[("class", "nvme-admin"), ("opcode_name", name)]);
    assert_eq!(count("identify"), 1.0, "{}", scrape.text);
    assert_eq!(count("get-log-page"), 1.0, "{}", scrape.text);
    agent.stop().unwrap();
    let records = agent.audit_records().unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
    for r in &records {
        assert_eq!(r["comm"], "nvme");
        assert_ne!(r["pid"].as_u64().unwrap() as u32, std::process::id());
    }
    // Identify Controller is CNS 1; SMART / Health is log page 2.
    assert_eq!(records[0]["cdw10"].as_u64().unwrap() & 0xff, 1);
    assert_eq!(records[1]["cdw10"].as_u64().unwrap() & 0xff, 2);
    Ok(())
}

/// `hook: auto` runs the best set that attaches and proves to run: BPF LSM where `bpf` is
/// an active LSM, the trampoline set where it is compiled in but not active (and then
/// `hook: lsm` refuses to start: its programs would attach and never run), else the
/// syscall tracepoints, saying why.
fn hook_choice_lsm_when_the_kernel_accepts_it_else_a_reasoned_fallback() -> TestResult {
    require::bpf()?;
    let can_deny = require::can_deny()?;
    let probe = require::probe()?;
    let nvme = StandIn::new().unwrap();
    let declared = [Declared { major_minor: nvme.major_minor(), class: "nvme", driver: "nvme" }];
    if can_deny {
        // auto picks a deny-capable set (LSM where bpf is active, else the trampoline set):
        // no syscall tracepoint, and commands are still counted with their result.
        let expected = if probe.lsm.bpf_active { "lsm" } else { "trampoline" };
        assert_eq!(probe.auto.hook_set.as_deref(), Some(expected), "{}", probe.hook_summary());
        let set = hook_set::by_label(expected).unwrap();
        let mut agent = Agent::start("hook-auto-deny", &declared, 1 << 20).unwrap();
        let scrape = agent.scrape().unwrap();
        assert_eq!(scrape.sum("fwctl_guard_program_attached", &[("program", set.programs[0].name)]), 1.0);
        assert_eq!(scrape.sum("fwctl_guard_program_attached", &[("program", "fwctl_sys_enter_ioctl")]), 0.0);
        for program in set.programs.iter().filter(|p| p.when == hook_set::When::Required) {
            let verified = [("hook_set", expected), ("program", program.name)];
            assert_eq!(scrape.sum("fwctl_guard_hook_verified", &verified), 1.0, "{}", scrape.text);
        }
        assert_eq!(http_get(&agent.addr, "/readyz").unwrap().0, 200);
        let p = nvme_passthru(0x06, 0, 1, false);
        ioctl(nvme.fd(), NVME_IOCTL_ADMIN_CMD, p.as_ptr() as u64);
        agent.wait_audit_events(1).unwrap();
        agent.stop().unwrap();
        let records = agent.audit_records().unwrap();
        assert_eq!(records.len(), 1, "only the command: the self-test's canaries are not audited");
        assert_eq!(records[0]["hook"], expected);
        assert_eq!(records[0]["ret"].as_i64(), Some(-ENOTTY), "return value from fexit");
        if !probe.lsm.bpf_active {
            // BPF LSM would attach and never run: named in `hook:`, the agent refuses.
            let (ok, err, pins) = run_forced("lsm");
            assert!(!ok);
            assert!(err.contains("hook: lsm was requested") && err.contains("not proven to run"), "{err}");
            assert_eq!(std::fs::read_dir(&pins).map(|d| d.count()).unwrap_or(0), 0, "{}", pins.display());
            remove_pins(&pins);
        }
    } else {
        // This kernel refuses BPF LSM: auto falls back and says why; lsm alone refuses to start.
        let agent = Agent::start("hook-auto-fallback", &declared, 1 << 20).unwrap();
        let out = agent.output();
        assert!(out.contains("falling back to syscall tracepoints") && out.contains("file_ioctl"), "{out}");
        assert_eq!(
            agent
                .scrape()
                .unwrap()
                .sum("fwctl_guard_program_attached", &[("program", "fwctl_sys_enter_ioctl")]),
            1.0
        );
        drop(agent);
        let (ok, err, pins) = run_forced("lsm");
        assert!(!ok);
        assert!(err.contains("hook: lsm was requested") && err.contains("file_ioctl"), "{err}");
        // The refused set left nothing pinned behind.
        assert_eq!(std::fs::read_dir(&pins).map(|d| d.count()).unwrap_or(0), 0, "{}", pins.display());
        remove_pins(&pins);
    }
    Ok(())
}

/// `fwctl-guard run --hook HOOK` with a minimal configuration: whether it succeeded (it is
/// expected to refuse and exit), its standard error, and its pin root.
fn run_forced(hook: &str) -> (bool, String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("fwctl-guard-hook-{hook}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(&config, "metrics:\n  listen: 127.0.0.1:0\naudit:\n  path: \"-\"\n").unwrap();
    let pins = test_pin_path(&format!("hook-{hook}-refused"));
    let out = Command::new(agent_binary())
        .args(["run", "--hook", hook, "--pin-path"])
        .arg(&pins)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    std::fs::remove_dir_all(dir).unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned(), pins)
}
