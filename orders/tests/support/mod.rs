//! Shared set-up of the orders tests: a migrated database, the real application on port 0,
//! a test token issuer standing in for auth, and a RabbitMQ client that plays the products side.

#![allow(dead_code)] // Each test binary uses its own subset of these helpers.

use std::{collections::HashSet, ops::Deref, time::Duration};

use common::{
    amqp::{
        HEADER_DEADLINE_MS, RpcRequest, dead_letter_queue, declare_events_exchange,
        declare_reply_queue, declare_work_queue,
    },
    config::AmqpConfig,
    ids::{OrderId, ProductId, UserId},
    messages::{CreateOrderReplyV1, CreateOrderV1, OrderLineV1},
    testing::{
        self, TestDatabase, TestIssuer, amqp_url, broker_connection, consume_without_acks,
        delete_exchange_on_drop, delete_queue_on_drop, next_reply, next_reply_with_headers,
        publish, request_properties, require_broker, unique_queue,
    },
};
use futures::StreamExt;
use lapin::{
    BasicProperties, Channel, Connection, Consumer,
    options::{BasicGetOptions, ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};
use orders::{
    Orders,
    config::{Config, DEFAULT_OUTBOX, OutboxConfig},
    migration::{LOCK_KEY, Migrator},
    outbox::Wake,
};
use sea_orm::DatabaseConnection;

/// How long a test waits for something that should happen within milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// A fresh database with the orders schema, and a pool on it.
pub async fn migrated_database() -> (TestDatabase, DatabaseConnection) {
    let database = TestDatabase::create().await;
    let db = common::db::connect(&database.config())
        .await
        .expect("connect to the test database");
    common::db::migrate::<Migrator>(&db, LOCK_KEY)
        .await
        .expect("migrate the test database");
    (database, db)
}

/// The real orders service on port 0, with its own database and order queue.
pub struct TestApp {
    app: testing::TestApp,
    /// A pool of the test's own on the service's database.
    pub db: DatabaseConnection,
    pub queue: String,
    /// The broker settings it runs with: its own order and resolve queues and events exchange.
    pub amqp: AmqpConfig,
    pub issuer: TestIssuer,
    _database: TestDatabase,
}

impl Deref for TestApp {
    type Target = testing::TestApp;

    fn deref(&self) -> &testing::TestApp {
        &self.app
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with_prefetch(32).await
    }

    pub async fn spawn_with_prefetch(prefetch: u16) -> Self {
        Self::spawn_with(prefetch, DEFAULT_OUTBOX).await
    }

    pub async fn spawn_with(prefetch: u16, outbox: OutboxConfig) -> Self {
        require_broker().await;
        let (database, db) = migrated_database().await;
        let issuer = TestIssuer::start().await;
        let queue = unique_queue("orders-test");
        let amqp = AmqpConfig::with_order_queue(amqp_url(), queue.clone());
        let config = Config {
            server: database.server_config(),
            amqp: amqp.clone(),
            jwks: issuer.jwks_config(),
            prefetch,
            outbox,
        };
        Self {
            app: testing::TestApp::spawn::<Orders>(config).await,
            db,
            queue,
            amqp,
            issuer,
            _database: database,
        }
    }

    /// Shuts the service down as SIGTERM would and waits until it has stopped.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.app.stop().await
    }

    /// `POST path` with `user`'s token (or none) and no body.
    pub async fn post_as(&self, path: &str, user: Option<UserId>) -> reqwest::Response {
        let mut request = self.http.post(self.url(path));
        if let Some(user) = user {
            request = request.bearer_auth(self.issuer.token_for(user, &[]));
        }
        request.send().await.expect("the request is answered")
    }

    /// `GET path` with `user`'s token (or none).
    pub async fn get_as(&self, path: &str, user: Option<UserId>) -> reqwest::Response {
        let mut request = self.http.get(self.url(path));
        if let Some(user) = user {
            request = request.bearer_auth(self.issuer.token_for(user, &[]));
        }
        request.send().await.expect("the request is answered")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        delete_queue_on_drop(&self.queue);
        delete_queue_on_drop(&self.amqp.resolve_queue);
        delete_exchange_on_drop(&self.amqp.events_exchange);
    }
}

/// The consumer's handler on `db`, its metrics in a registry of its own, waking no relay.
pub fn handler(db: &DatabaseConnection) -> orders::consumer::OrderHandler {
    handler_waking(db, Wake::default())
}

/// The consumer's handler on `db`, waking a relay with `wake`.
pub fn handler_waking(db: &DatabaseConnection, wake: Wake) -> orders::consumer::OrderHandler {
    orders::consumer::OrderHandler::new(db.clone(), &common::metrics::registry(), wake)
        .expect("the handler's metrics register")
}

/// An event as a consumer of the events exchange receives it.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub routing_key: String,
    pub properties: BasicProperties,
    pub body: serde_json::Value,
    /// When it arrived.
    pub at: chrono::DateTime<chrono::Utc>,
}

/// A consumer of every event on an exchange, through a queue of its own (exclusive, gone with
/// its connection), which deduplicates by `message_id` as every consumer must.
pub struct EventWatcher {
    connection: Connection,
    deliveries: Consumer,
    seen: HashSet<String>,
    /// Every delivery, duplicates included.
    pub deliveries_seen: usize,
}

