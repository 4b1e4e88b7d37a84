//! The HTTP endpoint, served with axum: `/metrics` (Prometheus), `/healthz` (the agent
//! answers) and `/readyz` (programs attached, policy loaded, audit events read).

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use anyhow::{Context as _, Result};
use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
    routing::get,
    Router,
};
use tokio::{net::TcpListener, sync::watch};

use crate::metrics::{render, SharedRegistry};

/// What `/readyz` requires, set by the agent as start-up progresses (and cleared when a
/// part stops).
#[derive(Clone, Default)]
pub struct Readiness(Arc<Parts>);

#[derive(Default)]
struct Parts {
    programs_attached: AtomicBool,
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

#[derive(Clone)]
struct AppState {
    registry: SharedRegistry,
    readiness: Readiness,
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], render(&state.registry))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    state.readiness.status()
}

/// Bind now (so a bad address fails start-up), serve until `shutdown` flips.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("binding the metrics endpoint {addr}"))
}

pub async fn serve(
    listener: TcpListener,
    registry: SharedRegistry,
    readiness: Readiness,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { registry, readiness });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await
        .context("metrics server")
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
                "not ready: eBPF programs not attached, policy not loaded, audit event reader not running\n"
                    .to_string()
            )
        );
        readiness.set_programs_attached(true);
        readiness.set_events_reader(true);
        assert_eq!(
            readiness.status(),
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: policy not loaded\n".to_string())
        );
        readiness.set_policy_loaded();
        assert_eq!(readiness.status(), (StatusCode::OK, "ready\n".to_string()));
        readiness.set_programs_attached(false);
        assert_eq!(readiness.status().1, "not ready: eBPF programs not attached\n");
    }

    #[test]
    fn no_policy_configured_counts_as_loaded() {
        let readiness = Readiness::new(false);
        readiness.set_programs_attached(true);
        readiness.set_events_reader(true);
        assert_eq!(readiness.status(), (StatusCode::OK, "ready\n".to_string()));
    }
}
