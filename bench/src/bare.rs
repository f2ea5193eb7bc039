//! The bare harness: what one buy must do at the broker and the database, and nothing else.
//! A client publishes a small persistent request (confirmed, mandatory) to a quorum queue and
//! waits for the reply in either reply mode; a server in the same process consumes the queue
//! with orders' prefetch, runs one transaction per request on a pool of orders' size, publishes
//! the reply (confirmed) and acks. No HTTP, no JSON web layer, no tokens: the ceiling the buy
//! scenarios are held against.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};
use rand::Rng;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
    TransactionTrait, Value,
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// orders' default `ORDER_PREFETCH`.
const PREFETCH: u16 = 32;
/// orders' default `DB_MAX_CONNECTIONS`.
const POOL_SIZE: u32 = 10;
/// Like products' `RPC_TIMEOUT_MS` default: how long a call waits, and the request's expiration.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Like the services' RPC client: per-request reply queues are spread over this many channels,
/// since RabbitMQ handles one channel's declares and deletes one at a time.
const REPLY_CHANNELS: usize = 8;
const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";
const MESSAGE_TYPE: &str = "bench.order.v1";

/// The tables orders writes a buy to, with the same keys, indexes and constraints as its
/// migration (the unique key that makes a retried buy one order, the index `GET /orders` reads,
/// the lines' key and foreign key), so the bound pays for what a buy must maintain.
const CREATE_TABLES: [&str; 4] = [
    "CREATE TABLE orders (id uuid PRIMARY KEY, user_id uuid NOT NULL, idempotency_key text \
     NOT NULL, total_cents bigint NOT NULL CHECK (total_cents >= 0), \
     created_at timestamptz NOT NULL DEFAULT now())",
    "CREATE UNIQUE INDEX orders_dedup ON orders (user_id, idempotency_key)",
    "CREATE INDEX orders_by_user ON orders (user_id, created_at DESC, id DESC)",
    "CREATE TABLE order_lines (order_id uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE, \
     line_no int NOT NULL, product_id uuid NOT NULL, name text NOT NULL, \
     unit_price_cents bigint NOT NULL CHECK (unit_price_cents >= 0), \
     quantity int NOT NULL CHECK (quantity BETWEEN 1 AND 1000), \
     line_total_cents bigint NOT NULL, PRIMARY KEY (order_id, line_no))",
];

const INSERT_ORDER: &str =
    "INSERT INTO orders (id, user_id, idempotency_key, total_cents) VALUES ($1, $2, $3, $4)";

/// One statement for all of an order's lines, as orders does, for 1, 2 or 3 lines.
const INSERT_LINES: [&str; 3] = [
    "INSERT INTO order_lines (order_id, line_no, product_id, name, unit_price_cents, quantity, \
     line_total_cents) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    "INSERT INTO order_lines (order_id, line_no, product_id, name, unit_price_cents, quantity, \
     line_total_cents) VALUES ($1, $2, $3, $4, $5, $6, $7), ($8, $9, $10, $11, $12, $13, $14)",
    "INSERT INTO order_lines (order_id, line_no, product_id, name, unit_price_cents, quantity, \
     line_total_cents) VALUES ($1, $2, $3, $4, $5, $6, $7), ($8, $9, $10, $11, $12, $13, $14), \
     ($15, $16, $17, $18, $19, $20, $21)",
];

/// The request: about what products sends orders for a buy.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    user_id: Uuid,
    email: String,
    idempotency_key: Uuid,
    lines: Vec<Line>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    product_id: Uuid,
    name: String,
    unit_price_cents: i64,
    quantity: i32,
}

#[derive(Debug, Serialize)]
struct Reply {
    id: Uuid,
    total_cents: i64,
}

/// Creates the two tables the server writes to.
pub async fn prepare_database(url: &str) -> anyhow::Result<()> {
    let db = Database::connect(url)
        .await
        .context("connect to the bare database")?;
    for statement in CREATE_TABLES {
        db.execute_unprepared(statement)
            .await
            .context("create the bare tables")?;
    }
    let _ = db.close().await;
    Ok(())
}

