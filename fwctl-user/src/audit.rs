//! The JSON-lines audit log: one object per command, field names documented in the README.
//! Turns a kernel `Event` into an [`AuditRecord`] and appends it to a file or stdout.

use std::{
    fs::{self, OpenOptions},
    io::{self, BufWriter, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, Result};
use fwctl_common::{
    abi::spec_by_ioctl,
    effects::effect,
    model::{
        channel, class, decode_status, driver, event_flag, hook, rdev_major, rdev_minor, result, scope,
        verdict, Event,
    },
};
use serde::Serialize;

use crate::{config::SyslogConfig, labels};

pub mod syslog;

/// One audit log line.
#[derive(Debug, Serialize, PartialEq)]
pub struct AuditRecord {
    /// Wall-clock time the command entered the kernel (RFC 3339, UTC).
    pub ts: String,
    pub hook: &'static str,
    /// `ioctl` or `io_uring`.
    pub channel: &'static str,
    pub class: &'static str,
    pub driver: &'static str,
    pub ioctl: &'static str,
    pub device: String,
    pub device_type: &'static str,
    pub opcode: String,
    pub opcode_name: &'static str,
    pub op_mod: u32,
    pub scope: &'static str,
    pub decode: &'static str,
    pub verdict: &'static str,
    /// The ioctl's return value; absent when it was not observed.
    pub ret: Option<i64>,
    pub result: Option<&'static str>,
    pub latency_ns: Option<u64>,
    pub in_len: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nsid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cdw10: Option<u32>,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    pub cgroup_id: u64,
    /// The effects the device declares for the command (`effect::NAMES`); absent when
    /// the policy looked none up (it has no effects rules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effects: Option<Vec<&'static str>>,
    /// Whether the device lists the command; present when its effects were read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared: Option<bool>,
    /// CXL Get/Set Feature: the feature's UUID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    /// The payload changed between the policy decision and the driver: `kernel_opcode` is
    /// what the driver received (`opcode` is what was decided on).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub toctou: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_opcode: Option<String>,
    /// The task was sent SIGKILL for it (`on_toctou: kill`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub killed: bool,
}

impl AuditRecord {
    /// `boot_to_wall`: wall-clock time of CLOCK_MONOTONIC zero.
    pub fn from_event(event: &Event, boot_to_wall: SystemTime) -> Self {
        let c = &event.command;
        let observed_exit = event.flags & event_flag::NO_EXIT == 0;
        let is_nvme = matches!(c.class, class::NVME_ADMIN | class::NVME_IO);
        let comm_len = event.comm.iter().position(|b| *b == 0).unwrap_or(event.comm.len());
        Self {
            ts: humantime::format_rfc3339_nanos(boot_to_wall + Duration::from_nanos(event.start_ns))
                .to_string(),
            hook: hook::label(event.hook),
            channel: channel::label(channel::of(c.ioctl)),
            class: class::label(c.class),
            driver: driver::label(c.driver),
            ioctl: spec_by_ioctl(c.ioctl).map_or("unknown", |s| s.name),
            device: format!("{}:{}", rdev_major(event.rdev), rdev_minor(event.rdev)),
            device_type: if event.flags & event_flag::BLOCK_DEVICE != 0 { "block" } else { "char" },
            opcode: labels::opcode(c.opcode),
            opcode_name: labels::opcode_name(c.class, c.driver, c.ioctl, c.opcode, c.decode),
            op_mod: c.op_mod,
            scope: scope::label(c.scope),
            decode: decode_status::label(c.decode),
            verdict: verdict::label(event.verdict),
            ret: observed_exit.then_some(event.ret),
            result: observed_exit.then(|| result::label(result::from_ret(event.ret))),
            latency_ns: observed_exit.then_some(event.latency_ns),
            in_len: c.in_len,
            nsid: is_nvme.then_some(c.nsid),
            cdw10: is_nvme.then_some(c.cdw10),
            pid: event.pid,
            tid: event.tid,
            uid: event.uid,
            gid: event.gid,
            comm: String::from_utf8_lossy(&event.comm[..comm_len]).into_owned(),
            cgroup_id: event.cgroup_id,
            effects: (event.effects != 0).then(|| effect::names(event.effects).collect()),
            declared: (event.effects & effect::KNOWN != 0).then_some(event.effects & effect::DECLARED != 0),
            feature: (c.feature != [0; 16]).then(|| labels::uuid(&c.feature)),
            toctou: event.flags & event_flag::TOCTOU != 0,
            kernel_opcode: (event.flags & event_flag::TOCTOU != 0)
                .then(|| labels::opcode(event.kernel_opcode)),
            killed: event.flags & event_flag::KILLED != 0,
        }
    }
}

/// Wall-clock time at which CLOCK_MONOTONIC read zero (bpf_ktime_get_ns's clock).
pub fn monotonic_epoch() -> SystemTime {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let since_boot = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
    SystemTime::now() - since_boot
}

/// Where audit lines go: a file or stdout, and optionally syslog too.
pub struct AuditLog {
    out: BufWriter<Box<dyn Write + Send>>,
    pub path: Option<PathBuf>,
    syslog: Option<syslog::SyslogSink>,
}

fn open_file(path: &Path) -> io::Result<BufWriter<Box<dyn Write + Send>>> {
    let mut file = OpenOptions::new().create(true).append(true).read(true).mode(0o640).open(path)?;
    end_last_line(&mut file)?;
    Ok(BufWriter::with_capacity(64 * 1024, Box::new(file)))
}

/// A killed agent (kill -9 interrupts a write) can leave half a line at the end: start the
/// next record on a line of its own, so only that one line is unreadable.
fn end_last_line(file: &mut fs::File) -> io::Result<()> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    if file.metadata()?.len() == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::End(-1))?;
    file.read_exact(&mut last)?;
    if last[0] != b'\n' {
        file.write_all(b"\n")?;
    }
    Ok(())
}

