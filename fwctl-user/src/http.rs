//! The HTTP endpoint Prometheus scrapes (`/metrics`), served with axum.

use std::net::SocketAddr;

use anyhow::{Context as _, Result};
use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use tokio::{net::TcpListener, sync::watch};

use crate::metrics::{render, SharedRegistry};

async fn metrics(State(registry): State<SharedRegistry>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], render(&registry))
}

/// Bind now (so a bad address fails start-up), serve until `shutdown` flips.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("binding the metrics endpoint {addr}"))
}

pub async fn serve(
    listener: TcpListener,
    registry: SharedRegistry,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let app = Router::new().route("/metrics", get(metrics)).with_state(registry);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await
        .context("metrics server")
}
