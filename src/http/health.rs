//! Health and metrics over HTTP: `/healthz` (the process answers), `/readyz` (ready for
//! traffic: not draining, the bus delivering, the store answering), `/metrics` (Prometheus).

use crate::hub::Hub;
use crate::metrics::{Gauges, METRICS};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready while not draining and the store answers.
async fn readyz(State(hub): State<Arc<Hub>>) -> (StatusCode, Json<serde_json::Value>) {
    if hub.shutdown.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining" })),
        );
    }
    if !hub.bus.is_healthy() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({ "status": "degraded", "detail": "the bus subscription is not delivering" }),
            ),
        );
    }
    match hub.store_ready().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "store unavailable", "detail": e.to_string() })),
        ),
    }
}

/// `GET /metrics`.
async fn metrics(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    let store_up = hub.store_ready().await.is_ok();
    let body = METRICS.render(Gauges {
        connections: hub.shutdown.live_connections(),
        sessions: hub.sessions.count(),
        rooms: hub.rooms.active(),
        store_up,
        bus_up: hub.bus.is_healthy(),
        sessions_by_company: match hub.tenant_labels {
            true => hub.sessions.by_company(),
            false => Vec::new(),
        },
    });
    let body = crate::metrics::with_node_label(&body, &hub.node);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}
