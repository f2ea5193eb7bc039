//! One trace per buy: the W3C trace context a client sends is continued by products, carried
//! through RabbitMQ to orders, and shows in the log lines of both.
//!
//! The services run in this process, so they share its one tracing setup: spans go to an
//! in-memory exporter and log lines to memory as well as stdout.

mod support;

use std::{sync::OnceLock, time::Duration};

use common::{
    amqp::ReplyMode,
    telemetry::{self, Spans},
    testing::{CapturedLogs, wait_until},
};
use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use reqwest::StatusCode;
use serde_json::Value;
use support::{Options, System, id_of, items, send};
use tracing_subscriber::fmt::writer::MakeWriterExt;

/// The exporter and the log lines every test in this binary shares.
fn telemetry() -> &'static (InMemorySpanExporter, CapturedLogs) {
    static INSTALLED: OnceLock<(InMemorySpanExporter, CapturedLogs)> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let spans = InMemorySpanExporter::default();
        let logs = CapturedLogs::default();
        // Dropping the handle keeps the installation; spans are exported as each one ends.
        let _ = telemetry::init_with(
            "e2e",
            Spans::InMemory(spans.clone()),
            std::io::stdout.and(logs.clone()),
        );
        (spans, logs)
    })
}

/// The finished spans of `trace`, once there are at least `count`.
async fn spans_of(exporter: &InMemorySpanExporter, trace: TraceId, count: usize) -> Vec<SpanData> {
    wait_until(Duration::from_secs(10), "the buy's spans", || async {
        let spans: Vec<SpanData> = exporter
            .get_finished_spans()
            .expect("the exporter is open")
            .into_iter()
            .filter(|span| span.span_context.trace_id() == trace)
            .collect();
        (spans.len() >= count).then_some(spans)
    })
    .await
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|span| span.name == name)
        .unwrap_or_else(|| {
            let names: Vec<_> = spans.iter().map(|s| s.name.as_ref()).collect();
            panic!("no span {name:?} among {names:?}")
        })
}

/// The log lines carrying `trace` whose target starts with `service`.
fn logged_by(logs: &CapturedLogs, service: &str, trace: &str) -> Vec<Value> {
    logs.lines()
        .into_iter()
        .filter(|line| line["trace_id"] == trace)
        .filter(|line| {
            line["target"]
                .as_str()
                .is_some_and(|t| t.starts_with(service))
        })
        .collect()
}

#[tokio::test]
async fn a_buy_sent_with_a_traceparent_is_one_trace_through_products_and_orders() {
    let (exporter, logs) = telemetry();
    let system = System::start(Options::new(ReplyMode::Direct)).await;
    let (lamp, alice) = system.lamp_and_alice().await;
    let trace = TraceId::from_bytes(*uuid::Uuid::new_v4().as_bytes());
    let caller = SpanId::from_hex("00f067aa0ba902b7").unwrap();

    let order = send(
        system
            .buy_request(&alice.token, &items(&[(&id_of(&lamp), 1)]))
            .header("traceparent", format!("00-{trace}-{caller}-01")),
    )
    .await
    .expect(StatusCode::CREATED, "a traced buy");

    let spans = spans_of(exporter, trace, 3).await;
    let request = named(&spans, "POST /products/buy");
    assert_eq!(request.span_kind, SpanKind::Server);
    assert_eq!(
        request.parent_span_id, caller,
        "products continues the caller's trace"
    );
    assert!(request.parent_span_is_remote);
    let call = named(&spans, "send order.create.v1");
    assert_eq!(call.span_kind, SpanKind::Client);
    assert_eq!(call.parent_span_id, request.span_context.span_id());
    let handling = named(&spans, "process order.create.v1");
    assert_eq!(handling.span_kind, SpanKind::Server);
    assert_eq!(
        handling.parent_span_id,
        call.span_context.span_id(),
        "orders' span is a child of products' call, through the message headers"
    );
    assert!(handling.parent_span_is_remote);

    let trace = trace.to_string();
    let placed = logged_by(logs, "products", &trace);
    assert!(
        placed
            .iter()
            .any(|line| line["fields"]["order_id"] == order.body["id"]),
        "products' log of the buy carries the trace id: {placed:?}"
    );
    let created = logged_by(logs, "orders", &trace);
    assert!(
        created
            .iter()
            .any(|line| line["fields"]["message"] == "order created"),
        "orders' log of the order carries the trace id: {created:?}"
    );
    assert!(
        created
            .iter()
            .all(|line| line["span_id"] == handling.span_context.span_id().to_string()),
        "and the id of the span it was written in"
    );
    system.stop().await;
}

#[tokio::test]
async fn a_malformed_traceparent_is_ignored_and_the_buy_starts_a_trace_of_its_own() {
    let (exporter, logs) = telemetry();
    let system = System::start(Options::new(ReplyMode::PerRequest)).await;
    let (lamp, alice) = system.lamp_and_alice().await;

    let order = send(
        system
            .buy_request(&alice.token, &items(&[(&id_of(&lamp), 1)]))
            .header("traceparent", "00-not-a-trace-id-01")
            .header("tracestate", "=broken,,"),
    )
    .await
    .expect(StatusCode::CREATED, "a buy with a malformed traceparent");

    let placed = logs
        .lines()
        .into_iter()
        .find(|line| {
            line["fields"]["order_id"] == order.body["id"]
                && line["target"] == "products::routes::buy"
        })
        .expect("products logged the buy");
    let trace = placed["trace_id"].as_str().expect("a trace id").to_owned();
    let trace = TraceId::from_hex(&trace).expect("a valid trace id");
    assert_ne!(trace, TraceId::INVALID);
    let spans = spans_of(exporter, trace, 3).await;
    let request = named(&spans, "POST /products/buy");
    assert_eq!(
        request.parent_span_id,
        SpanId::INVALID,
        "the request span is the root of a new trace"
    );
    named(&spans, "process order.create.v1");
    system.stop().await;
}
