//! The signals the agent handles, registered before it serves anything: until a handler
//! exists, SIGHUP (a reload request from config management) and SIGTERM would kill the
//! agent with their default action.

use anyhow::{Context as _, Result};
use tokio::signal::unix::{signal, Signal, SignalKind};

pub struct Signals {
    /// Reload the policy.
    pub hup: Signal,
    pub term: Signal,
    pub int: Signal,
    /// Reopen the audit log (logrotate's postrotate).
    pub usr1: Signal,
}

impl Signals {
    pub fn install() -> Result<Self> {
        Ok(Self {
            hup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            usr1: signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?,
        })
    }
}

/// Until SIGTERM or SIGINT.
pub async fn termination(mut term: Signal, mut int: Signal) {
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