impl EventWatcher {
    /// Binds a fresh queue to `exchange` (declared here if it is not yet) for every routing key.
    pub async fn bind(exchange: &str) -> Self {
        let connection = broker_connection().await;
        let channel = connection.create_channel().await.expect("open a channel");
        declare_events_exchange(&channel, exchange)
            .await
            .expect("declare the events exchange");
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare the watcher's queue")
            .name()
            .to_string();
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind the watcher's queue");
        let deliveries = consume_without_acks(&channel, &queue).await;
        Self {
            connection,
            deliveries,
            seen: HashSet::new(),
            deliveries_seen: 0,
        }
    }

    /// The next event not seen before; panics after `PATIENCE`.
    pub async fn next_new(&mut self) -> Received {
        loop {
            let delivery = tokio::time::timeout(PATIENCE, self.deliveries.next())
                .await
                .unwrap_or_else(|_| panic!("an event within {PATIENCE:?}"))
                .expect("the watcher's consumer is open")
                .expect("an event delivery");
            self.deliveries_seen += 1;
            let message_id = delivery
                .properties
                .message_id()
                .as_ref()
                .expect("an event carries a message_id")
                .to_string();
            if !self.seen.insert(message_id.clone()) {
                continue;
            }
            return Received {
                message_id,
                routing_key: delivery.routing_key.to_string(),
                body: serde_json::from_slice(&delivery.data).expect("an event is JSON"),
                properties: delivery.properties,
                at: chrono::Utc::now(),
            };
        }
    }

    /// The next new event about `order` with `routing_key`, skipping others.
    pub async fn next_about(&mut self, routing_key: &str, order: OrderId) -> Received {
        loop {
            let event = self.next_new().await;
            if event.routing_key == routing_key && event.body["order_id"] == order.to_string() {
                return event;
            }
        }
    }

    pub async fn close(self) {
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// A buy request of `lines` (product, unit price, quantity) by `user`.
pub fn request(user: UserId, lines: &[(ProductId, i64, i32)], key: Option<&str>) -> CreateOrderV1 {
    CreateOrderV1 {
        user_id: user,
        email: "buyer@example.com".to_owned(),
        lines: lines
            .iter()
            .map(|&(product_id, unit_price_cents, quantity)| OrderLineV1 {
                product_id,
                name: format!("Product {product_id}"),
                unit_price_cents,
                quantity,
            })
            .collect(),
        idempotency_key: key.map(str::to_owned),
        reservation_id: None,
    }
}

/// The products side of the queue: publishes requests and reads their replies.
pub struct Requester {
    pub queue: String,
    connection: Connection,
    channel: Channel,
    reply_queue: String,
    replies: Consumer,
}

impl Requester {
    pub async fn connect(queue: &str) -> Self {
        let connection = broker_connection().await;
        let channel = connection.create_channel().await.expect("open a channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("enable publisher confirms");
        declare_work_queue(&channel, queue)
            .await
            .expect("declare the order queue");
        let reply_queue = declare_reply_queue(&channel)
            .await
            .expect("declare a reply queue")
            .to_string();
        let replies = consume_without_acks(&channel, &reply_queue).await;
        Self {
            queue: queue.to_owned(),
            connection,
            channel,
            reply_queue,
            replies,
        }
    }

    /// Properties of a well-formed `order.create.v1` request.
    pub fn properties(&self, message_id: &str, correlation_id: &str) -> BasicProperties {
        self.properties_without_message_id(correlation_id)
            .with_message_id(message_id.into())
    }

    /// Properties of a request that lacks only its `message_id`.
    pub fn properties_without_message_id(&self, correlation_id: &str) -> BasicProperties {
        request_properties(
            CreateOrderV1::MESSAGE_TYPE,
            correlation_id,
            &self.reply_queue,
        )
    }

    /// The same properties with an `x-deadline-ms` header `ms` milliseconds from now.
    pub fn with_deadline_in(properties: BasicProperties, ms: i64) -> BasicProperties {
        let mut headers = FieldTable::default();
        headers.insert(
            HEADER_DEADLINE_MS.into(),
            AMQPValue::LongLongInt(chrono::Utc::now().timestamp_millis() + ms),
        );
        properties.with_headers(headers)
    }

    pub async fn publish_raw(&self, body: &[u8], properties: BasicProperties) {
        publish(&self.channel, &self.queue, body, properties).await;
    }

    pub async fn publish(&self, request: &CreateOrderV1, message_id: &str, correlation_id: &str) {
        let body = serde_json::to_vec(request).expect("request serializes");
        self.publish_raw(&body, self.properties(message_id, correlation_id))
            .await;
    }

    /// The next reply: its correlation id and body.
    pub async fn next_reply(&mut self) -> (String, CreateOrderReplyV1) {
        next_reply(&mut self.replies, PATIENCE).await
    }

    /// The next reply: its correlation id, body and headers.
    pub async fn next_reply_with_headers(&mut self) -> (String, CreateOrderReplyV1, FieldTable) {
        next_reply_with_headers(&mut self.replies, PATIENCE).await
    }

    /// Takes one message from `<queue>.dlq`, if there is one.
    pub async fn take_dead_letter(&self) -> Option<Vec<u8>> {
        let dlq = dead_letter_queue(&self.queue);
        self.channel
            .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get on the dead-letter queue")
            .map(|m| m.delivery.data)
    }

    pub async fn close(self) {
        let _ = self.connection.close(200, "done".into()).await;
    }
}
