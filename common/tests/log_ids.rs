//! Log lines carry their span's trace and span ids even when no span is exported. One test in
//! this binary: it installs the process's tracing, which can be done once.

use common::{
    telemetry::{self, Spans},
    testing::CapturedLogs,
};

#[test]
fn a_line_logged_in_a_span_carries_its_ids_when_nothing_is_exported() {
    let logs = CapturedLogs::default();
    let _installed = telemetry::init_with("log-ids-test", Spans::Dropped, logs.clone());

    let outer = tracing::info_span!("request");
    let inner = tracing::info_span!(parent: &outer, "call");
    outer.in_scope(|| tracing::info!("in the request"));
    inner.in_scope(|| tracing::info!("in the call"));
    tracing::info!("outside any span");

    let lines = logs.lines();
    let line = |message: &str| {
        lines
            .iter()
            .find(|line| line["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("{message:?} was logged: {lines:?}"))
            .clone()
    };
    let (request, call) = (line("in the request"), line("in the call"));
    let hex = |value: &serde_json::Value, len: usize| {
        value.as_str().is_some_and(|s| {
            s.len() == len
                && s.bytes().all(|b| b.is_ascii_hexdigit())
                && s.bytes().any(|b| b != b'0')
        })
    };
    assert!(
        hex(&request["trace_id"], 32) && hex(&request["span_id"], 16),
        "{request}"
    );
    assert_eq!(
        request["trace_id"], call["trace_id"],
        "one trace for the span and its child"
    );
    assert_ne!(
        request["span_id"], call["span_id"],
        "each line names its own span"
    );
    assert!(line("outside any span").get("trace_id").is_none());
}
