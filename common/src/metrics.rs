//! Prometheus metrics: one registry per running service, served as text on `GET /metrics`.
//!
//! A registry per [`Application`](crate::service::Application) rather than a process-global
//! one, so that services started side by side in one test process each count only their own
//! work. Every registry carries the process collector (`process_resident_memory_bytes`,
//! `process_cpu_seconds_total`, open file descriptors, ...) and the HTTP request histogram.
//!
//! Label values come only from route templates and fixed enums, never from a request's raw
//! path or body, so the number of series stays bounded whatever clients send.

use std::time::Instant;

use actix_web::{
    HttpResponse,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::ContentType,
    middleware::Next,
    web,
};
use anyhow::Context;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntGauge, IntGaugeVec, Opts, PullingGauge, TextEncoder,
    core::{Collector, Desc},
    proto::MetricFamily,
};

pub use prometheus::Registry;

/// Buckets of every duration histogram, in seconds: from 1 ms (a cached catalog read) to 10 s
/// (past any RPC timeout we configure).
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `http_route` of a request that matched no route: one value for every unknown path.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// A new registry holding the process collector.
pub fn registry() -> Registry {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    {
        let process = prometheus::process_collector::ProcessCollector::for_self();
        // A fresh registry has nothing the collector could clash with.
        registry
            .register(Box::new(process))
            .expect("the process collector registers in a new registry");
    }
    registry
}

/// Registers `metric` (a counter, gauge or histogram, with or without labels) in `registry`
/// and returns it, for the caller to update.
pub fn register<M: Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> anyhow::Result<M> {
    let names: Vec<String> = metric.desc().iter().map(|d| d.fq_name.clone()).collect();
    registry
        .register(Box::new(metric.clone()))
        .with_context(|| format!("registering {}", names.join(", ")))?;
    Ok(metric)
}

/// Registers a histogram of durations in seconds with `labels`, using [`DURATION_BUCKETS`].
pub fn duration_histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> anyhow::Result<HistogramVec> {
    let opts = HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec());
    register(registry, HistogramVec::new(opts, labels)?)
}

/// Registers a gauge whose value `read` gives at every scrape, for values that something else
/// already keeps (a queue's length, whether a connection is open).
pub fn gauge_fn(
    registry: &Registry,
    name: &str,
    help: &str,
    read: impl Fn() -> f64 + Send + Sync + 'static,
) -> anyhow::Result<()> {
    register(registry, PullingGauge::new(name, help, Box::new(read))?).map(drop)
}

/// Registers a gauge with one label whose values `read` gives at every scrape, as
/// `(label value, value)` pairs.
pub fn gauge_vec_fn(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
    read: impl Fn() -> Vec<(&'static str, i64)> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let gauges = IntGaugeVec::new(Opts::new(name, help), &[label])?;
    registry
        .register(Box::new(ReadAtScrape {
            gauges,
            read: Box::new(read),
        }))
        .with_context(|| format!("registering {name}"))
}

/// A labelled gauge refreshed from its source just before each scrape.
struct ReadAtScrape {
    gauges: IntGaugeVec,
    read: Box<dyn Fn() -> Vec<(&'static str, i64)> + Send + Sync>,
}

impl Collector for ReadAtScrape {
    fn desc(&self) -> Vec<&Desc> {
        self.gauges.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        for (label, value) in (self.read)() {
            self.gauges.with_label_values(&[label]).set(value);
        }
        self.gauges.collect()
    }
}

/// The registry's metrics in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut text = Vec::new();
    // Encoding into memory fails only for families the client library itself built wrong.
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut text) {
        tracing::warn!(error = %e, "encoding the metrics failed");
    }
    String::from_utf8(text).unwrap_or_default()
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4.",
        content_type = "text/plain; version=0.0.4", body = String))
)]
pub async fn serve_metrics(registry: web::Data<Registry>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ContentType(
            prometheus::TEXT_FORMAT.parse().expect("a valid media type"),
        ))
        .body(render(&registry))
}

/// `http_server_request_duration_seconds` and `http_server_active_requests`, kept by
/// [`observe_requests`].
#[derive(Clone)]
pub struct HttpMetrics {
    duration: HistogramVec,
    active: IntGauge,
}

impl HttpMetrics {
    /// Registers the request histogram in `registry`.
    pub fn register(registry: &Registry) -> anyhow::Result<Self> {
        Ok(Self {
            duration: duration_histogram(
                registry,
                "http_server_request_duration_seconds",
                "Time from a request's arrival to its response head, by route template.",
                &[
                    "http_request_method",
                    "http_route",
                    "http_response_status_code",
                ],
            )?,
            active: register(
                registry,
                IntGauge::new("http_server_active_requests", "Requests being handled now.")?,
            )?,
        })
    }
}

/// One more on a gauge of things in progress for as long as it lives, so every way out (an
/// error, a dropped future) counts it down again.
pub struct InProgress(IntGauge);

impl InProgress {
    /// Counts one more on `gauge`.
    pub fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Middleware timing every request into [`HttpMetrics`] (taken from the app data), labelled
/// with the route template that matched, never the raw path.
pub async fn observe_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<HttpMetrics>>().cloned();
    let _active = metrics.as_ref().map(|m| InProgress::new(&m.active));
    let method = known_method(req.method());
    // The resource map answers without routing the request, so this works before `next`.
    let route = req.match_pattern();
    let result = next.call(req).await;
    if let Some(metrics) = metrics {
        let status = match &result {
            Ok(response) => response.status(),
            Err(e) => e.as_response_error().status_code(),
        };
        metrics
            .duration
            .with_label_values(&[
                method,
                route.as_deref().unwrap_or(UNMATCHED_ROUTE),
                status.as_str(),
            ])
            .observe(started.elapsed().as_secs_f64());
    }
    result
}

/// The method as a label value; any other than the standard ones is `_OTHER`, as OpenTelemetry's
/// semantic conventions have it, so made-up methods cannot add series.
fn known_method(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_registry_exposes_the_process_resident_memory() {
        let text = render(&registry());
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }

    #[test]
    fn a_gauge_read_at_scrape_shows_its_source_as_it_is_then() {
        let registry = registry();
        let depth = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(3));
        let source = depth.clone();
        gauge_vec_fn(
            &registry,
            "queue_depth",
            "Jobs waiting.",
            "queue",
            move || vec![("hash", source.load(std::sync::atomic::Ordering::Relaxed))],
        )
        .unwrap();
        assert!(render(&registry).contains("queue_depth{queue=\"hash\"} 3"));
        depth.store(5, std::sync::atomic::Ordering::Relaxed);
        assert!(render(&registry).contains("queue_depth{queue=\"hash\"} 5"));
    }

    #[test]
    fn a_made_up_method_is_one_label_value() {
        let method = actix_web::http::Method::from_bytes(b"BREW").unwrap();
        assert_eq!(known_method(&method), "_OTHER");
    }
}
