//! Policies on the real agent: verdicts recorded per rule, gap-free reloads (a bad file
//! keeps the running policy), enforcement where the LSM hook exists and a refusal to
//! pretend where it does not, and `policy check` as config management runs it.

use std::{
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
};

use fwctl_guard_tests::{
    agent::{agent_binary, Agent},
    ioctls::*,
    policies::{policy, policy_file, shipped_policies, DENY_FORMAT},
    require,
    standin::StandIn,
    tests,
    trial::{Test, TestResult},
};

pub const TESTS: &[Test] = tests![
    audit_mode_records_would_deny_per_rule_and_reloads_without_a_gap,
    audit_records_name_the_rule_that_decided,
    reload_loop_every_command_is_evaluated_under_exactly_one_policy,
    enforce_denies_before_the_driver_where_lsm_exists_and_refuses_to_pretend_elsewhere,
    policy_check_explain_and_diff_answer_config_management,
    explain_shows_the_effects_that_decided,
    effects_rules_judge_real_devices_by_what_they_declare,
];

const ENOTTY: i32 = libc::ENOTTY;
const EPERM: i32 = libc::EPERM;

const ALLOW_FORMAT: &str =
    "  - name: format-ok\n    action: audit\n    match: {class: nvme-admin, opcode: format-nvm}\n";

fn audit_mode_records_would_deny_per_rule_and_reloads_without_a_gap() -> TestResult {
    require::bpf()?;
    let nvme = StandIn::new().unwrap();
    let path = policy_file("policy-audit.yaml", &policy("audit-a", "audit", DENY_FORMAT));
    let mut agent = Agent::start_with(
        "policy-audit",
        &nvme.declared_nvme(),
        1 << 20,
        &["--policy", path.to_str().unwrap()],
    )
    .unwrap();
    for _ in 0..3 {
        assert_eq!(nvme.nvme_admin(0x80), ENOTTY, "audit mode never denies");
    }
    nvme.nvme_admin(0x06);
    let s = agent.wait_audit_events(4).unwrap();
    let count = |s: &fwctl_guard_tests::metrics::Scrape, verdict, rule| {
        s.sum(
            "fwctl_guard_commands_total",
            &[("opcode_name", "format-nvm"), ("verdict", verdict), ("rule", rule)],
        )
    };
    assert_eq!(count(&s, "would_deny", "no-format"), 3.0, "{}", s.text);
    assert_eq!(
        s.sum(
            "fwctl_guard_commands_total",
            &[("opcode_name", "identify"), ("verdict", "allow"), ("rule", "default")]
        ),
        1.0
    );
    assert_eq!(s.sum("fwctl_guard_policy_info", &[("name", "audit-a"), ("version", "1")]), 1.0);
    assert_eq!(s.sum("fwctl_guard_policy_generation", &[]), 1.0);
    assert_eq!(s.sum("fwctl_guard_enforcing", &[]), 0.0);

    // A broken file is rejected: the running policy stays, the failure is counted.
    policy_file(
        "policy-audit.yaml",
        "version: 1\nname: broken\nmode: audit\ndefault: allow\nrules:\n  - name: x\n    action: explode\n",
    );
    let s = agent.reload(1, 1).unwrap();
    assert_eq!(s.sum("fwctl_guard_policy_generation", &[]), 1.0);
    assert!(agent.output().contains("action"), "the rejection says why:\n{}", agent.output());
    nvme.nvme_admin(0x80);
    // A good file switches verdicts; counters carry on.
    policy_file("policy-audit.yaml", &policy("audit-b", "audit", ALLOW_FORMAT));
    agent.reload(2, 1).unwrap();
    nvme.nvme_admin(0x80);
    let s = agent.wait_audit_events(6).unwrap();
    assert_eq!(count(&s, "would_deny", "no-format"), 4.0, "{}", s.text);
    assert_eq!(count(&s, "audit", "format-ok"), 1.0, "{}", s.text);
    assert_eq!(s.sum("fwctl_guard_policy_info", &[("name", "audit-b")]), 1.0);
    assert_eq!(s.sum("fwctl_guard_policy_info", &[("name", "audit-a")]), 0.0);
    agent.stop().unwrap();
    let verdicts: Vec<String> =
        agent.audit_records().unwrap().iter().map(|r| r["verdict"].as_str().unwrap().to_string()).collect();
    assert_eq!(verdicts.iter().filter(|v| *v == "would_deny").count(), 4, "{verdicts:?}");
    Ok(())
}

