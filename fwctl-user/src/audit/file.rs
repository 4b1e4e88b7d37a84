//! The audit log file: one JSON line per record, appended to a file (created 0640) or
//! written to standard output, reopened on SIGUSR1 after log rotation, optionally copied to
//! syslog. A line cut by a killed agent is ended before new records follow it.

use std::{
    fs::{self, OpenOptions},
    io::{self, BufWriter, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

use super::{record::AuditRecord, syslog};
use crate::config::SyslogConfig;

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
    use std::time::SystemTime;

    use super::*;
    use crate::{audit::record::tests::event, names::RuleIds};

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

    #[test]
    fn log_file_is_appended_line_by_line() {
        let dir = std::env::temp_dir().join(format!("fwctl-guard-audit-test-{}", std::process::id()));
        let path = dir.join("sub/audit.jsonl");
        let mut log = AuditLog::open(&path).unwrap();
        let record = AuditRecord::from_event(&event(), SystemTime::UNIX_EPOCH, &RuleIds::default());
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
