//! `/metrics`: the Prometheus exposition, beside `/status` behind the same door, or on
//! an address of its own (`--metrics-addr`) behind a door of its own.

use std::sync::Arc;

use axum::{
    http::header,
    middleware,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use tower_http::compression::CompressionLayer;

use super::{guard_host, Door};
use crate::metrics::{Metrics, CONTENT_TYPE};

/// The exposition, as Prometheus scrapes it.
pub async fn exposition(metrics: Arc<Metrics>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.encode()).into_response()
}

/// The router of a metrics-only address: `/metrics`, with the host guard of `door`
/// (the DNS-rebinding guard when that address is loopback).
pub fn app(metrics: Arc<Metrics>, door: Door) -> Router {
    Router::new()
        .route("/metrics", get(move || exposition(metrics.clone())))
        .layer(CompressionLayer::new())
        .layer(middleware::from_fn_with_state(Arc::new(door), guard_host))
}