impl AuditLog {
    /// `-` means standard output; otherwise append to the file (created 0640).
    pub fn open(path: &Path) -> Result<Self> {
        if path == Path::new("-") {
            return Ok(Self { out: BufWriter::new(Box::new(io::stdout())), path: None, syslog: None });
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let out = open_file(path).with_context(|| format!("opening audit log {}", path.display()))?;
        Ok(Self { out, path: Some(path.to_path_buf()), syslog: None })
    }

    /// Also send every record to syslog when `config.enabled`.
    pub fn with_syslog(mut self, config: &SyslogConfig) -> Result<Self> {
        if config.enabled {
            self.syslog = Some(
                syslog::SyslogSink::new(&config.socket, &config.facility, &config.ident)
                    .context("audit.syslog")?,
            );
        }
        Ok(self)
    }

    /// Close the file and open its path again (after logrotate renamed it): what is
    /// buffered goes to the old file first. If the path cannot be opened, the old file
    /// stays in use. Standard output is left alone.
    pub fn reopen(&mut self) -> io::Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        let flushed = self.out.flush();
        let reopened = open_file(path).map(|out| self.out = out);
        flushed.and(reopened)
    }

    pub fn write(&mut self, record: &AuditRecord) -> io::Result<()> {
        self.write_line(&serde_json::to_string(record)?)
    }

    /// Append one JSON line (without its newline).
    pub fn write_line(&mut self, line: &str) -> io::Result<()> {
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")
    }

