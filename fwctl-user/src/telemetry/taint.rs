//! The kernel's taint flags (`/proc/sys/kernel/tainted`) that matter to a passthrough
//! auditor: TAINT_FWCTL ('J', set when a fwctl RPC at a debug-write scope reached a
//! device), unsigned modules ('E') and kernel warnings ('W'). Read at scrape time, and
//! watched so the moment fwctl taints the kernel is in the agent's log.

use std::time::Duration;

use prometheus::{IntGaugeVec, Opts};
use tokio::sync::watch;

use super::computed::{Computed, Fill};

const TAINTED: &str = "/proc/sys/kernel/tainted";

/// (label, bit, letter) from include/linux/panic.h.
pub const FLAGS: [(&str, u32, char); 3] =
    [("fwctl", 19, 'J'), ("unsigned_module", 13, 'E'), ("warn", 9, 'W')];

/// The taint mask, if readable.
pub fn read() -> Option<u64> {
    std::fs::read_to_string(TAINTED).ok()?.trim().parse().ok()
}

/// Whether `flag` (a [`FLAGS`] label) is set in `mask`.
pub fn is_set(mask: u64, flag: &str) -> bool {
    FLAGS.iter().any(|(name, bit, _)| *name == flag && mask & (1 << bit) != 0)
}

fn definition() -> prometheus::Result<IntGaugeVec> {
    IntGaugeVec::new(
        Opts::new(
            "fwctl_guard_kernel_tainted",
            "1 when the kernel carries the taint flag (fwctl: a fwctl RPC used a debug-write scope; \
             unsigned_module; warn), from /proc/sys/kernel/tainted.",
        ),
        &["flag"],
    )
}

/// `fwctl_guard_kernel_tainted{flag}`: 1 when the kernel carries the flag, read at each
/// scrape (`read_kernel: false`: defined only).
pub fn family(read_kernel: bool) -> prometheus::Result<Computed<IntGaugeVec>> {
    let fill: Option<Fill<IntGaugeVec>> = read_kernel.then(|| -> Fill<IntGaugeVec> {
        Box::new(|gauge: &IntGaugeVec| {
            let mask = read().unwrap_or(0);
            for (name, bit, _) in FLAGS {
                gauge.with_label_values(&[name]).set(i64::from(mask & (1 << bit) != 0));
            }
        })
    });
    Computed::new(definition, fill)
}

/// Log each flag of [`FLAGS`] the moment it appears (checked every 5 s).
pub async fn watch(mut shutdown: watch::Receiver<bool>) {
    let mut seen = read().unwrap_or(0);
    for (name, bit, letter) in FLAGS {
        if seen & (1 << bit) != 0 {
            log::warn!("kernel already tainted '{letter}' ({name}) at start-up");
        }
    }
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let Some(now) = read() else { continue };
        for (name, bit, letter) in FLAGS {
            if now & (1 << bit) != 0 && seen & (1 << bit) == 0 {
                log::warn!("kernel tainted '{letter}' ({name})");
                eprintln!("fwctl-guard: the kernel is now tainted '{letter}' ({name})");
            }
        }
        seen = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_read_from_their_bits() {
        assert!(is_set(1 << 19, "fwctl"));
        assert!(!is_set(1 << 19, "warn"));
        assert!(is_set((1 << 13) | (1 << 9), "warn"));
        assert!(!is_set(u64::MAX, "no-such-flag"));
    }

    #[test]
    fn collector_exports_every_flag() {
        let c = family(true).unwrap();
        let families = prometheus::core::Collector::collect(&c);
        assert_eq!(families[0].get_metric().len(), FLAGS.len());
    }
}
