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

use anyhow::{bail, Result};

/// How long one send may wait for a full socket queue before records are dropped.
const SEND_TIMEOUT: Duration = Duration::from_millis(100);
/// After a send timed out, sends do not wait at all for this long (a stalled syslog
/// daemon must not stall the audit log behind it).
const BACKOFF: Duration = Duration::from_secs(1);

const FACILITIES: [(&str, u8); 20] = [
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

pub const LOG_WARNING: u8 = 4;
pub const LOG_INFO: u8 = 6;

/// The facility's number (RFC 5424 table 1).
pub fn facility(name: &str) -> Result<u8> {
    match FACILITIES.iter().find(|(n, _)| *n == name) {
        Some((_, code)) => Ok(*code),
        None => {
            let names: Vec<_> = FACILITIES.iter().map(|(n, _)| *n).collect();
            bail!("unknown facility '{name}' (one of {})", names.join(", "))
        }
    }
}

/// A tag syslog parsers read back as one word.
pub fn check_ident(ident: &str) -> Result<()> {
    if ident.is_empty()
        || ident.len() > 32
        || !ident.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b':' | b'[' | b']'))
    {
        bail!("'{ident}' must be 1-32 printable ASCII characters without spaces, ':', '[' or ']'");
    }
    Ok(())
}

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
        check_ident(ident)?;
        let mut sink = Self {
            path: path.to_path_buf(),
            socket: None,
            facility: facility(facility_name)?,
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
    fn facilities_and_idents() {
        assert_eq!(facility("authpriv").unwrap(), 10);
        assert_eq!(facility("local7").unwrap(), 23);
        let err = facility("local8").unwrap_err().to_string();
        assert!(err.contains("local8") && err.contains("authpriv"), "{err}");
        assert!(check_ident("fwctl-guard").is_ok());
        for bad in ["", "a b", "a:b", "a[1]", &"x".repeat(33)] {
            assert!(check_ident(bad).is_err(), "{bad:?}");
        }
    }

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
