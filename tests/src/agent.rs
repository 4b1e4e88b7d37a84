//! Running the real `fwctl-guard` agent for a test: with a generated configuration (or
//! its own command line, e.g. an installed package's), on its own pin root, through a
//! wrapper such as `setpriv` when asked; waiting until it is ready, reading its metrics
//! and audit log, signalling it, and never leaving its programs attached.

use std::{
    ffi::OsString,
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
    /// The whole command line, to start it again (`restart`).
    command: Vec<OsString>,
    ready_within: Duration,
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

/// How to start an agent: by default the binary under test with a generated configuration
/// (metrics on a free port, an audit log and the declared devices in the test's directory),
/// its own pin root and `--cleanup`.
pub struct AgentBuilder {
    name: String,
    devices: Vec<(String, String, String)>,
    ring_buffer_bytes: Option<u32>,
    policy_in_config: Option<String>,
    args: Vec<OsString>,
    keep_pins: bool,
    wrapper: Vec<OsString>,
    own_command: Option<OwnCommand>,
    ready_within: Duration,
    audit_log_discarded: bool,
}

/// A command line that names its own configuration, and what that configuration says.
struct OwnCommand {
    command: Vec<OsString>,
    addr: String,
    audit_log: PathBuf,
}

impl AgentBuilder {
    /// Declare `devices` in the configuration.
    pub fn devices(mut self, devices: &[Declared]) -> Self {
        self.devices.extend(
            devices.iter().map(|d| (d.major_minor.clone(), d.class.to_string(), d.driver.to_string())),
        );
        self
    }

    /// `events: ring_buffer_bytes` (else the agent's default).
    pub fn ring_buffer_bytes(mut self, bytes: u32) -> Self {
        self.ring_buffer_bytes = Some(bytes);
        self
    }

    /// The configuration names policy file `policy.yaml` (with `text`) beside it, as the
    /// shipped configuration names its policy directory, instead of `--policy`.
    pub fn policy_in_config(mut self, text: &str) -> Self {
        self.policy_in_config = Some(text.to_string());
        self
    }

    /// Extra `fwctl-guard run` arguments (e.g. `--hook lsm`, `--policy P`).
    pub fn args<S: Into<OsString>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// No `--cleanup`: the programs stay attached at exit, as in production.
    pub fn keep_pins(mut self) -> Self {
        self.keep_pins = true;
        self
    }

    /// Run the agent through `wrapper` (e.g. `setpriv ... --`), which execs it.
    pub fn wrapped_in<S: Into<OsString>>(mut self, wrapper: impl IntoIterator<Item = S>) -> Self {
        self.wrapper = wrapper.into_iter().map(Into::into).collect();
        self
    }

    /// Run `command` (a binary and its arguments, e.g. an installed unit's `ExecStart`)
    /// instead of the binary under test with a generated configuration. Its configuration
    /// serves metrics on `addr` and writes the audit log to `audit_log`.
    pub fn command<S: Into<OsString>>(
        mut self,
        command: impl IntoIterator<Item = S>,
        addr: &str,
        audit_log: &Path,
    ) -> Self {
        self.own_command = Some(OwnCommand {
            command: command.into_iter().map(Into::into).collect(),
            addr: addr.to_string(),
            audit_log: audit_log.to_path_buf(),
        });
        self
    }

    /// The audit log goes to /dev/null (floods that would fill the guest's memory with it).
    pub fn audit_log_discarded(mut self) -> Self {
        self.audit_log_discarded = true;
        self
    }

    /// How long the hook programs may take to attach (default 60 s).
    pub fn ready_within(mut self, timeout: Duration) -> Self {
        self.ready_within = timeout;
        self
    }

    /// Start the agent and wait until its hook programs are attached; an agent that
    /// exits or is not ready in time is an error carrying its output.
    pub fn start(self) -> Result<Agent> {
        let dir = std::env::temp_dir().join(format!("fwctl-guard-test-{}-{}", self.name, std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let pin_path = test_pin_path(&self.name);
        remove_pins(&pin_path);
        let mut command = self.wrapper.clone();
        let (addr, audit_log) = match self.own_command {
            Some(own) => {
                command.extend(own.command);
                (own.addr, own.audit_log)
            }
            None => {
                let addr = format!("127.0.0.1:{}", free_port()?);
                let audit_log = if self.audit_log_discarded {
                    PathBuf::from("/dev/null")
                } else {
                    dir.join("audit.jsonl")
                };
                let config = dir.join("config.yaml");
                fs::write(&config, self.config(&addr, &audit_log))?;
                if let Some(policy) = &self.policy_in_config {
                    fs::write(dir.join("policy.yaml"), policy)?;
                }
                command.extend([agent_binary().into(), "run".into(), "--config".into(), config.into()]);
                (addr, audit_log)
            }
        };
        command.extend(["--pin-path".into(), pin_path.clone().into()]);
        if !self.keep_pins {
            command.push("--cleanup".into());
        }
        command.extend(self.args);
        let stdout_log = dir.join("agent.out");
        let mut agent = Agent {
            child: None,
            command,
            ready_within: self.ready_within,
            pin_path,
            dir,
            addr,
            audit_log,
            stdout_log,
        };
        agent.spawn()?;
        Ok(agent)
    }

    fn config(&self, addr: &str, audit_log: &Path) -> String {
        let mut config = String::new();
        if self.policy_in_config.is_some() {
            config.push_str("policy: policy.yaml\n");
        }
        config.push_str(&format!("metrics:\n  listen: {addr}\naudit:\n  path: {}\n", audit_log.display()));
        if let Some(bytes) = self.ring_buffer_bytes {
            config.push_str(&format!("events:\n  ring_buffer_bytes: {bytes}\n"));
        }
        config.push_str("devices:\n");
        for (major_minor, class, driver) in &self.devices {
            config.push_str(&format!(
                "  - major_minor: \"{major_minor}\"\n    class: {class}\n    driver: {driver}\n"
            ));
        }
        if self.devices.is_empty() {
            config.push_str("  []\n");
        }
        config
    }
}

impl Agent {
    /// An agent called `name` (its directory and pin root are named after it), to configure.
    pub fn builder(name: &str) -> AgentBuilder {
        AgentBuilder {
            name: name.to_string(),
            devices: Vec::new(),
            ring_buffer_bytes: None,
            policy_in_config: None,
            args: Vec::new(),
            keep_pins: false,
            wrapper: Vec::new(),
            own_command: None,
            ready_within: Duration::from_secs(60),
            audit_log_discarded: false,
        }
    }

    /// Start the agent with `devices` declared and wait until its hook programs are attached.
    pub fn start(name: &str, devices: &[Declared], ring_buffer_bytes: u32) -> Result<Self> {
        Self::builder(name).devices(devices).ring_buffer_bytes(ring_buffer_bytes).start()
    }

    /// Like `start`, with extra `fwctl-guard run` arguments (e.g. `--hook lsm`).
    pub fn start_with(
        name: &str,
        devices: &[Declared],
        ring_buffer_bytes: u32,
        args: &[&str],
    ) -> Result<Self> {
        Self::builder(name).devices(devices).ring_buffer_bytes(ring_buffer_bytes).args(args).start()
    }

    /// Start the process (output appended to `stdout_log`) and wait until it is ready.
    fn spawn(&mut self) -> Result<()> {
        let out = fs::OpenOptions::new().create(true).append(true).open(&self.stdout_log)?;
        let (program, args) = self.command.split_first().context("an empty command line")?;
        let child = Command::new(program)
            .args(args)
            .stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", program.to_string_lossy()))?;
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
        let deadline = Instant::now() + self.ready_within;
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
        bail!("agent not ready after {:?}:\n{}", self.ready_within, self.output())
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

    /// Poll the metrics until `done` holds (60 s at most), returning that scrape; the error
    /// says `what` was not reached and carries the last scrape and the agent's output.
    pub fn wait_for(&self, what: &str, done: impl Fn(&Scrape) -> bool) -> Result<Scrape> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let scrape = self.scrape();
            if let Ok(s) = &scrape {
                if done(s) {
                    return scrape;
                }
            }
            if Instant::now() > deadline {
                let last = scrape.map(|s| s.text).unwrap_or_else(|e| format!("no metrics: {e:#}"));
                bail!("{what}: not reached in 60 s\n{last}\n{}", self.output());
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