/// The server side, running until [`Server::stop`].
pub struct Server {
    stop: CancellationToken,
    task: JoinHandle<()>,
    connection: Connection,
    db: DatabaseConnection,
}

impl Server {
    /// Declares `queue` as the services declare theirs and starts consuming it.
    pub async fn start(amqp_url: &str, queue: &str, db_url: &str) -> anyhow::Result<Self> {
        let mut options = ConnectOptions::new(db_url.to_owned());
        options
            .max_connections(POOL_SIZE)
            .min_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(3))
            .sqlx_logging(false);
        let db = Database::connect(options)
            .await
            .context("open the bare pool")?;
        let connection = Connection::connect(amqp_url, ConnectionProperties::default())
            .await
            .context("connect the bare server to RabbitMQ")?;
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions { global: false })
            .await?;
        common::amqp::declare_work_queue(&channel, queue).await?;
        let replies = connection.create_channel().await?;
        replies
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                ShortString::default(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .context("consume the bare queue")?;
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (db, stop) = (db.clone(), stop.clone());
            async move {
                let (db, replies) = (&db, &replies);
                consumer
                    .take_until(stop.cancelled_owned())
                    .for_each_concurrent(usize::from(PREFETCH), |delivery| async move {
                        match delivery {
                            Ok(delivery) => serve_one(delivery, db, replies).await,
                            Err(e) => tracing::warn!(error = %e, "bare consumer failed"),
                        }
                    })
                    .await;
                // Keeps the consumer channel open until the last delivery is settled.
                drop(channel);
            }
        });
        Ok(Self {
            stop,
            task,
            connection,
            db,
        })
    }

    pub async fn stop(self) {
        self.stop.cancel();
        if tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .is_err()
        {
            tracing::warn!("the bare server did not stop within 10 s");
        }
        let _ = self.connection.close(200, "done".into()).await;
        let _ = self.db.close().await;
    }
}

async fn serve_one(delivery: Delivery, db: &DatabaseConnection, replies: &Channel) {
    match handle(&delivery, db, replies).await {
        Ok(()) => {
            if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
                tracing::warn!(error = %e, "bare ack failed");
            }
        }
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "bare request failed");
            // Not requeued: a failure here is the harness's, and retrying would hide it in
            // the figures instead of counting it (its caller times out).
            let options = BasicNackOptions {
                requeue: false,
                multiple: false,
            };
            let _ = delivery.acker.nack(options).await;
        }
    }
}

async fn handle(
    delivery: &Delivery,
    db: &DatabaseConnection,
    replies: &Channel,
) -> anyhow::Result<()> {
    let request: Request = serde_json::from_slice(&delivery.data).context("parse")?;
    let (Some(reply_to), Some(correlation_id)) = (
        delivery.properties.reply_to(),
        delivery.properties.correlation_id(),
    ) else {
        anyhow::bail!("no reply_to or correlation_id");
    };
    let statement = INSERT_LINES
        .get(request.lines.len().wrapping_sub(1))
        .context("an order has 1-3 lines")?;
    let id = Uuid::now_v7();
    let total: i64 = request
        .lines
        .iter()
        .map(|l| l.unit_price_cents * i64::from(l.quantity))
        .sum();
    let mut values: Vec<Value> = Vec::with_capacity(7 * request.lines.len());
    for (line, line_no) in request.lines.iter().zip(1i32..) {
        values.extend([
            id.into(),
            line_no.into(),
            line.product_id.into(),
            line.name.as_str().into(),
            line.unit_price_cents.into(),
            line.quantity.into(),
            (line.unit_price_cents * i64::from(line.quantity)).into(),
        ]);
    }
    let txn = db.begin().await.context("begin")?;
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        INSERT_ORDER,
        [
            id.into(),
            request.user_id.into(),
            request.idempotency_key.to_string().into(),
            total.into(),
        ],
    ))
    .await
    .context("insert the order")?;
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        *statement,
        values,
    ))
    .await
    .context("insert the lines")?;
    txn.commit().await.context("commit")?;

    let body = serde_json::to_vec(&Reply {
        id,
        total_cents: total,
    })?;
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_correlation_id(correlation_id.clone())
        // Transient, as the services' replies: reply queues die with their client anyway.
        .with_delivery_mode(1);
    let confirmation = replies
        .basic_publish(
            ShortString::default(),
            reply_to.clone(),
            BasicPublishOptions::default(),
            &body,
            properties,
        )
        .await
        .context("publish the reply")?
        .await
        .context("confirm the reply")?;
    if matches!(confirmation, Confirmation::Nack(_)) {
        anyhow::bail!("the reply was nacked");
    }
    Ok(())
}

