//! The agent configuration file (YAML): where metrics are served, where the audit log
//! goes, and device nodes to watch beyond those the kernel's registries name.
//!
//! Not for policy: what to allow or deny lives in policy files. Plain data with its own
//! validation: nothing here depends on the rest of the agent.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};
use fwctl_common::model::{device_kind, driver};
use serde::Deserialize;

/// Where the agent pins its programs, links and maps unless configured otherwise.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/fwctl-guard";

/// Which hook set observes the commands (`fwctl_common::hook_set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum HookMode {
    /// The best set that attaches and proves to run: BPF LSM where `bpf` is an active
    /// LSM, else the trampoline set, else the syscall tracepoints.
    Auto,
    /// BPF LSM (`lsm/file_ioctl`, ...); fail if it does not attach and run.
    Lsm,
    /// fmod_ret on the `security_*` functions (deny without an active BPF LSM); fail if
    /// it does not attach and run.
    Trampoline,
    /// `syscalls:sys_enter_ioctl` / `sys_exit_ioctl` (observe only).
    Tracepoint,
}

impl HookMode {
    /// The hook set's label (`fwctl_common::hook_set::HookSet::label`); `None` for auto.
    pub fn label(self) -> Option<&'static str> {
        match self {
            HookMode::Auto => None,
            HookMode::Lsm => Some("lsm"),
            HookMode::Trampoline => Some("trampoline"),
            HookMode::Tracepoint => Some("tracepoint"),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Which kernel hooks observe ioctls: auto (LSM if the kernel accepts it), lsm, tracepoint.
    #[serde(default = "default_hook")]
    pub hook: HookMode,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub events: EventsConfig,
    /// Extra device nodes to watch (stand-ins in tests, out-of-tree drivers).
    #[serde(default)]
    pub devices: Vec<DeclaredDevice>,
    /// The policy file (relative paths are relative to this configuration file). Without
    /// one, every command is allowed and counted with `rule="none"`.
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// Where the programs, links and maps are pinned (on bpffs) so enforcement and
    /// counting outlive the agent, and a restarted agent adopts them.
    #[serde(default = "default_pin_path")]
    pub pin_path: PathBuf,
}

fn default_pin_path() -> PathBuf {
    PathBuf::from(DEFAULT_PIN_ROOT)
}

fn default_hook() -> HookMode {
    HookMode::Auto
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the Prometheus endpoint; loopback unless an operator says otherwise.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Export `fwctl_guard_device_opcode_effects`: one series per device node and
    /// declared opcode (and CXL feature), hundreds per NVMe drive. Off by default.
    #[serde(default)]
    pub device_effects: bool,
    /// `fwctl_guard_process_commands_total{comm,uid,class,verdict}`: off by default,
    /// and capped (its label values come from whoever runs commands).
    #[serde(default)]
    pub per_process: PerProcessConfig,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { listen: default_listen(), device_effects: false, per_process: PerProcessConfig::default() }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PerProcessConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Distinct label sets exported at most; past it, new sets are counted in
    /// `fwctl_guard_label_overflow_total` instead.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
}

impl Default for PerProcessConfig {
    fn default() -> Self {
        Self { enabled: false, max_series: default_max_series() }
    }
}

fn default_max_series() -> usize {
    1000
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9847))
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// JSON-lines audit log; `-` writes to standard output.
    #[serde(default = "default_audit_path")]
    pub path: PathBuf,
    /// Also send every record to the local syslog daemon (journald reads it too).
    #[serde(default)]
    pub syslog: SyslogConfig,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { path: default_audit_path(), syslog: SyslogConfig::default() }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Facility name: authpriv, auth, daemon, user, local0..local7, ...
    #[serde(default = "default_facility")]
    pub facility: String,
    /// The tag in front of every message.
    #[serde(default = "default_ident")]
    pub ident: String,
    /// The syslog daemon's datagram socket.
    #[serde(default = "default_syslog_socket")]
    pub socket: PathBuf,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            facility: default_facility(),
            ident: default_ident(),
            socket: default_syslog_socket(),
        }
    }
}

