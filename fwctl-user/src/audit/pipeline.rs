//! The audit pipeline: drain the kernel's ring buffer, turn each event into an audit
//! record and write it (and send it to syslog, and count it per process, when
//! configured). Runs as one tokio task; a final drain on shutdown. SIGUSR1 reopens the
//! audit file (log rotation).

use std::time::SystemTime;

use aya::maps::{HashMap, MapData, RingBuf};
use fwctl_common::model::{event_flag, Event};
use tokio::{io::unix::AsyncFd, signal::unix::Signal, sync::watch};

use super::{
    metrics::AuditMetrics,
    monotonic_epoch,
    syslog::{LOG_INFO, LOG_WARNING},
    AuditLog, AuditRecord,
};
use crate::{health::Readiness, names::RuleIds};

/// Read events until `shutdown` flips, then drain what is left: the ring buffer, and,
/// when the programs were detached (`parked` given), the commands still parked in the
/// kernel (their return was never seen), logged without a return value.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    ring: RingBuf<MapData>,
    parked: Option<HashMap<MapData, u64, Event>>,
    mut log: AuditLog,
    rules: RuleIds,
    metrics: AuditMetrics,
    mut reopen: Signal,
    readiness: Readiness,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // SAFETY: the ring buffer owns its fd, which stays open while the AsyncFd owns it.
    let mut ring =
        unsafe { AsyncFd::register(ring) }.map_err(|e| anyhow::anyhow!("polling the ring buffer: {e}"))?;
    readiness.set_events_reader(true);
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = match guard {
                    Ok(guard) => guard,
                    Err(e) => {
                        readiness.set_events_reader(false);
                        return Err(e.into());
                    }
                };
                drain(guard.get_inner_mut(), &mut log, &rules, &metrics);
                guard.clear_ready();
            }
            _ = reopen.recv() => {
                // What is queued now belongs in the old file.
                drain(ring.get_mut(), &mut log, &rules, &metrics);
                reopen_log(&mut log, &metrics);
            }
            _ = shutdown.changed() => break,
        }
    }
    readiness.set_events_reader(false);
    drain(ring.get_mut(), &mut log, &rules, &metrics);
    let epoch = monotonic_epoch();
    for event in parked.iter().flat_map(HashMap::iter).filter_map(Result::ok).map(|(_, mut event)| {
        event.flags |= event_flag::NO_EXIT;
        event
    }) {
        write(&event, epoch, &mut log, &rules, &metrics);
    }
    log.flush()?;
    Ok(())
}

/// Write every queued event, then flush once.
pub fn drain(ring: &mut RingBuf<MapData>, log: &mut AuditLog, rules: &RuleIds, metrics: &AuditMetrics) {
    let epoch: SystemTime = monotonic_epoch();
    while let Some(item) = ring.next() {
        let Some(event) = parse(&item) else {
            metrics.errors.with_label_values(&["bad_record"]).inc();
            continue;
        };
        write(&event, epoch, log, rules, metrics);
    }
    if let Err(e) = log.flush() {
        metrics.errors.with_label_values(&["flush"]).inc();
        log::warn!("audit log flush failed: {e}");
    }
}

fn reopen_log(log: &mut AuditLog, metrics: &AuditMetrics) {
    let Some(path) = log.path.clone() else {
        log::info!("SIGUSR1: the audit log is standard output, nothing to reopen");
        return;
    };
    match log.reopen() {
        Ok(()) => {
            metrics.reopens.with_label_values(&["ok"]).inc();
            log::info!("SIGUSR1: reopened the audit log {}", path.display());
        }
        Err(e) => {
            metrics.reopens.with_label_values(&["error"]).inc();
            log::error!(
                "SIGUSR1: cannot reopen the audit log {}: {e}; still writing to the old file",
                path.display()
            );
            eprintln!(
                "fwctl-guard: cannot reopen the audit log {}: {e}; still writing to the old file",
                path.display()
            );
        }
    }
}

/// Append one event to the audit log, counting it as written or failed.
fn write(event: &Event, epoch: SystemTime, log: &mut AuditLog, rules: &RuleIds, metrics: &AuditMetrics) {
    let record = AuditRecord::from_event(event, epoch, rules);
    if let Some(process) = &metrics.process {
        process.observe(&record.comm, record.uid, record.class, record.verdict);
    }
    if record.toctou {
        let line = format!(
            "TOCTOU: pid {} ({}) sent {} opcode {} but the driver received {}{}",
            record.pid,
            record.comm,
            record.class,
            record.opcode,
            record.kernel_opcode.as_deref().unwrap_or("?"),
            if record.killed { "; the task was killed" } else { "" }
        );
        log::warn!("{line}");
        eprintln!("fwctl-guard: {line}");
    }
    let line = match serde_json::to_string(&record) {
        Ok(line) => line,
        Err(e) => {
            metrics.errors.with_label_values(&["encode"]).inc();
            log::warn!("audit record not encoded: {e}");
            return;
        }
    };
    match log.write_line(&line) {
        Ok(()) => metrics.events_written.inc(),
        Err(e) => {
            metrics.errors.with_label_values(&["write"]).inc();
            log::warn!("audit log write failed: {e}");
        }
    }
    let severity =
        if record.toctou || matches!(record.verdict, "deny" | "would_deny") { LOG_WARNING } else { LOG_INFO };
    // The sink logs its first failure itself.
    if log.send_syslog(severity, &line).is_err() {
        metrics.errors.with_label_values(&["syslog"]).inc();
    }
}

/// A ring-buffer record as an `Event`, if it has the right size.
pub fn parse(bytes: &[u8]) -> Option<Event> {
    (bytes.len() == std::mem::size_of::<Event>())
        // SAFETY: size checked; Event is plain integers (any bit pattern is valid).
        .then(|| unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const Event) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_the_wrong_size_are_rejected() {
        assert!(parse(&[0u8; 8]).is_none());
        assert!(parse(&vec![0u8; std::mem::size_of::<Event>()]).is_some());
    }
}
