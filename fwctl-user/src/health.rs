//! What `/readyz` requires: the programs attached (and, once proven, running), the policy
//! loaded, the audit events read. Each part of the agent sets its flag as start-up
//! progresses and clears it when it stops; the HTTP endpoint only reads them.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use axum::http::StatusCode;

/// The readiness flags, shared by every part of the agent.
#[derive(Clone, Default)]
pub struct Readiness(Arc<Parts>);

#[derive(Default)]
struct Parts {
    programs_attached: AtomicBool,
    hooks_proven: AtomicBool,
    policy_loaded: AtomicBool,
    events_reader: AtomicBool,
}

impl Readiness {
    /// `policy_configured: false`: no policy is needed to be ready.
    pub fn new(policy_configured: bool) -> Self {
        let readiness = Self::default();
        readiness.0.policy_loaded.store(!policy_configured, Ordering::Relaxed);
        readiness
    }

    pub fn set_programs_attached(&self, value: bool) {
        self.0.programs_attached.store(value, Ordering::Relaxed);
    }

    /// The last self-test proved (or did not prove) that the hook set's programs run.
    pub fn set_hooks_proven(&self, value: bool) {
        self.0.hooks_proven.store(value, Ordering::Relaxed);
    }

    pub fn set_policy_loaded(&self) {
        self.0.policy_loaded.store(true, Ordering::Relaxed);
    }

    pub fn set_events_reader(&self, running: bool) {
        self.0.events_reader.store(running, Ordering::Relaxed);
    }

    /// What is missing, in words; empty when ready.
    pub fn missing(&self) -> Vec<&'static str> {
        [
            (&self.0.programs_attached, "eBPF programs not attached"),
            (&self.0.hooks_proven, "hook set not proven to run by the self-test"),
            (&self.0.policy_loaded, "policy not loaded"),
            (&self.0.events_reader, "audit event reader not running"),
        ]
        .into_iter()
        .filter(|(flag, _)| !flag.load(Ordering::Relaxed))
        .map(|(_, what)| what)
        .collect()
    }

    /// The `/readyz` answer.
    pub fn status(&self) -> (StatusCode, String) {
        let missing = self.missing();
        if missing.is_empty() {
            (StatusCode::OK, "ready\n".to_string())
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", missing.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_names_what_is_missing() {
        let readiness = Readiness::new(true);
        assert_eq!(
            readiness.status(),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: eBPF programs not attached, hook set not proven to run by the self-test, \
                 policy not loaded, audit event reader not running\n"
                    .to_string()
            )
        );
        readiness.set_programs_attached(true);
        readiness.set_hooks_proven(true);
        readiness.set_events_reader(true);
        assert_eq!(
            readiness.status(),
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: policy not loaded\n".to_string())
        );
        readiness.set_policy_loaded();
        assert_eq!(readiness.status(), (StatusCode::OK, "ready\n".to_string()));
        readiness.set_programs_attached(false);
        assert_eq!(readiness.status().1, "not ready: eBPF programs not attached\n");
        readiness.set_programs_attached(true);
        readiness.set_hooks_proven(false);
        assert_eq!(readiness.status().1, "not ready: hook set not proven to run by the self-test\n");
    }

    #[test]
    fn no_policy_configured_counts_as_loaded() {
        let readiness = Readiness::new(false);
        readiness.set_programs_attached(true);
        readiness.set_hooks_proven(true);
        readiness.set_events_reader(true);
        assert_eq!(readiness.status(), (StatusCode::OK, "ready\n".to_string()));
    }
}
