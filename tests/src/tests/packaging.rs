//! The Debian package (`cargo xtask package`, built by `cargo xtask test` before these
//! tests): installed with the real dpkg into a scratch root, its files, modes, conffiles
//! and maintainer scripts; the installed binary checks the installed policies; every
//! shipped policy validates against `policies/schema.json` with a real JSON Schema
//! validator (python3-jsonschema); the unit passes `systemd-analyze verify`; and the
//! installed agent starts the way the unit starts it — ExecStartPre, then ExecStart under
//! the unit's capability bounding set (setpriv) — serves metrics, reloads its policy.d
//! on change and on ExecReload's SIGHUP, and rejects a bad file.
//!
//! systemd is not PID 1 here (a container), so `systemctl start` cannot run for real: the
//! unit's command lines are taken from the unit file and run as systemd would run them.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use fwctl_guard_tests::{
    agent::Agent,
    ioctls::{ioctl, nvme_passthru, NVME_IOCTL_ADMIN_CMD},
    require,
    standin::StandIn,
    tests,
    trial::{Test, TestResult},
    unit, workspace,
};

pub const TESTS: &[Test] = tests![
    the_package_installs_its_files_checks_its_policies_and_purges,
    every_shipped_policy_validates_against_the_json_schema,
    the_unit_verifies_and_its_hardening_is_scored,
    the_installed_agent_starts_like_the_unit_and_reloads_its_policy_directory,
];

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The .deb `cargo xtask package` wrote (or `FWCTL_GUARD_DEB`).
fn deb() -> PathBuf {
    if let Some(path) = std::env::var_os("FWCTL_GUARD_DEB") {
        return path.into();
    }
    let arch = text(&run(Command::new("dpkg").arg("--print-architecture")));
    let path = workspace::file("target/debian").join(format!(
        "fwctl-guard_{}_{}.deb",
        env!("CARGO_PKG_VERSION"),
        arch.trim()
    ));
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo xtask package` (`cargo xtask test` does, before these tests)",
        path.display()
    );
    path
}

/// A root directory with its own dpkg database, the package installed into it.
struct Scratch {
    root: PathBuf,
}

impl Scratch {
    /// `dpkg --root` with chrootless maintainer scripts (they see `DPKG_ROOT` and leave this
    /// system's services and bpffs alone); dependencies are this host's, not the scratch
    /// database's, hence `--force-depends`.
    fn install(name: &str) -> Self {
        let root = std::env::temp_dir().join(format!("fwctl-guard-scratch-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("var/lib/dpkg/info")).unwrap();
        fs::create_dir_all(root.join("var/lib/dpkg/updates")).unwrap();
        fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
        fs::write(root.join("var/lib/dpkg/available"), "").unwrap();
        let s = Self { root };
        let out = s.dpkg(&["-i", deb().to_str().unwrap()]);
        assert!(out.status.success(), "dpkg -i:\n{}", text(&out));
        s
    }

    fn dpkg(&self, args: &[&str]) -> Output {
        run(Command::new("dpkg")
            .arg(format!("--root={}", self.root.display()))
            .args(["--force-script-chrootless", "--force-depends"])
            .args(args))
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    /// `/usr/bin/x`, `/etc/fwctl-guard`, `/var/log/fwctl-guard` → under this root.
    fn rewrite(&self, line: &str) -> String {
        let r = self.root.display();
        line.replace("/usr/bin/fwctl-guard", &format!("{r}/usr/bin/fwctl-guard"))
            .replace("/etc/fwctl-guard", &format!("{r}/etc/fwctl-guard"))
            .replace("/var/log/fwctl-guard", &format!("{r}/var/log/fwctl-guard"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

fn the_package_installs_its_files_checks_its_policies_and_purges() -> TestResult {
    // Root: dpkg installs with ownership, into its admin directory.
    require::root()?;
    let deb = deb();
    let field =
        |f: &str| text(&run(Command::new("dpkg-deb").args(["-f"]).arg(&deb).arg(f))).trim().to_string();
    assert_eq!(field("Package"), "fwctl-guard");
    assert!(field("Depends").contains("libc6 (>= "), "Depends from dpkg-shlibdeps: {}", field("Depends"));

    let s = Scratch::install("files");
    for (path, want) in [
        ("/usr/bin/fwctl-guard", 0o755),
        ("/lib/systemd/system/fwctl-guard.service", 0o644),
        ("/etc/fwctl-guard/config.yaml", 0o644),
        ("/etc/fwctl-guard/policy.d/00-default.yaml", 0o644),
        ("/etc/logrotate.d/fwctl-guard", 0o644),
        ("/usr/share/fwctl-guard/policies/fleet-baseline.yaml", 0o644),
        ("/usr/share/fwctl-guard/policies/strict.yaml", 0o644),
        ("/usr/share/fwctl-guard/policies/schema.json", 0o644),
        ("/usr/share/fwctl-guard/prometheus/alerts.yaml", 0o644),
        ("/usr/share/doc/fwctl-guard/copyright", 0o644),
        ("/var/log/fwctl-guard", 0o750),
    ] {
        assert_eq!(mode(&s.path(path)), want, "{path}");
    }
    let listed = text(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)));
    assert!(listed.lines().all(|l| l.contains(" root/root ")), "owned by root:\n{listed}");
    let status = text(&s.dpkg(&["-s", "fwctl-guard"]));
    for conffile in [
        "/etc/fwctl-guard/config.yaml",
        "/etc/fwctl-guard/policy.d/00-default.yaml",
        "/etc/logrotate.d/fwctl-guard",
    ] {
        assert!(status.contains(&format!(" {conffile} ")), "conffile {conffile}:\n{status}");
    }
    let config = fs::read_to_string(s.path("/etc/fwctl-guard/config.yaml")).unwrap();
    assert!(config.lines().any(|l| l == "policy: /etc/fwctl-guard/policy.d"), "{config}");

    // The maintainer scripts parse, and the installed ones are the ones in the repo.
    for script in ["postinst", "prerm", "postrm"] {
        let installed = s.path(&format!("/var/lib/dpkg/info/fwctl-guard.{script}"));
        let out = run(Command::new("sh").arg("-n").arg(&installed));
        assert!(out.status.success(), "{script}: {}", text(&out));
        assert_eq!(
            fs::read_to_string(&installed).unwrap(),
            fs::read_to_string(workspace::file("packaging/debian").join(script)).unwrap()
        );
    }

    // The installed binary validates the installed policy directory and the examples.
    let bin = s.path("/usr/bin/fwctl-guard");
    let out = run(Command::new(&bin).args(["policy", "check"]).arg(s.path("/etc/fwctl-guard/policy.d")));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("policy.d: ok: policy 'default', mode audit"), "{}", text(&out));
    let share = s.path("/usr/share/fwctl-guard/policies");
    let examples = ["default.yaml", "fleet-baseline.yaml", "strict.yaml"].map(|f| share.join(f));
    let out = run(Command::new(&bin).args(["policy", "check"]).args(&examples));
    assert!(out.status.success(), "{}", text(&out));
    // The shipped schema is the one the installed binary generates.
    let out = run(Command::new(&bin).args(["policy", "schema"]));
    assert_eq!(String::from_utf8_lossy(&out.stdout), fs::read_to_string(share.join("schema.json")).unwrap());

    // Purge: files, conffiles and the log directory go (the scripts skip systemctl and
    // bpffs: DPKG_ROOT is set).
    let out = s.dpkg(&["--purge", "fwctl-guard"]);
    assert!(out.status.success(), "{}", text(&out));
    for gone in [
        "/usr/bin/fwctl-guard",
        "/etc/fwctl-guard",
        "/var/log/fwctl-guard",
        "/lib/systemd/system/fwctl-guard.service",
    ] {
        assert!(!s.path(gone).exists(), "{gone} left after purge");
    }
    Ok(())
}

/// Validate `files` (YAML) against `schema` with python3-jsonschema; the validator's
/// verdict per file.
fn schema_validate(schema: &Path, files: &[PathBuf]) -> Vec<(PathBuf, Result<(), String>)> {
    const SCRIPT: &str = r#"
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
for path in sys.argv[2:]:
    errors = sorted(validator.iter_errors(yaml.safe_load(open(path))), key=lambda e: list(e.path))
    print(json.dumps([path, ["/".join(map(str, e.path)) + ": " + e.message for e in errors]]))
"#;
    let out = run(Command::new("/usr/bin/python3").arg("-c").arg(SCRIPT).arg(schema).args(files));
    assert!(
        out.status.success(),
        "python3-jsonschema (installed by `cargo xtask setup`) failed:\n{}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (path, errors): (PathBuf, Vec<String>) = serde_json::from_str(l).unwrap();
            (path, if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) })
        })
        .collect()
}

fn every_shipped_policy_validates_against_the_json_schema() -> TestResult {
    let policies = workspace::file("policies");
    let mut files: Vec<PathBuf> =
        ["default.yaml", "fleet-baseline.yaml", "strict.yaml"].iter().map(|f| policies.join(f)).collect();
    // A policy.d drop-in: header keys left to another file, which the schema allows.
    let dir = std::env::temp_dir().join(format!("fwctl-guard-schema-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let drop_in = dir.join("50-site.yaml");
    fs::write(&drop_in, "version: 1\nrules:\n  - name: x\n    action: deny\n    match: {class: nvme-admin, opcode: [format-nvm, 0x84], uid: 1000, effects: {any: [lbcc]}, not: {comm: fwupd}}\n").unwrap();
    files.push(drop_in);
    let bad = [
        ("bad-key.yaml", "version: 1\nname: x\nmode: enforce\ndefault: allow\nrulez: []\n", "rulez"),
        ("bad-action.yaml", "version: 1\nrules:\n  - {name: x, action: block}\n", "block"),
        ("bad-class.yaml", "version: 1\nrules:\n  - {name: x, action: deny, match: {class: nvme}}\n", "nvme"),
        (
            "bad-not.yaml",
            "version: 1\nrules:\n  - {name: x, action: deny, match: {not: {not: {uid: 0}}}}\n",
            "not",
        ),
        ("bad-version.yaml", "version: 2\nname: x\n", "1 was expected"),
        (
            "bad-comm.yaml",
            "version: 1\nrules:\n  - {name: x, action: deny, match: {comm: a-very-long-process-name}}\n",
            "long",
        ),
    ];
    for (name, text, _) in &bad {
        fs::write(dir.join(name), text).unwrap();
    }
    files.extend(bad.iter().map(|(n, _, _)| dir.join(n)));
    let results = schema_validate(&policies.join("schema.json"), &files);
    assert_eq!(results.len(), files.len());
    for (path, result) in &results[..4] {
        assert!(result.is_ok(), "{}: {result:?}", path.display());
    }
    for ((path, result), (_, _, why)) in results[4..].iter().zip(&bad) {
        let err = result.as_ref().expect_err(&format!("{} must fail validation", path.display()));
        assert!(err.contains(why), "{}: {err}", path.display());
    }
    Ok(())
}

/// The unit in this checkout.
fn repo_unit() -> String {
    fs::read_to_string(workspace::file("packaging/fwctl-guard.service")).unwrap()
}

fn the_unit_verifies_and_its_hardening_is_scored() -> TestResult {
    require::root()?;
    let s = Scratch::install("verify");
    // As installed, on this host: the only complaint is that /usr/bin/fwctl-guard is not
    // here (it is in the scratch root).
    let installed = s.path("/lib/systemd/system/fwctl-guard.service");
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&installed));
    let complaints: Vec<String> = text(&out).lines().map(str::to_string).collect();
    assert!(
        complaints.iter().all(|l| l.contains("Command /usr/bin/fwctl-guard is not executable")),
        "{complaints:?}"
    );
    // With the binary's path in the scratch root: clean.
    let dir = s.path("/verify");
    fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("fwctl-guard.service");
    let rewritten: Vec<String> = repo_unit().lines().map(|l| s.rewrite(l)).collect();
    fs::write(&copy, rewritten.join("\n") + "\n").unwrap();
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&copy));
    assert!(out.status.success() && text(&out).trim().is_empty(), "{}", text(&out));
    // systemd's own exposure score of the sandboxing (0 = locked down, 10 = none).
    let out =
        run(Command::new("systemd-analyze").args(["security", "--offline=true", "--no-pager"]).arg(&copy));
    let report = text(&out);
    let score: f64 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for fwctl-guard.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    assert!(score <= 5.0, "exposure {score}:\n{report}");
    Ok(())
}

/// Poll the installed agent's metrics until `done` holds.
fn wait(
    agent: &Agent,
    what: &str,
    done: impl Fn(&fwctl_guard_tests::metrics::Scrape) -> bool,
) -> fwctl_guard_tests::metrics::Scrape {
    agent.wait_for(what, done).unwrap_or_else(|e| panic!("{e:#}"))
}

fn the_installed_agent_starts_like_the_unit_and_reloads_its_policy_directory() -> TestResult {
    require::bpf()?;
    let s = Scratch::install("run");
    let installed = fs::read_to_string(s.path("/lib/systemd/system/fwctl-guard.service")).unwrap();
    let [pre] = &unit::values(&installed, "ExecStartPre")[..] else { panic!("one ExecStartPre") };
    let [start] = &unit::values(&installed, "ExecStart")[..] else { panic!("one ExecStart") };
    let [reload] = &unit::values(&installed, "ExecReload")[..] else { panic!("one ExecReload") };
    assert_eq!(reload, "/bin/kill -HUP $MAINPID");
    // As systemd runs a root service with the unit's CapabilityBoundingSet=.
    let setpriv = unit::setpriv(&unit::capabilities(&installed));
    let command_line = |line: &str| -> Vec<String> {
        setpriv.iter().cloned().chain(s.rewrite(line).split_whitespace().map(str::to_string)).collect()
    };

    // The installed configuration, with this test's port (9847 may be taken).
    let addr = format!(
        "127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    );
    let config_path = s.path("/etc/fwctl-guard/config.yaml");
    let config = fs::read_to_string(&config_path).unwrap();
    assert!(config.contains("listen: 127.0.0.1:9847"), "{config}");
    let config = s.rewrite(&config.replace("127.0.0.1:9847", &addr));
    fs::write(&config_path, config).unwrap();

    let pre = command_line(pre);
    let out = run(Command::new(&pre[0]).args(&pre[1..]));
    assert!(out.status.success(), "ExecStartPre {pre:?}: {}", text(&out));

    // A stand-in declared as an NVMe controller, to see a command counted under the set.
    let nvme = StandIn::new().unwrap();
    // The test's own pin root (the production one may be in use), removed at exit.
    let agent = Agent::builder("packaging")
        .command(command_line(start), &addr, &s.path("/var/log/fwctl-guard/audit.jsonl"))
        .args(["--device".to_string(), format!("{}=nvme", nvme.path.display())])
        .start()
        .unwrap_or_else(|e| panic!("the installed agent: {e:#}"));
    let first = agent.scrape().unwrap();
    assert_eq!(first.sum("fwctl_guard_policy_info", &[("name", "default")]), 1.0, "{}", first.text);
    assert_eq!(first.sum("fwctl_guard_policy_generation", &[]), 1.0);

    // A drop-in is picked up without a signal (the directory is polled).
    let dir = s.path("/etc/fwctl-guard/policy.d");
    fs::write(
        dir.join("10-site.yaml"),
        "version: 1\nrules:\n  - name: site-identify\n    action: audit\n    match: {class: nvme-admin, opcode: identify}\n",
    )
    .unwrap();
    wait(&agent, "drop-in loaded", |s| s.sum("fwctl_guard_policy_generation", &[]) >= 2.0);
    let identify = nvme_passthru(0x06, 0, 1, false);
    ioctl(nvme.fd(), NVME_IOCTL_ADMIN_CMD, identify.as_ptr() as u64);
    wait(&agent, "command counted by the drop-in's rule", |s| {
        s.sum("fwctl_guard_commands_total", &[("rule", "site-identify"), ("opcode_name", "identify")]) >= 1.0
    });

    // A bad file never replaces the running policy; the failure is counted.
    fs::write(dir.join("20-bad.yaml"), "version: 1\nmode: enforce\n").unwrap();
    let s2 = wait(&agent, "bad drop-in rejected", |s| {
        s.sum("fwctl_guard_policy_reload_failures_total", &[]) >= 1.0
    });
    assert_eq!(s2.sum("fwctl_guard_policy_generation", &[]), 2.0);
    assert!(
        agent.output().contains("20-bad.yaml:2:7: error: mode: 'mode' is already set in"),
        "{}",
        agent.output()
    );
    fs::remove_file(dir.join("20-bad.yaml")).unwrap();
    wait(&agent, "removal of the bad file reloads", |s| s.sum("fwctl_guard_policy_generation", &[]) >= 3.0);

    // ExecReload: SIGHUP to the main process.
    let pid = agent.pid().unwrap().to_string();
    let out = run(Command::new("sh").arg("-c").arg(reload.replace("$MAINPID", &pid)));
    assert!(out.status.success(), "{}", text(&out));
    let last = wait(&agent, "ExecReload", |s| s.sum("fwctl_guard_policy_generation", &[]) >= 4.0);
    assert_eq!(last.sum("fwctl_guard_policy_reload_failures_total", &[]), 1.0);
    // Audit records land in the installed log directory.
    wait(&agent, "audit written", |s| s.sum("fwctl_guard_audit_events_written_total", &[]) >= 1.0);
    let audit = fs::read_to_string(s.path("/var/log/fwctl-guard/audit.jsonl")).unwrap_or_default();
    assert!(audit.contains("\"opcode_name\":\"identify\""), "{audit}\n{}", agent.output());
    Ok(())
}
