//! The HTTP server every service runs: bound by the service itself (so a test can ask for port
//! 0), with the request span, request metrics, `/healthz`, `/readyz`, `/metrics` and
//! `/openapi.json`, problem+json for extractor failures and unknown routes, the headers every
//! response carries, and deadlines for slow clients; stopped by the shutdown token rather than
//! by actix's own signal handling.
//!
//! Headers: every response has `X-Content-Type-Options: nosniff`. A response to a request that
//! carries credentials (`Authorization`) or changes state (any method but GET and HEAD) has
//! `Cache-Control: no-store` unless the route set its own: tokens, orders and buys are never
//! kept by a cache, while the public catalog and the JWKS stay cacheable.
//!
//! Deadlines ([`HttpTimeouts`]): the request head must arrive within `request_head` (actix
//! answers 408 and closes), and a body a route reads within `request_body` of the head (408
//! problem, and the connection closes).

use std::{io, net::TcpListener, sync::Arc, time::Duration};

use actix_web::{
    App, HttpMessage, HttpServer,
    body::MessageBody,
    dev::{Payload, Server, ServiceRequest, ServiceResponse},
    error::PayloadError,
    http::{
        Method,
        header::{self, HeaderValue},
    },
    middleware::{DefaultHeaders, Next, from_fn},
    web,
};
use anyhow::Context;
use futures::StreamExt;

use crate::{
    config::HttpTimeouts,
    metrics::{self, HttpMetrics, Registry},
    openapi::{self, Document},
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
    pub(crate) document: Document,
}

/// The routes of the skeleton, mounted in every service beside its own.
pub(crate) fn skeleton_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(metrics::serve_metrics))
        .route("/openapi.json", web::get().to(openapi::serve_document));
}

/// Starts serving `routes` on `listener`, wrapped in what every service shares. In-flight
/// requests get `grace` to finish once the server is stopped; the server is not running until
/// the returned future is awaited or spawned.
pub(crate) fn serve(
    listener: TcpListener,
    grace: Duration,
    timeouts: HttpTimeouts,
    shared: Shared,
    routes: Routes,
) -> anyhow::Result<Server> {
    let registry = web::Data::new(shared.registry);
    let metrics = web::Data::new(shared.metrics);
    let readiness = web::Data::new(shared.readiness);
    let document = web::Data::new(shared.document);
    let body_timeout = timeouts.request_body;
    let server = HttpServer::new(move || {
        App::new()
            .wrap(from_fn(no_store))
            .wrap(DefaultHeaders::new().add((header::X_CONTENT_TYPE_OPTIONS, "nosniff")))
            .wrap(from_fn(move |req, next| {
                read_body_within(body_timeout, req, next)
            }))
            // The last `wrap` is the outermost: requests are timed inside their span.
            .wrap(from_fn(metrics::observe_requests))
            .wrap(telemetry::request_span())
            .app_data(metrics.clone())
            .app_data(registry.clone())
            .app_data(readiness.clone())
            .app_data(document.clone())
            .app_data(problem::json_config())
            .app_data(problem::path_config())
            .app_data(problem::query_config())
            .configure(skeleton_routes)
            .configure(|cfg| (routes.0)(cfg))
            .default_service(web::to(problem::not_found))
    })
    // The cancellation token, not actix's own signal handling, decides when to stop.
    .disable_signals()
    .shutdown_timeout(grace.as_secs())
    .client_request_timeout(timeouts.request_head)
    .client_disconnect_timeout(timeouts.client_disconnect)
    .listen(listener)
    .context("starting the HTTP server")?
    .run();
    Ok(server)
}

/// Adds `Cache-Control: no-store` to the answer of a request with credentials or one that
/// changes state, unless the route chose its own caching.
async fn no_store(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let private = req.headers().contains_key(header::AUTHORIZATION)
        || !matches!(*req.method(), Method::GET | Method::HEAD);
    let mut response = next.call(req).await?;
    if private && !response.headers().contains_key(header::CACHE_CONTROL) {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}

/// The error a body read past its deadline ends with; [`is_body_timeout`] recognises it.
const BODY_TIMEOUT: &str = "the request body did not arrive in time";

/// Whether `error` is the end of a body that did not arrive within `HTTP_REQUEST_BODY_TIMEOUT_MS`.
pub fn is_body_timeout(error: &PayloadError) -> bool {
    matches!(error, PayloadError::Io(e) if e.kind() == io::ErrorKind::TimedOut
        && e.to_string() == BODY_TIMEOUT)
}

/// Gives the request body a deadline, `timeout` from now (the head has been read): a client
/// that trickles its body, or stops sending it, gets an error from the body stream there, which
/// the JSON extractor answers with 408.
async fn read_body_within(
    timeout: Duration,
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    let body = req.take_payload();
    let timed = futures::stream::unfold(
        (Some(body), Box::pin(tokio::time::sleep_until(deadline))),
        |(body, mut expired)| async move {
            let mut body = body?;
            tokio::select! {
                chunk = body.next() => chunk.map(|chunk| (chunk, (Some(body), expired))),
                () = &mut expired => {
                    let error = io::Error::new(io::ErrorKind::TimedOut, BODY_TIMEOUT);
                    // Nothing more is read from this body.
                    Some((Err(PayloadError::Io(error)), (None, expired)))
                }
            }
        },
    );
    req.set_payload(Payload::Stream {
        payload: Box::pin(timed),
    });
    next.call(req).await
}
