//! Fleet operations on the host: the real agent's metrics through `promtool check metrics`,
//! `/healthz` and `/readyz` with curl, the capped per-process family, audit log reopen on
//! SIGUSR1, the syslog sink (a real datagram receiver), and the shipped Prometheus rules,
//! their `promtool test rules` suite and the logrotate file checked by the real tools.

use std::{
    collections::BTreeSet,
    fs,
    os::unix::{fs::PermissionsExt, net::UnixDatagram},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use fwctl_guard_tests::{
    agent::{Agent, Declared},
    ioctls::*,
    metrics::Scrape,
    require,
    standin::StandIn,
    tests,
    trial::{Test, TestResult},
    workspace,
};

pub const TESTS: &[Test] = tests![
    promtool_accepts_a_live_scrape_with_every_family_populated,
    healthz_and_readyz_answer_and_per_process_labels_are_off_by_default,
    per_process_series_are_capped_and_the_overflow_counted,
    sigusr1_reopens_the_audit_log_and_nothing_is_lost,
    syslog_sink_sends_every_record_and_counts_what_it_cannot,
    alert_rules_pass_promtool_and_their_unit_tests,
    the_logrotate_file_parses_and_covers_the_audit_log,
];

/// Stop the agent, insert `metrics` and `audit` settings into its configuration (the
/// harness writes both sections) and start it again.
fn reconfigure(agent: &mut Agent, metrics: &str, audit: &str) {
    agent.stop().unwrap();
    let path = agent.config_path();
    let config = fs::read_to_string(&path).unwrap();
    assert!(config.contains("\nmetrics:\n") || config.starts_with("metrics:\n"), "{config}");
    let config = config.replacen("metrics:\n", &format!("metrics:\n{metrics}"), 1).replacen(
        "audit:\n",
        &format!("audit:\n{audit}"),
        1,
    );
    fs::write(&path, config).unwrap();
    agent.restart().unwrap_or_else(|e| panic!("{e:#}"));
}

/// `n` NVMe Identify commands on `nvme` from a thread named `comm`.
fn identify_from(comm: &str, nvme: &StandIn, n: usize) {
    let (fd, comm) = (nvme.fd(), comm.to_string());
    std::thread::spawn(move || {
        set_thread_name(&comm);
        for _ in 0..n {
            let p = nvme_passthru(0x06, 0, 1, false);
            assert_eq!(ioctl(fd, NVME_IOCTL_ADMIN_CMD, p.as_ptr() as u64), -1);
        }
    })
    .join()
    .unwrap();
}

/// Poll the metrics until `done` holds, returning that scrape.
fn wait_for(agent: &Agent, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    agent.wait_for(what, done).unwrap_or_else(|e| panic!("{e:#}"))
}

/// GET `path` from the agent with curl: (HTTP status, body).
fn curl(agent: &Agent, path: &str) -> (u16, String) {
    fwctl_guard_tests::metrics::http_get(&agent.addr, path).unwrap()
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn promtool_accepts_a_live_scrape_with_every_family_populated() -> TestResult {
    require::bpf()?;
    let promtool = require::tool("promtool", "prometheus")?;
    let (mlx5, nvme, scsi) = (StandIn::new().unwrap(), StandIn::new().unwrap(), StandIn::new().unwrap());
    let declared = [
        Declared { major_minor: mlx5.major_minor(), class: "fwctl", driver: "mlx5" },
        Declared { major_minor: nvme.major_minor(), class: "nvme", driver: "nvme" },
        Declared { major_minor: scsi.major_minor(), class: "scsi", driver: "sg" },
    ];
    let policy = workspace::file("policies/default.yaml");
    let mut agent =
        Agent::start_with("promtool", &declared, 1 << 20, &["--policy", policy.to_str().unwrap()]).unwrap();
    // The opt-in families too.
    reconfigure(&mut agent, "  device_effects: true\n  per_process: {enabled: true, max_series: 1}\n", "");
    // Labelled families get samples: commands of three classes, a decode error,
    // per-process counts and their overflow (cap 1, two comms).
    identify_from("fg-promtool-a", &nvme, 2);
    identify_from("fg-promtool-b", &nvme, 1);
    let payload = mlx5_payload(0x100, 0);
    ioctl(mlx5.fd(), FWCTL_RPC, fwctl_rpc(0, &payload, &mut [0u8; 16]).as_ptr() as u64);
    ioctl(scsi.fd(), SG_IO, sg_io_v3(&[0x12u8, 0, 0, 0, 96, 0]).as_ptr() as u64);
    assert_eq!(ioctl(nvme.fd(), NVME_IOCTL_ADMIN_CMD, 0x10), -1, "unreadable argument");
    let scrape = agent.wait_audit_events(6).unwrap();
    for family in [
        "fwctl_guard_commands_total",
        "fwctl_guard_decode_errors_total",
        "fwctl_guard_policy_info",
        "fwctl_guard_process_commands_total",
        "fwctl_guard_label_overflow_total",
        "fwctl_guard_audit_reopens_total",
    ] {
        assert!(scrape.samples.keys().any(|s| s.name == family), "{family} has no sample\n{}", scrape.text);
    }

    // The real pipe an operator would type: curl … | promtool check metrics.
    let url = format!("http://{}/metrics", agent.addr);
    let mut curl = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5", &url])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(curl.stdout.take().unwrap())
        .output()
        .expect("promtool runs");
    assert!(curl.wait().unwrap().success(), "curl {url} failed");
    let lint =
        format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    assert!(
        check.status.success() && lint.trim().is_empty(),
        "promtool check metrics:\n{lint}\n{}",
        scrape.text
    );

    // Every family on the wire is documented (the README table is checked against the
    // agent's own family list by a unit test).
    let readme = fs::read_to_string(workspace::file("README.md")).unwrap();
    let scraped: BTreeSet<&str> = scrape.samples.keys().map(|s| s.name.as_str()).collect();
    for name in scraped {
        assert!(
            readme.contains(&format!("| `{name}` |")),
            "{name} is exported but not in the README's metrics table"
        );
    }
    Ok(())
}

fn healthz_and_readyz_answer_and_per_process_labels_are_off_by_default() -> TestResult {
    require::bpf()?;
    let nvme = StandIn::new().unwrap();
    let declared = [Declared { major_minor: nvme.major_minor(), class: "nvme", driver: "nvme" }];
    let policy = workspace::file("policies/default.yaml");
    let agent =
        Agent::start_with("health", &declared, 1 << 20, &["--policy", policy.to_str().unwrap()]).unwrap();
    assert_eq!(curl(&agent, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(curl(&agent, "/readyz"), (200, "ready\n".to_string()), "{}", agent.output());
    assert_eq!(curl(&agent, "/nope").0, 404);
    identify_from("fg-health", &nvme, 3);
    let scrape = agent.wait_audit_events(3).unwrap();
    assert_eq!(scrape.sum("fwctl_guard_commands_total", &[]), 3.0, "{}", scrape.text);
    for family in ["fwctl_guard_process_commands_total", "fwctl_guard_label_overflow_total"] {
        assert!(
            !scrape.samples.keys().any(|s| s.name == family),
            "{family} without per_process\n{}",
            scrape.text
        );
    }
    Ok(())
}

fn per_process_series_are_capped_and_the_overflow_counted() -> TestResult {
    require::bpf()?;
    let nvme = StandIn::new().unwrap();
    let declared = [Declared { major_minor: nvme.major_minor(), class: "nvme", driver: "nvme" }];
    let mut agent = Agent::start("per-process", &declared, 1 << 20).unwrap();
    reconfigure(&mut agent, "  per_process:\n    enabled: true\n    max_series: 1\n", "");
    let overflow = [("metric", "fwctl_guard_process_commands_total")];
    let scrape = agent.scrape().unwrap();
    assert_eq!(scrape.sum("fwctl_guard_label_overflow_total", &overflow), 0.0, "{}", scrape.text);
    identify_from("fg-first", &nvme, 2);
    agent.wait_audit_events(2).unwrap();
    identify_from("fg-second", &nvme, 3);
    let scrape = agent.wait_audit_events(5).unwrap();
    let series: Vec<_> =
        scrape.samples.iter().filter(|(s, _)| s.name == "fwctl_guard_process_commands_total").collect();
    assert_eq!(series.len(), 1, "{}", scrape.text);
    let (sample, value) = series[0];
    assert_eq!(*value, 2.0);
    // SAFETY: no preconditions.
    let uid = unsafe { libc::geteuid() }.to_string();
    let labels: Vec<(&str, &str)> = sample.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        labels,
        [("class", "nvme-admin"), ("comm", "fg-first"), ("uid", uid.as_str()), ("verdict", "allow")]
    );
    assert_eq!(scrape.sum("fwctl_guard_label_overflow_total", &overflow), 3.0, "{}", scrape.text);
    // The exact counters are not capped.
    assert_eq!(scrape.sum("fwctl_guard_commands_total", &[]), 5.0);
    Ok(())
}

fn sigusr1_reopens_the_audit_log_and_nothing_is_lost() -> TestResult {
    require::bpf()?;
    let nvme = StandIn::new().unwrap();
    let declared = [Declared { major_minor: nvme.major_minor(), class: "nvme", driver: "nvme" }];
    let agent = Agent::start("reopen", &declared, 1 << 20).unwrap();
    let pid = agent.pid().unwrap() as i32;
    let rotated = agent.audit_log.with_extension("jsonl.1");
    identify_from("fg-before", &nvme, 3);
    agent.wait_audit_events(3).unwrap();
    // logrotate's order: rename, then signal. Commands in between go to the renamed file.
    fs::rename(&agent.audit_log, &rotated).unwrap();
    identify_from("fg-between", &nvme, 2);
    agent.wait_audit_events(5).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    wait_for(&agent, "reopen", |s| s.sum("fwctl_guard_audit_reopens_total", &[("result", "ok")]) == 1.0);
    identify_from("fg-after", &nvme, 4);
    agent.wait_audit_events(9).unwrap();
    let comms = |path: &Path| -> Vec<String> {
        lines(path).iter().map(|r| r["comm"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(comms(&rotated), ["fg-before", "fg-before", "fg-before", "fg-between", "fg-between"]);
    assert_eq!(comms(&agent.audit_log), ["fg-after"; 4]);
    assert_eq!(fs::metadata(&agent.audit_log).unwrap().permissions().mode() & 0o777, 0o640);

    // A path that cannot be opened: the agent keeps writing to the file it has.
    let moved = agent.dir.with_extension("moved");
    let _ = fs::remove_dir_all(&moved);
    fs::rename(&agent.dir, &moved).unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    let scrape = wait_for(&agent, "failed reopen", |s| {
        s.sum("fwctl_guard_audit_reopens_total", &[("result", "error")]) == 1.0
    });
    assert_eq!(scrape.sum("fwctl_guard_audit_reopens_total", &[("result", "ok")]), 1.0);
    identify_from("fg-kept", &nvme, 1);
    agent.wait_audit_events(10).unwrap();
    fs::rename(&moved, &agent.dir).unwrap();
    assert_eq!(comms(&agent.audit_log), ["fg-after", "fg-after", "fg-after", "fg-after", "fg-kept"]);
    assert!(agent.output().contains("cannot reopen the audit log"), "{}", agent.output());
    Ok(())
}

fn syslog_sink_sends_every_record_and_counts_what_it_cannot() -> TestResult {
    require::bpf()?;
    let nvme = StandIn::new().unwrap();
    let declared = [Declared { major_minor: nvme.major_minor(), class: "nvme", driver: "nvme" }];
    let mut agent = Agent::start("syslog", &declared, 1 << 20).unwrap();
    // A real receiver on its own socket (not /dev/log: the host's daemon, if any, stays
    // out of it); the agent sends exactly what it would send to /dev/log.
    let socket = agent.dir.join("log.sock");
    let receiver = UnixDatagram::bind(&socket).unwrap();
    receiver.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    reconfigure(
        &mut agent,
        "",
        &format!(
            "  syslog:\n    enabled: true\n    facility: local3\n    ident: fg-test\n    socket: {}\n",
            socket.display()
        ),
    );
    identify_from("fg-syslog", &nvme, 3);
    agent.wait_audit_events(3).unwrap();
    let pid = agent.pid().unwrap();
    let mut received = Vec::new();
    let mut buf = vec![0u8; 65536];
    for _ in 0..3 {
        let n = receiver.recv(&mut buf).expect("a syslog datagram");
        received.push(String::from_utf8(buf[..n].to_vec()).unwrap());
    }
    let prefix = format!(" fg-test[{pid}]: ");
    let mut from_syslog = Vec::new();
    for datagram in &received {
        // local3 (19) * 8 + info (6) = 158; then the syslog(3) timestamp.
        assert!(datagram.starts_with("<158>"), "{datagram}");
        let (_, json) = datagram.split_once(&prefix).unwrap_or_else(|| panic!("no '{prefix}' in {datagram}"));
        from_syslog.push(serde_json::from_str::<serde_json::Value>(json).unwrap());
    }
    assert_eq!(from_syslog, lines(&agent.audit_log), "syslog carries the audit lines");

    // Nobody listening: the record is still in the file, and counted as not sent.
    drop(receiver);
    fs::remove_file(&socket).unwrap();
    identify_from("fg-syslog", &nvme, 1);
    let scrape = agent.wait_audit_events(4).unwrap();
    let scrape = if scrape.sum("fwctl_guard_audit_errors_total", &[("reason", "syslog")]) == 1.0 {
        scrape
    } else {
        wait_for(&agent, "syslog error", |s| {
            s.sum("fwctl_guard_audit_errors_total", &[("reason", "syslog")]) == 1.0
        })
    };
    assert_eq!(lines(&agent.audit_log).len(), 4);
    assert_eq!(scrape.sum("fwctl_guard_audit_errors_total", &[("reason", "syslog")]), 1.0, "{}", scrape.text);
    Ok(())
}

fn alert_rules_pass_promtool_and_their_unit_tests() -> TestResult {
    let promtool = require::tool("promtool", "prometheus")?;
    let dir = workspace::file("deploy/prometheus");
    for args in [["check", "rules", "alerts.yaml"], ["test", "rules", "alerts.test.yaml"]] {
        let out = Command::new(&promtool).args(args).current_dir(&dir).output().expect("promtool runs");
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "promtool {}:\n{text}", args.join(" "));
        assert!(text.contains("SUCCESS"), "promtool {}:\n{text}", args.join(" "));
    }
    // The rules file fires what its tests expect; a test that expected nothing would pass
    // even with a broken rule, so every alert must be exercised.
    let rules = fs::read_to_string(dir.join("alerts.yaml")).unwrap();
    let tests = fs::read_to_string(dir.join("alerts.test.yaml")).unwrap();
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(
            tests.contains(&format!("alertname: {alert}\n        exp_alerts:\n          - exp_labels")),
            "{alert} never fires in alerts.test.yaml"
        );
    }
    Ok(())
}

fn the_logrotate_file_parses_and_covers_the_audit_log() -> TestResult {
    let logrotate = require::tool("logrotate", "logrotate")?;
    let state = std::env::temp_dir().join(format!("fwctl-guard-logrotate-state-{}", std::process::id()));
    // --debug: parse and plan only, nothing is rotated or signalled.
    let out = Command::new(logrotate)
        .arg("--debug")
        .arg("--state")
        .arg(&state)
        .arg(workspace::file("deploy/logrotate/fwctl-guard"))
        .output()
        .expect("logrotate runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let _ = fs::remove_file(&state);
    assert!(out.status.success(), "{text}");
    assert!(!text.to_lowercase().contains("error"), "{text}");
    assert!(text.contains("/var/log/fwctl-guard/audit.jsonl"), "{text}");
    Ok(())
}
