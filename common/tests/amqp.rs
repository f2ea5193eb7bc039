//! The AMQP layer against the real RabbitMQ: every test has queues of its own.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    amqp::{
        Broker, CallOptions, DELIVERY_LIMIT, HEADER_DEAD_LETTER_REASON, HEADER_DEADLINE_MS,
        HEADER_REQUEST_ID, Incoming, Outcome, ReplyMode, RpcClient, RpcError, dead_letter_queue,
        declare_event_queue, declare_events_exchange,
    },
    testing::{consume_without_acks, unique_queue, wait_until},
};
use futures::{StreamExt, future::join_all};
use lapin::{
    BasicProperties,
    options::{BasicPublishOptions, ExchangeDeleteOptions},
    types::ShortString,
};
use support::{Echo, EchoReply, Raw, Seen, Server, connected_broker, echo_server, serve_with};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const PATIENT: Duration = Duration::from_secs(10);
const BOTH_MODES: [ReplyMode; 2] = [ReplyMode::PerRequest, ReplyMode::Direct];

fn client(broker: &Broker, queue: &str, mode: ReplyMode, timeout: Duration) -> RpcClient<Echo> {
    RpcClient::new(broker.clone(), queue, mode, timeout)
}

async fn echo(client: &RpcClient<Echo>, n: u32) -> Result<EchoReply, RpcError> {
    client.call(&Echo { n }, CallOptions::default()).await
}

#[tokio::test]
async fn the_broker_reports_connected_once_it_reaches_rabbitmq() {
    let (broker, _shutdown) = connected_broker().await;

    assert!(broker.is_connected());
    assert!(broker.connection().is_some());
}

#[tokio::test]
async fn a_broker_that_cannot_reach_rabbitmq_fails_calls_at_once() {
    // Nothing listens on port 1; the 30 s timeout shows the call did not wait for a reply.
    let broker = Broker::start(
        "amqp://guest:guest@127.0.0.1:1/%2f",
        CancellationToken::new(),
    );
    let client = client(
        &broker,
        "nowhere",
        ReplyMode::Direct,
        Duration::from_secs(30),
    );

    let result = echo(&client, 1).await;

    assert!(!broker.is_connected());
    assert!(
        matches!(result, Err(RpcError::Unavailable(_))),
        "{result:?}"
    );
}

async fn round_trip(mode: ReplyMode) {
    let (broker, _shutdown) = connected_broker().await;
    let raw = Raw::connect().await;
    let queue = unique_queue("test.rpc");
    raw.declare_work_queue(&queue).await;
    let seen = Seen::default();
    let _server = echo_server(&broker, &queue, 8, seen.clone());
    let client = client(&broker, &queue, mode, PATIENT);

    let reply = echo(&client, 42).await.expect("a reply");

    assert_eq!(reply, EchoReply { n: 42 });
    assert_eq!(*seen.lock().unwrap(), vec![(42, false)]);
    raw.delete_work_queue(&queue).await;
}

#[tokio::test]
async fn a_call_round_trips_with_a_reply_queue_per_request() {
    round_trip(ReplyMode::PerRequest).await;
}

#[tokio::test]
async fn a_call_round_trips_over_direct_reply_to() {
    round_trip(ReplyMode::Direct).await;
}

