//! Span export must never hold up the work it watches. One test in this binary: it installs the
//! process's tracing, which can be done once.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::{
    telemetry::{self, Spans},
    testing::{CapturedLogs, wait_until},
};
use tokio::{io::AsyncReadExt, net::TcpListener, time::Instant};

const WARNING: &str = "cannot export spans; dropping them until the collector answers again";

/// A collector that takes each connection, reads for a second and hangs up without answering.
async fn hanging_collector() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
                })
                .await;
            });
        }
    });
    (address, connections)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_holds_nothing_up_and_is_reported_once() {
    let (collector, connections) = hanging_collector().await;
    let logs = CapturedLogs::default();
    let installed = telemetry::init_with("telemetry-test", Spans::Otlp(collector), logs.clone());

    // Far more spans than the export queue holds, each with a log line. Were ending a span to
    // wait for the collector, the ~40 batches would take some 40 s.
    let started = Instant::now();
    for n in 0..20_000 {
        let span = tracing::info_span!("unit of work", n);
        let _entered = span.enter();
        tracing::info!("working");
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "20,000 traced units of work took {took:?}"
    );

    wait_until(
        Duration::from_secs(60),
        "several exports to the collector",
        || async { (connections.load(Ordering::SeqCst) >= 3).then_some(()) },
    )
    .await;
    wait_until(
        Duration::from_secs(30),
        "the failure to be reported",
        || async {
            let reported = logs
                .lines()
                .iter()
                .filter(|line| line["fields"]["message"] == WARNING)
                .count();
            (reported > 0).then_some(reported)
        },
    )
    .await;
    let reported = logs
        .lines()
        .iter()
        .filter(|line| line["fields"]["message"] == WARNING)
        .count();
    assert_eq!(reported, 1, "one warning however many exports fail");
    let lines = logs.lines();
    let working = lines
        .iter()
        .find(|line| line["fields"]["message"] == "working")
        .expect("the work was logged");
    assert!(
        working["trace_id"]
            .as_str()
            .is_some_and(|id| id.len() == 32),
        "log lines carry their span's trace id: {working}"
    );
    installed.shutdown();
}