/// Every audit record names the rule that decided it, as the metrics do: the named rule
/// that would deny a Format in audit mode, `default` for a command no rule names,
/// `on_undecodable` for a payload that cannot be read, and `none` without a policy.
fn audit_records_name_the_rule_that_decided() -> TestResult {
    require::bpf()?;
    let nvme = StandIn::new().unwrap();
    let path = policy_file("policy-rule.yaml", &policy("rule-names", "audit", DENY_FORMAT));
    let mut agent = Agent::start_with(
        "policy-rule",
        &nvme.declared_nvme(),
        1 << 20,
        &["--policy", path.to_str().unwrap()],
    )
    .unwrap();
    assert_eq!(nvme.nvme_admin(0x80), ENOTTY, "audit mode never denies");
    assert_eq!(nvme.nvme_admin(0x06), ENOTTY);
    // An argument pointer that cannot be read: the policy's on_undecodable decides.
    assert_eq!(ioctl(nvme.fd(), NVME_IOCTL_ADMIN_CMD, 0x10), -1);
    agent.wait_audit_events(3).unwrap();
    agent.stop().unwrap();
    let records = agent.audit_records().unwrap();
    let decided = |what: &str, which: &dyn Fn(&serde_json::Value) -> bool| {
        let r =
            records.iter().find(|r| which(r)).unwrap_or_else(|| panic!("no {what} record in {records:#?}"));
        (r["verdict"].as_str().map(str::to_string), r["rule"].as_str().map(str::to_string), r.clone())
    };
    let (verdict, rule, r) = decided("format-nvm", &|r| r["opcode_name"] == "format-nvm");
    assert_eq!((verdict.as_deref(), rule.as_deref()), (Some("would_deny"), Some("no-format")), "{r}");
    let (verdict, rule, r) = decided("identify", &|r| r["opcode_name"] == "identify");
    assert_eq!((verdict.as_deref(), rule.as_deref()), (Some("allow"), Some("default")), "{r}");
    let (_, rule, r) = decided("undecodable", &|r| r["decode"] != "ok");
    assert_eq!(rule.as_deref(), Some("on_undecodable"), "{r}");
    assert_eq!(records.len(), 3, "{records:#?}");

    let mut agent = Agent::start("policy-rule-none", &nvme.declared_nvme(), 1 << 20).unwrap();
    assert_eq!(nvme.nvme_admin(0x06), ENOTTY);
    agent.wait_audit_events(1).unwrap();
    agent.stop().unwrap();
    let records = agent.audit_records().unwrap();
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!((records[0]["verdict"].as_str(), records[0]["rule"].as_str()), (Some("allow"), Some("none")));
    Ok(())
}

fn reload_loop_every_command_is_evaluated_under_exactly_one_policy() -> TestResult {
    require::bpf()?;
    const SWAPS: u64 = 100;
    let nvme = Arc::new(StandIn::new().unwrap());
    let one =
        policy("one", "audit", "  - name: rule-one\n    action: audit\n    match: {class: nvme-admin}\n");
    let two =
        policy("two", "audit", "  - name: rule-two\n    action: deny\n    match: {class: nvme-admin}\n");
    let path = policy_file("policy-loop.yaml", &one);
    let agent = Agent::start_with(
        "policy-loop",
        &nvme.declared_nvme(),
        8 << 20,
        &["--policy", path.to_str().unwrap()],
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicU64::new(0));
    let client = {
        let (nvme, stop, issued) = (nvme.clone(), stop.clone(), issued.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                nvme.nvme_admin(0x06);
                issued.fetch_add(1, Ordering::Relaxed);
                // Continuous, but leaves the agent CPU to reload on a 2-vCPU machine.
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        })
    };
    for generation in 2..=SWAPS + 1 {
        policy_file("policy-loop.yaml", if generation % 2 == 0 { &two } else { &one });
        agent.reload(generation, 0).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    let issued = issued.load(Ordering::Relaxed) as f64;
    let counted = agent.scrape().unwrap();
    let short = counted.counted_short(counted.sum("fwctl_guard_commands_total", &[]), issued);
    let s = agent.wait_audit_events((issued - short) as u64).unwrap();
    let under = |rule, verdict| s.sum("fwctl_guard_commands_total", &[("rule", rule), ("verdict", verdict)]);
    let (a, b) = (under("rule-one", "audit"), under("rule-two", "would_deny"));
    assert!(a > 0.0 && b > 0.0, "commands ran under both policies: {a} {b}");
    assert_eq!(a + b, issued - short, "every command under exactly one of the two policies\n{}", s.text);
    assert_eq!(
        s.sum("fwctl_guard_commands_total", &[]),
        issued - short,
        "none unevaluated or under another rule"
    );
    // SIGHUP and the file watcher may both reload one write: at least one per swap.
    assert!(s.sum("fwctl_guard_policy_generation", &[]) >= (SWAPS + 1) as f64);
    Ok(())
}

