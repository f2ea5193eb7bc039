//! The HTTP server every service runs: bound by the service itself (so a test can ask for port
//! 0), with the request span and problem+json for extractor failures and unknown routes, and
//! stopped by the shutdown token rather than by actix's own signal handling.

use std::net::TcpListener;

use actix_web::{App, HttpServer, dev::Server, web};
use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{config::shutdown_timeout, problem, telemetry};

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

/// Starts serving on `listener` the app that `configure` fills in (its data and routes),
/// wrapped in what every service shares. In-flight requests get `SHUTDOWN_TIMEOUT_SECS` to
/// finish once the server is stopped; the server is not running until the returned future is
/// awaited or spawned.
pub fn serve<F>(listener: TcpListener, configure: F) -> anyhow::Result<Server>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let grace = shutdown_timeout()?;
    let server = HttpServer::new(move || {
        App::new()
            .wrap(telemetry::request_span())
            .app_data(problem::json_config())
            .app_data(problem::path_config())
            .app_data(problem::query_config())
            .configure(configure.clone())
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

/// Stops `server` gracefully, letting in-flight requests finish, once `shutdown` is cancelled.
/// Abort the returned task if the server ends by itself first.
pub fn stop_when_cancelled(server: &Server, shutdown: CancellationToken) -> JoinHandle<()> {
    let handle = server.handle();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        tracing::info!("stopping the HTTP server");
        handle.stop(true).await;
    })
}
