//! Opt-in per-process command counts (`metrics.per_process`), fed from the audit event
//! stream. `comm` and `uid` are chosen by whoever runs commands, so the number of label
//! sets is capped: past the cap no new series is created and the command is counted in
//! `fwctl_guard_label_overflow_total{metric}` instead.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use prometheus::{core::Collector, IntCounter, IntCounterVec, Opts};

pub const FAMILY: &str = "fwctl_guard_process_commands_total";
pub const LABELS: [&str; 4] = ["comm", "uid", "class", "verdict"];

pub fn counter_vec() -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(
        Opts::new(
            FAMILY,
            "Passthrough commands per issuing process (comm, uid), class and verdict, from the audit \
             events (lost events are missing here; fwctl_guard_commands_total is exact). Opt-in, capped \
             at metrics.per_process.max_series label sets.",
        ),
        &LABELS,
    )
}

pub fn overflow_vec() -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(
        Opts::new(
            "fwctl_guard_label_overflow_total",
            "Increments not exported because the metric's cap on distinct label sets was reached, by metric.",
        ),
        &["metric"],
    )
}

/// A counter family with at most `max_series` label sets.
#[derive(Clone)]
pub struct BoundedCounter {
    counter: IntCounterVec,
    overflow: IntCounter,
    /// Label sets exported so far, each joined with NUL (no label value contains one:
    /// `comm` is cut at its first NUL, the others are numbers and fixed names).
    series: Arc<Mutex<HashSet<String>>>,
    max_series: usize,
}

impl BoundedCounter {
    /// `overflow_vec` gets this family's `metric` label (at 0 from the start).
    pub fn new(counter: IntCounterVec, overflow_vec: &IntCounterVec, max_series: usize) -> Self {
        let name = counter.desc().first().map(|d| d.fq_name.clone()).unwrap_or_default();
        Self {
            overflow: overflow_vec.with_label_values(&[name.as_str()]),
            counter,
            series: Arc::default(),
            max_series,
        }
    }

    /// Count one event; false when it was not exported (a new label set past the cap).
    pub fn inc(&self, labels: &[&str]) -> bool {
        let mut series = self.series.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = labels.join("\0");
        if !series.contains(&key) {
            if series.len() >= self.max_series {
                self.overflow.inc();
                return false;
            }
            series.insert(key);
        }
        self.counter.with_label_values(labels).inc();
        true
    }

    #[cfg(test)]
    pub fn series(&self) -> usize {
        self.series.lock().map_or(0, |s| s.len())
    }
}

/// `fwctl_guard_process_commands_total{comm,uid,class,verdict}`.
#[derive(Clone)]
pub struct ProcessCommands(BoundedCounter);

impl ProcessCommands {
    pub fn new(counter: IntCounterVec, overflow_vec: &IntCounterVec, max_series: usize) -> Self {
        Self(BoundedCounter::new(counter, overflow_vec, max_series))
    }

    pub fn counter(&self) -> IntCounterVec {
        self.0.counter.clone()
    }

    pub fn observe(&self, comm: &str, uid: u32, class: &str, verdict: &str) -> bool {
        self.0.inc(&[comm, &uid.to_string(), class, verdict])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(vec: &IntCounterVec, labels: &[&str]) -> u64 {
        vec.get_metric_with_label_values(labels).unwrap().get()
    }

    #[test]
    fn known_label_sets_keep_counting_past_the_cap() {
        let (counter, overflow) = (counter_vec().unwrap(), overflow_vec().unwrap());
        let process = ProcessCommands::new(counter.clone(), &overflow, 2);
        assert_eq!(value(&overflow, &[FAMILY]), 0, "the overflow series exists from the start");
        assert!(process.observe("nvme", 0, "nvme-admin", "allow"));
        assert!(process.observe("nvme", 0, "nvme-admin", "deny"));
        // Cap reached: a new comm, a new uid and a new verdict are each refused and counted.
        assert!(!process.observe("fwupd", 0, "nvme-admin", "allow"));
        assert!(!process.observe("nvme", 1000, "nvme-admin", "allow"));
        assert!(!process.observe("nvme", 0, "nvme-admin", "audit"));
        // Existing sets still count.
        assert!(process.observe("nvme", 0, "nvme-admin", "allow"));
        assert_eq!(value(&overflow, &[FAMILY]), 3);
        assert_eq!(process.0.series(), 2);
        assert_eq!(value(&counter, &["nvme", "0", "nvme-admin", "allow"]), 2);
        assert_eq!(value(&counter, &["nvme", "0", "nvme-admin", "deny"]), 1);
        let families = counter.collect();
        assert_eq!(families[0].get_metric().len(), 2, "no series beyond the cap was created");
    }

    #[test]
    fn a_zero_cap_exports_nothing() {
        let (counter, overflow) = (counter_vec().unwrap(), overflow_vec().unwrap());
        let process = ProcessCommands::new(counter.clone(), &overflow, 0);
        assert!(!process.observe("nvme", 0, "nvme-admin", "allow"));
        assert_eq!(value(&overflow, &[FAMILY]), 1);
        assert!(counter.collect()[0].get_metric().is_empty());
    }
}
