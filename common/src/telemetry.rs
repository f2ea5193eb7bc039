//! JSON-lines logging for every service, filtered by `RUST_LOG` (default `info`).

use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

/// Installs the global subscriber: JSON lines on stdout, one field set per span.
/// Calling it again (as tests do) keeps the first subscriber.
pub fn init(service: &'static str) {
    // lapin logs a returned message's whole body at WARN, and a buy's body holds the buyer's
    // email; the client reports returns itself.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(
            "lapin::returned_messages=error"
                .parse()
                .expect("valid directive"),
        );
    let json = fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true);
    if tracing_subscriber::registry()
        .with(filter)
        .with(json)
        .try_init()
        .is_ok()
    {
        tracing::info!(service, "telemetry started");
    }
}

/// The actix middleware that runs every request in a span carrying its request id.
pub fn request_span() -> tracing_actix_web::TracingLogger<tracing_actix_web::DefaultRootSpanBuilder>
{
    tracing_actix_web::TracingLogger::default()
}
