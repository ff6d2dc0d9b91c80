//! `strata serve --metrics-listen`: Prometheus `/metrics`, and `/healthz` and `/readyz` for
//! orchestrators, over plain HTTP on a separate port.
//!
//! The engine counts events through the `metrics` facade (see `strata_query::telemetry`);
//! [`install`] makes the process record them in Prometheus' format. A scrape first sets the
//! gauges read off the warehouse (`strata_query::observe`: view staleness, freshness lag, the
//! memory pool, the scan cache), then renders everything.
//!
//! - `/healthz`: 200 while the process serves HTTP at all.
//! - `/readyz`: 200 when the warehouse's catalog can be read now, 503 otherwise (the store is
//!   unreachable or denies access), so a load balancer sends no clients to a server that
//!   could not answer them.

use std::sync::Mutex;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use strata_query::Warehouse;
use strata_query::telemetry::{LATENCY_BUCKETS, STATEMENT_SECONDS, describe};
use tokio::net::TcpListener;

use crate::error::{Error, Result};

/// The process's recorder, once installed.
static RECORDER: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs the Prometheus recorder for this process (once; later calls return the same
/// handle) and describes Strata's metrics.
pub fn install() -> Result<PrometheusHandle> {
    let mut installed = RECORDER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(STATEMENT_SECONDS.to_string()),
            &LATENCY_BUCKETS,
        )
        .and_then(|b| b.install_recorder())
        .map_err(|e| Error::Monitoring(e.to_string()))?;
    describe();
    *installed = Some(handle.clone());
    Ok(handle)
}

#[derive(Clone)]
struct Monitor {
    warehouse: Warehouse,
    handle: PrometheusHandle,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, warehouse: Warehouse, handle: PrometheusHandle) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Monitor { warehouse, handle });
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the metrics listener stopped");
    }
}

async fn metrics(State(monitor): State<Monitor>) -> impl IntoResponse {
    // The counters are worth serving even when the warehouse cannot be read for the gauges.
    if let Err(e) = strata_query::observe(&monitor.warehouse).await {
        tracing::warn!(error = %e, "metrics: warehouse gauges not updated");
    }
    monitor.handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        monitor.handle.render(),
    )
}

async fn ready(State(monitor): State<Monitor>) -> impl IntoResponse {
    match monitor.warehouse.refresh_catalog().await {
        Ok(_) => (StatusCode::OK, "ready\n".to_string()),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: the warehouse catalog cannot be read ({:?})\n",
                e.kind()
            ),
        ),
    }
}
