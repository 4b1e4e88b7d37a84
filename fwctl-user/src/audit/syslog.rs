//! The optional syslog sink (`audit.syslog`): each audit record, as its JSON line, in one
//! datagram to the local syslog socket (`/dev/log`, where rsyslog or journald listen), in
//! the traditional `<PRI>Mmm dd hh:mm:ss ident[pid]: message` form glibc's syslog(3)
//! sends. Our own socket rather than syslog(3) because glibc drops what it cannot send
//! without telling the caller, and every dropped record must be counted.

use std::{
    io,
    os::{fd::AsRawFd, unix::net::UnixDatagram},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Result;

use crate::config::{check_syslog_ident, syslog_facility};

/// How long one send may wait for a full socket queue before records are dropped.
const SEND_TIMEOUT: Duration = Duration::from_millis(100);
/// After a send timed out, sends do not wait at all for this long (a stalled syslog
/// daemon must not stall the audit log behind it).
const BACKOFF: Duration = Duration::from_secs(1);

pub const LOG_WARNING: u8 = 4;
pub const LOG_INFO: u8 = 6;

pub struct SyslogSink {
    path: PathBuf,
    socket: Option<UnixDatagram>,
    facility: u8,
    ident: String,
    pid: u32,
    backoff_until: Option<Instant>,
    /// The last send failed (so the next failure is not logged again).
    failing: bool,
}

impl SyslogSink {
    /// Connecting may fail now (no daemon yet): each send tries again.
    pub fn new(path: &Path, facility_name: &str, ident: &str) -> Result<Self> {
        check_syslog_ident(ident)?;
        let mut sink = Self {
            path: path.to_path_buf(),
            socket: None,
            facility: syslog_facility(facility_name)?,
            ident: ident.to_string(),
            pid: std::process::id(),
            backoff_until: None,
            failing: false,
        };
        if let Err(e) = sink.connect() {
            log::warn!("syslog socket {}: {e} (audit records are sent once it accepts them)", path.display());
        }
        Ok(sink)
    }

    fn connect(&mut self) -> io::Result<&UnixDatagram> {
        if self.socket.is_none() {
            let socket = UnixDatagram::unbound()?;
            socket.connect(&self.path)?;
            socket.set_write_timeout(Some(SEND_TIMEOUT))?;
            self.socket = Some(socket);
        }
        Ok(self.socket.as_ref().expect("connected above"))
    }

    /// Send one message at `severity`; an error means it was not delivered.
    pub fn send(&mut self, severity: u8, message: &str) -> io::Result<()> {
        let datagram = format_message(self.facility, severity, &timestamp(), &self.ident, self.pid, message);
        let result = self.send_datagram(datagram.as_bytes());
        match &result {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                log::warn!("syslog {}: {e}; undelivered records are counted", self.path.display());
            }
            Err(_) => {}
        }
        result
    }

    fn send_datagram(&mut self, bytes: &[u8]) -> io::Result<()> {
        let wait = self.backoff_until.is_none_or(|until| Instant::now() >= until);
        let first = send_on(self.connect()?, bytes, wait);
        let result = match first {
            // The daemon restarted (a new socket at the same path): connect again, once.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNREFUSED | libc::ENOTCONN)) => {
                self.socket = None;
                send_on(self.connect()?, bytes, wait)
            }
            other => other,
        };
        match &result {
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                self.backoff_until = Some(Instant::now() + BACKOFF);
            }
            Ok(()) => self.backoff_until = None,
            Err(_) => {}
        }
        result
    }
}

fn send_on(socket: &UnixDatagram, bytes: &[u8], wait: bool) -> io::Result<()> {
    let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
    // SAFETY: a connected socket and a live buffer of that length.
    let sent = unsafe { libc::send(socket.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), flags) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Local time as syslog(3) writes it: `Nov 24 05:06:04` (day padded with a space).
fn timestamp() -> String {
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    // SAFETY: time and localtime_r write only into the locals passed.
    let tm = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        tm
    };
    let month = MONTHS.get(tm.tm_mon as usize).copied().unwrap_or("Jan");
    format!("{month} {:>2} {:02}:{:02}:{:02}", tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)
}

pub fn format_message(
    facility: u8,
    severity: u8,
    timestamp: &str,
    ident: &str,
    pid: u32,
    message: &str,
) -> String {
    format!("<{}>{timestamp} {ident}[{pid}]: {message}", u32::from(facility) * 8 + u32::from(severity))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_look_like_glibc_syslog() {
        assert_eq!(
            format_message(10, LOG_INFO, "Nov  4 05:06:07", "fwctl-guard", 42, "{\"a\":1}"),
            "<86>Nov  4 05:06:07 fwctl-guard[42]: {\"a\":1}"
        );
        let ts = timestamp();
        assert_eq!(ts.len(), 15, "{ts}");
    }

    #[test]
    fn datagrams_reach_the_socket_and_failures_are_errors() {
        let dir = std::env::temp_dir().join(format!("fwctl-guard-syslog-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.sock");
        let _ = std::fs::remove_file(&path);
        let mut sink = SyslogSink::new(&path, "local0", "t").unwrap();
        assert!(sink.send(LOG_INFO, "lost").is_err(), "nobody listens yet");
        let receiver = UnixDatagram::bind(&path).unwrap();
        sink.send(LOG_WARNING, "hello").unwrap();
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(
            text.starts_with("<132>") && text.ends_with(&format!(" t[{}]: hello", std::process::id())),
            "{text}"
        );
        // The daemon restarts: a new socket at the same path.
        drop(receiver);
        std::fs::remove_file(&path).unwrap();
        let receiver = UnixDatagram::bind(&path).unwrap();
        sink.send(LOG_INFO, "again").unwrap();
        let n = receiver.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n]).unwrap().ends_with("]: again"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