fn default_facility() -> String {
    "authpriv".to_string()
}

fn default_ident() -> String {
    "fwctl-guard".to_string()
}

fn default_syslog_socket() -> PathBuf {
    PathBuf::from("/dev/log")
}

fn default_audit_path() -> PathBuf {
    PathBuf::from("/var/log/fwctl-guard/audit.jsonl")
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Size of the kernel's audit-event ring buffer (a power of two, page multiple).
    #[serde(default = "default_ring_buffer_bytes")]
    pub ring_buffer_bytes: u32,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self { ring_buffer_bytes: default_ring_buffer_bytes() }
    }
}

fn default_ring_buffer_bytes() -> u32 {
    1 << 20
}

/// A device node the operator declares, by path or by number.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeclaredDevice {
    pub path: Option<PathBuf>,
    /// `MAJOR:MINOR`.
    pub major_minor: Option<String>,
    /// With `major_minor`: a block device (default: character device).
    #[serde(default)]
    pub block: bool,
    /// Device kind: fwctl, nvme, cxl-mem, scsi.
    pub class: String,
    /// Driver: mlx5, cxl, pds, bnxt (fwctl); nvme; sg, sd, bsg... Default `unknown`.
    pub driver: Option<String>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let mut config =
            Self::parse(&text).with_context(|| format!("{}: invalid configuration", path.display()))?;
        if let (Some(policy), Some(dir)) = (&config.policy, path.parent()) {
            config.policy = Some(dir.join(policy));
        }
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Self> {
        let config: Config = serde_saphyr::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let ring = self.events.ring_buffer_bytes;
        if !ring.is_power_of_two() || ring < 4096 {
            bail!("events.ring_buffer_bytes: {ring} is not a power of two of at least 4096");
        }
        let syslog = &self.audit.syslog;
        syslog_facility(&syslog.facility).context("audit.syslog.facility")?;
        check_syslog_ident(&syslog.ident).context("audit.syslog.ident")?;
        for (i, device) in self.devices.iter().enumerate() {
            device.kind().with_context(|| format!("devices[{i}]"))?;
            device.driver().with_context(|| format!("devices[{i}]"))?;
            match (&device.path, &device.major_minor) {
                (Some(_), None) => {}
                (None, Some(mm)) => {
                    parse_major_minor(mm).with_context(|| format!("devices[{i}].major_minor"))?;
                }
                _ => bail!("devices[{i}]: give exactly one of `path` or `major_minor`"),
            }
        }
        Ok(())
    }
}

impl DeclaredDevice {
    /// `PATH=CLASS[:DRIVER]` from the command line.
    pub fn from_cli(spec: &str) -> Result<Self> {
        let (path, what) = spec.split_once('=').context("expected PATH=CLASS[:DRIVER]")?;
        let (class, driver) = match what.split_once(':') {
            Some((c, d)) => (c, Some(d.to_string())),
            None => (what, None),
        };
        let device = Self {
            path: Some(PathBuf::from(path)),
            major_minor: None,
            block: false,
            class: class.to_string(),
            driver,
        };
        device.kind()?;
        device.driver()?;
        Ok(device)
    }

    pub fn kind(&self) -> Result<u8> {
        device_kind::from_label(&self.class).with_context(|| {
            format!("class: unknown device class '{}' (fwctl, nvme, cxl-mem, scsi)", self.class)
        })
    }

    /// The declared driver; without one, the class's own (nvme, cxl), or unknown for
    /// fwctl and SCSI, whose layout or node type it would have to name.
    pub fn driver(&self) -> Result<u8> {
        match &self.driver {
            None => Ok(match self.kind()? {
                device_kind::NVME => driver::NVME,
                device_kind::CXL_MEM => driver::CXL,
                _ => driver::UNKNOWN,
            }),
            Some(name) => driver::from_label(name).with_context(|| {
                format!("driver: unknown driver '{name}' (mlx5, cxl, pds, bnxt, nvme, sg, sd, bsg, sr, st)")
            }),
        }
    }
}