/// How the client gets its replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    PerRequest,
    Direct,
}

/// What a request is made of: a few buyers and a small catalog, invented.
struct Catalog {
    users: Vec<(Uuid, String)>,
    products: Vec<(Uuid, String, i64)>,
}

impl Catalog {
    fn new() -> Self {
        Self {
            users: (0..64)
                .map(|i| (Uuid::new_v4(), format!("bare-buyer-{i}@example.com")))
                .collect(),
            products: (0..20i64)
                .map(|i| (Uuid::new_v4(), format!("Bench product {i}"), 199 + 100 * i))
                .collect(),
        }
    }

    fn request(&self, rng: &mut impl Rng) -> Request {
        let (user_id, email) = &self.users[rng.random_range(0..self.users.len())];
        let n = rng.random_range(1..=3usize);
        let lines = rand::seq::index::sample(rng, self.products.len(), n)
            .into_iter()
            .map(|i| {
                let (product_id, name, price) = &self.products[i];
                Line {
                    product_id: *product_id,
                    name: name.clone(),
                    unit_price_cents: *price,
                    quantity: rng.random_range(1..=3),
                }
            })
            .collect();
        Request {
            user_id: *user_id,
            email: email.clone(),
            idempotency_key: Uuid::new_v4(),
            lines,
        }
    }
}

/// The client side, shared by the workers of a point.
pub struct Client {
    connection: Connection,
    publisher: Channel,
    queue: ShortString,
    catalog: Catalog,
    kind: ClientKind,
}

enum ClientKind {
    PerRequest {
        replies: Vec<Channel>,
        next: AtomicUsize,
    },
    Direct {
        waiting: Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>,
        dispatcher: JoinHandle<()>,
    },
}

