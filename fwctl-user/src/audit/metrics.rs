//! The metrics of the audit trail: records written, records not written (by reason),
//! reopens of the audit file, and the opt-in per-process counts with their overflow.

use prometheus::{core::Collector, IntCounter, IntCounterVec, Opts};

use super::per_process::{self, ProcessCommands};
use crate::config::MetricsConfig;

#[derive(Clone)]
pub struct AuditMetrics {
    pub events_written: IntCounter,
    /// By reason: `bad_record`, `encode`, `write`, `flush`, `syslog`.
    pub errors: IntCounterVec,
    /// SIGUSR1 reopens of the audit file, by result (`ok`, `error`).
    pub reopens: IntCounterVec,
    pub label_overflow: IntCounterVec,
    /// `metrics.per_process.enabled` only.
    pub process: Option<ProcessCommands>,
}

impl AuditMetrics {
    pub fn new(options: &MetricsConfig) -> prometheus::Result<Self> {
        let label_overflow = per_process::overflow_vec()?;
        let process = if options.per_process.enabled {
            Some(ProcessCommands::new(
                per_process::counter_vec()?,
                &label_overflow,
                options.per_process.max_series,
            ))
        } else {
            None
        };
        let reopens = IntCounterVec::new(
            Opts::new(
                "fwctl_guard_audit_reopens_total",
                "Reopens of the audit log file on SIGUSR1 (log rotation), by result; after an error the \
                 agent keeps writing to the file it had open.",
            ),
            &["result"],
        )?;
        for result in ["ok", "error"] {
            reopens.with_label_values(&[result]);
        }
        Ok(Self {
            events_written: IntCounter::new(
                "fwctl_guard_audit_events_written_total",
                "Audit events written to the audit log.",
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "fwctl_guard_audit_errors_total",
                    "Audit events that could not be decoded, written or sent to syslog, by reason.",
                ),
                &["reason"],
            )?,
            reopens,
            label_overflow,
            process,
        })
    }

    /// Every family (the per-process one only when enabled).
    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        let mut collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(self.events_written.clone()),
            Box::new(self.errors.clone()),
            Box::new(self.reopens.clone()),
            Box::new(self.label_overflow.clone()),
        ];
        if let Some(process) = &self.process {
            collectors.push(Box::new(process.counter()));
        }
        collectors
    }
}
