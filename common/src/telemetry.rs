//! Logs and traces for every service: JSON lines on stdout filtered by `RUST_LOG` (default
//! `info`), and OpenTelemetry spans, exported over OTLP/HTTP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! Spans get trace and span ids whether or not anything is exported, and every log line written
//! inside one carries them as `trace_id` and `span_id`: a buyer's trace id finds the lines of
//! every service that worked on the buy. The W3C trace context (`traceparent`, `tracestate`) is
//! taken from incoming HTTP requests by the request span and travels across RabbitMQ in message
//! headers ([`crate::amqp`]).

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter},
};
use tracing::{Dispatch, Event, Subscriber, dispatcher::WeakDispatch};
use tracing_subscriber::{
    EnvFilter, Layer,
    fmt::MakeWriter,
    layer::{Context, SubscriberExt},
    registry::LookupSpan,
    util::SubscriberInitExt,
};

/// The variable that turns span export on: the OTLP/HTTP base URL, such as
/// `http://jaeger:4318` (spans go to `<it>/v1/traces`).
pub const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// What was installed, kept so that spans still queued for export are sent before exit.
#[derive(Debug)]
pub struct Telemetry {
    /// `None` when an earlier call had already installed everything.
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still queued (waiting at most a few seconds for the collector) and stops
    /// exporting.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(3))
        {
            tracing::debug!(error = %e, "flushing spans at exit failed");
        }
    }
}

/// Where spans go once they end.
#[derive(Debug)]
pub enum Spans {
    /// Nowhere: spans exist for their ids (in the logs and in propagated trace context) only.
    Dropped,
    /// To the OTLP/HTTP collector at this base URL (spans go to `<it>/v1/traces`), in batches
    /// sent from a thread of the SDK's own.
    Otlp(String),
    /// To this exporter as each span ends, for tests that look at the spans.
    #[cfg(feature = "testing")]
    InMemory(opentelemetry_sdk::trace::InMemorySpanExporter),
}

impl Spans {
    /// [`Spans::Otlp`] when `OTEL_EXPORTER_OTLP_ENDPOINT` is set and not empty, else
    /// [`Spans::Dropped`].
    pub fn from_env() -> Self {
        match std::env::var(OTLP_ENDPOINT_VAR) {
            Ok(endpoint) if !endpoint.trim().is_empty() => Self::Otlp(endpoint.trim().to_owned()),
            _ => Self::Dropped,
        }
    }
}

/// Installs logging and tracing for `service`: JSON lines on stdout, spans as
/// [`Spans::from_env`] says (`OTEL_SERVICE_NAME` overrides the service name they carry).
/// Calling it again, as tests do, keeps what the first call installed.
pub fn init(service: &'static str) -> Telemetry {
    init_with(service, Spans::from_env(), std::io::stdout)
}

/// [`init`] with the spans going where `spans` says and the log lines to `writer`.
pub fn init_with<W>(service: &'static str, spans: Spans, writer: W) -> Telemetry
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = SdkTracerProvider::builder().with_resource(resource(service));
    let (builder, exporting) = match spans {
        // Ids without recording: a span nobody will see is not kept, unless the caller's trace
        // context says it is sampled (it may be recorded further along).
        Spans::Dropped => (
            builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff))),
            Ok(None),
        ),
        Spans::Otlp(endpoint) => match build_off_runtime(|| otlp_exporter(&endpoint)) {
            // Batched: exporting never runs on a request's path, and a full queue drops spans
            // rather than wait.
            Ok(exporter) => (
                builder.with_batch_exporter(ReportFailuresOnce::new(exporter)),
                Ok(Some(endpoint)),
            ),
            Err(e) => (builder, Err((endpoint, e))),
        },
        #[cfg(feature = "testing")]
        Spans::InMemory(exporter) => (
            builder.with_simple_exporter(exporter),
            Ok(Some("memory".to_owned())),
        ),
    };
    let telemetry = install(service, builder.build(), writer);
    if telemetry.provider.is_some() {
        match exporting {
            Ok(Some(endpoint)) => {
                tracing::info!(service, %endpoint, "telemetry started; exporting spans");
            }
            Ok(None) => tracing::info!(service, "telemetry started; spans are not exported"),
            // Tracing is an aid: a service that cannot export spans still serves.
            Err((endpoint, e)) => tracing::warn!(
                service,
                %endpoint,
                error = format!("{e:#}"),
                "telemetry started; spans cannot be exported"
            ),
        }
    }
    telemetry
}

