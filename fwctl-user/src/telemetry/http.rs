//! The HTTP endpoint, served with axum: `/metrics` (Prometheus), `/healthz` (the agent
//! answers) and `/readyz` (programs attached, policy loaded, audit events read).

use std::net::SocketAddr;

use anyhow::{Context as _, Result};
use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use tokio::{net::TcpListener, sync::watch};

use super::{render, SharedRegistry};
use crate::health::Readiness;

#[derive(Clone)]
struct AppState {
    registry: SharedRegistry,
    readiness: Readiness,
}

async fn metrics(State(state): State<AppState>) -> Response {
    let registry = state.registry.clone();
    // A scrape walks the kernel's per-CPU maps and reads sysfs: blocking work, kept off
    // the runtime's workers so the audit reader never waits for a scrape.
    match tokio::task::spawn_blocking(move || render(&registry)).await {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(e) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("collecting metrics failed: {e}\n")).into_response()
        }
    }
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
