//! Shared set-up of the orders tests: a migrated database, the real application on port 0,
//! a JWKS server with a test key, and a RabbitMQ client that plays the products side.

#![allow(dead_code)] // Each test binary uses its own subset of these helpers.

use std::{net::TcpListener, time::Duration};

use actix_web::{App, HttpResponse, HttpServer, web};
use common::{
    amqp::{CONTENT_TYPE_JSON, HEADER_DEADLINE_MS, dead_letter_queue, declare_work_queue},
    config::AmqpConfig,
    ids::{ProductId, UserId},
    jwt::{AUDIENCE, Claims, ISSUER},
    messages::{CreateOrderReplyV1, CreateOrderV1, OrderLineV1},
    testing::{TestDatabase, amqp_url, require_broker, unique_queue},
};
use futures::StreamExt;
use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{Jwk, JwkSet},
};
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, Consumer,
    options::{
        BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
        QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable},
};
use orders::{
    config::Config,
    migration::{LOCK_KEY, Migrator},
    startup::Application,
};
use sea_orm::DatabaseConnection;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// An Ed25519 key made for these tests with `openssl genpkey -algorithm ed25519`.
const TEST_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIIQYEKVeaF/OHu1MpcZmIHjl1n7Iiaz1rweUngFWOPUm
-----END PRIVATE KEY-----
";
const TEST_KID: &str = "orders-test-key";

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

/// Serves a JWKS holding the test key, as auth would, and signs tokens with that key.
pub struct Issuer {
    pub jwks_url: String,
    key: EncodingKey,
}

impl Issuer {
    pub async fn start() -> Self {
        let key = EncodingKey::from_ed_pem(TEST_KEY_PEM.as_bytes()).expect("test key parses");
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA).expect("public JWK");
        jwk.common.key_id = Some(TEST_KID.to_owned());
        let set = serde_json::to_value(JwkSet { keys: vec![jwk] }).expect("JWKS serializes");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the JWKS port");
        let port = listener.local_addr().expect("JWKS port").port();
        let server = HttpServer::new(move || {
            let set = set.clone();
            App::new().route(
                "/auth/.well-known/jwks.json",
                web::get().to(move || {
                    let set = set.clone();
                    async move { HttpResponse::Ok().json(set) }
                }),
            )
        })
        .listen(listener)
        .expect("listen for JWKS requests")
        .workers(1)
        .disable_signals()
        .run();
        tokio::spawn(server);
        Self {
            jwks_url: format!("http://127.0.0.1:{port}/auth/.well-known/jwks.json"),
            key,
        }
    }

    /// A valid 15-minute token for `user`.
    pub fn token_for(&self, user: UserId) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: user,
            email: format!("{user}@example.com"),
            roles: vec![],
            iat: now,
            exp: now + 900,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(TEST_KID.to_owned());
        jsonwebtoken::encode(&header, &claims, &self.key).expect("sign a test token")
    }
}

/// The real orders service on port 0, with its own database and order queue.
pub struct TestApp {
    pub address: String,
    pub db: DatabaseConnection,
    pub queue: String,
    pub issuer: Issuer,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    running: Option<JoinHandle<anyhow::Result<()>>>,
    _database: TestDatabase,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with_prefetch(32).await
    }

    pub async fn spawn_with_prefetch(prefetch: u16) -> Self {
        common::telemetry::init("orders-test");
        require_broker().await;
        let (database, db) = migrated_database().await;
        let issuer = Issuer::start().await;
        let queue = unique_queue("orders-test");
        let config = Config {
            port: 0,
            database: database.config(),
            amqp: AmqpConfig {
                url: amqp_url(),
                order_queue: queue.clone(),
            },
            jwks_url: issuer.jwks_url.clone(),
            prefetch,
        };
        let shutdown = CancellationToken::new();
        let app = Application::build(config, shutdown.clone())
            .await
            .expect("the application builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let running = tokio::spawn(app.run_until_stopped());
        Self {
            address,
            db,
            queue,
            issuer,
            http: reqwest::Client::new(),
            shutdown,
            running: Some(running),
            _database: database,
        }
    }

    /// Shuts the service down as SIGTERM would and waits until it has stopped.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let running = self.running.take().expect("the app is running");
        tokio::time::timeout(PATIENCE, running)
            .await
            .expect("the app stops within the patience")
            .expect("the app task did not panic")
    }

    /// `GET path` with `user`'s token (or none).
    pub async fn get(&self, path: &str, user: Option<UserId>) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.address));
        if let Some(user) = user {
            request = request.bearer_auth(self.issuer.token_for(user));
        }
        request.send().await.expect("the request is answered")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // Quorum queues outlive their consumers; a test's queues must not outlive the test.
        // Drop runs inside the test's runtime, which cannot be blocked on; a thread can.
        let queue = self.queue.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(delete_queues(&queue));
        })
        .join();
    }
}

async fn delete_queues(queue: &str) {
    let Ok(connection) = Connection::connect(&amqp_url(), ConnectionProperties::default()).await
    else {
        return;
    };
    if let Ok(channel) = connection.create_channel().await {
        for name in [queue.to_owned(), dead_letter_queue(queue)] {
            let _ = channel
                .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
    let _ = connection.close(200, "test over".into()).await;
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
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("connect to RabbitMQ");
        let channel = connection.create_channel().await.expect("open a channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("enable publisher confirms");
        declare_work_queue(&channel, queue)
            .await
            .expect("declare the order queue");
        let reply_queue = channel
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
            .expect("declare a reply queue")
            .name()
            .to_string();
        let replies = channel
            .basic_consume(
                reply_queue.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume replies");
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
        BasicProperties::default()
            .with_content_type(CONTENT_TYPE_JSON.into())
            .with_type(<CreateOrderV1 as common::amqp::RpcRequest>::MESSAGE_TYPE.into())
            .with_correlation_id(correlation_id.into())
            .with_reply_to(self.reply_queue.as_str().into())
            .with_delivery_mode(2)
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
        self.channel
            .basic_publish(
                "".into(),
                self.queue.as_str().into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .expect("publish")
            .await
            .expect("the broker confirms the publish");
    }

    pub async fn publish(&self, request: &CreateOrderV1, message_id: &str, correlation_id: &str) {
        let body = serde_json::to_vec(request).expect("request serializes");
        self.publish_raw(&body, self.properties(message_id, correlation_id))
            .await;
    }

    /// The next reply: its correlation id and body.
    pub async fn next_reply(&mut self) -> (String, CreateOrderReplyV1) {
        let delivery = tokio::time::timeout(PATIENCE, self.replies.next())
            .await
            .expect("a reply within the patience")
            .expect("the reply consumer is open")
            .expect("a reply delivery");
        let correlation_id = delivery
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.to_string())
            .expect("the reply carries a correlation id");
        let reply =
            serde_json::from_slice(&delivery.data).expect("the reply is a CreateOrderReplyV1");
        (correlation_id, reply)
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