    /// Send the line to syslog, if configured; `Err` when it was not delivered.
    pub fn send_syslog(&mut self, severity: u8, line: &str) -> io::Result<()> {
        match self.syslog.as_mut() {
            Some(sink) => sink.send(severity, line),
            None => Ok(()),
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fwctl_common::model::{ioctl, Command};

    #[test]
    fn a_half_written_last_line_is_ended_before_new_records() {
        let dir = std::env::temp_dir().join(format!("fwctl-guard-audit-tail-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        fs::write(&path, "{\"whole\":1}\n{\"cut\":").unwrap();
        let mut log = AuditLog::open(&path).unwrap();
        log.write_line("{\"next\":2}").unwrap();
        log.flush().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"whole\":1}\n{\"cut\":\n{\"next\":2}\n");
        drop(log);
        // A complete file gets nothing added.
        let mut log = AuditLog::open(&path).unwrap();
        log.flush().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"whole\":1}\n{\"cut\":\n{\"next\":2}\n");
        fs::remove_dir_all(dir).unwrap();
    }

    fn event() -> Event {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"nvme");
        Event {
            start_ns: 1_000_000_000,
            latency_ns: 1234,
            cgroup_id: 42,
            ret: 0,
            pid: 10,
            tid: 11,
            uid: 1000,
            gid: 1001,
            rdev: 239 << 20,
            command: Command {
                opcode: 0x06,
                nsid: 0,
                cdw10: 1,
                in_len: 4096,
                ..Command::new(ioctl::NVME_ADMIN_CMD, class::NVME_ADMIN, driver::NVME)
            },
            comm,
            hook: hook::SYSCALL_TRACEPOINT,
            ..Default::default()
        }
    }

    #[test]
    fn record_fields() {
        let record = AuditRecord::from_event(&event(), SystemTime::UNIX_EPOCH);
        assert_eq!(record.ts, "1970-01-01T00:00:01.000000000Z");
        assert_eq!(
            (record.class, record.driver, record.ioctl),
            ("nvme-admin", "nvme", "NVME_IOCTL_ADMIN_CMD")
        );
        assert_eq!((record.opcode.as_str(), record.opcode_name), ("0x0006", "identify"));
        assert_eq!((record.device.as_str(), record.device_type), ("239:0", "char"));
        assert_eq!((record.ret, record.result, record.latency_ns), (Some(0), Some("ok"), Some(1234)));
        assert_eq!((record.uid, record.gid, record.comm.as_str()), (1000, 1001, "nvme"));
        assert_eq!((record.nsid, record.cdw10), (Some(0), Some(1)));
        let line = serde_json::to_string(&record).unwrap();
        assert!(
            line.starts_with(
                r#"{"ts":"1970-01-01T00:00:01.000000000Z","hook":"tracepoint","channel":"ioctl","class":"nvme-admin""#
            ),
            "{line}"
        );
    }

    #[test]
    fn io_uring_channel_and_toctou_are_recorded() {
        let plain = serde_json::to_value(AuditRecord::from_event(&event(), SystemTime::UNIX_EPOCH)).unwrap();
        for field in ["toctou", "kernel_opcode", "killed"] {
            assert!(plain.get(field).is_none(), "{field} on an ordinary command: {plain}");
        }
        let mut raced = event();
        raced.command.ioctl = fwctl_common::model::ioctl::NVME_URING_ADMIN;
        raced.flags |= event_flag::TOCTOU | event_flag::KILLED;
        raced.kernel_opcode = 0x80;
        let v = serde_json::to_value(AuditRecord::from_event(&raced, SystemTime::UNIX_EPOCH)).unwrap();
        assert_eq!(v["channel"], "io_uring");
        assert_eq!(v["ioctl"], "NVME_URING_CMD_ADMIN");
        assert_eq!((v["toctou"].clone(), v["kernel_opcode"].clone()), (true.into(), "0x0080".into()));
        assert_eq!((v["opcode"].clone(), v["killed"].clone()), ("0x0006".into(), true.into()));
    }

    #[test]
    fn declared_effects_and_the_feature_are_recorded_when_known() {
        let line =
            |e: &Event| serde_json::to_value(AuditRecord::from_event(e, SystemTime::UNIX_EPOCH)).unwrap();
        let plain = line(&event());
        for field in ["effects", "declared", "feature"] {
            assert!(plain.get(field).is_none(), "{field} without effects rules: {plain}");
        }
        let mut format = event();
        format.command.opcode = 0x80;
        format.effects = effect::LOGICAL_BLOCK_CONTENT_CHANGE
            | effect::DATA_CHANGE_IMMEDIATE
            | effect::DECLARED
            | effect::KNOWN;
        let v = line(&format);
        assert_eq!(
            v["effects"],
            serde_json::json!(["data-change-immediate", "logical-block-content-change"])
        );
        assert_eq!(v["declared"], true);
        let mut vendor = event();
        vendor.command.opcode = 0xc5;
        vendor.effects = effect::KNOWN;
        let v = line(&vendor);
        assert_eq!(
            (v["effects"].clone(), v["declared"].clone()),
            (serde_json::json!([]), serde_json::json!(false))
        );
        let mut set_feature = event();
        set_feature.command = Command {
            opcode: 0x0502,
            feature: [0xff; 16],
            ..Command::new(ioctl::FWCTL_RPC, class::FWCTL, driver::CXL)
        };
        let v = line(&set_feature);
        assert_eq!(v["feature"], "ffffffff-ffff-ffff-ffff-ffffffffffff");
    }

    #[test]
    fn unobserved_exit_has_no_return_value() {
        let mut e = event();
        e.flags = event_flag::NO_EXIT;
        let record = AuditRecord::from_event(&e, SystemTime::UNIX_EPOCH);
        assert_eq!((record.ret, record.result, record.latency_ns), (None, None, None));
    }

    #[test]
    fn log_file_is_appended_line_by_line() {
        let dir = std::env::temp_dir().join(format!("fwctl-guard-audit-test-{}", std::process::id()));
        let path = dir.join("sub/audit.jsonl");
        let mut log = AuditLog::open(&path).unwrap();
        let record = AuditRecord::from_event(&event(), SystemTime::UNIX_EPOCH);
        log.write(&record).unwrap();
        log.write(&record).unwrap();
        log.flush().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(value["opcode_name"], "identify");
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn reopen_starts_a_new_file_and_keeps_the_old_one_on_failure() {
        let dir = std::env::temp_dir().join(format!("fwctl-guard-audit-reopen-{}", std::process::id()));
        let path = dir.join("audit.jsonl");
        let mut log = AuditLog::open(&path).unwrap();
        log.write_line("1").unwrap();
        fs::rename(&path, dir.join("audit.jsonl.1")).unwrap();
        log.write_line("2").unwrap();
        log.reopen().unwrap();
        log.write_line("3").unwrap();
        log.flush().unwrap();
        assert_eq!(fs::read_to_string(dir.join("audit.jsonl.1")).unwrap(), "1\n2\n");
        assert_eq!(fs::read_to_string(&path).unwrap(), "3\n");
        // The directory is gone: reopen fails and records keep going to the open file.
        fs::rename(&dir, dir.with_extension("moved")).unwrap();
        assert!(log.reopen().is_err());
        log.write_line("4").unwrap();
        log.flush().unwrap();
        assert_eq!(fs::read_to_string(dir.with_extension("moved").join("audit.jsonl")).unwrap(), "3\n4\n");
        fs::remove_dir_all(dir.with_extension("moved")).unwrap();
    }
}