async fn many_concurrent_calls(mode: ReplyMode) {
    let (broker, _shutdown) = connected_broker().await;
    let raw = Raw::connect().await;
    let queue = unique_queue("test.rpc");
    raw.declare_work_queue(&queue).await;
    let _server = echo_server(&broker, &queue, 32, Seen::default());
    let client = client(&broker, &queue, mode, PATIENT);

    let replies = join_all((1..=200).map(|n| {
        let client = client.clone();
        async move { (n, echo(&client, n).await) }
    }))
    .await;

    for (n, reply) in replies {
        assert_eq!(reply.expect("a reply"), EchoReply { n });
    }
    raw.delete_work_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_calls_each_get_their_own_reply_per_request() {
    many_concurrent_calls(ReplyMode::PerRequest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_calls_each_get_their_own_reply_over_direct_reply_to() {
    many_concurrent_calls(ReplyMode::Direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reply_queue_is_left_behind_by_answered_or_timed_out_calls() {
    let (broker, _shutdown) = connected_broker().await;
    let raw = Raw::connect().await;
    let queue = unique_queue("test.rpc");
    raw.declare_work_queue(&queue).await;
    // The responder answers everything but n == 0, and reports each request's reply_to.
    let mut requests = raw.respond(&queue).await;
    let client = client(
        &broker,
        &queue,
        ReplyMode::PerRequest,
        Duration::from_secs(2),
    );

    let results = join_all((0..50).map(|n| {
        let client = client.clone();
        async move { echo(&client, n).await }
    }))
    .await;

    assert!(matches!(results[0], Err(RpcError::Timeout(_))));
    assert!(results[1..].iter().all(Result::is_ok));
    let mut reply_queues = Vec::new();
    while let Ok(request) = requests.try_recv() {
        reply_queues.push(request.reply_to().clone().expect("reply_to").to_string());
    }
    assert_eq!(reply_queues.len(), 50);
    for name in &reply_queues {
        assert!(name.starts_with("amq.gen-"), "{name}");
        // The timed-out call's queue is deleted in the background, hence the wait.
        wait_until(PATIENT, "the reply queue to be deleted", || async {
            (!raw.exists(name).await).then_some(())
        })
        .await;
    }
    raw.delete_work_queue(&queue).await;
}

#[tokio::test]
async fn a_call_to_a_queue_that_does_not_exist_is_unavailable() {
    let (broker, _shutdown) = connected_broker().await;
    let queue = unique_queue("test.missing");

    for mode in BOTH_MODES {
        // A 30 s timeout: Unavailable (not Timeout) shows the return was noticed at once.
        let client = client(&broker, &queue, mode, Duration::from_secs(30));
        let result = echo(&client, 1).await;
        assert!(
            matches!(result, Err(RpcError::Unavailable(_))),
            "{mode:?}: {result:?}"
        );
    }
}

#[tokio::test]
async fn a_call_nobody_answers_times_out_after_the_timeout() {
    let (broker, _shutdown) = connected_broker().await;
    let raw = Raw::connect().await;
    let queue = unique_queue("test.rpc");
    raw.declare_work_queue(&queue).await;
    let timeout = Duration::from_millis(500);

    for mode in BOTH_MODES {
        let client = client(&broker, &queue, mode, timeout);
        let started = Instant::now();
        let result = echo(&client, 1).await;
        let waited = started.elapsed();

        assert!(
            matches!(result, Err(RpcError::Timeout(t)) if t == timeout),
            "{mode:?}: {result:?}"
        );
        assert!(
            waited < timeout + Duration::from_secs(1),
            "{mode:?}: {waited:?}"
        );
    }
    raw.delete_work_queue(&queue).await;
}

#[tokio::test]
async fn unreadable_messages_are_dead_lettered_and_the_server_carries_on() {
    let (broker, _shutdown) = connected_broker().await;
    let raw = Raw::connect().await;
    let queue = unique_queue("test.rpc");
    raw.declare_work_queue(&queue).await;
    let seen = Seen::default();
    let _server = echo_server(&broker, &queue, 4, seen.clone());
    let (_replies, reply_to) = raw.reply_queue().await;

    let props = support::request_properties("c-1", &reply_to);
    raw.publish(&queue, b"this is not json", props.clone())
        .await;
    raw.publish(&queue, br#"{"n": 1, "extra": true}"#, props.clone())
        .await;
    raw.publish(
        &queue,
        br#"{"n": 1}"#,
        props.clone().with_type("other.v1".into()),
    )
    .await;
    raw.publish(
        &queue,
        br#"{"n": 1}"#,
        props.with_content_type("text/plain".into()),
    )
    .await;

    let dlq = dead_letter_queue(&queue);
    wait_until(
        PATIENT,
        "four messages in the dead-letter queue",
        || async { (raw.message_count(&dlq).await == 4).then_some(()) },
    )
    .await;
    let client = client(&broker, &queue, ReplyMode::Direct, PATIENT);
    assert_eq!(echo(&client, 7).await.expect("a reply"), EchoReply { n: 7 });
    assert_eq!(*seen.lock().unwrap(), vec![(7, false)]);
    assert_eq!(raw.message_count(&queue).await, 0);
    raw.delete_work_queue(&queue).await;
}

#[tokio::test]
async fn a_dead_letter_says_why_keeps_its_request_and_does_not_expire() {
    let (broker, _shutdown) = connected_broker().await;
    let raw = Raw::connect().await;
    let queue = unique_queue("test.rpc");
    raw.declare_work_queue(&queue).await;
    let _server = echo_server(&broker, &queue, 4, Seen::default());
    let (_replies, reply_to) = raw.reply_queue().await;

    let props = support::request_properties("c-dead", &reply_to)
        .with_message_id("m-dead".into())
        .with_expiration("60000".into());
    raw.publish(&queue, b"{not json", props).await;

    let dlq: ShortString = dead_letter_queue(&queue).into();
    let channel = raw.channel().await;
    let dead = wait_until(PATIENT, "the dead letter", || Raw::get(&channel, &dlq)).await;
    assert_eq!(dead.data, b"{not json");
    let p = &dead.properties;
    assert_eq!(p.message_id().as_ref().unwrap().as_str(), "m-dead");
    assert_eq!(p.correlation_id().as_ref().unwrap().as_str(), "c-dead");
    assert_eq!(p.delivery_mode(), &Some(2));
    assert!(
        p.expiration()
            .as_ref()
            .is_none_or(|e| e.as_str().is_empty()),
        "a dead letter must not expire: {:?}",
        p.expiration()
    );
    let reason = support::header_str(p, HEADER_DEAD_LETTER_REASON).expect("a reason");
    assert!(reason.contains("does not parse"), "{reason}");
    assert_eq!(raw.message_count(&queue).await, 0);
    raw.delete_work_queue(&queue).await;
}

#[tokio::test]
async fn a_request_that_expires_in_the_queue_is_dropped_and_not_dead_lettered() {
    let raw = Raw::connect().await;
    let queue = unique_queue("test.rpc");
    raw.declare_work_queue(&queue).await;
    let (_replies, reply_to) = raw.reply_queue().await;
    // Nobody consumes: the request waits until its caller would have given up.
    let props = support::request_properties("c-late", &reply_to).with_expiration("50".into());
    raw.publish(&queue, br#"{"n": 1}"#, props).await;

    wait_until(PATIENT, "the request to expire", || async {
        (raw.message_count(&queue).await == 0).then_some(())
    })
    .await;
    assert_eq!(raw.message_count(&dead_letter_queue(&queue)).await, 0);
    raw.delete_work_queue(&queue).await;
}

#[tokio::test]
async fn a_request_returned_to_the_queue_too_often_is_dead_lettered_without_being_handled() {
    let raw = Raw::connect().await;
    let queue = unique_queue("test.rpc");
    raw.declare_work_queue(&queue).await;
    let (_replies, reply_to) = raw.reply_queue().await;
    raw.publish(
        &queue,
        br#"{"n": 9}"#,
        support::request_properties("c-loop", &reply_to),
    )
    .await;
    // As if it had crashed DELIVERY_LIMIT consumers: taken and returned unsettled each time.
    let channel = raw.channel().await;
    let name: ShortString = queue.as_str().into();
    for _ in 0..DELIVERY_LIMIT {
        let taken = wait_until(PATIENT, "the request", || async {
            channel
                .basic_get(
                    name.clone(),
                    lapin::options::BasicGetOptions { no_ack: false },
                )
                .await
                .expect("basic.get")
        })
        .await;
        taken
            .delivery
            .acker
            .nack(lapin::options::BasicNackOptions {
                requeue: true,
                multiple: false,
            })
            .await
            .expect("nack");
    }

    let (broker, _shutdown) = connected_broker().await;
    let seen = Seen::default();
    let _server = echo_server(&broker, &queue, 4, seen.clone());
    let dlq = dead_letter_queue(&queue);
    wait_until(PATIENT, "the request in the dead-letter queue", || async {
        (raw.message_count(&dlq).await == 1).then_some(())
    })
    .await;
    assert!(seen.lock().unwrap().is_empty(), "the handler must not run");
    assert_eq!(raw.message_count(&queue).await, 0);
    raw.delete_work_queue(&queue).await;
}

#[tokio::test]
async fn a_request_past_its_deadline_is_dropped_without_being_handled() {
    let (broker, _shutdown) = connected_broker().await;
    let raw = Raw::connect().await;
    let queue = unique_queue("test.rpc");
    raw.declare_work_queue(&queue).await;
    let (replies, reply_to) = raw.reply_queue().await;
    let mut headers = lapin::types::FieldTable::default();
    let a_second_ago = chrono::Utc::now().timestamp_millis() - 1000;
    headers.insert(
        HEADER_DEADLINE_MS.into(),
        lapin::types::AMQPValue::LongLongInt(a_second_ago),
    );
    raw.publish(
        &queue,
        br#"{"n": 1}"#,
        support::request_properties("late", &reply_to).with_headers(headers),
    )
    .await;
    // Prefetch 1: the stale request is settled before the next one is even delivered.
    let seen = Seen::default();
    let _server = echo_server(&broker, &queue, 1, seen.clone());
    let client = client(&broker, &queue, ReplyMode::Direct, PATIENT);

    assert_eq!(echo(&client, 2).await.expect("a reply"), EchoReply { n: 2 });

    assert_eq!(*seen.lock().unwrap(), vec![(2, false)]);
    assert!(
        Raw::get(&replies, &reply_to).await.is_none(),
        "no reply to the stale request"
    );
    assert_eq!(raw.message_count(&queue).await, 0);
    assert_eq!(raw.message_count(&dead_letter_queue(&queue)).await, 0);
    raw.delete_work_queue(&queue).await;
}

/// A handler that asks to retry its first `failures` attempts of every request, then echoes.
fn flaky_server(
    broker: &Broker,
    queue: &str,
    prefetch: u16,
    failures: usize,
    seen: Seen,
) -> Server {
    serve_with(broker, queue, prefetch, move |incoming: Incoming<Echo>| {
        let seen = seen.clone();
        async move {
            let attempts = {
                let mut seen = seen.lock().unwrap();
                seen.push((incoming.request.n, incoming.redelivered));
                seen.iter()
                    .filter(|(n, _)| *n == incoming.request.n)
                    .count()
            };
            if attempts <= failures {
                Outcome::Retry(anyhow::anyhow!("the database is down"))
            } else {
                Outcome::Reply(EchoReply {
                    n: incoming.request.n,
                })
            }
        }
    })
}

#[tokio::test]
async fn a_request_retried_more_often_than_the_delivery_limit_is_answered_without_redelivery() {
    let (broker, _shutdown) = connected_broker().await;
    let raw = Raw::connect().await;
    let queue = unique_queue("test.rpc");
    raw.declare_work_queue(&queue).await;
    let failures = usize::try_from(DELIVERY_LIMIT).unwrap() + 1;
    let seen = Seen::default();
    let _server = flaky_server(&broker, &queue, 4, failures, seen.clone());
    // The pauses between attempts add up to about eleven seconds.
    let client = client(&broker, &queue, ReplyMode::PerRequest, 3 * PATIENT);

    assert_eq!(echo(&client, 5).await.expect("a reply"), EchoReply { n: 5 });

    assert_eq!(*seen.lock().unwrap(), vec![(5, false); failures + 1]);
    assert_eq!(raw.message_count(&dead_letter_queue(&queue)).await, 0);
    assert_eq!(raw.message_count(&queue).await, 0);
    raw.delete_work_queue(&queue).await;
}

#[tokio::test]
async fn a_request_still_retried_at_its_deadline_is_dropped_unanswered() {
    let (broker, _shutdown) = connected_broker().await;
    let raw = Raw::connect().await;
    let queue = unique_queue("test.rpc");
    raw.declare_work_queue(&queue).await;
    let (replies, reply_to) = raw.reply_queue().await;
    let mut headers = lapin::types::FieldTable::default();
    let in_a_second = chrono::Utc::now().timestamp_millis() + 1000;
    headers.insert(
        HEADER_DEADLINE_MS.into(),
        lapin::types::AMQPValue::LongLongInt(in_a_second),
    );
    raw.publish(
        &queue,
        br#"{"n": 1}"#,
        support::request_properties("doomed", &reply_to).with_headers(headers),
    )
    .await;
    let seen = Seen::default();
    let log = seen.clone();
    // Prefetch 1: the next request is delivered only once the doomed one is settled.
    let _server = serve_with(&broker, &queue, 1, move |incoming: Incoming<Echo>| {
        let log = log.clone();
        async move {
            let n = incoming.request.n;
            log.lock().unwrap().push((n, incoming.redelivered));
            if n == 1 {
                Outcome::Retry(anyhow::anyhow!("the database is down"))
            } else {
                Outcome::Reply(EchoReply { n })
            }
        }
    });
    let client = client(&broker, &queue, ReplyMode::Direct, PATIENT);

    assert_eq!(echo(&client, 2).await.expect("a reply"), EchoReply { n: 2 });

    let tries = seen.lock().unwrap().clone();
    let (last, doomed) = tries.split_last().unwrap();
    assert_eq!(*last, (2, false));
    assert!(doomed.len() >= 2, "retried before its deadline: {tries:?}");
    assert!(doomed.iter().all(|&try_| try_ == (1, false)), "{tries:?}");
    assert!(
        Raw::get(&replies, &reply_to).await.is_none(),
        "no reply to the request that ran out of time"
    );
    assert_eq!(raw.message_count(&queue).await, 0);
    assert_eq!(raw.message_count(&dead_letter_queue(&queue)).await, 0);
    raw.delete_work_queue(&queue).await;
}

#[tokio::test]
async fn a_request_being_retried_at_shutdown_is_requeued_for_another_consumer() {
    let (broker, _shutdown) = connected_broker().await;
    let raw = Raw::connect().await;
    let queue = unique_queue("test.rpc");
    raw.declare_work_queue(&queue).await;
    let failing = Seen::default();
    let first = flaky_server(&broker, &queue, 4, usize::MAX, failing.clone());
    let client = client(&broker, &queue, ReplyMode::PerRequest, 3 * PATIENT);
    let call = tokio::spawn(async move { echo(&client, 9).await });
    wait_until(PATIENT, "the request to be retried", || async {
        (failing.lock().unwrap().len() >= 2).then_some(())
    })
    .await;

    first.shutdown.cancel();
    tokio::time::timeout(PATIENT, first.handle)
        .await
        .expect("serve returns soon after shutdown")
        .unwrap()
        .expect("serve returns Ok");
    let seen = Seen::default();
    let _second = echo_server(&broker, &queue, 4, seen.clone());

    assert_eq!(call.await.unwrap().expect("a reply"), EchoReply { n: 9 });
    assert_eq!(*seen.lock().unwrap(), vec![(9, true)]);
    assert_eq!(raw.message_count(&dead_letter_queue(&queue)).await, 0);
    raw.delete_work_queue(&queue).await;
}

#[tokio::test]
async fn a_request_in_progress_at_shutdown_is_still_answered() {
    let (broker, _shutdown) = connected_broker().await;
    let raw = Raw::connect().await;
    let queue = unique_queue("test.rpc");
    raw.declare_work_queue(&queue).await;
    let started = Arc::new(AtomicBool::new(false));
    let release = Arc::new(tokio::sync::Notify::new());
    let (flag, gate) = (started.clone(), release.clone());
    let server = serve_with(&broker, &queue, 4, move |incoming: Incoming<Echo>| {
        let (flag, gate) = (flag.clone(), gate.clone());
        async move {
            flag.store(true, Ordering::SeqCst);
            gate.notified().await;
            Outcome::Reply(EchoReply {
                n: incoming.request.n,
            })
        }
    });
    let client = client(&broker, &queue, ReplyMode::Direct, PATIENT);
    let call = tokio::spawn(async move { echo(&client, 3).await });
    wait_until(PATIENT, "the handler to start", || async {
        started.load(Ordering::SeqCst).then_some(())
    })
    .await;

    server.shutdown.cancel();
    release.notify_one();

    assert_eq!(call.await.unwrap().expect("a reply"), EchoReply { n: 3 });
    let stopped = tokio::time::timeout(PATIENT, server.handle)
        .await
        .expect("serve returns after shutdown");
    stopped.unwrap().expect("serve returns Ok");
    // RabbitMQ drops a quorum queue's consumer asynchronously after the channel closes.
    wait_until(PATIENT, "the consumer to be gone", || async {
        (raw.consumer_count(&queue).await == 0).then_some(())
    })
    .await;
    raw.delete_work_queue(&queue).await;
}

#[tokio::test]
async fn a_request_carries_the_documented_properties() {
    let (broker, _shutdown) = connected_broker().await;
    let raw = Raw::connect().await;
    let queue = unique_queue("test.rpc");
    raw.declare_work_queue(&queue).await;
    let mut requests = raw.respond(&queue).await;
    let timeout = Duration::from_secs(3);

    for (mode, reply_to_prefix) in [
        (ReplyMode::PerRequest, "amq.gen-"),
        (ReplyMode::Direct, "amq.rabbitmq.reply-to"),
    ] {
        let client = client(&broker, &queue, mode, timeout);
        let sent_at = chrono::Utc::now().timestamp_millis();
        let opts = CallOptions {
            message_id: Some("msg-1".into()),
            request_id: Some("req-1".into()),
        };
        client.call(&Echo { n: 9 }, opts).await.expect("a reply");
        let p = requests.recv().await.expect("the request");

        assert_eq!(*p.delivery_mode(), Some(2));
        assert_eq!(
            p.content_type().as_ref().unwrap().as_str(),
            "application/json"
        );
        assert_eq!(p.kind().as_ref().unwrap().as_str(), "test.echo.v1");
        assert_eq!(p.message_id().as_ref().unwrap().as_str(), "msg-1");
        let correlation_id = p.correlation_id().as_ref().unwrap().as_str();
        assert_eq!(
            Uuid::parse_str(correlation_id).unwrap().get_version_num(),
            4
        );
        let reply_to = p.reply_to().as_ref().unwrap().as_str();
        assert!(reply_to.starts_with(reply_to_prefix), "{reply_to}");
        assert_eq!(p.expiration().as_ref().unwrap().as_str(), "3000");
        assert!(p.timestamp().is_some());
        assert_eq!(
            support::header_str(&p, HEADER_REQUEST_ID).as_deref(),
            Some("req-1")
        );
        let deadline = support::header_i64(&p, HEADER_DEADLINE_MS).expect("a deadline");
        assert!(
            (sent_at + 3000..sent_at + 4000).contains(&deadline),
            "{deadline}"
        );
    }
    raw.delete_work_queue(&queue).await;
}

#[tokio::test]
async fn a_reply_carries_the_request_correlation_id_and_a_reply_type() {
    let (broker, _shutdown) = connected_broker().await;
    let raw = Raw::connect().await;
    let queue = unique_queue("test.rpc");
    raw.declare_work_queue(&queue).await;
    let _server = echo_server(&broker, &queue, 4, Seen::default());
    let (replies, reply_to) = raw.reply_queue().await;

    raw.publish(
        &queue,
        br#"{"n": 11}"#,
        support::request_properties("corr-11", &reply_to),
    )
    .await;

    let reply = wait_until(PATIENT, "the reply", || async {
        Raw::get(&replies, &reply_to).await
    })
    .await;
    let p = &reply.properties;
    assert_eq!(p.correlation_id().as_ref().unwrap().as_str(), "corr-11");
    assert_eq!(p.kind().as_ref().unwrap().as_str(), "test.echo.v1.reply");
    assert_eq!(
        p.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    let body: EchoReply = serde_json::from_slice(&reply.data).unwrap();
    assert_eq!(body, EchoReply { n: 11 });
    raw.delete_work_queue(&queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_work_again_after_the_connection_is_lost() {
    let (broker, _shutdown) = connected_broker().await;
    let raw = Raw::connect().await;
    let queue = unique_queue("test.rpc");
    raw.declare_work_queue(&queue).await;
    let _server = echo_server(&broker, &queue, 8, Seen::default());
    let clients = BOTH_MODES.map(|mode| client(&broker, &queue, mode, PATIENT));
    for client in &clients {
        echo(client, 1).await.expect("a reply before the loss");
    }

    // Closing our own connection looks to the supervisor like any other loss, and leaves the
    // broker (shared with other tests) alone.
    let lost = broker.connection().expect("connected");
    lost.close(200, "test: drop the connection".into())
        .await
        .expect("close");
    wait_until(PATIENT, "a new connection", || async {
        broker.connection().filter(|c| !Arc::ptr_eq(c, &lost))
    })
    .await;

    assert!(broker.is_connected());
    for client in &clients {
        assert_eq!(
            echo(client, 2).await.expect("a reply after the loss"),
            EchoReply { n: 2 }
        );
    }
    wait_until(PATIENT, "the server to consume again", || async {
        (raw.consumer_count(&queue).await == 1).then_some(())
    })
    .await;
    raw.delete_work_queue(&queue).await;
}

#[tokio::test]
async fn serve_gives_up_when_the_queue_exists_with_other_arguments() {
    let (broker, _shutdown) = connected_broker().await;
    let raw = Raw::connect().await;
    let queue = unique_queue("test.rpc");
    raw.channel()
        .await
        .queue_declare(
            queue.as_str().into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("declare a classic queue");

    let server = echo_server(&broker, &queue, 4, Seen::default());
    let result = tokio::time::timeout(PATIENT, server.handle)
        .await
        .expect("serve gives up instead of retrying forever")
        .unwrap();

    let error = format!("{:#}", result.expect_err("an error"));
    assert!(error.contains("PRECONDITION_FAILED"), "{error}");
    raw.delete_work_queue(&queue).await;
}

#[tokio::test]
async fn closing_the_broker_returns_even_when_rabbitmq_stops_answering() {
    common::testing::require_broker().await;
    let relay = common::testing::FaultRelay::in_front_of(&common::testing::amqp_url())
        .await
        .expect("start the relay");
    let shutdown = CancellationToken::new();
    let broker = Broker::start(
        relay.url_for(&common::testing::amqp_url()),
        shutdown.clone(),
    );
    assert!(broker.wait_connected(Duration::from_secs(10)).await);
    relay.set(common::testing::RelayMode::Frozen);
    shutdown.cancel();
    let started = std::time::Instant::now();
    tokio::time::timeout(
        common::amqp::CLOSE_TIMEOUT + Duration::from_secs(2),
        broker.close(),
    )
    .await
    .expect("Broker::close must give up on a silent broker");
    assert!(started.elapsed() >= common::amqp::CLOSE_TIMEOUT - Duration::from_millis(100));
}

#[tokio::test]
async fn an_event_queue_receives_the_events_of_its_routing_keys_only() {
    let raw = Raw::connect().await;
    let channel = raw.channel().await;
    let queue = unique_queue("test.events");
    let exchange = format!("{queue}.exchange");

    // Twice: every (re)subscription declares again, and that must change nothing.
    for _ in 0..2 {
        declare_events_exchange(&channel, &exchange)
            .await
            .expect("declare the exchange");
        declare_event_queue(&channel, &exchange, &queue, &["order.created.v1"])
            .await
            .expect("declare and bind the queue");
    }
    for key in ["order.created.v1", "order.cancelled.v1", "order.created.v2"] {
        channel
            .basic_publish(
                exchange.as_str().into(),
                key.into(),
                BasicPublishOptions::default(),
                key.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .expect("publish")
            .await
            .expect("sent");
    }

    let mut deliveries = consume_without_acks(&channel, &queue).await;
    let first = tokio::time::timeout(PATIENT, deliveries.next())
        .await
        .expect("the bound event arrives")
        .expect("a delivery")
        .expect("not an error");
    assert_eq!(first.data, b"order.created.v1");
    let more = tokio::time::timeout(Duration::from_millis(300), deliveries.next()).await;
    assert!(
        more.is_err(),
        "only the bound routing key arrives: {more:?}"
    );

    raw.delete_work_queue(&queue).await;
    channel
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .expect("delete the exchange");
}
