//! The W3C trace context (`traceparent`, `tracestate`) in AMQP message headers, so that one
//! trace follows a request from the client through the broker to the server and back.

use lapin::types::{AMQPValue, FieldTable, LongString};
use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator},
};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// Writes the trace context of `context` into `headers`; nothing when it has none.
pub fn inject(context: &Context, headers: &mut FieldTable) {
    TraceContextPropagator::new().inject_context(context, &mut HeaderInjector(headers));
}

/// The trace context `headers` carry. A message without one (an older producer) or with a
/// malformed one gives an empty context, under which a new trace starts.
pub fn extract(headers: Option<&FieldTable>) -> Context {
    match headers {
        Some(headers) => TraceContextPropagator::new().extract(&HeaderExtractor(headers)),
        None => Context::new(),
    }
}

struct HeaderInjector<'a>(&'a mut FieldTable);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0
            .insert(key.into(), AMQPValue::LongString(LongString::from(value)));
    }
}

struct HeaderExtractor<'a>(&'a FieldTable);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        // Other publishers may write either string type.
        match self.0.inner().get(key)? {
            AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
            AMQPValue::ShortString(s) => Some(s.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };

    use super::*;

    #[test]
    fn a_context_written_into_headers_is_read_back() {
        let sent = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let mut headers = FieldTable::default();
        inject(
            &Context::new().with_remote_span_context(sent.clone()),
            &mut headers,
        );
        let received = extract(Some(&headers));
        let span = received.span();
        assert_eq!(span.span_context().trace_id(), sent.trace_id());
        assert_eq!(span.span_context().span_id(), sent.span_id());
    }

    #[test]
    fn a_malformed_traceparent_gives_no_context() {
        let mut headers = FieldTable::default();
        headers.insert(
            "traceparent".into(),
            AMQPValue::LongString("00-not-a-trace-01".into()),
        );
        assert!(!extract(Some(&headers)).span().span_context().is_valid());
        assert!(!extract(None).span().span_context().is_valid());
    }
}
