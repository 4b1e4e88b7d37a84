//! Running the real `fwctl-guard` binary with a generated configuration.

use std::{
    fs,
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::metrics::{scrape, Scrape};

/// A stand-in declared to the agent as a device of `class` with `driver`.
pub struct Declared<'a> {
    pub major_minor: String,
    pub class: &'a str,
    pub driver: &'a str,
}

/// Path of the agent binary: `FWCTL_GUARD_BIN`, else target/release/fwctl-guard.
pub fn agent_binary() -> PathBuf {
    std::env::var_os("FWCTL_GUARD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/fwctl-guard"))
}

pub struct Agent {
    child: Option<Child>,
    /// `fwctl-guard run` arguments, to start it again (`restart`).
    args: Vec<String>,
    /// This agent's own pin root: tests never adopt each other's programs.
    pub pin_path: PathBuf,
    pub dir: PathBuf,
    pub addr: String,
    pub audit_log: PathBuf,
    pub stdout_log: PathBuf,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Agent {
    /// Start the agent and wait until its hook programs are attached.
    pub fn start(name: &str, devices: &[Declared], ring_buffer_bytes: u32) -> Result<Self> {
        Self::start_with(name, devices, ring_buffer_bytes, &[])
    }

    /// Like `start`, with extra `fwctl-guard run` arguments (e.g. `--hook lsm`).
    pub fn start_with(
        name: &str,
        devices: &[Declared],
        ring_buffer_bytes: u32,
        args: &[&str],
    ) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("fwctl-guard-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let addr = format!("127.0.0.1:{}", free_port()?);
        let audit_log = dir.join("audit.jsonl");
        let mut config = format!(
            "metrics:\n  listen: {addr}\naudit:\n  path: {}\nevents:\n  ring_buffer_bytes: {ring_buffer_bytes}\ndevices:\n",
            audit_log.display()
        );
        for d in devices {
            config.push_str(&format!(
                "  - major_minor: \"{}\"\n    class: {}\n    driver: {}\n",
                d.major_minor, d.class, d.driver
            ));
        }
        if devices.is_empty() {
            config.push_str("  []\n");
        }
        let config_path = dir.join("config.yaml");
        fs::write(&config_path, config)?;
        let stdout_log = dir.join("agent.out");
        let pin_path = test_pin_path(name);
        remove_pins(&pin_path);
        let mut all_args: Vec<String> =
            vec!["run".into(), "--config".into(), config_path.display().to_string()];
        all_args.extend(["--pin-path".into(), pin_path.display().to_string()]);
        // `KEEP_PINS` among `args`: leave the programs attached at exit, as in production.
        if !args.contains(&KEEP_PINS) {
            all_args.push("--cleanup".into());
        }
        all_args.extend(args.iter().filter(|a| **a != KEEP_PINS).map(|a| a.to_string()));
        let mut agent = Self { child: None, args: all_args, pin_path, dir, addr, audit_log, stdout_log };
        agent.spawn()?;
        Ok(agent)
    }

    /// Start the process (output appended to `stdout_log`) and wait until it is ready.
    fn spawn(&mut self) -> Result<()> {
        let out = fs::OpenOptions::new().create(true).append(true).open(&self.stdout_log)?;
        let child = Command::new(agent_binary())
            .args(&self.args)
            .stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", agent_binary().display()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// SIGKILL the agent (no chance to clean up) and reap it.
    pub fn kill9(&mut self) -> Result<()> {
        let mut child = self.child.take().context("agent not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// The configuration file the agent runs with (tests may rewrite it before `restart`).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.yaml")
    }

    /// Start the agent again with the same configuration and pin root.
    pub fn restart(&mut self) -> Result<()> {
        anyhow::ensure!(self.child.is_none(), "agent still running");
        self.spawn()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                bail!("agent exited early ({status}):\n{}", self.output());
            }
            if let Ok(s) = scrape(&self.addr) {
                if s.sum("fwctl_guard_program_attached", &[]) >= 2.0 {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("agent not ready after 60 s:\n{}", self.output())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn output(&self) -> String {
        fs::read_to_string(&self.stdout_log).unwrap_or_default()
    }

    pub fn scrape(&self) -> Result<Scrape> {
        scrape(&self.addr)
    }

    /// Poll the metrics until `fwctl_guard_audit_events_written_total` reaches `n`.
    pub fn wait_audit_events(&self, n: u64) -> Result<Scrape> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.scrape()?;
            let written = s.sum("fwctl_guard_audit_events_written_total", &[]) as u64;
            if written >= n || Instant::now() > deadline {
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Send SIGHUP (policy reload) and wait until `fwctl_guard_policy_generation` reaches
    /// `generation` or `fwctl_guard_policy_reload_failures_total` reaches `failures`.
    pub fn reload(&self, generation: u64, failures: u64) -> Result<Scrape> {
        let pid = self.pid().context("agent not running")?;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid as i32, libc::SIGHUP) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.scrape()?;
            if s.sum("fwctl_guard_policy_generation", &[]) as u64 >= generation
                && s.sum("fwctl_guard_policy_reload_failures_total", &[]) as u64 >= failures
            {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("no reload to generation {generation} / failures {failures}:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn stop(&mut self) -> Result<i32> {
        let Some(mut child) = self.child.take() else { return Ok(0) };
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("agent did not stop within 20 s after SIGTERM:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The audit log's lines as JSON values.
    pub fn audit_records(&self) -> Result<Vec<serde_json::Value>> {
        let file = fs::File::open(&self.audit_log)?;
        BufReader::new(file)
            .lines()
            .map(|l| serde_json::from_str(&l?).context("audit line is not JSON"))
            .collect()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.stop();
        // `--cleanup` removed them unless the agent died; never leave a test's programs attached.
        remove_pins(&self.pin_path);
    }
}

/// Pass among `start_with`'s arguments to run without `--cleanup`.
pub const KEEP_PINS: &str = "<keep-pins>";

/// The pin root of test agent `name`, unique to this test process.
pub fn test_pin_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/sys/fs/bpf/fwctl-guard-test-{name}-{}", std::process::id()))
}

/// Remove a pin root (detaching whatever it holds) with `fwctl-guard uninstall`.
pub fn remove_pins(pin_path: &Path) {
    if pin_path.exists() {
        let _ = Command::new(agent_binary())
            .args(["uninstall", "--pin-path"])
            .arg(pin_path)
            .stdout(Stdio::null())
            .output();
    }
}