fn enforce_denies_before_the_driver_where_lsm_exists_and_refuses_to_pretend_elsewhere() -> TestResult {
    require::bpf()?;
    let nvme = StandIn::new().unwrap();
    let path = policy_file("policy-enforce.yaml", &policy("enforce", "enforce", DENY_FORMAT));
    let args = ["--policy", path.to_str().unwrap()];
    if require::can_deny()? {
        let mut agent = Agent::start_with("policy-enforce", &nvme.declared_nvme(), 1 << 20, &args).unwrap();
        assert_eq!(nvme.nvme_admin(0x80), EPERM, "denied before the driver");
        assert_eq!(nvme.nvme_admin(0x06), ENOTTY, "other commands reach the driver");
        let s = agent.wait_audit_events(2).unwrap();
        assert_eq!(s.sum("fwctl_guard_enforcing", &[]), 1.0);
        let denied =
            [("opcode_name", "format-nvm"), ("verdict", "deny"), ("rule", "no-format"), ("result", "error")];
        assert_eq!(s.sum("fwctl_guard_commands_total", &denied), 1.0, "{}", s.text);
        agent.stop().unwrap();
        let records = agent.audit_records().unwrap();
        let r = records.iter().find(|r| r["opcode_name"] == "format-nvm").unwrap();
        assert_eq!((r["verdict"].as_str(), r["ret"].as_i64()), (Some("deny"), Some(-(EPERM as i64))), "{r}");
    } else {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        eprintln!("kernel {} refuses BPF LSM: checking the refusal and the audit-only path", kernel.trim());
        let err =
            Agent::start_with("policy-enforce-refused", &nvme.declared_nvme(), 1 << 20, &args).err().unwrap();
        let err = format!("{err:#}");
        assert!(err.contains("enforce mode") && err.contains("--allow-audit-only"), "{err}");
        let with = ["--policy", path.to_str().unwrap(), "--allow-audit-only"];
        let mut agent =
            Agent::start_with("policy-audit-only", &nvme.declared_nvme(), 1 << 20, &with).unwrap();
        assert_eq!(nvme.nvme_admin(0x80), ENOTTY, "nothing can be denied here");
        let s = agent.wait_audit_events(1).unwrap();
        assert_eq!(s.sum("fwctl_guard_enforcing", &[]), 0.0);
        assert_eq!(
            s.sum("fwctl_guard_commands_total", &[("verdict", "would_deny"), ("rule", "no-format")]),
            1.0
        );
        agent.stop().unwrap();
    }
    Ok(())
}