impl Client {
    pub async fn connect(amqp_url: &str, queue: &str, mode: Mode) -> anyhow::Result<Self> {
        let connection = Connection::connect(amqp_url, ConnectionProperties::default())
            .await
            .context("connect the bare client to RabbitMQ")?;
        let publisher = connection.create_channel().await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let kind = match mode {
            Mode::PerRequest => {
                let mut replies = Vec::with_capacity(REPLY_CHANNELS);
                for _ in 0..REPLY_CHANNELS {
                    replies.push(connection.create_channel().await?);
                }
                ClientKind::PerRequest {
                    replies,
                    next: AtomicUsize::new(0),
                }
            }
            Mode::Direct => {
                // Direct Reply-to answers only on the channel that published, in no-ack mode.
                let consumer = publisher
                    .basic_consume(
                        DIRECT_REPLY_TO.into(),
                        ShortString::default(),
                        BasicConsumeOptions {
                            no_ack: true,
                            ..BasicConsumeOptions::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .context("consume amq.rabbitmq.reply-to")?;
                let waiting = Arc::new(Mutex::new(HashMap::new()));
                let dispatcher = tokio::spawn(dispatch(consumer, waiting.clone()));
                ClientKind::Direct {
                    waiting,
                    dispatcher,
                }
            }
        };
        Ok(Self {
            connection,
            publisher,
            queue: queue.into(),
            catalog: Catalog::new(),
            kind,
        })
    }

    /// One round trip: `Ok`, or a short reason.
    pub async fn call(&self, rng: &mut impl Rng) -> Result<(), String> {
        let body = serde_json::to_vec(&self.catalog.request(rng)).map_err(|e| e.to_string())?;
        let correlation_id = Uuid::new_v4().to_string();
        match &self.kind {
            ClientKind::PerRequest { replies, next } => {
                let channel = &replies[next.fetch_add(1, Ordering::Relaxed) % replies.len()];
                self.per_request(channel, &body, &correlation_id).await
            }
            ClientKind::Direct { waiting, .. } => {
                self.direct(waiting, &body, &correlation_id).await
            }
        }
    }

    async fn per_request(
        &self,
        channel: &Channel,
        body: &[u8],
        correlation_id: &str,
    ) -> Result<(), String> {
        let queue = common::amqp::declare_reply_queue(channel)
            .await
            .map_err(|_| "declare".to_owned())?;
        let outcome = async {
            let mut consumer = channel
                .basic_consume(
                    queue.clone(),
                    ShortString::default(),
                    BasicConsumeOptions {
                        no_ack: true,
                        exclusive: true,
                        ..BasicConsumeOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|_| "consume".to_owned())?;
            self.publish(body, correlation_id, queue.clone()).await?;
            let wait = async {
                while let Some(Ok(delivery)) = consumer.next().await {
                    if delivery
                        .properties
                        .correlation_id()
                        .as_ref()
                        .is_some_and(|id| id.as_str() == correlation_id)
                    {
                        return Ok(());
                    }
                }
                Err("reply queue cancelled".to_owned())
            };
            tokio::time::timeout(CALL_TIMEOUT, wait)
                .await
                .map_err(|_| "timeout".to_owned())?
        }
        .await;
        // Deleted on every way out, as the services do, rather than left to the connection.
        let _ = channel
            .queue_delete(queue, QueueDeleteOptions::default())
            .await;
        outcome
    }

    async fn direct(
        &self,
        waiting: &Mutex<HashMap<String, oneshot::Sender<()>>>,
        body: &[u8],
        correlation_id: &str,
    ) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        lock(waiting).insert(correlation_id.to_owned(), tx);
        let outcome = async {
            self.publish(body, correlation_id, DIRECT_REPLY_TO.into())
                .await?;
            tokio::time::timeout(CALL_TIMEOUT, rx)
                .await
                .map_err(|_| "timeout".to_owned())?
                .map_err(|_| "reply consumer ended".to_owned())
        }
        .await;
        lock(waiting).remove(correlation_id);
        outcome
    }

    async fn publish(
        &self,
        body: &[u8],
        correlation_id: &str,
        reply_to: ShortString,
    ) -> Result<(), String> {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_type(MESSAGE_TYPE.into())
            .with_message_id(Uuid::new_v4().to_string().into())
            .with_correlation_id(correlation_id.into())
            .with_reply_to(reply_to)
            .with_expiration(CALL_TIMEOUT.as_millis().to_string().into());
        let confirm = self
            .publisher
            .basic_publish(
                ShortString::default(),
                self.queue.clone(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                body,
                properties,
            )
            .await
            .map_err(|_| "publish".to_owned())?;
        match tokio::time::timeout(CALL_TIMEOUT, confirm).await {
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(Confirmation::Ack(Some(_)))) => Err("returned".to_owned()),
            Ok(Ok(Confirmation::Nack(_))) => Err("nack".to_owned()),
            Ok(Ok(Confirmation::NotRequested)) => Err("confirms off".to_owned()),
            Ok(Err(_)) => Err("confirm".to_owned()),
            Err(_) => Err("confirm timeout".to_owned()),
        }
    }

    pub async fn close(self) {
        if let ClientKind::Direct { dispatcher, .. } = &self.kind {
            dispatcher.abort();
        }
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// Hands Direct Reply-to deliveries to their callers by correlation id.
async fn dispatch(
    mut consumer: Consumer,
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>,
) {
    while let Some(Ok(delivery)) = consumer.next().await {
        let Some(id) = delivery.properties.correlation_id().as_ref() else {
            continue;
        };
        if let Some(tx) = lock(&waiting).remove(id.as_str()) {
            let _ = tx.send(());
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // One insert or remove at a time: the map is whole even if a holder panicked.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