fn resource(service: &'static str) -> Resource {
    let name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| service.to_owned());
    Resource::builder().with_service_name(name).build()
}

/// Runs `build` on a thread of its own: reqwest's blocking client, which the exporter uses,
/// waits for its own runtime to start, and a Tokio worker must not wait.
fn build_off_runtime<T: Send>(build: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(build)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn otlp_exporter(endpoint: &str) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    // OTEL_EXPORTER_OTLP_TIMEOUT (default 10 s) bounds each export; a collector that does not
    // even accept the connection is given up on sooner.
    let http = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .build()?;
    Ok(opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(http)
        .build()?)
}

/// Set once the subscriber is installed, so a second `init` (tests start several services in
/// one process) leaves the first in place.
static INSTALLED: OnceLock<()> = OnceLock::new();

fn install<W>(service: &'static str, provider: SdkTracerProvider, writer: W) -> Telemetry
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let mut installed_now = false;
    INSTALLED.get_or_init(|| {
        // W3C trace context, for the request span of tracing-actix-web, which reads the
        // global propagator.
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let tracer = provider.tracer(service);
        let mut json = json_subscriber::fmt::Layer::default()
            .with_writer(writer)
            .with_current_span(true)
            .with_span_list(false)
            .with_target(true);
        json.inner_layer_mut()
            .add_from_extension_ref::<TraceIds, _, _>("trace_id", |ids| Some(&ids.trace_id));
        json.inner_layer_mut()
            .add_from_extension_ref::<TraceIds, _, _>("span_id", |ids| Some(&ids.span_id));
        installed_now = tracing_subscriber::registry()
            .with(filter())
            .with(tracing_opentelemetry::layer().with_tracer(tracer))
            .with(TraceIdsLayer::default())
            .with(json)
            .try_init()
            .is_ok();
    });
    Telemetry {
        provider: installed_now.then_some(provider),
    }
}

fn filter() -> EnvFilter {
    // lapin logs a returned message's whole body at WARN, and a buy's body holds the buyer's
    // email; the client reports returns itself.
    EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(
            "lapin::returned_messages=error"
                .parse()
                .expect("valid directive"),
        )
}

/// The actix middleware that runs every request in a span carrying its request id, continuing
/// the trace of a valid `traceparent` header (and starting a new one otherwise).
pub fn request_span() -> tracing_actix_web::TracingLogger<tracing_actix_web::DefaultRootSpanBuilder>
{
    tracing_actix_web::TracingLogger::default()
}

/// The trace and span id of a span, as the log lines written inside it show them.
struct TraceIds {
    trace_id: String,
    span_id: String,
}

/// Gives a span its [`TraceIds`] when the first line is logged inside it: only spans that log
/// pay for them, and by then the span's parent (a remote one from a `traceparent`, say) is set,
/// which it may not be when the span is created. Added before the JSON layer, so it runs first.
#[derive(Default)]
struct TraceIdsLayer {
    dispatch: OnceLock<WeakDispatch>,
}

impl<S> Layer<S> for TraceIdsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.event_span(event) else {
            return;
        };
        if span.extensions().get::<TraceIds>().is_some() {
            return;
        }
        let Some(dispatch) = self.dispatch.get().and_then(WeakDispatch::upgrade) else {
            return;
        };
        // Not holding the span's extensions here: the lookup takes them itself.
        let Some(context) = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch) else {
            return;
        };
        let otel_span = context.span();
        let span_context = otel_span.span_context();
        if span_context.is_valid() {
            span.extensions_mut().insert(TraceIds {
                trace_id: span_context.trace_id().to_string(),
                span_id: span_context.span_id().to_string(),
            });
        }
    }
}

/// An exporter that says once that the collector cannot be reached, rather than at every
/// batch, and once more when it can again. Spans that fail to go are dropped: tracing must
/// never slow or fail the work it watches.
#[derive(Debug)]
struct ReportFailuresOnce<E> {
    inner: E,
    failing: AtomicBool,
}

impl<E> ReportFailuresOnce<E> {
    fn new(inner: E) -> Self {
        Self {
            inner,
            failing: AtomicBool::new(false),
        }
    }
}

impl<E: SpanExporter> SpanExporter for ReportFailuresOnce<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        match &result {
            Err(e) if !self.failing.swap(true, Ordering::Relaxed) => tracing::warn!(
                error = %e,
                spans,
                "cannot export spans; dropping them until the collector answers again"
            ),
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!("exporting spans again");
            }
            _ => {}
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