/// `policy check` as config management runs it (each shipped policy, then a bad file with
/// file:line and a suggestion, also as JSON), `policy explain` naming the deciding rule,
/// and `policy diff` for a rollout review. The shipped policies are embedded, so this also
/// runs where the repository is not (the VM guests).
fn policy_check_explain_and_diff_answer_config_management() -> TestResult {
    let shipped = shipped_policies();
    // Alternatives, each checked on its own (a directory would be one merged policy).
    let out = Command::new(agent_binary())
        .args(["policy", "check"])
        .args(["default.yaml", "fleet-baseline.yaml", "strict.yaml"].map(|f| shipped.join(f)))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let bad = policy_file("policy-bad.yaml", "version: 1\nname: bad\nmode: enforce\ndefault: allow\nrules:\n  - name: x\n    action: deny\n    match: {class: nvme-admin, opcode: formatnvm}\n");
    let out = Command::new(agent_binary()).args(["policy", "check"]).arg(&bad).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("policy-bad.yaml:8:") && text.contains("format-nvm"),
        "file:line:col and a suggestion: {text}"
    );
    let out = Command::new(agent_binary())
        .args(["policy", "check", "--format", "json"])
        .arg(&bad)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["files"][0]["valid"], false);
    assert_eq!(json["files"][0]["errors"][0]["line"], 8);
    let out = Command::new(agent_binary())
        .args(["policy", "explain"])
        .arg(shipped.join("fleet-baseline.yaml"))
        .args(["--class", "nvme-admin", "--opcode", "sanitize", "--uid", "1000", "--comm", "nvme"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("verdict: deny") && text.contains("nvme-destructive"), "{text}");
    // A rollout review: default (audit everything) -> fleet-baseline.
    let out = Command::new(agent_binary())
        .args(["policy", "diff"])
        .arg(shipped.join("default.yaml"))
        .arg(shipped.join("fleet-baseline.yaml"))
        .args(["--uid", "1000", "--comm", "nvme"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let format = text
        .lines()
        .find(|l| l.starts_with("nvme-admin") && l.contains("format-nvm"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(format.contains("audit [default] -> deny [nvme-destructive]"), "{format}");
    let identify = text.lines().find(|l| l.starts_with("nvme-admin") && l.contains(" identify "));
    assert!(identify.is_some_and(|l| l.contains("-> allow [nvme-admin-reads]")), "{text}");
    assert!(text.lines().last().unwrap().contains("change verdict"), "{text}");
    Ok(())
}

/// `policy explain` judges a command by what the device declares, and says which effects
/// decided: the fleet baseline refuses an opcode the device does not list and a CXL
/// command the device declares a data change for, without naming either opcode.
fn explain_shows_the_effects_that_decided() -> TestResult {
    let fleet = shipped_policies().join("fleet-baseline.yaml");
    let explain = |args: &[&str]| {
        let out =
            Command::new(agent_binary()).args(["policy", "explain"]).arg(&fleet).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let vendor = explain(&["--class", "nvme-admin", "--opcode", "0xc5", "--undeclared"]);
    assert!(vendor.contains("verdict: deny (rule 'undeclared-vendor-commands'"), "{vendor}");
    assert!(vendor.contains("matched on effects: the device does not list the opcode"), "{vendor}");
    let unknown = explain(&["--class", "nvme-admin", "--opcode", "0xc5"]);
    assert!(unknown.contains("device effects: unknown") && unknown.contains("verdict: audit"), "{unknown}");
    let sanitize = explain(&[
        "--class",
        "cxl-mem",
        "--opcode",
        "0x4400",
        "--effects",
        "data-change-immediate,background",
    ]);
    assert!(sanitize.contains("verdict: deny (rule 'declared-destructive'"), "{sanitize}");
    assert!(sanitize.contains("declared data-change-immediate"), "{sanitize}");
    let quiet = explain(&["--class", "cxl-mem", "--opcode", "0x4400", "--effects", "background"]);
    assert!(quiet.contains("verdict: audit (no rule matched"), "{quiet}");
    Ok(())
}

/// Effects rules on real devices: a policy that names no opcode refuses NVMe
/// Format NVM because the controller declares it changes logical blocks (LBCC),
/// allows Identify (declared without effects), refuses a vendor opcode the controller
/// does not list, and refuses a CXL mailbox write the memdev's CEL declares a data or
/// configuration change for. Runs in the VM guests (QEMU NVMe + cxl-type3, BPF LSM).
fn effects_rules_judge_real_devices_by_what_they_declare() -> TestResult {
    let ctrl = require::device("/dev/nvme0")?;
    let memdev = require::device("/dev/cxl/mem0")?;
    require::deny_hook()?;
    let rules = "  - name: declared-change\n    action: deny\n    match: {class: [nvme-admin, cxl-mem], effects: [data-change-immediate, config-change-immediate]}\n  - name: vendor-tunnel\n    action: deny\n    match: {class: nvme-admin, undeclared: true}\n";
    let path = policy_file("policy-effects.yaml", &policy("effects", "enforce", rules));
    let mut agent =
        Agent::start_with("effects", &[], 1 << 20, &["--policy", path.to_str().unwrap()]).unwrap();

    let nvme = std::fs::OpenOptions::new().read(true).write(true).open(&ctrl).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&nvme);
    let mut identify = vec![0u8; 4096];
    let mut p = nvme_passthru(0x06, 0, 1, false);
    p[24..32].copy_from_slice(&(identify.as_mut_ptr() as u64).to_le_bytes());
    p[36..40].copy_from_slice(&4096u32.to_le_bytes());
    assert_eq!(ioctl(fd, NVME_IOCTL_ADMIN_CMD, p.as_ptr() as u64), 0, "identify is declared without effects");
    let errno = |opcode: u8, nsid: u32| {
        let p = nvme_passthru(opcode, nsid, 0, false);
        let ret = ioctl(fd, NVME_IOCTL_ADMIN_CMD, p.as_ptr() as u64);
        (ret == -1).then(|| std::io::Error::last_os_error().raw_os_error().unwrap())
    };
    assert_eq!(errno(0x80, 1), Some(EPERM), "format-nvm: QEMU declares LBCC, a data change");
    let vendor = errno(0xc5, 0);
    if vendor != Some(EPERM) {
        let records = std::fs::read_to_string(&agent.audit_log).unwrap_or_default();
        panic!(
            "vendor opcode the controller does not list: {vendor:?}\n{}\n{records}\n{}",
            agent.scrape().map(|s| s.text).unwrap_or_default(),
            agent.output()
        );
    }

    // CXL Set LSA (kernel command id 10, opcode 0x4103): QEMU's CEL declares an immediate
    // configuration and data change; Identify (id 1) is declared without effects.
    let cxl = std::fs::OpenOptions::new().read(true).write(true).open(&memdev).unwrap();
    let cxl_fd = std::os::fd::AsRawFd::as_raw_fd(&cxl);
    let mut out = vec![0u8; 4096];
    let mut send = |id: u32, input: &[u8]| {
        let mut cmd = cxl_send(id, 0);
        cmd[16..20].copy_from_slice(&(input.len() as u32).to_le_bytes());
        cmd[24..32].copy_from_slice(&(input.as_ptr() as u64).to_le_bytes());
        cmd[32..36].copy_from_slice(&(out.len() as u32).to_le_bytes());
        cmd[40..48].copy_from_slice(&(out.as_mut_ptr() as u64).to_le_bytes());
        let ret = ioctl(cxl_fd, CXL_MEM_SEND_COMMAND, cmd.as_mut_ptr() as u64);
        (ret == -1).then(|| std::io::Error::last_os_error().raw_os_error().unwrap())
    };
    assert_eq!(send(1, &[]), None, "cxl identify");
    assert_eq!(send(10, &[0u8; 16]), Some(EPERM), "cxl set-lsa: declared config/data change");

    let scrape = agent.wait_audit_events(5).unwrap();
    let count = |labels: &[(&str, &str)]| scrape.sum("fwctl_guard_commands_total", labels);
    assert_eq!(
        count(&[("opcode_name", "format-nvm"), ("verdict", "deny"), ("rule", "declared-change")]),
        1.0,
        "{}",
        scrape.text
    );
    assert_eq!(
        count(&[
            ("class", "nvme-admin"),
            ("opcode", "0x00c5"),
            ("verdict", "deny"),
            ("rule", "vendor-tunnel")
        ]),
        1.0,
        "{}",
        scrape.text
    );
    for class in ["nvme-admin", "cxl-mem"] {
        let allowed = count(&[("class", class), ("opcode_name", "identify"), ("verdict", "allow")]);
        assert_eq!(allowed, 1.0, "{class}: {}", scrape.text);
    }
    assert_eq!(
        count(&[("class", "cxl-mem"), ("verdict", "deny"), ("rule", "declared-change")]),
        1.0,
        "{}",
        scrape.text
    );
    // Refused before the controller saw them.
    assert_eq!(scrape.sum("fwctl_guard_mailbox_commands_total", &[("opcode_name", "format-nvm")]), 0.0);
    agent.stop().unwrap();
    // The audit record says which effects the device declared.
    let records = agent.audit_records().unwrap();
    let format = records
        .iter()
        .find(|r| r["opcode_name"] == "format-nvm")
        .unwrap_or_else(|| panic!("no format-nvm record in {records:?}"));
    let effects = format["effects"].as_array().unwrap_or_else(|| panic!("no effects in {format}"));
    assert!(effects.iter().any(|e| e == "logical-block-content-change"), "{format}");
    assert_eq!(format["declared"], true, "{format}");
    Ok(())
}
