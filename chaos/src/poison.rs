//! Poison messages published straight to the order queue, bypassing products.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties,
    options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::{FieldTable, ShortString},
};
use std::io::Write;

/// Each message orders must refuse and dead-letter after one delivery.
fn poisons() -> Vec<(&'static str, Vec<u8>, &'static str)> {
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
        ),
        (
            "missing-fields",
            br#"{"email":"nobody@example.com"}"#.to_vec(),
            "application/json",
        ),
        ("oversized", oversized.into_bytes(), "application/json"),
        (
            "wrong-content-type",
            b"<order><user>x</user></order>".to_vec(),
            "application/xml",
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

/// Publishes the poisons to `queue`, then waits until `<queue>.dlq` has gained exactly as many.
pub async fn run(amqp: &str, queue: &str, wait_secs: u64) -> anyhow::Result<bool> {
    crate::require_loopback("--amqp", amqp)?;
    let connection = Connection::connect(amqp, ConnectionProperties::default())
        .await
        .context("connect to RabbitMQ")?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let dlq = format!("{queue}.dlq");
    let before = dead_letters(&channel, &dlq).await?;
    let poisons = poisons();
    for (name, body, content_type) in &poisons {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type((*content_type).into())
            .with_type("order.create.v1".into())
            .with_message_id(format!("chaos-poison-{name}").into())
            .with_correlation_id(uuid::Uuid::new_v4().to_string().into());
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
    let _ = connection.close(200, "done".into()).await;
    writeln!(
        std::io::stdout().lock(),
        "poison sent={sent} dead_lettered={landed}"
    )?;
    Ok(landed == sent)
}
