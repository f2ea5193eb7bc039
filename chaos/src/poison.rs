//! Poison messages published straight to the order queue, bypassing products.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties,
    options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, ShortString},
};
use std::io::Write;

/// Each message orders must refuse and dead-letter after one delivery: its name, body,
/// content type, and what the reason orders gives must say.
fn poisons() -> Vec<(&'static str, Vec<u8>, &'static str, &'static str)> {
    let oversized = format!(
        "{{\"user_id\":\"{}\",\"pad\":\"{}\"}}",
        uuid::Uuid::new_v4(),
        "x".repeat(1 << 20)
    );
    vec![
        (
            "not-json",
            b"this is not json {".to_vec(),
            "application/json",
            "does not parse",
        ),
        (
            "missing-fields",
            br#"{"email":"nobody@example.com"}"#.to_vec(),
            "application/json",
            "does not parse",
        ),
        (
            "oversized",
            oversized.into_bytes(),
            "application/json",
            "does not parse",
        ),
        (
            "wrong-content-type",
            b"<order><user>x</user></order>".to_vec(),
            "application/xml",
            "content_type",
        ),
    ]
}

async fn dead_letters(channel: &Channel, dlq: &str) -> anyhow::Result<u32> {
    let queue = channel
        .queue_declare(
            dlq.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("inspect {dlq}"))?;
    Ok(queue.message_count())
}

/// Publishes the poisons to `queue`, then waits until `<queue>.dlq` has gained exactly as many,
/// and reads them back: each must say why it was refused, and carry an `x-delivery-count` of 0
/// or none (the quorum queue's count of the times it handed the message out before).
/// Each poison has a `reply_to`, so that what refuses it is its body or content type.
pub async fn run(amqp: &str, queue: &str, wait_secs: u64) -> anyhow::Result<bool> {
    crate::require_loopback("--amqp", amqp)?;
    let connection = Connection::connect(amqp, ConnectionProperties::default())
        .await
        .context("connect to RabbitMQ")?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let reply_to = common::amqp::declare_reply_queue(&channel)
        .await
        .context("declare a reply queue")?;
    let dlq = format!("{queue}.dlq");
    let before = dead_letters(&channel, &dlq).await?;
    let poisons = poisons();
    for (name, body, content_type, _) in &poisons {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type((*content_type).into())
            .with_type("order.create.v1".into())
            .with_message_id(format!("chaos-poison-{name}").into())
            .with_correlation_id(uuid::Uuid::new_v4().to_string().into())
            .with_reply_to(reply_to.clone());
        let confirm = channel
            .basic_publish(
                ShortString::default(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                body,
                properties,
            )
            .await?
            .await?;
        if !matches!(confirm, Confirmation::Ack(None)) {
            bail!("the broker did not accept poison {name} into {queue}: {confirm:?}");
        }
        tracing::info!(poison = name, bytes = body.len(), "published");
    }
    let sent = u32::try_from(poisons.len())?;
    let deadline = Instant::now() + Duration::from_secs(wait_secs);
    let mut landed = dead_letters(&channel, &dlq).await? - before;
    while landed < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        landed = dead_letters(&channel, &dlq).await?.saturating_sub(before);
    }
    // A poison redelivered instead of dead-lettered at once would show here as an extra.
    tokio::time::sleep(Duration::from_secs(2)).await;
    landed = dead_letters(&channel, &dlq).await?.saturating_sub(before);
    let (mut first_delivery, mut explained) = (0u32, 0u32);
    while let Some(message) = channel
        .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: true })
        .await?
    {
        let properties = &message.delivery.properties;
        let id = properties.message_id().as_ref().map(ShortString::as_str);
        let Some((name, .., expected)) = poisons
            .iter()
            .find(|p| Some(format!("chaos-poison-{}", p.0).as_str()) == id)
        else {
            continue;
        };
        let headers = properties.headers().clone().unwrap_or_default();
        let reason = match headers.inner().get(common::amqp::HEADER_DEAD_LETTER_REASON) {
            Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            _ => String::new(),
        };
        // Copied from the delivery orders received; the queue counts returns in it from 0.
        let returned = match headers.inner().get("x-delivery-count") {
            None => 0,
            Some(AMQPValue::LongLongInt(n)) => *n,
            Some(AMQPValue::LongInt(n)) => i64::from(*n),
            Some(AMQPValue::LongUInt(n)) => i64::from(*n),
            Some(AMQPValue::ShortInt(n)) => i64::from(*n),
            Some(AMQPValue::ShortUInt(n)) => i64::from(*n),
            Some(other) => bail!("x-delivery-count is {other:?}"),
        };
        let redelivered = returned > 0;
        tracing::info!(poison = name, %reason, returned, "dead letter");
        explained += u32::from(reason.contains(expected));
        first_delivery += u32::from(!redelivered);
    }
    let _ = connection.close(200, "done".into()).await;
    writeln!(
        std::io::stdout().lock(),
        "poison sent={sent} dead_lettered={landed} first_delivery={first_delivery} explained={explained}"
    )?;
    Ok(landed == sent && first_delivery == sent && explained == sent)
}
