//! The HTTP server every service runs: bound by the service itself (so a test can ask for port
//! 0), with the request span, request metrics, `/healthz`, `/readyz` and `/metrics`, and
//! problem+json for extractor failures and unknown routes; stopped by the shutdown token rather
//! than by actix's own signal handling.

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::{App, HttpServer, dev::Server, middleware::from_fn, web};
use anyhow::Context;

use crate::{
    metrics::{self, HttpMetrics, Registry},
    problem,
    service::health::{self, Readiness},
    telemetry,
};

/// Binds `0.0.0.0:{port}`; port 0 picks a free one. Returns the listener and the bound port.
pub fn bind(port: u16) -> anyhow::Result<(TcpListener, u16)> {
    let listener =
        TcpListener::bind(("0.0.0.0", port)).with_context(|| format!("binding 0.0.0.0:{port}"))?;
    let port = listener
        .local_addr()
        .context("reading the bound port")?
        .port();
    Ok((listener, port))
}

/// A service's own routes and the data they use, added to the app every worker builds.
#[derive(Clone)]
pub struct Routes(Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>);

impl Routes {
    /// Routes that `configure` mounts (with their `app_data`).
    pub fn new(configure: impl Fn(&mut web::ServiceConfig) + Send + Sync + 'static) -> Self {
        Self(Arc::new(configure))
    }
}

/// What every service's app shares besides its routes.
pub(crate) struct Shared {
    pub(crate) registry: Registry,
    pub(crate) metrics: HttpMetrics,
    pub(crate) readiness: Readiness,
}

/// Starts serving `routes` on `listener`, wrapped in what every service shares. In-flight
/// requests get `grace` to finish once the server is stopped; the server is not running until
/// the returned future is awaited or spawned.
pub(crate) fn serve(
    listener: TcpListener,
    grace: Duration,
    shared: Shared,
    routes: Routes,
) -> anyhow::Result<Server> {
    let registry = web::Data::new(shared.registry);
    let metrics = web::Data::new(shared.metrics);
    let readiness = web::Data::new(shared.readiness);
    let server = HttpServer::new(move || {
        App::new()
            // The last `wrap` is the outermost: requests are timed inside their span.
            .wrap(from_fn(metrics::observe_requests))
            .wrap(telemetry::request_span())
            .app_data(metrics.clone())
            .app_data(registry.clone())
            .app_data(readiness.clone())
            .app_data(problem::json_config())
            .app_data(problem::path_config())
            .app_data(problem::query_config())
            .route("/healthz", web::get().to(health::healthz))
            .route("/readyz", web::get().to(health::readyz))
            .route("/metrics", web::get().to(metrics::serve_metrics))
            .configure(|cfg| (routes.0)(cfg))
            .default_service(web::to(problem::not_found))
    })
    // The cancellation token, not actix's own signal handling, decides when to stop.
    .disable_signals()
    .shutdown_timeout(grace.as_secs())
    .listen(listener)
    .context("starting the HTTP server")?
    .run();
    Ok(server)
}