/// `MAJOR:MINOR`, with the text in the error.
pub fn parse_major_minor(text: &str) -> Result<(u32, u32)> {
    fwctl_common::device_number::parse_major_minor(text).map_err(|e| anyhow::anyhow!("'{text}': {e}"))
}

/// Syslog facilities by name (RFC 5424 table 1).
const SYSLOG_FACILITIES: [(&str, u8); 20] = [
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// The number of the syslog facility `name`.
pub fn syslog_facility(name: &str) -> Result<u8> {
    match SYSLOG_FACILITIES.iter().find(|(n, _)| *n == name) {
        Some((_, code)) => Ok(*code),
        None => {
            let names: Vec<_> = SYSLOG_FACILITIES.iter().map(|(n, _)| *n).collect();
            bail!("unknown facility '{name}' (one of {})", names.join(", "))
        }
    }
}

/// A syslog tag that parsers read back as one word.
pub fn check_syslog_ident(ident: &str) -> Result<()> {
    if ident.is_empty()
        || ident.len() > 32
        || !ident.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b':' | b'[' | b']'))
    {
        bail!("'{ident}' must be 1-32 printable ASCII characters without spaces, ':', '[' or ']'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facilities_and_idents() {
        assert_eq!(syslog_facility("authpriv").unwrap(), 10);
        assert_eq!(syslog_facility("local7").unwrap(), 23);
        let err = syslog_facility("local8").unwrap_err().to_string();
        assert!(err.contains("local8") && err.contains("authpriv"), "{err}");
        assert!(check_syslog_ident("fwctl-guard").is_ok());
        for bad in ["", "a b", "a:b", "a[1]", &"x".repeat(33)] {
            assert!(check_syslog_ident(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn empty_file_gives_loopback_defaults() {
        let config = Config::parse("{}").unwrap();
        assert_eq!(config.metrics.listen, "127.0.0.1:9847".parse().unwrap());
        assert!(config.metrics.listen.ip().is_loopback());
        assert_eq!(config.audit.path, PathBuf::from("/var/log/fwctl-guard/audit.jsonl"));
        assert!(config.devices.is_empty());
        assert!(!config.metrics.device_effects, "per-opcode effects series are opt-in");
        assert!(Config::parse("metrics:\n  device_effects: true\n").unwrap().metrics.device_effects);
        assert!(!config.metrics.per_process.enabled, "per-process labels are opt-in");
        assert_eq!(config.metrics.per_process.max_series, 1000);
        assert!(!config.audit.syslog.enabled);
        assert_eq!(
            (config.audit.syslog.facility.as_str(), config.audit.syslog.ident.as_str()),
            ("authpriv", "fwctl-guard")
        );
        assert_eq!(config.audit.syslog.socket, PathBuf::from("/dev/log"));
        assert_eq!(config.hook, HookMode::Auto);
        assert_eq!(Config::parse("hook: tracepoint").unwrap().hook, HookMode::Tracepoint);
        assert!(Config::parse("hook: kprobe").is_err());
    }

    #[test]
    fn the_shipped_configuration_parses_with_the_opt_ins_off() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/fwctl-guard.yaml");
        let config = Config::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(config.metrics.per_process, PerProcessConfig::default());
        assert_eq!(config.audit.syslog, SyslogConfig::default());
    }

    #[test]
    fn per_process_labels_and_syslog_parse() {
        let config = Config::parse(
            "metrics:\n  per_process: {enabled: true, max_series: 5}\naudit:\n  syslog: {enabled: true, facility: local3, ident: guard, socket: /run/x.sock}\n",
        )
        .unwrap();
        assert_eq!(config.metrics.per_process, PerProcessConfig { enabled: true, max_series: 5 });
        assert!(config.audit.syslog.enabled);
        assert_eq!(config.audit.syslog.facility, "local3");
        assert_eq!(config.audit.syslog.socket, PathBuf::from("/run/x.sock"));
    }

    #[test]
    fn declared_devices_parse() {
        let config = Config::parse(
            "devices:\n  - path: /dev/pts/3\n    class: fwctl\n    driver: mlx5\n  - major_minor: \"259:1\"\n    block: true\n    class: nvme\n",
        )
        .unwrap();
        assert_eq!(config.devices[0].kind().unwrap(), device_kind::FWCTL);
        assert_eq!(config.devices[0].driver().unwrap(), driver::MLX5);
        assert_eq!(parse_major_minor(config.devices[1].major_minor.as_deref().unwrap()).unwrap(), (259, 1));
        assert!(config.devices[1].block);
    }

    #[test]
    fn policy_path_is_relative_to_the_config_file() {
        let dir = std::env::temp_dir().join(format!("fwctl-guard-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("c.yaml"), "policy: ../policies/default.yaml\n").unwrap();
        let config = Config::load(&dir.join("c.yaml")).unwrap();
        assert_eq!(config.policy, Some(dir.join("../policies/default.yaml")));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn command_line_devices() {
        let d = DeclaredDevice::from_cli("/dev/fwctl/fwctl0=fwctl:mlx5").unwrap();
        assert_eq!(d.path.as_deref(), Some(Path::new("/dev/fwctl/fwctl0")));
        assert_eq!((d.kind().unwrap(), d.driver().unwrap()), (device_kind::FWCTL, driver::MLX5));
        assert_eq!(DeclaredDevice::from_cli("/dev/full=nvme").unwrap().driver().unwrap(), driver::NVME);
        assert_eq!(DeclaredDevice::from_cli("/dev/full=fwctl").unwrap().driver().unwrap(), driver::UNKNOWN);
        assert!(DeclaredDevice::from_cli("/dev/full").is_err());
        assert!(DeclaredDevice::from_cli("/dev/full=gpu").is_err());
        assert!(DeclaredDevice::from_cli("/dev/full=fwctl:nvidia").is_err());
    }

    #[test]
    fn errors_name_the_field_and_location() {
        let err =
            format!("{:#}", Config::parse("metrics:\n  listen: 127.0.0.1:1\n  bogus: 1\n").unwrap_err());
        assert!(err.contains("bogus"), "{err}");
        assert!(err.contains("line 3") || err.contains("3:"), "{err}");

        let err = format!("{:#}", Config::parse("devices:\n  - path: /x\n    class: gpu\n").unwrap_err());
        assert!(err.contains("devices[0]") && err.contains("gpu"), "{err}");

        let err = format!("{:#}", Config::parse("devices:\n  - class: nvme\n").unwrap_err());
        assert!(err.contains("exactly one of"), "{err}");

        let err = format!(
            "{:#}",
            Config::parse("devices:\n  - major_minor: '1:99999999'\n    class: nvme\n").unwrap_err()
        );
        assert!(err.contains("out of range"), "{err}");

        let err = format!("{:#}", Config::parse("events:\n  ring_buffer_bytes: 1000\n").unwrap_err());
        assert!(err.contains("power of two"), "{err}");

        let err = format!("{:#}", Config::parse("audit:\n  syslog: {facility: local9}\n").unwrap_err());
        assert!(err.contains("audit.syslog.facility") && err.contains("local9"), "{err}");
        let err = format!("{:#}", Config::parse("audit:\n  syslog: {ident: 'a b'}\n").unwrap_err());
        assert!(err.contains("audit.syslog.ident"), "{err}");
        let err =
            format!("{:#}", Config::parse("metrics:\n  per_process: {enabled: true, cap: 3}\n").unwrap_err());
        assert!(err.contains("cap"), "{err}");
    }
}
